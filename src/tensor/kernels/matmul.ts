/**
 * Matrix multiplication with weights stored [out, in] (the PyTorch nn.Linear layout):
 *   y[m, n] = Σ_k x[m, k] · w[n, k] + bias[n]        x: [M, K], w: [N, K], y: [M, N]
 *
 * CPU variants:
 *   matmulReference  plain triple loop; the executable definition of the op.
 *   matmulBlocked    4×4 register blocks (16 accumulators, 8 loads per 16 FMAs), column range [n0, n1);
 *                    self-contained so the worker threads (threads.ts) can run its source as-is.
 *   matvecBlocked    matrix–vector (decode: M < 4 rows): 8 weight rows streamed side by side per
 *                    activation load (8 accumulators, 9 loads per 8 FMAs). With one row of x the
 *                    4×4 blocks have nothing to reuse; this kernel is bound by how fast V8 turns
 *                    float32 loads into multiply-adds, not by memory (bench/decode measures both).
 * The dispatcher `matmulCpu` picks the kernel by M and splits the columns across the thread pool
 * when the product is large (matrix–vector products from a smaller size: they are all of decode).
 *
 * GPU variants (WGSL, below the CPU code): weights are packed once at upload (`packLinearWeight`)
 * as wᵀ, [K, Npad] with Npad = N rounded up to 4, so adjacent invocations read adjacent vec4
 * columns. A weight larger than one storage binding (GPT-2's 50257×768 LM head is 154 MB; llvmpipe
 * binds at most 128 MiB) is split into column chunks, each its own buffer and its own dispatch.
 *   blocked4   each invocation: 4 rows × one vec4 of columns, barrier-free (fast on llvmpipe)
 *   blocked1   the same with 1 row: matrix-vector for decode
 *   tiled      64×64 output tiles per workgroup of 16×16, x and w staged in workgroup memory, a
 *              4×4 register block per invocation (prefill on real GPUs; barriers are emulated on
 *              llvmpipe, so it is slow there)
 *   splitk     matrix-vector with K split over 16 invocations per vec4 column and a workgroup
 *              reduction (decode on real GPUs, where one invocation per column starves the chip)
 *   plain      unpacked [N, K] weights (tensors made on the GPU): one invocation per output
 * `chooseMatmulVariant` picks per adapter and M; SPIKELM_MATMUL=<variant> overrides it.
 *
 * Weight formats: a packed weight lives on the GPU in float32 or in IEEE binary16 (`f16`: two halves
 * per u32, read with WGSL's core `unpack2x16float`, so no `shader-f16` feature is needed and every
 * adapter can run it, llvmpipe included). Arithmetic stays float32 either way; f16 halves the memory
 * and the bandwidth of every weight read. Every variant reads through `wv4` (`weightAccessWgsl`),
 * so the kernels are the same text for both formats.
 */
import { ShapeError } from '../../errors.js';
import { parallelMatmul } from '../threads.js';
import { GpuError } from '../gpu/device.js';
import { type GpuRuntime, GpuTensor, fillTemplate } from '../gpu/runtime.js';
import { numberToF16Bits } from '../dtype.js';
import type { Tensor } from '../tensor.js';
import { type HalfTensor, isHalf, widenInto } from '../half.js';

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

/** Rows of x below which the matrix–vector kernel is used. */
export const MATVEC_MAX_ROWS = 4;

/**
 * Matrix–vector kernel over output columns [n0, n1), row by row of x: each pass streams 8 weight
 * rows and loads each x value once for all 8. Self-contained (shipped to the workers as source).
 */
