/**
 * Acceptance figures measured on the bundled evaluation text (never the calibration text), each
 * printed with the spikes and energy it cost: the default (layerwise, ternary weighted spikes)
 * conversion against issue 9's targets, and the stepwise rate conversion against issue 4's.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_CONVERSION, convertModelToSpiking, createCalibrationData, replaceGeluWithRelu } from '../src/convert/api.js';
import { bundledText } from '../src/convert/calibration-data.js';
import { loadModel } from '../src/nn/model.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';
import { type FidelityReport, logLogSlope, measureFidelity } from '../src/snn/fidelity.js';
import { DEFAULT_NEURON } from '../src/snn/neurons.js';
import { SpikingLM } from '../src/snn/model.js';
import { fixtureDir } from './helpers/fixtures.js';

const TS = [8, 16, 32, 64, 128];
const lines: string[] = [];
const log = (what: string, r: FidelityReport) => {
  lines.push(`${what} (${r.positions} positions):`);
  for (const x of r.results) {
    lines.push(`  ${x.schedule} ${x.coding} T=${String(x.T).padStart(3)} top-1 ${(100 * x.top1_agreement).toFixed(2)}%  KL ${x.kl.toExponential(2)}  mean|Δ| ${x.mean_abs_logit_err.toFixed(4)}  distinct ${x.distinct_predictions_ann}/${x.distinct_predictions_snn}  ppl ${x.ppl_ann.toFixed(2)}/${x.ppl_snn.toFixed(2)}  spikes/neuron/step ${x.spike_rate.toFixed(3)}  spikes/neuron/token ${x.spikes_per_neuron_per_token.toFixed(3)}  max/step ${x.max_spikes_per_neuron_per_step}  E/E_ANN fp32 ${x.energy_ratio.fp32.toFixed(3)}${x.top1_agreement_above_margin !== undefined ? `  top-1 (margin ≥ .05) ${(100 * x.top1_agreement_above_margin).toFixed(2)}%` : ''}`);
  }
};
afterAll(() => console.log(lines.join('\n')));

/** The stepwise rate conversion at T = 128 (one run decodes every smaller T). */
async function setup(name: 'stories260k' | 'gpt2-random-f16', relu = false) {
  const dir = fixtureDir(name);
  const original = loadModel(dir);
  const ann = relu ? replaceGeluWithRelu(original) : original;
  const tok = loadTokenizer(dir);
  const ids = tok.encode(bundledText('eval-stories.txt').text.replace(/\s*\n\s*/g, ' ').trim()).slice(0, 300);
  const { snn } = await convertModelToSpiking(ann, createCalibrationData(tok), { timesteps: 128, schedule: 'stepwise', coding: 'rate' });
  return { original, ann, snn, ids };
}

const evalIds = (name: 'stories260k' | 'gpt2-random-f16', n?: number) => {
  const tok = loadTokenizer(fixtureDir(name));
  const ids = tok.encode(bundledText('eval-stories.txt').text.replace(/\s*\n\s*/g, ' ').trim());
  return { tok, ids: n === undefined ? ids : ids.slice(0, n) };
};

describe('the default conversion (layerwise, ternary weighted spikes): faithful and cheaper than the ANN', () => {
  const T = DEFAULT_CONVERSION.timesteps;
  it(`stories260k, the whole evaluation text at T = ${T}: top-1 ≥ 99%, KL ≤ 1e-3, E_SNN/E_ANN ≤ 0.6 at FP32, at most one spike per neuron per step`, async () => {
    const ann = loadModel(fixtureDir('stories260k'));
    const { tok, ids } = evalIds('stories260k');
    const { snn } = await convertModelToSpiking(ann, createCalibrationData(tok));
    const r = await measureFidelity(ann, snn, ids, [T - 2, T, T + 2]);
    log('stories260k, default conversion', r);
    expect(r.positions).toBeGreaterThan(1000);
    const d = at(r, T);
    expect(d.top1_agreement).toBeGreaterThanOrEqual(0.99);
    expect(d.kl).toBeLessThanOrEqual(1e-3);
    expect(d.energy_ratio.fp32).toBeLessThanOrEqual(0.6);
    for (const x of r.results) {
      expect(x.max_spikes_per_neuron_per_step).toBe(1);
      expect(x.clipped).toBe(0);
      expect(Math.abs(x.distinct_predictions_snn - x.distinct_predictions_ann)).toBeLessThanOrEqual(0.1 * x.distinct_predictions_ann);
    }
    // weighted spikes converge exponentially: two more planes cut the error about four times
    expect(at(r, T - 2).mean_abs_logit_err / d.mean_abs_logit_err).toBeGreaterThan(3);
    expect(d.mean_abs_logit_err / at(r, T + 2).mean_abs_logit_err).toBeGreaterThan(3);
  });

  it(`gpt2-random-f16 (not tuned on; random weights, many near-tied logits): KL ≤ 1e-3, top-1 beyond near-ties ≥ 99%, E ≤ 0.6 at T = ${T}`, async () => {
    const ann = loadModel(fixtureDir('gpt2-random-f16'));
    const { tok, ids } = evalIds('gpt2-random-f16', 1000);
    const { snn } = await convertModelToSpiking(ann, createCalibrationData(tok));
    const r = await measureFidelity(ann, snn, ids, [T], { marginThreshold: 0.05 });
    log('gpt2-random-f16, default conversion', r);
    const d = at(r, T);
    expect(d.kl).toBeLessThanOrEqual(1e-3);
    expect(d.positions_above_margin!).toBeGreaterThanOrEqual(300);
    expect(d.top1_agreement_above_margin!).toBeGreaterThanOrEqual(0.99);
    expect(d.energy_ratio.fp32).toBeLessThanOrEqual(0.6);
    expect(d.max_spikes_per_neuron_per_step).toBe(1);
  });
});

