/**
 * The benchmark sweep behind `spikelm bench`: for each backend, each conversion (schedule × code)
 * and each T, how fidelity, spikes, energy and speed trade off. A registry of measurements × a sweep:
 *
 *   fidelity   top-1, KL, mean/max |Δlogit|, perplexity ratio, distinct predictions (measureFidelity:
 *              one stepwise run decodes every T; layerwise runs each T)
 *   spikes     per neuron per token and per step, the largest burst, nonzero density, per layer
 *   energy     E_SNN/E_ANN at FP32/FP16/INT8, counted from what ran (src/snn/energy.ts)
 *   speed      ms per token of the ANN and of the SNN in each execution (stepwise: multi-step,
 *              single-step, event-driven products; layerwise: fast, event-driven)
 * Timings use tinybench and wait for the GPU queue (results are read back). The grid is a list of
 * units (one conversion on one backend, measured at every T): runUnit runs one;
 * src/bench/shards.ts runs a share of them, resumes, and merges them into one result.
 */
import { execSync } from 'node:child_process';
import os from 'node:os';
import { Bench } from 'tinybench';
import { convertModelToSpiking, createCalibrationData } from '../convert/api.js';
import { bundledText } from '../convert/calibration-data.js';
import { loadSnnModel, spikelmVersion } from '../convert/snn-io.js';
import { type CausalLM, loadModel } from '../nn/model.js';
import { loadTokenizer } from '../nn/tokenizer.js';
import { type CodingName, type ScheduleName, checkCombination } from '../snn/codes.js';
import { measureFidelity } from '../snn/fidelity.js';
import type { Execution } from '../snn/model.js';
import type { Backend } from '../tensor/backend.js';
import { CpuBackend } from '../tensor/cpu-backend.js';
import { acquireGpu } from '../tensor/gpu/device.js';
import { GpuBackend } from '../tensor/gpu/gpu-backend.js';

export interface SweepConfig {
  readonly schedule: ScheduleName;
  readonly coding: CodingName;
}

export interface SweepOptions {
  readonly modelDir: string;
  /** The fidelity target report.md checks the rows against (default top-1 ≥ 99%, KL ≤ 1e-3). */
  readonly target?: { readonly top1: number; readonly kl: number };
  readonly snnDir?: string;
  /** T values (default per schedule, see defaultTimesteps in cli/snn.ts). */
  readonly timesteps: readonly number[] | ((schedule: ScheduleName) => readonly number[]);
  readonly backends: readonly ('cpu' | 'gpu')[];
  /** Conversions to compare (ignored with snnDir). */
  readonly configs: readonly SweepConfig[];
  /** Positions of the evaluation text for fidelity (default 256). */
  readonly positions?: number;
  /** Tokens per timed forward (default 32). */
  readonly timeTokens?: number;
  /** Threshold quantile when converting now. */
  readonly quantile?: number;
  /** Time budget per timed task, ms (default 300). */
  readonly timeBudgetMs?: number;
  readonly text?: string;
}

export interface SweepRow {
  /** The unit (one conversion on one backend) the row belongs to: SweepUnit.id. */
  readonly unit: string;
  readonly backend: string;
  readonly schedule: string;
  readonly coding: string;
  readonly T: number;
  readonly top1_agreement: number;
  readonly kl: number;
  readonly mean_abs_logit_err: number;
  readonly max_abs_logit_err: number;
  readonly ppl_ann: number;
  readonly ppl_snn: number;
  readonly distinct_predictions_ann: number;
  readonly distinct_predictions_snn: number;
  /** Spikes per neuron per step. */
  readonly spike_rate: number;
  readonly spikes_per_neuron_per_token: number;
  readonly max_spikes_per_neuron_per_step: number;
  /** Fraction of (neuron, step) digits that are nonzero. */
  readonly spike_density: number;
  /** Spikes per neuron per token at each layer's encoders. */
  readonly spikes_per_layer: Record<string, number>;
  readonly energy_ratio_fp32: number;
  readonly energy_ratio_fp16: number;
  readonly energy_ratio_int8: number;
  readonly ms_per_token_ann: number;
  /** The default execution: multi-step (stepwise) or fast (layerwise). */
  readonly ms_per_token: number;
  /** Stepwise single-step execution (NaN for layerwise). */
  readonly ms_per_token_single: number;
  /** Event-driven products (stepwise) or the event execution (layerwise). */
  readonly ms_per_token_event: number;
  /** SNN time / ANN time (one forward each). */
  readonly cost: number;
  readonly cost_event: number;
}

export interface SweepMetadata {
  readonly commit: string;
  readonly spikelm_version: string;
  readonly node: string;
  readonly cpu: string;
  readonly cores: number;
  readonly adapter: string;
  readonly date: string;
  readonly model: string;
  readonly snn: string;
  readonly positions: number;
  readonly time_tokens: number;
  /** The fidelity target the report checks (`--target`; default top-1 ≥ 99%, KL ≤ 1e-3). */
  readonly target?: { readonly top1: number; readonly kl: number | null };
}

