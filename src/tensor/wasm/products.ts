/**
 * The wasm SIMD set's dispatchers for the products (the TypeScript set's are in kernels/matmul.ts,
 * spike-matmul.ts and plane-matmul.ts): operands are located in the shared memory or staged into it
 * (runtime.ts says why), the kernel runs over column ranges across the pool, the result is copied out.
 * Each returns false, having done nothing, when the weight is not in the wasm memory (a model past
 * wasm32's 4 GiB); the caller then runs the TypeScript kernel.
 *
 *   matmulWasm   y = x·wᵀ + bias (+ residual): `f32` sums (the ANN) or `f64` sums (the spiking dense
 *                products, the TypeScript kernels' contract); matrix–vector form below 4 rows
 *                (whose f64 kernel reads x widened to float64: productInput)
 *   matmulHalfWasm  the same `f32` product over a BF16/F16 weight (widened as it is loaded)
 *   eventWasm    event-driven rows of wᵀ per nonzero spike (f64)
 *   planeWasm    event-driven digit planes, Horner over planes (f64)
 *   activationWasm, gatedActivationWasm  the activations (f64 formulas, as in TypeScript), element ranges
 *   normWasm     layer and RMS norms over row ranges (bit for bit the TypeScript kernels: assembly/norm.ts)
 *   spikeAttentionWasm  spike-driven attention's fast execution over (row, head) units (bit for bit
 *                kernels/spike-attention.ts: assembly/spike-attention.ts); keys and values staged
 *   foldWasm     thresholds folded into a weight, W·diag(θ·unit), into a weight copy in the memory
 *                (bit for bit kernels/fold.ts: assembly/fold.ts)
 *   attentionWasm  causal attention over (block, head) units (f64, the TypeScript kernel's arithmetic);
 *                q, k and v are staged where they live outside the memory (the KV cache does)
 */
import type { AttentionParams } from '../kernels/attention.js';
import { type SpikeAttentionCodes, type SpikeAttentionInputs } from '../kernels/spike-attention.js';
import { unitOf, validateCode } from '../kernels/codes.js';
import type { Activation } from '../kernels/elementwise.js';
import { MATVEC_MAX_ROWS } from '../kernels/matmul.js';
import { PARALLEL_MIN_ATTENTION, PARALLEL_MIN_MACS, PARALLEL_MIN_MATVEC_MACS, threadCount, wasmChunks, wasmColumns } from '../threads.js';
import type { HalfFormat } from '../half.js';
import type { WasmKernel, WasmRuntime } from './runtime.js';

export type WasmAccumulate = 'f32' | 'f64';

/** y's address: in place when y lives in the memory, else a staging slot copied out by `finish`. */
function output(rt: WasmRuntime, y: Float32Array): number {
  return rt.addressOf(y) ?? rt.stage('y', y.byteLength);
}

function finish(rt: WasmRuntime, y: Float32Array, yp: number): void {
  if (rt.addressOf(y) === undefined) y.set(rt.view(yp, y.length));
}

/** y = y + residual, rounded per element (the TypeScript dispatcher's fused add). */
function addResidual(y: Float32Array, residual: Float32Array | undefined): void {
  if (residual) for (let i = 0; i < y.length; i++) y[i] = y[i]! + residual[i]!;
}

export function matmulWasm(rt: WasmRuntime, x: Float32Array, w: Float32Array, bias: Float32Array | undefined, y: Float32Array, M: number, K: number, N: number, residual: Float32Array | undefined, accumulate: WasmAccumulate): boolean {
  const wp = rt.addressOf(w);
  if (wp === undefined) return false;
  const matvec = M < MATVEC_MAX_ROWS;
  const fn = accumulate === 'f32' ? (matvec ? 'matvecF32Row' : 'matmulF32Tile4x4') : matvec ? 'matvecF64Row' : 'matmulF64Tile4x4';
  denseProduct(rt, fn, x, wp, bias, y, M, K, N, residual);
  return true;
}

