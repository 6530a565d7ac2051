/**
 * Weights by scoped name (candle's `vb.pp("model.layers.3")`): every tensor is fetched with the shape
 * config.json implies, and a missing tensor or a wrong shape fails naming the full key and both
 * shapes. Tied/shared tensors that safetensors stored once are found through the aliases
 * `safetensors.torch.save_model` writes into `__metadata__` (removed name → kept name).
 */
import { ModelLoadError } from '../errors.js';
import type { TensorToWrite, WeightFiles } from '../io/safetensors.js';
import { type HalfFormat, HalfTensor, type WeightTensor, f32Weight, isHalf } from '../tensor/half.js';
import { type Shape, Tensor, numel, shapeToString } from '../tensor/tensor.js';

/** A linear layer in the nn.Linear layout: weight [out, in], optional bias [out]. */
export interface LinearWeights {
  /** float32, or the checkpoint's BF16/F16 bits (half.ts) */
  readonly weight: WeightTensor;
  readonly bias?: Tensor;
}

/** LayerNorm (weight + bias) or RMSNorm (weight only): [hidden]. */
export interface NormWeights {
  readonly weight: Tensor;
  readonly bias?: Tensor;
}

/**
 * One decoder block, in the same terms for every family:
 * GPT-2: up = mlp.c_fc, down = mlp.c_proj, no gate; OPT: up = fc1, down = fc2; the Llama block:
 * SwiGLU down(silu(gate(x)) ⊙ up(x)). With post-LN (ModelConfig.postNorm) attnNorm and mlpNorm
 * follow their residual adds instead of preceding the sublayers.
 */
export interface BlockWeights {
  readonly attnNorm: NormWeights;
  readonly q: LinearWeights; // [H·d, D]
  readonly k: LinearWeights; // [Hkv·d, D]
  readonly v: LinearWeights; // [Hkv·d, D]
  /** Qwen3's per-head RMSNorms of q and k, [d] each. */
  readonly qNorm?: NormWeights;
  readonly kNorm?: NormWeights;
  readonly o: LinearWeights; // [D, H·d]
  readonly mlpNorm: NormWeights;
  readonly gate?: LinearWeights; // [I, D]
  readonly up: LinearWeights; // [I, D]
  readonly down: LinearWeights; // [D, I]
}

export interface LMWeights {
  readonly embed: WeightTensor; // [V, E] (E = embedDim, D unless project_in/out); 16-bit as stored, or float32
  /** [P + offset, D], learned positions (GPT-2, OPT); row p + ModelConfig.positionOffset is position p. */
  readonly positions?: Tensor;
  /** OPT's project_in [D, E] after the embedding and project_out [E, D] before the head. */
  readonly projectIn?: LinearWeights;
  readonly projectOut?: LinearWeights;
  readonly blocks: readonly BlockWeights[];
  /** [D]; absent only in post-LN models (ModelConfig.finalNorm false). */
  readonly finalNorm?: NormWeights;
  readonly lmHead: WeightTensor; // [V, E]; the same tensor as `embed` when tied
}

/**
 * Where a loader puts matrices (linear weights, embeddings): the CPU backend's wasm memory, so that
 * its upload finds them in place and the process holds one copy. Undefined from either method (no
 * room) falls back to ordinary shared memory.
 */
export interface HostAllocator {
  f32(n: number): Float32Array | undefined;
  u16(n: number): Uint16Array | undefined;
}

/** Bytes of stored tensors read so far, out of all the files hold (for a progress bar). */
export type LoadProgress = (bytesRead: number, bytesTotal: number) => void;

export class WeightLoader {
  private constructor(
    private readonly files: WeightFiles,
    private readonly prefix: string,
    private readonly used: Set<string>,
    private readonly progress?: { onRead: LoadProgress; total: number; read: number },
    /** Keep BF16/F16 matrices in their 16 bits (`matrix`, `matrixConv1d`). */
    private readonly half = false,
    private readonly alloc?: HostAllocator,
  ) {}

  static root(files: WeightFiles, onProgress?: LoadProgress, half = false, alloc?: HostAllocator): WeightLoader {
    const bytes = (n: string) => {
      const [b, e] = files.info(n).dataOffsets;
      return e - b;
    };
    const progress = onProgress ? { onRead: onProgress, total: files.names.reduce((a, n) => a + bytes(n), 0), read: 0 } : undefined;
    return new WeightLoader(files, '', new Set(), progress, half, alloc);
  }

  get dir(): string {
    return this.files.dir;
  }

