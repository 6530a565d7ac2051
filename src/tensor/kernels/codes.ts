/**
 * Spike codes of the layerwise schedule: a neuron receives one value x per token (a constant
 * current), runs its steps, and emits integer spike counts ("digits") per step. Rows are tokens,
 * channels are neurons with threshold θ per channel. Three neuron models (equations in
 * src/snn/codes.ts, where the neuron classes live):
 *
 *   rate        signed IF, reset by subtraction, membrane from θ/2, at most B spikes per step
 *               (B = ∞: sigma-delta bursts). T steps, every step weighs θ/T. Beyond B·θ it clips.
 *   binary      weighted (phase) spikes, sign–magnitude: the spike at plane k weighs θ·2^(E−k);
 *               fire when the membrane reaches the plane's threshold, rounded (half-LSB start)
 *   ternary     weighted spikes with signed digits (±1 at threshold ±⅔ of the plane): spikes are
 *               never adjacent (non-adjacent form), fewer events than binary
 *
 * Weighted codes run P = T + E planes (E = EXTRA_PLANES): planes E … P−1 are the T planes of the
 * calibrated range, planes 0 … E−1 extra ones above it. A row (token) whose largest |x| needs e
 * extra planes starts at plane E − e, so its neurons run T + e steps — values beyond the top plane
 * are never clipped silently: they cost extra steps, counted. Only beyond E extra planes (x more
 * than 2^E times the calibrated range) does a value clip, and that is counted too.
 *
 * Outputs per element: the digit sum m (an integer): value = θ·m·unit, unit = 2^(1−T) (weighted)
 * or 1/T (rate); optionally the digits themselves, plane-major [P·R, C] (the event-driven
 * execution reads them). Per row: the ROW_STATS statistics below, reduced into a site's stats row
 * by `statsInto` (which also multiplies each row's events by its fan-out for the synaptic ops).
 *
 * The CPU code rounds every operation to float32 exactly as the WGSL twin computes (the weighted
 * dynamics are exact in float32 once the membrane is charged: doublings and subtractions of 1
 * there are exact), so both backends emit identical digits for identical inputs.
 */
import { ArgumentError } from '../../errors.js';
import type { GpuRuntime, GpuTensor } from '../gpu/runtime.js';

export type CodeKind = 'rate' | 'binary' | 'ternary';

export interface CodeParams {
  readonly kind: CodeKind;
  /** Steps of the calibrated range (planes for weighted codes). */
  readonly T: number;
  /** Rate codes: spikes per step allowed (Infinity = bursts). */
  readonly maxSpikes?: number;
}

/** Extra planes above the calibrated range a weighted-code row may use (values up to 2^E × the range). */
export const EXTRA_PLANES = 8;

/** Columns of a statistics row (per token row, and per site after `statsInto`). */
export const STAT = {
  /** Spike events, Σ|digit| (a burst of n counts n). */
  events: 0,
  /** Largest |digit| of any neuron at any step (spikes per neuron per step, at most). */
  maxPerStep: 1,
  /** Digits that are nonzero (the density event-driven products skip by). */
  nonzero: 2,
  /** Neuron-steps run: channels × steps of the row. */
  neuronSteps: 3,
  /** Extra planes used beyond T (weighted codes). */
  extraSteps: 4,
  /** Synaptic operations: events × the fan-out of the layer they drive. */
  synapticOps: 5,
  /** Rows that needed extra planes. */
  overflowRows: 6,
  /** Values beyond what the neuron can represent (clipped): rate-coded beyond B·θ, or beyond E extra planes. */
  clipped: 7,
  /** Extra planes × the row's fan-out (receivers that double through the extra planes). */
  extraFanout: 8,
  /**
   * Neurons that fired at least once, and the steps they ran. A layerwise neuron is charged once
   * per token: if its charge cannot reach the smallest threshold it never fires — one comparison
   * says so and it sits the steps out (the energy model counts that comparison, not T of them).
   */
  activeNeurons: 9,
  activeSteps: 10,
} as const;
export const STATS_WIDTH = 11;

/** Planes a code's digit tensor holds. */
export function planesOf(c: CodeParams): number {
  return c.kind === 'rate' ? c.T : c.T + EXTRA_PLANES;
}

