/**
 * Host weights in the checkpoint's own 16-bit width (BF16 or IEEE binary16).
 *
 * A BF16 or F16 checkpoint's matrices — the linear layers and the embedding table — stay 16-bit on
 * the host: half the memory of widening them to float32 on load. Arithmetic stays float32: a kernel
 * widens each weight as it reads it (BF16: the bits shifted up 16; F16: a table here, bit tricks in
 * wasm), so a product over a half weight gives the bits the same product gives over the widened
 * float32 copy (every BF16 and F16 value is exactly a float32).
 *
 * What reads a half weight directly: the CPU backend's upload, products and embedding gather (both
 * kernel sets), the GPU upload (it packs from the 16-bit copy), the safetensors writer (a saved
 * model keeps the checkpoint's dtype). Everything that computes new weights from them (the spiking
 * network's folded weights, LoRA merges, training's float64 copies) widens with `f32Weight`.
 */
import { ShapeError } from '../errors.js';
import { f16Table } from './dtype.js';
import { type Shape, Tensor, assertValidShape, numel, shapeToString, subview } from './tensor.js';

export type HalfFormat = 'bf16' | 'f16';

/** Elements from which a 16-bit array is backed by shared memory (as allocF32 does for float32). */
const SHARED_FROM_ELEMENTS = 1 << 14;

/** Zeroed 16-bit storage, shared-memory backed when large. */
export function allocU16(n: number): Uint16Array {
  if (n >= SHARED_FROM_ELEMENTS) return new Uint16Array(new SharedArrayBuffer(n * 2));
  return new Uint16Array(n);
}

/** A row-major matrix of 16-bit floats (the bits as stored: little-endian BF16 or F16). */
export class HalfTensor {
  readonly shape: Shape;
  readonly bits: Uint16Array;
  readonly format: HalfFormat;

  constructor(shape: Shape, format: HalfFormat, bits?: Uint16Array) {
    assertValidShape(shape, 'HalfTensor');
    const n = numel(shape);
    if (bits && bits.length !== n) throw new ShapeError(`HalfTensor: ${bits.length} values, shape ${shapeToString(shape)} needs ${n}`);
    this.shape = [...shape];
    this.format = format;
    this.bits = bits ?? allocU16(n);
  }

  get size(): number {
    return this.bits.length;
  }

  get cols(): number {
    return this.shape.length === 0 ? 1 : this.shape[this.shape.length - 1]!;
  }

  get rows(): number {
    const c = this.cols;
    return c === 0 ? 0 : this.bits.length / c;
  }

  /** Rows [start, end), a view sharing this tensor's memory. */
  sliceRows(start: number, end: number): HalfTensor {
    const c = this.cols;
    if (start < 0 || end > this.rows || start > end) throw new ShapeError(`sliceRows: [${start}, ${end}) out of range for ${this.rows} rows`);
    return new HalfTensor([end - start, c], this.format, subview(this.bits, start * c, end * c));
  }
}

/** A weight matrix as the model holds it: float32, or the checkpoint's 16 bits. */
export type WeightTensor = Tensor | HalfTensor;

export function isHalf(t: unknown): t is HalfTensor {
  return t instanceof HalfTensor;
}

/**
 * bits[from, from + out.length) widened into out (exact). BF16 is the upper half of a float32, so
 * its bits go straight into a Uint32 view of `out`; F16 is looked up.
 */
export function widenInto(bits: Uint16Array, format: HalfFormat, from: number, out: Float32Array): void {
  const n = out.length;
  if (format === 'bf16') {
    const u = new Uint32Array(out.buffer, out.byteOffset, n);
    for (let i = 0; i < n; i++) u[i] = bits[from + i]! << 16;
  } else {
    const table = f16Table();
    for (let i = 0; i < n; i++) out[i] = table[bits[from + i]!]!;
  }
}

/** The weight as float32: itself, or a widened copy of a half tensor (for code that makes new weights from it). */
export function f32Weight(t: WeightTensor): Tensor {
  if (!isHalf(t)) return t;
  const out = new Tensor(t.shape);
  widenInto(t.bits, t.format, 0, out.data);
  return out;
}

/** One value of a weight (tests and small reads; kernels widen whole rows). */
export function weightValue(t: WeightTensor, i: number): number {
  if (!isHalf(t)) return t.data[i]!;
  return t.format === 'bf16' ? bf16Value(t.bits[i]!) : f16Table()[t.bits[i]!]!;
}

const f32One = new Float32Array(1), u32One = new Uint32Array(f32One.buffer);

function bf16Value(b: number): number {
  u32One[0] = b << 16;
  return f32One[0]!;
}
