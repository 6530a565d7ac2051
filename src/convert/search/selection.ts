/**
 * Scoring networks on the selection part of the calibration text: the ANN's next-token
 * distributions are computed once (the reference), and each candidate spiking network is run over
 * the same windows and compared position by position — top-1 agreement and KL(ANN ‖ SNN) — with
 * its spike statistics and energy report from the same run.
 *
 *   KL_t = Σ_i p_i·(log p_i − log q_i) = H⁻_t − Σ_i p_i·l_i + lse(l)·Σ_i p_i
 *
 * with p the ANN's probabilities (kept in float32), H⁻_t = Σ p_i log p_i, l the SNN's logits; the
 * form is exactly 0 (in float64) when the SNN's logits equal the ANN's.
 */
import type { CausalLM } from '../../nn/model.js';
import { argmax, seededRandom } from '../../nn/sampling.js';
import { type EnergyReport, energyReport } from '../../snn/energy.js';
import { ArgumentError } from '../../errors.js';
import type { HeadStages, SpikingLM } from '../../snn/model.js';
import { STATS_WIDTH } from '../../tensor/kernels/codes.js';
import { topKCpu } from '../../tensor/kernels/top-k.js';
import { SpikeTally } from '../../snn/stats.js';
import type { CalibrationData } from '../calibration-data.js';

export interface Reference {
  readonly samples: readonly (readonly number[])[];
  /** Per window: the ANN's probabilities, [n·V]. */
  readonly probs: readonly Float32Array[];
  /** Per window and position: Σ p·log p and Σ p (of the float32 probabilities). */
  readonly negEntropy: readonly Float64Array[];
  readonly mass: readonly Float64Array[];
  readonly argmax: readonly Int32Array[];
  readonly positions: number;
}

export async function annReference(ann: CausalLM, data: CalibrationData, onWindow?: (done: number, total: number) => void): Promise<Reference> {
  const V = ann.config.vocabSize;
  const probs: Float32Array[] = [], negEntropy: Float64Array[] = [], mass: Float64Array[] = [], top: Int32Array[] = [];
  let positions = 0;
  for (const [w, sample] of data.samples.entries()) {
    const cache = ann.newCache(sample.length);
    const t = ann.forward(sample, cache, { allLogits: true });
    const logits = (await ann.backend.read(t)).data;
    ann.backend.dispose(t);
    cache.dispose();
    const n = sample.length, p = new Float32Array(n * V), h = new Float64Array(n), m = new Float64Array(n), a = new Int32Array(n);
    for (let r = 0; r < n; r++) {
      const o = r * V, row = logits.subarray(o, o + V);
      const lse = logSumExp(row);
      let hr = 0, mr = 0;
      for (let i = 0; i < V; i++) {
        const pi = Math.fround(Math.exp(row[i]! - lse));
        p[o + i] = pi;
        mr += pi;
        if (pi > 0) hr += pi * (row[i]! - lse);
      }
      h[r] = hr;
      m[r] = mr;
      a[r] = argmax(row);
    }
    probs.push(p);
    negEntropy.push(h);
    mass.push(m);
    top.push(a);
    positions += n;
    onWindow?.(w + 1, data.samples.length);
  }
  return { samples: data.samples, probs, negEntropy, mass, argmax: top, positions };
}

function logSumExp(row: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let z = 0;
  for (let i = 0; i < row.length; i++) z += Math.exp(row[i]! - max);
  return Math.log(z) + max;
}

export interface Scored {
  /** Per position (windows in order): KL(ANN ‖ SNN) and top-1 agreement (1/0). */
  readonly kl: Float64Array;
  readonly agree: Uint8Array;
  readonly tally: SpikeTally;
  readonly energy: EnergyReport;
}

/**
 * Run a spiking network over the reference's first `windows` windows (default all), the last of
 * them cut to `lastLength` tokens if given (a prefix: causal, so its positions' logits are the whole
 * window's), and compare.
 */
