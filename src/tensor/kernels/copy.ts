/**
 * Row copies: writeRows (copy src into dst at a row offset, in place: the KV-cache append) and
 * sliceRows (rows [start, end) into a new tensor). On the CPU these are TypedArray.set / subarray;
 * on the GPU a copy kernel keeps them inside the batch's single compute pass.
 */
import type { GpuRuntime, GpuTensor } from '../gpu/runtime.js';

export function writeRowsCpu(dst: Float32Array, src: Float32Array, cols: number, rowOffset: number): void {
  dst.set(src, rowOffset * cols);
}

const COPY_WGSL = `
struct Params { n: u32, srcOffset: u32, dstOffset: u32, threadsX: u32 }
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.threadsX + gid.x;
  if (i >= p.n) { return; }
  dst[p.dstOffset + i] = src[p.srcOffset + i];
}`;

/** dst[dstOffset + i] = src[srcOffset + i] for i < n (element offsets). */
export function copyGpu(rt: GpuRuntime, src: GpuTensor, srcOffset: number, dst: GpuTensor, dstOffset: number, n: number): void {
  if (n === 0) return;
  const pipe = rt.pipeline('copy', () => COPY_WGSL);
  const { groups, threadsX } = rt.groups1d(n, 64);
  rt.dispatch(pipe, [src.buffer, dst.buffer], [n, srcOffset, dstOffset, threadsX], groups);
}
