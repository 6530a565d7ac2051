/**
 * The two-stage LM head (SpikingConfig.head; kernels/top-k.ts): the first P_c planes of head_in's
 * spikes reach every output, the k leading coarse logits get the rest.
 *
 *  1. topK against a sort by the sampler's rank; refine against the dense product of another
 *     kernel (planes and digit sums alike), on both backends;
 *  2. a converted network with a two-stage head computes, at the selected columns, what the
 *     one-stage network computes, and elsewhere what a network whose head runs P_c planes computes
 *     — bit for bit, fast and event-driven; the selected columns are that network's top k; its
 *     statistics are the two networks' (CPU, and the GPU against the CPU);
 *  3. the energy and memory counts of a two-stage head on the hand-sized model, worked out by hand;
 *  4. bad parameters are refused with the argument named.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { convertModelToSpiking, createCalibrationData } from '../src/convert/api.js';
import { parseConfig } from '../src/nn/config.js';
import { loadModel } from '../src/nn/model.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';
import { energyReport, siteOps } from '../src/snn/energy.js';
import { memoryReport } from '../src/snn/memory.js';
import { SpikingLM } from '../src/snn/model.js';
import { encoderSites } from '../src/snn/sites.js';
import { SpikeTally, forwardStats } from '../src/snn/stats.js';
import type { Backend } from '../src/tensor/backend.js';
import { STAT, STATS_WIDTH } from '../src/tensor/kernels/codes.js';
import { matmulReference } from '../src/tensor/kernels/matmul.js';
import { keyOf } from '../src/tensor/kernels/sampling.js';
import { Tensor } from '../src/tensor/tensor.js';
import { BACKEND_NAMES, backendFor, requireGpu } from './helpers/backends.js';
import { fixtureDir } from './helpers/fixtures.js';
import { TOL, expectClose, expectIdentical } from './helpers/tolerance.js';

const read = async (b: Backend, x: unknown) => (await b.read(x as never)).data;

/** A seeded value stream with many ties, ±0, and (where asked) NaN and ±∞. */
function rowValues(n: number, seed: number, specials: boolean): Float32Array {
  let s = seed >>> 0 || 1;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  return Float32Array.from({ length: n }, () => {
    const u = next();
    if (specials && u < 0.04) return [NaN, Infinity, -Infinity, -0][Math.floor(next() * 4)]!;
    if (u < 0.3) return Math.floor(next() * 5) - 2; // ties (and +0)
    return (next() - 0.5) * 8;
  });
}

/** The reference rank: by keyOf descending, then index ascending (a full sort). */
function sortedTopK(row: Float32Array, k: number): number[] {
  return Array.from(row.keys()).sort((a, b) => keyOf(row[b]!) - keyOf(row[a]!) || a - b).slice(0, k);
}