export function matmulHalfWasm(rt: WasmRuntime, x: Float32Array, w: Uint16Array, format: HalfFormat, bias: Float32Array | undefined, y: Float32Array, M: number, K: number, N: number, residual: Float32Array | undefined): boolean {
  const wp = rt.addressOf(w);
  if (wp === undefined) return false;
  const matvec = M < MATVEC_MAX_ROWS;
  const fn = format === 'bf16' ? (matvec ? 'matvecBf16Row' : 'matmulBf16Tile4x4') : matvec ? 'matvecF16Row' : 'matmulF16Tile4x4';
  denseProduct(rt, fn, x, wp, bias, y, M, K, N, residual);
  return true;
}

/**
 * x's address in the form `fn` reads it: float32 as it is, or, for matvecF64Row, widened to float64
 * into a staging slot (M·K values, this thread), so the kernel widens only the weights.
 */
export function productInput(rt: WasmRuntime, fn: WasmKernel, x: Float32Array, M: number, K: number): number {
  if (fn !== 'matvecF64Row') return rt.operand(x, 'x');
  const n = M * K, ptr = rt.stage('x-f64', n * 8);
  new Float64Array(rt.memory.buffer, ptr, n).set(n === x.length ? x : x.subarray(0, n));
  return ptr;
}

/** Columns per chunk of a tile product: about CHUNKS_PER_THREAD chunks a thread, in multiples of 8. */
const CHUNKS_PER_THREAD = 4;

function denseChunk(N: number): number {
  return Math.max(8, Math.ceil(N / (threadCount() * CHUNKS_PER_THREAD) / 8) * 8);
}

/** A dense product kernel over column ranges (split across the pool when large), then the residual. */
function denseProduct(rt: WasmRuntime, fn: WasmKernel, x: Float32Array, wp: number, bias: Float32Array | undefined, y: Float32Array, M: number, K: number, N: number, residual: Float32Array | undefined): void {
  const xp = productInput(rt, fn, x, M, K), bp = bias ? rt.operand(bias, 'bias') : 0, yp = output(rt, y);
  if (M >= MATVEC_MAX_ROWS) {
    // the tiles, in column chunks taken by whichever thread is free (wasmChunks says why)
    if (M * K * N >= PARALLEL_MIN_MACS) wasmChunks(rt, fn, [xp, wp, bp, yp, M, K, N], denseChunk(N));
    else (rt.kernels[fn] as (...args: number[]) => void)(xp, wp, bp, yp, M, K, N, 0, N);
  } else wasmColumns(rt, fn, N, M * K * N >= PARALLEL_MIN_MATVEC_MACS, (n0, n1) => [xp, wp, bp, yp, M, K, N, n0, n1]);
  finish(rt, y, yp);
  addResidual(y, residual);
}

/** Event work below which the rows stay on the calling thread (one weight-row add per event). */
const PARALLEL_MIN_EVENT_ADDS = 1 << 17;

export function eventWasm(rt: WasmRuntime, s: Float32Array, wT: Float32Array, bias: Float32Array | undefined, residual: Float32Array | undefined, y: Float32Array, M: number, K: number, N: number, events: number): boolean {
  const wp = rt.addressOf(wT);
  if (wp === undefined) return false;
  const sp = rt.operand(s, 'x'), bp = bias ? rt.operand(bias, 'bias') : 0, rp = residual ? rt.operand(residual, 'residual') : 0, yp = output(rt, y);
  wasmColumns(rt, 'eventRowsF64', N, events * N >= PARALLEL_MIN_EVENT_ADDS, (n0, n1, part) => [sp, wp, bp, rp, yp, M, K, N, n0, n1, rt.stage(`acc${part}`, Math.max(1, n1 - n0) * 8)]);
  finish(rt, y, yp);
  return true;
}

export function planeWasm(rt: WasmRuntime, digits: Float32Array, P: number, R: number, K: number, N: number, growth: 1 | 2, wT: Float32Array, bias: Float32Array | undefined, residual: Float32Array | undefined, y: Float32Array, events: number): boolean {
  const wp = rt.addressOf(wT);
  if (wp === undefined) return false;
  const dp = rt.operand(digits, 'x'), bp = bias ? rt.operand(bias, 'bias') : 0, rp = residual ? rt.operand(residual, 'residual') : 0, yp = output(rt, y);
  wasmColumns(rt, 'planeAccumulateF64', N, events * N >= PARALLEL_MIN_EVENT_ADDS, (n0, n1, part) => [dp, P, R, K, N, growth, wp, bp, rp, yp, n0, n1, rt.stage(`acc${part}`, Math.max(1, n1 - n0) * 8)]);
  finish(rt, y, yp);
  return true;
}

