/**
 * Spike and energy counts pinned to numbers worked out by hand (DESIGN.md §4, §6):
 *
 *  1. the kernels' statistics on inputs small enough to spike by hand (both backends): an encoder
 *     row and a spike-driven attention head — events, active neurons, steps, events × fan-out;
 *  2. the energy report's counts on a hand-sized model (Llama, 2 layers, width 4, GQA) from a
 *     given tally, layerwise (weighted code) and stepwise (rate bursts), every term written out;
 *  3. a converted model's tallies against counts of the digits it emitted (observed, not counted
 *     by the kernels), so doubling the kernels' counts or dropping a factor fails here.
 */
import { describe, expect, it } from 'vitest';
import { convertModelToSpiking, createCalibrationData } from '../src/convert/api.js';
import { type ModelConfig, parseConfig } from '../src/nn/config.js';
import { loadModel } from '../src/nn/model.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';
import { energyReport, siteOps } from '../src/snn/energy.js';
import { MEMORY_PRESETS, memoryReport, parseMemoryPreset } from '../src/snn/memory.js';
import { encoderSites } from '../src/snn/sites.js';
import { SpikeTally } from '../src/snn/stats.js';
import type { Backend, BTensor, DeviceThresholds } from '../src/tensor/backend.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { STAT, STATS_WIDTH } from '../src/tensor/kernels/codes.js';
import { Tensor } from '../src/tensor/tensor.js';
import { requireGpu } from './helpers/backends.js';
import { fixtureDir } from './helpers/fixtures.js';

const cpu = new CpuBackend();
const thresholds = (b: Backend, theta: number[]): DeviceThresholds => ({
  theta: b.upload(Tensor.from([theta.length], theta), 'vector'),
  invTheta: b.upload(Tensor.from([theta.length], theta.map((t) => 1 / t)), 'vector'),
});
const statsRow = async (b: Backend, t: BTensor) => {
  const d = (await b.read(t)).data;
  return Object.fromEntries(Object.entries(STAT).map(([k, i]) => [k, d[i]!]));
};

describe('kernel statistics on inputs spiked by hand', () => {
  /*
   * Ternary code, T = 3, θ = 1 (plane thresholds ⅔ on v, v ← 2(v − d)):
   *   x =  1     v: 1 → d=1, v=0 → 0 → 0          digits 1 0 0   sum 4 (× ¼ = 1)
   *   x = −0.5   v: −0.5 → 0, −1 → −1, 0 → 0        digits 0 −1 0  sum −2 (−0.5)
   *   x =  0.25  v: 0.25 → 0, 0.5 → 0, 1 → 1         digits 0 0 1   sum 1 (0.25)
   *   x =  0     silent
   * events 3, nonzero 3, active neurons 3, their steps 3·3 = 9, neuron-steps 4·3 = 12;
   * with a fan-out of 5: 15 synaptic operations.
   */
  const expected = { events: 3, maxPerStep: 1, nonzero: 3, neuronSteps: 12, extraSteps: 0, synapticOps: 15, overflowRows: 0, clipped: 0, extraFanout: 0, activeNeurons: 3, activeSteps: 9 };
  const encodeByHand = async (b: Backend) => {
    const stats = b.zeros([1, STATS_WIDTH]);
    const enc = b.encode(b.upload(Tensor.from([1, 4], [1, -0.5, 0.25, 0]), 'activation'), thresholds(b, [1, 1, 1, 1]), { kind: 'ternary', T: 3 }, { tensor: stats, row: 0, fanout: 5 }, true);
    expect(Array.from((await b.read(enc.sums)).data)).toEqual([4, -2, 1, 0]);
    expect(Array.from((await b.read(enc.digits!)).data).slice(8 * 4)).toEqual([1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1, 0]); // the last 3 of 3 + 8 planes
    expect(await statsRow(b, stats)).toEqual(expected);
  };
  it('encoder (CPU)', () => encodeByHand(cpu));
  it('encoder (GPU)', async (ctx) => encodeByHand(await requireGpu(ctx)));

  /*
   * One head, d = 2, two keys, q = 0 (a silent query: no q events), so both scores are 0 and
   * p = [½, ½]. p code ternary T = 3, θp = ½: v = 1 for each key → digits 1 0 0, sum 4 → p̂ = 4·¼·½ = ½.
   * out = ½·v0 + ½·v1. Stats of p: events 2, active 2 (keys), steps 2·3 = 6, neuron-steps 2·3 = 6,
   * synaptic operations 2 × d = 4. q's stats (encoded separately): events 0.
   */
  const attentionByHand = async (b: Backend) => {
    const stats = b.zeros([1, STATS_WIDTH]);
    const q = b.upload(Tensor.from([1, 2], [0, 0]), 'activation');
    const k = b.upload(Tensor.from([2, 2], [0.3, -0.2, 0.7, 0.1]), 'activation');
    const v = b.upload(Tensor.from([2, 2], [1, 2, 3, -4]), 'activation');
    const out = b.spikeAttention(q, k, v, b.upload(Tensor.from([2], [1, 1]), 'vector'), thresholds(b, [0.5]),
      { numHeads: 1, numKvHeads: 1, headDim: 2, queryStart: 1, kvLength: 2, scale: 1 }, { q: { kind: 'ternary', T: 3 }, p: { kind: 'ternary', T: 3 } }, 'fast',
      { tensor: stats, row: 0, fanout: 2 });
    expect(Array.from((await b.read(out)).data)).toEqual([2, -1]);
    expect(await statsRow(b, stats)).toEqual({ events: 2, maxPerStep: 1, nonzero: 2, neuronSteps: 6, extraSteps: 0, synapticOps: 4, overflowRows: 0, clipped: 0, extraFanout: 0, activeNeurons: 2, activeSteps: 6 });
  };
  it('spike-driven attention (CPU)', () => attentionByHand(cpu));
  it('spike-driven attention (GPU)', async (ctx) => attentionByHand(await requireGpu(ctx)));
});

