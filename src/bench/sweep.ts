/**
 * The benchmark sweep behind `spikelm bench`: for each backend and each T, how fidelity, spikes,
 * energy and speed trade off. A registry of measurements × a sweep over (backend, T):
 *
 *   fidelity   top-1, KL, mean/max |Δlogit|, perplexity ratio, distinct predictions, spike rate —
 *              one spiking run at the largest T over the evaluation text gives every T
 *   spikes     spikes per neuron per step per layer, and the density of nonzero spike counts
 *   energy     E_SNN/E_ANN (FP32/FP16/INT8) and T × spike rate against the break-even
 *   speed      ms per token of the ANN and of the SNN: multi-step, single-step, and multi-step with
 *              event-driven spike products; cost = SNN time / (T × ANN time)
 * Timings use tinybench and wait for the GPU queue (results are read back).
 */
import { execSync } from 'node:child_process';
import os from 'node:os';
import { Bench } from 'tinybench';
import { convertModelToSpiking, createCalibrationData } from '../convert/api.js';
import { bundledText } from '../convert/calibration-data.js';
import { loadSnnModel, spikelmVersion } from '../convert/snn-io.js';
import { loadModel } from '../nn/model.js';
import { loadTokenizer } from '../nn/tokenizer.js';
import { energyReport } from '../snn/energy.js';
import { measureFidelity } from '../snn/fidelity.js';
import { SpikingLM, spikeRateFrom } from '../snn/model.js';
import type { Backend } from '../tensor/backend.js';
import { CpuBackend } from '../tensor/cpu-backend.js';
import { acquireGpu } from '../tensor/gpu/device.js';
import { GpuBackend } from '../tensor/gpu/gpu-backend.js';

export interface SweepOptions {
  readonly modelDir: string;
  readonly snnDir?: string;
  readonly timesteps: readonly number[];
  readonly backends: readonly ('cpu' | 'gpu')[];
  /** Positions of the evaluation text for fidelity (default 256). */
  readonly positions?: number;
  /** Tokens per timed forward (default 32). */
  readonly timeTokens?: number;
  /** Threshold quantile when converting now. */
  readonly quantile?: number;
  /** Time budget per timed task, ms (default 300). */
  readonly timeBudgetMs?: number;
  readonly text?: string;
  readonly onProgress?: (done: number, total: number) => void;
}

export interface SweepRow {
  readonly backend: string;
  readonly T: number;
  readonly top1_agreement: number;
  readonly kl: number;
  readonly mean_abs_logit_err: number;
  readonly max_abs_logit_err: number;
  readonly ppl_ann: number;
  readonly ppl_snn: number;
  readonly distinct_predictions_ann: number;
  readonly distinct_predictions_snn: number;
  readonly spike_rate: number;
  /** Fraction of (neuron, step) pairs with a nonzero spike count. */
  readonly spike_density: number;
  readonly spikes_per_layer: Record<string, number>;
  readonly energy_ratio_fp32: number;
  readonly energy_ratio_fp16: number;
  readonly energy_ratio_int8: number;
  readonly t_times_rate: number;
  readonly break_even_fp32: number;
  readonly ms_per_token_ann: number;
  readonly ms_per_token_multi: number;
  readonly ms_per_token_single: number;
  readonly ms_per_token_event: number;
  readonly cost_multi: number;
  readonly cost_single: number;
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
}

export interface SweepResult {
  readonly metadata: SweepMetadata;
  readonly rows: SweepRow[];
}

