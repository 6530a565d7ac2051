/**
 * Embedding gather: out[i, :] = table[ids[i], :]     table: [V, D], ids: [S] → out: [S, D]
 */
import { ArgumentError } from '../../errors.js';

export function embeddingCpu(table: Float32Array, V: number, D: number, ids: Int32Array, out: Float32Array): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (id < 0 || id >= V) throw new ArgumentError(`embedding: token id ${id} at position ${i} is outside the vocabulary [0, ${V})`);
    out.set(table.subarray(id * D, id * D + D), i * D);
  }
}
