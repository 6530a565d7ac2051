/**
 * Row softmax over the last dimension of x: [R, C], with an optional causal mask.
 *
 * Causal mask: the rows come in groups of `queries` consecutive rows (e.g. [heads, queries, keys]
 * flattened); row r is query q = r mod queries at absolute position `queryStart + q`, and keys
 * c > queryStart + q get probability 0. A fully masked row is an error, never NaN.
 */
import { ArgumentError } from '../../errors.js';

export interface CausalMask {
  /** Rows per group (the number of queries). */
  readonly queries: number;
  /** Absolute position of the first query (= number of cached keys before it). */
  readonly queryStart: number;
}

export function softmaxCpu(x: Float32Array, R: number, C: number, out: Float32Array, mask?: CausalMask): void {
  for (let r = 0; r < R; r++) {
    const o = r * C;
    const limit = mask ? Math.min(C, mask.queryStart + (r % mask.queries) + 1) : C;
    if (limit <= 0) throw new ArgumentError(`softmax: row ${r} is fully masked`);
    let max = -Infinity;
    for (let c = 0; c < limit; c++) if (x[o + c]! > max) max = x[o + c]!;
    let sum = 0;
    for (let c = 0; c < limit; c++) sum += Math.exp(x[o + c]! - max);
    for (let c = 0; c < limit; c++) out[o + c] = Math.exp(x[o + c]! - max) / sum;
    for (let c = limit; c < C; c++) out[o + c] = 0;
  }
}
