/**
 * Products and gathers over 16-bit weights (BF16 or F16 bits, src/tensor/half.ts): the TypeScript
 * references. Each weight is widened exactly to float32 as it is read, and the sums are those of
 * matmul.ts's kernels (doubles, k in order), so a product over a half weight equals, bit for bit,
 * the same product over its widened float32 copy. The wasm SIMD twins are in
 * src/tensor/wasm/assembly/half.ts (float32 sums, like the wasm set's float32 products).
 *
 *   matmulHalfCpu     y[m, n] = Σ_k x[m, k] · widen(w[n, k]) + bias[n] (+ residual)   x [M, K], w [N, K]
 *   embeddingHalfCpu  rows of a [V, D] table gathered by id and widened
 */
import { ArgumentError } from '../../errors.js';
import { type HalfFormat, widenInto } from '../half.js';

/** One weight row at a time, widened into a scratch row: no float32 copy of the matrix is made. */
export function matmulHalfCpu(
  x: Float32Array, w: Uint16Array, format: HalfFormat, bias: Float32Array | undefined, y: Float32Array,
  M: number, K: number, N: number, residual?: Float32Array,
): void {
  const row = new Float32Array(K);
  for (let n = 0; n < N; n++) {
    widenInto(w, format, n * K, row);
    const b = bias ? bias[n]! : 0;
    for (let m = 0; m < M; m++) {
      let acc = 0;
      const xo = m * K;
      for (let k = 0; k < K; k++) acc += x[xo + k]! * row[k]!;
      y[m * N + n] = acc + b;
    }
  }
  if (residual) for (let i = 0; i < y.length; i++) y[i] = y[i]! + residual[i]!;
}

export function embeddingHalfCpu(table: Uint16Array, format: HalfFormat, V: number, D: number, ids: Int32Array, out: Float32Array): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (id < 0 || id >= V) throw new ArgumentError(`embedding: token id ${id} at position ${i} is outside the vocabulary [0, ${V})`);
    widenInto(table, format, id * D, out.subarray(i * D, i * D + D));
  }
}