// A hand-sized Llama: 2 layers, D = 4, H = 2 heads sharing Hkv = 1 KV head, d = 2, I = 6, V = 8.
const config = parseConfig({
  model_type: 'llama', vocab_size: 8, hidden_size: 4, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1,
  intermediate_size: 6, max_position_embeddings: 16, rms_norm_eps: 1e-5, hidden_act: 'silu',
});

/** A tally of n = 2 tokens (attending 1 + 2 = 3 keys, one head row), every site's columns given. */
function tally(schedule: 'layerwise' | 'stepwise', columns: (kind: string) => Partial<Record<keyof typeof STAT, number>>, neurons: (kind: string) => number, cfg: ModelConfig = config): SpikeTally {
  const sites = encoderSites(cfg, schedule);
  const t = new SpikeTally(sites);
  const stats = new Float32Array(sites.length * STATS_WIDTH);
  sites.forEach((s, i) => {
    for (const [k, v] of Object.entries(columns(s.kind))) stats[i * STATS_WIDTH + STAT[k as keyof typeof STAT]] = v;
  });
  t.add(stats, { neurons: sites.map((s) => neurons(s.kind)), tokens: 2, attendedKeys: 3, headRows: 1, statsSteps: 1 });
  return t;
}

/**
 * The layerwise tally the hand-worked cases share (T = 3 at every site, n = 2, A = 3, r = 1): linear
 * sites 5 events, 10 synaptic ops, 3 active neurons over 9 steps; q_in 2 events, 6 ops, 2 active / 6
 * steps; p_in 2 events, 4 ops, 2 / 6; head_in 3 events, 24 ops, 2 / 6; neuron-tokens per kind below.
 */
function layerwiseTally(cfg: ModelConfig = config): SpikeTally {
  return tally('layerwise', (kind) => kind === 'q_in' ? { events: 2, synapticOps: 6, activeNeurons: 2, activeSteps: 6 }
    : kind === 'p_in' ? { events: 2, synapticOps: 4, activeNeurons: 2, activeSteps: 6 }
      : kind === 'head_in' ? { events: 3, synapticOps: 24, activeNeurons: 2, activeSteps: 6 }
        : { events: 5, synapticOps: 10, activeNeurons: 3, activeSteps: 9 },
  (kind) => ({ attn_in: 8, q_in: 8, p_in: 6, o_in: 8, mlp_in: 8, down_in: 12, head_in: 4 })[kind]!, cfg);
}

