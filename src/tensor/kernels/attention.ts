/**
 * Scaled-dot-product attention with a causal mask and grouped-query heads, over a KV cache.
 *
 *   q: [S, H·d]       queries at absolute positions queryStart … queryStart+S−1
 *   k, v: [L, Hkv·d]  keys/values for positions 0 … kvLength−1 (L ≥ kvLength rows allocated)
 *   out: [S, H·d],    out[s, h] = Σ_j softmax_j(scale · q[s,h]·k[j,g]) v[j,g],  j ≤ queryStart+s,
 *                     with g = ⌊h / (H/Hkv)⌋ the key/value head shared by query head h; with a
 *                     sliding window W also j > queryStart+s − W.
 *
 * Batched: with `batches` = B > 1, q holds B blocks of S rows and k/v hold B blocks of
 * `kvBatchStride` rows; block b attends only within block b (the spiking model runs one block per
 * time step over the step's decoded keys and values).
 *
 * `attentionComposite` builds the same thing from the primitives (matmul, scale, softmax) and a test
 * asserts the fused kernel agrees with it.
 */
import { ArgumentError } from '../../errors.js';
import { type GpuRuntime, type GpuTensor, fillTemplate } from '../gpu/runtime.js';
import { type Reduction, chooseReduction, forcedVariant, reductionParts } from '../gpu/variants.js';
import { softmaxCpu } from './softmax.js';
import { parallelAttention } from '../threads.js';

export interface AttentionParams {
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  /** Absolute position of the first query row. */
  readonly queryStart: number;
  /** Valid key/value rows (≥ queryStart + S). */
  readonly kvLength: number;
  readonly scale: number;
  /** Independent blocks (default 1). */
  readonly batches?: number;
  /** Rows between the k/v blocks (default kvLength). */
  readonly kvBatchStride?: number;
  /** Row of k/v where block 0 starts (default 0). */
  readonly kvOffset?: number;
  /** false: every query sees all kvLength keys (default true: keys up to its own position). */
  readonly causal?: boolean;
  /**
   * Per block, the first key its queries may see (a left-padded batch: the block's padding length);
   * default 0. A query that sees no key at all (a padding row) gets zeros.
   */
  readonly keyStarts?: Int32Array;
  /**
   * Sliding window W (Mistral): a query at key index i sees only keys i − W < j ≤ i, W keys
   * including itself (as transformers masks them); causal attention only. Default: no window.
   */
  readonly window?: number;
}

export function checkAttention(p: AttentionParams, S: number): void {
  if (p.numHeads % p.numKvHeads !== 0) throw new ArgumentError(`attention: ${p.numHeads} heads are not a multiple of ${p.numKvHeads} KV heads`);
  if (p.causal === false && p.kvLength < 1) throw new ArgumentError('attention: no keys to attend to');
  if (p.causal !== false && p.kvLength < p.queryStart + S) throw new ArgumentError(`attention: ${p.kvLength} cached keys cannot cover queries up to position ${p.queryStart + S - 1}`);
  if ((p.kvBatchStride ?? p.kvLength) < p.kvLength) throw new ArgumentError(`attention: kv block stride ${p.kvBatchStride} is shorter than ${p.kvLength} keys`);
  if (!Number.isInteger(p.batches ?? 1) || (p.batches ?? 1) < 1) throw new ArgumentError(`attention: batches must be a positive integer, got ${p.batches}`);
  if (p.window !== undefined) {
    if (!Number.isSafeInteger(p.window) || p.window < 1) throw new ArgumentError(`attention: the sliding window must be a positive integer, got ${p.window}`);
    if (p.causal === false) throw new ArgumentError('attention: a sliding window needs causal attention');
  }
  if (p.keyStarts) {
    if (p.keyStarts.length !== (p.batches ?? 1)) throw new ArgumentError(`attention: ${p.keyStarts.length} key starts for ${p.batches ?? 1} blocks`);
    for (const k of p.keyStarts) if (!(k >= 0 && k <= p.kvLength)) throw new ArgumentError(`attention: key start ${k} outside 0…${p.kvLength}`);
  }
}

/** S is the number of query rows per block. Splits the (block, head) units across the thread pool when it pays. */
export function attentionCpu(q: Float32Array, k: Float32Array, v: Float32Array, S: number, p: AttentionParams, out: Float32Array): void {
  checkAttention(p, S);
  const units = (p.batches ?? 1) * p.numHeads;
  const work = units * S * (p.queryStart + S) * p.headDim;
  if (!parallelAttention(q, k, v, S, p, out, units, work)) attentionRange(q, k, v, S, p, out, 0, units);
}

