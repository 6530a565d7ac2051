/** Conversion stages alone, the seed API, calibration data, and save/load. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_CONVERSION, applySurrogateGradients, calibrateTimesteps, convertModelToSpiking, createCalibrationData, loadSnnModel, replaceAttentionWithSpikeAttention,
  replaceGeluWithRelu, replaceLayernormWithSpikeLayernorm, saveSnnModel, simplifiedConversion,
} from '../src/convert/api.js';
import { replaceActivationWithSpikeActivation } from '../src/convert/api.js';
import { readSnnConfig } from '../src/convert/snn-io.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { type ConversionPlan, calibrate, finalize, observe, quantileOf, replace, trace, unitCalibration } from '../src/convert/stages.js';
import { loadModel } from '../src/nn/model.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';
import { measureFidelity } from '../src/snn/fidelity.js';
import { synapses } from '../src/snn/operators.js';
import { SpikingLM } from '../src/snn/model.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { Tensor } from '../src/tensor/tensor.js';
import { fixtureDir } from './helpers/fixtures.js';

const stories = fixtureDir('stories260k');
const ann = loadModel(stories);
const tok = loadTokenizer(stories);
const data = createCalibrationData(tok, { numSamples: 6, maxLength: 32 });
const cpu = ann.backend as CpuBackend;
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-conv-'));

/** A one-site plan for calibration tests. */
const fakePlan = (channels: number, schedule: 'stepwise' | 'layerwise' = 'stepwise'): ConversionPlan => ({
  family: 'llama', schedule, heads: { numHeads: 1, numKvHeads: 1, headDim: channels },
  sites: [{ name: 's', kind: 'attn_in', layer: 0, channels, fanout: 1, feeds: 'x' }], operators: [],
});