describe('energy counts on a hand-sized model (2 layers, width 4), worked out by hand', () => {
  /*
   * ANN, n = 2 tokens, A = 3 attended keys, r = 1 head row; qW = H·d = 4, kvW = 2.
   *   linear       n·(D·(qW+2kvW) + qW·D + D·2I + I·D) = 2·(32 + 16 + 48 + 24) = 240 MACs
   *   attention    2·qW·A = 24; softmax 4·H·A = 24; RoPE 2·n·(qW+kvW) = 24 MACs
   *   elementwise  norms 2·4·n·D = 64, SiLU 4·n·I = 48, gate product n·I = 12 → 124 MACs;
   *                residual adds 2·n·D = 16 ACs
   *   layer 436 MACs + 16 ACs; two layers 872 + 32; head r·D·V = 32 + final norm 4·r·D = 16 MACs
   *   total 920 MACs, 32 ACs → FP32 920·4.6 + 32·0.9 = 4260.8 pJ
   */
  const annMacs = 920, annAcs = 32;

  it('layerwise, ternary weighted code, T = 3 at every site', () => {
    /*
     * Tally per site (n = 2): linear sites 5 events, 10 synaptic ops, 3 active neurons over 9 steps;
     * neuron-tokens attn_in n·D = 8, o_in n·qW = 8, mlp_in 8, down_in n·I = 12;
     * q_in: 8 neuron-tokens, 2 events, 6 synaptic ops (each event reaches the keys seen), 2 active / 6 steps;
     * p_in: H·A = 6 neurons, 2 events, 4 synaptic ops (× d), 2 active / 6 steps;
     * head_in: r·D = 4 neurons, 3 events, 24 synaptic ops (× V), 2 active / 6 steps.
     * SNN per layer (ACs unless said):
     *   synapses   4·10 + 6 + 4 = 50
     *   membranes  (T−1)·N·n per linear: 2·8·2 + 2·4·2 + 2·12·2 + 2·4·2 = 112;
     *              scores (T−1)·H·A = 12, outputs (T−1)·n·H·d = 16 → 140
     *   neurons    charge + steps + silent + resets: linear 3 × (8+9+5+5) + (12+9+9+5) = 116;
     *              q 8+6+6+2 = 22, p 6+6+4+2 = 18 → 156
     *   elementwise as the ANN: 16 ACs, 124 MACs; softmax 24, RoPE 24, cache scaling 2·n·kvW = 8 MACs
     *   layer: 362 ACs, 180 MACs
     * head: synapses 24, membranes (T−1)·V·r = 16, neurons 4+6+2+3 = 15 → 55 ACs; final norm 16 MACs
     * total: 2·362 + 55 = 779 ACs, 2·180 + 16 = 376 MACs → FP32 376·4.6 + 779·0.9 = 2430.7 pJ
     */
    const t = layerwiseTally();
    const r = energyReport({ config, schedule: 'layerwise', coding: 'phase-ternary', timesteps: 3, maxSpikes: 1, tally: t });
    expect(r.ann.total).toEqual({ macs: annMacs, acs: annAcs });
    expect(r.snn.total).toEqual({ macs: 376, acs: 779 });
    expect(r.layers[0]!.snn).toEqual({ macs: 180, acs: 362 });
    expect(r.snn.parts.membranes).toEqual({ acs: 2 * 140 + 16, macs: 0 });
    expect(r.presets.fp32.annJoules).toBeCloseTo(4260.8e-12, 20);
    expect(r.presets.fp32.snnJoules).toBeCloseTo(2430.7e-12, 20);
    expect(r.presets.fp32.ratio).toBeCloseTo(2430.7 / 4260.8, 12);
  });

  it('siteOps (what the plane search prices a site with) adds up to the report\'s synapses, membranes and neurons', () => {
    const t = layerwiseTally();
    // layers at different planes: 3 in layer 0, 2 in layer 1 and the head
    const input = { config, schedule: 'layerwise' as const, coding: 'phase-ternary' as const, timesteps: 3, stepsOf: (s: { layer: number }) => (s.layer === 0 ? 3 : 2), maxSpikes: 1, tally: t };
    const r = energyReport(input);
    const sum = t.sites.reduce((a, _, i) => ({ acs: a.acs + siteOps(input, i).acs, macs: a.macs + siteOps(input, i).macs }), { acs: 0, macs: 0 });
    const parts = ['synapses', 'membranes', 'neurons'].map((k) => r.snn.parts[k]!);
    expect(sum).toEqual({ acs: parts.reduce((a, p) => a + p.acs, 0), macs: parts.reduce((a, p) => a + p.macs, 0) });
    // by hand, layer 0's mlp_in at 3 planes: 10 synaptic ops + (3−1)·12·2 = 48 doublings + neurons
    // (8 charges + 9 comparisons + 5 silent ones + 5 resets = 27) = 85
    expect(siteOps(input, t.sites.findIndex((s) => s.name === 'layers.0.mlp_in'))).toEqual({ acs: 85, macs: 0 });
    // and layer 1's at 2 planes: 10 + (2−1)·12·2 + 27 = 61
    expect(siteOps(input, t.sites.findIndex((s) => s.name === 'layers.1.mlp_in'))).toEqual({ acs: 61, macs: 0 });
  });

  it('layerwise with fewer steps at some sites (siteSteps): the doublings follow each site\'s steps', () => {
    // as above with mlp_in at T − 1 = 2 steps: its membranes drop from (3−1)·12·2 = 48 to (2−1)·12·2 = 24 per layer
    const t = layerwiseTally();
    const r = energyReport({ config, schedule: 'layerwise', coding: 'phase-ternary', timesteps: 3, stepsOf: (s) => (s.kind === 'mlp_in' ? 2 : 3), maxSpikes: 1, tally: t });
    expect(r.snn.total).toEqual({ macs: 376, acs: 779 - 2 * 24 });
  });

  it('stepwise, rate bursts, T = 2: every dense operator runs at every step', () => {
    /*
     * Tally: every site 20 synaptic ops, neuron-steps T × neuron-tokens (attn_in 8, o_in 8, mlp_in 8,
     * down_in 12, head_in n·D = 8: the stepwise head's neurons run for every token).
     * SNN per layer:
     *   synapses   4·20 = 80 ACs (no biases)
     *   neurons    bursts: an integrate AC and two MACs (⌊v/θ⌋, subtract) per neuron-step:
     *              steps 16+16+16+24 = 72 → 72 ACs, 144 MACs
     *   attention  T·(24 + 24 + 24) = 144 MACs (scores, softmax, RoPE, dense at every step)
     *   elementwise T·124 = 248 MACs, T·16 = 32 ACs
     *   compensation T·n·(2D + (qW+2kvW) + qW + 3I)·3 = 2·2·38·3 = 456 MACs
     *   layer: 184 ACs, 992 MACs
     * head: synapses 20, neurons 16 ACs + 32 MACs, final norm T·n·D·4 = 64, compensation T·n·D·3 = 48 MACs
     * total: 2·184 + 36 = 404 ACs, 2·992 + 144 = 2128 MACs
     */
    const t = tally('stepwise', () => ({ synapticOps: 20 }), (kind) => ({ attn_in: 8, o_in: 8, mlp_in: 8, down_in: 12, head_in: 8 })[kind]!);
    // neuron-steps: T × neuron-tokens (the kernels count them; given here)
    t.sites.forEach((_, i) => (t.stats[i * STATS_WIDTH + STAT.neuronSteps] = 2 * t.neurons[i]!));
    const r = energyReport({ config, schedule: 'stepwise', coding: 'rate', timesteps: 2, maxSpikes: Infinity, tally: t });
    expect(r.ann.total).toEqual({ macs: annMacs, acs: annAcs });
    expect(r.snn.total).toEqual({ macs: 2128, acs: 404 });
    expect(r.snn.parts['attention (dense, every step)']).toEqual({ acs: 0, macs: 2 * 144 });
  });
});