/**
 * Query rows from which attention runs in wasm: every row, decode's single one included. Staging a
 * decode step's keys and values (one read of them) costs less than the TypeScript kernel's arithmetic
 * over them: in an inspector profile of GPT-2-small-shaped decode (2-core AMD EPYC VM, 37–60 cached
 * positions) attention took 12.3% of the main thread in TypeScript, 4.6% in wasm with the copy.
 */
export const ATTENTION_MIN_QUERIES = 1;

export function attentionWasm(rt: WasmRuntime, q: Float32Array, k: Float32Array, v: Float32Array, S: number, p: AttentionParams, out: Float32Array): void {
  const H = p.numHeads, Hkv = p.numKvHeads, d = p.headDim, batches = p.batches ?? 1;
  const stride = p.kvBatchStride ?? p.kvLength, kvOffset = p.kvOffset ?? 0;
  // only the rows of k and v that any block can read
  const rows = kvOffset + (batches - 1) * stride + p.kvLength, kvWidth = Hkv * d;
  const qp = rt.operand(q, 'x'), kp = rt.operand(k.subarray(0, rows * kvWidth), 'k'), vp = rt.operand(v.subarray(0, rows * kvWidth), 'v');
  const ks = p.keyStarts ? rt.operand(Int32Array.from(p.keyStarts), 'keyStarts') : 0;
  const op = output(rt, out);
  const units = batches * H, work = units * S * (p.queryStart + S) * d;
  wasmColumns(rt, 'attentionF64', units, work >= PARALLEL_MIN_ATTENTION, (u0, u1, part) => [
    qp, kp, vp, op, S, H, Hkv, d, p.queryStart, p.kvLength, p.scale, stride, kvOffset, p.causal === false ? 0 : 1, p.window ?? -1, ks, u0, u1,
    rt.stage(`scores${part}`, Math.max(1, p.kvLength) * 8), rt.stage(`acc${part}`, Math.max(1, d) * 8),
  ], 1);
  finish(rt, out, op);
}

const ACTIVATION_KIND: Readonly<Record<Activation, number>> = { gelu_tanh: 0, gelu_erf: 1, gelu_quick: 2, silu: 3, relu: 4 };
/** Elements from which an activation is split across the pool. */
const PARALLEL_MIN_ELEMENTS = 1 << 16;

export function activationWasm(rt: WasmRuntime, kind: Activation, x: Float32Array, out: Float32Array): void {
  const xp = rt.operand(x, 'x'), op = output(rt, out);
  wasmColumns(rt, 'activationF64', x.length, x.length >= PARALLEL_MIN_ELEMENTS, (i0, i1) => [ACTIVATION_KIND[kind], xp, op, i0, i1], 1024);
  finish(rt, out, op);
}

export function gatedActivationWasm(rt: WasmRuntime, kind: Activation, x: Float32Array, C: number, out: Float32Array): void {
  const xp = rt.operand(x, 'x'), op = output(rt, out);
  wasmColumns(rt, 'gatedActivationF64', out.length, out.length >= PARALLEL_MIN_ELEMENTS, (i0, i1) => [ACTIVATION_KIND[kind], xp, op, C, i0, i1], 1024);
  finish(rt, out, op);
}

/** Rows × columns from which a norm is split across the pool (prefill's rows; decode's one row stays). */
const PARALLEL_MIN_NORM_ELEMENTS = 1 << 15;

