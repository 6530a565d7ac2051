/**
 * The wasm SIMD kernel set's runtime: one shared `WebAssembly.Memory`, an allocator over it, and the
 * compiled module (`simd.wasm`, built from ./assembly by `npm run build:wasm`).
 *
 * Where tensors live. Wasm code addresses only its own memory, so the operands a wasm kernel reads in
 * place must be in it. Weights are the only large, long-lived operands of the hot products: the CPU
 * backend's `upload` copies every linear and embedding weight into this memory once (instead of into
 * a SharedArrayBuffer, as the TypeScript set does; the memory *is* shared, so the TypeScript kernels
 * and the worker pool read the same copy). Activations and spikes stay ordinary tensors and are
 * copied into per-operand staging regions for each product: O(M·K + M·N) bytes beside O(M·K·N)
 * arithmetic, and it keeps the rest of the engine (every other kernel, the KV cache, the GPU upload)
 * unchanged. The worker pool instantiates the same module on the same memory (threads.ts), so a
 * product split across threads copies nothing. A spiking network's folded weights (W·diag(θ)) are made
 * in the memory by a kernel (the CPU backend's `uploadFolded`), never on the host and copied. The
 * module imports the memory and JavaScript's `Math.exp` (env.exp: spike attention's softmax, so its
 * probabilities, and the spikes they make, are the TypeScript kernel's).
 *
 * The allocator is first-fit over a free list sorted by address, with neighbours merged on release.
 * A weight's range is released when its last owner disposes it (`free`, which the CPU backend calls
 * from `dispose` once every upload that returned the array has been disposed: a spiking model's
 * `dispose` frees its folded weights at once), or else when its array is garbage-collected (a
 * FinalizationRegistry: the collector does not see wasm memory, so this can lag). A process that
 * loads model after model reuses the same bytes. A `WebAssembly.Memory` never shrinks: it is as large
 * as the most weights ever alive at once plus the largest staging regions.
 * Invariant: nothing may keep a *sub*-view of an uploaded weight after the weight itself is gone.
 *
 * wasm32 addresses 4 GiB. A weight that does not fit (TinyLlama-1.1B in F32 is about 4.5 GB) stays in
 * a SharedArrayBuffer and its products run the TypeScript kernels; that fallback is logged once.
 */
import fs from 'node:fs';
import { ArgumentError } from '../../errors.js';
import { WA, type WasmMemory, type WasmModule } from './webassembly.js';

const PAGE = 65536;
/** wasm32: 65536 pages of 64 KiB. */
const MAX_PAGES = 65536;
/** The first page is left to the module (AssemblyScript's static area; the kernels use none). */
const ARENA_START = PAGE;
const ALIGN = 64;

export type CpuKernelSet = 'wasm' | 'ts';

export interface WasmExports {
  matmulF32Tile4x4(x: number, w: number, bias: number, y: number, M: number, K: number, N: number, n0: number, n1: number): void;
  matvecF32Row(x: number, w: number, bias: number, y: number, M: number, K: number, N: number, n0: number, n1: number): void;
  matmulF64Tile4x4(x: number, w: number, bias: number, y: number, M: number, K: number, N: number, n0: number, n1: number): void;
  /** x: M·K float64 values (productInput widens them). */
  matvecF64Row(x: number, w: number, bias: number, y: number, M: number, K: number, N: number, n0: number, n1: number): void;
  matvecBf16Row(x: number, w: number, bias: number, y: number, M: number, K: number, N: number, n0: number, n1: number): void;
  matmulBf16Tile4x4(x: number, w: number, bias: number, y: number, M: number, K: number, N: number, n0: number, n1: number): void;
  matvecF16Row(x: number, w: number, bias: number, y: number, M: number, K: number, N: number, n0: number, n1: number): void;
  matmulF16Tile4x4(x: number, w: number, bias: number, y: number, M: number, K: number, N: number, n0: number, n1: number): void;
  eventRowsF64(s: number, wT: number, bias: number, residual: number, y: number, M: number, K: number, N: number, n0: number, n1: number, acc: number): void;
  planeAccumulateF64(digits: number, P: number, R: number, K: number, N: number, growth: number, wT: number, bias: number, residual: number, y: number, n0: number, n1: number, acc: number): void;
  streamSumF32(p: number, n0: number, n1: number, out: number): void;
  activationF64(kind: number, x: number, out: number, i0: number, i1: number): void;
  gatedActivationF64(kind: number, x: number, out: number, C: number, i0: number, i1: number): void;
  attentionF64(q: number, k: number, v: number, out: number, S: number, H: number, Hkv: number, d: number, queryStart: number, kvLength: number, scale: number, stride: number, kvOffset: number, causal: number, window: number, keyStarts: number, u0: number, u1: number, scores: number, acc: number): void;
  encodeWeightedF32(x: number, invTheta: number, R: number, C: number, T: number, E: number, ternary: number, sums: number, digits: number, stats: number, v: number, r0: number, r1: number): void;
  layerNormF64(x: number, gamma: number, beta: number, hasBeta: number, out: number, C: number, eps: number, r0: number, r1: number): void;
  rmsNormF64(x: number, gamma: number, out: number, C: number, eps: number, r0: number, r1: number): void;
  /** scaled: K float64 values; w float32 (foldF32) or 16-bit bits (foldBf16, foldF16). */
  foldF32(w: number, scaled: number, dst: number, K: number, n0: number, n1: number): void;
  foldBf16(w: number, scaled: number, dst: number, K: number, n0: number, n1: number): void;
  foldF16(w: number, scaled: number, dst: number, K: number, n0: number, n1: number): void;
  spikeAttentionFastF64(q: number, k: number, v: number, thetaQ: number, thetaP: number, invThetaP: number, out: number, rowStats: number, H: number, Hkv: number, d: number, queryStart: number, kvLength: number, causal: number, window: number, scoreUnit: number, pKind: number, pT: number, pMaxSpikes: number, pUnit: number, u0: number, u1: number, scores: number, mp: number, qTheta: number): void;
}

