/**
 * Rotary position embedding, rotate-half form (Hugging Face Llama):
 *   for each head and i < d/2, with angle a = pos · invFreq[i]:
 *     y[i]       = x[i]·cos a − x[i + d/2]·sin a
 *     y[i + d/2] = x[i + d/2]·cos a + x[i]·sin a
 * x: [S, H·d], positions: [S]. invFreq[i] = θ^(−2i/d), optionally rescaled (ropeInvFreq).
 * The rotation is linear and fixed per position, so it commutes with a sum over time steps.
 */
import { ArgumentError } from '../../errors.js';
import type { GpuRuntime, GpuTensor } from '../gpu/runtime.js';

export interface RopeScaling {
  readonly type: 'linear' | 'llama3';
  readonly factor: number;
  readonly lowFreqFactor?: number;
  readonly highFreqFactor?: number;
  readonly originalMaxPositionEmbeddings?: number;
}

/** Inverse frequencies for head dimension d (length d/2), with HF's `linear` and `llama3` scaling. */
export function ropeInvFreq(headDim: number, theta: number, scaling?: RopeScaling): Float64Array {
  if (headDim % 2 !== 0) throw new ArgumentError(`rope: head dimension ${headDim} must be even`);
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / theta ** ((2 * i) / headDim);
  if (scaling?.type === 'linear') for (let i = 0; i < half; i++) inv[i] = inv[i]! / scaling.factor;
  if (scaling?.type === 'llama3') {
    const low = scaling.lowFreqFactor ?? 1, high = scaling.highFreqFactor ?? 4;
    const oldCtx = scaling.originalMaxPositionEmbeddings ?? 8192;
    const lowWavelen = oldCtx / low, highWavelen = oldCtx / high;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i]!;
      if (wavelen > lowWavelen) inv[i] = inv[i]! / scaling.factor;
      else if (wavelen >= highWavelen) {
        const smooth = (oldCtx / wavelen - low) / (high - low);
        inv[i] = (1 - smooth) * (inv[i]! / scaling.factor) + smooth * inv[i]!;
      }
    }
  }
  return inv;
}

