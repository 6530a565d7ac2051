/**
 * Row softmax over the last dimension of x: [R, C], with an optional causal mask.
 *
 * Causal mask: the rows come in groups of `queries` consecutive rows (e.g. [heads, queries, keys]
 * flattened); row r is query q = r mod queries at absolute position `queryStart + q`, and keys
 * c > queryStart + q get probability 0. A fully masked row is an error, never NaN.
 */
import { ArgumentError } from '../../errors.js';
import { type GpuRuntime, type GpuTensor, fillTemplate } from '../gpu/runtime.js';
import { type Reduction, type RowVariant, WORKGROUP_ROW_WGSL, chooseReduction, chooseRowVariant, reductionParts, rowGroups } from '../gpu/variants.js';

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
// GPU twins, the same mask rule, masked entries written as exact zeros; two shapes (gpu/variants.ts):
//   row        one invocation per row (barrier-free: llvmpipe)
//   workgroup  one workgroup of 256 per row: max and sum by tree reductions in workgroup memory

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

const SOFTMAX_WORKGROUP_WGSL = `{{enable}}
struct Params { R: u32, C: u32, queries: u32, queryStart: u32, masked: u32, rowsPerY: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
{{reduce}}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32{{sgParams}}) {
{{sgInit}}
${WORKGROUP_ROW_WGSL}
  var limit = C;
  if (p.masked != 0u) { limit = min(C, p.queryStart + r % p.queries + 1u); }
  var m = -3.4e38;
  for (var c = lid; c < limit; c += WG) { m = max(m, x[o + c]); }
  m = wgMax(lid, m);
  var s = 0.0;
  for (var c = lid; c < limit; c += WG) { s += exp(x[o + c] - m); }
  let sum = wgSum2(lid, s);
  for (var c = lid; c < C; c += WG) { y[o + c] = select(0.0, exp(x[o + c] - m) / sum, c < limit); }
}`;

export function softmaxGpu(rt: GpuRuntime, x: GpuTensor, R: number, C: number, y: GpuTensor, mask?: CausalMask, variant: RowVariant = chooseRowVariant(rt), reduction?: Reduction): void {
  if (mask) {
    for (let q = 0; q < Math.min(R, mask.queries); q++) {
      if (Math.min(C, mask.queryStart + q + 1) <= 0) throw new ArgumentError(`softmax: row ${q} is fully masked`);
    }
  }
  const params = [R, C, mask?.queries ?? 1, mask?.queryStart ?? 0, mask ? 1 : 0];
  if (variant === 'workgroup') {
    const groups = rowGroups(rt, R);
    const red = reduction ?? chooseReduction(rt);
    rt.dispatch(rt.pipeline(`softmax/workgroup/${red}`, () => fillTemplate(SOFTMAX_WORKGROUP_WGSL, reductionParts(red, 256))), [x.buffer, y.buffer], [...params, groups[0]], groups);
    return;
  }
  rt.dispatch(rt.pipeline('softmax', () => SOFTMAX_WGSL), [x.buffer, y.buffer], params, [Math.ceil(R / 64)]);
}
