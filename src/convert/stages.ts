/**
 * ANN → SNN conversion as named stages (SpikingJelly's shape), each usable and tested alone:
 *
 *   trace      the network's structure: its encoder sites (where values become spikes, one before
 *              every linear layer) and its compensated operators
 *   observe    run the ANN on calibration data and record, per site and channel, the activations
 *              that will reach each neuron (|x| samples, max, mean)
 *   calibrate  per-channel thresholds θ from a high quantile of |x| (optionally around a centre μ)
 *   replace    build the spiking model: neurons at the sites, synapses W·diag(θ), compensated operators
 *   finalize   the spiking model with everything needed to save, reload and report it
 */
import { ArgumentError } from '../errors.js';
import { type CausalLMLike, COMPENSATED, type OperatorForms, type SnnMode, SpikingLM } from '../snn/model.js';
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
  readonly sites: readonly EncoderSite[];
  /** Compensated operators, in execution order, named like the model's state keys. */
  readonly operators: readonly { readonly name: string; readonly kind: 'norm' | 'attention' | 'activation' }[];
}

export function trace(model: CausalLMLike): ConversionPlan {
  const cfg = model.config;
  const operators: { name: string; kind: 'norm' | 'attention' | 'activation' }[] = [];
  for (let l = 0; l < cfg.numLayers; l++) {
    operators.push({ name: `layers.${l}.attn_norm`, kind: 'norm' });
    operators.push({ name: `layers.${l}.attention`, kind: 'attention' });
    operators.push({ name: `layers.${l}.mlp_norm`, kind: 'norm' });
    if (!(cfg.activation === 'relu' && cfg.family === 'gpt2')) operators.push({ name: `layers.${l}.act`, kind: 'activation' });
  }
  operators.push({ name: 'final_norm', kind: 'norm' });
  return { family: cfg.family, sites: encoderSites(cfg), operators };
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

/** Run the ANN (the spiking model's exact mode, on the CPU) over the calibration samples. */
export function observe(plan: ConversionPlan, model: CausalLMLike, data: CalibrationData, opts: ObserveOptions = {}): Observations {
  const maxTokens = opts.maxTokens ?? 8192;
  const cpu = new CpuBackend();
  const probe = new SpikingLM(model.config, model.weights, cpu, { timesteps: 1, mode: 'exact', neuron: DEFAULT_NEURON, thresholds: new Map(), surrogate: { name: 'atan', alpha: 2 } });
  const acc = new Map<string, { values: number[][]; sum: Float64Array; max: Float32Array; count: number }>();
  for (const s of plan.sites) acc.set(s.name, { values: Array.from({ length: s.channels }, () => []), sum: new Float64Array(s.channels), max: new Float32Array(s.channels), count: 0 });
  data.samples.forEach((ids, i) => {
    probe.forward(ids, probe.newCache(), {
      observe: (site, x) => {
        const a = acc.get(site);
        if (!a) throw new ArgumentError(`observe: the model reported an untraced site "${site}"`);
        const t = x as Tensor;
        const C = t.cols;
        for (let r = 0; r < t.rows; r++) {
          for (let c = 0; c < C; c++) {
            const v = t.data[r * C + c]!;
            a.values[c]!.push(v);
            a.sum[c] += v;
            if (Math.abs(v) > a.max[c]!) a.max[c] = Math.abs(v);
          }
        }
        a.count += t.rows;
      },
    });
    opts.onProgress?.(i + 1, data.samples.length);
  });
  const out = new Map<string, SiteObservation>();
  for (const [name, a] of acc) {
    const stride = Math.max(1, Math.ceil(a.count / maxTokens));
    out.set(name, {
      channels: a.values.length,
      count: a.count,
      maxAbs: a.max,
      mean: Float32Array.from(a.sum, (s) => s / Math.max(a.count, 1)),
      values: a.values.map((v) => Float32Array.from(v.filter((_, i) => i % stride === 0))),
    });
  }
  return out;
}

// ---- calibrate ----------------------------------------------------------------------------------

export interface CalibrateOptions {
  /** Quantile of |x − μ| per channel that becomes θ. Default 0.9 (see README: resolution vs spikes). */
  readonly quantile?: number;
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
  readonly center: boolean;
  readonly sites: ReadonlyMap<string, SiteCalibration>;
}

export const DEFAULT_QUANTILE = 0.9;

export function quantileOf(sorted: Float32Array | number[], q: number): number {
  if (sorted.length === 0) return 0;
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos), hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export function calibrate(plan: ConversionPlan, obs: Observations, opts: CalibrateOptions = {}): Calibration {
  const q = opts.quantile ?? DEFAULT_QUANTILE;
  if (!(q > 0 && q <= 1)) throw new ArgumentError(`calibrate: quantile must be in (0, 1], got ${q}`);
  const floorRatio = opts.floorRatio ?? 0.01;
  const sites = new Map<string, SiteCalibration>();
  for (const site of plan.sites) {
    const o = obs.get(site.name);
    if (!o) throw new ArgumentError(`calibrate: no observations for site "${site.name}"`);
    // A ReLU neuron computes max(0, x) itself: it cannot be centred.
    const centred = (opts.center ?? false) && !(site.name.endsWith('.down_in') && plan.operators.every((op) => !op.name.endsWith('.act')));
    const theta = new Float32Array(site.channels);
    for (let c = 0; c < site.channels; c++) {
      const mu = centred ? o.mean[c]! : 0;
      const dev = Float32Array.from(o.values[c]!, (v) => Math.abs(v - mu)).sort();
      theta[c] = quantileOf(dev, q);
    }
    const sorted = Float32Array.from(theta).sort();
    const median = quantileOf(sorted, 0.5);
    const floor = Math.max(median * floorRatio, 1e-6);
    for (let c = 0; c < theta.length; c++) if (!(theta[c]! >= floor)) theta[c] = floor;
    sites.set(site.name, {
      theta, ...(centred ? { center: Float32Array.from(o.mean) } : {}),
      medianTheta: quantileOf(Float32Array.from(theta).sort(), 0.5), maxAbs: Math.max(...o.maxAbs), tokens: o.count,
    });
  }
  return { quantile: q, center: opts.center ?? false, sites };
}

/** Unit thresholds for every site: what a converter without calibration data uses. */
export function unitCalibration(plan: ConversionPlan): Calibration {
  const sites = new Map<string, SiteCalibration>();
  for (const s of plan.sites) sites.set(s.name, { theta: new Float32Array(s.channels).fill(1), medianTheta: 1, maxAbs: NaN, tokens: 0 });
  return { quantile: NaN, center: false, sites };
}

// ---- replace ------------------------------------------------------------------------------------

export interface ReplaceOptions {
  readonly timesteps: number;
  readonly mode?: SnnMode;
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
    mode: opts.mode ?? 'rate',
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
  if (snn.spiking.mode === 'rate') {
    for (const s of record.plan.sites) if (!snn.spiking.thresholds.has(s.name)) throw new ArgumentError(`finalize: site "${s.name}" has no threshold`);
  }
  return { snn, record };
}

