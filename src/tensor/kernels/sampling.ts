/**
 * Choosing the next token from a row of logits: one algorithm, in float32, for the CPU (the
 * reference, here) and the GPU (its WGSL twin below), so that a decode loop can sample on the device
 * and read back one id instead of the logits.
 *
 *   1. scores s_i = logit_i; a token already seen (repetition penalty ρ ≠ 1) gets s_i·(1/ρ) if
 *      s_i > 0, else s_i·ρ (1/ρ rounded to float32 once: multiplications are exact-rounded on both
 *      sides, a WGSL division is not).
 *   2. rank: by score, largest first; equal scores by token index, smallest first. Scores are
 *      compared as their order key (keyOf: the float's bits made monotone), so −0 ranks below +0
 *      and NaN ranks last. This is the tie rule: greedy picks the first-ranked token, i.e. numpy's
 *      argmax except that a NaN never wins and −0 < +0.
 *   3. greedy (temperature 0): the first-ranked token.
 *   4. sampling: w_i = exp((s_i − s_top)·(1/τ)) in float32. The candidates are a prefix of the rank:
 *      the first k (top-k, k > 0), then the shortest prefix whose mass reaches p·(mass of the
 *      candidates) (top-p, p < 1); the draw is the first-ranked candidate whose prefix mass exceeds
 *      u = r·(mass of what is kept), clamped below it. r ∈ [0, 1) is the caller's uniform draw.
 *      Weights below the smallest normal float32 count as 0 (a GPU may flush them).
 *
 * "The mass of a set" is always one sum in one order, on both sides (massOf): a partial sum per
 * residue class i mod 256 in increasing i, then a binary tree over the 256 partials — what one GPU
 * workgroup of 256 computes. Float addition is monotone, so the mass of a rank prefix grows with
 * the prefix, and the GPU finds each boundary by bisection over (order key, index) where the CPU
 * bisects over rank positions: both find the same first crossing of the same sums.
 *
 * The one difference left is exp: WGSL's is accurate to a few ulp, the CPU's is correctly rounded.
 * A draw can differ only where u falls within that rounding of a prefix mass (a few parts in 10⁷ of
 * the kept mass); test/decode-loop.test.ts counts the agreements.
 */
import { ArgumentError } from '../../errors.js';
import type { GpuRuntime, GpuTensor } from '../gpu/runtime.js';
import { chooseRowVariant } from '../gpu/variants.js';

/** What one draw needs (the options of nn/sampling.ts, validated there). */
export interface TokenChoice {
  /** 0 = greedy. */
  readonly temperature: number;
  /** Keep the k first-ranked tokens (0 = all). */
  readonly topK: number;
  /** Keep the shortest rank prefix whose mass reaches p (1 = all). */
  readonly topP: number;
  /** 1 = off. */
  readonly repetitionPenalty: number;
}

export const GREEDY: TokenChoice = { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1 };

/** Partials of a mass: one per invocation of the GPU's workgroup. */
export const SAMPLING_LANES = 256;

const f32 = Math.fround;
/** The smallest normal float32 (2⁻¹²⁶). */
const MIN_NORMAL = 2 ** -126;
const bits = new DataView(new ArrayBuffer(4));

/** The order key of a float32: larger float → larger key; NaN → 0 (last). */
export function keyOf(s: number): number {
  bits.setFloat32(0, s);
  const b = bits.getUint32(0);
  if ((b & 0x7fffffff) > 0x7f800000) return 0;
  return b & 0x80000000 ? ~b >>> 0 : (b | 0x80000000) >>> 0;
}

/** keyOf's WGSL twin (the same bits). */
export const KEY_OF_WGSL = `fn keyOf(s: f32) -> u32 {
  let b = bitcast<u32>(s);
  if ((b & 0x7fffffffu) > 0x7f800000u) { return 0u; }
  if ((b & 0x80000000u) != 0u) { return ~b; }
  return b | 0x80000000u;
}`;

/** The largest float32 below a positive finite float32 x. */
export function floatBelow(x: number): number {
  bits.setFloat32(0, x);
  bits.setUint32(0, bits.getUint32(0) - 1);
  return bits.getFloat32(0);
}

/** The uniform draw as the kernels use it: float32, and below 1. */
export function drawOf(r: number): number {
  if (!(r >= 0 && r < 1)) throw new ArgumentError(`sampling: the uniform draw must be in [0, 1), got ${r}`);
  const x = f32(r);
  return x < 1 ? x : floatBelow(1);
}

