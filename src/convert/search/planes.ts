/**
 * The target-driven conversion: the user's fidelity target in, the cheapest network found that
 * meets it out. What is searched is the number of planes of each (layer, site) encoder of a
 * weighted code in the layerwise schedule; what is minimised is E_SNN/E_ANN at FP32, compute only
 * (src/snn/energy.ts). Only calibration text is read (split.ts: a fit part and a select part).
 *
 *   1. fit        observe the ANN on the fit part, per-channel thresholds (the calibrate stage)
 *   2. reference  the ANN's next-token distributions on the select part (selection.ts)
 *   3. baseline   every site at P_hi planes (12, raised to 14 and 16 if that misses the target)
 *   4. probe      each site alone at P_hi − 4 planes, every other at P_hi: the KL it adds, c_s,
 *                 and its operation count there (its count at P_hi comes from the baseline); on
 *                 models too large for a probe per site within the budget, a probe per site kind
 *                 (every layer's site of that kind together), its KL shared by its sites
 *   5. allocate   a site at p planes is predicted to add KL_s(p) = c_s·4^(P_probe − p) (a plane less
 *                 doubles a weighted code's rounding step: four times the squared error) and to
 *                 cost E_s(p), linear in p through its two measured points. Greedily take the
 *                 plane whose removal saves the most energy per predicted KL added; the moves in
 *                 that order are a sequence, and every prefix of it is a network
 *   6. check      bisect over the prefix length, checking each network on the whole select part:
 *                 it meets the target when top-1 − m_top1 ≥ target and KL + m_kl ≤ target, the
 *                 margins m being 1.645 standard deviations (one-sided 95%) of an evaluation-sized
 *                 text's difference from the select part: the spread of the figures over 32
 *                 seeded random subsets of 512 of its positions, with the select part's own error
 *                 added (selection.ts targetMargin). The longest prefix that met is chosen.
 *
 *   8. head       phase-ternary only: a two-stage head (SpikingConfig.head) for the chosen network —
 *                 its first P_c planes to every output, the rest to the HEAD.topK leading ones. The
 *                 KL it adds is predicted from the head's probe (the KL the head adds at P_c planes
 *                 everywhere) times the ANN's probability outside its top k on the select part (the
 *                 outputs left coarse); the fewest coarse planes predicted within the KL left by the
 *                 chosen network, and the next HEAD.candidates − 1 counts above, are scored in one
 *                 pass over the select part (extra heads on the same forward) and checked as the
 *                 others; the cheapest that meets the target is taken, if cheaper than one stage.
 *                 Where even P_h − 1 coarse planes are predicted over it (a random model's flat
 *                 distributions: almost all mass outside any top k), no pass runs.
 *   7. fine-tune (optional, FINETUNE): train the thresholds through the spikes (src/train, on the
 *                 fit part only, with a spike penalty) of the network a few percent cheaper than the
 *                 chosen one (predicted), and check it like the others: it replaces the chosen one
 *                 only if it meets the target at less energy. On by default where its predicted
 *                 cost (tokens × parameters × planes × steps, calibrated on this machine class) is
 *                 at most two minutes.
 *
 * The probes cost one forward each; on large models they run on the first positions of the select
 * part, as many as a budget of multiply-accumulates allows (BUDGET), and so do fit and select, and
 * the bisection stops when its budget of checks is spent.
 * Everything is deterministic given the seed (only the halves are random); nothing here reads the
 * evaluation text, and the record (SearchRecord) holds no timings, so two runs write the same bytes.
 */
import { ArgumentError } from '../../errors.js';
import type { CausalLM } from '../../nn/model.js';
import { type CodingName, isWeighted } from '../../snn/codes.js';
import { ENERGY_PRESETS, siteOps } from '../../snn/energy.js';
import { COMPENSATED, type HeadStages, SpikingLM } from '../../snn/model.js';
import { MAX_SITE_PLANES } from '../../snn/sites.js';
import type { Backend } from '../../tensor/backend.js';
import { DEFAULT_NEURON } from '../../tensor/kernels/neuron.js';
import { linearWeightCount } from '../../snn/memory.js';
import { fineTune } from '../../train/finetune.js';
import { type ConvertedModel, calibrate, finalize, observe, replace, trace } from '../stages.js';
import { MARGIN_POSITIONS, MARGIN_Z, annReference, massOutsideTopK, targetMargin, meanOf, type Reference, type Scored, scoreHeads, scoreNetwork } from './selection.js';
import { type CalibrationSplit, takeTokens } from './split.js';
import type { CalibrationData } from '../calibration-data.js';
import { DEFAULT_TARGET, type FidelityTarget } from './target.js';