describe('energy of the new families\' features on hand-sized models, worked out by hand', () => {
  it('Qwen3\'s q/k norms: dense operators once per token, NORM_OPS MACs per normalised element, in both networks', () => {
    /*
     * The hand-sized Llama above as a Qwen3 (head_dim 2 given, no biases): its q/k norms normalise
     * qW + kvW = 4 + 2 = 6 elements per token: 4·n·6 = 48 MACs per layer, in the ANN and (once per
     * token, layerwise) in the SNN; nothing else changes.
     *   ANN 920 + 2·48 = 1016 MACs, 32 ACs;  SNN 376 + 2·48 = 472 MACs, 779 ACs
     */
    const qwen3 = parseConfig({
      model_type: 'qwen3', vocab_size: 8, hidden_size: 4, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 2,
      intermediate_size: 6, max_position_embeddings: 16, rms_norm_eps: 1e-6, hidden_act: 'silu',
    });
    const r = energyReport({ config: qwen3, schedule: 'layerwise', coding: 'phase-ternary', timesteps: 3, maxSpikes: 1, tally: layerwiseTally(qwen3) });
    expect(r.ann.total).toEqual({ macs: 1016, acs: 32 });
    expect(r.snn.total).toEqual({ macs: 472, acs: 779 });
  });

  it('post-LN OPT: ReLU, biases on every projection, learned positions, the norms after the residuals and no final norm', () => {
    /*
     * OPT, D = 4, H = 2 (d = 2, kvW = qW = 4), I = 6, V = 8, do_layer_norm_before false; n = 2, A = 3, r = 1.
     * ANN per layer:
     *   linear     n·(D·12 + qW·D + D·I + I·D) = 2·(48 + 16 + 24 + 24) = 224 MACs; biases n·(12 + 4 + 6 + 4) = 52 ACs
     *   attention  2·qW·A = 24, softmax 4·H·A = 24 MACs, no RoPE
     *   elementwise norms 2·4·n·D = 64 MACs (after the residuals, as many), ReLU n·I = 12 ACs, residual adds 16 ACs
     *   layer 336 MACs, 80 ACs
     * head r·E·V = 32 MACs, no final norm; the position add n·D = 8 ACs
     * total 2·336 + 32 = 704 MACs, 2·80 + 8 = 168 ACs
     * SNN per layer (the shared tally; ACs): synapses 4·10 + biases 52 + q 6 + p 4 = 102;
     *   membranes (T−1)·n·(12 + 4 + 6 + 4) = 104, scores 12, outputs 16 → 132; neurons 116 + 22 + 18 = 156;
     *   elementwise 28 ACs, 64 MACs; softmax 24, cache scaling 2·n·kvW = 16 MACs → 418 ACs, 104 MACs
     * head: synapses 24, membranes 16, neurons 15, position add 8 → 63 ACs
     * total 2·418 + 63 = 899 ACs, 208 MACs
     */
    const opt = parseConfig({
      model_type: 'opt', vocab_size: 8, hidden_size: 4, num_hidden_layers: 2, num_attention_heads: 2, ffn_dim: 6, max_position_embeddings: 16,
      do_layer_norm_before: false,
    });
    const r = energyReport({ config: opt, schedule: 'layerwise', coding: 'phase-ternary', timesteps: 3, maxSpikes: 1, tally: layerwiseTally(opt) });
    expect(r.ann.total).toEqual({ macs: 704, acs: 168 });
    expect(r.snn.total).toEqual({ macs: 208, acs: 899 });
    // the pre-LN OPT of the same shape has the final norm: 4·r·D = 16 MACs more in each network
    const pre = parseConfig({ ...opt.raw, do_layer_norm_before: true });
    const rp = energyReport({ config: pre, schedule: 'layerwise', coding: 'phase-ternary', timesteps: 3, maxSpikes: 1, tally: layerwiseTally(pre) });
    expect([rp.ann.total.macs, rp.snn.total.macs]).toEqual([720, 224]);
  });
});

