/**
 * Row normalisations over the last dimension of x: [R, C].
 *   layerNorm: y = (x − mean) / √(var + eps) · γ + β     (biased variance, as torch.nn.LayerNorm)
 *   rmsNorm:   y = x / √(mean(x²) + eps) · γ             (Llama RMSNorm)
 * Statistics are accumulated in double precision.
 */
import { ArgumentError } from '../../errors.js';
import { type GpuRuntime, type GpuTensor, fillTemplate } from '../gpu/runtime.js';
import { type Reduction, type RowVariant, WORKGROUP_ROW_WGSL, chooseReduction, chooseRowVariant, reductionParts, rowGroups } from '../gpu/variants.js';

export function layerNormCpu(x: Float32Array, gamma: Float32Array, beta: Float32Array | undefined, eps: number, R: number, C: number, out: Float32Array): void {
  for (let r = 0; r < R; r++) {
    const o = r * C;
    let mean = 0;
    for (let c = 0; c < C; c++) mean += x[o + c]!;
    mean /= C;
    let variance = 0;
    for (let c = 0; c < C; c++) {
      const d = x[o + c]! - mean;
      variance += d * d;
    }
    variance /= C;
    const inv = 1 / Math.sqrt(variance + eps);
    for (let c = 0; c < C; c++) out[o + c] = (x[o + c]! - mean) * inv * gamma[c]! + (beta ? beta[c]! : 0);
  }
}

export function rmsNormCpu(x: Float32Array, gamma: Float32Array, eps: number, R: number, C: number, out: Float32Array): void {
  for (let r = 0; r < R; r++) {
    const o = r * C;
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[o + c]! * x[o + c]!;
    const inv = 1 / Math.sqrt(ss / C + eps);
    for (let c = 0; c < C; c++) out[o + c] = x[o + c]! * inv * gamma[c]!;
  }
}

// ---------------------------------------------------------------------------------------------
// GPU twins, two shapes (gpu/variants.ts chooses per adapter; SPIKELM_ROWS forces one):
//   row        one invocation per row, two passes like the CPU code (barrier-free: llvmpipe)
//   workgroup  one workgroup of 256 per row: each invocation strides over the row, the partial sums
//              meet in tree reductions in workgroup memory (mean, then the centred variance)

const NORM_WGSL = `
struct Params { R: u32, C: u32, eps: f32, hasBeta: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let r = gid.x;
  if (r >= p.R) { return; }
  let o = r * p.C;
{{body}}
}`;

const LAYERNORM_BODY = `
  var mean = 0.0;
  for (var c = 0u; c < p.C; c++) { mean += x[o + c]; }
  mean = mean / f32(p.C);
  var variance = 0.0;
  for (var c = 0u; c < p.C; c++) { let d = x[o + c] - mean; variance += d * d; }
  let inv = inverseSqrt(variance / f32(p.C) + p.eps);
  for (var c = 0u; c < p.C; c++) {
    var v = (x[o + c] - mean) * inv * gamma[c];
    if (p.hasBeta != 0u) { v += beta[c]; }
    y[o + c] = v;
  }`;

const RMSNORM_BODY = `
  var ss = 0.0;
  for (var c = 0u; c < p.C; c++) { ss += x[o + c] * x[o + c]; }
  let inv = inverseSqrt(ss / f32(p.C) + p.eps);
  for (var c = 0u; c < p.C; c++) { y[o + c] = x[o + c] * inv * gamma[c]; }`;

const NORM_WORKGROUP_WGSL = `{{enable}}
struct Params { R: u32, C: u32, eps: f32, hasBeta: u32, rowsPerY: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
{{reduce}}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32{{sgParams}}) {
{{sgInit}}
${WORKGROUP_ROW_WGSL}
{{body}}
}`;

const LAYERNORM_WORKGROUP_BODY = `
  var s = 0.0;
  for (var c = lid; c < C; c += WG) { s += x[o + c]; }
  let mean = wgSum(lid, s) / f32(p.C);
  var v = 0.0;
  for (var c = lid; c < C; c += WG) { let d = x[o + c] - mean; v += d * d; }
  let inv = inverseSqrt(wgSum2(lid, v) / f32(p.C) + p.eps);
  for (var c = lid; c < C; c += WG) {
    var out = (x[o + c] - mean) * inv * gamma[c];
    if (p.hasBeta != 0u) { out += beta[c]; }
    y[o + c] = out;
  }`;

const RMSNORM_WORKGROUP_BODY = `
  var ss = 0.0;
  for (var c = lid; c < C; c += WG) { ss += x[o + c] * x[o + c]; }
  let inv = inverseSqrt(wgSum(lid, ss) / f32(p.C) + p.eps);
  for (var c = lid; c < C; c += WG) { y[o + c] = x[o + c] * inv * gamma[c]; }`;

