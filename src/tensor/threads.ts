/**
 * Worker threads for the CPU backend's heavy kernels: matmul (output columns split between the
 * calling thread and the workers) and attention ((block, head) units split). Workers read their
 * operands and write their outputs in place through SharedArrayBuffers.
 *
 * The hand-off is synchronous (Atomics.wait / notify on a per-worker control word, jobs posted on a
 * MessagePort and taken with receiveMessageOnPort), so the CPU backend keeps a synchronous API.
 * Workers run the kernels' own source (`matmulBlocked`, `matvecBlocked`, `attentionRange` as strings),
 * so there is one kernel, not a copy; where WebAssembly SIMD validates, each worker also instantiates
 * the wasm kernel module on the main thread's shared `WebAssembly.Memory` (wasm/runtime.ts), and a wasm
 * job is a kernel's index and its arguments (addresses and sizes) written into the worker's shared
 * args slot, so nothing is copied, transferred or posted.
 * Set SPIKELM_THREADS=1 to disable the pool, or to N to use N threads in all.
 *
 * Memory: a SharedArrayBuffer handed to a worker stays alive until that worker's isolate collects
 * garbage, which a worker that only does arithmetic almost never does — so every fresh activation
 * passed to it was kept (+2 MB per 1 MB product, gigabytes over a long chat). The main thread counts
 * the bytes of buffers the workers have not seen before and, past COLLECT_AFTER_BYTES, asks them to
 * collect after the job (a full GC of a tiny heap, about a millisecond). A test checks memory stays flat.
 */
import os from 'node:os';
import { MessageChannel, type MessagePort, Worker, receiveMessageOnPort } from 'node:worker_threads';
import { type AttentionParams, attentionRange } from './kernels/attention.js';
import { MATVEC_MAX_ROWS, matmulBlocked, matvecBlocked } from './kernels/matmul.js';
import { WASM_KERNELS, type WasmKernel, type WasmRuntime, wasmRuntime } from './wasm/runtime.js';

/** Below this many multiply-adds a hand-off costs more than it saves (measured in bench/matmul). */
export const PARALLEL_MIN_MACS = 1 << 20;
/** The same for matrix–vector products (decode's 768×768 projections are 2^19.2). */
export const PARALLEL_MIN_MATVEC_MACS = 1 << 17;
/** Attention: below this many score/value multiply-adds the work stays on the calling thread. */
export const PARALLEL_MIN_ATTENTION = 1 << 18;

const IDLE = 0, POSTED = 1, DONE = 2, FAILED = 3, POSTED_WASM = 4, POSTED_WASM_CHUNKS = 5;
/**
 * A wasm job travels in the worker's shared `args` slot, not as a message: its kernel's index in
 * WASM_KERNELS, the argument count and the arguments (addresses and sizes, exact in a double). A
 * posted message costs a structured clone and a port read on each side, paid per product while the
 * caller waits at the join: a split call of a tiny kernel took 2.7–2.8 µs that way, 0.5–0.7 µs
 * through the slot (measured on this project's 2-core VM).
 */
const ARGS_SLOTS = 32;
/**
 * Microseconds a worker (or the joining thread) polls its control word before it sleeps in
 * Atomics.wait. Decode posts a matrix–vector job every few hundred microseconds, and waking a
 * sleeping thread costs tens of microseconds on a VM; a short spin keeps the pool warm between the
 * products of one token and costs at most this much idle CPU per job. SPIKELM_SPIN_US overrides.
 */
const SPIN_US = spinMicros();

function spinMicros(): number {
  const v = Number(process.env.SPIKELM_SPIN_US ?? 300);
  return Number.isFinite(v) && v >= 0 ? v : 300;
}

interface PoolWorker {
  worker: Worker;
  port: MessagePort;
  control: Int32Array;
  args: Float64Array;
}

