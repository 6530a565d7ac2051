/**
 * Spike-driven attention of the layerwise schedule, per query row s and head h (KV head g):
 *
 *   scores   score_j = scale · θq·unit_q · Σ over q's spike events of the key rows they select:
 *            event: Σ_planes 2^(P−1−p) Σ_{i : dq[p,s,h·d+i] ≠ 0} dq · θq_i·K[j, g·d+i]   (Horner)
 *            fast:  Σ_i mq[s, h·d+i] · θq_i·K[j, g·d+i]   (mq: q's digit sums)
 *   softmax  over the causal keys, once per token (a dense nonlinear operator)
 *   p        each probability p_j is a neuron of the p code (threshold θp per head): digits, sums
 *   output   out_i = θp·unit_p · Σ over the probabilities' events of value rows:
 *            event: Σ_planes 2^(P−1−p) Σ_{j : dp[p,j] ≠ 0} dp · V[j, g·d+i]
 *            fast:  Σ_j mp_j · V[j, g·d+i]
 *
 * The caches hold each token's key and value once (not once per step). θq scales key rows as they
 * are read here; the energy model counts it as a cache pre-scaled once per token (θq is shared by
 * the heads of a KV group, see calibration), so every event is an accumulate.
 *
 * On the CPU both executions sum exact products in double precision: they agree to the last bit
 * except in rare float32 rounding ties. Per (row, head) the p neurons' statistics are written to
 * rowStats [S·H, STATS_WIDTH] (neuron-steps count only the keys the query sees).
 */
import type { GpuRuntime, GpuTensor } from '../gpu/runtime.js';
import { fillTemplate } from '../gpu/runtime.js';
import { type AttentionParams, checkAttention } from './attention.js';
import { type CodeParams, EXTRA_PLANES, STAT, STATS_WIDTH, TERNARY_FIRE, TERNARY_LIMIT, extraPlanesFor, planesOf, popcount, unitOf, validateCode } from './codes.js';

export interface SpikeAttentionCodes {
  /** q's code: its unit and planes (digits come from the encoder). */
  readonly q: CodeParams;
  readonly p: CodeParams;
}

export type SpikeExecution = 'fast' | 'event';

const f = Math.fround;

/** encodeProbability's statistics: events, extra planes, clipped, largest digit, nonzero digits. */
const probStats = new Float64Array(5);
const setProbStats = (events: number, extra: number, clipped: number, maxPer: number, nonzero: number): void => {
  probStats[0] = events;
  probStats[1] = extra;
  probStats[2] = clipped;
  probStats[3] = maxPer;
  probStats[4] = nonzero;
};

/**
 * Encode one probability with the p code (the neuron of kernels/codes.ts with one channel): returns
 * the digit sum, writes its statistics to probStats and, with `planes`, its digits into
 * planes[0 … P−1] (leading unused planes zero).
 */
function encodeProbability(pv: number, th: number, inv: number, code: CodeParams, planes: Float32Array | undefined): number {
  const T = code.T, E = EXTRA_PLANES, P = T + E;
  if (planes) planes.fill(0);
  if (code.kind === 'rate') {
    const B = Number.isFinite(code.maxSpikes ?? Infinity) ? code.maxSpikes! : 3.0e38;
    let v = f(th * 0.5), m = 0, events = 0, maxPer = 0, nonzero = 0;
    for (let t = 0; t < T; t++) {
      v = f(v + pv);
      let n = Math.floor(f(v * inv));
      if (n > B) n = B;
      else if (n < -B) n = -B;
      v = f(v - f(n * th));
      m += n;
      events += Math.abs(n);
      maxPer = Math.max(maxPer, Math.abs(n));
      if (n !== 0) nonzero++;
      if (planes) planes[t] = n;
    }
    setProbStats(events, 0, pv > B * th ? 1 : 0, maxPer, nonzero);
    return m;
  }
  const ternary = code.kind === 'ternary', limit = ternary ? TERNARY_LIMIT : 2;
  const r0 = f(pv * inv);
  const v0 = ternary ? r0 : f(Math.abs(r0) + 2 ** -T);
  // below the last plane's threshold the neuron never fires (most probabilities): no steps to run
  if ((ternary ? Math.abs(v0) : v0) * 2 ** (T - 1) < (ternary ? TERNARY_FIRE : 1)) {
    setProbStats(0, 0, 0, 0, 0);
    return 0;
  }
  const extra = extraPlanesFor(Math.abs(v0), ternary);
  let v = f(v0 * 2 ** -extra), clipped = 0;
  if (ternary ? Math.abs(v) > limit : v >= limit) {
    clipped = 1;
    v = ternary ? Math.sign(v) * limit : f(2 - 2 ** -(T + extra - 1));
  }
  const sign = pv < 0 ? -1 : 1;
  let m = 0, events = 0;
  if (!ternary && !planes) {
    // binary digits are the bits of v ∈ [0, 2) (kernels/codes.ts runWeighted says why this is exact)
    m = Math.floor(v * 2 ** (T + extra - 1));
    events = popcount(m);
    setProbStats(events, extra, clipped, events > 0 ? 1 : 0, events);
    return sign * m;
  }
  for (let j = E - extra; j < P; j++) {
    let d = 0;
    if (ternary) {
      if (v > TERNARY_FIRE) d = 1;
      else if (v < -TERNARY_FIRE) d = -1;
    } else if (v >= 1) d = 1;
    v = 2 * (v - d); // exact in float32 (see kernels/codes.ts)
    m = 2 * m + d;
    if (d !== 0) {
      events++;
      if (planes) planes[j] = ternary ? d : sign * d;
    }
  }
  setProbStats(events, extra, clipped, events > 0 ? 1 : 0, events);
  return ternary ? m : sign * m;
}

