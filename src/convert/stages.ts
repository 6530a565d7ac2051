/**
 * ANN → SNN conversion as named stages (SpikingJelly's shape), each usable and tested alone:
 *
 *   trace      the network's structure for a schedule: its encoder sites (where values become
 *              spikes: one before every linear layer, and in the layerwise schedule before each
 *              product with cached keys and values) and its nonlinear operators
 *   observe    run the ANN (the spiking model in exact mode) on calibration data and record, per site
 *              and channel, the values that will reach each neuron (samples, max, mean)
 *   calibrate  per-channel thresholds θ for a code: a statistic of |x| (a quantile, or the max)
 *              divided by the code's divisor (optionally around a centre μ, stepwise only)
 *   replace    build the spiking model: neurons at the sites, synapses W·diag(θ), the schedule's
 *              operators
 *   finalize   the spiking model with everything needed to save, reload and report it;
 *              measureDensity adds the density of nonzero spikes per site (GPU kernels choose by it)
 */
import { ArgumentError } from '../errors.js';
import { type CodingName, type ScheduleName, calibrationDivisor, checkCombination } from '../snn/codes.js';
import { type CausalLMLike, COMPENSATED, type OperatorForms, type SnnMode, type SpikingConfig, SpikingLM } from '../snn/model.js';
import { SpikeTally } from '../snn/stats.js';
import { DEFAULT_NEURON, type NeuronConfig } from '../tensor/kernels/neuron.js';
import { type EncoderSite, encoderSites } from '../snn/sites.js';
import type { SurrogateName } from '../snn/surrogate.js';
import type { Backend } from '../tensor/backend.js';
import { CpuBackend } from '../tensor/cpu-backend.js';
import type { Tensor } from '../tensor/tensor.js';
import type { CalibrationData } from './calibration-data.js';

// ---- trace --------------------------------------------------------------------------------------

export interface ConversionPlan {
  readonly family: string;
  readonly schedule: ScheduleName;
  /** Attention heads and KV heads (queries' thresholds are shared within a KV group). */
  readonly heads: { readonly numHeads: number; readonly numKvHeads: number; readonly headDim: number };
  readonly sites: readonly EncoderSite[];
  /** Nonlinear operators, in execution order (compensated in the stepwise schedule). */
  readonly operators: readonly { readonly name: string; readonly kind: 'norm' | 'attention' | 'activation' }[];
}

export function trace(model: CausalLMLike, schedule: ScheduleName = 'stepwise'): ConversionPlan {
  const cfg = model.config;
  const operators: { name: string; kind: 'norm' | 'attention' | 'activation' }[] = [];
  // post-LN blocks run each norm after its sublayer's residual add
  const norm = (name: string) => operators.push({ name, kind: 'norm' });
  for (let l = 0; l < cfg.numLayers; l++) {
    if (!cfg.postNorm) norm(`layers.${l}.attn_norm`);
    operators.push({ name: `layers.${l}.attention`, kind: 'attention' });
    if (cfg.postNorm) norm(`layers.${l}.attn_norm`);
    if (!cfg.postNorm) norm(`layers.${l}.mlp_norm`);
    if (!(cfg.activation === 'relu' && !cfg.gatedMlp)) operators.push({ name: `layers.${l}.act`, kind: 'activation' });
    if (cfg.postNorm) norm(`layers.${l}.mlp_norm`);
  }
  if (cfg.finalNorm) norm('final_norm');
  return { family: cfg.family, schedule, heads: { numHeads: cfg.numHeads, numKvHeads: cfg.numKvHeads, headDim: cfg.headDim }, sites: encoderSites(cfg, schedule), operators };
}

// ---- observe ------------------------------------------------------------------------------------

export interface SiteObservation {
  readonly channels: number;
  /** Tokens observed. */
  readonly count: number;
  readonly maxAbs: Float32Array;
  readonly mean: Float32Array;
  /** Per channel, the observed values (signed), at most `maxTokens` per site, in token order. */
  readonly values: readonly Float32Array[];
}

export type Observations = ReadonlyMap<string, SiteObservation>;

export interface ObserveOptions {
  /** Keep at most this many tokens' values per site for quantiles (evenly spaced). Default 8192. */
  readonly maxTokens?: number;
  readonly onProgress?: (done: number, total: number) => void;
}