/** Work budgets, in multiply-accumulates of the ANN (a token costs macsPerToken). */
export const BUDGET = {
  /** Tokens observed to fit thresholds: at most this many MACs, at least 1024 tokens (the fixed conversion's). */
  fitMacs: 1.2e11,
  /** Positions of the select part a check runs: at most this many MACs, at least 128 positions. */
  selectMacs: 1.6e10,
  /** All the probes together: at most this many MACs, at least 8 and at most 1024 positions each. */
  probeMacs: 3e10,
  /** All the checks of the bisection together: at most this many MACs, at least 6 checks. */
  checkMacs: 8e10,
} as const;

/** The rule a network is checked by: its top-1 less its margin, and its KL plus its margin, within the target. */
export function meetsTarget(figures: { top1: number; kl: number }, margin: { top1: number; kl: number }, target: FidelityTarget): boolean {
  return figures.top1 - margin.top1 >= target.top1 && figures.kl + margin.kl <= target.kl;
}

/** Multiply-accumulates of one token through the ANN's linear layers and head. */
export function macsPerToken(ann: Pick<CausalLM, 'config'>): number {
  const c = ann.config, qW = c.numHeads * c.headDim, kvW = c.numKvHeads * c.headDim;
  const mlp = (c.gatedMlp ? 3 : 2) * c.hiddenSize * c.intermediateSize;
  const projections = c.embedDim !== c.hiddenSize ? 2 * c.embedDim * c.hiddenSize : 0;
  return c.numLayers * (c.hiddenSize * (qW + 2 * kvW) + qW * c.hiddenSize + mlp) + projections + c.embedDim * c.vocabSize;
}

/**
 * The fine-tuning stage. Its predicted cost is tokens per step × the linear layers' weights ×
 * planes × steps × secondsPerUnit; secondsPerUnit was measured on this project's 2-core machines
 * (40 steps of 4 × 64 tokens on stories260k at 9–12 planes: 88 s, float64 CPU training).
 */
export const FINETUNE = { steps: 40, lambdaSpikes: 2e-3, batchSize: 4, maxPredictedSeconds: 120, secondsPerUnit: 2.76e-9, cheaper: 0.95 } as const;

export function predictFineTuneSeconds(ann: Pick<CausalLM, 'config'>, steps: number, planes: number, tokensPerSample = 64): number {
  return steps * FINETUNE.batchSize * tokensPerSample * linearWeightCount(ann.config) * planes * FINETUNE.secondsPerUnit;
}

/**
 * The head stage (step 8): k outputs get the full planes (top-1 stayed the chosen network's at
 * k = 8–32 on three models, bench/head.bench.ts; 16 is under 3.2% of a 512-token vocabulary), and
 * how many coarse plane counts one pass scores.
 */
export const HEAD = { topK: 16, candidates: 4 } as const;

export interface SearchOptions {
  readonly target?: FidelityTarget;
  /** A weighted code (default phase-ternary). */
  readonly coding?: CodingName;
  /** Seeds the random halves the margins are measured on (default 0). */
  readonly seed?: number;
  /** The threshold quantile (default 1: the max, as the fixed conversion). */
  readonly quantile?: number;
  readonly backend?: Backend;
  /** Planes every site has while another is probed (default 12; raised up to 16 if that misses). */
  readonly highPlanes?: number;
  /** Fewest planes a site may get (default 2). */
  readonly minPlanes?: number;
  readonly onProgress?: (phase: SearchPhase, done: number, total: number) => void;
  /**
   * The fine-tuning stage: its steps, 0 for none, or 'auto' (the default): FINETUNE.steps where
   * the predicted cost is at most FINETUNE.maxPredictedSeconds, none above (`onNote` says so).
   */
  readonly finetune?: number | 'auto';
  readonly onNote?: (message: string) => void;
}

export type SearchPhase = 'fit' | 'reference' | 'baseline' | 'probe' | 'check' | 'finetune' | 'head';