/** The penalised score of one logit (step 1). */
function penalised(logit: number, seen: boolean, c: TokenChoice): number {
  const s = f32(logit);
  if (!seen || c.repetitionPenalty === 1) return s;
  return s > 0 ? f32(s * f32(1 / c.repetitionPenalty)) : f32(s * f32(c.repetitionPenalty));
}

/** The mass of the tokens with `member(i)`: per-lane partial sums in increasing i, then the lane tree. */
export function massOf(w: Float32Array, member: (i: number) => boolean): number {
  const part = new Float32Array(SAMPLING_LANES);
  for (let i = 0; i < w.length; i++) if (member(i)) part[i % SAMPLING_LANES] = part[i % SAMPLING_LANES]! + w[i]!;
  for (let stride = SAMPLING_LANES / 2; stride > 0; stride >>= 1) {
    for (let t = 0; t < stride; t++) part[t] = part[t]! + part[t + stride]!;
  }
  return part[0]!;
}

/**
 * The next token from `logits` (one row of V), with `seen` flags for the repetition penalty (a
 * nonzero entry: the token occurred) and the uniform draw r ∈ [0, 1) (unused when greedy).
 */
export function sampleTokenCpu(logits: Float32Array, choice: TokenChoice, seen: ArrayLike<number> | undefined, r: number): number {
  const V = logits.length;
  if (V === 0) throw new ArgumentError('sampling: no logits (vocabulary of 0)');
  const s = new Float32Array(V), key = new Uint32Array(V);
  for (let i = 0; i < V; i++) {
    s[i] = penalised(logits[i]!, seen !== undefined && seen[i] !== 0, choice);
    key[i] = keyOf(s[i]!);
  }
  const order = Uint32Array.from({ length: V }, (_, i) => i).sort((a, b) => key[b]! - key[a]! || a - b);
  const top = order[0]!;
  if (choice.temperature === 0 || !Number.isFinite(s[top]!)) return top;
  const invT = f32(1 / choice.temperature), m = s[top]!;
  const w = new Float32Array(V);
  for (let i = 0; i < V; i++) {
    const x = f32(Math.exp(f32(f32(s[i]! - m) * invT)));
    w[i] = key[i] === 0 || x < MIN_NORMAL ? 0 : x; // subnormal weights flushed, as a GPU may
  }
  const rank = new Uint32Array(V);
  order.forEach((i, pos) => (rank[i] = pos));
  const prefixMass = (n: number) => massOf(w, (i) => rank[i]! < n);
  /** The smallest n in [1, limit] whose prefix mass passes `pass` (limit if none). */
  const firstPrefix = (limit: number, pass: (mass: number) => boolean): number => {
    let lo = 0, hi = limit; // pass(prefixMass(lo)) is false (or lo = 0), pass(prefixMass(hi)) assumed
    while (hi - lo > 1) {
      const mid = (lo + hi) >>> 1;
      if (pass(prefixMass(mid))) hi = mid;
      else lo = mid;
    }
    return hi;
  };
  let keep = choice.topK > 0 ? Math.min(choice.topK, V) : V;
  if (choice.topP < 1) {
    const target = f32(f32(choice.topP) * prefixMass(keep));
    keep = firstPrefix(keep, (mass) => mass >= target);
  }
  const kept = prefixMass(keep);
  const u = Math.min(f32(drawOf(r) * kept), floatBelow(kept));
  return order[firstPrefix(keep, (mass) => mass > u) - 1]!;
}

// ---------------------------------------------------------------------------------------------
// GPU twins. Scores, order keys and weights go to a scratch buffer `work` ([keys V | weights V],
// u32); every mass is the same lane-partial + tree sum as massOf. A boundary of the rank is the pair
// (key, index) of its last token; "token i is in the prefix through (k, j)" is key_i > k or
// (key_i = k and i ≤ j). A crossing is found in two bisections: the largest key k whose "key ≥ k"
// set passes (32 halvings), then among the tokens of that key the index (`bits` halvings). The
// chosen id goes to out[0] as a float (exact below 2²⁴), and seen[id] = 1. Two shapes (the rows
// variants of gpu/variants.ts, SPIKELM_ROWS):
//   workgroup  256 invocations, lane t computing partial t; trees in workgroup memory (hardware)
//   row        one invocation computing the 256 partials in turn: barrier-free, for llvmpipe, where
//              consecutive reductions through one workgroup array race (gpu/variants.ts) and the
//              workgroup shape here returned wrong tokens under top-p
// Both give the same sums, hence the same token.

