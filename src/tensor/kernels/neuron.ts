/**
 * Integrate-and-fire dynamics over time for a [T·R, C] tensor of input currents (time-major: step t
 * holds rows t·R … t·R+R−1), one neuron per (row, channel), threshold θ per channel.
 *
 * Per step (charge → fire → reset), with β = 1 for IF and β = 1 − 1/τ for LIF:
 *   charge   v ← β·v + x_t
 *   fire     n = ⌊v/θ⌋ (fire condition `>=`)  or  ⌈v/θ⌉ − 1 (condition `>`), clamped to [−B, B]
 *            (B = spikes per step: 1 for single-spike neurons, ∞ for sigma-delta bursts);
 *            unsigned neurons never emit negative spikes (n ← max(n, 0))
 *   reset    subtract: v ← v − n·θ   zero: v ← 0 if n ≠ 0   none: v unchanged
 * The output is the integer spike count n_t (a signed burst); synapses downstream carry θ.
 * With `subtract`, a signed neuron keeps v in [0, θ) while it is not saturated, so starting at θ/2
 * makes Σ n·θ the input sum rounded to the θ grid: |θ·N(T)/T − mean input| ≤ θ/(2T).
 *
 * The CPU code rounds every operation to float32 (Math.fround) exactly as the WGSL twin computes,
 * and both divide by multiplying with the same float32 1/θ, so the two emit identical spikes for
 * identical inputs.
 */
import { ArgumentError } from '../../errors.js';
import type { GpuRuntime, GpuTensor } from '../gpu/runtime.js';

export type ResetMode = 'subtract' | 'zero' | 'none';
export type FireCondition = '>=' | '>';

export interface NeuronConfig {
  /** Spikes per step allowed: 1 = single-spike, Infinity = unbounded burst (sigma-delta). */
  readonly maxSpikes: number;
  readonly signed: boolean;
  readonly reset: ResetMode;
  readonly fire: FireCondition;
  /** Membrane at the start: 0, or θ/2 (rounds instead of truncating). */
  readonly initial: 'zero' | 'half';
  /** Membrane decay per step β ∈ (0, 1]; 1 is IF, β = 1 − 1/τ is LIF with time constant τ. */
  readonly leak: number;
}

export const DEFAULT_NEURON: NeuronConfig = { maxSpikes: Infinity, signed: true, reset: 'subtract', fire: '>=', initial: 'half', leak: 1 };

export function validateNeuron(c: NeuronConfig): void {
  if (!(c.maxSpikes >= 1) || (Number.isFinite(c.maxSpikes) && !Number.isInteger(c.maxSpikes))) throw new ArgumentError(`neuron: maxSpikes must be an integer ≥ 1 or Infinity, got ${c.maxSpikes}`);
  if (!(c.leak > 0 && c.leak <= 1)) throw new ArgumentError(`neuron: leak β must be in (0, 1], got ${c.leak}`);
  if (!['subtract', 'zero', 'none'].includes(c.reset)) throw new ArgumentError(`neuron: reset must be subtract, zero or none, got ${c.reset}`);
  if (c.fire !== '>=' && c.fire !== '>') throw new ArgumentError(`neuron: fire condition must be >= or >, got ${c.fire}`);
  if (c.initial !== 'zero' && c.initial !== 'half') throw new ArgumentError(`neuron: initial membrane must be zero or half, got ${c.initial}`);
}

/** float32 reciprocals of the thresholds, shared by both backends (and validated positive). */
export function inverseThresholds(theta: Float32Array): Float32Array {
  const inv = new Float32Array(theta.length);
  for (let i = 0; i < theta.length; i++) {
    if (!(theta[i]! > 0) || !Number.isFinite(theta[i]!)) throw new ArgumentError(`neuron: threshold ${i} must be a positive number, got ${theta[i]}`);
    inv[i] = 1 / theta[i]!;
  }
  return inv;
}

const f = Math.fround;

/**
 * Run T steps. `membrane` (length R·C) holds the state: if given it is read first (unless `fresh`)
 * and written back at the end, so a run can be split into chunks (single-step mode).
 */