function normGpu(rt: GpuRuntime, kind: 'layer' | 'rms', x: GpuTensor, gamma: GpuTensor, beta: GpuTensor | undefined, eps: number, R: number, C: number, y: GpuTensor, variant: RowVariant, reduction?: Reduction): void {
  const buffers = [x.buffer, gamma.buffer, (beta ?? gamma).buffer, y.buffer];
  if (variant === 'workgroup') {
    const body = kind === 'layer' ? LAYERNORM_WORKGROUP_BODY : RMSNORM_WORKGROUP_BODY;
    const red = reduction ?? chooseReduction(rt);
    const pipe = rt.pipeline(`norm/${kind}/workgroup/${red}`, () => fillTemplate(NORM_WORKGROUP_WGSL, { body, ...reductionParts(red, 256) }));
    const groups = rowGroups(rt, R);
    rt.dispatch(pipe, buffers, [R, C, { f32: eps }, beta ? 1 : 0, groups[0]], groups);
    return;
  }
  const pipe = rt.pipeline(`norm/${kind}`, () => fillTemplate(NORM_WGSL, { body: kind === 'layer' ? LAYERNORM_BODY : RMSNORM_BODY }));
  rt.dispatch(pipe, buffers, [R, C, { f32: eps }, beta ? 1 : 0], [Math.ceil(R / 64)]);
}

export function layerNormGpu(rt: GpuRuntime, x: GpuTensor, gamma: GpuTensor, beta: GpuTensor | undefined, eps: number, R: number, C: number, y: GpuTensor, variant = chooseRowVariant(rt), reduction?: Reduction): void {
  normGpu(rt, 'layer', x, gamma, beta, eps, R, C, y, variant, reduction);
}

export function rmsNormGpu(rt: GpuRuntime, x: GpuTensor, gamma: GpuTensor, eps: number, R: number, C: number, y: GpuTensor, variant = chooseRowVariant(rt), reduction?: Reduction): void {
  normGpu(rt, 'rms', x, gamma, undefined, eps, R, C, y, variant, reduction);
}

// ---------------------------------------------------------------------------------------------
// qkNorm: Qwen3's per-head RMSNorm of q and k inside a fused q|k|v row, before RoPE.
//   qkv [R, H·d + 2·Hkv·d]: each of the H q heads is rmsNorm'd over its d values with γq [d], each
//   of the Hkv k heads with γk [d]; the v heads pass through unchanged.

export interface QkNormHeads {
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
}

/** The fused row must hold exactly the heads, and each gain one value per head dimension. */
export function checkQkNorm(qkv: { shape: readonly number[] }, qGamma: { shape: readonly number[] }, kGamma: { shape: readonly number[] }, heads: QkNormHeads): void {
  const width = (heads.numHeads + 2 * heads.numKvHeads) * heads.headDim;
  if (qkv.shape.at(-1) !== width) throw new ArgumentError(`qkNorm: rows of ${qkv.shape.at(-1)} values, expected ${width} (${heads.numHeads} q + 2·${heads.numKvHeads} kv heads of ${heads.headDim})`);
  for (const [name, g] of [['q', qGamma], ['k', kGamma]] as const) {
    if (g.shape.length !== 1 || g.shape[0] !== heads.headDim) throw new ArgumentError(`qkNorm: the ${name} gain has shape [${g.shape.join(', ')}], expected [${heads.headDim}]`);
  }
}

export function qkNormCpu(qkv: Float32Array, qGamma: Float32Array, kGamma: Float32Array, heads: QkNormHeads, eps: number, R: number, out: Float32Array): void {
  const { numHeads: H, numKvHeads: Hkv, headDim: d } = heads;
  const width = (H + 2 * Hkv) * d;
  out.set(qkv.subarray(0, R * width));
  for (let r = 0; r < R; r++) {
    for (let h = 0; h < H + Hkv; h++) {
      const o = r * width + h * d, gamma = h < H ? qGamma : kGamma;
      let ss = 0;
      for (let i = 0; i < d; i++) ss += qkv[o + i]! * qkv[o + i]!;
      const inv = 1 / Math.sqrt(ss / d + eps);
      for (let i = 0; i < d; i++) out[o + i] = qkv[o + i]! * inv * gamma[i]!;
    }
  }
}

/** One invocation per (row, head) of q and k (what llvmpipe and real GPUs both run well at d ≤ 256); v is copied. */
const QK_NORM_WGSL = `
struct Params { R: u32, H: u32, Hkv: u32, d: u32, eps: f32, threadsX: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gq: array<f32>;
@group(0) @binding(2) var<storage, read> gk: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let t = gid.y * p.threadsX + gid.x;
  let perRow = p.H + 2u * p.Hkv;
  if (t >= p.R * perRow) { return; }
  let r = t / perRow;
  let h = t % perRow;
  let o = (r * perRow + h) * p.d;
  if (h >= p.H + p.Hkv) {
    for (var i = 0u; i < p.d; i++) { y[o + i] = x[o + i]; }
    return;
  }
  var ss = 0.0;
  for (var i = 0u; i < p.d; i++) { ss += x[o + i] * x[o + i]; }
  let inv = inverseSqrt(ss / f32(p.d) + p.eps);
  for (var i = 0u; i < p.d; i++) {
    var g = gk[i];
    if (h < p.H) { g = gq[i]; }
    y[o + i] = x[o + i] * inv * g;
  }
}`;

export function qkNormGpu(rt: GpuRuntime, qkv: GpuTensor, qGamma: GpuTensor, kGamma: GpuTensor, heads: QkNormHeads, eps: number, R: number, y: GpuTensor): void {
  const units = R * (heads.numHeads + 2 * heads.numKvHeads);
  const { groups, threadsX } = rt.groups1d(units, 64);
  const pipe = rt.pipeline('norm/qk', () => QK_NORM_WGSL);
  rt.dispatch(pipe, [qkv.buffer, qGamma.buffer, kGamma.buffer, y.buffer], [R, heads.numHeads, heads.numKvHeads, heads.headDim, { f32: eps }, threadsX], groups);
}