export function matvecBlocked(
  x: Float32Array, w: Float32Array, bias: Float32Array | null, y: Float32Array,
  M: number, K: number, N: number, n0: number, n1: number,
): void {
  for (let m = 0; m < M; m++) {
    const xo = m * K, yo = m * N;
    let n = n0;
    for (; n + 8 <= n1; n += 8) {
      const p0 = n * K;
      let a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
      for (let k = 0, p = p0; k < K; k++, p++) {
        const xk = x[xo + k]!;
        a0 += xk * w[p]!; a1 += xk * w[p + K]!; a2 += xk * w[p + 2 * K]!; a3 += xk * w[p + 3 * K]!;
        a4 += xk * w[p + 4 * K]!; a5 += xk * w[p + 5 * K]!; a6 += xk * w[p + 6 * K]!; a7 += xk * w[p + 7 * K]!;
      }
      if (bias) {
        a0 += bias[n]!; a1 += bias[n + 1]!; a2 += bias[n + 2]!; a3 += bias[n + 3]!;
        a4 += bias[n + 4]!; a5 += bias[n + 5]!; a6 += bias[n + 6]!; a7 += bias[n + 7]!;
      }
      const o = yo + n;
      y[o] = a0; y[o + 1] = a1; y[o + 2] = a2; y[o + 3] = a3; y[o + 4] = a4; y[o + 5] = a5; y[o + 6] = a6; y[o + 7] = a7;
    }
    for (; n < n1; n++) {
      const p0 = n * K;
      let a = bias ? bias[n]! : 0;
      for (let k = 0; k < K; k++) a += x[xo + k]! * w[p0 + k]!;
      y[yo + n] = a;
    }
  }
}

/** Dispatcher: y (allocated by the caller, length M·N) = x·wᵀ + bias (+ residual, fused add). */
export function matmulCpu(x: Float32Array, w: Float32Array, bias: Float32Array | undefined, y: Float32Array, M: number, K: number, N: number, residual?: Float32Array): void {
  if (x.length !== M * K) throw new ShapeError(`matmul: x has ${x.length} elements, expected M·K = ${M}·${K}`);
  if (w.length !== N * K) throw new ShapeError(`matmul: weight has ${w.length} elements, expected N·K = ${N}·${K}`);
  if (bias && bias.length !== N) throw new ShapeError(`matmul: bias has ${bias.length} elements, expected N = ${N}`);
  if (y.length !== M * N) throw new ShapeError(`matmul: output has ${y.length} elements, expected M·N = ${M}·${N}`);
  if (residual && residual.length !== M * N) throw new ShapeError(`matmul: residual has ${residual.length} elements, expected M·N = ${M}·${N}`);
  if (parallelMatmul(x, w, bias ?? null, y, M, K, N)) {
    // done across the pool (the same kernels, column ranges split)
  } else if (M < MATVEC_MAX_ROWS) matvecBlocked(x, w, bias ?? null, y, M, K, N, 0, N);
  else matmulBlocked(x, w, bias ?? null, y, M, K, N, 0, N);
  if (residual) for (let i = 0; i < y.length; i++) y[i] = y[i]! + residual[i]!;
}

// ---------------------------------------------------------------------------------------------
// GPU twins

export type MatmulVariant = 'blocked4' | 'blocked1' | 'tiled' | 'splitk' | 'plain';
export const PACKED_VARIANTS: readonly MatmulVariant[] = ['blocked4', 'blocked1', 'tiled', 'splitk'];

interface WeightChunk {
  readonly buffer: GPUBuffer;
  /** Output columns [n0, n1) of the full weight. */
  readonly n0: number;
  readonly n1: number;
  /** Packed row length (columns rounded up to 4). */
  readonly nPad: number;
}

/** How a packed weight's values are stored on the GPU (arithmetic is float32 for both). */
export type WeightFormat = 'f32' | 'f16';
export const WEIGHT_FORMATS: readonly WeightFormat[] = ['f32', 'f16'];

/**
 * The arithmetic of the dense matmul kernels on a packed weight: float32 products (`f32`, the
 * default), or binary16 products of f16 weights and activations rounded to f16, accumulated in
 * float32 (`f16`; WGSL's `enable f16`, the device's shader-f16 feature; f16 weights only). The spike
 * kernels (event-driven rows, plane accumulation) only add weights and stay float32.
 */
export type GpuArithmetic = 'f32' | 'f16';
export const GPU_ARITHMETICS: readonly GpuArithmetic[] = ['f32', 'f16'];