export interface SpikeAttentionInputs {
  /** fast: q's digit sums [S, H·d]; event: q's digits, plane-major [Pq·S, H·d]. */
  readonly q: Float32Array;
  readonly k: Float32Array;
  readonly v: Float32Array;
  /** θq per q channel [H·d]; θp per head [H] and its float32 reciprocal. */
  readonly thetaQ: Float32Array;
  readonly thetaP: Float32Array;
  readonly invThetaP: Float32Array;
}

export function spikeAttentionCpu(inp: SpikeAttentionInputs, S: number, p: AttentionParams, codes: SpikeAttentionCodes, mode: SpikeExecution, out: Float32Array, rowStats: Float32Array): void {
  checkAttention(p, S);
  validateCode(codes.q);
  validateCode(codes.p);
  const H = p.numHeads, Hkv = p.numKvHeads, d = p.headDim, group = H / Hkv;
  const qW = H * d, kvW = Hkv * d, L = p.kvLength;
  const Pq = planesOf(codes.q), Pp = planesOf(codes.p), gq = codes.q.kind === 'rate' ? 1 : 2, gp = codes.p.kind === 'rate' ? 1 : 2;
  const scoreUnit = unitOf(codes.q) * p.scale;
  const scores = new Float64Array(L), mp = new Float64Array(L);
  const planes = mode === 'event' ? new Float32Array(L * Pp) : undefined;
  const acc = new Float64Array(d), qTheta = new Float64Array(d);
  for (let s = 0; s < S; s++) {
    const last = p.causal === false ? L - 1 : p.queryStart + s;
    const first = p.window === undefined ? 0 : Math.max(0, last + 1 - p.window);
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / group), qo = h * d;
      // the query's digit sums times θ (exact in double precision: integers below 2^24 times float32)
      if (mode === 'fast') for (let i = 0; i < d; i++) qTheta[i] = inp.q[s * qW + qo + i]! * inp.thetaQ[qo + i]!;
      // scores over the keys the query sees
      let max = -Infinity;
      if (mode === 'fast') {
        for (let j = first, ko = first * kvW + g * d; j <= last; j++, ko += kvW) {
          let a = 0;
          for (let i = 0; i < d; i++) a += qTheta[i]! * inp.k[ko + i]!;
          a *= scoreUnit;
          scores[j] = a;
          if (a > max) max = a;
        }
      } else {
        for (let j = first, ko = first * kvW + g * d; j <= last; j++, ko += kvW) {
          let a = 0;
          for (let pl = 0; pl < Pq; pl++) {
            a *= gq;
            const row = (pl * S + s) * qW + qo;
            for (let i = 0; i < d; i++) {
              const dq = inp.q[row + i]!;
              if (dq !== 0) a += dq * (inp.thetaQ[qo + i]! * inp.k[ko + i]!);
            }
          }
          a *= scoreUnit;
          scores[j] = a;
          if (a > max) max = a;
        }
      }
      let sum = 0;
      for (let j = first; j <= last; j++) sum += (scores[j] = Math.exp(scores[j]! - max));
      // the probabilities' neurons
      let events = 0, extra = 0, clipped = 0, maxPer = 0, nonzero = 0, active = 0;
      // below this a weighted p neuron surely stays silent (the last plane's threshold, with a
      // margin of 2^-20 for the float32 roundings of pv·(1/θ)); rate neurons always run
      const silentBelow = codes.p.kind === 'rate' ? 0 : (codes.p.kind === 'ternary' ? TERNARY_FIRE : 0.5) * 2 ** -(codes.p.T - 1) * inp.thetaP[h]! * (1 - 2 ** -20);
      const silentScore = silentBelow * sum;
      if (planes) planes.fill(0, 0, (last + 1) * Pp);
      for (let j = first; j <= last; j++) {
        // silent neurons (most probabilities under a weighted code) skip the call
        if (scores[j]! < silentScore) {
          mp[j] = 0;
          continue;
        }
        mp[j] = encodeProbability(f(scores[j]! / sum), inp.thetaP[h]!, inp.invThetaP[h]!, codes.p, planes ? planes.subarray(j * Pp, (j + 1) * Pp) : undefined);
        const ev = probStats[0]!;
        events += ev;
        clipped += probStats[2]!;
        if (probStats[1]! > extra) extra = probStats[1]!;
        if (probStats[3]! > maxPer) maxPer = probStats[3]!;
        nonzero += probStats[4]!;
        if (ev > 0) active++;
      }
      // output: value rows per event (or the dense sum over the digit sums)
      acc.fill(0);
      if (mode === 'fast') {
        for (let j = first; j <= last; j++) {
          if (mp[j] === 0) continue;
          const vo = j * kvW + g * d;
          for (let i = 0; i < d; i++) acc[i] += mp[j]! * inp.v[vo + i]!;
        }
      } else {
        for (let pl = 0; pl < Pp; pl++) {
          for (let i = 0; i < d; i++) acc[i] = acc[i]! * gp;
          for (let j = first; j <= last; j++) {
            const dp = planes![j * Pp + pl]!;
            if (dp === 0) continue;
            const vo = j * kvW + g * d;
            for (let i = 0; i < d; i++) acc[i] += dp * inp.v[vo + i]!;
          }
        }
      }
      const outScale = inp.thetaP[h]! * unitOf(codes.p);
      for (let i = 0; i < d; i++) out[s * qW + qo + i] = acc[i]! * outScale;
      const keys = last + 1 - first, o = (s * H + h) * STATS_WIDTH;
      rowStats[o + STAT.events] = events;
      rowStats[o + STAT.maxPerStep] = maxPer;
      rowStats[o + STAT.nonzero] = nonzero;
      rowStats[o + STAT.neuronSteps] = keys * (codes.p.T + extra);
      rowStats[o + STAT.extraSteps] = extra;
      rowStats[o + STAT.synapticOps] = events;
      rowStats[o + STAT.overflowRows] = extra > 0 ? 1 : 0;
      rowStats[o + STAT.clipped] = clipped;
      rowStats[o + STAT.extraFanout] = 0;
      rowStats[o + STAT.activeNeurons] = active;
      rowStats[o + STAT.activeSteps] = active * (codes.p.T + extra);
    }
  }
}


