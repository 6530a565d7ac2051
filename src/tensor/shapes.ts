/**
 * Shape rules of the primitive ops, shared by every backend so a GPU op rejects exactly what the
 * CPU op rejects, with the same message.
 */
import { ShapeError } from '../errors.js';
import type { BTensor } from './backend.js';
import type { AttentionParams } from './kernels/attention.js';
import { planesOf } from './kernels/codes.js';
import type { SpikeAttentionCodes, SpikeExecution } from './kernels/spike-attention.js';
import { type QkvLayout, qkvWidths } from './kernels/qkv.js';
import { numel, shapeToString } from './tensor.js';
import { checkTopK } from './kernels/top-k.js';

const cols = (t: BTensor): number => (t.shape.length === 0 ? 1 : t.shape[t.shape.length - 1]!);
const rows = (t: BTensor): number => {
  const c = cols(t);
  return c === 0 ? 0 : numel(t.shape) / c;
};

export function matmulDims(x: BTensor, w: BTensor, bias?: BTensor, residual?: BTensor): { M: number; K: number; N: number } {
  const K = cols(x), M = rows(x);
  if (w.shape.length !== 2) throw new ShapeError(`matmul: weight must be [out, in], got ${shapeToString(w.shape)}`);
  const [N, wK] = w.shape as [number, number];
  if (wK !== K) throw new ShapeError(`matmul: x ${shapeToString(x.shape)} and weight ${shapeToString(w.shape)} disagree on K (weights are [out, in])`);
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== N)) throw new ShapeError(`matmul: bias ${shapeToString(bias.shape)} must be [${N}]`);
  if (residual && (cols(residual) !== N || rows(residual) !== M)) throw new ShapeError(`matmul: residual ${shapeToString(residual.shape)} must be [${M}, ${N}]`);
  return { M, K, N };
}

/** add/mul: b has a's shape, or is a row vector of a's last dimension. Returns whether it broadcasts. */
export function binaryBroadcast(op: string, a: BTensor, b: BTensor): boolean {
  const same = a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);
  if (same) return false;
  if (b.shape.length === 1 && b.shape[0] === cols(a)) return true;
  throw new ShapeError(`${op}: shapes ${shapeToString(a.shape)} and ${shapeToString(b.shape)} do not match (b must equal a or be a row vector)`);
}

export function checkVector(t: BTensor | undefined, n: number, what: string): void {
  if (t && (t.shape.length !== 1 || t.shape[0] !== n)) throw new ShapeError(`${what}: expected [${n}], got ${shapeToString(t.shape)}`);
}

export function embeddingDims(table: BTensor): { V: number; D: number } {
  if (table.shape.length !== 2) throw new ShapeError(`embedding: table must be [vocab, dim], got ${shapeToString(table.shape)}`);
  return { V: table.shape[0]!, D: table.shape[1]! };
}

/** Returns S, the query rows per block. */
export function attentionDims(q: BTensor, k: BTensor, v: BTensor, p: AttentionParams): { S: number } {
  const kvWidth = p.numKvHeads * p.headDim;
  const B = p.batches ?? 1, stride = p.kvBatchStride ?? p.kvLength;
  if (cols(q) !== p.numHeads * p.headDim) throw new ShapeError(`attention: q ${shapeToString(q.shape)} is not [S, ${p.numHeads}·${p.headDim}]`);
  if (rows(q) % B !== 0) throw new ShapeError(`attention: q has ${rows(q)} rows, not a multiple of ${B} blocks`);
  const needed = (p.kvOffset ?? 0) + (B - 1) * stride + p.kvLength;
  if (cols(k) !== kvWidth || cols(v) !== kvWidth || rows(k) < needed || rows(v) < needed) {
    throw new ShapeError(`attention: k ${shapeToString(k.shape)} / v ${shapeToString(v.shape)} must be [≥${needed}, ${kvWidth}]`);
  }
  return { S: rows(q) / B };
}

export function writeRowsCheck(dst: BTensor, src: BTensor, rowOffset: number): void {
  if (cols(src) !== cols(dst) || rowOffset < 0 || rowOffset + rows(src) > rows(dst)) {
    throw new ShapeError(`writeRows: cannot write ${shapeToString(src.shape)} at row ${rowOffset} of ${shapeToString(dst.shape)}`);
  }
}

export function sliceRowsCheck(x: BTensor, start: number, end: number): void {
  if (start < 0 || end > rows(x) || start > end) throw new ShapeError(`sliceRows: [${start}, ${end}) out of range for ${rows(x)} rows`);
}

export function ropeCheck(x: BTensor, positions: Int32Array, numHeads: number, headDim: number): void {
  if (cols(x) !== numHeads * headDim || rows(x) !== positions.length) {
    throw new ShapeError(`rope: x ${shapeToString(x.shape)} is not [${positions.length}, ${numHeads}·${headDim}]`);
  }
  if (headDim % 2 !== 0) throw new ShapeError(`rope: head dimension ${headDim} must be even`);
}

export function gatedDims(x: BTensor): { R: number; C: number } {
  const c2 = cols(x);
  if (c2 % 2 !== 0) throw new ShapeError(`gatedActivation: x ${shapeToString(x.shape)} must be [rows, 2·C] (gate | up)`);
  return { R: rows(x), C: c2 / 2 };
}

