/**
 * The target-driven conversion on models it was not tuned on: for each, the default target's
 * search (a fresh one, never the stored search), its figures on the calibration text's select part
 * and on the evaluation texts (which only report: nothing here chooses on them), the gap between
 * the two, the cheapest uniform T (same thresholds) that meets the target on the select part for
 * comparison, the memory-aware ratios, and how long each phase took. `SPIKELM_BENCH_TARGET=gpt2-small`
 * adds the GPT-2-small-shaped random model with a KL-only target, timed against the fixed conversion
 * of the same run.
 */
import { DEFAULT_CONVERSION, convertModelToSpiking } from '../src/convert/api.js';
import { bundledText, createCalibrationData } from '../src/convert/calibration-data.js';
import { convertToTarget } from '../src/convert/search/planes.js';
import { annReference, halfSpread, scoreNetwork } from '../src/convert/search/selection.js';
import { splitCalibration } from '../src/convert/search/split.js';
import { DEFAULT_TARGET, type FidelityTarget } from '../src/convert/search/target.js';
import { GPT2_SMALL, cachedRandomGpt2 } from '../src/bench/random-model.js';
import { loadModel } from '../src/nn/model.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';
import { measureFidelity } from '../src/snn/fidelity.js';
import { BUNDLED_MODEL } from '../src/bundled.js';
import { perturbedStories } from './finetune.bench.js';
import type { BenchRow, Suite } from './harness.js';
import { modelDir } from './model.bench.js';

interface Case {
  readonly name: string;
  readonly dir: () => string;
  readonly target: FidelityTarget;
  /** Random weights: also report top-1 over positions whose ANN top-2 margin is ≥ 0.05. */
  readonly random?: boolean;
}

const CASES: readonly Case[] = [
  { name: 'stories260k', dir: () => BUNDLED_MODEL, target: DEFAULT_TARGET },
  { name: 'perturbed stories260k (seed 1)', dir: () => perturbedStories(1), target: DEFAULT_TARGET },
  { name: 'perturbed stories260k (seed 2)', dir: () => perturbedStories(2), target: DEFAULT_TARGET },
  { name: 'gpt2-random-f16, KL-only', dir: () => modelDir('gpt2-random-f16'), target: { top1: 0, kl: 1e-3 }, random: true },
];

const pct = (x: number) => Number((100 * x).toFixed(2));