const SAMPLE_COMMON_WGSL = `
struct Params { V: u32, base: u32, sample: u32, penalty: u32, topK: u32, bits: u32, topP: f32, rho: f32, invRho: f32, invT: f32, r: f32 }
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> seen: array<f32>;
@group(0) @binding(2) var<storage, read_write> work: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

${KEY_OF_WGSL}

fn scoreOf(i: u32) -> f32 {
  var s = logits[p.base + i];
  if (p.penalty != 0u && seen[i] != 0.0) { s = select(s * p.rho, s * p.invRho, s > 0.0); }
  return s;
}

// lane t's part of the mass (weights) or count of the tokens in the limit prefix (lk, li) and in
// the test set key > tk or (key = tk and i < tc)
fn lanePart(t: u32, count: bool, lk: u32, li: u32, tk: u32, tc: u32) -> f32 {
  var acc = 0.0;
  for (var i = t; i < p.V; i += 256u) {
    let k = work[i];
    if ((k > lk || (k == lk && i <= li)) && (k > tk || (k == tk && i < tc))) {
      acc = acc + select(bitcast<f32>(work[p.V + i]), 1.0, count);
    }
  }
  return acc;
}

fn weightOf(i: u32, m: f32) -> f32 {
  let w = exp((bitcast<f32>(work[p.V + i]) - m) * p.invT);
  return select(w, 0.0, work[i] == 0u || w < 1.17549435e-38);
}

fn passes(x: f32, goal: f32, strict: bool) -> bool {
  return select(x >= goal, x > goal, strict);
}

// the last token (key, index) of the first rank prefix within the limit whose set passes
fn firstCrossing(t: u32, count: bool, lk: u32, li: u32, goal: f32, strict: bool) -> vec2u {
  var k = 0u;
  for (var b = 31i; b >= 0i; b--) {
    let cand = k | (1u << u32(b));
    if (passes(reduceSet(t, count, lk, li, cand, 0xffffffffu), goal, strict)) { k = cand; }
  }
  var pos = 0u;
  for (var b = i32(p.bits) - 1i; b >= 0i; b--) {
    let cand = pos + (1u << u32(b));
    if (cand <= p.V) {
      if (!passes(reduceSet(t, count, lk, li, k, cand), goal, strict)) { pos = cand; }
    }
  }
  return vec2u(k, pos);
}

// the token: top when greedy (or when the top score is not finite), else the draw
fn choose(t: u32, top: u32, m: f32) -> u32 {
  var lk = 0u;
  var li = 0xffffffffu;
  if (p.topK > 0u && p.topK < p.V) {
    let c = firstCrossing(t, true, lk, li, f32(p.topK), false);
    lk = c.x;
    li = c.y;
  }
  if (p.topP < 1.0) {
    let candidates = reduceSet(t, false, lk, li, 0u, 0xffffffffu);
    let c = firstCrossing(t, false, lk, li, p.topP * candidates, false);
    lk = c.x;
    li = c.y;
  }
  let kept = reduceSet(t, false, lk, li, 0u, 0xffffffffu);
  let u = min(p.r * kept, bitcast<f32>(bitcast<u32>(kept) - 1u));
  return firstCrossing(t, false, lk, li, u, true).y;
}

fn finish(id: u32) {
  out[0] = f32(id);
  if (p.penalty != 0u) { seen[id] = 1.0; }
}`;

const SAMPLE_WORKGROUP_WGSL = `${SAMPLE_COMMON_WGSL}
var<workgroup> part: array<f32, 256>;
var<workgroup> bestKey: array<u32, 256>;
var<workgroup> bestIdx: array<u32, 256>;
var<workgroup> chosen: u32;
var<workgroup> topScore: u32;

fn reduceSet(t: u32, count: bool, lk: u32, li: u32, tk: u32, tc: u32) -> f32 {
  part[t] = lanePart(t, count, lk, li, tk, tc);
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (t < s) { part[t] = part[t] + part[t + s]; }
    workgroupBarrier();
  }
  let total = workgroupUniformLoad(&part[0]);
  workgroupBarrier();
  return total;
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) t: u32) {
  var bk = 0u;
  var bi = 0xffffffffu;
  for (var i = t; i < p.V; i += 256u) {
    let s = scoreOf(i);
    let k = keyOf(s);
    work[i] = k;
    work[p.V + i] = bitcast<u32>(s);
    if (k > bk || bi == 0xffffffffu) { bk = k; bi = i; }
  }
  bestKey[t] = bk;
  bestIdx[t] = bi;
  storageBarrier();
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (t < s) {
      let k = bestKey[t + s];
      let i = bestIdx[t + s];
      if (i != 0xffffffffu && (bestIdx[t] == 0xffffffffu || k > bestKey[t] || (k == bestKey[t] && i < bestIdx[t]))) {
        bestKey[t] = k;
        bestIdx[t] = i;
      }
    }
    workgroupBarrier();
  }
  if (t == 0u) { chosen = bestIdx[0]; }
  let top = workgroupUniformLoad(&chosen);
  if (t == 0u) { topScore = work[p.V + top]; }
  let m = bitcast<f32>(workgroupUniformLoad(&topScore));
  var id = top;
  if (p.sample != 0u && (bitcast<u32>(m) & 0x7f800000u) != 0x7f800000u) {
    for (var i = t; i < p.V; i += 256u) { work[p.V + i] = bitcast<u32>(weightOf(i, m)); }
    storageBarrier();
    workgroupBarrier();
    id = choose(t, top, m);
  }
  if (t == 0u) { finish(id); }
}`;

