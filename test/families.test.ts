/**
 * The families built from the Llama block's features and OPT: the independent reference anchored to
 * the shared goldens; batched left-padded and cached forwards on every backend; the variants no
 * shared fixture covers, against the reference built from their named tensors; and the refusals.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { convertModelToSpiking, createCalibrationData } from '../src/convert/api.js';
import { bundledText } from '../src/convert/calibration-data.js';
import { convertToTarget } from '../src/convert/search/planes.js';
import { loadSnnModel, saveSnnModel, weightsFingerprint } from '../src/convert/snn-io.js';
import { splitCalibration } from '../src/convert/search/split.js';
import { DEFAULT_TARGET } from '../src/convert/search/target.js';
import { measureFidelity } from '../src/snn/fidelity.js';
import { SpikingLM } from '../src/snn/model.js';
import { forwardStats } from '../src/snn/stats.js';
import { STAT, STATS_WIDTH } from '../src/tensor/kernels/codes.js';
import { TrainNet } from '../src/train/network.js';
import { parseConfig } from '../src/nn/config.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';
import { type CausalLM, loadModel, loadWeights } from '../src/nn/model.js';
import type { LMWeights } from '../src/nn/weights.js';
import type { Backend } from '../src/tensor/backend.js';
import { BACKEND_NAMES, backendFor } from './helpers/backends.js';
import { fixtureDir, golden } from './helpers/fixtures.js';
import { layerwiseReference, referenceLogits, stepwiseReference } from './helpers/reference-lm.js';
import { TOL, expectClose, expectIdentical } from './helpers/tolerance.js';
import { type Variant, llamaLikeNames, llamaLikeReference, optNames, optReference, writeVariant } from './helpers/variants.js';

const NEW_FAMILIES = ['qwen2-random', 'qwen3-random', 'mistral-random', 'opt-random'] as const;

const read = async (b: Backend, x: unknown) => (await b.read(x as never)).data;

describe('the float64 reference of test/helpers/reference-lm.ts is the shared golden one', () => {
  it.for(NEW_FAMILIES)('%s: last logits within 1e-4 of golden.json', (name) => {
    const { config, weights } = loadWeights(fixtureDir(name));
    for (const g of Object.values(golden(name)).slice(0, 2)) {
      const rows = referenceLogits(config, weights, g.input_ids);
      expectClose(rows.at(-1)!, g.last_logits, TOL.golden, `${name} reference`);
    }
  });
});

/** Every position's logits: fed whole, and fed in chunks through the cache; and a left-padded batch's last rows. */
async function forwards(model: CausalLM, ids: readonly number[], rows: readonly (readonly number[])[]) {
  const b = model.backend, V = model.config.vocabSize;
  const whole = await read(b, model.forward(ids, model.newCache(), { allLogits: true }));
  const cache = model.newCache(2);
  const chunked = new Float32Array(whole.length);
  const cuts = [0, 1, Math.floor(ids.length / 2), ids.length - 1, ids.length];
  for (let i = 0; i + 1 < cuts.length; i++) chunked.set(await read(b, model.forward(ids.slice(cuts[i], cuts[i + 1]), cache, { allLogits: true })), cuts[i]! * V);
  const { logits } = model.forwardBatch(rows);
  const batch = await read(b, logits);
  return { whole, chunked, batch: rows.map((_, i) => Array.from(batch.subarray(i * V, (i + 1) * V))) };
}

describe.each(BACKEND_NAMES)('%s: cached and batched forwards of every new family equal the golden logits', (backendName) => {
  it.for(NEW_FAMILIES)('%s: whole prompt, chunks through the KV cache, and a left-padded batch of the golden prompts', async (name, ctx) => {
    const backend = await backendFor(backendName, ctx);
    const tol = backendName === 'cpu' ? TOL.golden : TOL.gpuGolden;
    const model = loadModel(fixtureDir(name), { backend });
    const prompts = Object.values(golden(name));
    const longest = prompts.reduce((a, g) => (g.input_ids.length > a.input_ids.length ? g : a));
    const V = model.config.vocabSize, S = longest.input_ids.length;
    const { whole, chunked, batch } = await forwards(model, longest.input_ids, prompts.map((g) => g.input_ids));
    expectClose(whole.subarray((S - 1) * V), longest.last_logits, tol, `${name} whole`);
    expectClose(chunked.subarray((S - 1) * V), longest.last_logits, tol, `${name} chunked`);
    expectClose(chunked, whole, TOL.f32, `${name} chunked vs whole`);
    prompts.forEach((g, i) => expectClose(batch[i]!, g.last_logits, tol, `${name} batch row ${i} (${g.input_ids.length} tokens)`));
  });
});