export interface SweepResult {
  readonly metadata: SweepMetadata;
  readonly rows: SweepRow[];
}

export function gitCommit(): string {
  try {
    return execSync('git rev-parse --short HEAD', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

async function adapterDescription(backends: readonly string[]): Promise<string> {
  if (!backends.includes('gpu')) return 'none (CPU only)';
  try {
    const { report } = await acquireGpu();
    return `${report.description} (${report.path}${report.software ? ', software' : ''})`;
  } catch (err) {
    return `unavailable: ${(err as Error).message}`;
  }
}

async function timeMs(fn: () => Promise<void>, budget: number): Promise<number> {
  const bench = new Bench({ time: budget, iterations: 2, warmupIterations: 1, warmupTime: 0 });
  bench.add('task', fn);
  await bench.run();
  const r = bench.tasks[0]!.result;
  if (r.state === 'errored') throw r.error;
  if (r.state !== 'completed' && r.state !== 'aborted-with-statistics') throw new Error(`benchmark task ${r.state}`);
  return r.latency.mean;
}

/**
 * One unit of work: one conversion (a backend, a schedule and a code; or the given --snn model on a
 * backend) and every T it is measured at. Units are what shards split and what a rerun skips.
 */
export interface SweepUnit {
  /** `cpu.layerwise.phase-ternary`, `gpu.stepwise.rate`, `cpu.snn` (with --snn). */
  readonly id: string;
  readonly backend: 'cpu' | 'gpu';
  /** Absent with --snn (the model decides its schedule and code). */
  readonly config?: SweepConfig;
  readonly timesteps: readonly number[];
  /** Predicted cost in arbitrary units (predictedCost), to balance shards. */
  readonly cost: number;
}

/**
 * A unit's predicted cost: a conversion (1) plus, per T, its fidelity run and timings, proportional
 * to T (layerwise: T planes per layer) and about 4× more per T in the stepwise schedule (multi-step,
 * single-step and event timings of T steps, every dense operator at every step); the GPU unit twice
 * the CPU one (software adapters in CI). Only ratios matter.
 */
export function predictedCost(schedule: ScheduleName | undefined, timesteps: readonly number[], backend: 'cpu' | 'gpu'): number {
  const perT = schedule === 'stepwise' ? 4 : 1;
  return (1 + timesteps.reduce((a, T) => a + perT * T, 0)) * (backend === 'gpu' ? 2 : 1);
}

const stepsFor = (opts: Pick<SweepOptions, 'timesteps'>, schedule: ScheduleName) =>
  [...new Set(typeof opts.timesteps === 'function' ? opts.timesteps(schedule) : opts.timesteps)].sort((a, b) => a - b);

/** The grid's units, in report order (backend, then conversion). */
export function sweepUnits(opts: Pick<SweepOptions, 'backends' | 'configs' | 'snnDir' | 'timesteps'>, snnSchedule?: ScheduleName): SweepUnit[] {
  for (const c of opts.configs) checkCombination(c.coding, c.schedule);
  return opts.backends.flatMap((backend) => opts.snnDir
    ? [{ id: `${backend}.snn`, backend, timesteps: stepsFor(opts, snnSchedule ?? 'layerwise'), cost: predictedCost(snnSchedule, stepsFor(opts, snnSchedule ?? 'layerwise'), backend) }]
    : opts.configs.map((config) => {
      const timesteps = stepsFor(opts, config.schedule);
      return { id: `${backend}.${config.schedule}.${config.coding}`, backend, config, timesteps, cost: predictedCost(config.schedule, timesteps, backend) };
    }));
}

/** What every unit of a sweep shares: the evaluation ids, the timed ids, the calibration data. */
export function sweepInputs(opts: Pick<SweepOptions, 'modelDir' | 'positions' | 'timeTokens' | 'text'>) {
  const tok = loadTokenizer(opts.modelDir);
  const ids = tok.encode((opts.text ?? bundledText('eval-stories.txt').text).replace(/\s*\n\s*/g, ' ').trim()).slice(0, opts.positions ?? 256);
  return { ids, timed: ids.slice(0, opts.timeTokens ?? 32), data: createCalibrationData(tok) };
}

/**
 * The ANN of a model on a backend, loaded once per process: the units of a sweep share it (a model
 * holds its device weights until the process ends; loading one per unit would hold one per unit).
 */
const anns = new Map<string, Promise<{ backend: Backend; ann: CausalLM }>>();
function annOn(modelDir: string, name: 'cpu' | 'gpu'): Promise<{ backend: Backend; ann: CausalLM }> {
  const key = `${name}\0${modelDir}`;
  let p = anns.get(key);
  if (!p) {
    p = (async () => {
      const backend: Backend = name === 'gpu' ? await GpuBackend.create() : new CpuBackend();
      return { backend, ann: loadModel(modelDir, { backend }) };
    })();
    anns.set(key, p);
  }
  return p;
}

/** Run one unit: convert (or load --snn) on its backend, measure every T; its rows, in T order. */
export async function runUnit(opts: SweepOptions, unit: SweepUnit, inputs: ReturnType<typeof sweepInputs>): Promise<SweepRow[]> {
  const budget = opts.timeBudgetMs ?? 300;
  const { ids, timed, data } = inputs;
  const { backend, ann } = await annOn(opts.modelDir, unit.backend);
  const sync = async (t: unknown) => {
    await backend.read(t as never);
    backend.dispose(t as never);
  };
  const annMs = (await timeMs(() => sync(ann.forward(timed)), budget)) / timed.length;
  const c = unit.config;
  const base = opts.snnDir
    ? loadSnnModel(opts.snnDir, { backend }).snn
    : (await convertModelToSpiking(ann, data, { timesteps: Math.max(...unit.timesteps), schedule: c!.schedule, coding: c!.coding, backend, ...(opts.quantile !== undefined ? { quantile: opts.quantile } : {}) })).snn;
  const steps = opts.snnDir ? stepsFor(opts, base.schedule) : unit.timesteps;
  const snn = base.schedule === 'stepwise' && Math.max(...steps) !== base.timesteps ? base.withTimesteps(Math.max(...steps)) : base;
  const fidelity = await measureFidelity(ann, snn, ids, steps);
  const rows: SweepRow[] = [];
  for (const T of steps) {
    const f = fidelity.results.find((r) => r.T === T)!;
    const energy = fidelity.energy.get(T)!;
    const model = T === snn.timesteps ? snn : snn.withTimesteps(T);
    const time = async (execution: Execution, kernel?: 'dense' | 'event') => {
      const m = kernel ? model.with({ spikeKernel: kernel }) : model;
      try {
        return (await timeMs(async () => {
          const o = m.forward(timed, m.newCache(), { execution });
          await sync(o.logits);
          for (const t of [o.stats, ...(o.spikes ? [o.spikes] : [])]) backend.dispose(t);
        }, budget)) / timed.length;
      } finally {
        if (m !== model) m.dispose();
      }
    };
    const stepwise = model.schedule === 'stepwise';
    const main = stepwise ? await time('multi', 'dense') : await time('fast');
    const single = stepwise ? await time('single', 'dense') : NaN;
    const event = stepwise ? await time('multi', 'event') : await time('event');
    const perLayer: Record<string, number> = {};
    for (const l of energy.layers) perLayer[l.layer] = l.spikesPerNeuronPerToken;
    rows.push({
      unit: unit.id, backend: unit.backend, schedule: model.schedule, coding: model.coding, T,
      top1_agreement: f.top1_agreement, kl: f.kl, mean_abs_logit_err: f.mean_abs_logit_err, max_abs_logit_err: f.max_abs_logit_err,
      ppl_ann: f.ppl_ann, ppl_snn: f.ppl_snn, distinct_predictions_ann: f.distinct_predictions_ann, distinct_predictions_snn: f.distinct_predictions_snn,
      spike_rate: f.spike_rate, spikes_per_neuron_per_token: f.spikes_per_neuron_per_token, max_spikes_per_neuron_per_step: f.max_spikes_per_neuron_per_step,
      spike_density: energy.density, spikes_per_layer: perLayer,
      energy_ratio_fp32: f.energy_ratio.fp32, energy_ratio_fp16: f.energy_ratio.fp16, energy_ratio_int8: f.energy_ratio.int8,
      ms_per_token_ann: annMs, ms_per_token: main, ms_per_token_single: single, ms_per_token_event: event,
      cost: main / annMs, cost_event: event / annMs,
    });
    if (model !== snn) model.dispose();
  }
  if (snn !== base) snn.dispose();
  base.dispose();
  return rows;
}

/** The run's metadata (the machine, the commit, the inputs). */
export async function sweepMetadata(opts: SweepOptions, inputs: ReturnType<typeof sweepInputs>, backends: readonly string[] = opts.backends): Promise<SweepMetadata> {
  return {
    commit: gitCommit(), spikelm_version: spikelmVersion(), node: process.version, cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism?.() ?? os.cpus().length, adapter: await adapterDescription(backends), date: new Date().toISOString(),
    model: opts.modelDir, snn: opts.snnDir ?? `converted now (${opts.configs.map((c) => `${c.schedule} ${c.coding}`).join(', ')}; quantile ${opts.quantile ?? 'default'})`,
    positions: inputs.ids.length, time_tokens: inputs.timed.length,
    ...(opts.target ? { target: { top1: opts.target.top1, kl: Number.isFinite(opts.target.kl) ? opts.target.kl : null } } : {}),
  };
}