function gitCommit(): string {
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

export async function runSweep(opts: SweepOptions): Promise<SweepResult> {
  const Ts = [...new Set(opts.timesteps)].sort((a, b) => a - b);
  const maxT = Ts.at(-1)!;
  const positions = opts.positions ?? 256;
  const timeTokens = opts.timeTokens ?? 32;
  const budget = opts.timeBudgetMs ?? 300;
  const tok = loadTokenizer(opts.modelDir);
  const ids = tok.encode((opts.text ?? bundledText('eval-stories.txt').text).replace(/\s*\n\s*/g, ' ').trim()).slice(0, positions);
  const timed = ids.slice(0, timeTokens);
  const rows: SweepRow[] = [];
  const total = opts.backends.length * (Ts.length + 1);
  let done = 0;
  for (const name of opts.backends) {
    const backend: Backend = name === 'gpu' ? await GpuBackend.create() : new CpuBackend();
    const ann = loadModel(opts.modelDir, { backend });
    const snn: SpikingLM = opts.snnDir
      ? loadSnnModel(opts.snnDir, { backend }).snn.withTimesteps(maxT)
      : convertModelToSpiking(ann, createCalibrationData(tok), { timesteps: maxT, backend, ...(opts.quantile !== undefined ? { quantile: opts.quantile } : {}) }).snn;
    const fidelity = await measureFidelity(ann, snn, ids, Ts);
    opts.onProgress?.(++done, total);
    const sync = async (t: unknown) => {
      await backend.read(t as never);
      backend.dispose(t as never);
    };
    const annMs = (await timeMs(() => sync(ann.forward(timed)), budget)) / timed.length;
    for (const T of Ts) {
      const f = fidelity.results.find((r) => r.T === T)!;
      const dense = new SpikingLM(snn.config, snn.weights, backend, { ...snn.spiking, timesteps: T, spikeKernel: 'dense' });
      const event = new SpikingLM(snn.config, snn.weights, backend, { ...snn.spiking, timesteps: T, spikeKernel: 'event' });
      // spikes and energy of one multi-step run
      const out = dense.forward(timed, dense.newCache(), { allLogits: false });
      const counts = (await backend.read(out.spikes)).data;
      const rates = spikeRateFrom(dense, counts, out.neurons);
      const perLayer: Record<string, number> = {};
      for (const [site, r] of rates.perSite) {
        const layer = site.startsWith('layers.') ? site.split('.').slice(0, 2).join('.') : site;
        perLayer[layer] = (perLayer[layer] ?? 0) + r / (site.startsWith('layers.') ? 4 : 1);
      }
      const attended = timed.reduce((a, _, i) => a + i + 1, 0);
      const sitesSpikes = dense.sites.map((_, i) => Array.from({ length: T }, (_, t) => counts[i * T + t]!).reduce((a, b) => a + b, 0));
      const energy = energyReport({ config: dense.config, timesteps: T, tokens: timed.length, attendedKeys: attended, spikesPerSite: sitesSpikes });
      const density = await spikeDensityOf(dense, timed);
      for (const t of [out.logits, out.spikes]) backend.dispose(t);
      const multi = (await timeMs(async () => {
        const o = dense.forward(timed);
        await sync(o.logits);
        backend.dispose(o.spikes);
      }, budget)) / timed.length;
      const single = (await timeMs(async () => {
        const o = dense.forward(timed, dense.newCache(), { execution: 'single' });
        await sync(o.logits);
        backend.dispose(o.spikes);
      }, budget)) / timed.length;
      const ev = (await timeMs(async () => {
        const o = event.forward(timed);
        await sync(o.logits);
        backend.dispose(o.spikes);
      }, budget)) / timed.length;
      rows.push({
        backend: name, T,
        top1_agreement: f.top1_agreement, kl: f.kl, mean_abs_logit_err: f.mean_abs_logit_err, max_abs_logit_err: f.max_abs_logit_err,
        ppl_ann: f.ppl_ann, ppl_snn: f.ppl_snn, distinct_predictions_ann: f.distinct_predictions_ann, distinct_predictions_snn: f.distinct_predictions_snn,
        spike_rate: f.spike_rate, spike_density: density, spikes_per_layer: perLayer,
        energy_ratio_fp32: energy.presets.fp32.ratio, energy_ratio_fp16: energy.presets.fp16.ratio, energy_ratio_int8: energy.presets.int8.ratio,
        t_times_rate: energy.presets.fp32.tTimesRate, break_even_fp32: energy.presets.fp32.breakEvenTRate,
        ms_per_token_ann: annMs, ms_per_token_multi: multi, ms_per_token_single: single, ms_per_token_event: ev,
        cost_multi: multi / (T * annMs), cost_single: single / (T * annMs), cost_event: ev / (T * annMs),
      });
      opts.onProgress?.(++done, total);
    }
  }
  return {
    metadata: {
      commit: gitCommit(), spikelm_version: spikelmVersion(), node: process.version, cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.availableParallelism?.() ?? os.cpus().length, adapter: await adapterDescription(opts.backends), date: new Date().toISOString(),
      model: opts.modelDir, snn: opts.snnDir ?? `converted now (quantile ${opts.quantile ?? 'default'})`, positions: ids.length, time_tokens: timed.length,
    },
    rows,
  };
}

/** Fraction of nonzero spike counts over all encoders of one forward (what event-driven kernels skip). */
async function spikeDensityOf(snn: SpikingLM, ids: readonly number[]): Promise<number> {
  let nonzero = 0, all = 0;
  const b = snn.backend;
  const pending: Promise<void>[] = [];
  const out = snn.forward(ids, snn.newCache(), {
    observeSpikes: (_site, spikes) => {
      pending.push(b.read(spikes).then((t) => {
        for (let i = 0; i < t.data.length; i++) if (t.data[i] !== 0) nonzero++;
        all += t.data.length;
      }));
    },
  });
  await Promise.all(pending);
  b.dispose(out.logits);
  b.dispose(out.spikes);
  return all ? nonzero / all : 0;
}