/** A linear weight [N, K] packed for the GPU as wᵀ column chunks. */
export class GpuLinearWeight {
  disposed = false;
  constructor(readonly shape: readonly [number, number], readonly chunks: readonly WeightChunk[], readonly format: WeightFormat = 'f32', readonly arithmetic: GpuArithmetic = 'f32') {
    if (arithmetic === 'f16' && format !== 'f16') throw new GpuError('f16 arithmetic needs weights stored in f16');
  }
}

/**
 * WGSL: the product of an activation and a vec4 of weights, in the weight's arithmetic — float32, or
 * f16 × f16 (the weights are exact in f16; the activation is rounded to it) widened for the float32
 * accumulator. `{{enable}}` is the line a module needs first.
 */
function arithmeticWgsl(arithmetic: GpuArithmetic): { enable: string; mul: string } {
  return arithmetic === 'f16'
    ? { enable: 'enable f16;', mul: 'fn mulw(x: f32, w: vec4f) -> vec4f { return vec4f(f16(x) * vec4<f16>(w)); }' }
    : { enable: '', mul: 'fn mulw(x: f32, w: vec4f) -> vec4f { return x * w; }' };
}

/**
 * True when every value is a binary16 value (finite, and equal to itself rounded to f16): storing
 * such a weight in f16 loses nothing. Weights read from F16 checkpoints are; float32 ones almost
 * never are (the first value with low mantissa bits set answers, without a full pass). Decided on the
 * float32 bits, without converting (a round trip through numberToF16Bits took 88 ns a value here,
 * ≈ 11 s over GPT-2-small's 124M weights; this takes ~5 ns).
 */
export function isF16Exact(a: Float32Array): boolean {
  const bits = new Uint32Array(a.buffer, a.byteOffset, a.length);
  for (let i = 0; i < a.length; i++) {
    const abs = bits[i]! & 0x7fffffff;
    if (abs === 0) continue;
    const e = (abs >>> 23) - 127; // unbiased exponent (NaN and Inf: 128)
    if (e > 15 || e < -24) return false;
    // normal binary16 (e ≥ −14): 10 mantissa bits, so the low 13 of float32's 23 are zero; subnormal
    // binary16: a multiple of 2^−24, so the low −(e + 1) bits of the 24-bit significand are zero
    const lowBits = e >= -14 ? 13 : -(e + 1);
    if (((abs & 0x7fffff) | 0x800000) & ((1 << lowBits) - 1)) return false;
  }
  return true;
}

/**
 * Pack w [N, K] as wᵀ [K, Npad] chunks no larger than `maxBytes` each, in float32 or (`f16`) as
 * binary16 rounded to nearest even, two columns per u32 (the lower half is the even column).
 */
export function packLinearWeight(rt: GpuRuntime, w: Tensor | HalfTensor, maxBytes = rt.maxBindingBytes, format: WeightFormat = 'f32', arithmetic: GpuArithmetic = 'f32'): GpuLinearWeight {
  const [N, K] = w.shape as [number, number];
  // a 16-bit host weight is read a row at a time (widened exactly), never as a widened copy
  const scratch = isHalf(w) ? new Float32Array(K) : undefined;
  const rowOf = (n: number): Float32Array => (isHalf(w) ? (widenInto(w.bits, w.format, n * K, scratch!), scratch!) : w.data.subarray(n * K, (n + 1) * K));
  const bytesPerValue = format === 'f16' ? 2 : 4;
  const colsPerChunk = Math.max(4, Math.floor(maxBytes / (bytesPerValue * Math.max(K, 1)) / 4) * 4);
  if (K * 4 * bytesPerValue > maxBytes) throw new GpuError(`matmul weight [${N}, ${K}]: even 4 columns exceed the binding limit of ${maxBytes} bytes`);
  const chunks: WeightChunk[] = [];
  for (let n0 = 0; n0 < N; n0 += colsPerChunk) {
    const n1 = Math.min(N, n0 + colsPerChunk);
    const nPad = Math.ceil((n1 - n0) / 4) * 4;
    let packed: Float32Array | Uint32Array;
    if (format === 'f16') {
      const halves = new Uint16Array(K * nPad); // little-endian: element 2i is the low half of u32 i
      for (let n = n0; n < n1; n++) {
        const row = rowOf(n);
        for (let k = 0; k < K; k++) halves[k * nPad + (n - n0)] = numberToF16Bits(row[k]!);
      }
      packed = new Uint32Array(halves.buffer);
    } else {
      packed = new Float32Array(K * nPad);
      for (let n = n0; n < n1; n++) {
        const row = rowOf(n);
        for (let k = 0; k < K; k++) packed[k * nPad + (n - n0)] = row[k]!;
      }
    }
    chunks.push({ buffer: rt.fromHost([K, nPad * bytesPerValue / 4], packed, `weight chunk [${n0}, ${n1}) ${format}`).buffer, n0, n1, nPad });
  }
  return new GpuLinearWeight([N, K], chunks, format, arithmetic);
}