/**
 * Units [u0, u1) of (block b, head h), u = b·H + h. Self-contained (no outside references): the
 * worker threads run its source.
 */
export function attentionRange(q: Float32Array, k: Float32Array, v: Float32Array, S: number, p: AttentionParams, out: Float32Array, u0: number, u1: number): void {
  const H = p.numHeads, Hkv = p.numKvHeads, d = p.headDim, queryStart = p.queryStart, scale = p.scale;
  const stride = p.kvBatchStride ?? p.kvLength, kvOffset = p.kvOffset ?? 0;
  const group = H / Hkv;
  const qWidth = H * d, kvWidth = Hkv * d;
  const scores = new Float64Array(p.kvLength);
  const acc = new Float64Array(d);
  for (let u = u0; u < u1; u++) {
    const b = Math.floor(u / H), h = u % H;
    const g = Math.floor(h / group);
    const blockFirst = p.keyStarts ? p.keyStarts[b]! : 0;
    for (let s = 0; s < S; s++) {
      const qo = (b * S + s) * qWidth + h * d;
      const last = p.causal === false ? p.kvLength - 1 : queryStart + s;
      const first = p.window === undefined ? blockFirst : Math.max(blockFirst, last + 1 - p.window);
      if (last < first) {
        out.fill(0, qo, qo + d); // a padding row: no keys to see
        continue;
      }
      let max = -Infinity;
      for (let j = first; j <= last; j++) {
        const ko = (kvOffset + b * stride + j) * kvWidth + g * d;
        let dot = 0;
        for (let i = 0; i < d; i++) dot += q[qo + i]! * k[ko + i]!;
        scores[j] = dot * scale;
        if (scores[j]! > max) max = scores[j]!;
      }
      let sum = 0;
      for (let j = first; j <= last; j++) {
        scores[j] = Math.exp(scores[j]! - max);
        sum += scores[j]!;
      }
      acc.fill(0);
      for (let j = first; j <= last; j++) {
        const weight = scores[j]!, vo = (kvOffset + b * stride + j) * kvWidth + g * d;
        for (let i = 0; i < d; i++) acc[i] += weight * v[vo + i]!;
      }
      for (let i = 0; i < d; i++) out[qo + i] = acc[i]! / sum;
    }
  }
}