/** A layer norm (with its β, or none) or an RMS norm (beta null) of x [R, C] into out. */
export function normWasm(rt: WasmRuntime, kind: 'layer' | 'rms', x: Float32Array, gamma: Float32Array, beta: Float32Array | undefined, eps: number, R: number, C: number, out: Float32Array): void {
  const xp = rt.operand(x, 'x'), gp = rt.operand(gamma, 'gamma'), bp = beta ? rt.operand(beta, 'beta') : 0, op = output(rt, out);
  const parallel = R >= 2 && R * C >= PARALLEL_MIN_NORM_ELEMENTS;
  if (kind === 'layer') wasmColumns(rt, 'layerNormF64', R, parallel, (r0, r1) => [xp, gp, bp, beta ? 1 : 0, op, C, eps, r0, r1], 1);
  else wasmColumns(rt, 'rmsNormF64', R, parallel, (r0, r1) => [xp, gp, op, C, eps, r0, r1], 1);
  finish(rt, out, op);
}

/** Nonzero entries (the event count that decides whether the rows are split across threads). */
export function nonzeros(a: Float32Array): number {
  let nz = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== 0) nz++;
  return nz;
}

/** Below this many weights a fold stays on the calling thread. */
const PARALLEL_MIN_FOLD = 1 << 18;

/**
 * dst = w·diag(scaled) over w's N rows of K (kernels/fold.ts), w float32 or 16-bit bits of `format`.
 * Returns false, having done nothing, when w or dst is not in the memory.
 */
export function foldWasm(rt: WasmRuntime, w: Float32Array | Uint16Array, format: HalfFormat | undefined, scaled: Float64Array, dst: Float32Array, N: number, K: number): boolean {
  const wp = rt.addressOf(w), dp = rt.addressOf(dst);
  if (wp === undefined || dp === undefined) return false;
  const sp = rt.stage('fold-scaled', K * 8);
  new Float64Array(rt.memory.buffer, sp, K).set(scaled);
  const fn = format === undefined ? 'foldF32' : format === 'bf16' ? 'foldBf16' : 'foldF16';
  wasmColumns(rt, fn, N, N * K >= PARALLEL_MIN_FOLD, (n0, n1) => [wp, sp, dp, K, n0, n1], 1);
  return true;
}

const CODE_KIND = { rate: 0, binary: 1, ternary: 2 } as const;

/**
 * Spike-driven attention's fast execution (spikeAttentionCpu's `fast` branch, same arguments) into
 * out [S, H·d] and rowStats [S·H, STATS_WIDTH]: (row, head) units split across the pool when the
 * work (units × keys × d) is large.
 */
export function spikeAttentionWasm(rt: WasmRuntime, inp: SpikeAttentionInputs, S: number, p: AttentionParams, codes: SpikeAttentionCodes, out: Float32Array, rowStats: Float32Array): void {
  validateCode(codes.q);
  validateCode(codes.p);
  const H = p.numHeads, d = p.headDim, L = p.kvLength, kvW = p.numKvHeads * d;
  const qp = rt.operand(inp.q, 'x'), kp = rt.operand(inp.k.subarray(0, L * kvW), 'k'), vp = rt.operand(inp.v.subarray(0, L * kvW), 'v');
  const tq = rt.operand(inp.thetaQ, 'thetaQ'), tp = rt.operand(inp.thetaP, 'thetaP'), ip = rt.operand(inp.invThetaP, 'invThetaP');
  const op = output(rt, out), sp = rt.addressOf(rowStats) ?? rt.stage('rowStats', rowStats.byteLength);
  const units = S * H, work = units * L * d;
  wasmColumns(rt, 'spikeAttentionFastF64', units, work >= PARALLEL_MIN_ATTENTION, (u0, u1, part) => [
    qp, kp, vp, tq, tp, ip, op, sp, H, p.numKvHeads, d, p.queryStart, L, p.causal === false ? 0 : 1, p.window ?? -1,
    unitOf(codes.q) * p.scale, CODE_KIND[codes.p.kind], codes.p.T, codes.p.maxSpikes ?? Infinity, unitOf(codes.p),
    u0, u1, rt.stage(`scores${part}`, Math.max(1, L) * 8), rt.stage(`mp${part}`, Math.max(1, L) * 8), rt.stage(`acc${part}`, Math.max(1, d) * 8),
  ], 1);
  finish(rt, out, op);
  finish(rt, rowStats, sp);
}
