/**
 * Reading input files safely. A FIFO, socket or device given where a file is expected would block
 * `open` (a FIFO waits for a writer) or stream forever; a directory fails with an EISDIR that names
 * no path. So every input file is opened non-blocking and checked with fstat before a byte is read,
 * and every failure names the path and what was expected. Symbolic links are followed (the Hugging
 * Face cache is made of them).
 */
import fs from 'node:fs';
import { FileError } from '../errors.js';

export type FileKind = 'missing' | 'file' | 'directory' | 'other';

/** What is at `p` (following symbolic links; a dangling link is 'missing'). */
export function fileKind(p: string): FileKind {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return 'missing';
    throw new FileError(`${p}: cannot inspect (${(err as Error).message})`);
  }
  return st.isFile() ? 'file' : st.isDirectory() ? 'directory' : 'other';
}

function describe(st: fs.Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

/**
 * Open a regular file for reading and return its descriptor (the caller closes it). `what` says
 * what the file is for, e.g. "config.json", and goes into the error message.
 */
export function openRegularFile(file: string, what = 'a regular file'): number {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a writer.
    fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new FileError(`${file}: not found (expected ${what})`);
    if (code === 'EISDIR') throw new FileError(`${file}: is a directory (expected ${what})`);
    throw new FileError(`${file}: cannot open (${(err as Error).message})`);
  }
  const st = fs.fstatSync(fd);
  if (!st.isFile()) {
    fs.closeSync(fd);
    throw new FileError(`${file}: is ${describe(st)} (expected ${what})`);
  }
  return fd;
}

/** The whole content of a regular file (as UTF-8 text with `encoding`). */
export function readRegularFile(file: string, what?: string): Buffer;
export function readRegularFile(file: string, what: string | undefined, encoding: 'utf8'): string;
export function readRegularFile(file: string, what?: string, encoding?: 'utf8'): Buffer | string {
  const fd = openRegularFile(file, what);
  try {
    const buf = fs.readFileSync(fd);
    return encoding ? buf.toString('utf8') : buf;
  } catch (err) {
    throw new FileError(`${file}: cannot read (${(err as Error).message})`);
  } finally {
    fs.closeSync(fd);
  }
}

/** A JSON object from a regular file, or a FileError naming the file. */
export function readJsonObject(file: string, what = 'a JSON object'): Record<string, unknown> {
  const text = readRegularFile(file, what, 'utf8');
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new FileError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new FileError(`${file}: expected a JSON object`);
  return v as Record<string, unknown>;
}
