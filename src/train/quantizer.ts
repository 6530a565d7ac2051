/**
 * An encoder site's neuron as training sees it: forward (the decoded value and the events of one
 * neuron, exactly the dynamics of src/tensor/kernels/codes.ts) and backward through its steps (BPTT)
 * with the fire's derivative replaced by a surrogate's, σ'(u) (src/snn/surrogate.ts).
 *
 * A neuron with threshold θ receives a constant current x once per token. In units of θ, a = x/θ:
 *
 *   rate      u₀ = ½ (half start) or 0;  per step t: u ← u + a;  n_t = clamp(⌊u⌋, −B, B);  u ← u − n_t
 *             value g = Σn_t / T,   events Σ|n_t|
 *             the fire as Heavisides: n = Σ_{j=1..B} H(u − j) − Σ_{j=−B+1..0} (1 − H(u − j)),
 *             |n| the same with + on both sums; surrogate: n' = Σ_j σ'(u − j), |n|' = Σ_j ±σ'(u − j)
 *             over the WINDOW thresholds nearest u on each side (bursts are unbounded by default)
 *   binary    v₀ = (|a| + 2^−T)·2^−e  (e: the row's extra planes);  per plane k = 0 … T+e−1:
 *             d_k = H(v − 1);  v ← 2(v − d_k);   value g = sign(a)·2^e·Σ d_k 2^−k,  events Σ d_k
 *   ternary   v₀ = a·2^−e;  d_k = H(v − ⅔) − H(−v − ⅔);  v ← 2(v − d_k);  value 2^e·Σ d_k 2^−k,
 *             events Σ |d_k| = Σ H(v − ⅔) + H(−v − ⅔)
 *
 * The stepwise schedule's rate neurons see a current that varies over the steps, but with unbounded
 * bursts their total output depends only on the total input (README: the stepwise SNN at T equals the
 * ANN with each encoder input quantized), so the constant-current neuron above is the same function.
 *
 * Two fire modes: `hard` (forward with H, backward with σ': surrogate-gradient training) and `smooth`
 * (forward with σ as well: a differentiable network whose exact gradient the backward computes, which
 * is what the finite-difference checks test). Extra planes and clipping are piecewise constant: they
 * are taken from the hard charge and carry no gradient (a clipped value has none).
 */
import type { Surrogate } from '../snn/surrogate.js';
import { type CodeParams, TERNARY_FIRE, TERNARY_LIMIT, extraPlanesFor } from '../tensor/kernels/codes.js';

/** Rate neurons: thresholds on each side of the membrane whose σ' the backward sums (the rest is < 2% at α = 2). */
export const WINDOW = 2;

export type FireMode = 'hard' | 'smooth';

export interface NeuronCode {
  readonly code: CodeParams;
  /** Rate codes: start the membrane at ½θ (the default neuron) or at 0. */
  readonly halfStart: boolean;
  readonly surrogate: Surrogate;
  readonly mode: FireMode;
}

/** The decoded value (units of θ) and events of one neuron: written by `neuronForward`. */
export interface NeuronOut {
  value: number;
  events: number;
}

/**
 * The extra planes a row of charges a = x/θ needs (its largest |a| decides): the kernels' rule
 * (kernels/codes.ts extraPlanesFor) on the first membrane this neuron computes from that charge.
 */
export function extraPlanesOf(maxAbsCharge: number, c: CodeParams, mode: FireMode = 'hard'): number {
  if (c.kind === 'rate') return 0;
  const ternary = c.kind === 'ternary';
  return extraPlanesFor(charged(maxAbsCharge, c.T, ternary, mode), ternary);
}

const maxSpikesOf = (c: CodeParams) => c.maxSpikes ?? Infinity;

/** Scratch for a neuron's membrane before each fire (one neuron at a time). */
let trace = new Float64Array(64);
const traceOf = (n: number) => (trace.length >= n ? trace : (trace = new Float64Array(n)));

/**
 * Smooth fire of unbounded rate neurons: the thresholds j ∈ [−SMOOTH_RANGE + 1, SMOOTH_RANGE] (a fixed
 * set, so the smooth network is differentiable everywhere; |u| beyond it saturates). Hard fire needs no
 * such bound: its backward takes the WINDOW thresholds nearest the membrane.
 */
