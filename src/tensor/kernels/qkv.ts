/**
 * Splitting a fused q|k|v projection into attention inputs, in one pass:
 *   qkv: [S, H·d + 2·Hkv·d]  (columns: q heads, then k heads, then v heads)
 *   → q [S, H·d] rotated by RoPE (when frequencies are given),
 *     k rotated and v copied into the KV cache rows rowOffset … rowOffset+S−1.
 * With `batches` = B, qkv holds B blocks of S rows and block b goes to cache rows
 * b·kvBatchStride + rowOffset + s. Its composite is sliceCols + rope + writeRows; a test asserts they agree. Fusing it turns five
 * dispatches per layer into one, which is what decode speed on a GPU is made of.
 */
import { ArgumentError } from '../../errors.js';
import type { GpuRuntime, GpuTensor } from '../gpu/runtime.js';
import { ropeTablesFor } from './rope.js';

export interface QkvLayout {
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  /** Absolute positions of the S rows (for RoPE): S values shared by the blocks, or B·S (one row of positions per block: a left-padded batch). */
  readonly positions: Int32Array;
  /** RoPE inverse frequencies (length headDim/2); omitted for models without rotary positions. */
  readonly invFreq?: Float64Array;
  /** First cache row to write (within each block). */
  readonly rowOffset: number;
  /** Independent blocks of S rows (one per time step in the spiking model); default 1. */
  readonly batches?: number;
  /** Cache rows between blocks (required when batches > 1). */
  readonly kvBatchStride?: number;
}

/** Whether positions are given per block (B·S) rather than shared (S); anything else is an error. */
function checkPositions(l: QkvLayout, S: number): boolean {
  const B = l.batches ?? 1;
  if (l.positions.length === S) return false;
  if (l.positions.length === B * S) return true;
  throw new ArgumentError(`qkvToCache: ${l.positions.length} positions for ${B} block(s) of ${S} rows (expected ${S} or ${B * S})`);
}

export function qkvWidths(l: QkvLayout): { qWidth: number; kvWidth: number; total: number } {
  const qWidth = l.numHeads * l.headDim, kvWidth = l.numKvHeads * l.headDim;
  return { qWidth, kvWidth, total: qWidth + 2 * kvWidth };
}

/** S is the number of rows per block. */
export function qkvToCacheCpu(qkv: Float32Array, S: number, l: QkvLayout, q: Float32Array, kCache: Float32Array, vCache: Float32Array): void {
  const { qWidth, kvWidth, total } = qkvWidths(l);
  const d = l.headDim, half = d / 2;
  const B = l.batches ?? 1, stride = l.kvBatchStride ?? 0;
  if (qkv.length !== B * S * total) throw new ArgumentError(`qkvToCache: ${qkv.length} values for ${B}·${S} rows of ${total}`);
  const perBlock = checkPositions(l, S);
  const rotate = (src: number, dst: Float32Array, dstOff: number, heads: number, cos: number[], sin: number[]) => {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < half; i++) {
        const x1 = qkv[src + h * d + i]!, x2 = qkv[src + h * d + i + half]!;
        dst[dstOff + h * d + i] = x1 * cos[i]! - x2 * sin[i]!;
        dst[dstOff + h * d + i + half] = x2 * cos[i]! + x1 * sin[i]!;
      }
    }
  };
  for (let bs = 0; bs < B * S; bs++) {
    const b = Math.floor(bs / S), s = bs % S;
    const row = bs * total, cacheRow = (b * stride + l.rowOffset + s) * kvWidth;
    if (!l.invFreq) {
      // no rotary positions (GPT-2): a plain split; head dims may be odd here
      q.set(qkv.subarray(row, row + qWidth), bs * qWidth);
      kCache.set(qkv.subarray(row + qWidth, row + qWidth + kvWidth), cacheRow);
      vCache.set(qkv.subarray(row + qWidth + kvWidth, row + total), cacheRow);
      continue;
    }
    const cos: number[] = [], sin: number[] = [];
    for (let i = 0; i < half; i++) {
      const a = l.positions[perBlock ? bs : s]! * l.invFreq[i]!;
      cos.push(Math.cos(a));
      sin.push(Math.sin(a));
    }
    rotate(row, q, bs * qWidth, l.numHeads, cos, sin);
    rotate(row + qWidth, kCache, cacheRow, l.numKvHeads, cos, sin);
    vCache.set(qkv.subarray(row + qWidth + kvWidth, row + total), cacheRow);
  }
}

