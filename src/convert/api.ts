/**
 * The seed's conversion API, in camelCase (README has the name table). Each does what its doc says
 * and no more:
 *
 *   replaceGeluWithRelu(model)                  a new ANN with GELU/SiLU swapped for ReLU (config updated)
 *   simplifiedConversion(model, {timesteps})    trace → replace with unit thresholds: no calibration data
 *   replaceLayernormWithSpikeLayernorm(snn)     norms (LayerNorm / RMSNorm) → compensated spiking norms
 *   replaceAttentionWithSpikeAttention(snn)     attention → compensated spiking attention (per-step KV)
 *   applySurrogateGradients(snn, {alpha, fn})   attaches the surrogate fine-tuning's backward pass uses (saved with the model)
 *   calibrateTimesteps(snn, originalT, targetT) the same thresholds at a new T, and the predicted error change
 *   createCalibrationData(tokenizer, opts)      (calibration-data.ts)
 *   convertModelToSpiking(model, data, opts)    trace → observe → calibrate → replace → finalize, with the
 *                                               default configuration (DEFAULT_CONVERSION) unless told
 *   saveSnnModel / loadSnnModel                 (snn-io.ts)
 */
import { ArgumentError } from '../errors.js';
import { ACTIVATION_NAMES, type ModelConfig } from '../nn/config.js';
import { CausalLM } from '../nn/model.js';
import { type CodingName, type ScheduleName, checkCombination, errorBound, isWeighted } from '../snn/codes.js';
import { type CausalLMLike, COMPENSATED, type OperatorForms, type SpikingConfig, SpikingLM } from '../snn/model.js';
import { SURROGATE_NAMES, type SurrogateName, surrogate } from '../snn/surrogate.js';
import type { Backend } from '../tensor/backend.js';
import type { NeuronConfig } from '../tensor/kernels/neuron.js';
import type { CalibrationData } from './calibration-data.js';
import {
  type CalibrateOptions, type ConvertedModel, type ObserveOptions, calibrate, finalize, measureDensity, observe, replace, trace, unitCalibration,
} from './stages.js';

export { createCalibrationData } from './calibration-data.js';
export { loadSnnModel, saveSnnModel } from './snn-io.js';

/**
 * Swap the MLP activation (gelu_new, gelu, quick_gelu, silu) for ReLU. This is a different ANN: its
 * outputs differ from the original's (measure it with fidelity against the original), and a spiking
 * network converted from it converges to it, not to the original. For GPT-2 the ReLU then runs as a
 * plain unsigned IF neuron; for gated MLPs it becomes ReLU(gate)·up.
 */
export function replaceGeluWithRelu(model: CausalLM): CausalLM {
  const from = model.config.activationName;
  if (!(from in ACTIVATION_NAMES)) throw new ArgumentError(`replaceGeluWithRelu: unknown activation "${from}"`);
  const key = model.config.activationKey;
  const config: ModelConfig = { ...model.config, activation: 'relu', activationName: 'relu', raw: { ...model.config.raw, [key]: 'relu' } };
  return new CausalLM(config, model.weights, model.backend, model.dir);
}

export interface SimplifiedOptions {
  readonly timesteps: number;
  readonly backend?: Backend;
  readonly neuron?: Partial<NeuronConfig>;
  /** Default: naive operators, as a converter that only swaps modules builds them. */
  readonly operators?: OperatorForms;
}

const NAIVE: OperatorForms = { norm: 'naive', attention: 'naive', activation: 'naive' };

/**
 * What a converter without calibration data and without operator compensation builds: encoders
 * with unit thresholds (θ = 1) and every nonlinear operator applied to each step's currents. It
 * skips observe and calibrate, and compensation; `replace…` below upgrade it piece by piece, and
 * the README measures each step against the default conversion.
 */
export function simplifiedConversion(model: CausalLMLike & { backend?: Backend }, opts: SimplifiedOptions): ConvertedModel {
  const plan = trace(model);
  const calibration = unitCalibration(plan);
  const snn = replace(model, calibration, { timesteps: opts.timesteps, backend: opts.backend ?? model.backend, neuron: opts.neuron, operators: opts.operators ?? NAIVE });
  return finalize(snn, { plan, calibration, calibrationSource: 'none (simplified: unit thresholds)', simplified: true, ...(model instanceof CausalLM && model.dir ? { sourceDir: model.dir } : {}) });
}