export const SMOOTH_RANGE = 32;

/** Bounds of the rate fire's Heaviside thresholds j considered at u: [lo + 1, hi] within [−B + 1, B]. */
function rateWindow(u: number, B: number, mode: FireMode): [number, number] {
  if (mode === 'smooth') {
    const b = Math.min(B, SMOOTH_RANGE);
    return [-b, b];
  }
  const fl = Math.floor(u);
  return [Math.max(fl - WINDOW, -B), Math.min(fl + WINDOW, B)];
}

/** Rate fire: spikes n and events |n| at membrane u (smooth: σ in place of H over the window). */
function rateFire(u: number, B: number, n: NeuronCode, out: NeuronOut): void {
  if (n.mode === 'hard') {
    const k = Math.max(-B, Math.min(B, Math.floor(u)));
    out.value = k;
    out.events = Math.abs(k);
    return;
  }
  const [lo, hi] = rateWindow(u, B, n.mode);
  // thresholds below the window have fired (H = 1), above it have not (H = 0)
  let spikes = Math.max(lo, 0) - Math.max(-hi, 0), events = Math.max(lo, 0) + Math.max(-hi, 0);
  for (let j = lo + 1; j <= hi; j++) {
    const s = n.surrogate.smooth(u - j);
    spikes += j >= 1 ? s : s - 1;
    events += j >= 1 ? s : 1 - s;
  }
  out.value = spikes;
  out.events = events;
}

/** d(spikes or digit)/du and d(events)/du of a fire (surrogate), written by the *FireGrad functions. */
const grad = { value: 0, events: 0 };

/** The rate fire's derivatives at u. */
function rateFireGrad(u: number, B: number, s: Surrogate, mode: FireMode): void {
  const [lo, hi] = rateWindow(u, B, mode);
  let dn = 0, de = 0;
  for (let j = lo + 1; j <= hi; j++) {
    const g = s.grad(u - j);
    dn += g;
    de += j >= 1 ? g : -g;
  }
  grad.value = dn;
  grad.events = de;
}

/** Weighted fire at v: digit d and event |d| (smooth: σ for H). */
function weightedFire(v: number, ternary: boolean, n: NeuronCode, out: NeuronOut): void {
  if (n.mode === 'hard') {
    const d = ternary ? (v > TERNARY_FIRE ? 1 : v < -TERNARY_FIRE ? -1 : 0) : v >= 1 ? 1 : 0;
    out.value = d;
    out.events = Math.abs(d);
    return;
  }
  if (ternary) {
    const up = n.surrogate.smooth(v - TERNARY_FIRE), down = n.surrogate.smooth(-v - TERNARY_FIRE);
    out.value = up - down;
    out.events = up + down;
  } else {
    out.value = out.events = n.surrogate.smooth(v - 1);
  }
}

/** A weighted fire's derivatives at v. */
function weightedFireGrad(v: number, ternary: boolean, s: Surrogate): void {
  if (!ternary) {
    grad.value = grad.events = s.grad(v - 1);
    return;
  }
  const up = s.grad(v - TERNARY_FIRE), down = s.grad(-v - TERNARY_FIRE);
  grad.value = up + down;
  grad.events = up - down;
}

const fire: NeuronOut = { value: 0, events: 0 };

/** A weighted neuron's first membrane: a (ternary) or |a| + 2^−T (binary, rounded to float32 as the kernels do when firing hard). */
function charged(a: number, T: number, ternary: boolean, mode: FireMode): number {
  if (ternary) return a;
  const v = Math.abs(a) + 2 ** -T;
  return mode === 'hard' ? Math.fround(v) : v;
}

/**
 * One neuron, charge a = x/θ, `extra` planes (weighted codes; from extraPlanesOf over its row):
 * writes the value (units of θ) and events to `out` and returns whether it clipped.
 */