const WORKER_SOURCE = () => `
const { receiveMessageOnPort, workerData } = require('node:worker_threads');
const matmulBlocked = ${matmulBlocked.toString()};
const matvecBlocked = ${matvecBlocked.toString()};
const attentionRange = ${attentionRange.toString()};
const { port, control, args, chunks } = workerData;
const kernelNames = ${JSON.stringify(WASM_KERNELS)};
// the wasm SIMD kernels on the main thread's shared memory (wasm/runtime.ts), where SIMD validates
const wasm = workerData.wasm ? new WebAssembly.Instance(workerData.wasm.module, { env: { memory: workerData.wasm.memory, exp: Math.exp } }).exports : null;
require('node:v8').setFlagsFromString('--expose-gc');
const collectGarbage = require('node:vm').runInNewContext('gc');
for (;;) {
  let state = Atomics.load(control, 0);
  // spin a little before sleeping (SPIN_US in threads.ts says why)
  if (state !== ${POSTED} && state !== ${POSTED_WASM} && state !== ${POSTED_WASM_CHUNKS}) {
    const until = performance.now() + ${SPIN_US} / 1000;
    while (state !== ${POSTED} && state !== ${POSTED_WASM} && state !== ${POSTED_WASM_CHUNKS} && performance.now() < until) state = Atomics.load(control, 0);
  }
  if (state !== ${POSTED} && state !== ${POSTED_WASM} && state !== ${POSTED_WASM_CHUNKS}) { Atomics.wait(control, 0, state); continue; }
  if (state === ${POSTED_WASM} || state === ${POSTED_WASM_CHUNKS}) {
    try {
      const n = args[1];
      const fn = wasm[kernelNames[args[0]]];
      if (state === ${POSTED_WASM_CHUNKS}) {
        // a dense product's column chunks, taken from the shared counter until none is left (wasmChunks)
        const N = args[8], chunk = args[11];
        for (;;) {
          const n0 = Atomics.add(chunks, 0, 1) * chunk;
          if (n0 >= N) break;
          fn(args[2], args[3], args[4], args[5], args[6], args[7], N, n0, Math.min(N, n0 + chunk));
        }
      } else if (n === 4) fn(args[2], args[3], args[4], args[5]);
      else if (n === 9) fn(args[2], args[3], args[4], args[5], args[6], args[7], args[8], args[9], args[10]);
      else fn(...Array.from(args.subarray(2, 2 + n)));
      Atomics.store(control, 0, ${DONE});
    } catch (err) {
      port.postMessage(String(err && err.stack || err));
      Atomics.store(control, 0, ${FAILED});
    }
    Atomics.notify(control, 0);
    continue;
  }
  let job = receiveMessageOnPort(port).message;
  if (job.kind === 'collect') {
    // collect first, then report done: the caller measures memory after this returns
    job = null;
    collectGarbage();
    Atomics.store(control, 0, ${DONE});
    Atomics.notify(control, 0);
    continue;
  }
  const collect = job.collect === true;
  try {
    if (job.kind === 'attention') attentionRange(job.q, job.k, job.v, job.S, job.p, job.out, job.u0, job.u1);
    else if (job.kind === 'matvec') matvecBlocked(job.x, job.w, job.bias, job.y, job.M, job.K, job.N, job.n0, job.n1);
    else matmulBlocked(job.x, job.w, job.bias, job.y, job.M, job.K, job.N, job.n0, job.n1);
    Atomics.store(control, 0, ${DONE});
  } catch (err) {
    port.postMessage(String(err && err.stack || err));
    Atomics.store(control, 0, ${FAILED});
  }
  Atomics.notify(control, 0);
  job = null;
  if (collect) collectGarbage();
}
`;

let pool: PoolWorker[] | undefined;
/** The next column chunk of the pool's current chunked job (wasmChunks), shared by every thread. */
const chunks = new Int32Array(new SharedArrayBuffer(4));

export function threadCount(): number {
  const env = process.env.SPIKELM_THREADS;
  if (env !== undefined && env !== '') {
    const n = Number.parseInt(env, 10);
    if (Number.isFinite(n) && n >= 1) return n;
  }
  return Math.max(1, Math.min(os.availableParallelism?.() ?? os.cpus().length, 8));
}

function getPool(): PoolWorker[] {
  if (pool) return pool;
  pool = [];
  const source = WORKER_SOURCE();
  const rt = wasmRuntime();
  const wasm = rt ? { module: rt.module, memory: rt.memory } : undefined;
  for (let i = 0; i < threadCount() - 1; i++) {
    const { port1, port2 } = new MessageChannel();
    const control = new Int32Array(new SharedArrayBuffer(4)), args = new Float64Array(new SharedArrayBuffer(8 * ARGS_SLOTS));
    const worker = new Worker(source, { eval: true, workerData: { port: port2, control, args, chunks, wasm }, transferList: [port2] });
    worker.unref();
    port1.unref();
    pool.push({ worker, port: port1, control, args });
  }
  return pool;
}

const isShared = (a: Float32Array | null): boolean => a === null || a.buffer instanceof SharedArrayBuffer;

/** Bytes of buffers handed to the workers since they last collected garbage, past which they do. */
export const COLLECT_AFTER_BYTES = 64 << 20;
const seenByWorkers = new WeakSet<ArrayBufferLike>();
let freshBytes = 0;