export interface NetworkFigures {
  readonly top1: number;
  readonly kl: number;
  /** E_SNN / E_ANN at FP32, compute only, on the select part. */
  readonly energy_fp32: number;
}

export interface CheckRecord extends NetworkFigures {
  /** How many moves of the sequence this network took. */
  readonly moves: number;
  readonly top1_margin: number;
  readonly kl_margin: number;
  readonly meets: boolean;
}

/** What the search did, written to snn_config.json (`search`): no timings, so reruns are identical. */
export interface SearchRecord {
  readonly version: 2;
  readonly target: { readonly top1: number; readonly kl: number | null };
  readonly coding: CodingName;
  readonly seed: number;
  readonly quantile: number;
  readonly calibration: {
    readonly source: string;
    readonly fit_windows: number;
    readonly fit_tokens: number;
    readonly select_windows: number;
    readonly select_positions: number;
    readonly probe_windows: number;
    readonly probe_positions: number;
    /** 'site': a probe per site; 'kind': a probe per site kind (the budget left too few positions a site). */
    readonly probes_by: 'site' | 'kind';
  };
  readonly high_planes: number;
  readonly probe_planes: number;
  readonly min_planes: number;
  readonly margin_method: string;
  readonly baseline: NetworkFigures & { readonly meets: boolean };
  /** Per site: the KL it adds alone at probe_planes, and its operation counts at both plane counts. */
  readonly sensitivity: readonly { readonly site: string; readonly kl_added: number; readonly ops_high: number; readonly ops_probe: number }[];
  /** The greedy sequence: each move takes one plane from a site. */
  readonly moves: readonly { readonly step: number; readonly site: string; readonly planes: number; readonly predicted_kl: number; readonly predicted_energy_fp32: number }[];
  readonly checks: readonly CheckRecord[];
  /** The fine-tuning stage: whether it ran, why not, and what the tuned network did. */
  readonly finetune: {
    readonly steps: number;
    readonly predicted_seconds: number;
    readonly reason?: string;
    readonly lambda_spikes?: number;
    readonly check?: CheckRecord;
    readonly accepted?: boolean;
  };
  /** The head stage (step 8): what it predicted, what it scored, and why it did not run where it did not. */
  readonly head_stage: {
    readonly top_k: number;
    readonly mass_outside_top_k?: number;
    readonly kl_left?: number;
    /** The KL predicted one coarse plane below the fewest scored (over kl_left; absent at one plane). */
    readonly predicted_kl_below?: number;
    readonly reason?: string;
    readonly candidates: readonly (CheckRecord & { readonly coarse_planes: number; readonly predicted_kl_added: number })[];
  };
  readonly chosen: CheckRecord & {
    /** The thresholds are the fine-tuning stage's (else the fit part's calibration). */
    readonly tuned: boolean;
    readonly T: number;
    readonly planes: Record<string, number>;
    /** The two-stage head the head stage took (absent: one stage). */
    readonly head?: { readonly coarse_planes: number; readonly top_k: number };
    /** How far the chosen network is from the target on the select part (margins included), where it misses. */
    readonly miss?: { readonly top1?: number; readonly kl?: number };
  };
}

export interface TargetConversion extends ConvertedModel {
  readonly search: SearchRecord;
  /** Wall time per phase, seconds (not part of the record). */
  readonly seconds: Readonly<Record<SearchPhase | 'total', number>>;
  /** The record came from a stored search (cache.ts), not a new one. */
  readonly cached?: boolean;
}

const PROBE_DROP = 4;
/** Fewest positions a per-site probe may have; below it the probes go by site kind. */
const MIN_SITE_PROBE = 16;

/**
 * Convert `ann` to the cheapest layerwise network of a weighted code found to meet `target` on the
 * select part of `split` (module header). If no network meets it, the best one found is returned,
 * and `search.chosen.meets` is false with `miss` saying by how much.
 */
