/** Loading the model a conversation command runs: the ANN, or a spiking model (saved or converted now). */
import { DEFAULT_CONVERSION, convertModelToSpiking, createCalibrationData } from '../convert/api.js';
import { ArgumentError } from '../errors.js';
import { CODINGS, type CodingName, SCHEDULES, type ScheduleName, checkCombination, parseCoding, parseSchedule } from '../snn/codes.js';
import { assertSameModel, loadSnnModel } from '../convert/snn-io.js';
import type { CausalLM } from '../nn/model.js';
import type { SpikingLM } from '../snn/model.js';
import type { FlagSpec, FlagValues } from './args.js';
import type { CliIO } from './command.js';
import { loadModelFromFlags, resolveModelDir } from './model-dir.js';
import { ProgressBar } from './progress.js';
import { TARGET_FLAGS, convertForTarget, targetFromFlags } from './target.js';
import { isWeighted } from '../snn/codes.js';

export interface SessionModels {
  readonly ann: CausalLM;
  readonly snn?: SpikingLM;
  readonly tokenizer: import('../nn/tokenizer.js').TextTokenizer;
  readonly dir: string;
}

/** The flags of the commands that run a spiking model converted now (chat, test). */
export const CONVERSION_FLAGS = {
  schedule: { type: 'string', help: `with --snn alone: ${SCHEDULES.join(' | ')}`, default: DEFAULT_CONVERSION.schedule },
  coding: { type: 'string', help: `with --snn alone: ${CODINGS.join(' | ')}`, default: DEFAULT_CONVERSION.coding },
  target: { ...TARGET_FLAGS.target, help: `with --snn alone and no --timesteps: ${TARGET_FLAGS.target.help}` },
  'allow-miss': TARGET_FLAGS['allow-miss'],
} as const satisfies Record<string, FlagSpec>;

/** Check the conversion flags (before any work). */
export function conversionFromFlags(flags: FlagValues): { schedule: ScheduleName; coding: CodingName; timesteps?: number } {
  const schedule = parseSchedule(String(flags.schedule ?? DEFAULT_CONVERSION.schedule));
  const coding = parseCoding(String(flags.coding ?? DEFAULT_CONVERSION.coding));
  checkCombination(coding, schedule);
  if (typeof flags.target === 'string') targetFromFlags(flags);
  const T = flags.timesteps;
  if (T !== undefined && (typeof T !== 'number' || !Number.isInteger(T) || T < 1)) throw new ArgumentError(`--timesteps must be an integer ≥ 1, got ${String(T)}`);
  return { schedule, coding, ...(T !== undefined ? { timesteps: T as number } : {}) };
}

/**
 * `--snn` alone converts the ANN now (calibrated: --schedule, --coding, --timesteps, defaulting to
 * DEFAULT_CONVERSION); `--snn DIR` loads a converted model (--timesteps runs it at another T).
 */
export async function loadSessionModels(flags: FlagValues, io: CliIO): Promise<SessionModels> {
  const conv = conversionFromFlags(flags);
  const snnDir = typeof flags.snn === 'string' ? resolveModelDir(flags.snn, '--snn') : undefined;
  const { model: ann, tokenizer, dir } = await loadModelFromFlags(flags, io);
  if (snnDir) {
    const loaded = loadSnnModel(snnDir, { backend: ann.backend });
    assertSameModel(ann, loaded, dir, snnDir);
    if (conv.timesteps === undefined || conv.timesteps === loaded.snn.timesteps) return { ann, snn: loaded.snn, tokenizer, dir };
    const snn = loaded.snn.withTimesteps(conv.timesteps);
    loaded.snn.dispose();
    return { ann, snn, tokenizer, dir };
  }
  if (flags.snn === true && conv.timesteps === undefined && conv.schedule === 'layerwise' && isWeighted(conv.coding)) {
    // the default: planes per site chosen for the target on calibration text
    const { snn, search } = await convertForTarget(ann, tokenizer, { target: targetFromFlags(flags), coding: conv.coding, seed: 0 }, io);
    if (!search.chosen.meets && flags['allow-miss'] !== true) io.err('note: the target was not met on the calibration text; running the best network found (--allow-miss silences this)\n');
    return { ann, snn, tokenizer, dir };
  }
  if (flags.snn === true) {
    if (typeof flags.target === 'string') throw new ArgumentError('--target chooses planes for a weighted code in the layerwise schedule without --timesteps');
    const bar = new ProgressBar(io, 'converting');
    const { snn } = await convertModelToSpiking(ann, createCalibrationData(tokenizer), { ...conv, onProgress: (d, t) => bar.update(d, t) });
    return { ann, snn, tokenizer, dir };
  }
  return { ann, tokenizer, dir };
}
