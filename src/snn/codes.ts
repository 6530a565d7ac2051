/**
 * Spike codes — what a neuron's spikes mean — and the schedules that run them.
 *
 * Codes (`--coding`), each a neuron model with a threshold θ per channel:
 *
 *   rate           signed IF neuron, reset by subtraction, membrane from θ/2, bursts allowed
 *                  (sigma-delta: n_t = ⌊v/θ⌋ spikes at a step). Decoded x̂ = θ·Σn_t/T; in range
 *                  |x̂ − x| ≤ θ/(2T). Spikes per neuron per step unbounded (a burst of n counts n).
 *   rate-single    the same with at most one spike per step: |x| ≤ θ in range, bound θ/(2T); beyond
 *                  θ the neuron saturates (one spike every step) and the excess is lost — clipped,
 *                  counted in the statistics, and it does not shrink with T.
 *   phase          weighted spikes (Kim et al. 2018), one per step at most: the spike at step k weighs
 *                  θ·2^(−k). Membrane in units of the current plane, charged once per token:
 *                      v₀ = |x|/θ + 2^(−T)                (the half-LSB start rounds instead of truncating)
 *                      fire  d_k = sign(x)·[v_k ≥ 1]
 *                      reset v ← v − |d_k|,   then the plane halves: v_{k+1} = 2·v
 *                  x̂ = θ·Σ_k d_k·2^(−k); in range (|x| < (2 − 2^(−T))·θ): |x̂ − x| ≤ θ·2^(−T).
 *   phase-ternary  signed digits: fire +1 when v > ⅔, −1 when v < −⅔, reset v ← v − d, v ← 2v, from
 *                  v₀ = x/θ. In range (|x| ≤ 4/3·θ) the residual never leaves [−4/3, 4/3], so
 *                  |x̂ − x| ≤ ⅔·θ·2^(−(T−1)), and no two spikes are adjacent (non-adjacent form): about
 *                  fewer events than binary (a third fewer on
 *                  integers; ~15% fewer on uniformly spread values, measured in test/codes.test.ts).
 * Weighted codes never clip silently: a token whose values exceed the range gets extra planes above
 * it (θ·2, θ·4, … up to 2^EXTRA_PLANES) — extra steps, counted; only beyond those does a value
 * clip, and that is counted too. Run by the backends' `encode` (src/tensor/kernels/codes.ts); the
 * classes below are the same neurons one step at a time (tests prove `run` ≡ a loop of `step`).
 *
 * Schedules (`--schedule`):
 *   stepwise   all layers advance one step at a time; nonlinear operators run in compensated form at
 *              every step (src/snn/stepwise.ts). Rate codes only: a weighted spike's value depends on
 *              its step, which a running mean cannot decode. Latency L + T steps.
 *   layerwise  a layer runs its T steps on the spikes it receives, decodes, applies each nonlinear
 *              operator once per token, and the next encoder re-encodes (src/snn/layerwise.ts).
 *              Latency L·T steps (plus extra planes where values overflow), in exchange for no
 *              fluctuation spikes, no T× dense work and a KV cache of one entry per token.
 */
import { ArgumentError } from '../errors.js';
import { type CodeParams, EXTRA_PLANES, TERNARY_FIRE, TERNARY_LIMIT, encodeCpu, STATS_WIDTH } from '../tensor/kernels/codes.js';

export type CodingName = 'rate' | 'rate-single' | 'phase' | 'phase-ternary';
export type ScheduleName = 'stepwise' | 'layerwise';
export const CODINGS: readonly CodingName[] = ['rate', 'rate-single', 'phase', 'phase-ternary'];
export const SCHEDULES: readonly ScheduleName[] = ['stepwise', 'layerwise'];

export function parseCoding(s: string, what = '--coding'): CodingName {
  if ((CODINGS as readonly string[]).includes(s)) return s as CodingName;
  throw new ArgumentError(`${what} must be one of ${CODINGS.join(', ')}, got "${s}"`);
}

export function parseSchedule(s: string, what = '--schedule'): ScheduleName {
  if ((SCHEDULES as readonly string[]).includes(s)) return s as ScheduleName;
  throw new ArgumentError(`${what} must be one of ${SCHEDULES.join(', ')}, got "${s}"`);
}

/** Which code/schedule pairs exist, with the reason when one does not. */
export function checkCombination(coding: CodingName, schedule: ScheduleName): void {
  if (schedule === 'stepwise' && (coding === 'phase' || coding === 'phase-ternary')) {
    throw new ArgumentError(`--coding ${coding} needs --schedule layerwise: a weighted spike's value depends on its step, and the stepwise schedule decodes by running means`);
  }
}

export function isWeighted(coding: CodingName): boolean {
  return coding === 'phase' || coding === 'phase-ternary';
}

/** The kernel parameters of a code at T steps (`maxSpikes` bounds a rate code's bursts). */
export function codeParams(coding: CodingName, T: number, maxSpikes = Infinity): CodeParams {
  switch (coding) {
    case 'rate':
      return { kind: 'rate', T, maxSpikes };
    case 'rate-single':
      return { kind: 'rate', T, maxSpikes: 1 };
    case 'phase':
      return { kind: 'binary', T };
    case 'phase-ternary':
      return { kind: 'ternary', T };
  }
}

/**
 * |x|/θ a neuron represents without extra planes or clipping: the factor that maps a calibration
 * statistic (the largest |x| seen) to a threshold, θ = stat / range. Unbounded bursts have no range:
 * their θ is a quantile that sets resolution (README: resolution vs spikes).
 */