export async function convertToTarget(ann: CausalLM, split: CalibrationSplit, opts: SearchOptions = {}): Promise<TargetConversion> {
  const target = opts.target ?? DEFAULT_TARGET;
  const coding = opts.coding ?? 'phase-ternary';
  if (!isWeighted(coding)) throw new ArgumentError(`--target searches planes of a weighted code (phase, phase-ternary); --coding ${coding} takes a fixed --timesteps`);
  const seed = opts.seed ?? 0, quantile = opts.quantile ?? 1, minPlanes = opts.minPlanes ?? 2;
  if (!Number.isInteger(minPlanes) || minPlanes < 1) throw new ArgumentError(`minPlanes must be a positive integer, got ${minPlanes}`);
  const backend = opts.backend ?? ann.backend;
  const progress = opts.onProgress ?? (() => {});
  const seconds: Record<SearchPhase | 'total', number> = { fit: 0, reference: 0, baseline: 0, probe: 0, check: 0, finetune: 0, head: 0, total: 0 };
  const t0 = performance.now();
  const timed = async <R>(phase: SearchPhase, f: () => Promise<R> | R): Promise<R> => {
    const t = performance.now();
    try {
      return await f();
    } finally {
      seconds[phase] += (performance.now() - t) / 1000;
    }
  };
  const macs = macsPerToken(ann);
  const select = selectPart(ann, split);

  // 1. fit thresholds
  const { plan, calibration, fit } = await timed('fit', () => fitThresholds(ann, split, coding, quantile, (d, t) => progress('fit', d, t)));
  const ref = await timed('reference', () => annReference(ann, select, (d, t) => progress('reference', d, t)));
  const sites = plan.sites;
  // where the budget leaves fewer than MIN_SITE_PROBE positions a site, one probe per site kind
  // (every layer's site of that kind at probe planes together) replaces the per-site probes
  const byKind = Math.floor(BUDGET.probeMacs / macs / sites.length) < MIN_SITE_PROBE;
  const groups: { name: string; members: number[] }[] = byKind
    ? [...new Set(sites.map((s) => s.kind))].map((kind) => ({ name: kind, members: sites.flatMap((s, i) => (s.kind === kind ? [i] : [])) }))
    : sites.map((s, i) => ({ name: s.name, members: [i] }));
  const budgeted = Math.max(8, Math.floor(BUDGET.probeMacs / macs / groups.length));
  const probeWanted = Math.min(1024, budgeted);
  const probeWindows = windowsFor(ref, probeWanted);
  // where the budget binds, the last probe window is cut so the probes run no more positions than it gives
  const probeFull = ref.samples.slice(0, probeWindows - 1).reduce((a, s) => a + s.length, 0);
  const probeLast = budgeted < 1024 ? Math.min(ref.samples[probeWindows - 1]!.length, probeWanted - probeFull) : ref.samples[probeWindows - 1]!.length;
  const probePositions = probeFull + probeLast;
  const meets = (s: Scored): Omit<CheckRecord, 'moves'> => {
    const top1 = meanOf(s.agree), kl = meanOf(s.kl), m = targetMargin(s, seed);
    const ok = meetsTarget({ top1, kl }, m, target);
    return { top1, kl, energy_fp32: s.energy.presets.fp32.ratio, top1_margin: m.top1, kl_margin: m.kl, meets: ok };
  };

  // 3. baseline: every site at P_hi (raised while it misses)
  let high = opts.highPlanes ?? 12;
  let base!: SpikingLM, baseScore!: Scored, baseCheck!: Omit<CheckRecord, 'moves'>;
  for (;;) {
    base = replace(ann, calibration, { timesteps: high, coding, operators: COMPENSATED, backend });
    baseScore = await timed('baseline', () => scoreNetwork(base, ref));
    baseCheck = meets(baseScore);
    progress('baseline', 1, 1);
    if (baseCheck.meets || high + 2 > MAX_SITE_PLANES || opts.highPlanes !== undefined) break;
    base.dispose();
    high += 2;
  }
  const probePlanes = Math.max(minPlanes, high - PROBE_DROP);
  const energyUnit = ENERGY_PRESETS.fp32;
  const joules = (o: { acs: number; macs: number }) => o.acs * energyUnit.ac + o.macs * energyUnit.mac;
  const opsInput = (s: Scored, m: SpikingLM) => ({ config: m.config, schedule: m.schedule, coding: m.coding, timesteps: m.timesteps, stepsOf: (x: { name: string }) => m.stepsOf(x.name), maxSpikes: m.spiking.neuron.maxSpikes, tally: s.tally });

  const checks: CheckRecord[] = [{ moves: 0, ...baseCheck }];
  let moves: SearchRecord['moves'] = [];
  let sensitivity: SearchRecord['sensitivity'] = [];
  let chosen: { moves: number; planes: Record<string, number>; check: Omit<CheckRecord, 'moves'>; thresholds?: ReadonlyMap<string, Float32Array>; head?: HeadStages } = { moves: 0, planes: base.planesBySite(), check: baseCheck };
  let headStage: SearchRecord['head_stage'] = { top_k: HEAD.topK, reason: coding === 'phase-ternary' ? 'the baseline network misses the target' : 'the two-stage head needs the phase-ternary code', candidates: [] };
  let finetune: SearchRecord['finetune'] = { steps: 0, predicted_seconds: 0, reason: 'the baseline network misses the target' };
  try {
    if (baseCheck.meets) {
      // 4. probes, on the first probeWindows windows (the baseline's figures there, from a run on them)
      const baseProbe = probePositions === ref.positions ? baseScore : await timed('probe', () => scoreNetwork(base, ref, probeWindows, probeLast));
      const baseProbeKl = meanOf(baseProbe.kl);
      const sens: { site: string; c: number; eHigh: number; eProbe: number; opsHigh: number; opsProbe: number }[] = new Array(sites.length);
      for (const [g, group] of groups.entries()) {
        const probe = base.withPlanes(Object.fromEntries(group.members.map((i) => [sites[i]!.name, probePlanes])));
        try {
          const s = await timed('probe', () => scoreNetwork(probe, ref, probeWindows, probeLast));
          // a group's KL is shared equally by its sites (the KL of small independent errors adds up)
          const c = (meanOf(s.kl) - baseProbeKl) / group.members.length;
          for (const i of group.members) {
            const high = siteOps(opsInput(baseProbe, base), i), low = siteOps(opsInput(s, probe), i);
            sens[i] = { site: sites[i]!.name, c, eHigh: joules(high), eProbe: joules(low), opsHigh: high.acs + high.macs, opsProbe: low.acs + low.macs };
          }
        } finally {
          probe.dispose();
        }
        progress('probe', g + 1, groups.length);
      }
      // a site whose probe added nothing measurable still gets a small positive sensitivity
      const positive = sens.map((s) => s.c).filter((c) => c > 0).sort((a, b) => a - b);
      const floor = (positive[positive.length >> 1] ?? baseProbeKl) * 1e-3 + 1e-12;
      sensitivity = sens.map((s) => ({ site: s.site, kl_added: s.c, ops_high: s.opsHigh, ops_probe: s.opsProbe }));

      // 5. the greedy sequence of moves
      const energyAnn = baseScore.energy.presets.fp32.annJoules, energyBase = baseScore.energy.presets.fp32.snnJoules;
      // the probes ran on part of the select text: scale their per-site energies to the whole of it
      const scale = baseProbe === baseScore ? 1 : joulesOfSites(baseScore, base, sites.length, opsInput, joules) / Math.max(1e-30, joulesOfSites(baseProbe, base, sites.length, opsInput, joules));
      const planes = new Map(sites.map((s) => [s.name, high]));
      const model = sens.map((s) => ({
        site: s.site,
        c: Math.max(s.c, floor) * 4 ** probePlanes,
        // energy saved per plane removed, from the two measured points (the whole select part)
        slope: (s.eHigh - s.eProbe) * scale / (high - probePlanes),
      }));
      const klOf = (site: (typeof model)[number], p: number) => site.c * 4 ** -p;
      let predictedKl = meanOf(baseScore.kl), predictedEnergy = energyBase;
      const klCap = Math.min(Number.isFinite(target.kl) ? target.kl : 1e-2, 1e-2) * 64;
      const seq: SearchRecord['moves'][number][] = [];
      for (;;) {
        let best = -1, bestRatio = 0;
        for (const [j, site] of model.entries()) {
          const p = planes.get(site.site)!;
          if (p <= minPlanes || !(site.slope > 0)) continue;
          const ratio = site.slope / (klOf(site, p - 1) - klOf(site, p));
          if (ratio > bestRatio) {
            bestRatio = ratio;
            best = j;
          }
        }
        if (best < 0) break;
        const site = model[best]!, p = planes.get(site.site)!;
        const addKl = klOf(site, p - 1) - klOf(site, p);
        if (predictedKl + addKl > klCap) break;
        predictedKl += addKl;
        predictedEnergy -= site.slope;
        planes.set(site.site, p - 1);
        seq.push({ step: seq.length + 1, site: site.site, planes: p - 1, predicted_kl: predictedKl, predicted_energy_fp32: predictedEnergy / energyAnn });
      }
      moves = seq;
      const planesAfter = (k: number): Record<string, number> => {
        const out: Record<string, number> = Object.fromEntries(sites.map((s) => [s.name, high]));
        for (const m of seq.slice(0, k)) out[m.site] = m.planes;
        return out;
      };

      // 6. check prefixes of the sequence on the whole select part (bisection)
      const results = new Map<number, Omit<CheckRecord, 'moves'>>([[0, baseCheck]]);
      const check = async (k: number) => {
        const net = base.withPlanes(planesAfter(k));
        try {
          const r = meets(await timed('check', () => scoreNetwork(net, ref)));
          results.set(k, r);
          checks.push({ moves: k, ...r });
          progress('check', checks.length - 1, Math.ceil(Math.log2(seq.length + 2)) + 1);
          return r.meets;
        } finally {
          net.dispose();
        }
      };
      // the bisection stops when the checks' budget is spent (the longest prefix met so far is kept)
      const maxChecks = Math.max(6, Math.floor(BUDGET.checkMacs / (ref.positions * macs)));
      let lo = 0, hi = seq.length + 1;
      // start where the prediction reaches the KL target, or half way for a top-1-only target
      let first = Number.isFinite(target.kl) ? seq.findIndex((m) => m.predicted_kl > target.kl) : seq.length >> 1;
      if (first < 0) first = seq.length;
      if (first > 0) (await check(first)) ? (lo = first) : (hi = first);
      while (hi - lo > 1 && checks.length - 1 < maxChecks) {
        const mid = (lo + hi) >> 1;
        if (await check(mid)) lo = mid;
        else hi = mid;
      }
      chosen = { moves: lo, planes: planesAfter(lo), check: results.get(lo)! };

      // 7. fine-tuning: can trained thresholds make a cheaper network meet the target?
      const want = opts.finetune ?? 'auto';
      const candidate = seq.findIndex((m) => m.predicted_energy_fp32 <= chosen.check.energy_fp32 * FINETUNE.cheaper);
      const ftPlanes = candidate > 0 ? planesAfter(candidate) : chosen.planes;
      const defaultSteps = typeof want === 'number' ? want : FINETUNE.steps;
      const predicted = predictFineTuneSeconds(ann, defaultSteps, Math.max(...Object.values(ftPlanes)));
      const steps = want === 'auto' ? (predicted <= FINETUNE.maxPredictedSeconds ? FINETUNE.steps : 0) : want;
      finetune = { steps, predicted_seconds: Number(predicted.toFixed(1)) };
      if (steps === 0) {
        const reason = want === 'auto' ? `predicted ${predicted.toFixed(0)} s for ${FINETUNE.steps} steps, over the ${FINETUNE.maxPredictedSeconds} s of the default (ask for it with --finetune STEPS)` : 'not asked for';
        finetune = { ...finetune, reason };
        if (want === 'auto') opts.onNote?.(`fine-tuning stage off: ${reason}`);
      } else if (candidate <= chosen.moves) {
        finetune = { ...finetune, steps: 0, reason: 'no prefix of the sequence is predicted cheaper enough to try' };
      } else {
        const net = base.withPlanes(ftPlanes);
        try {
          const tuned = await timed('finetune', () => fineTune(net, fit, {
            steps, lambdaSpikes: FINETUNE.lambdaSpikes, batchSize: FINETUNE.batchSize, seed, onStep: (s) => progress('finetune', s.step, s.steps),
          }));
          const r = meets(await timed('finetune', () => scoreNetwork(tuned.snn, ref)));
          const accepted = r.meets && r.energy_fp32 < chosen.check.energy_fp32;
          finetune = { ...finetune, lambda_spikes: FINETUNE.lambdaSpikes, check: { moves: candidate, ...r }, accepted };
          if (accepted) chosen = { moves: candidate, planes: ftPlanes, check: r, thresholds: tuned.snn.spiking.thresholds };
          tuned.snn.dispose();
        } finally {
          net.dispose();
        }
      }

      // 8. the two-stage head
      if (coding === 'phase-ternary') {
        const headPlanes = chosen.planes.head_in!;
        const head = model.find((m) => m.site === 'head_in')!;
        const outside = massOutsideTopK(ref, ann.config.vocabSize, HEAD.topK);
        const klLeft = (Number.isFinite(target.kl) ? target.kl : klCap) - (chosen.check.kl + chosen.check.kl_margin);
        const predicted = (p: number) => (klOf(head, p) - klOf(head, headPlanes)) * outside;
        headStage = { top_k: HEAD.topK, mass_outside_top_k: outside, kl_left: klLeft, candidates: [] };
        if (headPlanes < 2) headStage = { ...headStage, reason: 'the head runs one plane' };
        else if (!(predicted(headPlanes - 1) <= klLeft)) headStage = { ...headStage, reason: `one coarse plane less is predicted to add KL ${predicted(headPlanes - 1).toExponential(2)}, over the ${klLeft.toExponential(2)} left` };
        else {
          let fewest = headPlanes - 1;
          while (fewest > 1 && predicted(fewest - 1) <= klLeft) fewest--;
          const counts = Array.from({ length: Math.min(HEAD.candidates, headPlanes - fewest) }, (_, i) => fewest + i);
          const stages = counts.map((p) => ({ coarsePlanes: p, topK: HEAD.topK }));
          // the chosen network (on the baseline's synapses unless its thresholds are the fine-tuned ones)
          const net = chosen.thresholds
            ? new SpikingLM(ann.config, ann.weights, backend, { ...base.spiking, thresholds: chosen.thresholds, timesteps: Math.max(...Object.values(chosen.planes)), planes: chosen.planes })
            : base.withPlanes(chosen.planes);
          try {
            const scored = await timed('head', () => scoreHeads(net, ref, stages));
            progress('head', 1, 1);
            const candidates = scored.map((sc, i) => ({ moves: chosen.moves, coarse_planes: counts[i]!, predicted_kl_added: predicted(counts[i]!), ...meets(sc) }));
            headStage = { ...headStage, ...(fewest > 1 ? { predicted_kl_below: predicted(fewest - 1) } : {}), candidates };
            const best = candidates.filter((c) => c.meets && c.energy_fp32 < chosen.check.energy_fp32).sort((a, b) => a.energy_fp32 - b.energy_fp32)[0];
            if (best) {
              const { coarse_planes: coarsePlanes, predicted_kl_added: _p, moves: _m, ...check } = best;
              chosen = { ...chosen, check, head: { coarsePlanes, topK: HEAD.topK } };
            }
          } finally {
            net.dispose();
          }
        }
      }
    }
  } finally {
    base.dispose();
  }
  const T = Math.max(...Object.values(chosen.planes));
  const snn = new SpikingLM(ann.config, ann.weights, backend, {
    timesteps: T, mode: 'spiking', schedule: 'layerwise', coding, neuron: base.spiking.neuron, thresholds: chosen.thresholds ?? base.spiking.thresholds,
    surrogate: base.spiking.surrogate, operators: COMPENSATED, planes: chosen.planes, ...(chosen.head ? { head: chosen.head } : {}),
  });
  const c = chosen.check;
  const miss = c.meets ? undefined : {
    ...(c.top1 - c.top1_margin < target.top1 ? { top1: target.top1 - (c.top1 - c.top1_margin) } : {}),
    ...(c.kl + c.kl_margin > target.kl ? { kl: c.kl + c.kl_margin - target.kl } : {}),
  };
  const search: SearchRecord = {
    version: 2, target: { top1: target.top1, kl: Number.isFinite(target.kl) ? target.kl : null }, coding, seed, quantile,
    calibration: {
      source: split.source, fit_windows: fit.samples.length, fit_tokens: fit.tokens, select_windows: select.samples.length, select_positions: ref.positions,
      probe_windows: probeWindows, probe_positions: probePositions, probes_by: byKind ? 'kind' : 'site',
    },
    high_planes: high, probe_planes: probePlanes, min_planes: minPlanes,
    margin_method: `${MARGIN_Z} × the standard deviation of top-1 and of KL over 32 seeded random subsets of ${Math.min(MARGIN_POSITIONS, ref.positions >> 1)} select positions (the size of an evaluation text) × √(1 + ${Math.min(MARGIN_POSITIONS, ref.positions >> 1)}/${ref.positions}) (the select part's own error): one-sided 95%`,
    baseline: { top1: baseCheck.top1, kl: baseCheck.kl, energy_fp32: baseCheck.energy_fp32, meets: baseCheck.meets },
    sensitivity, moves, checks, finetune, head_stage: headStage,
    chosen: {
      moves: chosen.moves, ...c, tuned: chosen.thresholds !== undefined, T, planes: chosen.planes,
      ...(chosen.head ? { head: { coarse_planes: chosen.head.coarsePlanes, top_k: chosen.head.topK } } : {}), ...(miss ? { miss } : {}),
    },
  };
  seconds.total = (performance.now() - t0) / 1000;
  const converted = finalize(snn, { plan, calibration, simplified: false, calibrationSource: `${fit.source} (${fit.samples.length} samples, ${fit.tokens} tokens)`, ...(ann.dir ? { sourceDir: ann.dir } : {}) });
  return { ...converted, search, seconds };
}

