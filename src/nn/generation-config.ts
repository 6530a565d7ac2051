/**
 * generation_config.json → sampling defaults, as transformers reads it: `do_sample` false (its
 * default) means greedy whatever the temperature says; with `do_sample` true the repository's
 * temperature, top_k, top_p apply, with transformers' defaults for those it leaves out (1.0, 50,
 * 1.0). repetition_penalty applies either way. A flag the user gives wins over all of these.
 * Every failure names the file and the field.
 */
import path from 'node:path';
import { ModelLoadError } from '../errors.js';
import { fileKind, readJsonObject } from '../io/files.js';
import type { SamplingOptions } from './sampling.js';

export const GENERATION_CONFIG = 'generation_config.json';

/** The sampling defaults of a model directory's generation_config.json; undefined when it has none. */
export function loadGenerationDefaults(dir: string): SamplingOptions | undefined {
  const file = path.join(dir, GENERATION_CONFIG);
  if (fileKind(file) === 'missing') return undefined;
  let raw: Record<string, unknown>;
  try {
    raw = readJsonObject(file, 'a generation config, a JSON object');
  } catch (err) {
    throw new ModelLoadError((err as Error).message);
  }
  return parseGenerationConfig(raw, file);
}

export function parseGenerationConfig(raw: Record<string, unknown>, file = GENERATION_CONFIG): SamplingOptions {
  const field = (key: string, ok: (v: number) => boolean, expected: string): number | undefined => {
    const v = raw[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !ok(v)) throw new ModelLoadError(`${file}: "${key}" must be ${expected}, got ${JSON.stringify(v)}`);
    return v;
  };
  const doSample = raw.do_sample ?? false;
  if (typeof doSample !== 'boolean') throw new ModelLoadError(`${file}: "do_sample" must be true or false, got ${JSON.stringify(doSample)}`);
  const temperature = field('temperature', (v) => Number.isFinite(v) && v >= 0, 'a number ≥ 0');
  const topK = field('top_k', (v) => Number.isInteger(v) && v >= 0, 'an integer ≥ 0');
  const topP = field('top_p', (v) => v > 0 && v <= 1, 'in (0, 1]');
  const repetitionPenalty = field('repetition_penalty', (v) => Number.isFinite(v) && v > 0, 'a positive number');
  const penalty = repetitionPenalty !== undefined ? { repetitionPenalty } : {};
  if (!doSample) return { temperature: 0, ...penalty };
  return { temperature: temperature ?? 1, topK: topK ?? 50, topP: topP ?? 1, ...penalty };
}