describe.each(BACKEND_NAMES)('two-stage head kernels (%s)', (name) => {
  it('topK: the k first-ranked columns of each row, in rank order (ties by index, −0 below +0, NaN last)', async (ctx) => {
    const b = await backendFor(name, ctx);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 64 }), fc.boolean(), fc.integer(), async (R, N, kWanted, specials, seed) => {
        const k = Math.min(kWanted, N);
        const x = rowValues(R * N, seed, specials);
        const got = await read(b, b.topK(b.upload(new Tensor([R, N], x)), k));
        for (let r = 0; r < R; r++) expect(Array.from(got.subarray(r * k, (r + 1) * k)), `row ${r}`).toEqual(sortedTopK(x.subarray(r * N, (r + 1) * N), k));
      }),
      { numRuns: name === 'gpu' ? 25 : 200 },
    );
  });

  it('refineColumns: the selected columns get the full product (digit planes or digit sums), the rest stay coarse', async (ctx) => {
    const b = await backendFor(name, ctx);
    const tol = name === 'gpu' ? TOL.gpuKernel : TOL.f32;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 37 }), fc.integer({ min: 2, max: 70 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 9 }), fc.boolean(), fc.integer(), async (R, K, N, P, kWanted, withBias, seed) => {
        const k = Math.min(kWanted, N);
        const digits = Float32Array.from(rowValues(P * R * K, seed, false), (v) => Math.sign(Math.round(v)));
        // the digit sums the planes make: m = Σ_p 2^(P−1−p)·d_p
        const sums = new Float32Array(R * K);
        for (let p = 0; p < P; p++) for (let i = 0; i < R * K; i++) sums[i] = sums[i]! + digits[p * R * K + i]! * 2 ** (P - 1 - p);
        const w = rowValues(N * K, seed + 1, false), bias = rowValues(N, seed + 2, false), coarse = rowValues(R * N, seed + 3, false);
        // some rows select fewer columns (−1) and the order is not the columns'
        const idx = new Float32Array(R * k).fill(-1);
        for (let r = 0; r < R; r++) for (let j = 0; j < k - (r % 2); j++) idx[r * k + j] = (N - 1 - ((j * 7 + r) % N) + N) % N;
        for (let r = 0; r < R; r++) {
          const row = Array.from(idx.subarray(r * k, (r + 1) * k)).filter((v) => v >= 0);
          if (new Set(row).size !== row.length) return; // distinct columns, as topK gives
        }
        const full = matmulReference(sums, w, withBias ? bias : undefined, R, K, N);
        const want = Float32Array.from(coarse);
        for (let r = 0; r < R; r++) for (let j = 0; j < k; j++) if (idx[r * k + j]! >= 0) want[r * N + idx[r * k + j]!] = full[r * N + idx[r * k + j]!]!;
        const up = (shape: number[], a: Float32Array, role?: 'linear') => b.upload(new Tensor(shape, a), role);
        const W = up([N, K], w, 'linear'), C = up([R, N], coarse), I = up([R, k], idx), B = withBias ? up([N], bias) : undefined;
        const fromPlanes = await read(b, b.refineColumns(C, I, up([P * R, K], digits), P, W, B));
        const fromSums = await read(b, b.refineColumns(C, I, up([R, K], sums), 0, W, B));
        if (name === 'cpu') {
          expectClose(fromPlanes, want, tol, 'refine from planes');
          expectClose(fromSums, want, tol, 'refine from sums');
        } else {
          // the GPU sums K float32 products in float32: its error is bounded by K·ε·Σ|terms|, which
          // cancellation can make large against the result, so that bound (with the kernel tolerance)
          for (let r = 0; r < R; r++) {
            for (let j = 0; j < k; j++) {
              const n = idx[r * k + j]!;
              if (n < 0) continue;
              let mag = withBias ? Math.abs(bias[n]!) : 0;
              for (let c = 0; c < K; c++) mag += Math.abs(sums[r * K + c]! * w[n * K + c]!);
              const o = r * N + n, bound = tol.atol + tol.rtol * Math.abs(want[o]!) + (K + 1) * 2 ** -23 * mag;
              expect(Math.abs(fromPlanes[o]! - want[o]!), `planes, row ${r} column ${n}`).toBeLessThanOrEqual(bound);
              expect(Math.abs(fromSums[o]! - want[o]!), `sums, row ${r} column ${n}`).toBeLessThanOrEqual(bound);
            }
          }
        }
        // the untouched columns are the coarse values exactly
        for (let i = 0; i < R * N; i++) if (want[i] === coarse[i]) expect(fromSums[i]).toBe(coarse[i]);
      }),
      { numRuns: name === 'gpu' ? 20 : 150 },
    );
  });

  it('refineColumns over weight chunks (GPU) and shape errors that name the argument', async (ctx) => {
    const b = await backendFor(name, ctx);
    const W = b.upload(new Tensor([5, 3], rowValues(15, 1, false)), 'linear');
    expect(() => b.refineColumns(b.zeros([2, 5]), b.zeros([2, 2]), b.zeros([2, 4]), 0, W)).toThrow(/refineColumns: x \[2, 4\] must be \[2, 3\]/);
    expect(() => b.refineColumns(b.zeros([2, 6]), b.zeros([2, 2]), b.zeros([2, 3]), 0, W)).toThrow(/w \[5, 3\] must have 6 rows/);
    expect(() => b.topK(b.zeros([2, 5]), 6)).toThrow(/topK: k must be an integer from 1 to 5/);
    expect(() => b.topK(b.zeros([2, 100]), 65)).toThrow(/from 1 to 64/);
    if (name !== 'gpu') return;
    const chunked = await requireGpu(ctx, { maxWeightChunkBytes: 40 * 8 * 4 });
    const R = 2, K = 8, N = 97, k = 5;
    const w = rowValues(N * K, 3, false), x = rowValues(R * K, 4, false), coarse = rowValues(R * N, 5, false);
    const idx = Float32Array.from({ length: R * k }, (_, i) => (i * 41 + 3) % N);
    const full = matmulReference(x, w, undefined, R, K, N);
    const want = Float32Array.from(coarse);
    for (let i = 0; i < R * k; i++) want[Math.floor(i / k) * N + idx[i]!] = full[Math.floor(i / k) * N + idx[i]!]!;
    const got = await read(chunked, chunked.refineColumns(chunked.upload(new Tensor([R, N], coarse)), chunked.upload(new Tensor([R, k], idx)), chunked.upload(new Tensor([R, K], x)), 0, chunked.upload(new Tensor([N, K], w), 'linear')));
    expectClose(got, want, TOL.gpuKernel, 'refine across chunks');
  });
});