export function rangeOf(coding: CodingName): number | undefined {
  switch (coding) {
    case 'rate':
      return undefined;
    case 'rate-single':
      return 1;
    case 'phase':
      return 2;
    case 'phase-ternary':
      return 4 / 3;
  }
}

/**
 * θ = (calibration statistic) / divisor. Rate codes: the statistic itself (bursts: a quantile sets
 * the resolution; single spikes: the max is the largest value one spike per step carries). Binary:
 * the max sits at the top of the range 2θ. Ternary: the max sits at 2θ, 1.5× its range of 4/3·θ —
 * the top third of values takes one extra plane, every value gets the finer planes; measured on
 * stories260k this is the better trade (README, frontier): at equal energy, higher top-1 than
 * fitting the max to the range.
 */
export function calibrationDivisor(coding: CodingName): number {
  switch (coding) {
    case 'rate':
    case 'rate-single':
      return 1;
    case 'phase':
    case 'phase-ternary':
      return 2;
  }
}

/** Per-neuron error bound in range, in units of θ. */
export function errorBound(coding: CodingName, T: number): number {
  switch (coding) {
    case 'rate':
    case 'rate-single':
      return 1 / (2 * T);
    case 'phase':
      return 2 ** -T;
    case 'phase-ternary':
      return (2 / 3) * 2 ** -(T - 1);
  }
}

// ---------------------------------------------------------------------------------------------
// The weighted-spike neuron, one step at a time (state explicit, as snnTorch's neurons).

export interface WeightedState {
  /** Membrane in units of the current plane's weight (float32 values). */
  readonly v: Float32Array;
  /** Sign of each input (binary codes encode |x|). */
  readonly sign: Float32Array;
  /** Index of the plane the next step fires at (0 = the first of the row's planes). */
  step: number;
  /** Extra planes above the calibrated range this row needed. */
  readonly extra: number;
}

/**
 * A row of weighted-spike neurons (one per channel, thresholds θ) charged with one value each.
 * `charge` sets the membranes and the row's extra planes; `step` fires one plane (digits in
 * {−1, 0, 1}); `steps(state)` says how many planes the row runs (T + extra).
 */
export class WeightedSpikeNeuron {
  private readonly inv: Float32Array;

  constructor(readonly theta: Float32Array, readonly ternary: boolean, readonly T: number) {
    if (!Number.isInteger(T) || T < 1 || T + EXTRA_PLANES > 24) throw new ArgumentError(`weighted neuron: T must be an integer in 1…${24 - EXTRA_PLANES}, got ${T}`);
    this.inv = Float32Array.from(theta, (t) => {
      if (!(t > 0) || !Number.isFinite(t)) throw new ArgumentError(`weighted neuron: thresholds must be positive, got ${t}`);
      return 1 / t;
    });
  }

  charge(x: Float32Array): WeightedState {
    const f = Math.fround, C = this.theta.length;
    if (x.length !== C) throw new ArgumentError(`weighted neuron: ${x.length} inputs for ${C} channels`);
    const v = new Float32Array(C), sign = new Float32Array(C);
    let big = 0;
    for (let c = 0; c < C; c++) {
      const r = f(x[c]! * this.inv[c]!);
      v[c] = this.ternary ? r : f(Math.abs(r) + 2 ** -this.T);
      sign[c] = this.ternary || x[c]! >= 0 ? 1 : -1;
      big = Math.max(big, Math.abs(v[c]!));
    }
    const limit = this.ternary ? TERNARY_LIMIT : 2;
    let extra = 0;
    while (extra < EXTRA_PLANES && (this.ternary ? big * 2 ** -extra > limit : big * 2 ** -extra >= limit)) extra++;
    for (let c = 0; c < C; c++) {
      let m = f(v[c]! * 2 ** -extra);
      if (this.ternary ? Math.abs(m) > limit : m >= limit) m = this.ternary ? Math.sign(m) * limit : f(2 - 2 ** -(this.T + extra - 1));
      v[c] = m;
    }
    return { v, sign, step: 0, extra };
  }

  steps(state: WeightedState): number {
    return this.T + state.extra;
  }

  /** Fire one plane: digits per channel; the membranes reset and double. */
  step(state: WeightedState): Float32Array {
    if (state.step >= this.steps(state)) throw new ArgumentError('weighted neuron: all planes have fired');
    const f = Math.fround, C = this.theta.length;
    const d = new Float32Array(C);
    for (let c = 0; c < C; c++) {
      const v = state.v[c]!;
      let digit = 0;
      if (this.ternary) digit = v > TERNARY_FIRE ? 1 : v < -TERNARY_FIRE ? -1 : 0;
      else digit = v >= 1 ? 1 : 0;
      state.v[c] = f(2 * f(v - digit));
      d[c] = digit * state.sign[c]!;
    }
    state.step++;
    return d;
  }

  /** Value of a digit sequence (planes from this row's first one), per channel: θ·Σ d_k·2^(extra−k). */
  decode(planes: readonly Float32Array[], extra: number): Float32Array {
    return Float32Array.from(this.theta, (th, c) => th * planes.reduce((a, d, k) => a + d[c]! * 2 ** (extra - k), 0));
  }

  /** All planes at once through the backends' kernel: digit sums (in units of θ·2^(1−T)) and stats. */
  run(x: Float32Array): { sums: Float32Array; rowStats: Float32Array } {
    const C = this.theta.length;
    const sums = new Float32Array(C), rowStats = new Float32Array(STATS_WIDTH);
    encodeCpu(x, 1, C, this.theta, this.inv, { kind: this.ternary ? 'ternary' : 'binary', T: this.T }, { sums, rowStats });
    return { sums, rowStats };
  }
}