interface VariantCase {
  readonly label: string;
  make(): { v: Variant; reference: LMWeights };
  /** Features the config must parse to. */
  readonly features: Record<string, unknown>;
}

const L = 2;
const VARIANTS: VariantCase[] = [
  {
    label: 'opt post-LN, project_in/out (word_embed_proj_dim 16 ≠ 32), decoder.-prefixed keys, untied head',
    features: { postNorm: true, finalNorm: false, embedDim: 16, positionOffset: 2, norm: 'layer', gatedMlp: false, rotary: false },
    make() {
      const v = writeVariant('opt-postln', {
        model_type: 'opt', hidden_size: 32, ffn_dim: 64, num_hidden_layers: L, num_attention_heads: 4, max_position_embeddings: 64,
        word_embed_proj_dim: 16, do_layer_norm_before: false, activation_function: 'relu', tie_word_embeddings: false,
      }, optNames({ layers: L, D: 32, E: 16, I: 64, P: 64, prefix: 'decoder', finalNorm: false, untied: true }));
      return { v, reference: optReference(v, L, 'decoder') };
    },
  },
  {
    label: 'opt pre-LN, project_in/out, model.decoder. keys, tied head, BF16',
    features: { postNorm: false, finalNorm: true, embedDim: 16 },
    make() {
      const v = writeVariant('opt-proj', {
        model_type: 'opt', hidden_size: 32, ffn_dim: 64, num_hidden_layers: L, num_attention_heads: 4, max_position_embeddings: 64, word_embed_proj_dim: 16,
      }, optNames({ layers: L, D: 32, E: 16, I: 64, P: 64, prefix: 'model.decoder', finalNorm: true }), { dtype: 'BF16' });
      return { v, reference: optReference(v, L, 'model.decoder') };
    },
  },
  {
    label: 'qwen2 untied, BF16',
    features: { bias: { q: true, k: true, v: true, o: false, mlp: false }, tieWordEmbeddings: false, ropeTheta: 1e6 },
    make() {
      const v = writeVariant('qwen2', {
        model_type: 'qwen2', hidden_size: 32, intermediate_size: 48, num_hidden_layers: L, num_attention_heads: 4, num_key_value_heads: 2,
        max_position_embeddings: 64, rope_theta: 1e6, tie_word_embeddings: false, use_sliding_window: false, sliding_window: 32768,
      }, llamaLikeNames({ layers: L, D: 32, H: 4, Hkv: 2, d: 8, I: 48, qkvBias: true, untied: true }), { dtype: 'BF16' });
      return { v, reference: llamaLikeReference(v, L) };
    },
  },
  {
    label: 'qwen3 with attention_bias and head_dim 8 ≠ 64/4, tied head',
    features: { qkNorm: true, headDim: 8, bias: { q: true, k: true, v: true, o: true, mlp: false } },
    make() {
      const v = writeVariant('qwen3', {
        model_type: 'qwen3', hidden_size: 64, intermediate_size: 48, num_hidden_layers: L, num_attention_heads: 4, num_key_value_heads: 1, head_dim: 8,
        max_position_embeddings: 64, attention_bias: true, tie_word_embeddings: true,
      }, llamaLikeNames({ layers: L, D: 64, H: 4, Hkv: 1, d: 8, I: 48, qkvBias: true, oBias: true, qkNorm: true }));
      return { v, reference: llamaLikeReference(v, L) };
    },
  },
  {
    label: 'mistral with a window of 4 keys (shorter than the prompt)',
    features: { slidingWindow: 4 },
    make() {
      const v = writeVariant('mistral-w4', {
        model_type: 'mistral', hidden_size: 32, intermediate_size: 48, num_hidden_layers: L, num_attention_heads: 4, num_key_value_heads: 2,
        max_position_embeddings: 64, sliding_window: 4,
      }, llamaLikeNames({ layers: L, D: 32, H: 4, Hkv: 2, d: 8, I: 48, untied: true }));
      return { v, reference: llamaLikeReference(v, L) };
    },
  },
  {
    label: 'mistral with sliding_window null (full causal attention)',
    features: { slidingWindow: undefined },
    make() {
      const v = writeVariant('mistral-full', {
        model_type: 'mistral', hidden_size: 32, intermediate_size: 48, num_hidden_layers: L, num_attention_heads: 4, num_key_value_heads: 2,
        max_position_embeddings: 64, sliding_window: null,
      }, llamaLikeNames({ layers: L, D: 32, H: 4, Hkv: 2, d: 8, I: 48, untied: true }));
      return { v, reference: llamaLikeReference(v, L) };
    },
  },
];