const at = (r: FidelityReport, T: number) => r.results.find((x) => x.T === T)!;
const slope16to128 = (r: FidelityReport) => {
  const rows = r.results.filter((x) => x.T >= 16);
  return logLogSlope(rows.map((x) => x.T), rows.map((x) => x.mean_abs_logit_err));
};

describe('stories260k (real weights), stepwise rate conversion (no regression from issue 4)', () => {
  it('top-1 ≥ 95% at T=32 and ≥ 98% at T=128, KL ≤ 0.01 at T=32, error slope ≈ −1, no collapse', async () => {
    const { ann, snn, ids } = await setup('stories260k');
    const r = await measureFidelity(ann, snn, ids, TS);
    log('stories260k', r);
    expect(r.positions).toBeGreaterThanOrEqual(256);
    expect(at(r, 32).top1_agreement).toBeGreaterThanOrEqual(0.95);
    expect(at(r, 128).top1_agreement).toBeGreaterThanOrEqual(0.98);
    expect(at(r, 32).kl).toBeLessThanOrEqual(0.01);
    const slope = slope16to128(r);
    lines.push(`  log-log slope of mean |Δlogit| over T=16…128: ${slope.toFixed(3)}`);
    expect(slope).toBeGreaterThanOrEqual(-1.3);
    expect(slope).toBeLessThanOrEqual(-0.7);
    for (const x of r.results) {
      expect(Math.abs(x.distinct_predictions_snn - x.distinct_predictions_ann)).toBeLessThanOrEqual(0.1 * x.distinct_predictions_ann);
      expect(x.spike_rate).toBeGreaterThan(0);
    }
    // the error falls as T grows (an envelope from T = 8 on)
    for (let i = 1; i < r.results.length; i++) expect(r.results[i]!.mean_abs_logit_err).toBeLessThan(r.results[i - 1]!.mean_abs_logit_err);
  });
});

describe('generality of the stepwise rate conversion: gpt2-random-f16', () => {
  it('KL ≤ 0.01 at T=32, slope ≈ −1, no collapse; top-1 beyond near-ties ≥ 95% at T=32 and ≥ 98% at T=128', async () => {
    const { ann, snn, ids } = await setup('gpt2-random-f16');
    const r = await measureFidelity(ann, snn, ids, TS, { marginThreshold: 0.05 });
    log('gpt2-random-f16 (random weights: many near-tied logits)', r);
    expect(at(r, 32).kl).toBeLessThanOrEqual(0.01);
    const slope = slope16to128(r);
    lines.push(`  log-log slope over T=16…128: ${slope.toFixed(3)}`);
    expect(slope).toBeGreaterThanOrEqual(-1.3);
    expect(slope).toBeLessThanOrEqual(-0.7);
    for (const x of r.results) expect(Math.abs(x.distinct_predictions_snn - x.distinct_predictions_ann)).toBeLessThanOrEqual(0.1 * x.distinct_predictions_ann);
    // Random weights leave ~20% of positions with a top-2 margin under 0.05; top-1 is judged beyond them.
    expect(at(r, 32).positions_above_margin!).toBeGreaterThanOrEqual(200);
    expect(at(r, 32).top1_agreement_above_margin!).toBeGreaterThanOrEqual(0.95);
    expect(at(r, 128).top1_agreement_above_margin!).toBeGreaterThanOrEqual(0.98);
  });
});

describe('after replaceGeluWithRelu the SNN converges to the ReLU network (a different ANN)', () => {
  it.for(['gpt2-random-f16', 'stories260k'] as const)('%s: convergence to the ReLU ANN, and what the swap costs against the original', async (name) => {
    const { original, ann, snn, ids } = await setup(name, true);
    const r = await measureFidelity(ann, snn, ids, TS);
    log(`${name} with ReLU: SNN vs the ReLU ANN`, r);
    const slope = slope16to128(r);
    lines.push(`  log-log slope over T=16…128: ${slope.toFixed(3)}`);
    expect(slope).toBeLessThan(-0.7);
    expect(at(r, 128).kl).toBeLessThan(0.01);
    // the swap itself: the ReLU ANN (exact mode) against the original ANN
    const reluExact = new SpikingLM(ann.config, ann.weights, ann.backend, { timesteps: 1, mode: 'exact', neuron: DEFAULT_NEURON, thresholds: new Map(), surrogate: { name: 'atan', alpha: 2 } });
    const cost = await measureFidelity(original, reluExact, ids, [1]);
    lines.push(`  the swap's cost, ReLU ANN vs original ANN: top-1 ${(100 * cost.results[0]!.top1_agreement).toFixed(1)}%, KL ${cost.results[0]!.kl.toFixed(4)}, ppl ${cost.results[0]!.ppl_ann.toFixed(2)} → ${cost.results[0]!.ppl_snn.toFixed(2)}`);
    expect(cost.results[0]!.kl).toBeGreaterThan(at(r, 128).kl); // the swap costs more than the conversion at T=128
  });
});