/** The same spiking model with some spiking parameters changed (weights are shared, not copied). */
function rebuild(snn: SpikingLM, change: Partial<SpikingLM['spiking']>): SpikingLM {
  return new SpikingLM(snn.config, snn.weights, snn.backend, { ...snn.spiking, operators: snn.forms, ...change });
}

/** LayerNorm / RMSNorm run in compensated form: decoded output = norm(decoded input) at every step. */
export function replaceLayernormWithSpikeLayernorm(snn: SpikingLM): SpikingLM {
  return rebuild(snn, { operators: { ...snn.forms, norm: 'compensated' } });
}

/**
 * Attention runs as spiking attention: q, k, v decoded per step, k/v kept per step in the KV cache,
 * the compensated product q·kᵀ, compensated masked softmax and compensated product with v.
 */
export function replaceAttentionWithSpikeAttention(snn: SpikingLM): SpikingLM {
  return rebuild(snn, { operators: { ...snn.forms, attention: 'compensated' } });
}

/** The activation (GELU/SiLU/SwiGLU) in compensated form. */
export function replaceActivationWithSpikeActivation(snn: SpikingLM): SpikingLM {
  return rebuild(snn, { operators: { ...snn.forms, activation: 'compensated' } });
}

/**
 * Attach the surrogate gradient (and sharpness α) that training uses in place of the spike's
 * derivative: `fineTune` (src/train/finetune.ts) backpropagates through every neuron's steps with
 * it. It is saved with the model. The forward pass does not change.
 */
export function applySurrogateGradients(snn: SpikingLM, opts: { alpha?: number; fn?: SurrogateName } = {}): SpikingLM {
  const fn = opts.fn ?? 'atan';
  if (!SURROGATE_NAMES.includes(fn)) throw new ArgumentError(`applySurrogateGradients: unknown function "${fn}" (known: ${SURROGATE_NAMES.join(', ')})`);
  const s = surrogate(fn, opts.alpha);
  return rebuild(snn, { surrogate: { name: s.name, alpha: s.alpha } });
}

export interface TimestepCalibrationReport {
  readonly originalT: number;
  readonly targetT: number;
  /** Predicted ratio of the quantization error at targetT to that at originalT (in range). */
  readonly expectedErrorRatio: number;
  /** Per site: the in-range rounding bound (the code's, for the median θ) before and after. */
  readonly sites: { readonly name: string; readonly boundBefore: number; readonly boundAfter: number }[];
  readonly note: string;
}

/**
 * The same thresholds run at a new T, with the error change the code predicts. Thresholds are not
 * re-derived: with rate codes the rounding grid θ/T refines by itself and a B-spike neuron's range
 * B·θ per step does not depend on T; a weighted code's range (2θ or 4/3·θ) does not either, its
 * planes get finer. So only T changes; the report gives the predicted change of the in-range error
 * (× originalT/targetT for rate codes, × 2^(originalT − targetT) for weighted codes). Clipping error,
 * if any, does not change with T.
 */