describe('energy with memory traffic on the hand-sized model, worked out by hand', () => {
  const input = (t: SpikeTally) => ({ config, schedule: 'layerwise' as const, coding: 'phase-ternary' as const, timesteps: 3, maxSpikes: 1, tally: t });

  /*
   * Weights: per layer K·N = 32 (q|k|v) + 16 (o) + 48 (gate|up) + 24 (down) = 120; head D·V = 32.
   * ANN, decode: 2·120·n + 32·r = 512 elements; prefill (a 64-token tile): 2·120 + 32 = 272.
   *   activations (K + N)·rows: per layer (12 + 8 + 16 + 10)·2 = 92, ×2 layers + head 12·1 → 196
   *   kv: writes L·2·kvW·n = 16, reads L·2·kvW·A = 24 → 40
   * SNN (event execution):
   *   weights: synaptic ops of the linear sites 2·4·10 + 24 = 104
   *   kv: writes 16 + q events' key elements 2·6 + p events' value rows 2·4 → 36
   *   accumulators: 2 × every synaptic op (2·50 + 24 = 124) + 2 × the doublings (2·140 + 16 = 296) → 840
   *   neuron state: neurons charged (2·50 + 4 = 104) + 2 × active steps (2·2·48 + 2·6 = 204) → 308
   *   activations: as the ANN, 196
   *   spikes: 51 events × 2 (written, read) × 4 bytes = 408 bytes
   * FP32 (4 bytes), horowitz-45nm: weights (1088 B) and the cache (2·2·2·16 positions·4 = 512 B) fit
   * the 1 MB SRAM (100 pJ per 8 bytes); activations, accumulators, spikes 32 KB (20 pJ); membranes 8 KB (10).
   *   ANN decode: 2048·12.5 + 784·2.5 + 160·12.5 = 29,560 pJ; + compute 4,260.8 = 33,820.8 pJ
   *   SNN:        416·12.5 + 144·12.5 + 3360·2.5 + 1232·1.25 + 784·2.5 + 408·2.5 = 19,920 pJ; + 2,430.7 = 22,350.7 pJ
   *   ANN prefill: 1088·12.5 + 784·2.5 + 160·12.5 = 17,560 pJ; + 4,260.8 = 21,820.8 pJ (the SNN's is its decode's)
   */
  it('decode and prefill at FP32: bytes per kind, placement and joules', () => {
    const t = layerwiseTally();
    const compute = energyReport(input(t));
    const d = memoryReport(input(t), compute, 'decode', 'fp32');
    expect(d.placement).toEqual({ weights: 'sram_1mb', kv: 'sram_1mb', activations: 'sram_32kb', accumulators: 'sram_32kb', spikes: 'sram_32kb', neuron_state: 'sram_8kb' });
    expect(d.weightBytes).toBe(272 * 4);
    expect(d.ann.bytes).toEqual({ weights: 512 * 4, activations: 196 * 4, kv: 40 * 4, accumulators: 0, neuron_state: 0, spikes: 0 });
    expect(d.snn.bytes).toEqual({ weights: 104 * 4, activations: 196 * 4, kv: 36 * 4, accumulators: 840 * 4, neuron_state: 308 * 4, spikes: 408 });
    expect(d.ann.memoryJoules).toBeCloseTo(29560e-12, 20);
    expect(d.snn.memoryJoules).toBeCloseTo(19920e-12, 20);
    expect(d.ann.totalJoules).toBeCloseTo(33820.8e-12, 20);
    expect(d.ratio).toBeCloseTo(22350.7 / 33820.8, 12);
    const p = memoryReport(input(t), compute, 'prefill', 'fp32');
    expect(p.ann.bytes.weights).toBe(272 * 4);
    expect(p.snn.bytes).toEqual(d.snn.bytes);
    expect(p.ann.totalJoules).toBeCloseTo(21820.8e-12, 20);
  });

  it('INT8 moves a quarter of the bytes (spikes stay 32-bit words); DRAM weights cost 13× the 1 MB SRAM', () => {
    const t = layerwiseTally();
    const compute = energyReport(input(t));
    const f = memoryReport(input(t), compute, 'decode', 'fp32'), q = memoryReport(input(t), compute, 'decode', 'int8');
    for (const k of ['weights', 'activations', 'kv', 'accumulators', 'neuron_state'] as const) expect(q.snn.bytes[k] * 4).toBe(f.snn.bytes[k]);
    expect(q.snn.bytes.spikes).toBe(408);
    expect(q.ann.computeJoules).toBeCloseTo(compute.presets.int8.annJoules, 20);
    const dram = memoryReport(input(t), compute, 'decode', 'fp32', MEMORY_PRESETS.dram);
    expect(dram.placement.weights).toBe('dram');
    expect(dram.ann.memoryJoules - f.ann.memoryJoules).toBeCloseTo((2048 + 160) * (1300 - 100) / 8 * 1e-12, 20);
  });

  it('a user preset is checked field by field', () => {
    const ok = { name: 'mine', pj_per_64_bits: { sram_8kb: 1, sram_32kb: 2, sram_1mb: 3, dram: 4 }, placement: { weights: 'dram', kv: 'auto', activations: 'sram_8kb', accumulators: 'sram_8kb', neuron_state: 'sram_8kb', spikes: 'sram_8kb' } };
    expect(parseMemoryPreset(ok, 'p.json').pjPer64Bits.dram).toBe(4);
    expect(() => parseMemoryPreset({ ...ok, pj_per_64_bits: { ...ok.pj_per_64_bits, dram: -1 } }, 'p.json')).toThrow(/p\.json: "pj_per_64_bits\.dram"/);
    expect(() => parseMemoryPreset({ ...ok, placement: { ...ok.placement, spikes: 'L2' } }, 'p.json')).toThrow(/"placement\.spikes" must be one of/);
    expect(() => parseMemoryPreset([], 'p.json')).toThrow(/JSON object/);
  });
});