// ---------------------------------------------------------------------------------------------
// GPU twin: one invocation per (query row, head), as the scalar attention kernel; three passes over
// the keys (max, sum, then encode and accumulate). The event execution keeps each key's digits as
// two bit masks (positive, negative planes) in a scratch buffer and walks planes outer, keys inner.

const SPIKE_ATTENTION_WGSL = `
struct Params { S: u32, H: u32, group: u32, queryStart: u32, scoreUnit: f32, qWidth: u32, kvWidth: u32, L: u32, lastAll: u32,
  event: u32, Pq: u32, gq: f32, pKind: u32, pT: u32, pMax: f32, outUnit: f32, window: u32 }
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> thetaQ: array<f32>;
@group(0) @binding(4) var<storage, read> thetaP: array<f32>;
@group(0) @binding(5) var<storage, read> invThetaP: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
@group(0) @binding(7) var<storage, read_write> rowStats: array<f32>;
@group(0) @binding(8) var<storage, read_write> masks: array<u32>;
@group(0) @binding(9) var<uniform> p: Params;
const D = {{headDim}}u;
const E = {{extraPlanes}}u;

fn score(s: u32, h: u32, g: u32, j: u32) -> f32 {
  let ko = j * p.kvWidth + g * D;
  let qo = h * D;
  var a = 0.0;
  if (p.event == 0u) {
    for (var i = 0u; i < D; i++) { a += q[s * p.qWidth + qo + i] * (thetaQ[qo + i] * k[ko + i]); }
  } else {
    for (var pl = 0u; pl < p.Pq; pl++) {
      a = a * p.gq;
      let row = (pl * p.S + s) * p.qWidth + qo;
      for (var i = 0u; i < D; i++) {
        let dq = q[row + i];
        if (dq != 0.0) { a += dq * (thetaQ[qo + i] * k[ko + i]); }
      }
    }
  }
  return a * p.scoreUnit;
}

struct Encoded { m: f32, events: f32, extra: u32, clipped: f32, pos: u32, neg: u32, maxPer: f32, nonzero: f32 }

fn encodeP(pv: f32, th: f32, inv: f32) -> Encoded {
  var r: Encoded;
  r.m = 0.0; r.events = 0.0; r.extra = 0u; r.clipped = 0.0; r.pos = 0u; r.neg = 0u; r.maxPer = 0.0; r.nonzero = 0.0;
  if (p.pKind == 0u) {
    var vm = th * 0.5;
    for (var t = 0u; t < p.pT; t++) {
      vm = vm + pv;
      let n = clamp(floor(vm * inv), -p.pMax, p.pMax);
      vm = vm - n * th;
      r.m += n; r.events += abs(n); r.maxPer = max(r.maxPer, abs(n));
      if (n != 0.0) { r.nonzero += 1.0; }
    }
    if (pv > p.pMax * th) { r.clipped = 1.0; }
    return r;
  }
  let ternary = p.pKind == 2u;
  var limit = 2.0;
  if (ternary) { limit = 1.3333333730697632; }
  let r0 = pv * inv;
  var v0 = r0;
  if (!ternary) { v0 = abs(r0) + exp2(-f32(p.pT)); }
  loop {
    if (r.extra >= E) { break; }
    let sc = abs(v0) * exp2(-f32(r.extra));
    if (ternary) { if (!(sc > limit)) { break; } } else { if (!(sc >= limit)) { break; } }
    r.extra += 1u;
  }
  var vm = v0 * exp2(-f32(r.extra));
  if (ternary) {
    if (abs(vm) > limit) { r.clipped = 1.0; vm = sign(vm) * limit; }
  } else if (vm >= limit) { r.clipped = 1.0; vm = 2.0 - exp2(-f32(p.pT + r.extra - 1u)); }
  var sgn = 1.0;
  if (pv < 0.0) { sgn = -1.0; }
  let P = p.pT + E;
  for (var j = E - r.extra; j < P; j++) {
    var dd = 0.0;
    if (ternary) {
      if (vm > 0.6666666865348816) { dd = 1.0; } else if (vm < -0.6666666865348816) { dd = -1.0; }
    } else if (vm >= 1.0) { dd = 1.0; }
    vm = 2.0 * (vm - dd);
    r.m = 2.0 * r.m + dd;
    if (dd != 0.0) {
      r.events += 1.0;
      var o = dd;
      if (!ternary) { o = sgn * dd; }
      if (o > 0.0) { r.pos = r.pos | (1u << (P - 1u - j)); } else { r.neg = r.neg | (1u << (P - 1u - j)); }
    }
  }
  if (!ternary) { r.m = sgn * r.m; }
  if (r.events > 0.0) { r.maxPer = 1.0; }
  r.nonzero = r.events;
  return r;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let idx = gid.y * 65535u * 64u + gid.x;
  if (idx >= p.S * p.H) { return; }
  let h = idx % p.H;
  let s = idx / p.H;
  let g = h / p.group;
  var last = p.queryStart + s;
  if (p.lastAll > 0u) { last = p.lastAll - 1u; }
  var first = 0u;
  if (p.window > 0u && last + 1u > p.window) { first = last + 1u - p.window; }
  var mx = -3.4e38;
  for (var j = first; j <= last; j++) { mx = max(mx, score(s, h, g, j)); }
  var sum = 0.0;
  for (var j = first; j <= last; j++) { sum += exp(score(s, h, g, j) - mx); }
  var acc: array<f32, D>;
  var events = 0.0; var extra = 0u; var clipped = 0.0; var maxPer = 0.0; var nonzero = 0.0; var nActive = 0.0;
  let mo = idx * p.L * 2u;
  let th = thetaP[h];
  let inv = invThetaP[h];
  for (var j = first; j <= last; j++) {
    let pv = exp(score(s, h, g, j) - mx) / sum;
    let e = encodeP(pv, th, inv);
    events += e.events; clipped += e.clipped; extra = max(extra, e.extra); maxPer = max(maxPer, e.maxPer); nonzero += e.nonzero;
    if (e.events > 0.0) { nActive += 1.0; }
    let vo = j * p.kvWidth + g * D;
    if (p.event == 0u) {
      if (e.m != 0.0) {
        for (var i = 0u; i < D; i++) { acc[i] += e.m * v[vo + i]; }
      }
    } else if (p.pKind == 0u) {
      // rate: every step weighs the same; each step's burst adds the value row n times
      var vm = th * 0.5;
      for (var t = 0u; t < p.pT; t++) {
        vm = vm + pv;
        let n = clamp(floor(vm * inv), -p.pMax, p.pMax);
        vm = vm - n * th;
        if (n != 0.0) { for (var i = 0u; i < D; i++) { acc[i] += n * v[vo + i]; } }
      }
    } else {
      masks[mo + 2u * j] = e.pos; masks[mo + 2u * j + 1u] = e.neg;
    }
  }
  if (p.event != 0u && p.pKind != 0u) {
    let P = p.pT + E;
    for (var pl = 0u; pl < P; pl++) {
      for (var i = 0u; i < D; i++) { acc[i] = acc[i] * 2.0; }
      let bit = 1u << (P - 1u - pl);
      for (var j = first; j <= last; j++) {
        var dd = 0.0;
        if ((masks[mo + 2u * j] & bit) != 0u) { dd = 1.0; } else if ((masks[mo + 2u * j + 1u] & bit) != 0u) { dd = -1.0; }
        if (dd != 0.0) {
          let vo = j * p.kvWidth + g * D;
          for (var i = 0u; i < D; i++) { acc[i] += dd * v[vo + i]; }
        }
      }
    }
  }
  let outScale = thetaP[h] * p.outUnit;
  let qo = s * p.qWidth + h * D;
  for (var i = 0u; i < D; i++) { y[qo + i] = acc[i] * outScale; }
  let keys = f32(last + 1u - first);
  let st = idx * 11u;
  var ovf = 0.0;
  if (extra > 0u) { ovf = 1.0; }
  rowStats[st] = events; rowStats[st + 1u] = maxPer; rowStats[st + 2u] = nonzero; rowStats[st + 3u] = keys * f32(p.pT + extra);
  rowStats[st + 4u] = f32(extra); rowStats[st + 5u] = events; rowStats[st + 6u] = ovf; rowStats[st + 7u] = clipped; rowStats[st + 8u] = 0.0;
  rowStats[st + 9u] = nActive; rowStats[st + 10u] = nActive * f32(p.pT + extra);
}`;