export const WASM_KERNELS = ['matmulF32Tile4x4', 'matvecF32Row', 'matmulF64Tile4x4', 'matvecF64Row', 'matvecBf16Row', 'matmulBf16Tile4x4', 'matvecF16Row', 'matmulF16Tile4x4', 'eventRowsF64', 'planeAccumulateF64', 'streamSumF32', 'attentionF64', 'activationF64', 'gatedActivationF64', 'encodeWeightedF32', 'layerNormF64', 'rmsNormF64', 'foldF32', 'foldBf16', 'foldF16', 'spikeAttentionFastF64'] as const;
export type WasmKernel = (typeof WASM_KERNELS)[number];

export const WASM_FILE = new URL('./simd.wasm', import.meta.url);
/** The same kernels with fused multiply-adds (relaxed SIMD): opt-in, SPIKELM_WASM_RELAXED=1. */
export const WASM_RELAXED_FILE = new URL('./simd-relaxed.wasm', import.meta.url);

let moduleBytes: Buffer | undefined;
function bytes(): Buffer {
  moduleBytes ??= fs.readFileSync(WASM_FILE);
  return moduleBytes;
}

/**
 * Whether the kernels run the relaxed-SIMD module: only when asked (SPIKELM_WASM_RELAXED=1; its
 * results may depend on the machine, which fuses a multiply-add or not), and asking where relaxed
 * SIMD does not validate is an error. The spiking products are the same either way (their f64
 * products of float32 values are exact); the ANN's float32 sums change by rounding.
 */
export function relaxedRequested(env: string | undefined = process.env.SPIKELM_WASM_RELAXED): boolean {
  if (env === undefined || env === '' || env === '0') return false;
  if (env !== '1') throw new ArgumentError(`SPIKELM_WASM_RELAXED must be 1 or 0, got "${env}"`);
  if (!relaxedSimdSupported()) throw new ArgumentError(`SPIKELM_WASM_RELAXED=1: this runtime does not validate relaxed SIMD (Node ≥ 21 has it; Node 20 with --experimental-wasm-relaxed-simd)`);
  return true;
}


let simd: boolean | undefined;
/** Whether this runtime validates the kernels' module (128-bit SIMD and shared memory). */
export function simdSupported(): boolean {
  // a missing simd.wasm is a broken installation, not a runtime without SIMD: readFileSync throws
  simd ??= typeof SharedArrayBuffer === 'function' && WA !== undefined && WA.validate(bytes());
  return simd;
}

/** Whether relaxed SIMD validates here (reported by `spikelm info`; SPIKELM_WASM_RELAXED=1 runs it). */
export function relaxedSimdSupported(): boolean {
  try {
    return WA !== undefined && WA.validate(relaxedProbe());
  } catch {
    return false;
  }
}