describe('stages', () => {
  it('trace lists an encoder before every linear layer (layerwise: and before q·Kᵀ and P·V) and every nonlinear operator', () => {
    const plan = trace(ann);
    expect(plan.sites).toHaveLength(4 * 5 + 1);
    expect(plan.sites[0]).toMatchObject({ name: 'layers.0.attn_in', channels: 64, feeds: 'q, k, v', fanout: 64 + 2 * 32 });
    const layerwise = trace(ann, 'layerwise');
    expect(layerwise.sites).toHaveLength(6 * 5 + 1);
    expect(layerwise.sites.slice(0, 6).map((s) => [s.kind, s.channels, s.fanout])).toEqual([
      ['attn_in', 64, 128], ['q_in', 64, 1], ['p_in', 8, 8], ['o_in', 64, 64], ['mlp_in', 64, 344], ['down_in', 172, 64],
    ]);
    expect(layerwise.sites.at(-1)).toMatchObject({ kind: 'head_in', fanout: 512 });
    expect(plan.sites.find((s) => s.name === 'layers.4.down_in')!.channels).toBe(172);
    expect(plan.operators.filter((o) => o.kind === 'activation')).toHaveLength(5);
    const gpt2Relu = trace(replaceGeluWithRelu(loadModel(fixtureDir('gpt2-random-f16'))));
    expect(gpt2Relu.operators.some((o) => o.kind === 'activation')).toBe(false); // the ReLU is the neuron
  });

  it('observe records the real activations: layers.0.attn_in is RMSNorm(embedding)', () => {
    const obs = observe(trace(ann), ann, { ...data, samples: [data.samples[0]!] });
    const ids = Int32Array.from(data.samples[0]!);
    const expected = cpu.rmsNorm(cpu.embedding(ann.weights.embed, ids), ann.weights.blocks[0]!.attnNorm.weight, ann.config.normEps);
    const o = obs.get('layers.0.attn_in')!;
    expect(o.count).toBe(ids.length);
    for (let c = 0; c < 64; c++) {
      const col = Array.from({ length: ids.length }, (_, r) => expected.data[r * 64 + c]!);
      expect(Array.from(o.values[c]!)).toEqual(col.map(Math.fround));
      expect(o.maxAbs[c]).toBeCloseTo(Math.max(...col.map(Math.abs)), 5);
    }
  });

  it('observe sees the LM head input on every row (as the ANN with all logits does), for both schedules; maxTokens keeps every stride-th row', () => {
    const sample = data.samples.slice(0, 2);
    const heads: Float32Array[] = [];
    for (const ids of sample) {
      ann.forward(ids, ann.newCache(), { allLogits: true, inputs: (site, x) => { if (site === 'head_in') heads.push(Float32Array.from((x as Tensor).data)); return x; } });
    }
    const rows = sample.reduce((a, s) => a + s.length, 0);
    const C = ann.config.hiddenSize;
    const col = (c: number) => heads.flatMap((h) => Array.from({ length: h.length / C }, (_, r) => h[r * C + c]!));
    for (const schedule of ['layerwise', 'stepwise'] as const) {
      const o = observe(trace(ann, schedule), ann, { ...data, samples: sample }).get('head_in')!;
      expect(o.count, schedule).toBe(rows);
      for (const c of [0, 17, C - 1]) {
        const firstDiff = col(c).findIndex((v, i) => Math.abs(v - o.values[c]![i]!) > 1e-5);
        expect(firstDiff, `${schedule} channel ${c}`).toBe(-1);
        const mean = col(c).reduce((a, v) => a + v, 0) / rows;
        expect(Math.abs(o.mean[c]! - mean), `${schedule} mean of channel ${c}`).toBeLessThan(1e-5);
      }
      const strided = observe(trace(ann, schedule), ann, { ...data, samples: sample }, { maxTokens: 10 }).get('head_in')!;
      const stride = Math.ceil(rows / 10);
      expect(strided.values[3]!.length).toBe(Math.ceil(rows / stride));
      expect(Array.from(strided.values[3]!)).toEqual(Array.from(o.values[3]!).filter((_, i) => i % stride === 0));
      expect(Array.from(strided.maxAbs)).toEqual(Array.from(o.maxAbs)); // maxima over every row, not only the kept ones
      expect(Array.from(strided.mean)).toEqual(Array.from(o.mean)); // and so are the means
    }
  });

  it('calibrate sets θ to the per-channel quantile of |x| (and of |x − μ| when centred), with a floor', () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.float({ min: -5, max: 5, noNaN: true }), { minLength: 3, maxLength: 30 }), { minLength: 2, maxLength: 4 }), fc.double({ min: 0.5, max: 1, noNaN: true }), (cols, q) => {
        const n = Math.min(...cols.map((c) => c.length));
        const values = cols.map((c) => Float32Array.from(c.slice(0, n)));
        const plan = fakePlan(values.length);
        const obs = new Map([['s', { channels: values.length, count: n, maxAbs: Float32Array.from(values, (v) => Math.max(...v.map(Math.abs))), mean: Float32Array.from(values, (v) => v.reduce((a, b) => a + b, 0) / n), values }]]);
        const cal = calibrate(plan, obs, { quantile: q, floorRatio: 0 }).sites.get('s')!;
        values.forEach((v, c) => {
          const expected = Math.max(quantileOf(Float32Array.from(v, Math.abs).sort(), q), 1e-6);
          expect(cal.theta[c]).toBeCloseTo(expected, 5);
        });
        const centred = calibrate(plan, obs, { quantile: q, center: true, floorRatio: 0 }).sites.get('s')!;
        expect(centred.center).toBeDefined();
      }),
    );
    const plan = fakePlan(2);
    const dead = new Map([['s', { channels: 2, count: 3, maxAbs: Float32Array.of(2, 0), mean: Float32Array.of(0, 0), values: [Float32Array.of(2, -2, 2), Float32Array.of(0, 0, 0)] }]]);
    expect(calibrate(plan, dead, { quantile: 1, floorRatio: 0.1 }).sites.get('s')!.theta[1]).toBeCloseTo(0.1, 6); // floor = 10% of the median θ (1)
    expect(() => calibrate(plan, dead, { quantile: 0 })).toThrow(/quantile must be in \(0, 1\]/);
  });

  it('calibrate for weighted codes: θ = max/2 (every value seen, not only the kept samples), probabilities θ = ½, queries shared within a KV group', () => {
    const obs = observe(trace(ann, 'layerwise'), ann, { ...data, samples: data.samples.slice(0, 2) });
    const plan = trace(ann, 'layerwise');
    const cal = calibrate(plan, obs, { coding: 'phase-ternary' });
    const site = obs.get('layers.1.mlp_in')!;
    cal.sites.get('layers.1.mlp_in')!.theta.forEach((t, c) => expect(t).toBeCloseTo(site.maxAbs[c]! / 2, 6));
    expect(Array.from(cal.sites.get('layers.0.p_in')!.theta)).toEqual(new Array(8).fill(0.5));
    // stories260k: 8 heads of 8 over 4 KV heads — heads 2g and 2g+1 share θ per dimension
    const q = cal.sites.get('layers.2.q_in')!.theta, qObs = obs.get('layers.2.q_in')!;
    for (let g = 0; g < 4; g++) {
      for (let i = 0; i < 8; i++) {
        expect(q[2 * g * 8 + i]).toBe(q[(2 * g + 1) * 8 + i]);
        expect(q[2 * g * 8 + i]).toBeCloseTo(Math.max(qObs.maxAbs[2 * g * 8 + i]!, qObs.maxAbs[(2 * g + 1) * 8 + i]!) / 2, 6);
      }
    }
    expect(() => calibrate(trace(ann), obs, { coding: 'phase' })).toThrow(/needs --schedule layerwise/);
  });

  it('replace builds a rate model whose synapses carry θ; finalize checks it against the plan', () => {
    const plan = trace(ann);
    const cal = unitCalibration(plan);
    const snn = replace(ann, cal, { timesteps: 4 });
    expect(snn.spiking.mode).toBe('spiking');
    expect(snn.schedule).toBe('stepwise');
    expect(snn.spiking.thresholds.get('head_in')).toHaveLength(64);
    expect(finalize(snn, { plan, calibration: cal, calibrationSource: 'test', simplified: true }).snn).toBe(snn);
    const otherPlan = trace(loadModel(fixtureDir('tiny-gpt2-random')));
    expect(() => finalize(snn, { plan: otherPlan, calibration: cal, calibrationSource: 'test', simplified: true })).toThrow(/does not match the traced plan/);
  });
});