const made = new Map(VARIANTS.map((c) => [c.label, c.make()]));
const IDS = [1, 403, 87, 12, 250, 9, 311, 77, 45, 2, 100, 18, 64, 200, 5];

describe.each(BACKEND_NAMES)('%s: variants without a shared fixture equal the float64 reference built from their named tensors', (backendName) => {
  it.for(VARIANTS.map((c) => c.label))('%s', async (label, ctx) => {
    const backend = await backendFor(backendName, ctx);
    const c = VARIANTS.find((x) => x.label === label)!, { v, reference } = made.get(label)!;
    const model = loadModel(v.dir, { backend });
    for (const [k, want] of Object.entries(c.features)) expect((model.config as unknown as Record<string, unknown>)[k], k).toEqual(want);
    const expected = referenceLogits(model.config, reference, IDS);
    const tol = backendName === 'cpu' ? TOL.golden : TOL.gpuGolden;
    const rows = [IDS.slice(0, 5), IDS, IDS.slice(0, 11)];
    const { whole, chunked, batch } = await forwards(model, IDS, rows);
    expectClose(whole, expected.flat(), tol, `${label} whole`);
    expectClose(chunked, whole, TOL.f32, `${label} chunked vs whole`);
    rows.forEach((r, i) => expectClose(batch[i]!, expected[r.length - 1]!, tol, `${label} batch row ${i}`));
  });
});

describe('a sliding window changes what a query sees (the window is honoured, not ignored)', () => {
  it('mistral: the logits within the window equal full attention, past it they differ', async () => {
    const w4 = loadModel(made.get(VARIANTS[4]!.label)!.v.dir);
    const V = w4.config.vocabSize;
    const windowed = await read(w4.backend, w4.forward(IDS, w4.newCache(), { allLogits: true }));
    const full = referenceLogits({ ...w4.config, slidingWindow: undefined }, w4.weights, IDS);
    // positions 0 … 3 see at most 4 keys: no difference; every later one attends to fewer keys
    expectClose(windowed.subarray(0, 4 * V), full.slice(0, 4).flat(), TOL.golden, 'inside the window');
    for (let p = 4; p < IDS.length; p++) {
      const diff = Math.max(...Array.from(windowed.subarray(p * V, (p + 1) * V), (x, i) => Math.abs(x - full[p]![i]!)));
      expect(diff, `position ${p}`).toBeGreaterThan(1e-3);
    }
  });
});

