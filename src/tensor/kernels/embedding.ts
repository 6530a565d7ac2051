/**
 * Embedding gather: out[i, :] = table[ids[i], :]     table: [V, D], ids: [S] → out: [S, D]
 */
import { ArgumentError } from '../../errors.js';
import { type HalfTensor, widenInto } from '../half.js';
import type { GpuRuntime, GpuTensor } from '../gpu/runtime.js';

export function embeddingCpu(table: Float32Array, V: number, D: number, ids: Int32Array, out: Float32Array): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (id < 0 || id >= V) throw new ArgumentError(`embedding: token id ${id} at position ${i} is outside the vocabulary [0, ${V})`);
    out.set(table.subarray(id * D, id * D + D), i * D);
  }
}

// ---------------------------------------------------------------------------------------------
// GPU twin. The table is packed in row chunks (a 50257×768 table exceeds one 128 MiB binding);
// each chunk's dispatch writes the rows whose ids fall in its range. Host ids are checked on the host.

/** An embedding table [V, D] on the GPU, in row chunks of at most one binding each. */
export class GpuEmbeddingTable {
  disposed = false;
  constructor(readonly shape: readonly [number, number], readonly chunks: readonly { buffer: GPUBuffer; row0: number; row1: number }[]) {}
}

export function packEmbeddingTable(rt: GpuRuntime, table: Float32Array | HalfTensor, V: number, D: number, maxBytes = rt.maxBindingBytes): GpuEmbeddingTable {
  const rowsPerChunk = Math.max(1, Math.floor(maxBytes / (4 * Math.max(D, 1))));
  const chunks = [];
  for (let row0 = 0; row0 < V; row0 += rowsPerChunk) {
    const row1 = Math.min(V, row0 + rowsPerChunk);
    // a 16-bit table is widened one chunk (one binding) at a time, as it is uploaded
    let rows: Float32Array;
    if (table instanceof Float32Array) rows = table.subarray(row0 * D, row1 * D);
    else {
      rows = new Float32Array((row1 - row0) * D);
      widenInto(table.bits, table.format, row0 * D, rows);
    }
    chunks.push({ buffer: rt.fromHost([row1 - row0, D], rows, `embedding rows [${row0}, ${row1})`).buffer, row0, row1 });
  }
  return new GpuEmbeddingTable([V, D], chunks);
}

/**
 * Where a dispatch finds its ids: a u32 buffer uploaded for it; a contiguous range first, first + 1, …
 * (positions: no buffer at all); or a float32 tensor on the device (the token a decode loop sampled:
 * it never visits the host, so it is not checked there, and an id outside a chunk's rows is skipped).
 */
type IdSource = 'buffer' | 'range' | 'device';

const embeddingWgsl = (ids: IdSource) => `
struct Params { S: u32, D: u32, row0: u32, row1: u32, threadsX: u32, first: u32 }
@group(0) @binding(0) var<storage, read> table: array<f32>;
${ids === 'range' ? '' : `@group(0) @binding(1) var<storage, read> ids: array<${ids === 'buffer' ? 'u32' : 'f32'}>;`}
@group(0) @binding(${ids === 'range' ? 1 : 2}) var<storage, read_write> y: array<f32>;
@group(0) @binding(${ids === 'range' ? 2 : 3}) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.threadsX + gid.x;
  if (i >= p.S * p.D) { return; }
  let id = ${ids === 'range' ? 'p.first + i / p.D' : ids === 'buffer' ? 'ids[i / p.D]' : 'u32(ids[i / p.D])'};
  if (id < p.row0 || id >= p.row1) { return; }
  y[i] = table[(id - p.row0) * p.D + i % p.D];
}`;

/** Rows of `table` for host ids (checked here) or for a device tensor of ids held as floats. */
export function embeddingGpu(rt: GpuRuntime, table: GpuEmbeddingTable, ids: Int32Array | GpuTensor, y: GpuTensor): void {
  const [V, D] = table.shape;
  const S = ids instanceof Int32Array ? ids.length : ids.size;
  if (S === 0) return;
  const { groups, threadsX } = rt.groups1d(S * D, 64);
  if (!(ids instanceof Int32Array)) {
    const pipe = rt.pipeline('embedding/device', () => embeddingWgsl('device'));
    for (const c of table.chunks) rt.dispatch(pipe, [c.buffer, ids.buffer, y.buffer], [S, D, c.row0, c.row1, threadsX, 0], groups);
    return;
  }
  for (let i = 0; i < S; i++) {
    if (ids[i]! < 0 || ids[i]! >= V) throw new ArgumentError(`embedding: token id ${ids[i]} at position ${i} is outside the vocabulary [0, ${V})`);
  }
  const first = ids[0]!;
  const contiguous = ids.every((id, i) => id === first + i);
  const idBuffer = contiguous ? undefined : rt.transient(Uint32Array.from(ids));
  const pipe = rt.pipeline(contiguous ? 'embedding/range' : 'embedding', () => embeddingWgsl(contiguous ? 'range' : 'buffer'));
  for (const c of table.chunks) {
    if (contiguous ? first + S <= c.row0 || first >= c.row1 : !ids.some((id) => id >= c.row0 && id < c.row1)) continue;
    rt.dispatch(pipe, idBuffer ? [c.buffer, idBuffer, y.buffer] : [c.buffer, y.buffer], [S, D, c.row0, c.row1, threadsX, first], groups);
  }
}