describe('calibration data', () => {
  it('is deterministic, bounded by numSamples and maxLength, and accepts a user file', () => {
    const a = createCalibrationData(tok, { numSamples: 5, maxLength: 16 });
    expect(createCalibrationData(tok, { numSamples: 5, maxLength: 16 })).toEqual(a);
    expect(a.samples).toHaveLength(5);
    for (const s of a.samples) expect(s.length).toBeLessThanOrEqual(16);
    expect(a.source).toMatch(/calibration-stories\.txt$/);
    const file = path.join(tmp(), 'mine.txt');
    fs.writeFileSync(file, 'The cat sat on the mat.\n\nThe dog ran to the park.\n');
    const mine = createCalibrationData(tok, { file });
    expect(mine.samples).toHaveLength(2);
    expect(mine.samples[0]).toEqual(tok.encode('The cat sat on the mat.'));
    expect(() => createCalibrationData(tok, { file: '/no/such.txt' })).toThrow(/not found/);
    expect(() => createCalibrationData(tok, { numSamples: 0 })).toThrow(/numSamples/);
  });
});

describe('the seed API', () => {
  it('replaceGeluWithRelu swaps the activation and updates the config', () => {
    const relu = replaceGeluWithRelu(loadModel(fixtureDir('gpt2-random-f16')));
    expect(relu.config.activation).toBe('relu');
    expect(relu.config.raw.activation_function).toBe('relu');
    const llama = replaceGeluWithRelu(ann);
    expect(llama.config.raw.hidden_act).toBe('relu');
    expect(ann.config.activation).toBe('silu'); // the original is untouched
  });

  it('simplifiedConversion skips calibration and compensation; each replace… step restores one operator', async () => {
    const ids = tok.encode('Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends.');
    const { snn: simple } = simplifiedConversion(ann, { timesteps: 16 });
    expect(simple.forms).toEqual({ norm: 'naive', attention: 'naive', activation: 'naive' });
    expect([...simple.spiking.thresholds.values()].every((t) => t.every((v) => v === 1))).toBe(true);
    const ladder = [simple];
    ladder.push(replaceLayernormWithSpikeLayernorm(ladder.at(-1)!));
    ladder.push(replaceAttentionWithSpikeAttention(ladder.at(-1)!));
    ladder.push(replaceActivationWithSpikeActivation(ladder.at(-1)!));
    expect(ladder.at(-1)!.forms).toEqual({ norm: 'compensated', attention: 'compensated', activation: 'compensated' });
    const { snn: calibrated } = await convertModelToSpiking(ann, data, { timesteps: 16, schedule: 'stepwise', coding: 'rate' });
    const kl = async (s: typeof simple) => (await measureFidelity(ann, s, ids, [16])).results[0]!.kl;
    const simpleKl = await kl(simple), fullKl = await kl(ladder.at(-1)!), calibratedKl = await kl(calibrated);
    // compensation is what makes conversion converge: the naive network is far off
    expect(simpleKl).toBeGreaterThan(10 * fullKl);
    expect(simpleKl).toBeGreaterThan(10 * calibratedKl);
  });

  it('applySurrogateGradients and calibrateTimesteps', async () => {
    const { snn } = await convertModelToSpiking(ann, data, { timesteps: 8, schedule: 'stepwise', coding: 'rate' });
    expect(applySurrogateGradients(snn, { fn: 'sigmoid', alpha: 3 }).spiking.surrogate).toEqual({ name: 'sigmoid', alpha: 3 });
    expect(() => applySurrogateGradients(snn, { fn: 'nope' as never })).toThrow(/unknown function/);
    const { model, report } = calibrateTimesteps(snn, 8, 32);
    expect(model.timesteps).toBe(32);
    expect(report.expectedErrorRatio).toBe(0.25);
    expect(report.sites[0]!.boundAfter).toBeCloseTo(report.sites[0]!.boundBefore / 4, 10);
    expect(model.spiking.thresholds).toBe(snn.spiking.thresholds);
    expect(() => calibrateTimesteps(snn, 16, 32)).toThrow(/runs 8 steps, not originalT = 16/);
  });
});

