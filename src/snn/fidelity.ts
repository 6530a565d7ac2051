/**
 * Fidelity of a spiking model against its ANN over a text, at several time step counts.
 *
 * The spiking dynamics are causal in time and nothing in them depends on T itself, so one run at
 * the largest T yields the decoded logits at every smaller T (a test checks this equals separate
 * runs). The text is fed in chunks through both models' KV caches, in windows no longer than the
 * model's context.
 *
 * Per T: top-1 agreement, mean KL(ANN ‖ SNN), max and mean |Δlogit|, perplexity of the text under
 * each model, the number of distinct top-1 predictions of each (a collapse shows as a handful), and
 * spikes per neuron per step — so fidelity is never reported without what it cost in spikes.
 */
import { ArgumentError } from '../errors.js';
import type { CausalLM } from '../nn/model.js';
import { argmax } from '../nn/sampling.js';
import { type SpikingLM, spikeRateFrom } from './model.js';

export interface FidelityRow {
  readonly T: number;
  readonly top1_agreement: number;
  readonly kl: number;
  readonly max_abs_logit_err: number;
  readonly mean_abs_logit_err: number;
  readonly ppl_ann: number;
  readonly ppl_snn: number;
  readonly distinct_predictions_ann: number;
  readonly distinct_predictions_snn: number;
  readonly spike_rate: number;
  /** With `marginThreshold`: top-1 agreement over positions whose ANN top-2 logit margin is at least it. */
  readonly top1_agreement_above_margin?: number;
  readonly positions_above_margin?: number;
}

export interface FidelityReport {
  readonly positions: number;
  readonly results: FidelityRow[];
}

export interface FidelityOptions {
  /** Tokens per forward chunk (default 64). */
  readonly chunk?: number;
  readonly onProgress?: (done: number, total: number) => void;
  /**
   * Also report top-1 agreement over positions where the ANN's top-2 logit margin is at least this:
   * random-weight models have many near-ties, which no approximation can resolve.
   */
  readonly marginThreshold?: number;
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
  spikes = 0;
  neuronSteps = 0;
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
  const maxT = Ts.at(-1)!;
  if (maxT > snn.timesteps) throw new ArgumentError(`fidelity: the spiking model runs ${snn.timesteps} steps; T = ${maxT} needs a model built for at least that many (calibrateTimesteps)`);
  if (ids.length < 2) throw new ArgumentError('fidelity: the text must encode to at least 2 tokens');
  const V = ann.config.vocabSize;
  const chunk = opts.chunk ?? 64;
  const window = Math.min(ann.config.maxPositions, 1024);
  const acc = new Map<number, Accumulator>(Ts.map((t) => [t, new Accumulator()]));
  const lpAnn = new Float64Array(V), lpSnn = new Float64Array(V);
  let done = 0;
  for (let w0 = 0; w0 < ids.length; w0 += window) {
    const windowIds = ids.slice(w0, w0 + window);
    const annCache = ann.newCache(Math.min(window, 256));
    const snnCache = snn.newCache(Math.min(window, 256));
    for (let c0 = 0; c0 < windowIds.length; c0 += chunk) {
      const part = windowIds.slice(c0, c0 + chunk);
      const annT = ann.forward(part, annCache, { allLogits: true });
      const annLogits = (await ann.backend.read(annT)).data;
      ann.backend.dispose(annT);
      const out = snn.forward(part, snnCache, { allLogits: true, decodedAt: Ts });
      const counts = (await snn.backend.read(out.spikes)).data;
      for (const T of Ts) {
        const a = acc.get(T)!;
        const decodedT = out.decoded.get(T)!;
        const snnLogits = (await snn.backend.read(decodedT)).data;
        const rate = spikeRateFrom(snn, counts, out.neurons, T);
        a.spikes += rate.total;
        a.neuronSteps += out.neurons.reduce((x, y) => x + y, 0) * T;
        for (let p = 0; p < part.length; p++) {
          const o = p * V;
          const pa = argmax(annLogits.subarray(o, o + V)), ps = argmax(snnLogits.subarray(o, o + V));
          a.positions++;
          if (pa === ps) a.agree++;
          if (opts.marginThreshold !== undefined && topMargin(annLogits, o, V) >= opts.marginThreshold) {
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
          const globalPos = w0 + c0 + p;
          if (globalPos + 1 < ids.length && c0 + p + 1 < windowIds.length) {
            const target = ids[globalPos + 1]!;
            a.nllAnn -= lpAnn[target]!;
            a.nllSnn -= lpSnn[target]!;
            a.targets++;
          }
        }
      }
      for (const t of [out.logits, out.spikes, ...out.decoded.values()]) snn.backend.dispose(t);
      done += part.length;
      opts.onProgress?.(done, ids.length);
    }
    annCache.dispose();
    snnCache.dispose();
  }
  return {
    positions: ids.length,
    results: Ts.map((T) => {
      const a = acc.get(T)!;
      return {
        T,
        top1_agreement: a.agree / a.positions,
        kl: a.kl / a.positions,
        max_abs_logit_err: a.maxErr,
        mean_abs_logit_err: a.sumErr / (a.positions * V),
        ppl_ann: Math.exp(a.nllAnn / Math.max(a.targets, 1)),
        ppl_snn: Math.exp(a.nllSnn / Math.max(a.targets, 1)),
        distinct_predictions_ann: a.predAnn.size,
        distinct_predictions_snn: a.predSnn.size,
        spike_rate: a.neuronSteps ? a.spikes / a.neuronSteps : 0,
        ...(opts.marginThreshold !== undefined ? { top1_agreement_above_margin: a.marginAgree / Math.max(a.marginPositions, 1), positions_above_margin: a.marginPositions } : {}),
      };
    }),
  };
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
