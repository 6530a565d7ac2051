/**
 * The two-stage LM head's selection and refinement (src/snn/layerwise.ts, SpikingConfig.head): the
 * coarse planes of the head's input reach every output, the selection picks the k leading coarse
 * logits of each row, and only those receive the remaining planes.
 *
 *   topK     per row of x [R, N]: the columns of its k first-ranked values, in rank order. The rank is
 *            the sampler's (kernels/sampling.ts keyOf): larger first, equal values by smaller index,
 *            −0 below +0, NaN last. Written as float32 indices (exact below 2^24), [R, k].
 *   refine   y = coarse [R, N], except at each row's selected columns n = idx[r, j], which get the
 *            full product of the row's input with weight row n:
 *              digit sums      y[r, n] = Σ_k m[r, k]·W[n, k] + bias[n]
 *              digit planes    the membrane doubles at every plane and each event adds ±W[n, k]
 *                              (Horner's rule, as kernels/plane-matmul.ts computes every column)
 *            with W = W·diag(θ)·unit as folded for the head. A negative index leaves its column.
 *
 *   topKCpu / refineCpu   plain loops: insertion into the k ranked slots (one pass over the row);
 *                         exact float64 products summed in k order, rounded once (as the dense
 *                         and plane kernels), so the selected columns are the one-stage head's
 *   WGSL                  topK: one invocation per row, k ranked slots in private memory (the
 *                         reference shape: a row of a 50k vocabulary is one 50k-step loop);
 *                         refine: one invocation per (row, selected column), reading the packed
 *                         wᵀ chunk that holds the column
 */
import { ArgumentError } from '../../errors.js';
import { type GpuRuntime, type GpuTensor, fillTemplate } from '../gpu/runtime.js';
import { type GpuLinearWeight, weightAccessWgsl } from './matmul.js';
import { KEY_OF_WGSL } from './sampling.js';

/** Most columns a row may select (the WGSL kernel's private slots). */
export const MAX_TOP_K = 64;

export function checkTopK(k: number, N: number, where: string): void {
  if (!Number.isInteger(k) || k < 1 || k > MAX_TOP_K || k > N) throw new ArgumentError(`${where}: k must be an integer from 1 to ${Math.min(MAX_TOP_K, N)} (the row has ${N} columns), got ${k}`);
}

/** keyOf (sampling.ts) on raw float32 bits: monotone in the value, NaN lowest. */
function keyOfBits(b: number): number {
  if ((b & 0x7fffffff) > 0x7f800000) return 0;
  return b & 0x80000000 ? ~b >>> 0 : (b | 0x80000000) >>> 0;
}

export function topKCpu(x: Float32Array, R: number, N: number, k: number, out: Float32Array): void {
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const keys = new Uint32Array(k), ids = new Int32Array(k);
  for (let r = 0; r < R; r++) {
    const o = r * N;
    let filled = 0;
    for (let i = 0; i < N; i++) {
      const key = keyOfBits(bits[o + i]!);
      // a later column of an equal value ranks below the ones already held
      if (filled === k && key <= keys[k - 1]!) continue;
      let j = filled === k ? k - 1 : filled++;
      while (j > 0 && keys[j - 1]! < key) {
        keys[j] = keys[j - 1]!;
        ids[j] = ids[j - 1]!;
        j--;
      }
      keys[j] = key;
      ids[j] = i;
    }
    for (let j = 0; j < k; j++) out[r * k + j] = j < filled ? ids[j]! : -1;
  }
}

/**
 * `x`: digit sums [R, K] (planes = 0) or digit planes [planes·R, K]; `w` [N, K] row-major (the
 * folded head weight); `y` receives coarse with the selected columns replaced.
 */