describe('save and load', () => {
  it('round-trips to identical outputs, as an HF-style directory any loader can read (stepwise rate)', async () => {
    const converted = await convertModelToSpiking(ann, data, { timesteps: 8, schedule: 'stepwise', coding: 'rate' });
    const dir = path.join(tmp(), 'snn');
    saveSnnModel(converted.snn, tok, dir, converted.record);
    expect(fs.readdirSync(dir).filter((n) => !n.startsWith('.')).sort()).toEqual(['config.json', 'model.safetensors', 'snn_config.json', 'tokenizer.json']);
    const cfg = readSnnConfig(dir);
    expect(cfg).toMatchObject({ format: 'spikelm-snn', format_version: 3, timesteps: 8, mode: 'spiking', schedule: 'stepwise', coding: 'rate', neuron: { maxSpikes: 'inf', signed: true, reset: 'subtract' }, calibration: { quantile: 0.9 } });
    // the density of nonzero spikes was measured at conversion and saved (GPU kernels choose by it)
    expect(Object.keys(cfg.density!)).toHaveLength(21);
    expect(Object.values(cfg.density!).every((d) => d > 0 && d <= 1)).toBe(true);
    expect(loadSnnModel(dir).snn.spiking.densityHints?.get('layers.0.attn_in')).toBe(cfg.density!['layers.0.attn_in']);
    expect(cfg.source_model.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(Object.keys(cfg.calibration.sites)).toHaveLength(21);
    const st = SafetensorsFile.open(path.join(dir, 'model.safetensors'));
    expect(st.info('snn.thresholds.layers.0.attn_in').shape).toEqual([64]);
    st.close();
    const loaded = loadSnnModel(dir);
    const ids = tok.encode('The little bird was sad because');
    const a = converted.snn.forward(ids, converted.snn.newCache(), { allLogits: true });
    const b = loaded.snn.forward(ids, loaded.snn.newCache(), { allLogits: true });
    expect(Array.from(cpu.readSync(b.logits).data)).toEqual(Array.from(cpu.readSync(a.logits).data));
    expect(Array.from(cpu.readSync(b.spikes!).data)).toEqual(Array.from(cpu.readSync(a.spikes!).data));
    expect(Array.from(cpu.readSync(b.stats).data)).toEqual(Array.from(cpu.readSync(a.stats).data));
    // the ANN part is a plain HF model
    expect(Array.from(cpu.readSync(loadModel(dir).forward(ids)).data)).toEqual(Array.from(cpu.readSync(ann.forward(ids)).data));
  });

  it('the measured densities reach every stepwise spike product as the hint the GPU\'s auto kernel chooses by, after a reload too', async () => {
    const converted = await convertModelToSpiking(ann, data, { timesteps: 4, schedule: 'stepwise', coding: 'rate' });
    const dir = path.join(tmp(), 'snn');
    saveSnnModel(converted.snn, tok, dir, converted.record);
    const loaded = loadSnnModel(dir).snn;
    const hints: (number | undefined)[] = [];
    const spy = Object.create(loaded.backend) as typeof loaded.backend;
    spy.spikeMatmul = (...args: Parameters<typeof loaded.backend.spikeMatmul>) => {
      hints.push(args[5]);
      return loaded.backend.spikeMatmul(...args);
    };
    const probe = new SpikingLM(loaded.config, loaded.weights, spy, loaded.spiking);
    probe.forward(tok.encode('The little bird'));
    // 4 spike products per layer (the head applies W to its spikes' running mean: one dense product),
    // each with its site's measured density
    expect(hints).toHaveLength(4 * ann.config.numLayers);
    const saved = new Set(loaded.spiking.densityHints!.values());
    for (const h of hints) expect(saved.has(h!), String(h)).toBe(true);
  });

  it('the default layerwise conversion round-trips: schedule, code, per-site steps, every site\'s thresholds', async () => {
    const converted = await convertModelToSpiking(ann, data);
    const dir = path.join(tmp(), 'snn-lw');
    saveSnnModel(converted.snn, tok, dir, converted.record);
    const cfg = readSnnConfig(dir);
    expect(cfg).toMatchObject({ schedule: 'layerwise', coding: 'phase-ternary', timesteps: DEFAULT_CONVERSION.timesteps, site_steps: DEFAULT_CONVERSION.siteSteps });
    const loaded = loadSnnModel(dir);
    expect(loaded.snn.sites).toHaveLength(31);
    expect(loaded.snn.stepsOf('mlp_in')).toBe(DEFAULT_CONVERSION.timesteps + (DEFAULT_CONVERSION.siteSteps.mlp_in ?? 0));
    const ids = tok.encode('The little bird was sad because');
    const a = converted.snn.forward(ids, converted.snn.newCache(), { allLogits: true });
    const b = loaded.snn.forward(ids, loaded.snn.newCache(), { allLogits: true });
    expect(Array.from(cpu.readSync(b.logits).data)).toEqual(Array.from(cpu.readSync(a.logits).data));
    expect(Array.from(cpu.readSync(b.stats).data)).toEqual(Array.from(cpu.readSync(a.stats).data));
  });

  it('GPT-2 (Conv1D layout) and a ReLU swap survive the round trip', async () => {
    const relu = replaceGeluWithRelu(loadModel(fixtureDir('gpt2-random-f16')));
    const gtok = loadTokenizer(fixtureDir('gpt2-random-f16'));
    const converted = await convertModelToSpiking(relu, createCalibrationData(gtok, { numSamples: 2, maxLength: 16 }), { timesteps: 4, schedule: 'stepwise', coding: 'rate' });
    const dir = path.join(tmp(), 'gpt2snn');
    saveSnnModel(converted.snn, gtok, dir, converted.record);
    const loaded = loadSnnModel(dir);
    expect(loaded.config.activationName).toBe('relu');
    const ids = [464, 2068, 7586];
    expect(Array.from(cpu.readSync(loaded.snn.forward(ids).logits).data)).toEqual(Array.from(cpu.readSync(converted.snn.forward(ids).logits).data));
  });

  it('writes atomically: an existing model is replaced whole, a failed save leaves it intact and no temporary files', () => {
    const parent = tmp();
    const dir = path.join(parent, 'snn');
    const { snn } = simplifiedConversion(ann, { timesteps: 4 });
    saveSnnModel(snn, tok, dir);
    saveSnnModel(snn.withTimesteps(6), tok, dir);
    expect(readSnnConfig(dir).timesteps).toBe(6);
    const broken = { ...tok, files: ['/no/such/tokenizer.json'] };
    expect(() => saveSnnModel(snn.withTimesteps(9), broken, dir)).toThrow();
    expect(readSnnConfig(dir).timesteps).toBe(6);
    expect(fs.readdirSync(parent)).toEqual(['snn']);
  });

  it('loading something that is not a converted model is a clear error', () => {
    expect(() => loadSnnModel(stories)).toThrow(/snn_config\.json: not found/);
    const dir = path.join(tmp(), 'bad');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'snn_config.json'), JSON.stringify({ format: 'spikelm-snn', timesteps: 0 }));
    expect(() => loadSnnModel(dir)).toThrow(/"timesteps" must be a positive integer/);
  });

  it('synapse scaling is exact: W·diag(θ) applied to n equals W applied to θ·n', () => {
    const w = Tensor.from([2, 3], [1, 2, 3, 4, 5, 6]);
    const theta = Float32Array.of(0.5, 2, 4);
    expect(Array.from((synapses({ weight: w }, theta).weight as Tensor).data)).toEqual([0.5, 4, 12, 2, 10, 24]);
  });
});
