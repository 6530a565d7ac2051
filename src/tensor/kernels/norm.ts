/**
 * Row normalisations over the last dimension of x: [R, C].
 *   layerNorm: y = (x − mean) / √(var + eps) · γ + β     (biased variance, as torch.nn.LayerNorm)
 *   rmsNorm:   y = x / √(mean(x²) + eps) · γ             (Llama RMSNorm)
 * Statistics are accumulated in double precision.
 */
import { type GpuRuntime, type GpuTensor, fillTemplate } from '../gpu/runtime.js';

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
// GPU twins: one invocation per row (rows are at most a few thousand wide; a workgroup-per-row
// reduction would need barriers, which llvmpipe emulates slowly). Two passes, like the CPU code.

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

export function layerNormGpu(rt: GpuRuntime, x: GpuTensor, gamma: GpuTensor, beta: GpuTensor | undefined, eps: number, R: number, C: number, y: GpuTensor): void {
  const pipe = rt.pipeline('norm/layer', () => fillTemplate(NORM_WGSL, { body: LAYERNORM_BODY }));
  rt.dispatch(pipe, [x.buffer, gamma.buffer, (beta ?? gamma).buffer, y.buffer], [R, C, { f32: eps }, beta ? 1 : 0], [Math.ceil(R / 64)]);
}

export function rmsNormGpu(rt: GpuRuntime, x: GpuTensor, gamma: GpuTensor, eps: number, R: number, C: number, y: GpuTensor): void {
  const pipe = rt.pipeline('norm/rms', () => fillTemplate(NORM_WGSL, { body: RMSNORM_BODY }));
  rt.dispatch(pipe, [x.buffer, gamma.buffer, gamma.buffer, y.buffer], [R, C, { f32: eps }, 0], [Math.ceil(R / 64)]);
}
