/**
 * Errors the user can act on. Every message names the file, tensor or argument at fault and what
 * was expected; the CLI prints `message` as its one line and exits non-zero.
 */
export class SpikelmError extends Error {
  override name = 'SpikelmError';
}

/** A model directory, config.json or weight file that cannot be used as it is. */
export class ModelLoadError extends SpikelmError {
  override name = 'ModelLoadError';
}

/** A bad argument to an API call or a CLI flag. */
export class ArgumentError extends SpikelmError {
  override name = 'ArgumentError';
}

/** A tensor whose shape does not fit the operation it was given to. */
export class ShapeError extends SpikelmError {
  override name = 'ShapeError';
}

/** An input path that is missing, unreadable, or not the kind of file expected (a directory, a FIFO, …). */
export class FileError extends SpikelmError {
  override name = 'FileError';
}