/**
 * WGSL: the packed weight at `@binding(binding)` and its reader `wv4(i)`, the i-th vec4 of columns
 * (index in vec4 units: k·nPad/4 + c4).
 */
export function weightAccessWgsl(binding: number, format: WeightFormat): string {
  if (format === 'f32') {
    return `
@group(0) @binding(${binding}) var<storage, read> w: array<vec4f>;
fn wv4(i: u32) -> vec4f { return w[i]; }`;
  }
  return `
@group(0) @binding(${binding}) var<storage, read> w: array<vec2u>;
fn wv4(i: u32) -> vec4f {
  let h = w[i];
  return vec4f(unpack2x16float(h.x), unpack2x16float(h.y));
}`;
}

/** The bindings every variant declares (x, w, bias, y, residual, params); `plain` reads w [N, K] as f32. */
function matmulBindings(params: string, weight: WeightFormat | 'plain', arithmetic: GpuArithmetic = 'f32'): string {
  const a = arithmeticWgsl(arithmetic);
  return `${a.enable}
${a.mul}
struct Params { ${params} }
@group(0) @binding(0) var<storage, read> x: array<f32>;
${weight === 'plain' ? '@group(0) @binding(1) var<storage, read> w: array<f32>;' : weightAccessWgsl(1, weight)}
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> residual: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;`;
}

/** Epilogue of the vec4 variants: four outputs of row m, plus bias and residual, bounds-checked. */
const STORE_VEC4_WGSL = `
fn store(m: u32, c4: u32, acc: vec4f) {
  for (var j = 0u; j < 4u; j++) {
    let n = c4 * 4u + j;
    if (n < p.nValid) {
      var v = acc[j];
      if (p.hasBias != 0u) { v += bias[p.colOffset + n]; }
      if (p.hasResidual != 0u) { v += residual[m * p.N + p.colOffset + n]; }
      y[m * p.N + p.colOffset + n] = v;
    }
  }
}`;

const BLOCKED_WGSL = `{{bindings}}
${STORE_VEC4_WGSL}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let idx = gid.y * p.threadsX + gid.x;
  let c4 = idx % p.nPad4;
  let rb = idx / p.nPad4;
  if (rb >= p.rowBlocks) { return; }
  let m0 = rb * {{rows}}u;
{{rowBases}}
{{accumulators}}
  for (var k = 0u; k < p.K; k++) {
    let wv = wv4(k * p.nPad4 + c4);
{{fmas}}
  }
{{writes}}
}`;

function blockedSource(rows: number, format: WeightFormat, arithmetic: GpuArithmetic): string {
  const r = Array.from({ length: rows }, (_, i) => i);
  return fillTemplate(BLOCKED_WGSL, {
    bindings: matmulBindings('M: u32, K: u32, N: u32, nPad4: u32, nValid: u32, colOffset: u32, hasBias: u32, rowBlocks: u32, threadsX: u32, hasResidual: u32', format, arithmetic),
    rows,
    rowBases: r.map((i) => `  let xb${i} = min(m0 + ${i}u, p.M - 1u) * p.K;`).join('\n'),
    accumulators: r.map((i) => `  var acc${i} = vec4f(0.0);`).join('\n'),
    fmas: r.map((i) => `    acc${i} += mulw(x[xb${i} + k], wv);`).join('\n'),
    writes: r.map((i) => `  if (m0 + ${i}u < p.M) { store(m0 + ${i}u, c4, acc${i}); }`).join('\n'),
  });
}