/** Step 1: thresholds from the fit part (its first windows, within BUDGET.fitMacs). */
export function fitThresholds(ann: CausalLM, split: CalibrationSplit, coding: CodingName, quantile: number, onProgress?: (done: number, total: number) => void) {
  const fit = takeTokens(split.fit, Math.max(1024, Math.floor(BUDGET.fitMacs / macsPerToken(ann))));
  const plan = trace(ann, 'layerwise');
  const calibration = calibrate(plan, observe(plan, ann, fit, { ...(onProgress ? { onProgress } : {}) }), { coding, quantile });
  return { plan, calibration, fit };
}

/** The windows of the select part a search scores on: as many as the budget gives the model (at least 128 tokens). */
export function selectPart(ann: Pick<CausalLM, 'config'>, split: CalibrationSplit): CalibrationData {
  return takeTokens(split.select, Math.max(128, Math.floor(BUDGET.selectMacs / macsPerToken(ann))));
}

/**
 * The network a search record chose, rebuilt: thresholds fitted anew on the same fit part (the
 * same code, so the same values) and the record's planes. What a cached search (cache.ts) gives.
 */
export function networkFromRecord(ann: CausalLM, split: CalibrationSplit, search: SearchRecord, backend: Backend = ann.backend, tuned?: ReadonlyMap<string, Float32Array>): ConvertedModel {
  if (search.chosen.tuned && !tuned) throw new ArgumentError('networkFromRecord: the search kept fine-tuned thresholds; pass them (the stored search holds them)');
  const { plan, calibration, fit } = fitThresholds(ann, split, search.coding, search.quantile);
  const snn = new SpikingLM(ann.config, ann.weights, backend, {
    timesteps: search.chosen.T, mode: 'spiking', schedule: 'layerwise', coding: search.coding, neuron: { ...DEFAULT_NEURON },
    thresholds: tuned ?? new Map([...calibration.sites].map(([k, v]) => [k, v.theta])), surrogate: { name: 'atan', alpha: 2 }, operators: COMPENSATED, planes: search.chosen.planes,
    ...(search.chosen.head ? { head: { coarsePlanes: search.chosen.head.coarse_planes, topK: search.chosen.head.top_k } } : {}),
  });
  return finalize(snn, { plan, calibration, simplified: false, calibrationSource: `${fit.source} (${fit.samples.length} samples, ${fit.tokens} tokens)`, ...(ann.dir ? { sourceDir: ann.dir } : {}) });
}

/** The first windows of the reference holding at least `positions` positions (at least one). */
function windowsFor(ref: Reference, positions: number): number {
  let n = 0, w = 0;
  while (w < ref.samples.length && n < positions) n += ref.samples[w++]!.length;
  return Math.max(1, w);
}

function joulesOfSites(s: Scored, m: SpikingLM, count: number, opsInput: (s: Scored, m: SpikingLM) => Parameters<typeof siteOps>[0], joules: (o: { acs: number; macs: number }) => number): number {
  let e = 0;
  for (let i = 0; i < count; i++) e += joules(siteOps(opsInput(s, m), i));
  return e;
}