  /** A loader whose names are relative to `prefix` (joined with a dot). */
  pp(prefix: string): WeightLoader {
    return new WeightLoader(this.files, this.key(prefix), this.used, this.progress, this.half, this.alloc);
  }

  key(name: string): string {
    return this.prefix ? `${this.prefix}.${name}` : name;
  }

  /** The stored name a key resolves to (itself, or the tensor `__metadata__` aliases it to). */
  private resolve(key: string): string | undefined {
    if (this.files.has(key)) return key;
    const alias = Object.hasOwn(this.files.metadata, key) ? this.files.metadata[key] : undefined;
    if (alias !== undefined && this.files.has(alias)) return alias;
    return undefined;
  }

  has(name: string): boolean {
    return this.resolve(this.key(name)) !== undefined;
  }

  /** The tensor `name` with exactly `shape`, as float32 (read into `into` when given: no copy). */
  get(name: string, shape: Shape, into?: Float32Array): Tensor {
    return this.read(name, shape, (stored) => this.files.readF32(stored, into ?? (shape.length === 2 ? this.alloc?.f32(numel(shape)) : undefined)));
  }

  /** A zeroed float32 matrix where this loader puts matrices (for rows read into it part by part). */
  newTensor(shape: Shape): Tensor {
    return new Tensor(shape, this.alloc?.f32(numel(shape)));
  }

  /** The same in 16 bits. */
  newHalf(shape: Shape, format: HalfFormat): HalfTensor {
    return new HalfTensor(shape, format, this.alloc?.u16(numel(shape)));
  }

  /** A GPT-2 Conv1D weight stored [in, out], returned transposed to the nn.Linear layout [out, in]. */
  getConv1d(name: string, inFeatures: number, outFeatures: number): Tensor {
    return this.read(name, [inFeatures, outFeatures], (stored) => this.files.readF32Transposed(stored, this.alloc?.f32(inFeatures * outFeatures)));
  }

  /**
   * The 16-bit format a matrix will be kept in: its stored BF16/F16 when this loader keeps half
   * matrices, else undefined (float32). A missing tensor gives undefined (`get` reports it).
   */
  halfFormat(name: string): HalfFormat | undefined {
    if (!this.half) return undefined;
    const stored = this.resolve(this.key(name));
    return stored === undefined ? undefined : this.files.halfFormat(stored);
  }

  /** A weight matrix: its stored 16 bits where `halfFormat` says so (into `into` when given), else float32. */
  matrix(name: string, shape: Shape, into?: Uint16Array): WeightTensor {
    if (!this.halfFormat(name)) return this.get(name, shape);
    return this.read(name, shape, (stored) => this.files.readHalf(stored, into ?? this.alloc?.u16(numel(shape))));
  }

  /** A GPT-2 Conv1D weight as `matrix` gives it, transposed to [out, in]. */
  matrixConv1d(name: string, inFeatures: number, outFeatures: number): WeightTensor {
    if (!this.halfFormat(name)) return this.getConv1d(name, inFeatures, outFeatures);
    return this.read(name, [inFeatures, outFeatures], (stored) => this.files.readHalfTransposed(stored, this.alloc?.u16(inFeatures * outFeatures)));
  }

  private read<T extends WeightTensor>(name: string, shape: Shape, load: (stored: string) => T): T {
    const key = this.key(name);
    const stored = this.resolve(key);
    if (stored === undefined) {
      throw new ModelLoadError(`${this.files.dir}: missing tensor "${key}" (expected shape ${shapeToString(shape)})`);
    }
    const info = this.files.info(stored);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new ModelLoadError(`${this.files.dir}: tensor "${key}" has shape ${shapeToString(info.shape)}, but config.json implies ${shapeToString(shape)}`);
    }
    const fresh = !this.used.has(stored);
    this.used.add(stored);
    const t = load(stored);
    if (isHalf(t)) checkHalfValues(this.files.dir, key, stored === key ? undefined : stored, t);
    else checkValues(this.files.dir, key, stored === key ? undefined : stored, info.dtype, t.data);
    if (this.progress && fresh) {
      this.progress.read += info.dataOffsets[1] - info.dataOffsets[0];
      this.progress.onRead(this.progress.read, this.progress.total);
    }
    return t;
  }

  /** Tensors present in the files that no `get` asked for. */
  unused(ignore: (name: string) => boolean = () => false): string[] {
    return this.files.names.filter((n) => !this.used.has(n) && !ignore(n));
  }
}