/**
 * Run the ANN (the spiking model's exact mode for the plan's schedule, on the CPU) over the
 * calibration samples. Attention probabilities (layerwise p_in) are not observed: they are at most 1
 * by construction, which sets their thresholds.
 */
export function observe(plan: ConversionPlan, model: CausalLMLike, data: CalibrationData, opts: ObserveOptions = {}): Observations {
  const maxTokens = opts.maxTokens ?? 8192;
  // the probe runs on the CPU with the model's kernel set where the model is on the CPU (its sums
  // are exact under either set, so this changes speed only)
  const own = (model as { backend?: unknown }).backend;
  const cpu = new CpuBackend(own instanceof CpuBackend ? { kernels: own.kernels } : {});
  const probe = new SpikingLM(model.config, model.weights, cpu, { timesteps: 1, mode: 'exact', schedule: plan.schedule, neuron: DEFAULT_NEURON, thresholds: new Map(), surrogate: { name: 'atan', alpha: 2 } });
  // per site: the observed rows as they came (float32 copies, for the values), and each channel's
  // running sum and maximum over every row, in the order seen
  const acc = new Map<string, { rows: Float32Array[]; sum: Float64Array; max: Float32Array; count: number }>();
  for (const s of plan.sites) {
    if (s.kind === 'p_in') continue;
    acc.set(s.name, { rows: [], sum: new Float64Array(s.channels), max: new Float32Array(s.channels), count: 0 });
  }
  data.samples.forEach((ids, i) => {
    // the head's input is observed on every row; the logits (a vocabulary-wide product per row) are not needed
    probe.forward(ids, probe.newCache(), {
      observe: (site, x) => {
        const a = acc.get(site);
        if (!a) throw new ArgumentError(`observe: the model reported an untraced site "${site}"`);
        const t = x as Tensor;
        const block = t.data.slice(0, t.rows * t.cols);
        const C = a.sum.length, sum = a.sum, max = a.max;
        for (let o = 0; o < block.length; o += C) {
          for (let c = 0; c < C; c++) {
            const v = block[o + c]!;
            sum[c] += v;
            const m = v < 0 ? -v : v;
            if (m > max[c]!) max[c] = m;
          }
        }
        a.rows.push(block);
        a.count += t.rows;
      },
    });
    opts.onProgress?.(i + 1, data.samples.length);
  });
  probe.dispose();
  const out = new Map<string, SiteObservation>();
  for (const [name, a] of acc) {
    let values: Float32Array[] | undefined;
    const rows = a.rows;
    out.set(name, {
      channels: a.sum.length,
      count: a.count,
      maxAbs: a.max,
      mean: Float32Array.from(a.sum, (s) => s / Math.max(a.count, 1)),
      // made on first use (quantiles below 1 and centred codes read them; the max needs none of
      // them), then the rows are let go
      get values() {
        if (!values) {
          values = keptValues(rows, a.sum.length, a.count, maxTokens);
          rows.length = 0;
        }
        return values;
      },
    });
  }
  return out;
}

/** Every stride-th row (in the order seen) of row blocks, as one array per channel. */
function keptValues(blocks: readonly Float32Array[], C: number, count: number, maxTokens: number): Float32Array[] {
  const stride = Math.max(1, Math.ceil(count / maxTokens));
  const values = Array.from({ length: C }, () => new Float32Array(Math.ceil(count / stride)));
  let row = 0, j = 0;
  for (const block of blocks) {
    const rows = block.length / C, r0 = (stride - (row % stride)) % stride;
    let i = j;
    for (let r = r0; r < rows; r += stride, i++) {
      const o = r * C;
      for (let c = 0; c < C; c++) values[c]![i] = block[o + c]!;
    }
    row += rows;
    j = i;
  }
  return values;
}

// ---- calibrate ----------------------------------------------------------------------------------

export interface CalibrateOptions {
  /**
   * Quantile of |x − μ| per channel that θ is derived from (θ = quantile / the code's divisor).
   * Default: 0.9 for rate codes with bursts (README: resolution vs spikes), 1 (the max) otherwise.
   */
  readonly quantile?: number;
  /** The code the thresholds are for (default 'rate'). */
  readonly coding?: CodingName;
  /** Encode around the per-channel mean (bias takes W·μ). Default false. */
  readonly center?: boolean;
  /** θ is at least this fraction of the site's median θ (dead channels still get a usable θ). */
  readonly floorRatio?: number;
}