/**
 * Prefill on hardware: a workgroup of 16×16 invocations computes a 64×64 output tile, each
 * invocation a 4×4 register block (4 rows × one vec4 of columns). Per step of 16 in K the workgroup
 * stages x [64 rows × 16] and w [16 × 64 columns] in workgroup memory (coalesced: adjacent
 * invocations load adjacent values); each invocation then does 16 × 4 vec4 multiply-adds from 16
 * vec4 and 64 scalar workgroup reads — 4× the arithmetic per load of a one-output-per-invocation tile.
 */
const TILED_WGSL = `{{bindings}}
${STORE_VEC4_WGSL}
var<workgroup> xs: array<f32, 1024>;  // [64 rows][16 k]
var<workgroup> ws: array<vec4f, 256>; // [16 k][16 vec4 columns]
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let c4 = wid.x * 16u + lid.x;
  let mBase = wid.y * 64u;
  let li = lid.y * 16u + lid.x;
  let r0 = lid.y * 4u;
  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var acc2 = vec4f(0.0);
  var acc3 = vec4f(0.0);
  for (var k0 = 0u; k0 < p.K; k0 += 16u) {
    for (var j = 0u; j < 4u; j++) {
      let e = li + j * 256u;
      let m = mBase + e / 16u;
      let k = k0 + e % 16u;
      var xv = 0.0;
      if (m < p.M && k < p.K) { xv = x[m * p.K + k]; }
      xs[e] = xv;
    }
    var wv = vec4f(0.0);
    if (k0 + lid.y < p.K && c4 < p.nPad4) { wv = wv4((k0 + lid.y) * p.nPad4 + c4); }
    ws[li] = wv;
    workgroupBarrier();
    for (var kk = 0u; kk < 16u; kk++) {
      let b = ws[kk * 16u + lid.x];
      acc0 += mulw(xs[r0 * 16u + kk], b);
      acc1 += mulw(xs[(r0 + 1u) * 16u + kk], b);
      acc2 += mulw(xs[(r0 + 2u) * 16u + kk], b);
      acc3 += mulw(xs[(r0 + 3u) * 16u + kk], b);
    }
    workgroupBarrier();
  }
  if (c4 < p.nPad4) {
    let m0 = mBase + r0;
    if (m0 < p.M) { store(m0, c4, acc0); }
    if (m0 + 1u < p.M) { store(m0 + 1u, c4, acc1); }
    if (m0 + 2u < p.M) { store(m0 + 2u, c4, acc2); }
    if (m0 + 3u < p.M) { store(m0 + 3u, c4, acc3); }
  }
}`;

const SPLITK_WGSL = `{{bindings}}
${STORE_VEC4_WGSL}
var<workgroup> partial: array<vec4f, 256>;
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let c4 = wid.x * 16u + lid.x;
  let m = wid.y;
  var acc = vec4f(0.0);
  if (c4 < p.nPad4) {
    for (var k = lid.y; k < p.K; k += 16u) { acc += mulw(x[m * p.K + k], wv4(k * p.nPad4 + c4)); }
  }
  partial[lid.y * 16u + lid.x] = acc;
  workgroupBarrier();
  for (var stride = 8u; stride > 0u; stride = stride / 2u) {
    if (lid.y < stride) { partial[lid.y * 16u + lid.x] += partial[(lid.y + stride) * 16u + lid.x]; }
    workgroupBarrier();
  }
  if (lid.y == 0u && c4 < p.nPad4) { store(m, c4, partial[lid.x]); }
}`;

const PACKED_PARAMS = 'M: u32, K: u32, N: u32, nPad4: u32, nValid: u32, colOffset: u32, hasBias: u32, hasResidual: u32';

