/** The shape shared by every CLI command, and the output channels (replaceable in tests). */
import { type SamplingOptions, validateSampling } from '../nn/sampling.js';
import type { FlagSpec, FlagValues, ParsedArgs } from './args.js';

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
  model: { type: 'string', required: true, help: 'a model directory (config.json + model.safetensors + tokenizer.json) or a Hugging Face Hub name, org/name[@revision] (downloaded into the shared HF cache; HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE apply)', aliases: ['model-name'] },
  backend: { type: 'string', help: 'cpu | gpu | auto', default: 'cpu' },
  'allow-unused': { type: 'boolean', help: 'load even if the weight files hold tensors the config does not use' },
} as const satisfies Record<string, FlagSpec>;

/** The sampling flags of generate and chat (they differ only in the default repetition penalty). */
export function samplingFlags(repetitionPenalty: number): Record<string, FlagSpec> {
  return {
    temperature: { type: 'number', help: 'sampling temperature; 0 = greedy', default: 0 },
    'top-k': { type: 'int', help: 'sample from the k most likely tokens (0 = all)', default: 0 },
    'top-p': { type: 'number', help: 'nucleus sampling mass', default: 1 },
    'repetition-penalty': { type: 'number', help: 'penalty > 1 for tokens already present', default: repetitionPenalty },
    seed: { type: 'int', help: 'random seed for sampling', default: 0 },
  };
}

/** The sampling flags, validated (so a bad value fails before any model is loaded). */
export function samplingFromFlags(flags: FlagValues): SamplingOptions {
  const o = {
    temperature: flags.temperature as number, topK: flags['top-k'] as number, topP: flags['top-p'] as number,
    repetitionPenalty: flags['repetition-penalty'] as number, seed: flags.seed as number,
  };
  validateSampling(o);
  return o;
}