/** The same attention from primitives: per head, P = softmax_causal(scale · Q·Kᵀ), out = P·V. */
export function attentionComposite(q: Float32Array, k: Float32Array, v: Float32Array, S: number, p: AttentionParams): Float32Array {
  checkAttention(p, S);
  const { numHeads: H, numKvHeads: Hkv, headDim: d, kvLength: L } = p;
  const out = new Float32Array(S * H * d);
  for (let h = 0; h < H; h++) {
    const g = Math.floor(h / (H / Hkv));
    const scores = new Float32Array(S * L);
    for (let s = 0; s < S; s++)
      for (let j = 0; j < L; j++) {
        let dot = 0;
        for (let i = 0; i < d; i++) dot += q[s * H * d + h * d + i]! * k[j * Hkv * d + g * d + i]!;
        scores[s * L + j] = dot * p.scale;
      }
    const probs = new Float32Array(S * L);
    softmaxCpu(scores, S, L, probs, { queries: S, queryStart: p.queryStart });
    for (let s = 0; s < S; s++)
      for (let i = 0; i < d; i++) {
        let acc = 0;
        for (let j = 0; j < L; j++) acc += probs[s * L + j]! * v[j * Hkv * d + g * d + i]!;
        out[s * H * d + h * d + i] = acc;
      }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// GPU twins (chooseAttentionVariant picks per adapter and shape; SPIKELM_ATTENTION forces one):
//   scalar  one invocation per (query, head): two passes over the keys (max, then exp-sum and
//           weighted values), any head dimension
//   vec4    the same with one pass and an online softmax (running max m and sum l; when m grows,
//           rescale l and the accumulated output by exp(m_old − m_new)), q/k/v read as vec4: head
//           dims % 4 = 0. Both keep the output row in registers; barrier-free (llvmpipe's choice).
//   splitk  decode on real GPUs ("flash-decoding"): a (query, head) has a handful of invocations
//           above, so the keys are split into blocks of 64 across workgroups. Pass 1, one workgroup
//           per (query, head, block): 64 invocations score one key each, a workgroup max m and sum
//           l of exp(score − m), then the block's exp-weighted value sum per dimension → partials
//           (m, l, acc[D]). Pass 2, one invocation per (query, head, dimension): merge the blocks,
//           M = max m_b, out = Σ acc_b·e^(m_b−M) / Σ l_b·e^(m_b−M). Empty blocks have l = 0.
//   tiled   prefill on real GPUs ("flash-attention" tiles): one workgroup per (block, head, tile of 64
//           queries), one invocation per query with its row of q and its output in registers and an
//           online softmax as vec4; the keys and values the tile needs stream through workgroup memory
//           BK rows at a time (BK = what fits the adapter's workgroup storage: 32 at head dim 64), so
//           each K/V row is read from memory once per 64 queries instead of once per query.

/**
 * Which (block b, query s, head h, KV head g) the unit `idx` is, and the keys [first, last] it may
 * see (causal, or all; after its block's key start): shared by every attention kernel.
 */
const ATTENTION_UNIT_WGSL = `
  let h = idx % p.H;
  let s = (idx / p.H) % p.S;
  let b = idx / (p.H * p.S);
  let g = h / p.group;
  var last = p.queryStart + s;
  if (p.lastAll > 0u) { last = p.lastAll - 1u; }
  var first = 0u;
  if (p.hasStarts != 0u) { first = starts[b]; }
  if (p.window > 0u && last + 1u > p.window) { first = max(first, last + 1u - p.window); }`;

/**
 * What both variants share: the bindings, and per invocation its block b, query s, head h, KV
 * head g, and the last key it may see.
 */
function attentionPrologue(elem: 'f32' | 'vec4f', constant: string): string {
  return `
struct Params { S: u32, H: u32, group: u32, queryStart: u32, scale: f32, qWidth: u32, kvWidth: u32, B: u32, stride: u32, kvOffset: u32, lastAll: u32, hasStarts: u32, window: u32 }
@group(0) @binding(0) var<storage, read> q: array<${elem}>;
@group(0) @binding(1) var<storage, read> k: array<${elem}>;
@group(0) @binding(2) var<storage, read> v: array<${elem}>;
@group(0) @binding(3) var<storage, read_write> y: array<${elem}>;
@group(0) @binding(4) var<storage, read> starts: array<u32>;
@group(0) @binding(5) var<uniform> p: Params;
${constant}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let idx = gid.y * 65535u * 64u + gid.x;
  if (idx >= p.B * p.S * p.H) { return; }
${ATTENTION_UNIT_WGSL}`;
}

const ATTENTION_SCALAR_WGSL = `${attentionPrologue('f32', 'const D = {{headDim}}u;')}
  let qo = (b * p.S + s) * p.qWidth + h * D;
  if (last < first) {
    for (var i = 0u; i < D; i++) { y[qo + i] = 0.0; }
    return;
  }
  var m = -3.4e38;
  for (var j = first; j <= last; j++) {
    let ko = (p.kvOffset + b * p.stride + j) * p.kvWidth + g * D;
    var dot = 0.0;
    for (var i = 0u; i < D; i++) { dot += q[qo + i] * k[ko + i]; }
    m = max(m, dot * p.scale);
  }
  var acc: array<f32, D>;
  var sum = 0.0;
  for (var j = first; j <= last; j++) {
    let ko = (p.kvOffset + b * p.stride + j) * p.kvWidth + g * D;
    var dot = 0.0;
    for (var i = 0u; i < D; i++) { dot += q[qo + i] * k[ko + i]; }
    let e = exp(dot * p.scale - m);
    sum += e;
    for (var i = 0u; i < D; i++) { acc[i] += e * v[ko + i]; }
  }
  for (var i = 0u; i < D; i++) { y[qo + i] = acc[i] / sum; }
}`;

const ATTENTION_VEC4_WGSL = `${attentionPrologue('vec4f', 'const D4 = {{headDim4}}u;')}
  let qo = ((b * p.S + s) * p.qWidth + h * D4 * 4u) / 4u;
  if (last < first) {
    for (var i = 0u; i < D4; i++) { y[qo + i] = vec4f(0.0); }
    return;
  }
  var qv: array<vec4f, D4>;
  var acc: array<vec4f, D4>;
  for (var i = 0u; i < D4; i++) { qv[i] = q[qo + i] * p.scale; }
  var m = -3.4e38;
  var l = 0.0;
  for (var j = first; j <= last; j++) {
    let ko = ((p.kvOffset + b * p.stride + j) * p.kvWidth + g * D4 * 4u) / 4u;
    var score = 0.0;
    for (var i = 0u; i < D4; i++) { score += dot(qv[i], k[ko + i]); }
    if (score > m) {
      let correction = exp(m - score);
      l *= correction;
      for (var i = 0u; i < D4; i++) { acc[i] *= correction; }
      m = score;
    }
    let e = exp(score - m);
    l += e;
    for (var i = 0u; i < D4; i++) { acc[i] += e * v[ko + i]; }
  }
  for (var i = 0u; i < D4; i++) { y[qo + i] = acc[i] / l; }
}`;

const SPLITK_BLOCK = 64;

const ATTENTION_SPLITK_WGSL = `{{enable}}
struct Params { S: u32, H: u32, group: u32, queryStart: u32, scale: f32, qWidth: u32, kvWidth: u32, B: u32, stride: u32, kvOffset: u32, lastAll: u32, hasStarts: u32, window: u32, splits: u32 }
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<storage, read> starts: array<u32>;
@group(0) @binding(5) var<uniform> p: Params;
const D = {{headDim}}u;
{{reduce}}
var<workgroup> e: array<f32, ${SPLITK_BLOCK}>;
@compute @workgroup_size(${SPLITK_BLOCK})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32{{sgParams}}) {
{{sgInit}}
  let split = wid.x;
  let idx = wid.y;
${ATTENTION_UNIT_WGSL}
  let qo = (b * p.S + s) * p.qWidth + h * D;
  let j = split * WG + lid;
  let valid = j >= first && j <= last;
  var score = -3.4e38;
  if (valid) {
    let ko = (p.kvOffset + b * p.stride + j) * p.kvWidth + g * D;
    var dot = 0.0;
    for (var i = 0u; i < D; i++) { dot += q[qo + i] * k[ko + i]; }
    score = dot * p.scale;
  }
  let m = wgMax(lid, score);
  var w = 0.0;
  if (valid) { w = exp(score - m); }
  e[lid] = w;
  let l = wgSum2(lid, w);
  let po = (idx * p.splits + split) * (D + 2u);
  for (var i = lid; i < D; i += WG) {
    var acc = 0.0;
    for (var t = 0u; t < WG; t++) {
      let jt = split * WG + t;
      if (jt >= first && jt <= last) { acc += e[t] * v[(p.kvOffset + b * p.stride + jt) * p.kvWidth + g * D + i]; }
    }
    part[po + i] = acc;
  }
  if (lid == 0u) { part[po + D] = m; part[po + D + 1u] = l; }
}`;

const ATTENTION_MERGE_WGSL = `
struct Params { units: u32, splits: u32, S: u32, H: u32, qWidth: u32, threadsX: u32 }
@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
const D = {{headDim}}u;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let t = gid.y * p.threadsX + gid.x;
  if (t >= p.units * D) { return; }
  let idx = t / D;
  let i = t % D;
  let h = idx % p.H;
  let s = (idx / p.H) % p.S;
  let b = idx / (p.H * p.S);
  var M = -3.4e38;
  for (var sp = 0u; sp < p.splits; sp++) {
    let po = (idx * p.splits + sp) * (D + 2u);
    if (part[po + D + 1u] > 0.0) { M = max(M, part[po + D]); }
  }
  var L = 0.0;
  var acc = 0.0;
  for (var sp = 0u; sp < p.splits; sp++) {
    let po = (idx * p.splits + sp) * (D + 2u);
    let l = part[po + D + 1u];
    if (l > 0.0) {
      let c = exp(part[po + D] - M);
      L += l * c;
      acc += part[po + i] * c;
    }
  }
  var out = 0.0;
  if (L > 0.0) { out = acc / L; }
  y[(b * p.S + s) * p.qWidth + h * D + i] = out;
}`;

const TILE_QUERIES = 64;

const ATTENTION_TILED_WGSL = `
struct Params { S: u32, H: u32, group: u32, queryStart: u32, scale: f32, qWidth: u32, kvWidth: u32, B: u32, stride: u32, kvOffset: u32, lastAll: u32, hasStarts: u32, window: u32 }
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> starts: array<u32>;
@group(0) @binding(5) var<uniform> p: Params;
const D = {{headDim}}u;
const BK = {{keysPerTile}}u;
var<workgroup> ks: array<f32, {{tileFloats}}>;
var<workgroup> vs: array<f32, {{tileFloats}}>;
@compute @workgroup_size(${TILE_QUERIES})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let s0 = wid.x * ${TILE_QUERIES}u;
  // invocations past the last query (s ≥ S) help load the tiles and write nothing
  let h = wid.y % p.H;
  let b = wid.y / p.H;
  let s = s0 + lid;
  let g = h / p.group;
  var last = p.queryStart + min(s, p.S - 1u);
  if (p.lastAll > 0u) { last = p.lastAll - 1u; }
  var first = 0u;
  if (p.hasStarts != 0u) { first = starts[b]; }
  if (p.window > 0u && last + 1u > p.window) { first = max(first, last + 1u - p.window); }
  // the tile's last key (uniform across the workgroup: barriers stay in uniform control flow)
  var tileLast = p.queryStart + min(s0 + ${TILE_QUERIES - 1}u, p.S - 1u);
  if (p.lastAll > 0u) { tileLast = p.lastAll - 1u; }
  let qo = (b * p.S + min(s, p.S - 1u)) * p.qWidth + h * D;
  var qv: array<f32, D>;
  var acc: array<f32, D>;
  for (var i = 0u; i < D; i++) { qv[i] = q[qo + i] * p.scale; }
  var m = -3.4e38;
  var l = 0.0;
  for (var t0 = 0u; t0 <= tileLast; t0 += BK) {
    for (var e = lid; e < BK * D; e += ${TILE_QUERIES}u) {
      let j = t0 + e / D;
      if (j <= tileLast) {
        let ko = (p.kvOffset + b * p.stride + j) * p.kvWidth + g * D + e % D;
        ks[e] = k[ko];
        vs[e] = v[ko];
      }
    }
    workgroupBarrier();
    for (var jj = 0u; jj < BK; jj++) {
      let j = t0 + jj;
      if (j >= first && j <= last) {
        var score = 0.0;
        for (var i = 0u; i < D; i++) { score += qv[i] * ks[jj * D + i]; }
        if (score > m) {
          let correction = exp(m - score);
          l *= correction;
          for (var i = 0u; i < D; i++) { acc[i] *= correction; }
          m = score;
        }
        let w = exp(score - m);
        l += w;
        for (var i = 0u; i < D; i++) { acc[i] += w * vs[jj * D + i]; }
      }
    }
    workgroupBarrier();
  }
  if (s >= p.S) { return; }
  let yo = (b * p.S + s) * p.qWidth + h * D;
  for (var i = 0u; i < D; i++) {
    var out = 0.0;
    if (l > 0.0) { out = acc[i] / l; }
    y[yo + i] = out;
  }
}`;

/** Keys per tile: as many as fit the adapter's workgroup storage twice (K and V), at most 32. */
function keysPerTile(rt: GpuRuntime, d: number): number {
  const bytes = rt.ctx.report.limits.maxComputeWorkgroupStorageSize ?? 16384;
  return Math.max(1, Math.min(32, Math.floor(bytes / (2 * 4 * d))));
}

export type AttentionVariant = 'scalar' | 'vec4' | 'splitk' | 'tiled';
export const ATTENTION_VARIANTS: readonly AttentionVariant[] = ['scalar', 'vec4', 'splitk', 'tiled'];

/**
 * Per adapter and shape: a software adapter takes the barrier-free one-invocation-per-(query, head)
 * kernels (vec4 when the head dimension allows); hardware takes split-K when there are few (query,
 * head) units and many keys (decode), vec4 otherwise.
 */
export function chooseAttentionVariant(rt: GpuRuntime, units: number, keys: number, headDim: number): AttentionVariant {
  const forced = forcedVariant('SPIKELM_ATTENTION', ATTENTION_VARIANTS);
  if (forced) return forced;
  const simple: AttentionVariant = headDim % 4 === 0 ? 'vec4' : 'scalar';
  if (rt.ctx.report.software) return simple;
  if (units <= 1024 && keys >= 2 * SPLITK_BLOCK) return 'splitk';
  // prefill: many queries share each key and value row
  return units >= 4 * TILE_QUERIES ? 'tiled' : simple;
}

export function attentionGpu(rt: GpuRuntime, q: GpuTensor, k: GpuTensor, v: GpuTensor, S: number, p: AttentionParams, y: GpuTensor, variant?: AttentionVariant, reduction?: Reduction): void {
  checkAttention(p, S);
  const d = p.headDim;
  const B = p.batches ?? 1;
  const units = B * S * p.numHeads;
  const keys = p.causal === false ? p.kvLength : p.queryStart + S;
  const chosen = variant ?? chooseAttentionVariant(rt, units, keys, d);
  if (chosen === 'vec4' && d % 4 !== 0) throw new ArgumentError(`attention: the vec4 variant needs a head dimension divisible by 4, got ${d}`);
  const params = [S, p.numHeads, p.numHeads / p.numKvHeads, p.queryStart, { f32: p.scale }, p.numHeads * d, p.numKvHeads * d, B, p.kvBatchStride ?? p.kvLength, p.kvOffset ?? 0, p.causal === false ? p.kvLength : 0, p.keyStarts ? 1 : 0, p.window ?? 0] as const;
  if (chosen === 'splitk') {
    const maxY = rt.ctx.report.limits.maxComputeWorkgroupsPerDimension ?? 65535;
    if (units > maxY) throw new ArgumentError(`attention: split-K runs one workgroup row per (query, head); ${units} exceed the adapter's ${maxY}`);
    const splits = Math.ceil(keys / SPLITK_BLOCK);
    // sized by the cache's rows at decode (one size from token to token: its buffer and bind group stay)
    const maxSplits = S === 1 ? Math.max(splits, Math.ceil((p.kvBatchStride ?? k.shape[0]!) / SPLITK_BLOCK)) : splits;
    const part = rt.alloc([units * maxSplits * (d + 2)]);
    const red = reduction ?? chooseReduction(rt);
    const starts = p.keyStarts ? rt.transient(Uint32Array.from(p.keyStarts)) : q.buffer;
    rt.dispatch(rt.pipeline(`attention/splitk/d${d}/${red}`, () => fillTemplate(ATTENTION_SPLITK_WGSL, { headDim: d, ...reductionParts(red, SPLITK_BLOCK) })), [q.buffer, k.buffer, v.buffer, part.buffer, starts], [...params, splits], [splits, units]);
    const { groups, threadsX } = rt.groups1d(units * d, 64);
    rt.dispatch(rt.pipeline(`attention/merge/d${d}`, () => fillTemplate(ATTENTION_MERGE_WGSL, { headDim: d })), [part.buffer, y.buffer], [units, splits, S, p.numHeads, p.numHeads * d, threadsX], groups);
    rt.release(part);
    return;
  }
  if (chosen === 'tiled') {
    const maxY = rt.ctx.report.limits.maxComputeWorkgroupsPerDimension ?? 65535;
    if (B * p.numHeads > maxY) throw new ArgumentError(`attention: the tiled variant runs one workgroup row per (block, head); ${B * p.numHeads} exceed the adapter's ${maxY}`);
    const bk = keysPerTile(rt, d);
    const pipe = rt.pipeline(`attention/tiled/d${d}/k${bk}`, () => fillTemplate(ATTENTION_TILED_WGSL, { headDim: d, keysPerTile: bk, tileFloats: bk * d }));
    const starts = p.keyStarts ? rt.transient(Uint32Array.from(p.keyStarts)) : q.buffer;
    rt.dispatch(pipe, [q.buffer, k.buffer, v.buffer, y.buffer, starts], params, [Math.ceil(S / TILE_QUERIES), B * p.numHeads]);
    return;
  }
  const pipe = chosen === 'vec4'
    ? rt.pipeline(`attention/vec4/d${d}`, () => fillTemplate(ATTENTION_VEC4_WGSL, { headDim4: d / 4 }))
    : rt.pipeline(`attention/scalar/d${d}`, () => fillTemplate(ATTENTION_SCALAR_WGSL, { headDim: d }));
  const total = Math.ceil(units / 64);
  // Workgroups fold into y past 65535 (the shader's linear index assumes exactly that width).
  const groups: [number, number] = total > 65535 ? [65535, Math.ceil(total / 65535)] : [total, 1];
  // without key starts any buffer fills the binding (the shader does not read it)
  const starts = p.keyStarts ? rt.transient(Uint32Array.from(p.keyStarts)) : q.buffer;
  rt.dispatch(pipe, [q.buffer, k.buffer, v.buffer, y.buffer, starts], params, groups);
}