const SAMPLE_ROW_WGSL = `${SAMPLE_COMMON_WGSL}
fn reduceSet(t: u32, count: bool, lk: u32, li: u32, tk: u32, tc: u32) -> f32 {
  var part: array<f32, 256>;
  for (var lane = 0u; lane < 256u; lane++) { part[lane] = lanePart(lane, count, lk, li, tk, tc); }
  for (var s = 128u; s > 0u; s >>= 1u) {
    for (var lane = 0u; lane < s; lane++) { part[lane] = part[lane] + part[lane + s]; }
  }
  return part[0];
}

@compute @workgroup_size(1)
fn main() {
  var top = 0u;
  var bk = 0u;
  for (var i = 0u; i < p.V; i++) {
    let s = scoreOf(i);
    let k = keyOf(s);
    work[i] = k;
    work[p.V + i] = bitcast<u32>(s);
    if (i == 0u || k > bk) { bk = k; top = i; }
  }
  let m = bitcast<f32>(work[p.V + top]);
  var id = top;
  if (p.sample != 0u && (bitcast<u32>(m) & 0x7f800000u) != 0x7f800000u) {
    for (var i = 0u; i < p.V; i++) { work[p.V + i] = bitcast<u32>(weightOf(i, m)); }
    id = choose(0u, top, m);
  }
  finish(id);
}`;

/** Scratch buffers per runtime and vocabulary size, and a stand-in for "no seen flags". */
const scratch = new WeakMap<GpuRuntime, Map<number, GpuTensor>>();
const noSeen = new WeakMap<GpuRuntime, GpuTensor>();

/**
 * The next token from row `row` of logits [R, V] on the GPU, into out[0] (as a float); seen[id] is
 * set when a penalty is given. Nothing is allocated after the first call for a vocabulary size.
 */
export function sampleTokenGpu(rt: GpuRuntime, logits: GpuTensor, row: number, V: number, choice: TokenChoice, seen: GpuTensor | undefined, r: number, out: GpuTensor): void {
  if (V >= 1 << 24) throw new ArgumentError(`sampling: a vocabulary of ${V} does not fit the float32 token id (at most 2^24)`);
  let byV = scratch.get(rt);
  if (!byV) scratch.set(rt, (byV = new Map()));
  let work = byV.get(V);
  if (!work) byV.set(V, (work = rt.zeros([2 * V])));
  let dummy = noSeen.get(rt);
  if (!dummy) noSeen.set(rt, (dummy = rt.zeros([4])));
  const penalty = choice.repetitionPenalty !== 1 && seen !== undefined;
  const sample = choice.temperature > 0;
  const bitsV = Math.ceil(Math.log2(V + 1));
  const variant = chooseRowVariant(rt);
  const pipe = variant === 'row' ? rt.pipeline('sampling/row', () => SAMPLE_ROW_WGSL) : rt.pipeline('sampling/workgroup', () => SAMPLE_WORKGROUP_WGSL);
  rt.dispatch(pipe, [logits.buffer, (penalty ? seen : dummy)!.buffer, work.buffer, out.buffer], [
    V, row * V, sample ? 1 : 0, penalty ? 1 : 0, choice.topK > 0 ? Math.min(choice.topK, V) : 0, bitsV,
    { f32: choice.topP }, { f32: choice.repetitionPenalty }, { f32: f32(1 / choice.repetitionPenalty) },
    { f32: sample ? f32(1 / choice.temperature) : 0 }, { f32: sample ? drawOf(r) : 0 },
  ], [1]);
}
