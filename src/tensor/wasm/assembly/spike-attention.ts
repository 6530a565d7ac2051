/**
 * Spike-driven attention's fast execution in WebAssembly (AssemblyScript), twin of the `fast` branch
 * of spikeAttentionCpu (src/tensor/kernels/spike-attention.ts), over (query row, head) units
 * [u0, u1) (u = s·H + h):
 *
 *   scores   score_j = scoreUnit · Σ_i (mq[s, h·d+i]·θq_i) · K[j, g·d+i]     (g: h's KV head)
 *   softmax  over the keys the query sees (causal, sliding window), exp of score − max
 *   p        each probability is a neuron of the p code (rate, binary or ternary): its digit sum
 *   output   out_i = θp·unit_p · Σ_j mp_j · V[j, g·d+i]
 *
 * Bit for bit the TypeScript kernel: every sum is the same sequence of double operations in the same
 * order (scalar, no lanes: the score products are not exact, so their order matters), exp is
 * JavaScript's own Math.exp (imported: AssemblyScript's differs in the last bit on some inputs, and a
 * probability on a threshold would then spike differently), the p neurons' float32 membranes are
 * rounded where the TypeScript kernel rounds them, and the row statistics are its (STAT order).
 * The event execution stays TypeScript: it is the reference the fast one is checked against.
 *
 * Scratch per call: `scores` and `mp` (kvLength doubles each), `qTheta` (d doubles).
 */

import { STATS, storeRowStats } from './stats';

// @ts-ignore: decorator
@external("env", "exp")
declare function jsExp(x: f64): f64;

const EXTRA: i32 = 8; // EXTRA_PLANES
const TERNARY_FIRE: f64 = <f64>(<f32>(2.0 / 3.0));
const TERNARY_LIMIT: f64 = <f64>(<f32>(4.0 / 3.0));
const RATE: i32 = 0, BINARY: i32 = 1; // any other kind: ternary

// encodeProbability's statistics (a neuron's): events, extra planes, clipped, largest digit, nonzero digits
let pEvents: f64 = 0, pExtra: f64 = 0, pClipped: f64 = 0, pMaxPer: f64 = 0, pNonzero: f64 = 0;

@inline function setStats(events: f64, extra: f64, clipped: f64, maxPer: f64, nonzero: f64): void {
  pEvents = events; pExtra = extra; pClipped = clipped; pMaxPer = maxPer; pNonzero = nonzero;
}

@inline function fr(x: f64): f64 {
  return <f64>(<f32>x);
}

/** 2^n, exactly (n within the normal doubles' exponents). */
@inline function pow2(n: i32): f64 {
  return reinterpret<f64>(<u64>(1023 + n) << 52);
}

function popcount(x: u32): f64 {
  return <f64>popcnt<u32>(x);
}

/** Extra planes whose halvings bring |v₀| into the code's range (codes.ts extraPlanesFor). */
function extraPlanesFor(big: f64, ternary: bool): i32 {
  const limit = ternary ? TERNARY_LIMIT : 2.0;
  let extra = 0;
  while (extra < EXTRA && (ternary ? big * pow2(-extra) > limit : big * pow2(-extra) >= limit)) extra++;
  return extra;
}

/** One probability through the p code: its digit sum (statistics into the p* globals). */
function encodeProbability(pv: f64, th: f64, inv: f64, kind: i32, T: i32, maxSpikes: f64): f64 {
  if (kind == RATE) {
    const B = isFinite(maxSpikes) ? maxSpikes : 3.0e38;
    let v = fr(th * 0.5), m: f64 = 0, events: f64 = 0, maxPer: f64 = 0, nonzero: f64 = 0;
    for (let t = 0; t < T; t++) {
      v = fr(v + pv);
      let n = Math.floor(fr(v * inv));
      if (n > B) n = B;
      else if (n < -B) n = -B;
      v = fr(v - fr(n * th));
      m += n;
      events += Math.abs(n);
      maxPer = Math.max(maxPer, Math.abs(n));
      if (n != 0) nonzero++;
    }
    setStats(events, 0, pv > B * th ? 1 : 0, maxPer, nonzero);
    return m;
  }
  const ternary = kind != BINARY, limit = ternary ? TERNARY_LIMIT : 2.0;
  const r0 = fr(pv * inv);
  const v0 = ternary ? r0 : fr(Math.abs(r0) + pow2(-T));
  if ((ternary ? Math.abs(v0) : v0) * pow2(T - 1) < (ternary ? TERNARY_FIRE : 1.0)) {
    setStats(0, 0, 0, 0, 0);
    return 0;
  }
  const extra = extraPlanesFor(Math.abs(v0), ternary);
  let v = fr(v0 * pow2(-extra)), clipped: f64 = 0;
  if (ternary ? Math.abs(v) > limit : v >= limit) {
    clipped = 1;
    v = ternary ? (v < 0 ? -limit : limit) : fr(2 - pow2(-(T + extra - 1)));
  }
  const sign: f64 = pv < 0 ? -1 : 1;
  let m: f64 = 0, events: f64 = 0;
  if (!ternary) {
    // binary digits are the bits of v ∈ [0, 2) (codes.ts runWeighted says why this is exact)
    m = Math.floor(v * pow2(T + extra - 1));
    events = popcount(<u32>m);
    setStats(events, <f64>extra, clipped, events > 0 ? 1 : 0, events);
    return sign * m;
  }
  const P = T + EXTRA;
  for (let j = EXTRA - extra; j < P; j++) {
    let d: f64 = 0;
    if (v > TERNARY_FIRE) d = 1;
    else if (v < -TERNARY_FIRE) d = -1;
    v = 2 * (v - d); // exact in float32 (see codes.ts)
    m = 2 * m + d;
    if (d != 0) events++;
  }
  setStats(events, <f64>extra, clipped, events > 0 ? 1 : 0, events);
  return m;
}