describe('unsupported variants fail at load naming the config field and its value', () => {
  const llama = { hidden_size: 32, intermediate_size: 48, num_hidden_layers: 1, num_attention_heads: 4, vocab_size: 16 };
  it.each([
    [{ model_type: 'qwen2', ...llama, use_sliding_window: true, sliding_window: 4096 }, /"use_sliding_window" true is not supported for qwen2/],
    [{ model_type: 'qwen3', ...llama, use_sliding_window: true }, /"use_sliding_window" true is not supported for qwen3/],
    [{ model_type: 'qwen2', ...llama, num_experts: 8 }, /"num_experts" 8: mixture-of-experts/],
    [{ model_type: 'mistral', ...llama, num_local_experts: 8 }, /"num_local_experts" 8: mixture-of-experts/],
    [{ model_type: 'mixtral', ...llama }, /unsupported model_type "mixtral"/],
    [{ model_type: 'qwen2_moe', ...llama }, /unsupported model_type "qwen2_moe"/],
    [{ model_type: 'opt', hidden_size: 32, ffn_dim: 64, num_hidden_layers: 1, num_attention_heads: 4, vocab_size: 16, enable_bias: false }, /"enable_bias" false is not supported/],
    [{ model_type: 'opt', hidden_size: 32, ffn_dim: 64, num_hidden_layers: 1, num_attention_heads: 4, vocab_size: 16, layer_norm_elementwise_affine: false }, /"layer_norm_elementwise_affine" false is not supported/],
    [{ model_type: 'mistral', ...llama, sliding_window: 0 }, /"sliding_window" must be a positive integer, got 0/],
    [{ model_type: 'opt', hidden_size: 30, ffn_dim: 64, num_hidden_layers: 1, num_attention_heads: 4, vocab_size: 16 }, /"hidden_size" 30 is not divisible by "num_attention_heads" 4/],
  ] as [Record<string, unknown>, RegExp][])('%j', (raw, message) => {
    expect(() => parseConfig(raw, 'DIR/config.json')).toThrow(message);
    expect(() => parseConfig(raw, 'DIR/config.json')).toThrow(/^DIR\/config\.json: /);
  });

  it('defaults as transformers has them: qwen3 head_dim 128, mistral window 4096, qwen2 biases on q/k/v only, OPT pre-LN with a final norm', () => {
    const q3 = parseConfig({ model_type: 'qwen3', hidden_size: 64, intermediate_size: 48, num_hidden_layers: 1, num_attention_heads: 4, vocab_size: 16 });
    expect(q3.headDim).toBe(128);
    expect(parseConfig({ model_type: 'mistral', hidden_size: 64, intermediate_size: 48, num_hidden_layers: 1, num_attention_heads: 4, vocab_size: 16 }).slidingWindow).toBe(4096);
    expect(parseConfig({ model_type: 'qwen2', hidden_size: 64, intermediate_size: 48, num_hidden_layers: 1, num_attention_heads: 4, vocab_size: 16, attention_bias: false }).bias)
      .toEqual({ q: true, k: true, v: true, o: false, mlp: false });
    const opt = parseConfig({ model_type: 'opt', hidden_size: 32, ffn_dim: 64, num_hidden_layers: 1, num_attention_heads: 4, vocab_size: 16 });
    expect([opt.postNorm, opt.finalNorm, opt.embedDim, opt.normEps, opt.activation]).toEqual([false, true, 32, 1e-5, 'relu']);
    expect(parseConfig({ model_type: 'opt', hidden_size: 32, ffn_dim: 64, num_hidden_layers: 1, num_attention_heads: 4, vocab_size: 16, _remove_final_layer_norm: true }).finalNorm).toBe(false);
  });

  it('a variant missing one of its tensors is refused naming the tensor and the shape config.json implies', () => {
    const { v } = made.get(VARIANTS[0]!.label)!;
    const dir = fs.mkdtempSync(path.join(path.dirname(v.dir), 'spikelm-opt-missing-'));
    for (const f of fs.readdirSync(v.dir)) fs.copyFileSync(path.join(v.dir, f), path.join(dir, f));
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, word_embed_proj_dim: 8 }));
    expect(() => loadModel(dir)).toThrow(/tensor "decoder\.embed_tokens\.weight" has shape \[512, 16\], but config\.json implies \[512, 8\]/);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, word_embed_proj_dim: 32 }));
    expect(() => loadModel(dir)).toThrow(/tensor "decoder\.embed_tokens\.weight" has shape \[512, 16\], but config\.json implies \[512, 32\]/);
  });
});