export function spikeAttentionGpu(
  rt: GpuRuntime, q: GpuTensor, k: GpuTensor, v: GpuTensor, thetaQ: GpuTensor, thetaP: GpuTensor, invThetaP: GpuTensor,
  S: number, p: AttentionParams, codes: SpikeAttentionCodes, mode: SpikeExecution, y: GpuTensor, rowStats: GpuTensor,
): void {
  checkAttention(p, S);
  validateCode(codes.q);
  validateCode(codes.p);
  const d = p.headDim;
  const pipe = rt.pipeline(`spike-attention/d${d}`, () => fillTemplate(SPIKE_ATTENTION_WGSL, { headDim: d, extraPlanes: EXTRA_PLANES }));
  // a decode step's scratch is sized by the cache's rows, not the keys so far: it keeps one size
  // (and so its buffer and bind group) from token to token
  const keyRows = S === 1 ? Math.max(p.kvLength, p.kvBatchStride ?? k.shape[0]!) : p.kvLength;
  const masks = rt.alloc([Math.max(1, S * p.numHeads * keyRows * 2)]);
  const total = Math.ceil((S * p.numHeads) / 64);
  const groups: [number, number] = total > 65535 ? [65535, Math.ceil(total / 65535)] : [Math.max(1, total), 1];
  const B = codes.p.maxSpikes ?? Infinity;
  rt.dispatch(pipe, [q.buffer, k.buffer, v.buffer, thetaQ.buffer, thetaP.buffer, invThetaP.buffer, y.buffer, rowStats.buffer, masks.buffer], [
    S, p.numHeads, p.numHeads / p.numKvHeads, p.queryStart, { f32: unitOf(codes.q) * p.scale }, p.numHeads * d, p.numKvHeads * d, p.kvLength,
    p.causal === false ? p.kvLength : 0, mode === 'event' ? 1 : 0, planesOf(codes.q), { f32: codes.q.kind === 'rate' ? 1 : 2 },
    codes.p.kind === 'rate' ? 0 : codes.p.kind === 'binary' ? 1 : 2, codes.p.T, { f32: Number.isFinite(B) ? B : 3.0e38 }, { f32: unitOf(codes.p) }, p.window ?? 0,
  ], groups);
  rt.release(masks);
}
