/**
 * Matrix multiplication with weights stored [out, in] (the PyTorch nn.Linear layout):
 *   y[m, n] = Σ_k x[m, k] · w[n, k] + bias[n]        x: [M, K], w: [N, K], y: [M, N]
 *
 * CPU variants:
 *   matmulReference  plain triple loop; the executable definition of the op.
 *   matmulBlocked    4×4 register blocks (16 accumulators, 8 loads per 16 FMAs), column range [n0, n1);
 *                    self-contained so the worker threads (threads.ts) can run its source as-is.
 * The dispatcher `matmulCpu` splits the columns across the thread pool when the product is large.
 */
import { ShapeError } from '../../errors.js';
import { parallelMatmul } from '../threads.js';

/** The definition: y = x·wᵀ + bias, accumulated in double precision. */
export function matmulReference(x: Float32Array, w: Float32Array, bias: Float32Array | undefined, M: number, K: number, N: number): Float32Array {
  const y = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let acc = bias ? bias[n]! : 0;
      for (let k = 0; k < K; k++) acc += x[m * K + k]! * w[n * K + k]!;
      y[m * N + n] = acc;
    }
  }
  return y;
}

/**
 * Register-blocked kernel over output columns [n0, n1). Must stay free of references to anything
 * outside its own body: threads.ts ships `matmulBlocked.toString()` to the workers.
 */
export function matmulBlocked(
  x: Float32Array, w: Float32Array, bias: Float32Array | null, y: Float32Array,
  M: number, K: number, N: number, n0: number, n1: number,
): void {
  const m4 = M - (M % 4);
  let n = n0;
  for (; n + 4 <= n1; n += 4) {
    const w0 = n * K, w1 = w0 + K, w2 = w1 + K, w3 = w2 + K;
    const b0 = bias ? bias[n]! : 0, b1 = bias ? bias[n + 1]! : 0, b2 = bias ? bias[n + 2]! : 0, b3 = bias ? bias[n + 3]! : 0;
    let m = 0;
    for (; m < m4; m += 4) {
      const x0 = m * K, x1 = x0 + K, x2 = x1 + K, x3 = x2 + K;
      let a00 = 0, a01 = 0, a02 = 0, a03 = 0, a10 = 0, a11 = 0, a12 = 0, a13 = 0;
      let a20 = 0, a21 = 0, a22 = 0, a23 = 0, a30 = 0, a31 = 0, a32 = 0, a33 = 0;
      for (let k = 0; k < K; k++) {
        const xa = x[x0 + k]!, xb = x[x1 + k]!, xc = x[x2 + k]!, xd = x[x3 + k]!;
        const wa = w[w0 + k]!, wb = w[w1 + k]!, wc = w[w2 + k]!, wd = w[w3 + k]!;
        a00 += xa * wa; a01 += xa * wb; a02 += xa * wc; a03 += xa * wd;
        a10 += xb * wa; a11 += xb * wb; a12 += xb * wc; a13 += xb * wd;
        a20 += xc * wa; a21 += xc * wb; a22 += xc * wc; a23 += xc * wd;
        a30 += xd * wa; a31 += xd * wb; a32 += xd * wc; a33 += xd * wd;
      }
      let o = m * N + n;
      y[o] = a00 + b0; y[o + 1] = a01 + b1; y[o + 2] = a02 + b2; y[o + 3] = a03 + b3; o += N;
      y[o] = a10 + b0; y[o + 1] = a11 + b1; y[o + 2] = a12 + b2; y[o + 3] = a13 + b3; o += N;
      y[o] = a20 + b0; y[o + 1] = a21 + b1; y[o + 2] = a22 + b2; y[o + 3] = a23 + b3; o += N;
      y[o] = a30 + b0; y[o + 1] = a31 + b1; y[o + 2] = a32 + b2; y[o + 3] = a33 + b3;
    }
    for (; m < M; m++) {
      const x0 = m * K;
      let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      for (let k = 0; k < K; k++) {
        const xa = x[x0 + k]!;
        a0 += xa * w[w0 + k]!; a1 += xa * w[w1 + k]!; a2 += xa * w[w2 + k]!; a3 += xa * w[w3 + k]!;
      }
      const o = m * N + n;
      y[o] = a0 + b0; y[o + 1] = a1 + b1; y[o + 2] = a2 + b2; y[o + 3] = a3 + b3;
    }
  }
  for (; n < n1; n++) {
    const w0 = n * K;
    const b = bias ? bias[n]! : 0;
    for (let m = 0; m < M; m++) {
      const x0 = m * K;
      let a = 0;
      for (let k = 0; k < K; k++) a += x[x0 + k]! * w[w0 + k]!;
      y[m * N + n] = a + b;
    }
  }
}

/** Dispatcher: y (allocated by the caller, length M·N) = x·wᵀ + bias. */
export function matmulCpu(x: Float32Array, w: Float32Array, bias: Float32Array | undefined, y: Float32Array, M: number, K: number, N: number): void {
  if (x.length !== M * K) throw new ShapeError(`matmul: x has ${x.length} elements, expected M·K = ${M}·${K}`);
  if (w.length !== N * K) throw new ShapeError(`matmul: weight has ${w.length} elements, expected N·K = ${N}·${K}`);
  if (bias && bias.length !== N) throw new ShapeError(`matmul: bias has ${bias.length} elements, expected N = ${N}`);
  if (y.length !== M * N) throw new ShapeError(`matmul: output has ${y.length} elements, expected M·N = ${M}·${N}`);
  if (!parallelMatmul(x, w, bias ?? null, y, M, K, N)) matmulBlocked(x, w, bias ?? null, y, M, K, N, 0, N);
}