/** The value of one unit of the digit sum, in units of θ: 2^(1−T) (weighted) or 1/T (rate). */
export function unitOf(c: CodeParams): number {
  return c.kind === 'rate' ? 1 / c.T : 2 ** (1 - c.T);
}

export function validateCode(c: CodeParams): void {
  if (!['rate', 'binary', 'ternary'].includes(c.kind)) throw new ArgumentError(`code: unknown kind ${JSON.stringify(c.kind)}`);
  if (!Number.isInteger(c.T) || c.T < 1) throw new ArgumentError(`code: T must be a positive integer, got ${c.T}`);
  // Digit sums must stay exact integers in float32 (< 2^24).
  if (c.kind !== 'rate' && c.T + EXTRA_PLANES > 24) throw new ArgumentError(`code: weighted codes need T ≤ ${24 - EXTRA_PLANES} (digit sums stay exact in float32), got ${c.T}`);
  const B = c.maxSpikes ?? Infinity;
  if (c.kind === 'rate' && !(B >= 1)) throw new ArgumentError(`code: maxSpikes must be ≥ 1, got ${B}`);
}

const f = Math.fround;
/**
 * The ternary thresholds as float32 numbers (both backends compare float32 membranes with exactly
 * these): fire at v > ⅔, stay in range while |v| ≤ 4/3. Strict comparisons keep spikes non-adjacent:
 * after a spike |v| ≤ 2·(4/3 − 1) ≈ ⅔ — adjacency is possible only for a membrane exactly at the
 * top edge of the range (a measure-zero case, left as it is).
 */
export const TERNARY_FIRE = f(2 / 3);
export const TERNARY_LIMIT = f(4 / 3);

export interface EncodeOut {
  /** Digit sums m, [R·C]. */
  readonly sums: Float32Array;
  /** Plane-major digits [planesOf(code)·R·C], or undefined. */
  readonly digits?: Float32Array;
  /** [R·STATS_WIDTH] */
  readonly rowStats: Float32Array;
}

/**
 * Encode rows of x [R, C] (thresholds θ and float32 reciprocals per channel). The per-row stats
 * leave `synapticOps` at events (fan-out 1): statsInto applies the fan-out.
 */
export function encodeCpu(x: Float32Array, R: number, C: number, theta: Float32Array, invTheta: Float32Array, code: CodeParams, out: EncodeOut): void {
  validateCode(code);
  const T = code.T;
  const digits = out.digits;
  if (digits) digits.fill(0);
  for (let r = 0; r < R; r++) {
    const so = r * STATS_WIDTH;
    let events = 0, maxPer = 0, nonzero = 0, clipped = 0, extra = 0;
    if (code.kind === 'rate') {
      const B = Number.isFinite(code.maxSpikes ?? Infinity) ? code.maxSpikes! : 3.0e38;
      let active = 0;
      for (let c = 0; c < C; c++) {
        const e = r * C + c, xv = x[e]!, th = theta[c]!, inv = invTheta[c]!;
        let v = f(th * 0.5), m = 0, fired = false;
        for (let t = 0; t < T; t++) {
          v = f(v + xv);
          let n = Math.floor(f(v * inv));
          if (n > B) n = B;
          else if (n < -B) n = -B;
          v = f(v - f(n * th));
          m += n;
          if (n !== 0) {
            const a = Math.abs(n);
            events += a;
            nonzero++;
            fired = true;
            if (a > maxPer) maxPer = a;
            if (digits) digits[(t * R + r) * C + c] = n;
          }
        }
        out.sums[e] = m;
        if (fired) active++;
        if (Math.abs(xv) > B * th) clipped++;
      }
      out.rowStats.set([events, maxPer, nonzero, C * T, 0, events, 0, clipped, 0, active, active * T], so);
      continue;
    }
    // Weighted codes: charge the membranes (in units of θ), find the row's extra planes, then run.
    const ternary = code.kind === 'ternary';
    const v = scratch(C), m = scratch2(C), sign = scratch3(C);
    for (let c = 0; c < C; c++) {
      const xv = x[r * C + c]!;
      v[c] = f(xv * invTheta[c]!);
      sign[c] = ternary || xv >= 0 ? 1 : -1;
    }
    const run = runWeighted(v, m, C, T, ternary, digits ? (j, c, d) => { digits[(j * R + r) * C + c] = d * sign[c]!; } : undefined);
    extra = run.extra;
    let active = 0;
    for (let c = 0; c < C; c++) {
      out.sums[r * C + c] = m[c]! * sign[c]!;
      if (m[c] !== 0) active++;
    }
    out.rowStats.set([run.events, run.events > 0 ? 1 : 0, run.events, C * (T + extra), extra, run.events, extra > 0 ? 1 : 0, run.clipped, 0, active, active * (T + extra)], so);
  }
}