/** Subnormal float32 magnitudes: nonzero and below the smallest normal number. */
const MIN_NORMAL_F32 = 1.1754943508222875e-38;

/**
 * Values a model cannot run on, refused at load with the tensor's name: NaN/±Inf (they would turn
 * every logit into NaN and greedy decoding into token 0 forever), and F32 data that is mostly
 * subnormal — the signature of integer bytes under an F32 header (the int32 values 1, 2, 3 read as
 * float32 are 1.4e-45, 2.8e-45, …); trained weights essentially never hold subnormals.
 */
export function checkValues(dir: string, key: string, stored: string | undefined, dtype: string, data: Float32Array): void {
  const name = stored ? `"${key}" (stored as "${stored}")` : `"${key}"`;
  let nonFinite = 0, firstBad = -1, subnormal = 0, nonzero = 0;
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v !== 0) {
      nonzero++;
      if (!Number.isFinite(v)) {
        if (nonFinite++ === 0) firstBad = i;
      } else if (v < MIN_NORMAL_F32 && v > -MIN_NORMAL_F32) subnormal++;
    }
  }
  if (nonFinite > 0) throw new ModelLoadError(`${dir}: tensor ${name} holds ${nonFinite} non-finite value(s) (NaN or ±Inf), the first at index ${firstBad} (value ${data[firstBad]}); the weights are corrupt`);
  if (dtype === 'F32' && subnormal >= 4 && subnormal >= 0.1 * nonzero) {
    throw new ModelLoadError(`${dir}: tensor ${name}: ${subnormal} of ${nonzero} nonzero values are subnormal (|x| < 1.2e-38); these bytes do not look like F32 weights (integer data under an F32 header?)`);
  }
}

/** NaN/±Inf in 16-bit weights (exponent bits all ones), refused as checkValues refuses them. */
export function checkHalfValues(dir: string, key: string, stored: string | undefined, t: HalfTensor): void {
  const mask = t.format === 'bf16' ? 0x7f80 : 0x7c00, bits = t.bits;
  let bad = 0, first = -1;
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i]! & mask) === mask && bad++ === 0) first = i;
  }
  if (bad > 0) {
    const name = stored ? `"${key}" (stored as "${stored}")` : `"${key}"`;
    throw new ModelLoadError(`${dir}: tensor ${name} holds ${bad} non-finite value(s) (NaN or ±Inf), the first at index ${first} (bits 0x${bits[first]!.toString(16)}); the weights are corrupt`);
  }
}

/** A matrix transposed, in its own width (float32 or 16-bit). */
export function transpose<T extends WeightTensor>(t: T): T {
  const [R, C] = t.shape as [number, number];
  const out = isHalf(t) ? new HalfTensor([C, R], t.format) : new Tensor([C, R]);
  const src: Float32Array | Uint16Array = isHalf(t) ? t.bits : (t as Tensor).data;
  const dst: Float32Array | Uint16Array = isHalf(out) ? out.bits : out.data;
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) dst[c * R + r] = src[r * C + c]!;
  return out as T;
}

/** Matrices with the same row length stacked into one, in their width (16-bit only if all share one format). */
export function concatRows(parts: readonly WeightTensor[]): WeightTensor {
  const K = parts[0]!.shape[1]!, rows = parts.reduce((a, p) => a + p.shape[0]!, 0);
  const first = parts[0]!;
  const format = isHalf(first) && parts.every((p) => isHalf(p) && p.format === first.format) ? first.format : undefined;
  const out = format ? new HalfTensor([rows, K], format) : new Tensor([rows, K]);
  let r = 0;
  for (const p of parts) {
    if (isHalf(out)) out.bits.set((p as HalfTensor).bits, r * K);
    else out.data.set(f32Weight(p).data, r * K);
    r += p.shape[0]!;
  }
  return out;
}

/** A tensor for the safetensors writer: float32, or a 16-bit weight's bytes under its own dtype. */
export function tensorToWrite(name: string, t: WeightTensor): TensorToWrite {
  if (!isHalf(t)) return { name, shape: t.shape, data: t.data };
  return { name, shape: t.shape, data: new Uint8Array(t.bits.buffer, t.bits.byteOffset, t.bits.byteLength), dtype: t.format === 'bf16' ? 'BF16' : 'F16' };
}

/** Rows [start, end) of a matrix: a view sharing its memory (host weights are never written). */
export function rowRange<T extends WeightTensor>(t: T, start: number, end: number): T {
  return t.sliceRows(start, end) as T;
}