describe('the spiking networks of the variants equal their independent references', () => {
  const calibration = (dir: string) => createCalibrationData(loadTokenizer(dir), { numSamples: 2 });

  it.for(VARIANTS.map((c) => c.label))('%s, layerwise phase-ternary: fast = event = every site quantized in float64; cached chunks = recompute', async (label) => {
    const { v } = made.get(label)!;
    const ann = loadModel(v.dir);
    const { snn } = await convertModelToSpiking(ann, calibration(v.dir));
    expect(snn.schedule).toBe('layerwise');
    // OPT's projections are linear layers like any other: they have encoders
    if (ann.config.embedDim !== ann.config.hiddenSize) expect(snn.sites.map((s) => s.name)).toEqual(expect.arrayContaining(['proj_in', 'proj_out']));
    const run = snn.forward(IDS, snn.newCache(), { allLogits: true });
    const fast = await read(snn.backend, run.logits);
    expectClose(fast, layerwiseReference(snn, IDS), TOL.f32, `${label} fast`);
    // a q spike reaches the keys its query sees: at most W of them within a sliding window
    const stats = await read(snn.backend, run.stats), W = ann.config.slidingWindow;
    snn.sites.forEach((site, i) => {
      if (site.kind !== 'q_in') return;
      const events = stats[i * STATS_WIDTH + STAT.events]!, ops = stats[i * STATS_WIDTH + STAT.synapticOps]!;
      expect(events).toBeGreaterThan(0);
      if (W !== undefined) expect(ops, site.name).toBeLessThanOrEqual(events * W);
      else expect(ops, site.name).toBeGreaterThan(events * 4);
    });
    expect(run.attendedKeys).toBe(IDS.reduce((a, _, p) => a + Math.min(W ?? Infinity, p + 1), 0));
    const event = snn.with({ execution: 'event' });
    expectIdentical(await read(snn.backend, event.forward(IDS, event.newCache(), { allLogits: true }).logits), fast, 'event = fast');
    const cache = snn.newCache(2), parts = new Float32Array(fast.length), V = ann.config.vocabSize;
    for (const [a, z] of [[0, 3], [3, 4], [4, 11], [11, IDS.length]] as const) parts.set(await read(snn.backend, snn.forward(IDS.slice(a, z), cache, { allLogits: true }).logits), a * V);
    expectIdentical(parts, fast, 'cached chunks = recompute');
  });

  it.for(VARIANTS.map((c) => c.label))('%s: saved and loaded (the ANN under its Hugging Face names, the thresholds beside), the same logits', async (label) => {
    const { v } = made.get(label)!;
    const ann = loadModel(v.dir), tok = loadTokenizer(v.dir);
    const { snn, record } = await convertModelToSpiking(ann, calibration(v.dir));
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-saved-'));
    saveSnnModel(snn, tok, path.join(out, 'snn'), record);
    const loaded = loadSnnModel(path.join(out, 'snn'));
    expect(loaded.snn.config.family).toBe(ann.config.family);
    for (const k of ['postNorm', 'finalNorm', 'embedDim', 'qkNorm', 'slidingWindow', 'bias'] as const) expect(loaded.snn.config[k], k).toEqual(ann.config[k]);
    const a = await read(snn.backend, snn.forward(IDS, snn.newCache(), { allLogits: true }).logits);
    expect(Array.from(await read(loaded.snn.backend, loaded.snn.forward(IDS, loaded.snn.newCache(), { allLogits: true }).logits))).toEqual(Array.from(a));
    // the saved ANN is the original: the same weights by fingerprint and the same logits
    expect(weightsFingerprint(loadWeights(path.join(out, 'snn'), { ignore: (n) => n.startsWith('snn.') }).weights)).toBe(weightsFingerprint(ann.weights));
  });

  it.for(VARIANTS.map((c) => c.label))('%s, stepwise rate (T = 6): the float64 quantized reference (signed neurons) or convergence (ReLU neuron); single step = multi step', async (label) => {
    const { v } = made.get(label)!;
    const ann = loadModel(v.dir);
    const { snn } = await convertModelToSpiking(ann, calibration(v.dir), { timesteps: 6, schedule: 'stepwise', coding: 'rate' });
    const logits = async (m: typeof snn, execution?: 'single') => read(m.backend, m.forward(IDS, m.newCache(), { allLogits: true, ...(execution ? { execution } : {}) }).logits);
    const multi = await logits(snn);
    expect(Array.from(await logits(snn, 'single'))).toEqual(Array.from(multi));
    if (!snn.reluNeuron) {
      expectClose(multi, stepwiseReference(snn, IDS), TOL.f32, `${label} stepwise`);
    } else {
      // OPT's ReLU runs as the down encoder's unsigned neuron: no closed form, but it converges to the ANN
      const exact = await read(ann.backend, ann.forward(IDS, ann.newCache(), { allLogits: true }));
      const err = async (T: number) => {
        const x = await logits(snn.withTimesteps(T));
        return x.reduce((a, y, i) => a + Math.abs(y - exact[i]!), 0) / x.length;
      };
      const [e4, e64] = [await err(4), await err(64)];
      expect(e64).toBeLessThan(e4 / 4);
    }
  });
});