export interface SiteCalibration {
  readonly theta: Float32Array;
  readonly center?: Float32Array;
  /** Summary for reports: median θ, max |x| seen, tokens. */
  readonly medianTheta: number;
  readonly maxAbs: number;
  readonly tokens: number;
}

export interface Calibration {
  readonly quantile: number;
  readonly coding: CodingName;
  readonly schedule: ScheduleName;
  readonly center: boolean;
  readonly sites: ReadonlyMap<string, SiteCalibration>;
}

export const DEFAULT_QUANTILE = 0.9;

/** The default calibration quantile of a code: bursts resolve by θ, bounded codes are fitted to the max. */
export function defaultQuantile(coding: CodingName): number {
  return coding === 'rate' ? DEFAULT_QUANTILE : 1;
}

export function quantileOf(sorted: Float32Array | number[], q: number): number {
  if (sorted.length === 0) return 0;
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos), hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export function calibrate(plan: ConversionPlan, obs: Observations, opts: CalibrateOptions = {}): Calibration {
  const coding = opts.coding ?? 'rate';
  checkCombination(coding, plan.schedule);
  const q = opts.quantile ?? defaultQuantile(coding);
  if (!(q > 0 && q <= 1)) throw new ArgumentError(`calibrate: quantile must be in (0, 1], got ${q}`);
  if (opts.center && plan.schedule === 'layerwise') throw new ArgumentError('calibrate: centred encoding is a stepwise option');
  const divisor = calibrationDivisor(coding);
  const floorRatio = opts.floorRatio ?? 0.01;
  const sites = new Map<string, SiteCalibration>();
  for (const site of plan.sites) {
    if (site.kind === 'p_in') {
      // probabilities are at most 1 (exactly 1 for the first token): fitted like a channel whose max is 1
      const theta = new Float32Array(site.channels).fill(1 / divisor);
      sites.set(site.name, { theta, medianTheta: 1 / divisor, maxAbs: 1, tokens: 0 });
      continue;
    }
    const o = obs.get(site.name);
    if (!o) throw new ArgumentError(`calibrate: no observations for site "${site.name}"`);
    // A ReLU neuron computes max(0, x) itself: it cannot be centred.
    const centred = (opts.center ?? false) && !(site.name.endsWith('.down_in') && plan.operators.every((op) => !op.name.endsWith('.act')));
    const theta = new Float32Array(site.channels);
    for (let c = 0; c < site.channels; c++) {
      const mu = centred ? o.mean[c]! : 0;
      if (q === 1) {
        // the max is the max of every value seen (the kept samples are a subset): no sort needed
        let m = o.maxAbs[c]!;
        if (mu !== 0) {
          const kept = o.values[c]!;
          for (let i = 0; i < kept.length; i++) m = Math.max(m, Math.abs(kept[i]! - mu));
        }
        theta[c] = m / divisor;
      } else {
        theta[c] = quantileOf(Float32Array.from(o.values[c]!, (v) => Math.abs(v - mu)).sort(), q) / divisor;
      }
    }
    // queries: θ shared by the heads of a KV group, so keys can be scaled once per token
    if (site.kind === 'q_in') shareAcrossGroups(theta, plan, site.channels);
    const sorted = Float32Array.from(theta).sort();
    const median = quantileOf(sorted, 0.5);
    const floor = Math.max(median * floorRatio, 1e-6);
    for (let c = 0; c < theta.length; c++) if (!(theta[c]! >= floor)) theta[c] = floor;
    sites.set(site.name, {
      theta, ...(centred ? { center: Float32Array.from(o.mean) } : {}),
      medianTheta: quantileOf(Float32Array.from(theta).sort(), 0.5), maxAbs: o.maxAbs.reduce((a, b) => Math.max(a, b), 0), tokens: o.count,
    });
  }
  return { quantile: q, coding, schedule: plan.schedule, center: opts.center ?? false, sites };
}

/** θ[h·d + i] ← the max over the heads h of h's KV group (GQA): one θ per (KV head, dimension). */
function shareAcrossGroups(theta: Float32Array, plan: ConversionPlan, width: number): void {
  const { numHeads: H, numKvHeads: groups, headDim: d } = plan.heads;
  if (H * d !== width) throw new ArgumentError(`calibrate: ${width} query channels for ${H} heads of ${d}`);
  const per = H / groups;
  for (let g = 0; g < groups; g++) {
    for (let i = 0; i < d; i++) {
      let m = 0;
      for (let h = g * per; h < (g + 1) * per; h++) m = Math.max(m, theta[h * d + i]!);
      for (let h = g * per; h < (g + 1) * per; h++) theta[h * d + i] = m;
    }
  }
}