async function convertedStories(timesteps: number) {
  const dir = fixtureDir('stories260k');
  const ann = loadModel(dir);
  const tok = loadTokenizer(dir);
  const { snn } = await convertModelToSpiking(ann, createCalibrationData(tok, { numSamples: 2 }), { timesteps });
  return { snn, tok };
}

describe('a network with a two-stage head', () => {
  const text = 'Once upon a time, there was a little girl named Lily. She loved to play outside with her dog.';

  it('computes the one-stage logits at its top k and the coarse head\'s elsewhere, bit for bit, fast and event-driven', async () => {
    const { snn: base, tok } = await convertedStories(10);
    // mixed planes elsewhere, so the shared-synapse rescaling is in play too
    const planes = { ...Object.fromEntries(base.sites.map((s, i) => [s.name, 7 + (i % 4)])), head_in: 9 };
    const one = base.withPlanes(planes);
    const coarseNet = base.withPlanes({ ...planes, head_in: 5 });
    const two = new SpikingLM(one.config, one.weights, one.backend, { ...one.spiking, head: { coarsePlanes: 5, topK: 16 } }, base);
    const ids = Array.from(tok.encode(text));
    const V = base.config.vocabSize, S = ids.length, k = 16;
    const fast = two.forward(ids, two.newCache(), { allLogits: true, execution: 'fast' });
    const ev = two.forward(ids, two.newCache(), { allLogits: true, execution: 'event' });
    const got = await read(base.backend, fast.logits);
    expectIdentical(await read(base.backend, ev.logits), got, 'event = fast');
    const full = await read(base.backend, one.forward(ids, one.newCache(), { allLogits: true }).logits);
    const coarseOut = coarseNet.forward(ids, coarseNet.newCache(), { allLogits: true });
    const coarse = await read(base.backend, coarseOut.logits);
    let selected = 0;
    for (let r = 0; r < S; r++) {
      const row = coarse.subarray(r * V, (r + 1) * V);
      const top = new Set(sortedTopK(row, k));
      for (let i = 0; i < V; i++) {
        const want = top.has(i) ? full[r * V + i]! : coarse[r * V + i]!;
        if (got[r * V + i] !== want) throw new Error(`row ${r} column ${i}: ${got[r * V + i]} ≠ ${want} (${top.has(i) ? 'selected' : 'coarse'})`);
        if (top.has(i)) selected++;
      }
    }
    expect(selected).toBe(S * k);
    // and the selection matters: the coarse logits differ from the full ones at the selected columns
    expect(Array.from(got).some((v, i) => v !== coarse[i])).toBe(true);
    // statistics: the head_in row is the one-stage run's spikes (at fan-out k), the coarse row the P_c run's (at V − k)
    for (const [execution, out] of [['fast', fast], ['event', ev]] as const) {
      const t = await forwardStats(two, out);
      const oneT = await forwardStats(one, one.forward(ids, one.newCache(), { allLogits: true, execution }));
      const coarseT = await forwardStats(coarseNet, coarseOut);
      const h = two.sites.findIndex((s) => s.kind === 'head_in');
      expect(t.headStages, execution).toEqual({ coarsePlanes: 5, topK: 16 });
      expect(t.get(h, 'events')).toBe(oneT.get(h, 'events'));
      expect(t.get(h, 'synapticOps')).toBe(oneT.get(h, 'events') * k);
      expect(t.headCoarse[STAT.events]).toBe(coarseT.get(h, 'events'));
      expect(t.headCoarse[STAT.synapticOps]).toBe(coarseT.get(h, 'events') * (V - k));
      expect(t.headCoarse[STAT.events]).toBeLessThan(t.get(h, 'events'));
      // the rest of the network is the one-stage one's
      t.sites.forEach((s, i) => s.kind !== 'head_in' && expect(t.get(i, 'events'), s.name).toBe(oneT.get(i, 'events')));
    }
    // the report: the head's synapses are coarse events × V + fine events × k, less than the one-stage head's
    const input = (m: SpikingLM, tally: SpikeTally) => ({ config: m.config, schedule: m.schedule, coding: m.coding, timesteps: m.timesteps, stepsOf: (s: { name: string }) => m.stepsOf(s.name), maxSpikes: 1, tally });
    const tt = await forwardStats(two, fast), to = await forwardStats(one, one.forward(ids, one.newCache(), { allLogits: true }));
    const h = two.sites.findIndex((s) => s.kind === 'head_in');
    expect(siteOps(input(two, tt), h).acs).toBeLessThan(siteOps(input(one, to), h).acs);
    expect(energyReport(input(two, tt)).presets.fp32.ratio).toBeLessThan(energyReport(input(one, to)).presets.fp32.ratio);
    for (const m of [two, coarseNet, one, base]) m.dispose();
  });

  it('extra heads score other head stages in the same forward, each equal to a network built with it', async () => {
    const { snn, tok } = await convertedStories(9);
    const ids = Array.from(tok.encode(text));
    const b = snn.backend;
    const stages = [{ coarsePlanes: 6, topK: 8 }, { coarsePlanes: 4, topK: 32 }];
    const extra = stages.map((s) => ({ stages: s, stats: b.zeros([snn.sites.length + 1, STATS_WIDTH]) }));
    const out = snn.forward(ids, snn.newCache(), { allLogits: true, extraHeads: [...extra, { stats: b.zeros([snn.sites.length, STATS_WIDTH]) }] });
    expect(out.extraLogits).toHaveLength(3);
    expectIdentical(await read(b, out.extraLogits![2]), await read(b, out.logits), 'a one-stage extra head = the head');
    for (const [i, s] of stages.entries()) {
      const net = new SpikingLM(snn.config, snn.weights, b, { ...snn.spiking, head: s }, snn);
      const own = net.forward(ids, net.newCache(), { allLogits: true });
      expectIdentical(await read(b, out.extraLogits![i]), await read(b, own.logits), `extra head ${JSON.stringify(s)}`);
      const h = snn.sites.findIndex((x) => x.kind === 'head_in'), W = STATS_WIDTH;
      const mine = await read(b, extra[i]!.stats), theirs = await read(b, own.stats);
      expect(Array.from(mine.subarray(h * W, (h + 1) * W))).toEqual(Array.from(theirs.subarray(h * W, (h + 1) * W)));
      expect(Array.from(mine.subarray(snn.sites.length * W))).toEqual(Array.from(theirs.subarray(snn.sites.length * W)));
      net.dispose();
    }
    expect(() => snn.forward(ids, snn.newCache(), { extraHeads: [{ stages: stages[0]!, stats: b.zeros([snn.sites.length, STATS_WIDTH]) }] })).toThrow(/extra head's stats must be \[\d+, /);
    snn.dispose();
  });

  it('is refused where it cannot run, naming what is wrong', async () => {
    const { snn } = await convertedStories(9);
    const P = snn.stepsOf('head_in');
    expect(() => snn.with({ head: { coarsePlanes: P, topK: 8 } })).toThrow(new RegExp(`head: coarsePlanes must be an integer from 1 to ${P - 1} \\(below the head's ${P} planes\\), got ${P}`));
    expect(() => snn.with({ head: { coarsePlanes: 4, topK: 0 } })).toThrow(/head: topK must be an integer from 1 to 64/);
    expect(() => snn.with({ head: { coarsePlanes: 4, topK: 8 }, coding: 'phase' })).toThrow(/phase-ternary/);
    // with other planes at the head, the coarse planes move with them; none left at one plane
    const two = snn.with({ head: { coarsePlanes: 5, topK: 8 } });
    expect(two.withPlanes({ head_in: P - 2 }).spiking.head).toEqual({ coarsePlanes: 3, topK: 8 });
    expect(two.withPlanes({ 'layers.0.mlp_in': 3 }).spiking.head).toEqual({ coarsePlanes: 5, topK: 8 });
    expect(two.withPlanes({ head_in: 1 }).spiking.head).toBeUndefined();
    expect(two.withTimesteps(1).spiking.head).toBeUndefined();
    // run at another T, the coarse planes move with the head's
    expect(snn.with({ head: { coarsePlanes: 5, topK: 8 } }).withTimesteps(7).spiking.head).toEqual({ coarsePlanes: 5 - (snn.timesteps - 7), topK: 8 });
    snn.dispose();
  });

  it('on the GPU: the same logits and spike counts as the CPU (fast); event-driven, the same predictions', async (ctx) => {
    const gpu = await requireGpu(ctx);
    const { snn: cpuBase, tok } = await convertedStories(9);
    const spiking = { ...cpuBase.spiking, head: { coarsePlanes: 5, topK: 16 } };
    const cpuNet = new SpikingLM(cpuBase.config, cpuBase.weights, cpuBase.backend, spiking);
    const ids = Array.from(tok.encode(text));
    const V = cpuBase.config.vocabSize;
    const c = cpuNet.forward(ids, cpuNet.newCache(), { allLogits: true });
    const cl = await read(cpuNet.backend, c.logits), ct = await forwardStats(cpuNet, c);
    const gpuNet = new SpikingLM(cpuBase.config, cpuBase.weights, gpu, { ...spiking, execution: 'fast' });
    const g = gpuNet.forward(ids, gpuNet.newCache(), { allLogits: true });
    expectClose(await read(gpu, g.logits), cl, TOL.gpuKernel, 'gpu two-stage head (fast)');
    const gt = await forwardStats(gpuNet, g);
    expect(gt.headCoarse[STAT.events]).toBe(ct.headCoarse[STAT.events]);
    ct.sites.forEach((s, i) => expect(gt.get(i, 'events'), s.name).toBe(ct.get(i, 'events')));
    // event-driven: per-plane float32 sums move digits near their boundaries (snn-model.test.ts), so the
    // predictions agree and the counts are within 1%
    const ge = new SpikingLM(cpuBase.config, cpuBase.weights, gpu, { ...spiking, execution: 'event' });
    const el = await read(gpu, ge.forward(ids, ge.newCache(), { allLogits: true }).logits);
    for (let p = 0; p < ids.length; p++) {
      const arg = (x: Float32Array) => sortedTopK(x.subarray(p * V, (p + 1) * V), 1)[0];
      expect(arg(el), `position ${p}`).toBe(arg(cl));
    }
    for (const m of [ge, gpuNet, cpuNet, cpuBase]) m.dispose();
  });
});

describe('the two-stage head\'s counts on the hand-sized model (2 layers, width 4), worked out by hand', () => {
  // energy.test.ts's model and tally, with the head at P = 3 planes, P_c = 2, k = 2
  const config = parseConfig({
    model_type: 'llama', vocab_size: 8, hidden_size: 4, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1,
    intermediate_size: 6, max_position_embeddings: 16, rms_norm_eps: 1e-5, hidden_act: 'silu',
  });
  const sites = encoderSites(config, 'layerwise');
  function tally(): SpikeTally {
    const t = new SpikeTally(sites);
    const stats = new Float32Array((sites.length + 1) * STATS_WIDTH);
    const put = (row: number, cols: Partial<Record<keyof typeof STAT, number>>) => Object.entries(cols).forEach(([k, v]) => (stats[row * STATS_WIDTH + STAT[k as keyof typeof STAT]] = v));
    sites.forEach((s, i) => put(i, s.kind === 'q_in' ? { events: 2, synapticOps: 6, activeNeurons: 2, activeSteps: 6 }
      : s.kind === 'p_in' ? { events: 2, synapticOps: 4, activeNeurons: 2, activeSteps: 6 }
        // the whole run: 3 events at fan-out k = 2, one extra plane (its fan-out at k)
        : s.kind === 'head_in' ? { events: 3, synapticOps: 6, activeNeurons: 2, activeSteps: 6, extraSteps: 1, extraFanout: 2 }
          : { events: 5, synapticOps: 10, activeNeurons: 3, activeSteps: 9 }));
    // the coarse run: 2 of the 3 events, at fan-out V − k = 6; the extra plane at 6
    put(sites.length, { events: 2, synapticOps: 12, extraSteps: 1, extraFanout: 6 });
    const perKind: Record<string, number> = { attn_in: 8, q_in: 8, p_in: 6, o_in: 8, mlp_in: 8, down_in: 12, head_in: 4 };
    const neurons = sites.map((s) => perKind[s.kind]!);
    t.add(stats, { neurons, tokens: 2, attendedKeys: 3, headRows: 1, statsSteps: 1, headStages: { coarsePlanes: 2, topK: 2 } });
    return t;
  }
  const input = (t: SpikeTally) => ({ config, schedule: 'layerwise' as const, coding: 'phase-ternary' as const, timesteps: 3, maxSpikes: 1, tally: t });

  it('compute: coarse events × V + fine × k, doublings split at P_c, the selection counted', () => {
    /*
     * head (r = 1): synapses 2 coarse events × 8 + 1 fine × 2 = 18 (= 6 + 12 from the two rows);
     * membranes (P_c − 1)·V + (P − P_c)·k = 8 + 2 per row, extra plane × V = 2 + 6 → 18;
     * neurons charge 4 + steps 6 + silent 2 + resets 3 = 15; selection V·(1 + ⌈log₂ 2⌉) = 16
     * → 67 ACs (the one-stage head of energy.test.ts: 55, without the extra plane);
     * the layers as there: 2 × 362 ACs, 2 × 180 MACs; final norm 16 MACs → 791 ACs, 376 MACs
     */
    const r = energyReport(input(tally()));
    expect(r.layers.at(-1)!.snn).toEqual({ acs: 67, macs: 16 });
    expect(r.snn.parts['head selection']).toEqual({ acs: 16, macs: 0 });
    expect(r.snn.total).toEqual({ acs: 791, macs: 376 });
    const h = sites.findIndex((s) => s.kind === 'head_in');
    expect(siteOps(input(tally()), h)).toEqual({ acs: 67, macs: 0 });
  });

  it('memory: coarse events read V-long columns, fine ones k gathered weights; the selection reads every coarse accumulator', () => {
    /*
     * weights: the linear sites' synaptic ops 2·4·10 + the head's 18 = 98 elements;
     * accumulators: 2 × synaptic ops (2·50 + 18 = 118) + 2 × doublings (2·140 + 18 = 298) + the
     * selection's V + k = 10 → 842 elements
     */
    const t = tally();
    const m = memoryReport(input(t), energyReport(input(t)), 'decode', 'fp32');
    expect(m.snn.bytes.weights).toBe(98 * 4);
    expect(m.snn.bytes.accumulators).toBe(842 * 4);
  });

  it('a tally refuses forwards of different heads and statistics of the wrong size', () => {
    const t = tally();
    const row = new Float32Array(sites.length * STATS_WIDTH);
    expect(() => t.add(row, { neurons: sites.map(() => 0), tokens: 1, attendedKeys: 1, headRows: 1, statsSteps: 1 })).toThrow(/different heads/);
    expect(() => new SpikeTally(sites).add(row, { neurons: sites.map(() => 0), tokens: 1, attendedKeys: 1, headRows: 1, statsSteps: 1, headStages: { coarsePlanes: 2, topK: 2 } })).toThrow(/rows, the forward has/);
  });
});