export function qkvCheck(qkv: BTensor, kCache: BTensor, vCache: BTensor, l: QkvLayout): { S: number; qWidth: number } {
  const { qWidth, kvWidth, total } = qkvWidths(l);
  const B = l.batches ?? 1;
  const S = rows(qkv) / B;
  if (cols(qkv) !== total || !Number.isInteger(S)) throw new ShapeError(`qkvToCache: qkv ${shapeToString(qkv.shape)} is not [${B}·S, ${qWidth} + 2·${kvWidth}]`);
  if (l.positions.length !== S && l.positions.length !== B * S) throw new ShapeError(`qkvToCache: ${l.positions.length} positions for ${B} block(s) of ${S} rows (expected ${S} or ${B * S})`);
  if (l.invFreq && l.headDim % 2 !== 0) throw new ShapeError(`qkvToCache: head dimension ${l.headDim} must be even for rotary positions`);
  const needed = (B - 1) * (l.kvBatchStride ?? 0) + l.rowOffset + S;
  if (B > 1 && (l.kvBatchStride ?? 0) < l.rowOffset + S) throw new ShapeError(`qkvToCache: cache block stride ${l.kvBatchStride} cannot hold rows up to ${l.rowOffset + S}`);
  for (const [name, c] of [['k', kCache], ['v', vCache]] as const) {
    if (cols(c) !== kvWidth || rows(c) < needed) throw new ShapeError(`qkvToCache: ${name} cache ${shapeToString(c.shape)} cannot take ${S} rows of ${kvWidth} at row ${l.rowOffset}`);
  }
  return { S, qWidth };
}

/** A time-major [T·R, C] operand: returns R (rows per step) and C. */
export function timeMajorDims(x: BTensor, steps: number, what: string): { R: number; C: number } {
  if (!Number.isInteger(steps) || steps < 1) throw new ShapeError(`${what}: steps must be a positive integer, got ${steps}`);
  const R = rows(x) / steps;
  if (!Number.isInteger(R)) throw new ShapeError(`${what}: ${rows(x)} rows are not ${steps} steps of equal size`);
  return { R, C: cols(x) };
}

export function stateCheck(state: BTensor | undefined, R: number, C: number, what: string): void {
  if (state && numel(state.shape) !== R * C) throw new ShapeError(`${what}: state ${shapeToString(state.shape)} must hold ${R}·${C} values`);
}

/** Rows per plane of a plane-major [P·R, C] digit tensor. */
export function planeRows(digits: BTensor, planes: number, what: string): number {
  const r = rows(digits);
  if (!Number.isInteger(planes) || planes < 1 || r % planes !== 0) throw new ShapeError(`${what}: ${r} rows are not ${planes} equal planes`);
  return r / planes;
}

/** Query rows of a spike attention: q is [S, H·d] (digit sums) or [Pq·S, H·d] (digits); caches hold kvLength rows. */
export function spikeAttentionDims(q: BTensor, k: BTensor, v: BTensor, p: AttentionParams, codes: SpikeAttentionCodes, mode: SpikeExecution): number {
  if ((p.batches ?? 1) !== 1 || (p.kvOffset ?? 0) !== 0) throw new ShapeError('spikeAttention: one block, no kv offset (the layerwise cache holds one row per token)');
  if (cols(q) !== p.numHeads * p.headDim) throw new ShapeError(`spikeAttention: q ${shapeToString(q.shape)} is not [S, ${p.numHeads}·${p.headDim}]`);
  const S = mode === 'event' ? planeRows(q, planesOf(codes.q), 'spikeAttention q digits') : rows(q);
  const kvWidth = p.numKvHeads * p.headDim;
  if (cols(k) !== kvWidth || cols(v) !== kvWidth || rows(k) < p.kvLength || rows(v) < p.kvLength) {
    throw new ShapeError(`spikeAttention: k ${shapeToString(k.shape)} / v ${shapeToString(v.shape)} must be [≥${p.kvLength}, ${kvWidth}]`);
  }
  return S;
}

/** topK: x [R, N] and 1 ≤ k ≤ min(N, MAX_TOP_K); returns R and N. */
export function topKDims(x: BTensor, k: number): { R: number; N: number } {
  if (x.shape.length !== 2) throw new ShapeError(`topK: x must be [R, N], got ${shapeToString(x.shape)}`);
  checkTopK(k, cols(x), 'topK');
  return { R: rows(x), N: cols(x) };
}

/**
 * refineColumns: coarse [R, N], idx [R, k], x digit sums [R, K] (planes 0) or digit planes
 * [planes·R, K], w [N, K], bias [N]; returns R, N, K and k.
 */
export function refineDims(coarse: BTensor, idx: BTensor, x: BTensor, planes: number, w: BTensor, bias?: BTensor): { R: number; N: number; K: number; k: number } {
  if (coarse.shape.length !== 2 || idx.shape.length !== 2 || w.shape.length !== 2) throw new ShapeError(`refineColumns: coarse, idx and w must be matrices, got ${shapeToString(coarse.shape)}, ${shapeToString(idx.shape)}, ${shapeToString(w.shape)}`);
  const R = rows(coarse), N = cols(coarse), K = cols(w), k = cols(idx);
  if (rows(w) !== N) throw new ShapeError(`refineColumns: w ${shapeToString(w.shape)} must have ${N} rows (the logits' columns)`);
  if (rows(idx) !== R) throw new ShapeError(`refineColumns: idx ${shapeToString(idx.shape)} must have ${R} rows`);
  if (cols(x) !== K || rows(x) !== (planes === 0 ? R : planes * R)) throw new ShapeError(`refineColumns: x ${shapeToString(x.shape)} must be [${planes === 0 ? R : `${planes}·${R}`}, ${K}]`);
  if (bias && numel(bias.shape) !== N) throw new ShapeError(`refineColumns: bias ${shapeToString(bias.shape)} must have ${N} values`);
  return { R, N, K, k };
}