describe('the target-driven conversion (the default) on every new family', () => {
  // the default target (top-1 ≥ 99%, KL ≤ 1e-3) on a short calibration text (the search in seconds);
  // the fixtures' random weights make top-1 near-ties, which a short select part may not resolve to
  // 99% with its margin: the criterion here is the issue's, KL ≤ 1e-3 on the default's row
  const text = bundledText('calibration-stories.txt').text.split('\n').slice(0, 14).join('\n');
  const evalIds = (name: (typeof NEW_FAMILIES)[number]) => Object.values(golden(name)).flatMap((g) => g.input_ids);

  it.for(NEW_FAMILIES)('%s: KL ≤ 1e-3 on the select part and on the golden prompts, planes that differ by site, cached decoding = recompute', async (name) => {
    const ann = loadModel(fixtureDir(name)), tok = loadTokenizer(fixtureDir(name));
    const { snn, search } = await convertToTarget(ann, splitCalibration(tok, { text }), { finetune: 0 });
    expect(search.chosen.kl + search.chosen.kl_margin).toBeLessThanOrEqual(DEFAULT_TARGET.kl);
    expect(search.chosen.energy_fp32).toBeLessThan(search.baseline.energy_fp32);
    expect(new Set(Object.values(search.chosen.planes)).size).toBeGreaterThan(1);
    const ids = evalIds(name);
    const report = await measureFidelity(ann, snn, ids, [snn.timesteps]);
    expect(report.results[0]!.kl).toBeLessThanOrEqual(1e-3);
    const probe = ids.slice(0, 20), V = ann.config.vocabSize;
    const full = await read(snn.backend, snn.forward(probe, snn.newCache(), { allLogits: true }).logits);
    const cache = snn.newCache(2), parts = new Float32Array(full.length);
    for (const [a, z] of [[0, 7], [7, 8], [8, 20]] as const) parts.set(await read(snn.backend, snn.forward(probe.slice(a, z), cache, { allLogits: true }).logits), a * V);
    expect(Array.from(parts)).toEqual(Array.from(full));
  });
});

describe('fine-tuning: the training network of every variant is its spiking network (its gradients: test/train-grad.test.ts)', () => {
  it.for(VARIANTS.map((c) => c.label))('%s', async (label) => {
    const { v } = made.get(label)!;
    const ann = loadModel(v.dir), tok = loadTokenizer(v.dir);
    const calib = createCalibrationData(tok, { numSamples: 4, maxLength: 24 });
    const { snn } = await convertModelToSpiking(ann, calib, { coding: 'phase', timesteps: 6 });
    const net = new TrainNet(snn);
    const res = net.forward(Int32Array.from(IDS), net.initialParams(snn));
    const out = snn.forward(IDS, snn.newCache(), { allLogits: true });
    expectClose(res.logits, await read(snn.backend, out.logits), TOL.golden, `${label}: training forward vs SpikingLM`);
    const stats = await read(snn.backend, out.stats);
    let events = 0;
    for (let i = 0; i < snn.sites.length; i++) events += stats[i * STATS_WIDTH + STAT.events]!;
    expect(res.events).toBe(events);
    expect(res.neurons).toBe(out.neurons.reduce((a, n) => a + n, 0));
    const exact = net.forward(Int32Array.from(IDS), net.initialParams(snn), 'exact');
    expectClose(exact.logits, await read(ann.backend, ann.forward(IDS, ann.newCache(), { allLogits: true })), TOL.golden, `${label}: exact training forward vs the ANN`);
  });
});