export function ropeCpu(x: Float32Array, positions: Int32Array, numHeads: number, headDim: number, invFreq: Float64Array, out: Float32Array): void {
  const half = headDim / 2;
  const width = numHeads * headDim;
  const S = positions.length;
  if (x.length !== S * width) throw new ArgumentError(`rope: x has ${x.length} elements, expected ${S}·${width}`);
  for (let s = 0; s < S; s++) {
    const pos = positions[s]!;
    for (let i = 0; i < half; i++) {
      const a = pos * invFreq[i]!;
      const cos = Math.cos(a), sin = Math.sin(a);
      for (let h = 0; h < numHeads; h++) {
        const o = s * width + h * headDim;
        const x1 = x[o + i]!, x2 = x[o + i + half]!;
        out[o + i] = x1 * cos - x2 * sin;
        out[o + i + half] = x2 * cos + x1 * sin;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// GPU twin. cos/sin are computed on the host in double precision (`ropeTablesFor`) so the GPU's f32
// trigonometry of large angles (position × frequency) adds no error.

const ROPE_WGSL = `
struct Params { S: u32, H: u32, d: u32, half: u32, threadsX: u32, first: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> cosT: array<f32>;
@group(0) @binding(2) var<storage, read> sinT: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let idx = gid.y * p.threadsX + gid.x;
  if (idx >= p.S * p.H * p.half) { return; }
  let i = idx % p.half;
  let h = (idx / p.half) % p.H;
  let s = idx / (p.half * p.H);
  let o = s * p.H * p.d + h * p.d;
  let c = cosT[(p.first + s) * p.half + i];
  let sn = sinT[(p.first + s) * p.half + i];
  let x1 = x[o + i];
  let x2 = x[o + i + p.half];
  y[o + i] = x1 * c - x2 * sn;
  y[o + i + p.half] = x2 * c + x1 * sn;
}`;

/** cos/sin of `positions` × `invFreq`, [S, half] each, in double precision then rounded to f32. */
function tableData(positions: ArrayLike<number>, invFreq: Float64Array): { cos: Float32Array; sin: Float32Array } {
  const half = invFreq.length, S = positions.length;
  const cos = new Float32Array(S * half), sin = new Float32Array(S * half);
  for (let s = 0; s < S; s++) {
    for (let i = 0; i < half; i++) {
      const a = positions[s]! * invFreq[i]!;
      cos[s * half + i] = Math.cos(a);
      sin[s * half + i] = Math.sin(a);
    }
  }
  return { cos, sin };
}

/** Rows of the cos/sin tables the kernels read, and the row that holds the call's first position. */
export interface RopeTables {
  readonly cos: GpuTensor;
  readonly sin: GpuTensor;
  /** Table row of positions[0]; row t of the call is `first + t`. */
  readonly first: number;
}

/**
 * Contiguous positions below this many read a persistent table of every position from 0 (grown by
 * doubling, to at least `keepRows`: the KV cache's capacity): decode then uploads nothing per token
 * and binds the same buffers every time.
 */
const PERSISTENT_POSITIONS = 1 << 16;
/** Persistent tables per runtime and frequencies; tables of other positions per call, a few kept. */
const persistentTables = new WeakMap<GpuRuntime, Map<string, { cos: GpuTensor; sin: GpuTensor; rows: number }>>();
const callTables = new WeakMap<GpuRuntime, Map<string, RopeTables>>();

export function ropeTablesFor(rt: GpuRuntime, positions: Int32Array, invFreq: Float64Array, keepRows = 0): RopeTables {
  const half = invFreq.length, S = positions.length;
  const freqKey = invFreq.join(',');
  const p0 = positions[0] ?? 0;
  const contiguous = positions.every((p, i) => p === p0 + i);
  if (contiguous && p0 >= 0 && p0 + S <= PERSISTENT_POSITIONS) {
    let byFreq = persistentTables.get(rt);
    if (!byFreq) persistentTables.set(rt, (byFreq = new Map()));
    let table = byFreq.get(freqKey);
    const need = Math.min(PERSISTENT_POSITIONS, Math.max(p0 + S, keepRows));
    if (!table || table.rows < need) {
      let rows = Math.max(256, table?.rows ?? 0);
      while (rows < need) rows *= 2;
      const { cos, sin } = tableData(Array.from({ length: rows }, (_, i) => i), invFreq);
      if (table) {
        rt.release(table.cos);
        rt.release(table.sin);
      }
      table = { cos: rt.fromHost([rows, half], cos), sin: rt.fromHost([rows, half], sin), rows };
      byFreq.set(freqKey, table);
    }
    return { cos: table.cos, sin: table.sin, first: p0 };
  }
  // other positions (a batch of left-padded blocks, far positions): a table for this call, shared by
  // every layer's rotations of the forward pass
  let cache = callTables.get(rt);
  if (!cache) callTables.set(rt, (cache = new Map()));
  const key = `${positions.join(',')}|${freqKey}`;
  let tables = cache.get(key);
  if (!tables) {
    const { cos, sin } = tableData(positions, invFreq);
    tables = { cos: rt.fromHost([S, half], cos), sin: rt.fromHost([S, half], sin), first: 0 };
    cache.set(key, tables);
    if (cache.size > 16) {
      const [oldKey, old] = cache.entries().next().value as [string, RopeTables];
      cache.delete(oldKey);
      rt.release(old.cos);
      rt.release(old.sin);
    }
  }
  return tables;
}

export function ropeGpu(rt: GpuRuntime, x: GpuTensor, positions: Int32Array, numHeads: number, headDim: number, invFreq: Float64Array, y: GpuTensor): void {
  const half = headDim / 2, S = positions.length;
  if (invFreq.length !== half) throw new ArgumentError(`rope: ${invFreq.length} frequencies for head dimension ${headDim}`);
  const { cos, sin, first } = ropeTablesFor(rt, positions, invFreq);
  const pipe = rt.pipeline('rope', () => ROPE_WGSL);
  const { groups, threadsX } = rt.groups1d(S * numHeads * half, 64);
  rt.dispatch(pipe, [x.buffer, cos.buffer, sin.buffer, y.buffer], [S, numHeads, headDim, half, threadsX, first], groups);
}