export function spikeAttentionFastF64(
  q: usize, k: usize, v: usize, thetaQ: usize, thetaP: usize, invThetaP: usize, out: usize, rowStats: usize,
  H: i32, Hkv: i32, d: i32, queryStart: i32, kvLength: i32, causal: i32, window: i32,
  scoreUnit: f64, pKind: i32, pT: i32, pMaxSpikes: f64, pUnit: f64,
  u0: i32, u1: i32, scores: usize, mp: usize, qTheta: usize,
): void {
  const group = H / Hkv, qW = H * d, kvW = Hkv * d;
  for (let u = u0; u < u1; u++) {
    const s = u / H, h = u % H, g = h / group, qo = h * d;
    const last = causal == 0 ? kvLength - 1 : queryStart + s;
    const first = window < 0 ? 0 : max(0, last + 1 - window);
    for (let i = 0; i < d; i++) {
      store<f64>(qTheta + (<usize>i << 3), <f64>load<f32>(q + (<usize>(s * qW + qo + i) << 2)) * <f64>load<f32>(thetaQ + (<usize>(qo + i) << 2)));
    }
    let mx = -Infinity;
    for (let j = first; j <= last; j++) {
      const ko = k + (<usize>(j * kvW + g * d) << 2);
      let a: f64 = 0;
      for (let i = 0; i < d; i++) a += load<f64>(qTheta + (<usize>i << 3)) * <f64>load<f32>(ko + (<usize>i << 2));
      a *= scoreUnit;
      store<f64>(scores + (<usize>j << 3), a);
      if (a > mx) mx = a;
    }
    let sum: f64 = 0;
    for (let j = first; j <= last; j++) {
      const e = jsExp(load<f64>(scores + (<usize>j << 3)) - mx);
      store<f64>(scores + (<usize>j << 3), e);
      sum += e;
    }
    const th = <f64>load<f32>(thetaP + (<usize>h << 2)), inv = <f64>load<f32>(invThetaP + (<usize>h << 2));
    let events: f64 = 0, extra: f64 = 0, clipped: f64 = 0, maxPer: f64 = 0, nonzero: f64 = 0, active: f64 = 0;
    const silentBelow = pKind == RATE ? 0 : (pKind == BINARY ? 0.5 : TERNARY_FIRE) * pow2(-(pT - 1)) * th * (1 - pow2(-20));
    const silentScore = silentBelow * sum;
    for (let j = first; j <= last; j++) {
      const sj = load<f64>(scores + (<usize>j << 3));
      if (sj < silentScore) {
        store<f64>(mp + (<usize>j << 3), 0);
        continue;
      }
      store<f64>(mp + (<usize>j << 3), encodeProbability(fr(sj / sum), th, inv, pKind, pT, pMaxSpikes));
      events += pEvents;
      clipped += pClipped;
      if (pExtra > extra) extra = pExtra;
      if (pMaxPer > maxPer) maxPer = pMaxPer;
      nonzero += pNonzero;
      if (pEvents > 0) active++;
    }
    const outScale = th * pUnit, oo = out + (<usize>(s * qW + qo) << 2);
    for (let i = 0; i < d; i++) store<f64>(qTheta + (<usize>i << 3), 0); // the accumulators (qTheta is done)
    for (let j = first; j <= last; j++) {
      const m = load<f64>(mp + (<usize>j << 3));
      if (m == 0) continue;
      const vo = v + (<usize>(j * kvW + g * d) << 2);
      for (let i = 0; i < d; i++) {
        const a = qTheta + (<usize>i << 3);
        store<f64>(a, load<f64>(a) + m * <f64>load<f32>(vo + (<usize>i << 2)));
      }
    }
    for (let i = 0; i < d; i++) store<f32>(oo + (<usize>i << 2), <f32>(load<f64>(qTheta + (<usize>i << 3)) * outScale));
    const keys = <f64>(last + 1 - first), so = rowStats + (<usize>(u * STATS) << 2), steps = <f64>pT + extra;
    storeRowStats(so, <f32>events, <f32>maxPer, <f32>nonzero, <f32>(keys * steps), <f32>extra, <f32>clipped, <f32>active, <f32>(active * steps));
  }
}