export const targetSuite: Suite = {
  name: 'target',
  description: 'the target-driven conversion on models it was not tuned on: select vs evaluation figures, energy, the cheapest uniform T, search time',
  async run(ctx) {
    const rows: BenchRow[] = [];
    const filter = process.env.SPIKELM_BENCH_TARGET;
    for (const c of CASES.filter((x) => !filter || x.name.includes(filter))) {
      const dir = c.dir();
      const ann = loadModel(dir), tok = loadTokenizer(dir);
      const split = splitCalibration(tok);
      const r = await convertToTarget(ann, split, { target: c.target });
      const s = r.search, ch = s.chosen;
      const evalIds = tok.encode(bundledText('eval-stories.txt').text.replace(/\s*\n\s*/g, ' ').trim());
      const ev = (await measureFidelity(ann, r.snn, evalIds, [r.snn.timesteps], { ...(c.random ? { marginThreshold: 0.05 } : {}) })).results[0]!;
      // the cheapest uniform T with the same thresholds that meets the target on the select part
      const ref = await annReference(ann, { samples: split.select.samples.slice(0, s.calibration.select_windows), source: '', tokens: 0 });
      let uniform: { T: number; energy: number; evalTop1: number; evalKl: number; evalEnergy: number } | undefined;
      // uniform planes and a one-stage head: what the search improves on
      const oneStage = r.snn.with({ head: undefined });
      for (let T = 5; T <= 14 && !uniform; T++) {
        const m = oneStage.withPlanes(Object.fromEntries(r.snn.sites.map((x) => [x.name, T])));
        const sc = await scoreNetwork(m, ref);
        const mean = (a: ArrayLike<number>) => Array.from(a).reduce((x, y) => x + y, 0) / a.length;
        const sp = halfSpread(sc, s.seed);
        if (mean(sc.agree) - sp.top1 >= c.target.top1 && mean(sc.kl) + sp.kl <= c.target.kl) {
          const u = (await measureFidelity(ann, m, evalIds, [T])).results[0]!;
          uniform = { T, energy: sc.energy.presets.fp32.ratio, evalTop1: u.top1_agreement, evalKl: u.kl, evalEnergy: u.energy_ratio.fp32 };
        }
        m.dispose();
      }
      const mem = ev.energy_with_memory!;
      ctx.log(`${c.name}: select ${pct(ch.top1)}% ± ${pct(ch.top1_margin)}, KL ${ch.kl.toExponential(2)}, E ${ch.energy_fp32.toFixed(3)} (${ch.meets ? 'meets' : 'misses'}); ` +
        `eval-stories ${pct(ev.top1_agreement)}%, KL ${ev.kl.toExponential(2)}, E ${ev.energy_ratio.fp32.toFixed(3)}; planes ${Math.min(...Object.values(ch.planes))}–${ch.T}; ` +
        `head ${ch.head ? `${ch.head.coarse_planes} of ${ch.planes.head_in} planes to all, the rest to the top ${ch.head.top_k}` : `one stage (${s.head_stage.reason ?? 'no candidate cheaper'})`}; ` +
        `uniform ${uniform ? `T=${uniform.T}: E ${uniform.evalEnergy.toFixed(3)} (eval top-1 ${pct(uniform.evalTop1)}%)` : 'none ≤ 14'}; search ${r.seconds.total.toFixed(0)} s`);
      rows.push({
        suite: 'target', name: c.name, meanMs: r.seconds.total * 1000, samples: 1,
        metrics: {
          target: `top1=${c.target.top1},kl=${c.target.kl}`, meets: ch.meets ? 1 : 0, T: ch.T, minPlanes: Math.min(...Object.values(ch.planes)),
          selectPositions: s.calibration.select_positions, fitTokens: s.calibration.fit_tokens, probePositions: s.calibration.probe_positions,
          selectTop1: pct(ch.top1), selectTop1Margin: pct(ch.top1_margin), selectKl: ch.kl, selectKlMargin: ch.kl_margin, selectEnergyFp32: ch.energy_fp32,
          evalPositions: evalIds.length,
          evalTop1: pct(ev.top1_agreement), evalKl: ev.kl, evalEnergyFp32: ev.energy_ratio.fp32, evalEnergyFp16: ev.energy_ratio.fp16, evalEnergyInt8: ev.energy_ratio.int8,
          ...(c.random ? { evalTop1AboveMargin: pct(ev.top1_agreement_above_margin!) } : {}),
          gapTop1Points: Number((100 * (ev.top1_agreement - ch.top1)).toFixed(2)), gapKl: ev.kl - ch.kl,
          spikesPerNeuronPerToken: ev.spikes_per_neuron_per_token, maxSpikesPerNeuronPerStep: ev.max_spikes_per_neuron_per_step,
          memoryDecodeFp32: mem.decode.fp32.ratio, memoryPrefillFp32: mem.prefill.fp32.ratio, memoryDecodeInt8: mem.decode.int8.ratio, memoryPrefillInt8: mem.prefill.int8.ratio,
          uniformT: uniform?.T ?? -1, uniformEvalEnergyFp32: uniform?.evalEnergy ?? NaN, uniformEvalTop1: uniform ? pct(uniform.evalTop1) : NaN,
          seconds: Number(r.seconds.total.toFixed(1)), fitS: Number(r.seconds.fit.toFixed(1)), referenceS: Number(r.seconds.reference.toFixed(1)),
          baselineS: Number(r.seconds.baseline.toFixed(1)), probeS: Number(r.seconds.probe.toFixed(1)), checkS: Number(r.seconds.check.toFixed(1)), checks: s.checks.length,
          headS: Number(r.seconds.head.toFixed(1)), headCoarsePlanes: ch.head?.coarse_planes ?? -1, headPlanes: ch.planes.head_in!, headTopK: ch.head?.top_k ?? -1,
          headCandidates: s.head_stage.candidates.length, ...(s.head_stage.reason ? { headSkipped: s.head_stage.reason } : {}),
        },
      });
      oneStage.dispose();
      r.snn.dispose();
    }
    if (filter === 'gpt2-small') {
      // the KL-only search on the GPT-2-small-shaped random model against the fixed conversion, same run
      const dir = cachedRandomGpt2(GPT2_SMALL, { tokenizerFrom: modelDir('gpt2-random-f16') });
      const ann = loadModel(dir), tok = loadTokenizer(dir);
      const t0 = performance.now();
      const fixed = await convertModelToSpiking(ann, createCalibrationData(tok), { timesteps: DEFAULT_CONVERSION.timesteps });
      const fixedS = (performance.now() - t0) / 1000;
      fixed.snn.dispose();
      const r = await convertToTarget(ann, splitCalibration(tok), { target: { top1: 0, kl: 1e-3 } });
      ctx.log(`gpt2-small KL-only: fixed conversion ${fixedS.toFixed(1)} s, search ${r.seconds.total.toFixed(1)} s (${(r.seconds.total / fixedS).toFixed(2)}×): ${JSON.stringify(r.seconds)}`);
      rows.push({
        suite: 'target', name: 'gpt2-small-shaped random, KL-only target', meanMs: r.seconds.total * 1000, samples: 1,
        metrics: {
          fixedConversionS: Number(fixedS.toFixed(1)), searchS: Number(r.seconds.total.toFixed(1)), ratio: Number((r.seconds.total / fixedS).toFixed(2)),
          fitS: Number(r.seconds.fit.toFixed(1)), referenceS: Number(r.seconds.reference.toFixed(1)), baselineS: Number(r.seconds.baseline.toFixed(1)), probeS: Number(r.seconds.probe.toFixed(1)), checkS: Number(r.seconds.check.toFixed(1)),
          meets: r.search.chosen.meets ? 1 : 0, selectKl: r.search.chosen.kl, selectEnergyFp32: r.search.chosen.energy_fp32, T: r.search.chosen.T,
          fitTokens: r.search.calibration.fit_tokens, selectPositions: r.search.calibration.select_positions, probePositions: r.search.calibration.probe_positions, checks: r.search.checks.length,
        },
      });
      r.snn.dispose();
    }
    return rows;
  },
};
