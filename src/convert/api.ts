/**
 * The seed's conversion API, in camelCase (README has the name table). Every function is real:
 *
 *   replaceGeluWithRelu(model)                  a new ANN with GELU/SiLU swapped for ReLU (config updated)
 *   simplifiedConversion(model, {timesteps})    trace → replace with unit thresholds: no calibration data
 *   replaceLayernormWithSpikeLayernorm(snn)     norms (LayerNorm / RMSNorm) → compensated spiking norms
 *   replaceAttentionWithSpikeAttention(snn)     attention → compensated spiking attention (per-step KV)
 *   applySurrogateGradients(snn, {alpha, fn})   the surrogate used for the spike's backward pass
 *   calibrateTimesteps(snn, originalT, targetT) re-derive for a new T, with the expected error change
 *   createCalibrationData(tokenizer, opts)      (calibration-data.ts)
 *   convertModelToSpiking(model, data, opts)    trace → observe → calibrate → replace → finalize
 *   saveSnnModel / loadSnnModel                 (snn-io.ts)
 */
import { ArgumentError } from '../errors.js';
import { ACTIVATION_NAMES, type ModelConfig } from '../nn/config.js';
import { CausalLM } from '../nn/model.js';
import { type CausalLMLike, COMPENSATED, type OperatorForms, SpikingLM } from '../snn/model.js';
import { SURROGATE_NAMES, type SurrogateName, surrogate } from '../snn/surrogate.js';
import type { Backend } from '../tensor/backend.js';
import type { NeuronConfig } from '../tensor/kernels/neuron.js';
import type { CalibrationData } from './calibration-data.js';
import {
  type CalibrateOptions, type ConvertedModel, type ObserveOptions, calibrate, finalize, observe, replace, trace, unitCalibration,
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
  const key = model.config.family === 'gpt2' ? 'activation_function' : 'hidden_act';
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

/** Choose the surrogate gradient of the spike function (used by backward passes; saved with the model). */
export function applySurrogateGradients(snn: SpikingLM, opts: { alpha?: number; fn?: SurrogateName } = {}): SpikingLM {
  const fn = opts.fn ?? 'atan';
  if (!SURROGATE_NAMES.includes(fn)) throw new ArgumentError(`applySurrogateGradients: unknown function "${fn}" (known: ${SURROGATE_NAMES.join(', ')})`);
  const s = surrogate(fn, opts.alpha);
  return rebuild(snn, { surrogate: { name: s.name, alpha: s.alpha } });
}

export interface TimestepCalibrationReport {
  readonly originalT: number;
  readonly targetT: number;
  /** Predicted ratio of the quantization error at targetT to that at originalT. */
  readonly expectedErrorRatio: number;
  /** Per site: the rounding bound θ/(2T) (θ/T without the half start) before and after, median over channels. */
  readonly sites: { readonly name: string; readonly boundBefore: number; readonly boundAfter: number }[];
  readonly note: string;
}

/**
 * Re-derive the model for a new number of time steps. With unbounded bursts the thresholds already
 * fit any T (the rounding grid θ/T refines by itself), so they are kept and only T changes; with
 * B-spike neurons the representable range B·θ per step does not depend on T either, so thresholds
 * are kept too. The report gives the expected change of the quantization error: × originalT/targetT
 * (clipping error, if any, does not change with T).
 */
export function calibrateTimesteps(snn: SpikingLM, originalT: number, targetT: number): { model: SpikingLM; report: TimestepCalibrationReport } {
  for (const [name, v] of [['originalT', originalT], ['targetT', targetT]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new ArgumentError(`calibrateTimesteps: ${name} must be a positive integer, got ${v}`);
  }
  if (originalT !== snn.timesteps) throw new ArgumentError(`calibrateTimesteps: the model runs ${snn.timesteps} steps, not originalT = ${originalT}`);
  const half = snn.spiking.neuron.initial === 'half';
  const sites = snn.sites.map((s) => {
    const th = snn.spiking.thresholds.get(s.name);
    const median = th ? Float32Array.from(th).sort()[th.length >> 1]! : 0;
    const bound = (T: number) => (half ? median / 2 : median) / T;
    return { name: s.name, boundBefore: bound(originalT), boundAfter: bound(targetT) };
  });
  const bounded = Number.isFinite(snn.spiking.neuron.maxSpikes);
  return {
    model: rebuild(snn, { timesteps: targetT }),
    report: {
      originalT, targetT, expectedErrorRatio: originalT / targetT, sites,
      note: bounded
        ? `neurons emit at most ${snn.spiking.neuron.maxSpikes} spike(s) per step: inputs beyond that range clip at any T; only the rounding error scales by ${originalT}/${targetT}`
        : `unbounded bursts: thresholds kept, the rounding grid θ/T scales by ${originalT}/${targetT}`,
    },
  };
}

export interface ConvertOptions extends CalibrateOptions, ObserveOptions {
  readonly timesteps: number;
  readonly neuron?: Partial<NeuronConfig>;
  readonly surrogate?: { name: SurrogateName; alpha: number };
  readonly backend?: Backend;
}

/**
 * The default (calibrated) conversion: trace → observe (on the CPU) → calibrate (per-channel
 * thresholds from a high quantile of real activations) → replace (compensated operators, sigma-delta
 * neurons) → finalize.
 */
export function convertModelToSpiking(model: CausalLMLike & { backend?: Backend; dir?: string }, data: CalibrationData, opts: ConvertOptions): ConvertedModel {
  const plan = trace(model);
  const obs = observe(plan, model, data, opts);
  const calibration = calibrate(plan, obs, opts);
  const snn = replace(model, calibration, {
    timesteps: opts.timesteps, neuron: opts.neuron, surrogate: opts.surrogate, operators: COMPENSATED, backend: opts.backend ?? model.backend,
  });
  return finalize(snn, {
    plan, calibration, simplified: false,
    calibrationSource: `${data.source} (${data.samples.length} samples, ${data.tokens} tokens)`,
    ...(model.dir ? { sourceDir: model.dir } : {}),
  });
}