/**
 * The extra planes a weighted neuron (or a row of them) opens: `big` is the largest first membrane
 * |v₀| (|x|/θ; binary: + 2^−T, rounded to float32), against the top of the range (ternary: > 4/3;
 * binary: ≥ 2), up to EXTRA_PLANES.
 */
export function extraPlanesFor(big: number, ternary: boolean): number {
  const limit = ternary ? TERNARY_LIMIT : 2;
  let extra = 0;
  while (extra < EXTRA_PLANES && (ternary ? big * 2 ** -extra > limit : big * 2 ** -extra >= limit)) extra++;
  return extra;
}

/** Set bits of a non-negative integer below 2^31 (digit sums have at most T + E ≤ 24 bits). */
export function popcount(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
}

let scratchBuffers = [new Float64Array(256), new Float64Array(256), new Float64Array(256)];
const scratchOf = (i: number, n: number): Float64Array => {
  if (scratchBuffers[i]!.length < n) scratchBuffers[i] = new Float64Array(n);
  return scratchBuffers[i]!;
};
/** Reusable buffers for one row's membranes, digit sums and signs (kernels run one at a time). */
const scratch = (n: number) => scratchOf(0, n), scratch2 = (n: number) => scratchOf(1, n), scratch3 = (n: number) => scratchOf(2, n);

/**
 * The weighted neurons of one row, all planes: `v` holds each neuron's charge x/θ (float32 values;
 * binary codes: |x|/θ, the sign applied by the caller) and is consumed; `m` receives the digit sums
 * (binary: of |x|). The row opens as many extra planes as its largest charge needs (up to E; beyond,
 * values clip to the top of the range and are counted). Planes outer, neurons inner: the neurons'
 * dependency chains interleave (three times faster than one neuron at a time in V8). `onDigit`
 * sees every nonzero digit (plane index into the P = T + E planes).
 */
export function runWeighted(v: Float64Array, m: Float64Array, n: number, T: number, ternary: boolean, onDigit?: (plane: number, neuron: number, digit: number) => void): { events: number; extra: number; clipped: number } {
  const E = EXTRA_PLANES, P = T + E;
  const limit = ternary ? TERNARY_LIMIT : 2; // |v| must stay at most (ternary) / below (binary) this
  const halfLsb = 2 ** -T;
  let big = 0;
  for (let c = 0; c < n; c++) {
    if (!ternary) v[c] = f(Math.abs(v[c]!) + halfLsb);
    big = Math.max(big, Math.abs(v[c]!));
    m[c] = 0;
  }
  const extra = extraPlanesFor(big, ternary);
  const scale = 2 ** -extra, top = f(2 - 2 ** -(T + extra - 1));
  let clipped = 0, events = 0;
  for (let c = 0; c < n; c++) {
    let x = f(v[c]! * scale);
    // beyond the last extra plane: clip to the top of the range (and count it)
    if (ternary ? Math.abs(x) > limit : x >= limit) {
      clipped++;
      x = ternary ? Math.sign(x) * limit : top;
    }
    v[c] = x;
  }
  if (!ternary && !onDigit) {
    // binary digits are the bits of x ∈ [0, 2): after k planes m = ⌊x·2^(k−1)⌋ exactly (x is a float32
    // value, scaling by a power of two is exact), and the events are its set bits
    const k = P - (E - extra), scaleUp = 2 ** (k - 1);
    for (let c = 0; c < n; c++) {
      const mc = Math.floor(v[c]! * scaleUp);
      m[c] = mc;
      events += popcount(mc);
    }
    return { events, extra, clipped };
  }
  for (let j = E - extra; j < P; j++) {
    for (let c = 0; c < n; c++) {
      const x = v[c]!;
      const d = ternary ? (x > TERNARY_FIRE ? 1 : x < -TERNARY_FIRE ? -1 : 0) : x >= 1 ? 1 : 0;
      // x − d and 2·x are exact in float32 here (|x| ≤ 2, Sterbenz), so double arithmetic gives the same bits
      v[c] = 2 * (x - d);
      m[c] = 2 * m[c]! + d;
      if (d !== 0) {
        events++;
        onDigit?.(j, c, d);
      }
    }
  }
  return { events, extra, clipped };
}

