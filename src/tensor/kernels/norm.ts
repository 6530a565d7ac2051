/**
 * Row normalisations over the last dimension of x: [R, C].
 *   layerNorm: y = (x − mean) / √(var + eps) · γ + β     (biased variance, as torch.nn.LayerNorm)
 *   rmsNorm:   y = x / √(mean(x²) + eps) · γ             (Llama RMSNorm)
 * Statistics are accumulated in double precision.
 */
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
