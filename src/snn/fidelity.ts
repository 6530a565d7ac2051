/**
 * Fidelity of a spiking model against its ANN over a text, at several time step counts, with what
 * each T costs: spikes and energy counted from the same runs.
 *
 * Stepwise: the spiking dynamics are causal in time and nothing in them depends on T itself, so one
 * run at the largest T yields the decoded logits, and the statistics, of every smaller T (a test
 * checks this equals separate runs). Layerwise: every T is its own network (a weighted code's planes
 * depend on T), run separately. The text is fed in chunks through the models' KV caches, in windows
 * no longer than the model's context.
 *
 * Per T: top-1 agreement, mean KL(ANN ‖ SNN), max and mean |Δlogit|, perplexity of the text under
 * each model, the number of distinct top-1 predictions of each (a collapse shows as a handful),
 * spikes per neuron per step and per token, the largest burst, and E_SNN/E_ANN at FP32, FP16 and
 * INT8 — so fidelity is never reported without what it cost.
 */
import { ArgumentError } from '../errors.js';
import type { CausalLM } from '../nn/model.js';
import { argmax } from '../nn/sampling.js';
import { type EnergyReport, energyReport } from './energy.js';
import { MEMORY_PRESETS, DEFAULT_MEMORY_PRESET, type MemoryPreset, memorySummary } from './memory.js';
import type { SpikingLM } from './model.js';
import { SpikeTally } from './stats.js';

export interface FidelityRow {
  readonly T: number;
  readonly schedule: string;
  readonly coding: string;
  readonly top1_agreement: number;
  readonly kl: number;
  readonly max_abs_logit_err: number;
  readonly mean_abs_logit_err: number;
  readonly ppl_ann: number;
  readonly ppl_snn: number;
  readonly distinct_predictions_ann: number;
  readonly distinct_predictions_snn: number;
  /** Spikes per neuron per step. */
  readonly spike_rate: number;
  readonly spikes_per_neuron_per_token: number;
  readonly max_spikes_per_neuron_per_step: number;
  /** E_SNN / E_ANN for the Horowitz presets (compute only). */
  readonly energy_ratio: { readonly fp32: number; readonly fp16: number; readonly int8: number };
  /** Extra planes used, tokens that needed them, values clipped (weighted and single-spike codes). */
  readonly extra_steps: number;
  readonly overflow_rows: number;
  readonly clipped: number;
  /**
   * Layerwise: E_SNN/E_ANN with memory traffic priced (src/snn/memory.ts) beside compute, in decode
   * (batch 1) and prefill (64-token tiles), at each precision; `memory_ratio` is memory alone.
   */
  readonly energy_with_memory?: { readonly preset: string } & ReturnType<typeof memorySummary>;
  /** Layerwise models with planes per site: the planes, by site name. */
  readonly planes?: Record<string, number>;
  /** With `marginThreshold`: top-1 agreement over positions whose ANN top-2 logit margin is at least it. */
  readonly top1_agreement_above_margin?: number;
  readonly positions_above_margin?: number;
}

export interface FidelityReport {
  readonly positions: number;
  readonly results: FidelityRow[];
  /** The energy report of each T's run over the text. */
  readonly energy: ReadonlyMap<number, EnergyReport>;
}

export interface FidelityOptions {
  /** Tokens per forward chunk (default 64). */
  readonly chunk?: number;
  readonly onProgress?: (done: number, total: number) => void;
  /**
   * Also report top-1 agreement over positions whose ANN top-2 logit margin is at least this:
   * random-weight models have many near-ties, which no approximation can resolve.
   */
  readonly marginThreshold?: number;
  /** Where data live and what an access costs, for energy_with_memory (default horowitz-45nm). */
  readonly memoryPreset?: MemoryPreset;
}

function logSoftmax(logits: Float32Array, o: number, V: number, out: Float64Array): void {
  let max = -Infinity;
  for (let i = 0; i < V; i++) max = Math.max(max, logits[o + i]!);
  let z = 0;
  for (let i = 0; i < V; i++) z += Math.exp(logits[o + i]! - max);
  const lz = Math.log(z) + max;
  for (let i = 0; i < V; i++) out[i] = logits[o + i]! - lz;
}

