/**
 * Event-driven synapses over digit planes (the layerwise schedule's event execution):
 *
 *   y[r, :] = Σ_j g^(P−1−j) · Σ_{k : d[j,r,k] ≠ 0} d[j,r,k] · wᵀ[k, :]  (+ bias, + residual)
 *
 * with g = 2 for weighted (phase) codes and g = 1 for rate codes. Read as a neuromorphic chip runs
 * it: the receiving membrane (one accumulator per output) doubles at every plane (Horner's rule) and
 * every spike event adds one weight row — an accumulate, never a multiply (digits are ±1; a rate
 * burst of n adds its row n times, counted as n events). The code's unit (2^(1−T) or 1/T) and the
 * thresholds θ are folded into the weights once: wᵀ = (W·diag(θ)·unit)ᵀ.
 *
 * The dense twin is an ordinary matmul of the digit sums m = Σ_j g^(P−1−j)·d_j with the same
 * weights: the same numbers, summed in another order. On the CPU both accumulate exact products in
 * double precision and round once, so the two executions agree bit for bit except in the rare case
 * where two double sums straddle a float32 rounding boundary.
 *
 *   planeMatmulCpu   per row: walk the planes, double, add the rows of the events (float64)
 *   WGSL             compaction of every (plane, row) (spike-matmul's kernel), then one invocation per
 *                    (row, vec4 of columns) walking planes and events over the packed wᵀ chunks
 */
import { type GpuRuntime, type GpuTensor, fillTemplate } from '../gpu/runtime.js';
import { type GpuLinearWeight, weightAccessWgsl } from './matmul.js';
import { compactEventsGpu } from './spike-matmul.js';

export function planeMatmulCpu(
  digits: Float32Array, P: number, R: number, K: number, N: number, growth: 1 | 2,
  wT: Float32Array, bias: Float32Array | undefined, residual: Float32Array | undefined, y: Float32Array,
): void {
  const acc = new Float64Array(N);
  for (let r = 0; r < R; r++) {
    acc.fill(0);
    let started = false;
    for (let j = 0; j < P; j++) {
      // the membrane doubles at every plane (a no-op until the first event arrived)
      if (growth === 2 && started) for (let n = 0; n < N; n++) acc[n] = acc[n]! * 2;
      const row = (j * R + r) * K;
      for (let k = 0; k < K; k++) {
        const d = digits[row + k]!;
        if (d === 0) continue;
        started = true;
        const w = k * N;
        if (d === 1) for (let n = 0; n < N; n++) acc[n] += wT[w + n]!;
        else if (d === -1) for (let n = 0; n < N; n++) acc[n] -= wT[w + n]!;
        else for (let n = 0; n < N; n++) acc[n] += d * wT[w + n]!;
      }
    }
    const o = r * N;
    // rounded as the dense kernel rounds: (Σ + bias) to float32, then the residual added
    for (let n = 0; n < N; n++) y[o + n] = acc[n]! + (bias ? bias[n]! : 0);
    if (residual) for (let n = 0; n < N; n++) y[o + n] = y[o + n]! + residual[o + n]!;
  }
}

const PLANE_ACCUMULATE_WGSL = `
struct Params { R: u32, K: u32, N: u32, P: u32, growth: f32, nPad4: u32, nValid: u32, colOffset: u32, hasBias: u32, hasResidual: u32, threadsX: u32 }
@group(0) @binding(0) var<storage, read> digits: array<f32>;
@group(0) @binding(1) var<storage, read> events: array<u32>;
@group(0) @binding(2) var<storage, read> counts: array<u32>;
{{weight}}
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read> residual: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
@group(0) @binding(7) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let idx = gid.y * p.threadsX + gid.x;
  let c4 = idx % p.nPad4;
  let r = idx / p.nPad4;
  if (r >= p.R) { return; }
  var acc = vec4f(0.0);
  for (var j = 0u; j < p.P; j++) {
    acc = acc * p.growth;
    let pr = j * p.R + r;
    let count = counts[pr];
    for (var e = 0u; e < count; e++) {
      let k = events[pr * p.K + e];
      acc += digits[pr * p.K + k] * wv4(k * p.nPad4 + c4);
    }
  }
  for (var i = 0u; i < 4u; i++) {
    let col = c4 * 4u + i;
    if (col < p.nValid) {
      var v = acc[i];
      if (p.hasBias != 0u) { v += bias[p.colOffset + col]; }
      if (p.hasResidual != 0u) { v += residual[r * p.N + p.colOffset + col]; }
      y[r * p.N + p.colOffset + col] = v;
    }
  }
}`;

export function planeMatmulGpu(
  rt: GpuRuntime, digits: GpuTensor, P: number, R: number, K: number, N: number, growth: 1 | 2,
  w: GpuLinearWeight, bias: GpuTensor | undefined, residual: GpuTensor | undefined, y: GpuTensor,
): void {
  const { events, counts } = compactEventsGpu(rt, digits, P * R, K);
  const pipe = rt.pipeline(`plane-matmul/accumulate/${w.format}`, () => fillTemplate(PLANE_ACCUMULATE_WGSL, { weight: weightAccessWgsl(3, w.format) }));
  for (const c of w.chunks) {
    const nPad4 = c.nPad / 4;
    const { groups, threadsX } = rt.groups1d(R * nPad4, 64);
    rt.dispatch(pipe, [digits.buffer, events.buffer, counts.buffer, c.buffer, (bias ?? digits).buffer, (residual ?? digits).buffer, y.buffer],
      [R, K, N, P, { f32: growth }, nPad4, c.n1 - c.n0, c.n0, bias ? 1 : 0, residual ? 1 : 0, threadsX], groups);
  }
  rt.release(events);
  rt.release(counts);
}