/** Unit thresholds for every site: what a converter without calibration data uses. */
export function unitCalibration(plan: ConversionPlan, coding: CodingName = 'rate'): Calibration {
  const sites = new Map<string, SiteCalibration>();
  for (const s of plan.sites) sites.set(s.name, { theta: new Float32Array(s.channels).fill(1), medianTheta: 1, maxAbs: NaN, tokens: 0 });
  return { quantile: NaN, coding, schedule: plan.schedule, center: false, sites };
}

// ---- replace ------------------------------------------------------------------------------------

export interface ReplaceOptions {
  readonly timesteps: number;
  readonly mode?: SnnMode;
  /** Default: the calibration's code (and always its schedule). */
  readonly coding?: CodingName;
  /** Layerwise: steps per site kind relative to T (src/snn/model.ts SpikingConfig.siteSteps). */
  readonly siteSteps?: SpikingConfig['siteSteps'];
  readonly neuron?: Partial<NeuronConfig>;
  readonly surrogate?: { readonly name: SurrogateName; readonly alpha: number };
  readonly operators?: OperatorForms;
  readonly backend?: Backend;
}

export function replace(model: CausalLMLike, calibration: Calibration, opts: ReplaceOptions): SpikingLM {
  const thresholds = new Map<string, Float32Array>();
  const centers = new Map<string, Float32Array>();
  for (const [name, s] of calibration.sites) {
    thresholds.set(name, s.theta);
    if (s.center) centers.set(name, s.center);
  }
  return new SpikingLM(model.config, model.weights, opts.backend ?? new CpuBackend(), {
    timesteps: opts.timesteps,
    mode: opts.mode ?? 'spiking',
    schedule: calibration.schedule,
    coding: opts.coding ?? calibration.coding,
    ...(opts.siteSteps ? { siteSteps: opts.siteSteps } : {}),
    neuron: { ...DEFAULT_NEURON, ...opts.neuron },
    thresholds,
    ...(centers.size ? { centers } : {}),
    surrogate: opts.surrogate ?? { name: 'atan', alpha: 2 },
    operators: opts.operators ?? COMPENSATED,
  });
}

// ---- finalize -----------------------------------------------------------------------------------

export interface ConversionRecord {
  readonly plan: ConversionPlan;
  readonly calibration: Calibration;
  /** How the calibration data was made (source file, samples, tokens) or 'none'. */
  readonly calibrationSource: string;
  readonly simplified: boolean;
  /** The directory the ANN was loaded from, if any. */
  readonly sourceDir?: string;
}

export interface ConvertedModel {
  readonly snn: SpikingLM;
  readonly record: ConversionRecord;
}

/** Check the spiking model against its plan and bundle it with its record. */
export function finalize(snn: SpikingLM, record: ConversionRecord): ConvertedModel {
  if (snn.sites.length !== record.plan.sites.length || snn.sites.some((s, i) => s.name !== record.plan.sites[i]!.name)) {
    throw new ArgumentError('finalize: the spiking model does not match the traced plan');
  }
  if (snn.spiking.mode === 'spiking') {
    for (const s of record.plan.sites) if (!snn.spiking.thresholds.has(s.name)) throw new ArgumentError(`finalize: site "${s.name}" has no threshold`);
  }
  return { snn, record };
}

/**
 * Measure the density of nonzero spikes per site on a sample (one forward) and give the model
 * those density hints: a GPU chooses event-driven products by them (it cannot count spikes without
 * reading them back), and they are saved with the model.
 */
export async function measureDensity(snn: SpikingLM, sample: readonly number[]): Promise<ReadonlyMap<string, number>> {
  const out = snn.forward(sample, snn.newCache());
  const tally = new SpikeTally(snn.sites);
  await tally.addForward(snn, out);
  for (const t of [out.logits, out.stats, ...(out.spikes ? [out.spikes] : [])]) snn.backend.dispose(t);
  const hints = new Map(tally.summary().perSite.map((s) => [s.site, s.density]));
  snn.setDensityHints(hints);
  return hints;
}
