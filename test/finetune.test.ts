/**
 * Fine-tuning end to end (src/train, src/snn/adapters.ts, `spikelm finetune`): the training network
 * computes what the SpikingLM computes; a short run is deterministic, lowers the loss it minimises
 * and leaves its input alone; the spike penalty lowers spikes; adapters survive save and load; the
 * CLI writes a model that loads and is still matched to its ANN. (The acceptance figures, hundreds
 * of steps, are a benchmark: `npm run bench -- finetune`.)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { etaText } from '../src/cli/finetune.js';
import { main } from '../src/cli/main.js';
import { convertModelToSpiking, createCalibrationData, saveSnnModel } from '../src/convert/api.js';
import { assertSameModel, loadSnnModel } from '../src/convert/snn-io.js';
import { loadModel } from '../src/nn/model.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';
import { applyAdapters } from '../src/snn/adapters.js';
import type { SpikingLM } from '../src/snn/model.js';
import { STAT, STATS_WIDTH } from '../src/tensor/kernels/codes.js';
import { fineTune } from '../src/train/finetune.js';
import { TrainNet } from '../src/train/network.js';
import { fixtureDir } from './helpers/fixtures.js';
import { TOL, expectClose } from './helpers/tolerance.js';

const stories = fixtureDir('stories260k');
const tok = loadTokenizer(stories);
const ann = loadModel(stories);
const calib = createCalibrationData(tok);
const small = createCalibrationData(tok, { numSamples: 4, maxLength: 24 });
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-finetune-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const logitsOf = async (snn: SpikingLM, ids: readonly number[]) => (await snn.backend.read(snn.forward(ids, snn.newCache(), { allLogits: true }).logits)).data;

describe('the training network is the spiking network', () => {
  const ids = calib.samples[1]!;
  const cases = [
    { name: 'default (layerwise phase-ternary T=9, per-site steps)', opts: {} },
    { name: 'layerwise phase T=7', opts: { coding: 'phase', timesteps: 7 } },
    { name: 'layerwise rate T=8', opts: { coding: 'rate', timesteps: 8 } },
    { name: 'stepwise rate T=8', opts: { schedule: 'stepwise', coding: 'rate', timesteps: 8 } },
    { name: 'stepwise rate T=5, centred', opts: { schedule: 'stepwise', coding: 'rate', timesteps: 5, center: true } },
  ] as const;
  for (const c of cases) {
    it(`${c.name}: logits equal SpikingLM's (float64 vs float32), layerwise events equal its statistics`, async () => {
      const { snn } = await convertModelToSpiking(ann, calib, c.opts);
      const net = new TrainNet(snn);
      const res = net.forward(Int32Array.from(ids), net.initialParams(snn));
      // the neurons fire the same digits; what differs is float32 vs float64 arithmetic between them
      expectClose(res.logits, await logitsOf(snn, ids), TOL.golden, 'training forward vs SpikingLM');
      const out = snn.forward(ids, snn.newCache(), { allLogits: true });
      const stats = (await snn.backend.read(out.stats)).data;
      if (snn.schedule === 'layerwise') {
        let events = 0;
        for (let i = 0; i < snn.sites.length; i++) events += stats[i * STATS_WIDTH + STAT.events]!;
        expect(res.events).toBe(events);
        expect(res.neurons).toBe(out.neurons.reduce((a, n) => a + n, 0));
      }
      const exact = net.forward(Int32Array.from(ids), net.initialParams(snn), 'exact');
      expectClose(exact.logits, (await ann.backend.read(ann.forward(ids, undefined, { allLogits: true }))).data, TOL.golden, 'exact training forward vs the ANN');
    });
  }
});

describe('fineTune', () => {
  it('a short run is deterministic, lowers its loss and leaves the input model unchanged', async () => {
    const { snn } = await convertModelToSpiking(ann, calib, { coding: 'phase', timesteps: 6 });
    const before = new Map([...snn.spiking.thresholds].map(([k, v]) => [k, Float32Array.from(v)]));
    const opts = { steps: 4, batchSize: 2, lr: 0.05, seed: 3 };
    const a = fineTune(snn, small, opts), b = fineTune(snn, small, opts);
    for (const [k, v] of a.snn.spiking.thresholds) expect(Array.from(v)).toEqual(Array.from(b.snn.spiking.thresholds.get(k)!));
    for (const [k, v] of snn.spiking.thresholds) expect(Array.from(v)).toEqual(Array.from(before.get(k)!));
    expect(a.history).toHaveLength(4);
    expect(a.record.after.kl).toBeLessThan(a.record.before.kl);
    // every site's thresholds moved
    const changed = [...a.snn.spiking.thresholds].filter(([k, v]) => v.some((t, i) => t !== before.get(k)![i])).length;
    expect(changed).toBe(snn.sites.length);
    const other = fineTune(snn, small, { ...opts, seed: 4 });
    expect([...other.snn.spiking.thresholds].some(([k, v]) => v.some((t, i) => t !== a.snn.spiking.thresholds.get(k)![i]))).toBe(true);
  });

  it('an aborted signal stops between steps and returns the model so far, marked stopped', async () => {
    const { snn } = await convertModelToSpiking(ann, calib, { coding: 'phase', timesteps: 6 });
    const abort = new AbortController();
    const r = fineTune(snn, small, { steps: 10, batchSize: 1, signal: abort.signal, onStep: (s) => { if (s.step === 2) abort.abort(); } });
    expect(r.history).toHaveLength(2);
    expect(r.record).toMatchObject({ steps: 2, stopped: true });
  });

  it('the spike penalty lowers spikes; without it the same run does not', async () => {
    const { snn } = await convertModelToSpiking(ann, calib, { coding: 'rate', timesteps: 6 });
    const opts = { steps: 4, batchSize: 4, lr: 0.1 };
    const penalised = fineTune(snn, small, { ...opts, lambdaSpikes: 1 });
    const plain = fineTune(snn, small, opts);
    expect(penalised.record.after.spikesPerNeuronPerToken).toBeLessThan(penalised.record.before.spikesPerNeuronPerToken * 0.9);
    expect(plain.record.after.spikesPerNeuronPerToken).toBeGreaterThan(penalised.record.after.spikesPerNeuronPerToken);
  });

  it('norm gains and LoRA: trained, saved, loaded back to the same logits; the ANN in the directory is untouched', async () => {
    const { snn, record } = await convertModelToSpiking(ann, calib, { coding: 'phase-ternary', timesteps: 6 });
    const tuned = fineTune(snn, small, { steps: 3, batchSize: 2, train: ['thresholds', 'normGains', 'lora:2'], lr: 0.05 });
    const ad = tuned.snn.spiking.adapters!;
    expect(ad.normGains!.size).toBe(2 * ann.config.numLayers + 1);
    expect(ad.lora!.size).toBe(4 * ann.config.numLayers);
    expect([...ad.lora!.values()].some((l) => l.b.some((v) => v !== 0))).toBe(true);
    const ids = calib.samples[2]!;
    // the adapters change the network (B moved off zero, gains moved off the ANN's)
    const plain = tuned.snn.with({ adapters: {} });
    const withAd = await logitsOf(tuned.snn, ids), without = await logitsOf(plain, ids);
    expect(withAd.some((v, i) => Math.abs(v - without[i]!) > 1e-4)).toBe(true);
    const dir = path.join(tmp, 'adapters');
    saveSnnModel(tuned.snn, tok, dir, { ...record, sourceDir: stories }, { training: tuned.record });
    const loaded = loadSnnModel(dir);
    expect(Array.from(await logitsOf(loaded.snn, ids))).toEqual(Array.from(withAd));
    expect(loaded.snnConfig.training?.train).toEqual(['thresholds', 'normGains', 'lora:2']);
    assertSameModel(ann, loaded, stories, dir); // the ANN part is the original
    // the training network starts from a saved model's adapters: its forward is the loaded model's
    const net = new TrainNet(loaded.snn);
    expectClose(net.forward(Int32Array.from(ids), net.initialParams(loaded.snn)).logits, withAd, TOL.golden, 'training forward of a fine-tuned model');
  });

  it('bad options and adapters are refused with what was expected', async () => {
    const { snn } = await convertModelToSpiking(ann, calib, { coding: 'phase', timesteps: 6 });
    expect(() => fineTune(snn, small, { train: ['weights'] })).toThrow(/train: "weights" is not one of thresholds, normGains, lora:RANK/);
    expect(() => fineTune(snn, small, { steps: 0 })).toThrow(/steps must be a positive integer/);
    expect(() => fineTune(snn, small, { lr: -1 })).toThrow(/lr must be a positive number/);
    expect(() => fineTune(snn, small, { train: ['lora:999'] })).toThrow(/lora:999 exceeds the smaller side of layers\.0\.attn_in/);
    expect(() => fineTune(snn, small, { loraSites: ['q_in'], train: ['lora:2'] })).toThrow(/loraSites: "q_in" is not one of/);
    const { snn: bounded } = await convertModelToSpiking(ann, calib, { schedule: 'stepwise', coding: 'rate', timesteps: 4, neuron: { maxSpikes: 2 } });
    expect(() => fineTune(bounded, small)).toThrow(/stepwise model needs its default neurons .* unbounded bursts/);
    expect(() => fineTune(snn.with({ mode: 'exact' }), small)).toThrow(/exact mode \(no neurons to train\)/);
    expect(() => applyAdapters(ann.config, ann.weights, { lora: new Map([['layers.0.o_in', { rank: 2, a: new Float32Array(5), b: new Float32Array(8) }]]) })).toThrow(/LoRA "layers\.0\.o_in": A has 5 values, expected rank 2 × 64 inputs/);
    expect(() => applyAdapters(ann.config, ann.weights, { normGains: new Map([['layers.9.attn_norm', new Float32Array(64)]]) })).toThrow(/no norm "layers\.9\.attn_norm"/);
  });
});

describe('spikelm finetune', () => {
  async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = '', err = '';
    const code = await main(argv, { out: (t) => void (out += t), err: (t) => void (err += t) });
    return { code, out, err };
  }

  it('writes a fine-tuned model that loads, with the run in snn_config.json and progress on stderr', async () => {
    const src = path.join(tmp, 'converted'), out = path.join(tmp, 'tuned');
    expect((await run(['convert', '--model', stories, '--output_dir', src, '--timesteps', '6', '--coding', 'phase'])).code).toBe(0);
    const r = await run(['finetune', '--snn', src, '--output_dir', out, '--steps', '2', '--batch-size', '2', '--calibration-samples', '3', '--calibration-length', '16', '--alpha', '3', '--lambda_spikes', '0.01', '--verify']);
    expect(r.err).toMatch(/fine-tuning .* \(layerwise phase, T = 6\): thresholds; surrogate atan α = 3/);
    expect(r.err).toMatch(/fine-tuning: 100% \(2\/2, [\d.]+s\) loss [\d.e+-]+ {2}KL [\d.e+-]+ {2}spikes\/neuron\/token [\d.]+/);
    expect(r.err).toMatch(/fine-tuning: 50% \(1\/2, [\d.]+s\) loss .* spikes\/neuron\/token [\d.]+ {2}~\d+s left\n/);
    expect([etaText({ step: 1, steps: 3, elapsedMs: 30_000 }), etaText({ step: 10, steps: 150, elapsedMs: 20_000 }), etaText({ step: 1, steps: 150, elapsedMs: 180_000 })]).toEqual(['60s', '5 min', '7.5 h']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^before fine-tuning\nfidelity over \d+ positions[^]*\nafter fine-tuning\nfidelity over \d+ positions[^]*\nlayerwise +phase +6 +[\d.]+% /);
    const json = JSON.parse(fs.readFileSync(path.join(out, 'snn_config.json'), 'utf8'));
    expect(json.training).toMatchObject({ steps: 2, lambdaSpikes: 0.01, train: ['thresholds'], surrogate: { name: 'atan', alpha: 3 } });
    expect(json.calibration.source).toBe(JSON.parse(fs.readFileSync(path.join(src, 'snn_config.json'), 'utf8')).calibration.source);
    const loaded = loadSnnModel(out);
    expect(loaded.snn.spiking.surrogate).toEqual({ name: 'atan', alpha: 3 });
    // the fidelity command still matches it to its ANN
    const f = await run(['fidelity', '--model', stories, '--snn', out, '--timesteps', '6', '--json']);
    expect(f.code).toBe(0);
  });

  it('refuses bad flags before any work', async () => {
    const src = path.join(tmp, 'converted');
    const bad = async (args: string[], msg: RegExp) => {
      const r = await run(['finetune', '--snn', src, '--output_dir', path.join(tmp, 'never'), ...args]);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(msg);
      expect(fs.existsSync(path.join(tmp, 'never'))).toBe(false);
    };
    await bad(['--train', 'thresholds,everything'], /"everything" is not one of thresholds, normGains, lora:RANK/);
    await bad(['--lr', '-1'], /--lr must be a positive number/);
    await bad(['--lambda-spikes', '-0.5'], /--lambda-spikes must be a number ≥ 0/);
    await bad(['--steps', '0'], /--steps/);
    await bad(['--surrogate-function', 'tanh'], /--surrogate_function must be one of atan, sigmoid, stbif_plus/);
    const r = await run(['finetune', '--output_dir', path.join(tmp, 'never')]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--snn/);
  });
});
