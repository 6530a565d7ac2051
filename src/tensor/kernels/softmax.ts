/**
 * Row softmax over the last dimension of x: [R, C], with an optional causal mask.
 *
 * Causal mask: the rows come in groups of `queries` consecutive rows (e.g. [heads, queries, keys]
 * flattened); row r is query q = r mod queries at absolute position `queryStart + q`, and keys
 * c > queryStart + q get probability 0. A fully masked row is an error, never NaN.
 */
import { ArgumentError } from '../../errors.js';
import type { GpuRuntime, GpuTensor } from '../gpu/runtime.js';

export interface CausalMask {
  /** Rows per group (the number of queries). */
  readonly queries: number;
  /** Absolute position of the first query (= number of cached keys before it). */
  readonly queryStart: number;
}

export function softmaxCpu(x: Float32Array, R: number, C: number, out: Float32Array, mask?: CausalMask): void {
  for (let r = 0; r < R; r++) {
    const o = r * C;
    const limit = mask ? Math.min(C, mask.queryStart + (r % mask.queries) + 1) : C;
    if (limit <= 0) throw new ArgumentError(`softmax: row ${r} is fully masked`);
    let max = -Infinity;
    for (let c = 0; c < limit; c++) if (x[o + c]! > max) max = x[o + c]!;
    let sum = 0;
    for (let c = 0; c < limit; c++) sum += Math.exp(x[o + c]! - max);
    for (let c = 0; c < limit; c++) out[o + c] = Math.exp(x[o + c]! - max) / sum;
    for (let c = limit; c < C; c++) out[o + c] = 0;
  }
}

// ---------------------------------------------------------------------------------------------
// GPU twin: one invocation per row, the same mask rule; masked entries are written as exact zeros.

const SOFTMAX_WGSL = `
struct Params { R: u32, C: u32, queries: u32, queryStart: u32, masked: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let r = gid.x;
  if (r >= p.R) { return; }
  let o = r * p.C;
  var limit = p.C;
  if (p.masked != 0u) { limit = min(p.C, p.queryStart + r % p.queries + 1u); }
  var m = x[o];
  for (var c = 1u; c < limit; c++) { m = max(m, x[o + c]); }
  var sum = 0.0;
  for (var c = 0u; c < limit; c++) { sum += exp(x[o + c] - m); }
  for (var c = 0u; c < p.C; c++) { y[o + c] = select(0.0, exp(x[o + c] - m) / sum, c < limit); }
}`;

export function softmaxGpu(rt: GpuRuntime, x: GpuTensor, R: number, C: number, y: GpuTensor, mask?: CausalMask): void {
  if (mask) {
    for (let q = 0; q < Math.min(R, mask.queries); q++) {
      if (Math.min(C, mask.queryStart + q + 1) <= 0) throw new ArgumentError(`softmax: row ${q} is fully masked`);
    }
  }
  const pipe = rt.pipeline('softmax', () => SOFTMAX_WGSL);
  rt.dispatch(pipe, [x.buffer, y.buffer], [R, C, mask?.queries ?? 1, mask?.queryStart ?? 0, mask ? 1 : 0], [Math.ceil(R / 64)]);
}