export function calibrateTimesteps(snn: SpikingLM, originalT: number, targetT: number): { model: SpikingLM; report: TimestepCalibrationReport } {
  for (const [name, v] of [['originalT', originalT], ['targetT', targetT]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new ArgumentError(`calibrateTimesteps: ${name} must be a positive integer, got ${v}`);
  }
  if (originalT !== snn.timesteps) throw new ArgumentError(`calibrateTimesteps: the model runs ${snn.timesteps} steps, not originalT = ${originalT}`);
  const coding = snn.coding;
  const halfStart = snn.schedule !== 'stepwise' || snn.spiking.neuron.initial === 'half';
  const sites = snn.sites.map((s) => {
    const th = snn.spiking.thresholds.get(s.name);
    const median = th ? Float32Array.from(th).sort()[th.length >> 1]! : 0;
    const bound = (T: number) => median * errorBound(coding, T) * (halfStart ? 1 : 2);
    return { name: s.name, boundBefore: bound(originalT), boundAfter: bound(targetT) };
  });
  const weighted = isWeighted(coding);
  const bounded = !weighted && Number.isFinite(snn.spiking.neuron.maxSpikes);
  return {
    model: snn.withTimesteps(targetT),
    report: {
      originalT, targetT, expectedErrorRatio: weighted ? 2 ** (originalT - targetT) : originalT / targetT, sites,
      note: weighted
        ? `weighted spikes: thresholds kept, each plane more halves the in-range error (× 2^${originalT - targetT})`
        : bounded
        ? `neurons emit at most ${snn.spiking.neuron.maxSpikes} spike(s) per step: inputs beyond that range clip at any T; only the rounding error scales by ${originalT}/${targetT}`
        : `unbounded bursts: thresholds kept, the rounding grid θ/T scales by ${originalT}/${targetT}`,
    },
  };
}

/**
 * The default configuration: the cheapest one measured to meet the fidelity target (top-1 ≥ 99%
 * and KL ≤ 1e-3 against the ANN on the evaluation text) — README shows the frontier it was picked
 * from (layerwise schedule, ternary weighted spikes: at most one spike per neuron per step).
 */
export const DEFAULT_CONVERSION: {
  readonly schedule: ScheduleName;
  readonly coding: CodingName;
  readonly timesteps: number;
  readonly siteSteps: NonNullable<SpikingConfig['siteSteps']>;
} = { schedule: 'layerwise', coding: 'phase-ternary', timesteps: 9, siteSteps: { mlp_in: -1, o_in: -1, head_in: -1 } };

export interface ConvertOptions extends CalibrateOptions, ObserveOptions {
  /** Default DEFAULT_CONVERSION.timesteps. */
  readonly timesteps?: number;
  /** Default DEFAULT_CONVERSION.schedule. */
  readonly schedule?: ScheduleName;
  /** Layerwise: steps per site kind relative to T (default DEFAULT_CONVERSION.siteSteps for the default code). */
  readonly siteSteps?: SpikingConfig['siteSteps'];
  readonly neuron?: Partial<NeuronConfig>;
  readonly surrogate?: { name: SurrogateName; alpha: number };
  readonly backend?: Backend;
}

/**
 * The calibrated conversion: trace → observe (on the CPU) → calibrate (per-channel thresholds for
 * the code from real activations) → replace (the schedule's operators and neurons) → finalize, and
 * the density of nonzero spikes measured on a calibration sample. Defaults: DEFAULT_CONVERSION.
 */
export async function convertModelToSpiking(model: CausalLMLike & { backend?: Backend; dir?: string }, data: CalibrationData, opts: ConvertOptions = {}): Promise<ConvertedModel> {
  const schedule = opts.schedule ?? DEFAULT_CONVERSION.schedule;
  const coding = opts.coding ?? DEFAULT_CONVERSION.coding;
  checkCombination(coding, schedule);
  const timesteps = opts.timesteps ?? DEFAULT_CONVERSION.timesteps;
  // the default code gets the default per-site steps; other codes run every site at T unless told
  const siteSteps = opts.siteSteps ?? (schedule === DEFAULT_CONVERSION.schedule && coding === DEFAULT_CONVERSION.coding ? DEFAULT_CONVERSION.siteSteps : undefined);
  const plan = trace(model, schedule);
  const obs = observe(plan, model, data, opts);
  const calibration = calibrate(plan, obs, { ...opts, coding });
  const snn = replace(model, calibration, {
    timesteps, neuron: opts.neuron, surrogate: opts.surrogate, operators: COMPENSATED, backend: opts.backend ?? model.backend,
    ...(siteSteps ? { siteSteps } : {}),
  });
  const converted = finalize(snn, {
    plan, calibration, simplified: false,
    calibrationSource: `${data.source} (${data.samples.length} samples, ${data.tokens} tokens)`,
    ...(model.dir ? { sourceDir: model.dir } : {}),
  });
  await measureDensity(snn, data.samples[0]!);
  return converted;
}