/**
 * stats[row, :] += Σ over rows of rowStats (max for maxPerStep), with synapticOps = events × fan-out
 * and extraFanout = extra planes × fan-out (one fan-out, or one per row: e.g. the keys a query row
 * attends to). With `segments` > 1 the rows are that many equal consecutive groups (the steps of a
 * time-major tensor), reduced into stats rows row, row + 1, ….
 */
export function statsIntoCpu(rowStats: Float32Array, R: number, stats: Float32Array, row: number, fanout: number | Float32Array, segments = 1): void {
  const per = R / segments;
  for (let r = 0; r < R; r++) {
    const o = (row + Math.floor(r / per)) * STATS_WIDTH;
    const s = r * STATS_WIDTH;
    for (let k = 0; k < STATS_WIDTH; k++) {
      if (k === STAT.maxPerStep) stats[o + k] = Math.max(stats[o + k]!, rowStats[s + k]!);
      else if (k === STAT.synapticOps) stats[o + k] = stats[o + k]! + rowStats[s + STAT.events]! * (typeof fanout === 'number' ? fanout : fanout[r]!);
      else if (k === STAT.extraFanout) stats[o + k] = stats[o + k]! + rowStats[s + STAT.extraSteps]! * (typeof fanout === 'number' ? fanout : fanout[r]!);
      else stats[o + k] = stats[o + k]! + rowStats[s + k]!;
    }
  }
}

/** Per-row stats of given digits [P·R, C] (stepwise encoders: rows are (step, token) pairs). */
export function digitStatsCpu(digits: Float32Array, rows: number, C: number, rowStats: Float32Array): void {
  for (let r = 0; r < rows; r++) {
    let events = 0, maxPer = 0, nonzero = 0;
    for (let c = 0; c < C; c++) {
      const a = Math.abs(digits[r * C + c]!);
      if (a !== 0) {
        events += a;
        nonzero++;
        if (a > maxPer) maxPer = a;
      }
    }
    // stepwise neurons see a new current every step: every one of them runs every step
    rowStats.set([events, maxPer, nonzero, C, 0, events, 0, 0, 0, C, C], r * STATS_WIDTH);
  }
}

// ---------------------------------------------------------------------------------------------
// GPU twins: one invocation per row (it owns its row's statistics), looping over channels and
// steps; statsInto is one workgroup reducing the rows.