/** Note the operands of a job; true when the workers should collect garbage after it. */
function noteOperands(arrays: readonly (Float32Array | null)[]): boolean {
  for (const a of arrays) {
    if (a && !seenByWorkers.has(a.buffer)) {
      seenByWorkers.add(a.buffer);
      freshBytes += a.buffer.byteLength;
    }
  }
  if (freshBytes < COLLECT_AFTER_BYTES) return false;
  freshBytes = 0;
  return true;
}

/**
 * Have every worker collect garbage now and wait until they have: afterwards the shared buffers they
 * were handed and nobody else holds are freed. For measurements of memory (the pool otherwise keeps
 * up to COLLECT_AFTER_BYTES of them between its own collections).
 */
export function collectWorkerGarbage(): void {
  if (!pool || pool.length === 0) return;
  for (const pw of pool) postJob(pw, { kind: 'collect' });
  joinWorkers(pool, 'collect');
  freshBytes = 0;
}

/** Shared staging for operands that live in ordinary memory (copies cost O(MK + MN) ≪ O(MKN)). */
const staging = { x: new Float32Array(new SharedArrayBuffer(4)), y: new Float32Array(new SharedArrayBuffer(4)), bias: new Float32Array(new SharedArrayBuffer(4)) };

function copyInto(dst: Float32Array, src: Float32Array): Float32Array {
  dst.set(src);
  return dst;
}

function stage(which: 'x' | 'y' | 'bias', n: number): Float32Array {
  if (staging[which].length < n) staging[which] = new Float32Array(new SharedArrayBuffer(n * 4));
  return staging[which].subarray(0, n);
}

/**
 * Run y = x·wᵀ + bias across the pool. Returns false (nothing done) when the product is too small
 * or an operand is not in shared memory; the caller then runs the single-threaded kernel.
 */
export function parallelMatmul(x: Float32Array, w: Float32Array, bias: Float32Array | null, y: Float32Array, M: number, K: number, N: number): boolean {
  const matvec = M < MATVEC_MAX_ROWS;
  if (M * K * N < (matvec ? PARALLEL_MIN_MATVEC_MACS : PARALLEL_MIN_MACS) || N < 16) return false;
  // Weights must already be shared (the CPU backend packs them so at load time).
  if (!isShared(w)) return false;
  const workers = getPool();
  if (workers.length === 0) return false;
  const yOut = y;
  if (!isShared(x)) x = copyInto(stage('x', x.length), x);
  if (bias && !isShared(bias)) bias = copyInto(stage('bias', bias.length), bias);
  if (!isShared(y)) y = stage('y', y.length);
  const parts = workers.length + 1;
  // Column ranges in multiples of 8 so every thread runs full register blocks.
  const step = Math.ceil(N / parts / 8) * 8;
  const used: PoolWorker[] = [];
  const collect = noteOperands([x, w, bias, y]);
  for (let i = 0; i < workers.length; i++) {
    const n0 = (i + 1) * step;
    const n1 = Math.min(N, n0 + step);
    if (n0 >= n1) break;
    const pw = workers[i]!;
    postJob(pw, { kind: matvec ? 'matvec' : 'matmul', x, w, bias, y, M, K, N, n0, n1, collect });
    used.push(pw);
  }
  (matvec ? matvecBlocked : matmulBlocked)(x, w, bias, y, M, K, N, 0, Math.min(step, N));
  joinWorkers(used, 'matmul');
  if (y !== yOut) yOut.set(y);
  return true;
}

function postJob(pw: PoolWorker, job: object): void {
  pw.port.postMessage(job);
  Atomics.store(pw.control, 0, POSTED);
  Atomics.notify(pw.control, 0);
}

/** Post a wasm kernel call through the worker's args slot (ARGS_SLOTS says why). */
function postWasm(pw: PoolWorker, fn: WasmKernel, args: readonly number[]): void {
  if (args.length > ARGS_SLOTS - 2) throw new Error(`wasm job ${fn}: ${args.length} arguments, the slot holds ${ARGS_SLOTS - 2}`);
  pw.args[0] = WASM_KERNELS.indexOf(fn);
  pw.args[1] = args.length;
  pw.args.set(args, 2);
  Atomics.store(pw.control, 0, POSTED_WASM);
  Atomics.notify(pw.control, 0);
}

