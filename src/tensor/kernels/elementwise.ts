/**
 * Elementwise kernels: add / mul (same shape, or a [C] vector broadcast over the rows of [R, C]),
 * scale, the activations GELU (tanh form `gelu_new`, exact erf form, quick), SiLU and ReLU, and the
 * gated activation act(gate)·up over a fused [gate | up] tensor. Each has its WGSL twin below.
 */
import { ShapeError } from '../../errors.js';
import { type GpuRuntime, type GpuTensor, fillTemplate } from '../gpu/runtime.js';

export type BinaryOp = 'add' | 'mul';

/** out = a ∘ b, with b either the same length as a or a row vector broadcast over a's rows. */
export function binaryCpu(op: BinaryOp, a: Float32Array, b: Float32Array, out: Float32Array): void {
  const n = a.length;
  const c = b.length;
  if (c === 0 || n % c !== 0) throw new ShapeError(`${op}: cannot broadcast ${c} elements over ${n}`);
  if (op === 'add') for (let i = 0; i < n; i++) out[i] = a[i]! + b[i % c]!;
  else for (let i = 0; i < n; i++) out[i] = a[i]! * b[i % c]!;
}

export function scaleCpu(a: Float32Array, s: number, out: Float32Array): void {
  for (let i = 0; i < a.length; i++) out[i] = a[i]! * s;
}

export type Activation = 'gelu_tanh' | 'gelu_erf' | 'gelu_quick' | 'silu' | 'relu';

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** GELU, tanh approximation (HF `gelu_new`, `gelu_pytorch_tanh`): ½x(1 + tanh(√(2/π)(x + 0.044715x³))). */
export function geluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));
}

/** GELU, exact (HF `gelu`): ½x(1 + erf(x/√2)). */
export function geluErf(x: number): number {
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

/** Quick GELU (HF `quick_gelu`): x·σ(1.702x). */
export function geluQuick(x: number): number {
  return x / (1 + Math.exp(-1.702 * x));
}

/** SiLU / swish: x·σ(x). */
export function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

export function relu(x: number): number {
  return x > 0 ? x : 0;
}

export const ACTIVATIONS: Readonly<Record<Activation, (x: number) => number>> = {
  gelu_tanh: geluTanh,
  gelu_erf: geluErf,
  gelu_quick: geluQuick,
  silu,
  relu,
};

export function activationCpu(kind: Activation, a: Float32Array, out: Float32Array): void {
  const f = ACTIVATIONS[kind];
  for (let i = 0; i < a.length; i++) out[i] = f(a[i]!);
}

/**
 * Gated activation over a fused [gate | up] product x: [R, 2C] → out [R, C],
 *   out[r, c] = act(x[r, c]) · x[r, C + c]          (SwiGLU when act = silu)
 * The fused form saves a matmul and a pass; `binaryCpu('mul', act(gate), up)` is its composite.
 */
export function gatedActivationCpu(kind: Activation, x: Float32Array, R: number, C: number, out: Float32Array): void {
  const f = ACTIVATIONS[kind];
  for (let r = 0; r < R; r++) {
    const o = r * 2 * C;
    for (let c = 0; c < C; c++) out[r * C + c] = f(x[o + c]!) * x[o + C + c]!;
  }
}

/**
 * erf(x) via the complementary error function's Chebyshev fit (Numerical Recipes `erfcc`):
 * fractional error below 1.2e-7 everywhere, ample for float32.
 */
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - r : r - 1;
}

// ---------------------------------------------------------------------------------------------
// GPU twins: one invocation per element (64 per workgroup), linear index folded over x and y.

const BINARY_WGSL = `
struct Params { n: u32, c: u32, threadsX: u32 }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.threadsX + gid.x;
  if (i >= p.n) { return; }
  y[i] = a[i] {{op}} b[i % p.c];
}`;

/** WGSL expressions of the activations of `v`; tanh's argument is clamped (|t| ≥ 15 is ±1 in f32) because some drivers overflow. */
const ACTIVATION_WGSL: Readonly<Record<Activation, string>> = {
  gelu_tanh: '0.5 * v * (1.0 + tanh(clamp(0.7978845608028654 * (v + 0.044715 * v * v * v), -15.0, 15.0)))',
  gelu_erf: '0.5 * v * (1.0 + erf_(v * 0.7071067811865476))',
  gelu_quick: 'v / (1.0 + exp(-1.702 * v))',
  silu: 'v / (1.0 + exp(-v))',
  relu: 'max(v, 0.0)',
};

/** erf on the GPU: the same Chebyshev fit as `erf` above. */
export const ERF_WGSL = `
fn erf_(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return select(r - 1.0, 1.0 - r, x >= 0.0);
}`;

const UNARY_WGSL = `
struct Params { n: u32, threadsX: u32, s: f32 }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
${ERF_WGSL}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.threadsX + gid.x;
  if (i >= p.n) { return; }
  let v = a[i];
  y[i] = {{expr}};
}`;

const GATED_WGSL = `
struct Params { R: u32, C: u32, threadsX: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
${ERF_WGSL}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.threadsX + gid.x;
  if (i >= p.R * p.C) { return; }
  let r = i / p.C;
  let c = i % p.C;
  let v = x[r * 2u * p.C + c];
  y[i] = ({{expr}}) * x[r * 2u * p.C + p.C + c];
}`;

export function gatedActivationGpu(rt: GpuRuntime, kind: Activation, x: GpuTensor, R: number, C: number, y: GpuTensor): void {
  const pipe = rt.pipeline(`gated/${kind}`, () => fillTemplate(GATED_WGSL, { expr: ACTIVATION_WGSL[kind] }));
  const { groups, threadsX } = rt.groups1d(R * C, 64);
  rt.dispatch(pipe, [x.buffer, y.buffer], [R, C, threadsX], groups);
}

export function binaryGpu(rt: GpuRuntime, op: BinaryOp, a: GpuTensor, b: GpuTensor, y: GpuTensor): void {
  const pipe = rt.pipeline(`binary/${op}`, () => fillTemplate(BINARY_WGSL, { op: op === 'add' ? '+' : '*' }));
  const { groups, threadsX } = rt.groups1d(a.size, 64);
  rt.dispatch(pipe, [a.buffer, b.buffer, y.buffer], [a.size, b.size, threadsX], groups);
}

function unaryGpu(rt: GpuRuntime, key: string, expr: string, a: GpuTensor, y: GpuTensor, s = 0): void {
  const pipe = rt.pipeline(`unary/${key}`, () => fillTemplate(UNARY_WGSL, { expr }));
  const { groups, threadsX } = rt.groups1d(a.size, 64);
  rt.dispatch(pipe, [a.buffer, y.buffer], [a.size, threadsX, { f32: s }], groups);
}

export function scaleGpu(rt: GpuRuntime, a: GpuTensor, s: number, y: GpuTensor): void {
  unaryGpu(rt, 'scale', 'v * p.s', a, y, s);
}

export function activationGpu(rt: GpuRuntime, kind: Activation, a: GpuTensor, y: GpuTensor): void {
  unaryGpu(rt, kind, ACTIVATION_WGSL[kind], a, y);
}
