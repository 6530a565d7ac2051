/**
 * Operators over the time axis of a time-major [T·R, C] tensor (step t = rows t·R … t·R+R−1), the
 * two halves of every compensated ("accumulated form") spiking operator:
 *
 *   timeMean   decoded value at each step, the running mean  D_t = (1/t)·Σ_{τ≤t} x_τ   (mean domain)
 *              or the running sum  S_t = Σ_{τ≤t} x_τ                                   (sum domain)
 *   timeDelta  the per-step output whose running mean (sum) is the given sequence F:
 *              mean domain  y_t = t·F_t − (t−1)·F_{t−1};   sum domain  y_t = F_t − F_{t−1}
 *
 * A nonlinear f applied between them — timeDelta(f(timeMean(x))) — is the compensated operator:
 * its accumulated output equals f of its accumulated input at every step, so it adds no error.
 * `t` counts from `t0` + 1, and the state (running sum, previous F) can be carried in and out, so a
 * run split into single steps equals the run in one piece.
 *
 * sumAbs(x) adds Σ|x| of each step's rows to consecutive slots of a statistics vector (spike counts
 * per site and step).
 */
import type { GpuRuntime, GpuTensor } from '../gpu/runtime.js';

export type TimeDomain = 'mean' | 'sum';

const f = Math.fround;

/**
 * `state` (length R·C): running sum in, running sum out. Sums round to float32 at every step, as
 * the stored state and the WGSL twin do, so a run split into steps equals the run in one piece.
 */
export function timeMeanCpu(x: Float32Array, T: number, E: number, domain: TimeDomain, out: Float32Array, state?: Float32Array, t0 = 0): void {
  // Steps outer, elements inner: contiguous rows; the running sums live in a float32 array.
  const sum = state && t0 > 0 ? state : new Float32Array(E);
  for (let t = 0; t < T; t++) {
    const o = t * E, step = t0 + t + 1;
    for (let e = 0; e < E; e++) {
      const s = (sum[e] = sum[e]! + x[o + e]!);
      out[o + e] = domain === 'mean' ? s / step : s;
    }
  }
  if (state && state !== sum) state.set(sum);
}

/** `state` (length R·C): the previous step's F in, the last F out. */
export function timeDeltaCpu(F: Float32Array, T: number, E: number, domain: TimeDomain, out: Float32Array, state?: Float32Array, t0 = 0): void {
  for (let t = 0; t < T; t++) {
    const o = t * E, step = t0 + t + 1;
    // the previous step's F: the row before, or the carried state at the first step of a chunk
    const prev = t > 0 ? F : state && t0 > 0 ? state : undefined;
    const po = t > 0 ? o - E : 0;
    for (let e = 0; e < E; e++) {
      const cur = F[o + e]!, p = prev ? prev[po + e]! : 0;
      out[o + e] = domain === 'mean' ? f(step * cur) - f((step - 1) * p) : cur - p;
    }
  }
  if (state) state.set(F.subarray((T - 1) * E, T * E));
}

/** stats[offset + t] += Σ|x| over the rows of step t, for t < steps. */
export function sumAbsCpu(x: Float32Array, steps: number, stats: Float32Array, offset: number): void {
  const per = x.length / steps;
  for (let t = 0; t < steps; t++) {
    let s = 0;
    for (let i = t * per; i < (t + 1) * per; i++) s += Math.abs(x[i]!);
    stats[offset + t] = stats[offset + t]! + s;
  }
}

// ---------------------------------------------------------------------------------------------
// GPU twins: one invocation per element, looping over time; sumAbs is one workgroup reduction.

const TEMPORAL_WGSL = `
struct Params { T: u32, E: u32, t0: u32, sumDomain: u32, delta: u32, threadsX: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> state: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.y * p.threadsX + gid.x;
  if (e >= p.E) { return; }
  var acc = 0.0;
  if (p.t0 > 0u) { acc = state[e]; }
  for (var t = 0u; t < p.T; t++) {
    let i = t * p.E + e;
    let step = f32(p.t0 + t + 1u);
    if (p.delta == 0u) {
      acc += x[i];
      y[i] = select(acc / step, acc, p.sumDomain != 0u);
    } else {
      let cur = x[i];
      y[i] = select(step * cur - (step - 1.0) * acc, cur - acc, p.sumDomain != 0u);
      acc = cur;
    }
  }
  state[e] = acc;
}`;

export function temporalGpu(rt: GpuRuntime, op: 'mean' | 'delta', x: GpuTensor, T: number, E: number, domain: TimeDomain, out: GpuTensor, state: GpuTensor, t0: number): void {
  const pipe = rt.pipeline('temporal', () => TEMPORAL_WGSL);
  const { groups, threadsX } = rt.groups1d(E, 64);
  rt.dispatch(pipe, [x.buffer, out.buffer, state.buffer], [T, E, t0, domain === 'sum' ? 1 : 0, op === 'delta' ? 1 : 0, threadsX], groups);
}

const SUMABS_WGSL = `
struct Params { per: u32, offset: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
var<workgroup> partial: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let t = wid.x;
  var s = 0.0;
  for (var i = lid.x; i < p.per; i += 256u) { s += abs(x[t * p.per + i]); }
  partial[lid.x] = s;
  workgroupBarrier();
  for (var stride = 128u; stride > 0u; stride = stride / 2u) {
    if (lid.x < stride) { partial[lid.x] += partial[lid.x + stride]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) { stats[p.offset + t] += partial[0]; }
}`;

/** One workgroup per step. */
export function sumAbsGpu(rt: GpuRuntime, x: GpuTensor, steps: number, stats: GpuTensor, offset: number): void {
  const pipe = rt.pipeline('sumAbs', () => SUMABS_WGSL);
  rt.dispatch(pipe, [x.buffer, stats.buffer], [x.size / steps, offset], [steps]);
}