describe('OPT-style tokenizers from vocab.json + merges.txt alone', () => {
  // the slow files of the GPT-2 byte-level BPE that opt-random's tokenizer.json holds
  const source = fixtureDir('opt-random');
  const tokJson = JSON.parse(fs.readFileSync(path.join(source, 'tokenizer.json'), 'utf8'));
  const slowDir = (config: Record<string, unknown>) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-slow-tok-'));
    fs.writeFileSync(path.join(dir, 'vocab.json'), JSON.stringify(tokJson.model.vocab));
    fs.writeFileSync(path.join(dir, 'merges.txt'), `#version: 0.2\n${(tokJson.model.merges as string[]).join('\n')}\n`);
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
    return dir;
  };
  const texts = ['Hello, world', ' Once upon a time, there was a café.', 'tabs\tand\nnewlines  two spaces', '日本語 and emoji 🙂'];
  const fast = loadTokenizer(source);

  it('encode as the fast tokenizer.json does; decode back to the text', () => {
    const slow = loadTokenizer(slowDir({ bos_token: '<|endoftext|>', eos_token: '<|endoftext|>' }));
    for (const t of texts) {
      expect(slow.encode(t)).toEqual(fast.encode(t));
      expect(slow.decode(slow.encode(t))).toBe(t);
    }
    expect(slow.eosTokenIds).toContain(50256);
  });

  it('add_bos_token (as OPT\'s tokenizer_config.json has it) prepends the BOS token, as HF\'s OPT tokenizer prepends </s>', () => {
    const slow = loadTokenizer(slowDir({ bos_token: '<|endoftext|>', add_bos_token: true }));
    for (const t of texts) expect(slow.encode(t)).toEqual([50256, ...fast.encode(t)]);
    expect(slow.encode(texts[0]!, { addSpecialTokens: false })).toEqual(fast.encode(texts[0]!));
    expect(slow.decode(slow.encode(texts[1]!), { skipSpecialTokens: true })).toBe(texts[1]);
  });

  it('a directory with neither tokenizer.json nor both slow files is refused saying what is missing', () => {
    const dir = slowDir({});
    fs.rmSync(path.join(dir, 'merges.txt'));
    expect(() => loadTokenizer(dir)).toThrow(/tokenizer\.json: not found \(spikelm needs a tokenizer\.json, or vocab\.json and merges\.txt .*this directory has only vocab\.json/);
    fs.writeFileSync(path.join(dir, 'merges.txt'), '#version: 0.2\nĠ t\nbad line here\n');
    expect(() => loadTokenizer(dir)).toThrow(/merges\.txt: line 3: a merge is two tokens separated by one space/);
  });
});

describe('the spiking networks of the new families on the GPU', () => {
  it.for(NEW_FAMILIES)('%s: layerwise, fast and event execution: the CPU network\'s logits and spike counts, to a digit flip', async (name, ctx) => {
    const gpu = await backendFor('gpu', ctx);
    const dir = fixtureDir(name);
    const ann = loadModel(dir);
    const { snn } = await convertModelToSpiking(ann, createCalibrationData(loadTokenizer(dir), { numSamples: 2 }));
    const ids = Object.values(golden(name)).at(-1)!.input_ids;
    const c = snn.forward(ids, snn.newCache(), { allLogits: true });
    const cl = await read(snn.backend, c.logits), cr = (await forwardStats(snn, c)).summary();
    for (const execution of ['fast', 'event'] as const) {
      const g = new SpikingLM(snn.config, snn.weights, gpu, { ...snn.spiking, execution });
      const out = g.forward(ids, g.newCache(), { allLogits: true });
      const gl = await read(gpu, out.logits), gr = (await forwardStats(g, out)).summary();
      // float32 softmax and accumulation orders differ from the CPU's: a value on a digit boundary
      // may flip a digit, and what follows moves by about one least significant digit (measured on
      // mistral-random: the same counts in layer 0, a few events apart later; max |Δlogit| 0.03,
      // with or without its window). So: mean |Δ| small, counts within 1% per site
      const meanAbs = cl.reduce((a, x, i) => a + Math.abs(x - gl[i]!), 0) / cl.length;
      expect(meanAbs, `${name} ${execution}`).toBeLessThan(0.01);
      cr.perSite.forEach((site, i) => expect(Math.abs(gr.perSite[i]!.events - site.events), `${execution} ${site.site}`).toBeLessThanOrEqual(Math.max(2, 0.01 * site.events)));
    }
  });
});
