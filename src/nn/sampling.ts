/**
 * Next-token selection from logits: greedy (temperature 0), or sampling with temperature, top-k,
 * top-p (nucleus) and a repetition penalty, from a seeded generator so runs are reproducible. The
 * algorithm (float32, its tie rule, its one order of summation) is kernels/sampling.ts's, the same
 * on the host and on every backend.
 */
import { ArgumentError } from '../errors.js';
import { type TokenChoice, sampleTokenCpu } from '../tensor/kernels/sampling.js';

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

/**
 * The host side of token choice: the options as kernels/sampling.ts's TokenChoice, and the seeded
 * uniform draws. `next` chooses on the host (the CPU reference of the algorithm every backend's
 * sampleToken runs); a decode loop on the device takes `choice` and one `draw()` per sampled token.
 */
export class Sampler {
  private readonly random: () => number;
  readonly choice: TokenChoice;

  constructor(readonly options: SamplingOptions = {}) {
    validateSampling(options);
    this.random = seededRandom(options.seed ?? 0);
    this.choice = {
      temperature: options.temperature ?? 0, topK: options.topK ?? 0, topP: options.topP ?? 1, repetitionPenalty: options.repetitionPenalty ?? 1,
    };
  }

  /** The next uniform draw (consumed only by sampled tokens: greedy decoding draws nothing). */
  draw(): number {
    return this.choice.temperature > 0 ? this.random() : 0;
  }

  /** Choose the next token from `logits` given the tokens so far (for the repetition penalty). */
  next(logits: Float32Array, previous: readonly number[] = []): number {
    let seen: Uint8Array | undefined;
    if (this.choice.repetitionPenalty !== 1) {
      seen = new Uint8Array(logits.length);
      for (const id of previous) if (id >= 0 && id < logits.length) seen[id] = 1;
    }
    return sampleTokenCpu(logits, this.choice, seen, this.draw());
  }
}