/** A module of one function: (result v128) v128.const 0 ×3, f32x4.relaxed_madd (opcode 0xfd 0x105). */
function relaxedProbe(): Uint8Array {
  const konst = [0xfd, 0x0c, ...new Array<number>(16).fill(0)];
  const body = [0x00, ...konst, ...konst, ...konst, 0xfd, 0x85, 0x02, 0x0b];
  const code = [0x01, body.length, ...body];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type: () -> v128
    0x03, 0x02, 0x01, 0x00, // function 0 of type 0
    0x0a, code.length, ...code,
  ]);
}

/**
 * The kernel set the CPU backend runs: SPIKELM_CPU_KERNELS=wasm|ts, default wasm wherever the SIMD
 * module validates. Asking for wasm where it does not validate is an error, not a quiet fallback.
 */
export function cpuKernelSet(requested: string | undefined = process.env.SPIKELM_CPU_KERNELS): CpuKernelSet {
  if (requested === undefined || requested === '' || requested === 'auto') return simdSupported() ? 'wasm' : 'ts';
  if (requested === 'ts') return 'ts';
  if (requested === 'wasm') {
    if (!simdSupported()) throw new ArgumentError(`SPIKELM_CPU_KERNELS=wasm: this runtime does not validate ${WASM_FILE.pathname} (WebAssembly SIMD and shared memory are needed; Node ≥ 20 has both)`);
    return 'wasm';
  }
  throw new ArgumentError(`SPIKELM_CPU_KERNELS must be wasm, ts or auto, got "${requested}"`);
}

interface FreeRange {
  start: number;
  size: number;
}

/** The shared memory, its allocator and the main thread's instance. */
export class WasmRuntime {
  readonly memory: WasmMemory = new WA.Memory({ initial: 2, maximum: MAX_PAGES, shared: true });
  /** Whether this runtime's module is the relaxed-SIMD build (asked for once, here). */
  readonly relaxed = relaxedRequested();
  readonly module: WasmModule = new WA.Module(this.relaxed ? fs.readFileSync(WASM_RELAXED_FILE) : bytes());
  readonly kernels: WasmExports;
  /** Every buffer object the memory has handed out (it is a new one after each grow). */
  private readonly buffers = new WeakSet<ArrayBufferLike>();
  private readonly freeList: FreeRange[] = [];
  private top = ARENA_START;
  private readonly registry = new FinalizationRegistry<FreeRange>((r) => this.release(r.start, r.size));
  /** The ranges of the arrays `f32` handed out and nobody has freed yet. */
  private readonly ranges = new WeakMap<Float32Array | Uint16Array, FreeRange>();
  private readonly staging = new Map<string, { ptr: number; bytes: number }>();
  /** Bytes in live allocations (weights and staging), for tests and `spikelm info`. */
  liveBytes = 0;

  constructor() {
    this.kernels = new WA.Instance(this.module, { env: { memory: this.memory, exp: Math.exp } }).exports as unknown as WasmExports;
    this.buffers.add(this.memory.buffer);
  }

  get byteLength(): number {
    return this.memory.buffer.byteLength;
  }

  /** A byte range of at least `bytes`, or undefined when wasm32's 4 GiB cannot hold it. */
  alloc(bytes: number): number | undefined {
    return this.allocate(bytes)?.start;
  }

