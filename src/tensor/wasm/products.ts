/**
 * The wasm SIMD set's dispatchers for the products (the TypeScript set's are in kernels/matmul.ts,
 * spike-matmul.ts and plane-matmul.ts): operands are located in the shared memory or staged into it
 * (runtime.ts says why), the kernel runs over column ranges across the pool, the result is copied out.
 * Each returns false, having done nothing, when the weight is not in the wasm memory (a model past
 * wasm32's 4 GiB); the caller then runs the TypeScript kernel.
 *
 *   matmulWasm   y = x·wᵀ + bias (+ residual): `f32` sums (the ANN) or `f64` sums (the spiking dense
 *                products, the TypeScript kernels' contract); matrix–vector form below 4 rows
 *   eventWasm    event-driven rows of wᵀ per nonzero spike (f64)
 *   planeWasm    event-driven digit planes, Horner over planes (f64)
 */
import { MATVEC_MAX_ROWS } from '../kernels/matmul.js';
import { PARALLEL_MIN_MACS, PARALLEL_MIN_MATVEC_MACS, wasmColumns } from '../threads.js';
import type { WasmRuntime } from './runtime.js';

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
  const xp = rt.operand(x, 'x'), bp = bias ? rt.operand(bias, 'bias') : 0, yp = output(rt, y);
  const matvec = M < MATVEC_MAX_ROWS;
  const fn = accumulate === 'f32' ? (matvec ? 'matvecF32Rows4' : 'matmulF32Tile4x4') : matvec ? 'matvecF64Rows4' : 'matmulF64Tile4x4';
  const parallel = M * K * N >= (matvec ? PARALLEL_MIN_MATVEC_MACS : PARALLEL_MIN_MACS);
  wasmColumns(rt, fn, N, parallel, (n0, n1) => [xp, wp, bp, yp, M, K, N, n0, n1]);
  finish(rt, y, yp);
  addResidual(y, residual);
  return true;
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

/** Nonzero entries (the event count that decides whether the rows are split across threads). */
export function nonzeros(a: Float32Array): number {
  let nz = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== 0) nz++;
  return nz;
}