class Accumulator {
  positions = 0;
  agree = 0;
  kl = 0;
  maxErr = 0;
  sumErr = 0;
  nllAnn = 0;
  nllSnn = 0;
  targets = 0;
  readonly predAnn = new Set<number>();
  readonly predSnn = new Set<number>();
  marginPositions = 0;
  marginAgree = 0;
}

function topMargin(logits: Float32Array, o: number, V: number): number {
  let a = -Infinity, b = -Infinity;
  for (let i = 0; i < V; i++) {
    const v = logits[o + i]!;
    if (v > a) {
      b = a;
      a = v;
    } else if (v > b) b = v;
  }
  return a - b;
}

export async function measureFidelity(ann: CausalLM, snn: SpikingLM, ids: readonly number[], timesteps: readonly number[], opts: FidelityOptions = {}): Promise<FidelityReport> {
  const Ts = [...new Set(timesteps)].sort((a, b) => a - b);
  if (Ts.length === 0) throw new ArgumentError('fidelity: no timesteps given');
  for (const T of Ts) if (!Number.isInteger(T) || T < 1) throw new ArgumentError(`fidelity: timesteps must be positive integers, got ${T}`);
  const maxT = Ts.at(-1)!;
  const stepwise = snn.schedule === 'stepwise';
  if (stepwise && maxT > snn.timesteps) throw new ArgumentError(`fidelity: the spiking model runs ${snn.timesteps} steps; T = ${maxT} needs a model built for at least that many (calibrateTimesteps)`);
  if (ids.length < 2) throw new ArgumentError('fidelity: the text must encode to at least 2 tokens');
  const V = ann.config.vocabSize;
  const chunk = opts.chunk ?? 64;
  const window = Math.min(ann.config.maxPositions, 1024);
  const acc = new Map<number, Accumulator>(Ts.map((t) => [t, new Accumulator()]));
  const tallies = new Map<number, SpikeTally>(Ts.map((t) => [t, new SpikeTally(snn.sites)]));
  // stepwise: one model whose run decodes every T; layerwise: one model per T
  const models = new Map<number, SpikingLM>(stepwise ? [[maxT, snn]] : Ts.map((T) => [T, T === snn.timesteps ? snn : snn.withTimesteps(T)]));
  const lpAnn = new Float64Array(V), lpSnn = new Float64Array(V);
  let done = 0;
  try {
    for (let w0 = 0; w0 < ids.length; w0 += window) {
      const windowIds = ids.slice(w0, w0 + window);
      const annCache = ann.newCache(Math.min(window, 256));
      const caches = new Map([...models].map(([T, m]) => [T, m.newCache(Math.min(window, 256))]));
      for (let c0 = 0; c0 < windowIds.length; c0 += chunk) {
        const part = windowIds.slice(c0, c0 + chunk);
        const annT = ann.forward(part, annCache, { allLogits: true });
        const annLogits = (await ann.backend.read(annT)).data;
        ann.backend.dispose(annT);
        for (const [modelT, model] of models) {
          const out = model.forward(part, caches.get(modelT)!, { allLogits: true, ...(stepwise ? { decodedAt: Ts } : {}) });
          const stats = (await model.backend.read(out.stats)).data;
          for (const T of stepwise ? Ts : [modelT]) {
            tallies.get(T)!.add(stats, out, stepwise ? T : 1);
            const logitsT = stepwise ? out.decoded.get(T)! : out.logits;
            compareLogits(acc.get(T)!, annLogits, (await model.backend.read(logitsT)).data, part.length, V, ids, w0 + c0, c0, windowIds.length, lpAnn, lpSnn, opts.marginThreshold);
          }
          for (const t of [out.logits, out.stats, ...(out.spikes ? [out.spikes] : []), ...out.decoded.values()]) model.backend.dispose(t);
        }
        done += part.length;
        opts.onProgress?.(done, ids.length);
      }
      annCache.dispose();
      for (const c of caches.values()) c.dispose();
    }
  } finally {
    for (const m of models.values()) if (m !== snn) m.dispose();
  }
  const energy = new Map<number, EnergyReport>();
  const results = Ts.map((T): FidelityRow => {
    const a = acc.get(T)!, tally = tallies.get(T)!;
    const input = { config: snn.config, schedule: snn.schedule, coding: snn.coding, timesteps: T, stepsOf: (s: { name: string }) => (stepwise ? T : models.get(T)!.stepsOf(s.name)), maxSpikes: snn.spiking.neuron.maxSpikes, tally };
    const e = energyReport(input);
    const preset = opts.memoryPreset ?? MEMORY_PRESETS[DEFAULT_MEMORY_PRESET]!;
    const model = models.get(stepwise ? maxT : T)!;
    energy.set(T, e);
    const sum = tally.summary();
    return {
      T, schedule: snn.schedule, coding: snn.coding,
      top1_agreement: a.agree / a.positions,
      kl: a.kl / a.positions,
      max_abs_logit_err: a.maxErr,
      mean_abs_logit_err: a.sumErr / (a.positions * V),
      ppl_ann: Math.exp(a.nllAnn / Math.max(a.targets, 1)),
      ppl_snn: Math.exp(a.nllSnn / Math.max(a.targets, 1)),
      distinct_predictions_ann: a.predAnn.size,
      distinct_predictions_snn: a.predSnn.size,
      spike_rate: sum.spikesPerNeuronPerStep,
      spikes_per_neuron_per_token: sum.spikesPerNeuronPerToken,
      max_spikes_per_neuron_per_step: sum.maxSpikesPerNeuronPerStep,
      energy_ratio: { fp32: e.presets.fp32.ratio, fp16: e.presets.fp16.ratio, int8: e.presets.int8.ratio },
      extra_steps: sum.extraSteps, overflow_rows: sum.overflowRows, clipped: sum.clipped,
      ...(stepwise ? {} : { energy_with_memory: { preset: preset.name, ...memorySummary(input, e, preset) } }),
      ...(!stepwise && model.spiking.planes ? { planes: model.planesBySite() } : {}),
      ...(opts.marginThreshold !== undefined ? { top1_agreement_above_margin: a.marginAgree / Math.max(a.marginPositions, 1), positions_above_margin: a.marginPositions } : {}),
    };
  });
  return { positions: ids.length, results, energy };
}