// ---------------------------------------------------------------------------------------------
// GPU twin: one invocation per rotation pair of q and k, and per element of v.

const QKV_WGSL = `
struct Params { S: u32, H: u32, Hkv: u32, d: u32, rowOffset: u32, hasRope: u32, threadsX: u32, B: u32, stride: u32, perBlock: u32, first: u32 }
@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> cosT: array<f32>;
@group(0) @binding(2) var<storage, read> sinT: array<f32>;
@group(0) @binding(3) var<storage, read_write> q: array<f32>;
@group(0) @binding(4) var<storage, read_write> kCache: array<f32>;
@group(0) @binding(5) var<storage, read_write> vCache: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let qWidth = p.H * p.d;
  let kvWidth = p.Hkv * p.d;
  let idx = gid.y * p.threadsX + gid.x;
  if (p.hasRope == 0u) {
    // plain split, one invocation per element (head dims may be odd)
    let total = qWidth + 2u * kvWidth;
    if (idx >= p.B * p.S * total) { return; }
    let bs = idx / total;
    let u = idx % total;
    let cacheRow = ((bs / p.S) * p.stride + p.rowOffset + bs % p.S) * kvWidth;
    if (u < qWidth) { q[bs * qWidth + u] = qkv[idx]; }
    else if (u < qWidth + kvWidth) { kCache[cacheRow + u - qWidth] = qkv[idx]; }
    else { vCache[cacheRow + u - qWidth - kvWidth] = qkv[idx]; }
    return;
  }
  let half = p.d / 2u;
  let qPairs = p.H * half;
  let kPairs = p.Hkv * half;
  let vCount = p.Hkv * p.d;
  let perRow = qPairs + kPairs + vCount;
  if (idx >= p.B * p.S * perRow) { return; }
  let bs = idx / perRow;
  let s = bs % p.S;
  let u = idx % perRow;
  let row = bs * (qWidth + 2u * kvWidth);
  let cacheRow = ((bs / p.S) * p.stride + p.rowOffset + s) * kvWidth;
  if (u >= qPairs + kPairs) {
    let j = u - qPairs - kPairs;
    vCache[cacheRow + j] = qkv[row + qWidth + kvWidth + j];
    return;
  }
  var pair = u;
  if (u >= qPairs) { pair = u - qPairs; }
  let i = pair % half;
  let h = pair / half;
  var t = s;
  if (p.perBlock != 0u) { t = bs; }
  let c = cosT[(p.first + t) * half + i];
  let sn = sinT[(p.first + t) * half + i];
  if (u < qPairs) {
    let o = row + h * p.d;
    let x1 = qkv[o + i];
    let x2 = qkv[o + i + half];
    q[bs * qWidth + h * p.d + i] = x1 * c - x2 * sn;
    q[bs * qWidth + h * p.d + i + half] = x2 * c + x1 * sn;
  } else {
    let o = row + qWidth + h * p.d;
    let x1 = qkv[o + i];
    let x2 = qkv[o + i + half];
    kCache[cacheRow + h * p.d + i] = x1 * c - x2 * sn;
    kCache[cacheRow + h * p.d + i + half] = x2 * c + x1 * sn;
  }
}`;

export function qkvToCacheGpu(rt: GpuRuntime, qkv: GpuTensor, S: number, l: QkvLayout, q: GpuTensor, kCache: GpuTensor, vCache: GpuTensor): void {
  const half = l.headDim / 2;
  // the table is kept as long as the cache (rows per block): a decode step within it makes none
  const tables = l.invFreq ? ropeTablesFor(rt, l.positions, l.invFreq, l.kvBatchStride ?? kCache.shape[0]!) : undefined;
  const pipe = rt.pipeline('qkv', () => QKV_WGSL);
  const perRow = tables ? (l.numHeads + l.numKvHeads) * half + l.numKvHeads * l.headDim : (l.numHeads + 2 * l.numKvHeads) * l.headDim;
  const B = l.batches ?? 1;
  const perBlock = checkPositions(l, S);
  const { groups, threadsX } = rt.groups1d(B * S * perRow, 64);
  rt.dispatch(pipe, [qkv.buffer, (tables?.cos ?? qkv).buffer, (tables?.sin ?? qkv).buffer, q.buffer, kCache.buffer, vCache.buffer],
    [S, l.numHeads, l.numKvHeads, l.headDim, l.rowOffset, tables ? 1 : 0, threadsX, B, l.kvBatchStride ?? 0, perBlock ? 1 : 0, tables?.first ?? 0], groups);
}