function joinWorkers(used: readonly PoolWorker[], what: string): void {
  let failure: string | undefined;
  for (const pw of used) {
    const until = performance.now() + SPIN_US / 1000;
    for (;;) {
      const state = Atomics.load(pw.control, 0);
      if (state === DONE || state === FAILED) break;
      if (performance.now() >= until) Atomics.wait(pw.control, 0, state);
    }
    if (Atomics.load(pw.control, 0) === FAILED) failure = String(receiveMessageOnPort(pw.port)?.message ?? 'unknown error');
    Atomics.store(pw.control, 0, IDLE);
  }
  if (failure) throw new Error(`${what} worker failed: ${failure}`);
}

/**
 * Attention over `units` (block, head) pairs across the pool. Returns false (nothing done) when the
 * work is small or an operand is not in shared memory.
 */
export function parallelAttention(q: Float32Array, k: Float32Array, v: Float32Array, S: number, p: AttentionParams, out: Float32Array, units: number, work: number): boolean {
  if (work < PARALLEL_MIN_ATTENTION || units < 2) return false;
  if (![q, k, v, out].every((a) => a.buffer instanceof SharedArrayBuffer)) return false;
  const workers = getPool();
  if (workers.length === 0) return false;
  const per = Math.ceil(units / (workers.length + 1));
  const params = { ...p };
  const used: PoolWorker[] = [];
  const collect = noteOperands([q, k, v, out]);
  for (let i = 0; i < workers.length; i++) {
    const u0 = (i + 1) * per, u1 = Math.min(units, u0 + per);
    if (u0 >= u1) break;
    postJob(workers[i]!, { kind: 'attention', q, k, v, S, p: params, out, u0, u1, collect });
    used.push(workers[i]!);
  }
  attentionRange(q, k, v, S, p, out, 0, Math.min(per, units));
  joinWorkers(used, 'attention');
  return true;
}

/**
 * Run a wasm kernel over output columns [0, N), split across the pool when `parallel` (ranges in
 * multiples of `granule`: 8 columns, as for the TypeScript kernels; 1 for attention's units). `argsOf(n0, n1, part)` gives the kernel's arguments
 * for one range; it runs on this thread, so it may stage scratch for its part.
 */
/**
 * A dense product kernel (arguments x, w, bias, y, M, K, N, n0, n1) over output columns [0, N) in
 * chunks that every thread, this one included, takes from a shared counter until none is left:
 * a thread that runs slower (a busier core of a VM, a later wake-up) takes fewer, where equal
 * ranges had the others wait for it at the join. Each output's sums do not depend on which thread
 * or chunk computes it, so the result is the same as over equal ranges, bit for bit.
 */
export function wasmChunks(rt: WasmRuntime, fn: WasmKernel, args: readonly [x: number, w: number, bias: number, y: number, M: number, K: number, N: number], chunk: number): void {
  const kernel = rt.kernels[fn] as (...args: number[]) => void;
  const workers = getPool();
  const N = args[6];
  if (workers.length === 0 || N <= chunk) {
    kernel(...args, 0, N);
    return;
  }
  Atomics.store(chunks, 0, 0);
  for (const pw of workers) {
    pw.args[0] = WASM_KERNELS.indexOf(fn);
    pw.args[1] = 10;
    pw.args.set(args, 2);
    pw.args[11] = chunk;
    Atomics.store(pw.control, 0, POSTED_WASM_CHUNKS);
    Atomics.notify(pw.control, 0);
  }
  for (;;) {
    const n0 = Atomics.add(chunks, 0, 1) * chunk;
    if (n0 >= N) break;
    kernel(...args, n0, Math.min(N, n0 + chunk));
  }
  joinWorkers(workers, fn);
}

export function wasmColumns(rt: WasmRuntime, fn: WasmKernel, N: number, parallel: boolean, argsOf: (n0: number, n1: number, part: number) => number[], granule = 8): void {
  const kernel = rt.kernels[fn] as (...args: number[]) => void;
  const workers = parallel && N >= 2 * granule ? getPool() : [];
  if (workers.length === 0) {
    kernel(...argsOf(0, N, 0));
    return;
  }
  const step = Math.ceil(N / (workers.length + 1) / granule) * granule;
  const used: PoolWorker[] = [];
  for (let i = 0; i < workers.length; i++) {
    const n0 = (i + 1) * step, n1 = Math.min(N, n0 + step);
    if (n0 >= n1) break;
    postWasm(workers[i]!, fn, argsOf(n0, n1, i + 1));
    used.push(workers[i]!);
  }
  kernel(...argsOf(0, Math.min(step, N), 0));
  joinWorkers(used, fn);
}