function compareLogits(
  a: Accumulator, annLogits: Float32Array, snnLogits: Float32Array, n: number, V: number, ids: readonly number[],
  globalStart: number, windowStart: number, windowLength: number, lpAnn: Float64Array, lpSnn: Float64Array, marginThreshold?: number,
): void {
  for (let p = 0; p < n; p++) {
    const o = p * V;
    const pa = argmax(annLogits.subarray(o, o + V)), ps = argmax(snnLogits.subarray(o, o + V));
    a.positions++;
    if (pa === ps) a.agree++;
    if (marginThreshold !== undefined && topMargin(annLogits, o, V) >= marginThreshold) {
      a.marginPositions++;
      if (pa === ps) a.marginAgree++;
    }
    a.predAnn.add(pa);
    a.predSnn.add(ps);
    logSoftmax(annLogits, o, V, lpAnn);
    logSoftmax(snnLogits, o, V, lpSnn);
    let kl = 0;
    for (let i = 0; i < V; i++) {
      kl += Math.exp(lpAnn[i]!) * (lpAnn[i]! - lpSnn[i]!);
      const d = Math.abs(annLogits[o + i]! - snnLogits[o + i]!);
      a.sumErr += d;
      if (d > a.maxErr) a.maxErr = d;
    }
    a.kl += kl;
    const globalPos = globalStart + p;
    if (globalPos + 1 < ids.length && windowStart + p + 1 < windowLength) {
      const target = ids[globalPos + 1]!;
      a.nllAnn -= lpAnn[target]!;
      a.nllSnn -= lpSnn[target]!;
      a.targets++;
    }
  }
}

/** Least-squares slope of log(y) against log(x). */
export function logLogSlope(xs: readonly number[], ys: readonly number[]): number {
  const lx = xs.map(Math.log), ly = ys.map(Math.log);
  const mx = lx.reduce((a, b) => a + b, 0) / lx.length, my = ly.reduce((a, b) => a + b, 0) / ly.length;
  let num = 0, den = 0;
  for (let i = 0; i < lx.length; i++) {
    num += (lx[i]! - mx) * (ly[i]! - my);
    den += (lx[i]! - mx) ** 2;
  }
  return num / den;
}
