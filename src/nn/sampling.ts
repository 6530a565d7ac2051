/**
 * Next-token selection from logits: greedy (temperature 0), or sampling with temperature, top-k,
 * top-p (nucleus) and a repetition penalty, from a seeded generator so runs are reproducible.
 */
import { ArgumentError } from '../errors.js';

export interface SamplingOptions {
  /** 0 (default) = greedy argmax. */
  readonly temperature?: number;
  /** Keep the k most likely tokens (0 = off). */
  readonly topK?: number;
  /** Keep the smallest set whose probability reaches p (1 = off). */
  readonly topP?: number;
  /** > 1 discourages tokens already present (CTRL-style: logit / p if > 0 else logit · p). */
  readonly repetitionPenalty?: number;
  readonly seed?: number;
}

/** Index of the largest value; the first one on ties (numpy's argmax). */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** mulberry32: a small, fast, seedable 32-bit generator returning floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function validateSampling(o: SamplingOptions): void {
  const t = o.temperature ?? 0;
  if (!(t >= 0) || !Number.isFinite(t)) throw new ArgumentError(`--temperature must be a number ≥ 0, got ${o.temperature}`);
  if (o.topK !== undefined && (!Number.isInteger(o.topK) || o.topK < 0)) throw new ArgumentError(`--top-k must be an integer ≥ 0, got ${o.topK}`);
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) throw new ArgumentError(`--top-p must be in (0, 1], got ${o.topP}`);
  if (o.repetitionPenalty !== undefined && !(o.repetitionPenalty > 0 && Number.isFinite(o.repetitionPenalty))) {
    throw new ArgumentError(`--repetition-penalty must be a positive number, got ${o.repetitionPenalty}`);
  }
}

export class Sampler {
  private readonly random: () => number;

  constructor(readonly options: SamplingOptions = {}) {
    validateSampling(options);
    this.random = seededRandom(options.seed ?? 0);
  }

  /** Choose the next token from `logits` given the tokens so far (for the repetition penalty). */
  next(logits: Float32Array, previous: readonly number[] = []): number {
    const o = this.options;
    const scores = Float64Array.from(logits);
    const penalty = o.repetitionPenalty ?? 1;
    if (penalty !== 1) {
      for (const id of new Set(previous)) {
        if (id >= 0 && id < scores.length) scores[id] = scores[id]! > 0 ? scores[id]! / penalty : scores[id]! * penalty;
      }
    }
    const temperature = o.temperature ?? 0;
    if (temperature === 0) return argmax(scores);
    let order = Array.from(scores.keys()).sort((a, b) => scores[b]! - scores[a]!);
    if (o.topK && o.topK > 0) order = order.slice(0, o.topK);
    const max = scores[order[0]!]!;
    const weights = order.map((i) => Math.exp((scores[i]! - max) / temperature));
    const total = weights.reduce((a, b) => a + b, 0);
    let keep = order.length;
    const topP = o.topP ?? 1;
    if (topP < 1) {
      let cum = 0;
      for (let i = 0; i < order.length; i++) {
        cum += weights[i]! / total;
        if (cum >= topP) {
          keep = i + 1;
          break;
        }
      }
    }
    const kept = weights.slice(0, keep);
    const keptTotal = kept.reduce((a, b) => a + b, 0);
    let r = this.random() * keptTotal;
    for (let i = 0; i < keep; i++) {
      r -= kept[i]!;
      if (r < 0) return order[i]!;
    }
    return order[keep - 1]!;
  }
}
