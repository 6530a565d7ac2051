/**
 * Event-driven synapses: y[m, :] = Σ_{k : n[m,k] ≠ 0} n[m,k] · wᵀ[k, :] (+ bias, + residual).
 * Spikes are sparse integer counts, so instead of a dense product over all K inputs each row
 * accumulates only the weight rows of its active inputs — the spiking counterpart of a matmul, with
 * work proportional to the number of spike events. Weights are read in the transposed layout
 * wᵀ [K, N] (the GPU's packed layout already is; the CPU keeps a transposed copy).
 *
 *   spikeMatmulEventCpu  compact each row's active inputs, then accumulate their weight rows
 *   WGSL: a compaction kernel (one invocation per row writes its active indices and counts) and an
 *         accumulation kernel (one invocation per row and vec4 of columns walks the row's events)
 *   dispatch: `useEventDriven(density, …)` compares the measured (CPU) or calibrated (GPU) density of
 *         nonzero spike counts with the crossover measured by `npm run bench -- kernels`.
 */
import { type GpuRuntime, type GpuTensor, fillTemplate } from '../gpu/runtime.js';
import { type GpuLinearWeight, weightAccessWgsl } from './matmul.js';

/**
 * Below these densities of nonzero inputs the event-driven kernel beats the dense one, measured by
 * `npm run bench -- kernels` at (1024, 768, 768): CPU 1.63× faster at 10%, 0.81× at 20% (dense uses
 * both cores); GPU on llvmpipe 1.22× at 30%, 0.76× at 50%. A real GPU has its own crossover.
 */
export const EVENT_CROSSOVER = { cpu: 0.15, gpu: 0.35 } as const;

/** Fraction of nonzero entries. */
export function spikeDensity(n: Float32Array): number {
  let nz = 0;
  for (let i = 0; i < n.length; i++) if (n[i] !== 0) nz++;
  return n.length ? nz / n.length : 0;
}

export function useEventDriven(density: number, device: 'cpu' | 'gpu'): boolean {
  return density < EVENT_CROSSOVER[device];
}

/** y (length M·N) = n·w (w given transposed, wT [K, N]) + bias + residual, touching only nonzero n. */
export function spikeMatmulEventCpu(n: Float32Array, wT: Float32Array, bias: Float32Array | undefined, residual: Float32Array | undefined, y: Float32Array, M: number, K: number, N: number): void {
  const acc = new Float64Array(N);
  for (let m = 0; m < M; m++) {
    if (bias) for (let j = 0; j < N; j++) acc[j] = bias[j]!;
    else acc.fill(0);
    const row = m * K;
    for (let k = 0; k < K; k++) {
      const s = n[row + k]!;
      if (s === 0) continue;
      const w = k * N;
      if (s === 1) for (let j = 0; j < N; j++) acc[j] += wT[w + j]!;
      else if (s === -1) for (let j = 0; j < N; j++) acc[j] -= wT[w + j]!;
      else for (let j = 0; j < N; j++) acc[j] += s * wT[w + j]!;
    }
    const o = m * N;
    if (residual) for (let j = 0; j < N; j++) y[o + j] = acc[j]! + residual[o + j]!;
    else for (let j = 0; j < N; j++) y[o + j] = acc[j]!;
  }
}

// ---------------------------------------------------------------------------------------------
// GPU twin: compaction, then accumulation over the packed wᵀ chunks.

const COMPACT_WGSL = `
struct Params { M: u32, K: u32, threadsX: u32 }
@group(0) @binding(0) var<storage, read> n: array<f32>;
@group(0) @binding(1) var<storage, read_write> events: array<u32>;
@group(0) @binding(2) var<storage, read_write> counts: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let m = gid.y * p.threadsX + gid.x;
  if (m >= p.M) { return; }
  var c = 0u;
  for (var k = 0u; k < p.K; k++) {
    if (n[m * p.K + k] != 0.0) { events[m * p.K + c] = k; c++; }
  }
  counts[m] = c;
}`;

const ACCUMULATE_WGSL = `
struct Params { M: u32, K: u32, N: u32, nPad4: u32, nValid: u32, colOffset: u32, hasBias: u32, hasResidual: u32, threadsX: u32 }
@group(0) @binding(0) var<storage, read> n: array<f32>;
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
  let m = idx / p.nPad4;
  if (m >= p.M) { return; }
  var acc = vec4f(0.0);
  let count = counts[m];
  for (var e = 0u; e < count; e++) {
    let k = events[m * p.K + e];
    acc += n[m * p.K + k] * wv4(k * p.nPad4 + c4);
  }
  for (var j = 0u; j < 4u; j++) {
    let col = c4 * 4u + j;
    if (col < p.nValid) {
      var v = acc[j];
      if (p.hasBias != 0u) { v += bias[p.colOffset + col]; }
      if (p.hasResidual != 0u) { v += residual[m * p.N + p.colOffset + col]; }
      y[m * p.N + p.colOffset + col] = v;
    }
  }
}`;

/** Per row of n [M, K]: the indices of its nonzero entries (events, [M, K]) and how many (counts, [M]). The caller releases both. */
export function compactEventsGpu(rt: GpuRuntime, n: GpuTensor, M: number, K: number): { events: GpuTensor; counts: GpuTensor } {
  const events = rt.alloc([M, K]), counts = rt.alloc([M]);
  const { groups, threadsX } = rt.groups1d(M, 64);
  rt.dispatch(rt.pipeline('spike/compact', () => COMPACT_WGSL), [n.buffer, events.buffer, counts.buffer], [M, K, threadsX], groups);
  return { events, counts };
}

export function spikeMatmulEventGpu(rt: GpuRuntime, n: GpuTensor, w: GpuLinearWeight, bias: GpuTensor | undefined, residual: GpuTensor | undefined, y: GpuTensor, M: number, K: number, N: number): void {
  const { events, counts } = compactEventsGpu(rt, n, M, K);
  const pipe = rt.pipeline(`spike/accumulate/${w.format}`, () => fillTemplate(ACCUMULATE_WGSL, { weight: weightAccessWgsl(3, w.format) }));
  for (const c of w.chunks) {
    const nPad4 = c.nPad / 4;
    const { groups, threadsX } = rt.groups1d(M * nPad4, 64);
    rt.dispatch(pipe, [n.buffer, events.buffer, counts.buffer, c.buffer, (bias ?? n).buffer, (residual ?? n).buffer, y.buffer],
      [M, K, N, nPad4, c.n1 - c.n0, c.n0, bias ? 1 : 0, residual ? 1 : 0, threadsX], groups);
  }
  rt.release(events);
  rt.release(counts);
}