  /** The range and whether it is fresh (above every earlier allocation: still zero). */
  private allocate(bytes: number): { start: number; fresh: boolean } | undefined {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    for (let i = 0; i < this.freeList.length; i++) {
      const r = this.freeList[i]!;
      if (r.size < size) continue;
      const start = r.start;
      if (r.size === size) this.freeList.splice(i, 1);
      else {
        r.start += size;
        r.size -= size;
      }
      this.liveBytes += size;
      return { start, fresh: false };
    }
    const end = this.top + size;
    if (end > MAX_PAGES * PAGE) return undefined;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      try {
        this.memory.grow(Math.ceil((end - have) / PAGE));
      } catch {
        return undefined;
      }
      this.buffers.add(this.memory.buffer);
    }
    const start = this.top;
    this.top = end;
    this.liveBytes += size;
    // fresh only where the memory never held anything (a lowered top leaves old bytes above it)
    return { start, fresh: start >= this.highWater ? (this.highWater = end, true) : (this.highWater = Math.max(this.highWater, end), false) };
  }

  /** The end of the highest range ever allocated: bytes above it are still the grow's zeros. */
  private highWater = ARENA_START;

  release(start: number, bytes: number): void {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    this.liveBytes -= size;
    let i = 0;
    while (i < this.freeList.length && this.freeList[i]!.start < start) i++;
    this.freeList.splice(i, 0, { start, size });
    // merge with the following and the preceding range
    const next = this.freeList[i + 1];
    if (next && start + size === next.start) {
      this.freeList[i]!.size += next.size;
      this.freeList.splice(i + 1, 1);
    }
    const prev = this.freeList[i - 1];
    if (prev && prev.start + prev.size === start) {
      prev.size += this.freeList[i]!.size;
      this.freeList.splice(i, 1);
    }
    // a free range at the top goes back to the bump pointer
    const last = this.freeList.at(-1);
    if (last && last.start + last.size === this.top) {
      this.top = last.start;
      this.freeList.pop();
    }
  }

  /** A zeroed float32 array of n elements in the memory, freed when it is collected; undefined past 4 GiB. */
  f32(n: number): Float32Array | undefined {
    const range = this.allocate(n * 4);
    if (range === undefined) return undefined;
    const { start, fresh } = range;
    const a = new Float32Array(this.memory.buffer, start, n);
    if (!fresh) a.fill(0);
    const r = { start, size: n * 4 };
    this.registry.register(a, r, a);
    this.ranges.set(a, r);
    return a;
  }

  /** A zeroed array of n 16-bit values (a BF16/F16 weight), as `f32` gives float32 ones. */
  u16(n: number): Uint16Array | undefined {
    const bytes = Math.ceil(n / 2) * 4;
    const range = this.allocate(bytes);
    if (range === undefined) return undefined;
    const { start, fresh } = range;
    const a = new Uint16Array(this.memory.buffer, start, n);
    if (!fresh) a.fill(0);
    const r = { start, size: bytes };
    this.registry.register(a, r, a);
    this.ranges.set(a, r);
    return a;
  }

  /** Release an array `f32` or `u16` made, now (false, doing nothing, for any other array or a second call). */
  free(a: Float32Array | Uint16Array): boolean {
    const r = this.ranges.get(a);
    if (!r) return false;
    this.ranges.delete(a);
    this.registry.unregister(a);
    this.release(r.start, r.size);
    return true;
  }

  /** The byte address of an array that lives in the memory, else undefined. */
  addressOf(a: Float32Array | Uint16Array): number | undefined {
    return this.buffers.has(a.buffer) ? a.byteOffset : undefined;
  }

  /**
   * A reusable region named `slot`, at least `bytes` long (grown, never shrunk). Its address is valid
   * until the next call with the same slot; the products call these one at a time.
   */
  stage(slot: string, bytes: number): number {
    const have = this.staging.get(slot);
    if (have && have.bytes >= bytes) return have.ptr;
    if (have) this.release(have.ptr, have.bytes);
    const grown = Math.max(bytes, Math.ceil((have?.bytes ?? 0) * 1.5));
    const ptr = this.alloc(grown);
    if (ptr === undefined) throw new RangeError(`wasm staging: ${grown} bytes do not fit in wasm32's 4 GiB beside the weights`);
    this.staging.set(slot, { ptr, bytes: grown });
    return ptr;
  }

  /** The address of `a` in the memory, copying it into the staging slot when it lives elsewhere. */
  operand(a: Float32Array | Int32Array, slot: string): number {
    const at = a instanceof Float32Array ? this.addressOf(a) : undefined;
    if (at !== undefined) return at;
    const ptr = this.stage(slot, a.byteLength);
    (a instanceof Float32Array ? new Float32Array(this.memory.buffer, ptr, a.length) : new Int32Array(this.memory.buffer, ptr, a.length)).set(a);
    return ptr;
  }

  view(ptr: number, n: number): Float32Array {
    return new Float32Array(this.memory.buffer, ptr, n);
  }
}

let runtime: WasmRuntime | undefined;

/** The process's wasm runtime (made on first use), or undefined where SIMD does not validate. */
export function wasmRuntime(): WasmRuntime | undefined {
  if (!simdSupported()) return undefined;
  runtime ??= new WasmRuntime();
  return runtime;
}

const logged = new Set<string>();
/** Say something about the kernel set once per process (stderr). */
export function logOnce(key: string, message: string): void {
  if (logged.has(key)) return;
  logged.add(key);
  process.stderr.write(`spikelm: ${message}\n`);
}