export function refineCpu(
  coarse: Float32Array, idx: Float32Array, x: Float32Array, planes: number, w: Float32Array, bias: Float32Array | undefined,
  y: Float32Array, R: number, N: number, K: number, k: number,
): void {
  y.set(coarse.subarray(0, R * N));
  for (let r = 0; r < R; r++) {
    for (let j = 0; j < k; j++) {
      const n = idx[r * k + j]!;
      if (n < 0) continue;
      const wo = n * K;
      let acc = 0;
      if (planes === 0) {
        const xo = r * K;
        for (let c = 0; c < K; c++) acc += x[xo + c]! * w[wo + c]!;
      } else {
        for (let p = 0; p < planes; p++) {
          acc *= 2;
          const xo = (p * R + r) * K;
          for (let c = 0; c < K; c++) {
            const d = x[xo + c]!;
            if (d !== 0) acc += d * w[wo + c]!;
          }
        }
      }
      y[r * N + n] = acc + (bias ? bias[n]! : 0);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// WGSL twins

const TOP_K_WGSL = `
struct Params { R: u32, N: u32, k: u32, threadsX: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> idx: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
${KEY_OF_WGSL}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let r = gid.y * p.threadsX + gid.x;
  if (r >= p.R) { return; }
  var keys: array<u32, ${MAX_TOP_K}>;
  var ids: array<u32, ${MAX_TOP_K}>;
  var filled = 0u;
  for (var i = 0u; i < p.N; i++) {
    let key = keyOf(x[r * p.N + i]);
    if (filled == p.k && key <= keys[p.k - 1u]) { continue; }
    var j = p.k - 1u;
    if (filled < p.k) { j = filled; filled++; }
    loop {
      if (j == 0u) { break; }
      if (keys[j - 1u] >= key) { break; }
      keys[j] = keys[j - 1u];
      ids[j] = ids[j - 1u];
      j--;
    }
    keys[j] = key;
    ids[j] = i;
  }
  for (var j = 0u; j < p.k; j++) { idx[r * p.k + j] = select(-1.0, f32(ids[j]), j < filled); }
}`;

export function topKGpu(rt: GpuRuntime, x: GpuTensor, R: number, N: number, k: number, out: GpuTensor): void {
  const pipe = rt.pipeline('top-k/row', () => TOP_K_WGSL);
  const { groups, threadsX } = rt.groups1d(R, 64);
  rt.dispatch(pipe, [x.buffer, out.buffer], [R, N, k, threadsX], groups);
}

const REFINE_WGSL = `
struct Params { R: u32, K: u32, N: u32, k: u32, P: u32, nPad4: u32, n0: u32, n1: u32, hasBias: u32, threadsX: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> idx: array<f32>;
{{weight}}
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let id = gid.y * p.threadsX + gid.x;
  let r = id / p.k;
  if (r >= p.R) { return; }
  let f = idx[id];
  if (f < 0.0) { return; }
  let n = u32(f);
  if (n < p.n0 || n >= p.n1) { return; }
  let c4 = (n - p.n0) / 4u;
  let lane = (n - p.n0) % 4u;
  var acc = 0.0;
  if (p.P == 0u) {
    for (var c = 0u; c < p.K; c++) { acc += x[r * p.K + c] * wv4(c * p.nPad4 + c4)[lane]; }
  } else {
    for (var j = 0u; j < p.P; j++) {
      acc = acc * 2.0;
      let xo = (j * p.R + r) * p.K;
      for (var c = 0u; c < p.K; c++) {
        let d = x[xo + c];
        if (d != 0.0) { acc += d * wv4(c * p.nPad4 + c4)[lane]; }
      }
    }
  }
  if (p.hasBias != 0u) { acc += bias[n]; }
  y[r * p.N + n] = acc;
}`;

/** `y` must already hold the coarse logits (the backend copies them in). */
export function refineGpu(
  rt: GpuRuntime, idx: GpuTensor, x: GpuTensor, planes: number, w: GpuLinearWeight, bias: GpuTensor | undefined,
  y: GpuTensor, R: number, N: number, K: number, k: number,
): void {
  const pipe = rt.pipeline(`top-k/refine/${w.format}`, () => fillTemplate(REFINE_WGSL, { weight: weightAccessWgsl(2, w.format) }));
  const { groups, threadsX } = rt.groups1d(R * k, 64);
  for (const c of w.chunks) {
    rt.dispatch(pipe, [x.buffer, idx.buffer, c.buffer, (bias ?? x).buffer, y.buffer], [R, K, N, k, planes, c.nPad / 4, c.n0, c.n1, bias ? 1 : 0, threadsX], groups);
  }
}