describe('a converted model\'s tallies equal counts of the digits it emitted', () => {
  const dir = fixtureDir('stories260k');
  const ann = loadModel(dir);
  const tok = loadTokenizer(dir);
  const prompt = Array.from(tok.encode('Once upon a time, there was a little girl named Lily.'));

  it.each([['default (layerwise phase-ternary T=9)', {}], ['layerwise phase T=6', { coding: 'phase', timesteps: 6 }], ['layerwise rate T=5', { coding: 'rate', timesteps: 5 }]] as const)('%s: events and synaptic operations per linear site', async (_name, opts) => {
    const { snn } = await convertModelToSpiking(ann, createCalibrationData(tok, { numSamples: 2 }), opts);
    const counted = new Map<string, { events: number; nonzero: number }>();
    const event = snn.with({ execution: 'event' });
    const out = event.forward(prompt, undefined, {
      observeSpikes: (site, digits) => {
        const d = (digits as Tensor).data;
        let events = 0, nonzero = 0;
        for (const x of d) {
          events += Math.abs(x);
          if (x !== 0) nonzero++;
        }
        counted.set(site, { events, nonzero });
      },
    });
    const t = new SpikeTally(snn.sites);
    await t.addForward(event, out);
    const fanout = new Map(snn.sites.map((s) => [s.name, s.fanout]));
    let checked = 0;
    for (const [i, s] of snn.sites.entries()) {
      const c = counted.get(s.name);
      if (s.kind === 'p_in') continue; // inside the attention kernel: pinned by hand above
      expect(c, s.name).toBeDefined();
      expect(t.get(i, 'events'), s.name).toBe(c!.events);
      expect(t.get(i, 'nonzero'), s.name).toBe(c!.nonzero);
      if (s.kind !== 'q_in') expect(t.get(i, 'synapticOps'), s.name).toBe(c!.events * fanout.get(s.name)!);
      checked++;
    }
    expect(checked).toBe(snn.sites.length - snn.config.numLayers);
    event.dispose();
    snn.dispose();
  });
});
