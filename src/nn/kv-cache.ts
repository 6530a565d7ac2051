/**
 * Per-layer key/value cache for incremental decoding, held on the model's backend.
 * keys[l], values[l]: [steps·capacity, Hkv·d] — one block of `capacity` rows per time step (the ANN
 * has one step; a spiking model keeps every past token's decoded key and value at every step).
 * Rows 0 … length−1 of each block are valid. A forward pass writes its new rows at `length` in
 * every layer (qkvToCache), then `advance(S)` commits them. Capacity grows in chunks of KV_CHUNK
 * rows; a decode loop reserves a whole turn's rows before its first token (nn/generate.ts), so a
 * decode step allocates nothing.
 */
import { ArgumentError } from '../errors.js';
import type { Backend, BTensor } from '../tensor/backend.js';

/** Rows a cache grows by (rounded up to): a 2048-position context is at most 8 growths. */
export const KV_CHUNK = 256;

export class KvCache {
  private keysByLayer: BTensor[] = [];
  private valuesByLayer: BTensor[] = [];
  private cap = 0;
  length = 0;

  constructor(
    private readonly backend: Backend,
    readonly numLayers: number,
    readonly kvWidth: number,
    /** Hard limit: positions the model can address (max_position_embeddings). */
    readonly maxLength: number,
    initialCapacity = 64,
    /** Time steps per token (blocks per layer). */
    readonly steps = 1,
  ) {
    this.allocate(Math.min(initialCapacity, maxLength));
  }

  get capacity(): number {
    return this.cap;
  }

  keys(layer: number): BTensor {
    return this.keysByLayer[layer]!;
  }

  values(layer: number): BTensor {
    return this.valuesByLayer[layer]!;
  }

  /** Make room for `extra` more rows after `length`. */
  reserve(extra: number): void {
    const need = this.length + extra;
    if (need > this.maxLength) {
      throw new ArgumentError(`KV cache: ${need} positions exceed the model's limit of ${this.maxLength} (max_position_embeddings / n_positions)`);
    }
    if (need <= this.cap) return;
    this.allocate(Math.min(Math.ceil(need / KV_CHUNK) * KV_CHUNK, this.maxLength));
  }

  advance(rows: number): void {
    this.length += rows;
  }

  /** Forget everything after the first `length` rows (e.g. to rewind a conversation). */
  truncate(length: number): void {
    if (length < 0 || length > this.length) throw new ArgumentError(`KV cache: cannot truncate ${this.length} rows to ${length}`);
    this.length = length;
  }

  reset(): void {
    this.length = 0;
  }

  dispose(): void {
    for (const t of [...this.keysByLayer, ...this.valuesByLayer]) this.backend.dispose(t);
    this.keysByLayer = [];
    this.valuesByLayer = [];
    this.cap = 0;
  }

  private allocate(cap: number): void {
    const b = this.backend;
    const oldCap = this.cap;
    const grow = (old: BTensor | undefined): BTensor => {
      const t = b.zeros([this.steps * cap, this.kvWidth]);
      if (old && this.length > 0) {
        for (let s = 0; s < this.steps; s++) {
          b.tidy(() => b.writeRows(t, b.sliceRows(old, s * oldCap, s * oldCap + this.length), s * cap));
        }
      }
      if (old) b.dispose(old);
      return t;
    };
    this.keysByLayer = Array.from({ length: this.numLayers }, (_, l) => grow(this.keysByLayer[l]));
    this.valuesByLayer = Array.from({ length: this.numLayers }, (_, l) => grow(this.valuesByLayer[l]));
    this.cap = cap;
  }
}
