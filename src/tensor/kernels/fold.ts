/**
 * Thresholds folded into a linear layer's weights: the synapses behind an encoder, whose spike
 * event adds one row of them (src/snn/layerwise.ts):
 *
 *   dst[n, k] = f32(w[n, k] · scaled[k])      w: [N, K] (nn.Linear layout), scaled = θ·unit (doubles)
 *
 * over rows [n0, n1). The product of a float32 weight and a double is formed in double and rounded to
 * float32 once. A 16-bit weight (BF16, F16) is widened a row at a time (exact), never as a whole
 * second copy. Twin: foldF32 / foldBf16 / foldF16 in ../wasm/assembly/fold.ts.
 */
import { type HalfFormat, widenInto } from '../half.js';

export function foldRowsCpu(w: Float32Array, scaled: Float64Array, dst: Float32Array, K: number, n0: number, n1: number): void {
  for (let n = n0; n < n1; n++) {
    const o = n * K;
    for (let k = 0; k < K; k++) dst[o + k] = w[o + k]! * scaled[k]!;
  }
}

export function foldHalfRowsCpu(bits: Uint16Array, format: HalfFormat, scaled: Float64Array, dst: Float32Array, K: number, n0: number, n1: number): void {
  const row = new Float32Array(K);
  for (let n = n0; n < n1; n++) {
    const o = n * K;
    widenInto(bits, format, o, row);
    for (let k = 0; k < K; k++) dst[o + k] = row[k]! * scaled[k]!;
  }
}