export function neuronForward(a: number, extra: number, n: NeuronCode, out: NeuronOut): boolean {
  const c = n.code, T = c.T;
  if (c.kind === 'rate') {
    const B = maxSpikesOf(c);
    let u = n.halfStart ? 0.5 : 0, sum = 0, events = 0;
    for (let t = 0; t < T; t++) {
      u += a;
      rateFire(u, B, n, fire);
      u -= fire.value;
      sum += fire.value;
      events += fire.events;
    }
    out.value = sum / T;
    out.events = events;
    return Math.abs(a) > B;
  }
  const ternary = c.kind === 'ternary', limit = ternary ? TERNARY_LIMIT : 2;
  let v = charged(a, T, ternary, n.mode) * 2 ** -extra;
  let clipped = false;
  if (ternary ? Math.abs(v) > limit : v >= limit) {
    clipped = true;
    v = ternary ? Math.sign(v) * limit : 2 - 2 ** -(T + extra - 1);
  }
  let value = 0, events = 0, w = 2 ** extra;
  for (let k = 0; k < T + extra; k++, w /= 2) {
    weightedFire(v, ternary, n, fire);
    value += fire.value * w;
    events += fire.events;
    v = 2 * (v - fire.value);
  }
  out.value = ternary || a >= 0 ? value : -value;
  out.events = events;
  return clipped;
}

/**
 * Backward through one neuron's steps: given dL/d(value) and dL/d(events), returns dL/da. The
 * trajectory is recomputed from a (in the same fire mode as the forward), then walked back:
 *   rate:      λ ← dL/du' at each step: λ_t = λ_{t+1}·(1 − n'(u'_t)) + (gValue/T)·n'(u'_t) + gEvents·|n|'(u'_t);
 *              dL/da = Σ_t λ_t   (u'_t = u_{t−1} + a)
 *   weighted:  λ_k = dL/dv_k = d'(v_k)·gValue·w_k + e'(v_k)·gEvents + 2·(1 − d'(v_k))·λ_{k+1}  (w_k = 2^(e−k));
 *              dL/da = λ_0 · dv₀/da   (dv₀/da = 2^−e, times sign(a) for binary's |a|; 0 when clipped)
 * `out`, if given, receives the forward's value and events (the trajectory's, already at hand).
 */
export function neuronBackward(a: number, extra: number, n: NeuronCode, gValue: number, gEvents: number, out?: NeuronOut): number {
  const c = n.code, T = c.T, s = n.surrogate;
  if (c.kind === 'rate') {
    const B = maxSpikesOf(c), u = traceOf(T);
    let m = n.halfStart ? 0.5 : 0, sum = 0, events = 0;
    for (let t = 0; t < T; t++) {
      m += a;
      u[t] = m;
      rateFire(m, B, n, fire);
      m -= fire.value;
      sum += fire.value;
      events += fire.events;
    }
    if (out) {
      out.value = sum / T;
      out.events = events;
    }
    let lambda = 0, ga = 0;
    for (let t = T - 1; t >= 0; t--) {
      rateFireGrad(u[t]!, B, s, n.mode);
      lambda = lambda * (1 - grad.value) + (gValue / T) * grad.value + gEvents * grad.events;
      ga += lambda;
    }
    return ga;
  }
  const ternary = c.kind === 'ternary', limit = ternary ? TERNARY_LIMIT : 2, P = T + extra;
  let v = charged(a, T, ternary, n.mode) * 2 ** -extra;
  if (ternary ? Math.abs(v) > limit : v >= limit) {
    // clipped: no gradient (the value is the top of the range)
    if (out) neuronForward(a, extra, n, out);
    return 0;
  }
  const vs = traceOf(P);
  let value = 0, events = 0, w = 2 ** extra;
  for (let k = 0; k < P; k++, w /= 2) {
    vs[k] = v;
    weightedFire(v, ternary, n, fire);
    value += fire.value * w;
    events += fire.events;
    v = 2 * (v - fire.value);
  }
  if (out) {
    out.value = ternary || a >= 0 ? value : -value;
    out.events = events;
  }
  // binary is sign–magnitude: the value's gradient reaches |a|'s digits with sign(a)
  const sign = ternary || a >= 0 ? 1 : -1;
  const gv = gValue * sign;
  let lambda = 0;
  for (let k = P - 1; k >= 0; k--) {
    weightedFireGrad(vs[k]!, ternary, s);
    lambda = grad.value * gv * 2 ** (extra - k) + grad.events * gEvents + 2 * (1 - grad.value) * lambda;
  }
  return lambda * 2 ** -extra * sign;
}