export async function scoreNetwork(snn: SpikingLM, ref: Reference, windows = ref.samples.length, lastLength?: number): Promise<Scored> {
  const V = snn.config.vocabSize;
  const lengthOf = (w: number) => (w === windows - 1 && lastLength !== undefined ? Math.min(lastLength, ref.samples[w]!.length) : ref.samples[w]!.length);
  let positions = 0;
  for (let w = 0; w < windows; w++) positions += lengthOf(w);
  const kl = new Float64Array(positions), agree = new Uint8Array(positions);
  const tally = new SpikeTally(snn.sites);
  let at = 0;
  for (let w = 0; w < windows; w++) {
    const sample = ref.samples[w]!.slice(0, lengthOf(w));
    const cache = snn.newCache(sample.length);
    const out = snn.forward(sample, cache, { allLogits: true });
    tally.add((await snn.backend.read(out.stats)).data, out);
    const logits = (await snn.backend.read(out.logits)).data;
    for (const t of [out.logits, out.stats, ...(out.spikes ? [out.spikes] : [])]) snn.backend.dispose(t);
    cache.dispose();
    scoreWindow(ref, w, logits, sample.length, V, kl, agree, at);
    at += sample.length;
  }
  return { kl, agree, tally, energy: energyOf(snn, tally) };
}

/** KL(ANN ‖ SNN) and top-1 agreement of a window's logits, into kl and agree from position `at`. */
function scoreWindow(ref: Reference, w: number, logits: Float32Array, n: number, V: number, kl: Float64Array, agree: Uint8Array, at: number): void {
  const p = ref.probs[w]!, h = ref.negEntropy[w]!, m = ref.mass[w]!, a = ref.argmax[w]!;
  for (let r = 0; r < n; r++, at++) {
    const o = r * V, row = logits.subarray(o, o + V);
    let dot = 0;
    for (let i = 0; i < V; i++) dot += p[o + i]! * row[i]!;
    kl[at] = Math.max(0, h[r]! - dot + logSumExp(row) * m[r]!);
    agree[at] = argmax(row) === a[r]! ? 1 : 0;
  }
}

function energyOf(snn: SpikingLM, tally: SpikeTally): EnergyReport {
  return energyReport({
    config: snn.config, schedule: snn.schedule, coding: snn.coding, timesteps: snn.timesteps,
    stepsOf: (s) => snn.stepsOf(s.name), maxSpikes: snn.spiking.neuron.maxSpikes, tally,
  });
}

/**
 * Score two-stage heads (each `stages`) on a one-stage network over the whole reference, in one
 * pass: every forward runs them as extra heads on the same head input, so the rest of the network
 * runs once. Each head's tally is the network's with its own head_in and coarse rows.
 */
export async function scoreHeads(snn: SpikingLM, ref: Reference, stages: readonly HeadStages[]): Promise<Scored[]> {
  if (snn.spiking.head) throw new ArgumentError('scoreHeads: the network must have a one-stage head (its extra heads are the candidates)');
  const b = snn.backend, V = snn.config.vocabSize, S = snn.sites.length, W = STATS_WIDTH;
  const h = snn.sites.findIndex((x) => x.kind === 'head_in');
  const scored = stages.map(() => ({ kl: new Float64Array(ref.positions), agree: new Uint8Array(ref.positions), tally: new SpikeTally(snn.sites) }));
  let at = 0;
  for (const [w, sample] of ref.samples.entries()) {
    const cache = snn.newCache(sample.length);
    const extraHeads = stages.map((s) => ({ stages: s, stats: b.zeros([S + 1, W]) }));
    const out = snn.forward(sample, cache, { allLogits: true, extraHeads });
    const main = (await b.read(out.stats)).data;
    for (const [i, s] of stages.entries()) {
      const own = (await b.read(extraHeads[i]!.stats)).data;
      const rows = new Float32Array((S + 1) * W);
      rows.set(main.subarray(0, S * W));
      rows.set(own.subarray(h * W, (h + 1) * W), h * W);
      rows.set(own.subarray(S * W, (S + 1) * W), S * W);
      scored[i]!.tally.add(rows, { ...out, headStages: s });
      scoreWindow(ref, w, (await b.read(out.extraLogits![i]!)).data, sample.length, V, scored[i]!.kl, scored[i]!.agree, at);
    }
    for (const t of [out.logits, out.stats, ...(out.extraLogits ?? []), ...extraHeads.map((e) => e.stats)]) b.dispose(t);
    cache.dispose();
    at += sample.length;
  }
  return scored.map((x) => ({ ...x, energy: energyOf(snn, x.tally) }));
}