const PLAIN_WGSL = `${matmulBindings('M: u32, K: u32, N: u32, hasBias: u32, threadsX: u32, hasResidual: u32', 'plain')}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let idx = gid.y * p.threadsX + gid.x;
  if (idx >= p.M * p.N) { return; }
  let m = idx / p.N;
  let n = idx % p.N;
  var acc = 0.0;
  for (var k = 0u; k < p.K; k++) { acc += x[m * p.K + k] * w[n * p.K + k]; }
  if (p.hasBias != 0u) { acc += bias[n]; }
  if (p.hasResidual != 0u) { acc += residual[idx]; }
  y[idx] = acc;
}`;

export function chooseMatmulVariant(rt: GpuRuntime, M: number): MatmulVariant {
  const forced = process.env.SPIKELM_MATMUL as MatmulVariant | undefined;
  if (forced && PACKED_VARIANTS.includes(forced)) return forced;
  if (rt.ctx.report.software) return M === 1 ? 'blocked1' : 'blocked4';
  return M <= 4 ? 'splitk' : 'tiled';
}

/** y [M, N] = x [M, K] · wᵀ + bias (+ residual [M, N]) on the GPU. */
export function matmulGpu(rt: GpuRuntime, x: GpuTensor, w: GpuLinearWeight | GpuTensor, bias: GpuTensor | undefined, y: GpuTensor, M: number, K: number, N: number, variant?: MatmulVariant, residual?: GpuTensor): void {
  const biasBuffer = (bias ?? x).buffer; // any buffer will do when hasBias = 0
  const residualBuffer = (residual ?? x).buffer;
  const hasBias = bias ? 1 : 0, hasResidual = residual ? 1 : 0;
  if (w instanceof GpuTensor) {
    const pipe = rt.pipeline('matmul/plain', () => PLAIN_WGSL);
    const { groups, threadsX } = rt.groups1d(M * N, 64);
    rt.dispatch(pipe, [x.buffer, w.buffer, biasBuffer, y.buffer, residualBuffer], [M, K, N, hasBias, threadsX, hasResidual], groups);
    return;
  }
  const v = variant ?? chooseMatmulVariant(rt, M);
  const f = w.format, a = w.arithmetic, key = a === 'f16' ? `${f}/f16-arithmetic` : f;
  for (const c of w.chunks) {
    const nValid = c.n1 - c.n0, nPad4 = c.nPad / 4;
    const buffers = [x.buffer, c.buffer, biasBuffer, y.buffer, residualBuffer];
    if (v === 'blocked4' || v === 'blocked1') {
      const rows = v === 'blocked4' ? 4 : 1;
      const rowBlocks = Math.ceil(M / rows);
      const pipe = rt.pipeline(`matmul/${v}/${key}`, () => blockedSource(rows, f, a));
      const { groups, threadsX } = rt.groups1d(rowBlocks * nPad4, 64);
      rt.dispatch(pipe, buffers, [M, K, N, nPad4, nValid, c.n0, hasBias, rowBlocks, threadsX, hasResidual], groups);
    } else if (v === 'tiled') {
      const pipe = rt.pipeline(`matmul/tiled/${key}`, () => fillTemplate(TILED_WGSL, { bindings: matmulBindings(PACKED_PARAMS, f, a) }));
      rt.dispatch(pipe, buffers, [M, K, N, nPad4, nValid, c.n0, hasBias, hasResidual], [Math.ceil(nPad4 / 16), Math.ceil(M / 64)]);
    } else if (v === 'splitk') {
      const pipe = rt.pipeline(`matmul/splitk/${key}`, () => fillTemplate(SPLITK_WGSL, { bindings: matmulBindings(PACKED_PARAMS, f, a) }));
      rt.dispatch(pipe, buffers, [M, K, N, nPad4, nValid, c.n0, hasBias, hasResidual], [Math.ceil(nPad4 / 16), M]);
    } else {
      throw new GpuError(`matmul: variant "${v}" needs an unpacked weight`);
    }
  }
}
