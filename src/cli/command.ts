/** The shape shared by every CLI command, and the output channels (replaceable in tests). */
import type { FlagSpec, ParsedArgs } from './args.js';

export interface CliIO {
  /** Standard output (results). */
  out(text: string): void;
  /** Standard error (progress, notes, errors). */
  err(text: string): void;
}

export const processIO: CliIO = {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
};

export interface Command {
  readonly name: string;
  readonly summary: string;
  readonly flags: Readonly<Record<string, FlagSpec>>;
  run(args: ParsedArgs, io: CliIO): Promise<number>;
}

/** Flags shared by the commands that load a model. */
export const MODEL_FLAGS = {
  model: { type: 'string', help: 'Hugging Face model directory (config.json + model.safetensors + tokenizer.json)', aliases: ['model-name'] },
  backend: { type: 'string', help: 'cpu | gpu | auto', default: 'cpu' },
} as const satisfies Record<string, FlagSpec>;
