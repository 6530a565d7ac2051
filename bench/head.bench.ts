/**
 * A two-stage head, measured before it is built (README: Conversion to a fidelity target): the
 * head's input keeps the planes the search chose (P), but only its first P_c planes reach all V
 * outputs, and the remaining planes reach only the k outputs whose partial logits lead. A weighted
 * code's planes are a prefix code, so the first P_c planes are the network with P_c planes at the
 * head; the suite emulates the two-stage head on the select part of the calibration text: the
 * logits of the network with P_c head planes, their top k replaced by the chosen network's, scored
 * against the ANN; energy: the coarse network's, plus the extra head events × k accumulates.
 * Searches run without the fine-tuning stage (the thresholds are the fit part's).
 */
import { convertToTarget, selectPart } from '../src/convert/search/planes.js';
import { annReference, meanOf, scoreNetwork } from '../src/convert/search/selection.js';
import { splitCalibration } from '../src/convert/search/split.js';
import { BUNDLED_MODEL } from '../src/bundled.js';
import { loadModel } from '../src/nn/model.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';
import { ENERGY_PRESETS } from '../src/snn/energy.js';
import type { SpikingLM } from '../src/snn/model.js';
import { cachedRandomGpt2 } from '../src/bench/random-model.js';
import { perturbedStories } from './finetune.bench.js';
import { modelDir } from './model.bench.js';
import type { BenchRow, Suite } from './harness.js';

const CASES = [
  { name: 'stories260k', dir: () => BUNDLED_MODEL },
  { name: 'perturbed stories260k (seed 2)', dir: () => perturbedStories(2) },
  // GPT-2's vocabulary on a held-out-sized model: the head is 67% of the ANN's multiply-accumulates
  { name: 'random GPT-2, 8 layers × 256, 50,257 tokens', dir: () => cachedRandomGpt2({ layers: 8, width: 256, heads: 4, vocab: 50257, positions: 1024 }, { tokenizerFrom: modelDir('gpt2-random-f16') }) },
];

/** The indices of the k largest entries of row (ties: lower index first), by selection, not a sort. */
export function leading(row: Float64Array, k: number): number[] {
  const tmp = Float64Array.from(row);
  // quickselect the k-th largest value
  let lo = 0, hi = tmp.length - 1;
  const want = Math.min(k, tmp.length) - 1;
  while (lo < hi) {
    const pivot = tmp[(lo + hi) >> 1]!;
    let i = lo, j = hi;
    while (i <= j) {
      while (tmp[i]! > pivot) i++;
      while (tmp[j]! < pivot) j--;
      if (i <= j) [tmp[i], tmp[j]] = [tmp[j]!, tmp[i]!], i++, j--;
    }
    if (want <= j) hi = j;
    else if (want >= i) lo = i;
    else break;
  }
  const kth = tmp[want]!, out: number[] = [];
  for (let i = 0; i < row.length; i++) if (row[i]! > kth) out.push(i);
  for (let i = 0; i < row.length && out.length < k; i++) if (row[i] === kth) out.push(i);
  return out;
}

async function allLogits(m: SpikingLM, ids: readonly number[]): Promise<Float32Array> {
  const o = m.forward(ids, m.newCache(ids.length), { allLogits: true });
  const l = (await m.backend.read(o.logits)).data;
  for (const t of [o.logits, o.stats]) m.backend.dispose(t);
  return l;
}

export const headSuite: Suite = {
  name: 'head',
  description: 'a two-stage head emulated on the select part: the first P_c planes of the head input to every output, the rest to the k leading ones',
  async run(ctx) {
    const rows: BenchRow[] = [];
    for (const c of ctx.quick ? CASES.slice(0, 1) : CASES) {
      const dir = c.dir();
      const ann = loadModel(dir), tok = loadTokenizer(dir);
      const split = splitCalibration(tok);
      const { snn } = await convertToTarget(ann, split, { finetune: 0 });
      const ref = await annReference(ann, selectPart(ann, split));
      const V = ann.config.vocabSize, P = snn.planesBySite()['head_in']!;
      const chosen = await scoreNetwork(snn, ref);
      const headEvents = (s: typeof chosen) => s.tally.summary().perSite.find((x) => x.site === 'head_in')!.events;
      ctx.log(`${c.name}: the chosen network (head_in ${P} planes): top-1 ${(100 * meanOf(chosen.agree)).toFixed(2)}%, KL ${meanOf(chosen.kl).toExponential(2)}, E/E_ANN ${chosen.energy.presets.fp32.ratio.toFixed(3)}`);
      const fine: Float32Array[] = [];
      for (const ids of ref.samples) fine.push(await allLogits(snn, ids));
      for (const drop of ctx.quick ? [4] : [2, 3, 4]) {
        const coarse = snn.withPlanes({ head_in: P - drop });
        const sc = await scoreNetwork(coarse, ref);
        const coarseLogits: Float32Array[] = [];
        for (const ids of ref.samples) coarseLogits.push(await allLogits(coarse, ids));
        for (const k of [8, 32]) {
          let agree = 0, kl = 0, n = 0;
          for (let w = 0; w < ref.samples.length; w++) {
            const p = ref.probs[w]!, a = coarseLogits[w]!, b = fine[w]!;
            for (let t = 0; t < ref.samples[w]!.length; t++, n++) {
              const row = Float64Array.from(a.subarray(t * V, (t + 1) * V));
              const lead = leading(row, k);
              for (const i of lead) row[i] = b[t * V + i]!;
              let mx = -Infinity, top = 0;
              for (let i = 0; i < V; i++) if (row[i]! > mx) [mx, top] = [row[i]!, i];
              let z = 0;
              for (let i = 0; i < V; i++) z += Math.exp(row[i]! - mx);
              const lz = mx + Math.log(z);
              let d = 0;
              for (let i = 0; i < V; i++) {
                const pi = p[t * V + i]!;
                if (pi > 0) d += pi * (Math.log(pi) - (row[i]! - lz));
              }
              kl += Math.max(0, d);
              if (top === ref.argmax[w]![t]) agree++;
            }
          }
          const energy = sc.energy.presets.fp32.ratio + ((headEvents(chosen) - headEvents(sc)) * k * ENERGY_PRESETS.fp32.ac) / sc.energy.presets.fp32.annJoules;
          ctx.log(`  head_in ${P - drop} planes to all ${V} outputs, ${P} to the leading ${k}: top-1 ${(100 * agree / n).toFixed(2)}%, KL ${(kl / n).toExponential(2)}, E/E_ANN ${energy.toFixed(3)} ` +
            `(${P - drop} planes alone: ${(100 * meanOf(sc.agree)).toFixed(2)}%, ${meanOf(sc.kl).toExponential(2)}, ${sc.energy.presets.fp32.ratio.toFixed(3)})`);
          rows.push({
            suite: 'head', name: `${c.name}, head ${P - drop}/${P} planes, k ${k}`, meanMs: 0, samples: n,
            metrics: {
              top1: Number((100 * agree / n).toFixed(2)), kl: kl / n, energyFp32: energy,
              chosenTop1: Number((100 * meanOf(chosen.agree)).toFixed(2)), chosenKl: meanOf(chosen.kl), chosenEnergyFp32: chosen.energy.presets.fp32.ratio,
              coarseTop1: Number((100 * meanOf(sc.agree)).toFixed(2)), coarseKl: meanOf(sc.kl), coarseEnergyFp32: sc.energy.presets.fp32.ratio,
            },
          });
        }
        coarse.dispose();
      }
      snn.dispose();
    }
    return rows;
  },
};