/** The mean over the reference's positions of the ANN's probability outside its k most likely tokens. */
export function massOutsideTopK(ref: Reference, V: number, k: number): number {
  let sum = 0;
  for (const [w, p] of ref.probs.entries()) {
    const n = ref.samples[w]!.length, idx = new Float32Array(n * k);
    topKCpu(p, n, V, k, idx);
    for (let r = 0; r < n; r++) {
      let inside = 0;
      for (let j = 0; j < k; j++) inside += p[r * V + idx[r * k + j]!]!;
      sum += Math.max(0, ref.mass[w]![r]! - inside);
    }
  }
  return ref.positions ? sum / ref.positions : 0;
}

export function meanOf(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]!;
  return x.length ? s / x.length : 0;
}

/** Positions of the texts the margin protects against: about an evaluation text's (514 for stories). */
export const MARGIN_POSITIONS = 512;

/**
 * The spread of the figures over random subsets of the positions (seeded): the standard deviation
 * of top-1 and of KL across `rounds` subsets of `size` positions (at most half of them). It is how
 * far a text of that size, drawn like the select part, may fall from the select part's figures.
 */
export function halfSpread(s: Pick<Scored, 'kl' | 'agree'>, seed: number, rounds = 32, size = MARGIN_POSITIONS): { top1: number; kl: number } {
  const n = s.kl.length, half = Math.min(size, n >> 1);
  if (half < 1) return { top1: 0, kl: 0 };
  const rand = seededRandom(seed);
  const order = Int32Array.from({ length: n }, (_, i) => i);
  const top1s: number[] = [], kls: number[] = [];
  for (let r = 0; r < rounds; r++) {
    // a partial Fisher–Yates shuffle picks the half
    for (let i = 0; i < half; i++) {
      const j = i + Math.floor(rand() * (n - i));
      const t = order[i]!;
      order[i] = order[j]!;
      order[j] = t;
    }
    let agree = 0, kl = 0;
    for (let i = 0; i < half; i++) {
      agree += s.agree[order[i]!]!;
      kl += s.kl[order[i]!]!;
    }
    top1s.push(agree / half);
    kls.push(kl / half);
  }
  const std = (x: number[]) => {
    const m = meanOf(x);
    return Math.sqrt(x.reduce((a, v) => a + (v - m) ** 2, 0) / Math.max(1, x.length - 1));
  };
  return { top1: std(top1s), kl: std(kls) };
}

/**
 * The one-sided normal quantile of the margins: a network checked at the target less its margin is
 * predicted to meet the target on a text like the select part with probability 95% (z = 1.645).
 */
export const MARGIN_Z = 1.645;

/**
 * The margins a network is checked with: MARGIN_Z standard deviations of the difference between an
 * evaluation-sized text's figure and the select part's own. The first is halfSpread (measured, so a
 * spread wider than the binomial one — errors that come in runs — is kept); the select part's own
 * error is the same per-position spread over its n positions, so the two add as
 * halfSpread² · (1 + size / n). One standard deviation of a 512-position text alone (the margin
 * before this) leaves such a text below a network that just meets the target about one time in six.
 */
export function targetMargin(s: Pick<Scored, 'kl' | 'agree'>, seed: number): { top1: number; kl: number } {
  const n = s.kl.length, size = Math.min(MARGIN_POSITIONS, n >> 1);
  const h = halfSpread(s, seed, 32, size), f = n > 0 ? MARGIN_Z * Math.sqrt(1 + size / n) : 0;
  return { top1: f * h.top1, kl: f * h.kl };
}