export function neuronRunCpu(x: Float32Array, T: number, R: number, C: number, theta: Float32Array, invTheta: Float32Array, cfg: NeuronConfig, out: Float32Array, membrane?: Float32Array, fresh = true): void {
  const E = R * C;
  const B = Number.isFinite(cfg.maxSpikes) ? cfg.maxSpikes : 3.0e38;
  const beta = f(cfg.leak);
  const gt = cfg.fire === '>', signed = cfg.signed, reset = cfg.reset;
  // Membranes in a float32 array (steps outer, neurons inner: contiguous rows).
  const v = membrane && !fresh ? membrane : new Float32Array(E);
  if (!membrane || fresh) {
    if (cfg.initial === 'half') for (let e = 0; e < E; e++) v[e] = theta[e % C]! * 0.5;
  }
  for (let t = 0; t < T; t++) {
    const o = t * E;
    for (let r = 0; r < R; r++) {
      const ro = r * C;
      for (let c = 0; c < C; c++) {
        const e = ro + c;
        const m = f(f(beta * v[e]!) + x[o + e]!);
        const ratio = f(m * invTheta[c]!);
        let n = gt ? Math.ceil(ratio) - 1 : Math.floor(ratio);
        if (!signed && n < 0) n = 0;
        if (n > B) n = B;
        else if (n < -B) n = -B;
        v[e] = reset === 'subtract' ? m - f(n * theta[c]!) : reset === 'zero' && n !== 0 ? 0 : m;
        out[o + e] = n;
      }
    }
  }
  if (membrane && membrane !== v) membrane.set(v);
}

// ---------------------------------------------------------------------------------------------
// GPU twin: one invocation per neuron, looping over the T steps.

const NEURON_WGSL = `
struct Params { T: u32, E: u32, C: u32, maxSpikes: f32, beta: f32, signed: u32, reset: u32, fireGt: u32, half: u32, fresh: u32, threadsX: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> theta: array<f32>;
@group(0) @binding(2) var<storage, read> invTheta: array<f32>;
@group(0) @binding(3) var<storage, read_write> spikes: array<f32>;
@group(0) @binding(4) var<storage, read_write> membrane: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.y * p.threadsX + gid.x;
  if (e >= p.E) { return; }
  let c = e % p.C;
  let th = theta[c];
  let inv = invTheta[c];
  var v = 0.0;
  if (p.fresh == 0u) { v = membrane[e]; } else if (p.half != 0u) { v = th * 0.5; }
  for (var t = 0u; t < p.T; t++) {
    let i = t * p.E + e;
    v = p.beta * v + x[i];
    let ratio = v * inv;
    var n = floor(ratio);
    if (p.fireGt != 0u) { n = ceil(ratio) - 1.0; }
    if (p.signed == 0u) { n = max(n, 0.0); }
    n = clamp(n, -p.maxSpikes, p.maxSpikes);
    if (p.reset == 0u) { v = v - n * th; } else if (p.reset == 1u && n != 0.0) { v = 0.0; }
    spikes[i] = n;
  }
  membrane[e] = v;
}`;

export function neuronRunGpu(rt: GpuRuntime, x: GpuTensor, T: number, R: number, C: number, theta: GpuTensor, invTheta: GpuTensor, cfg: NeuronConfig, out: GpuTensor, membrane: GpuTensor, fresh: boolean): void {
  const E = R * C;
  const pipe = rt.pipeline('neuron', () => NEURON_WGSL);
  const { groups, threadsX } = rt.groups1d(E, 64);
  rt.dispatch(pipe, [x.buffer, theta.buffer, invTheta.buffer, out.buffer, membrane.buffer], [
    T, E, C, { f32: Number.isFinite(cfg.maxSpikes) ? cfg.maxSpikes : 3.0e38 }, { f32: cfg.leak }, cfg.signed ? 1 : 0,
    cfg.reset === 'subtract' ? 0 : cfg.reset === 'zero' ? 1 : 2, cfg.fire === '>' ? 1 : 0, cfg.initial === 'half' ? 1 : 0, fresh ? 1 : 0, threadsX,
  ], groups);
}