const ENCODE_WGSL = `
struct Params { R: u32, C: u32, T: u32, P: u32, E: u32, kind: u32, maxSpikes: f32, writeDigits: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> theta: array<f32>;
@group(0) @binding(2) var<storage, read> invTheta: array<f32>;
@group(0) @binding(3) var<storage, read_write> sums: array<f32>;
@group(0) @binding(4) var<storage, read_write> digits: array<f32>;
@group(0) @binding(5) var<storage, read_write> rowStats: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let r = gid.x;
  if (r >= p.R) { return; }
  var events = 0.0; var maxPer = 0.0; var nonzero = 0.0; var clipped = 0.0; var extra = 0u; var nActive = 0.0;
  if (p.writeDigits != 0u) {
    for (var j = 0u; j < p.P; j++) { for (var c = 0u; c < p.C; c++) { digits[(j * p.R + r) * p.C + c] = 0.0; } }
  }
  if (p.kind == 0u) {
    for (var c = 0u; c < p.C; c++) {
      let e = r * p.C + c;
      let xv = x[e]; let th = theta[c]; let inv = invTheta[c];
      var v = th * 0.5; var m = 0.0; var fired = false;
      for (var t = 0u; t < p.T; t++) {
        v = v + xv;
        let n = clamp(floor(v * inv), -p.maxSpikes, p.maxSpikes);
        v = v - n * th;
        m += n;
        if (n != 0.0) {
          let a = abs(n);
          events += a; nonzero += 1.0; maxPer = max(maxPer, a); fired = true;
          if (p.writeDigits != 0u) { digits[(t * p.R + r) * p.C + c] = n; }
        }
      }
      sums[e] = m;
      if (fired) { nActive += 1.0; }
      if (abs(xv) > p.maxSpikes * th) { clipped += 1.0; }
    }
    let s = r * 11u;
    rowStats[s] = events; rowStats[s + 1u] = maxPer; rowStats[s + 2u] = nonzero; rowStats[s + 3u] = f32(p.C * p.T);
    rowStats[s + 4u] = 0.0; rowStats[s + 5u] = events; rowStats[s + 6u] = 0.0; rowStats[s + 7u] = clipped; rowStats[s + 8u] = 0.0;
    rowStats[s + 9u] = nActive; rowStats[s + 10u] = nActive * f32(p.T);
    return;
  }
  let ternary = p.kind == 2u;
  var limit = 2.0;
  if (ternary) { limit = 1.3333333730697632; }
  let lsbHalf = exp2(-f32(p.T));
  var big = 0.0;
  for (var c = 0u; c < p.C; c++) {
    let r0 = x[r * p.C + c] * invTheta[c];
    var v0 = r0;
    if (!ternary) { v0 = abs(r0) + lsbHalf; }
    big = max(big, abs(v0));
  }
  loop {
    if (extra >= p.E) { break; }
    let scaled = big * exp2(-f32(extra));
    if (ternary) { if (!(scaled > limit)) { break; } } else { if (!(scaled >= limit)) { break; } }
    extra += 1u;
  }
  let scale = exp2(-f32(extra));
  for (var c = 0u; c < p.C; c++) {
    let e = r * p.C + c;
    let r0 = x[e] * invTheta[c];
    var v = r0;
    if (!ternary) { v = abs(r0) + lsbHalf; }
    v = v * scale;
    var sgn = 1.0;
    if (x[e] < 0.0) { sgn = -1.0; }
    if (ternary) {
      if (abs(v) > limit) { clipped += 1.0; v = sign(v) * limit; }
    } else if (v >= limit) {
      clipped += 1.0; v = 2.0 - exp2(-f32(p.T + extra - 1u));
    }
    var m = 0.0;
    for (var j = p.E - extra; j < p.P; j++) {
      var d = 0.0;
      if (ternary) {
        if (v > 0.6666666865348816) { d = 1.0; } else if (v < -0.6666666865348816) { d = -1.0; }
      } else if (v >= 1.0) { d = 1.0; }
      v = 2.0 * (v - d);
      m = 2.0 * m + d;
      if (d != 0.0) {
        events += 1.0;
        if (p.writeDigits != 0u) {
          var out = d;
          if (!ternary) { out = sgn * d; }
          digits[(j * p.R + r) * p.C + c] = out;
        }
      }
    }
    if (ternary) { sums[e] = m; } else { sums[e] = sgn * m; }
    if (m != 0.0) { nActive += 1.0; }
  }
  var ovf = 0.0;
  if (extra > 0u) { ovf = 1.0; }
  var mp = 0.0;
  if (events > 0.0) { mp = 1.0; }
  let s = r * 11u;
  rowStats[s] = events; rowStats[s + 1u] = mp; rowStats[s + 2u] = events; rowStats[s + 3u] = f32(p.C * (p.T + extra));
  rowStats[s + 4u] = f32(extra); rowStats[s + 5u] = events; rowStats[s + 6u] = ovf; rowStats[s + 7u] = clipped; rowStats[s + 8u] = 0.0;
  rowStats[s + 9u] = nActive; rowStats[s + 10u] = nActive * f32(p.T + extra);
}`;

export function encodeGpu(rt: GpuRuntime, x: GpuTensor, R: number, C: number, theta: GpuTensor, invTheta: GpuTensor, code: CodeParams, sums: GpuTensor, digits: GpuTensor | undefined, rowStats: GpuTensor): void {
  validateCode(code);
  const kind = code.kind === 'rate' ? 0 : code.kind === 'binary' ? 1 : 2;
  const B = code.maxSpikes ?? Infinity;
  // writable bindings may not alias: without digits, a scratch word stands in for them
  const scratch = digits ? undefined : rt.alloc([1]);
  rt.dispatch(rt.pipeline('codes/encode', () => ENCODE_WGSL), [x.buffer, theta.buffer, invTheta.buffer, sums.buffer, (digits ?? scratch!).buffer, rowStats.buffer],
    [R, C, code.T, planesOf(code), EXTRA_PLANES, kind, { f32: Number.isFinite(B) ? B : 3.0e38 }, digits ? 1 : 0], [Math.max(1, Math.ceil(R / 64))]);
  if (scratch) rt.release(scratch);
}

