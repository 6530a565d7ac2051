/**
 * Host tensors: contiguous, row-major float32 with an explicit shape.
 *
 * The data lives in a SharedArrayBuffer when it is large enough to be worth handing to the matmul
 * worker threads without a copy (see threads.ts); everything else treats it as a plain Float32Array.
 */
import { ShapeError } from '../errors.js';

export type Shape = readonly number[];

/** Elements from which a fresh tensor is backed by shared memory (so workers can read it in place). */
const SHARED_FROM_ELEMENTS = 1 << 14;

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeToString(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

export function assertValidShape(shape: Shape, what: string): void {
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new ShapeError(`${what}: invalid shape ${shapeToString(shape)}`);
  }
}

/**
 * The array a view was cut from, kept alive by the view. Storage the wasm memory's allocator hands
 * out (weights the loader reads into it) is released when the array it returned is collected; a
 * view holds the memory's buffer, not that array, so every view of tensor storage (row slices,
 * parts read into a stacked buffer, a stacked view over consecutive parts) is made through
 * `subview` / `retainRoot`, which record the root array against the view.
 */
const viewRoots = new WeakMap<object, readonly object[]>();

/** a.subarray(start, end), keeping a's root array alive as long as the view. */
export function subview<A extends Float32Array | Uint16Array>(a: A, start: number, end: number): A {
  return retainRoot(a.subarray(start, end) as A, [a]);
}

/**
 * Record that `view` covers storage of the arrays `of` (or of their roots): they live as long as the
 * view. (Separate allocations can sit side by side in the wasm memory, so a view over consecutive
 * arrays names every one.)
 */
export function retainRoot<A extends object>(view: A, of: readonly object[]): A {
  viewRoots.set(view, [...new Set(of.flatMap((o) => viewRoots.get(o) ?? [o]))]);
  return view;
}

/** A zeroed float32 array, shared-memory backed when large. */
export function allocF32(n: number): Float32Array {
  if (n >= SHARED_FROM_ELEMENTS) return new Float32Array(new SharedArrayBuffer(n * 4));
  return new Float32Array(n);
}

export class Tensor {
  readonly shape: Shape;
  readonly data: Float32Array;

  constructor(shape: Shape, data?: Float32Array) {
    assertValidShape(shape, 'Tensor');
    const n = numel(shape);
    if (data && data.length !== n) {
      throw new ShapeError(`Tensor: data has ${data.length} elements, shape ${shapeToString(shape)} needs ${n}`);
    }
    this.shape = [...shape];
    this.data = data ?? allocF32(n);
  }

  static zeros(shape: Shape): Tensor {
    return new Tensor(shape);
  }

  static from(shape: Shape, values: ArrayLike<number>): Tensor {
    const t = new Tensor(shape);
    if (values.length !== t.data.length) {
      throw new ShapeError(`Tensor.from: ${values.length} values for shape ${shapeToString(shape)}`);
    }
    t.data.set(values);
    return t;
  }

  get size(): number {
    return this.data.length;
  }

  get rank(): number {
    return this.shape.length;
  }

  /** Size of the last dimension (the row length of a row-major matrix view). */
  get cols(): number {
    return this.shape.length === 0 ? 1 : this.shape[this.shape.length - 1]!;
  }

  /** Number of rows when viewed as a [rows, cols] matrix. */
  get rows(): number {
    const c = this.cols;
    return c === 0 ? 0 : this.data.length / c;
  }

  reshape(shape: Shape): Tensor {
    if (numel(shape) !== this.data.length) {
      throw new ShapeError(`reshape: cannot view ${shapeToString(this.shape)} as ${shapeToString(shape)}`);
    }
    return new Tensor(shape, this.data);
  }

  /** Rows [start, end) of the matrix view, as a view sharing this tensor's memory. */
  sliceRows(start: number, end: number): Tensor {
    const c = this.cols;
    if (start < 0 || end > this.rows || start > end) {
      throw new ShapeError(`sliceRows: [${start}, ${end}) out of range for ${this.rows} rows`);
    }
    return new Tensor([end - start, c], subview(this.data, start * c, end * c));
  }

  clone(): Tensor {
    const t = new Tensor(this.shape);
    t.data.set(this.data);
    return t;
  }
}

export function assertShape(t: { shape: Shape }, expected: Shape, what: string): void {
  const ok = t.shape.length === expected.length && t.shape.every((d, i) => expected[i] === -1 || d === expected[i]);
  if (!ok) {
    throw new ShapeError(`${what}: expected shape ${shapeToString(expected.map((d) => (d === -1 ? '*' : d)) as never)}, got ${shapeToString(t.shape)}`);
  }
}
