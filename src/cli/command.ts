/** The shape shared by every CLI command, and the output channels (replaceable in tests). */
import { GENERATION_CONFIG, loadGenerationDefaults } from '../nn/generation-config.js';
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
  /** What its positional arguments are (`DIR…`); without, a positional argument is an error. */
  readonly positional?: string;
  /** `spikelm <name> <sub> …` (e.g. `bench merge`). */
  readonly subcommands?: readonly Command[];
  run(args: ParsedArgs, io: CliIO): Promise<number>;
}

/** Flags shared by the commands that load a model. */
export const MODEL_FLAGS = {
  model: { type: 'string', required: true, help: 'a model directory (config.json + model.safetensors + tokenizer.json) or a Hugging Face Hub name, org/name[@revision] (downloaded into the shared HF cache; HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE apply)', aliases: ['model-name'] },
  backend: { type: 'string', help: 'cpu | gpu | auto', default: 'cpu' },
  'allow-unused': { type: 'boolean', help: 'load even if the weight files hold tensors the config does not use' },
} as const satisfies Record<string, FlagSpec>;

/**
 * The sampling flags of generate and chat (they differ only in the default repetition penalty).
 * Their defaults are the model's generation_config.json where it has one, else the ones named here;
 * a flag given wins (resolveSampling).
 */
export function samplingFlags(repetitionPenalty: number): Record<string, FlagSpec> {
  const fallback = ' (default: the model\'s generation_config.json, else %s)';
  return {
    temperature: { type: 'number', help: `sampling temperature; 0 = greedy${fallback.replace('%s', '0')}` },
    'top-k': { type: 'int', help: `sample from the k most likely tokens, 0 = all${fallback.replace('%s', '0')}` },
    'top-p': { type: 'number', help: `nucleus sampling mass${fallback.replace('%s', '1')}` },
    'repetition-penalty': { type: 'number', help: `penalty > 1 for tokens already present${fallback.replace('%s', String(repetitionPenalty))}` },
    seed: { type: 'int', help: 'random seed for sampling', default: 0 },
  };
}

/** The sampling flags the user gave, validated (so a bad value fails before any model is loaded). */
export function samplingFromFlags(flags: FlagValues): SamplingOptions {
  const given = (key: string) => (flags[key] === undefined ? undefined : (flags[key] as number));
  const entries = Object.entries({
    temperature: given('temperature'), topK: given('top-k'), topP: given('top-p'), repetitionPenalty: given('repetition-penalty'), seed: given('seed'),
  }).filter(([, v]) => v !== undefined);
  const o = Object.fromEntries(entries) as SamplingOptions;
  validateSampling(o);
  return o;
}

/**
 * What a run samples with: the built-in defaults, then the model directory's generation_config.json,
 * then the flags given. Returns the options and where the defaults came from (for a note).
 */
export function resolveSampling(given: SamplingOptions, dir: string | undefined, repetitionPenalty: number): { sampling: SamplingOptions; source?: string } {
  const fromModel = dir === undefined ? undefined : loadGenerationDefaults(dir);
  const builtIn: SamplingOptions = { temperature: 0, topK: 0, topP: 1, repetitionPenalty, seed: 0 };
  return { sampling: { ...builtIn, ...fromModel, ...given }, ...(fromModel ? { source: GENERATION_CONFIG } : {}) };
}

/** One line: greedy, or the sampling parameters. */
export function describeSampling(s: SamplingOptions): string {
  const penalty = (s.repetitionPenalty ?? 1) !== 1 ? `, repetition penalty ${s.repetitionPenalty}` : '';
  return (s.temperature ?? 0) === 0 ? `greedy${penalty}` : `temperature ${s.temperature}, top-k ${s.topK ?? 0}, top-p ${s.topP ?? 1}${penalty}, seed ${s.seed ?? 0}`;
}