const DIGIT_STATS_WGSL = `
struct Params { rows: u32, C: u32 }
@group(0) @binding(0) var<storage, read> digits: array<f32>;
@group(0) @binding(1) var<storage, read_write> rowStats: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let r = gid.y * 65535u * 64u + gid.x;
  if (r >= p.rows) { return; }
  var events = 0.0; var maxPer = 0.0; var nonzero = 0.0;
  for (var c = 0u; c < p.C; c++) {
    let a = abs(digits[r * p.C + c]);
    if (a != 0.0) { events += a; nonzero += 1.0; maxPer = max(maxPer, a); }
  }
  let s = r * 11u;
  rowStats[s] = events; rowStats[s + 1u] = maxPer; rowStats[s + 2u] = nonzero; rowStats[s + 3u] = f32(p.C);
  rowStats[s + 4u] = 0.0; rowStats[s + 5u] = events; rowStats[s + 6u] = 0.0; rowStats[s + 7u] = 0.0; rowStats[s + 8u] = 0.0;
  rowStats[s + 9u] = f32(p.C); rowStats[s + 10u] = f32(p.C);
}`;

export function digitStatsGpu(rt: GpuRuntime, digits: GpuTensor, rows: number, C: number, rowStats: GpuTensor): void {
  const total = Math.ceil(rows / 64);
  const groups: [number, number] = total > 65535 ? [65535, Math.ceil(total / 65535)] : [Math.max(1, total), 1];
  rt.dispatch(rt.pipeline('codes/digit-stats', () => DIGIT_STATS_WGSL), [digits.buffer, rowStats.buffer], [rows, C], groups);
}

const STATS_INTO_WGSL = `
struct Params { R: u32, row: u32, fanout: f32, perRow: u32, per: u32 }
@group(0) @binding(0) var<storage, read> rowStats: array<f32>;
@group(0) @binding(1) var<storage, read> fanouts: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
var<workgroup> part: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  // one workgroup per segment (rows [seg·per, seg·per + per)); one column per pass over its rows:
  // 256 invocations each sum (or max) a strided subset
  let seg = wid.x;
  let r0 = seg * p.per;
  for (var k = 0u; k < 11u; k++) {
    var acc = 0.0;
    for (var r = r0 + lid.x; r < r0 + p.per; r += 256u) {
      var v = rowStats[r * 11u + k];
      var fo = p.fanout;
      if (p.perRow != 0u) { fo = fanouts[r]; }
      if (k == 5u) { v = rowStats[r * 11u] * fo; }
      if (k == 8u) { v = rowStats[r * 11u + 4u] * fo; }
      if (k == 1u) { acc = max(acc, v); } else { acc += v; }
    }
    part[lid.x] = acc;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w = w / 2u) {
      if (lid.x < w) {
        if (k == 1u) { part[lid.x] = max(part[lid.x], part[lid.x + w]); } else { part[lid.x] += part[lid.x + w]; }
      }
      workgroupBarrier();
    }
    if (lid.x == 0u) {
      let o = (p.row + seg) * 11u + k;
      if (k == 1u) { stats[o] = max(stats[o], part[0]); } else { stats[o] += part[0]; }
    }
    workgroupBarrier();
  }
}`;

export function statsIntoGpu(rt: GpuRuntime, rowStats: GpuTensor, R: number, stats: GpuTensor, row: number, fanout: number | GpuTensor, segments = 1): void {
  const perRow = typeof fanout !== 'number';
  rt.dispatch(rt.pipeline('codes/stats-into', () => STATS_INTO_WGSL), [rowStats.buffer, (perRow ? fanout : rowStats).buffer, stats.buffer],
    [R, row, { f32: perRow ? 0 : fanout }, perRow ? 1 : 0, R / segments], [segments]);
}
