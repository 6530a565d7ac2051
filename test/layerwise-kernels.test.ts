/**
 * The layerwise schedule's kernels: the code encoder, event-driven synapses over digit planes and
 * spike-driven attention. Two executions, one result: on the CPU the event-driven kernels equal the
 * dense products of the digit sums (bit for bit here: both sum exact products in double precision);
 * every WGSL twin against its CPU twin, at shapes that are not multiples of the workgroup size.
 */
import { f16BitsToNumber, numberToF16Bits } from '../src/tensor/dtype.js';
import { describe, expect, it } from 'vitest';
import type { Backend, BTensor, DeviceThresholds } from '../src/tensor/backend.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { type CodeParams, STATS_WIDTH, planesOf, unitOf } from '../src/tensor/kernels/codes.js';
import type { SpikeAttentionCodes } from '../src/tensor/kernels/spike-attention.js';
import { Tensor } from '../src/tensor/tensor.js';
import { requireGpu } from './helpers/backends.js';
import { TOL, expectClose, randomArray } from './helpers/tolerance.js';

const cpu = new CpuBackend();
const read = async (b: Backend, t: BTensor) => (await b.read(t)).data;
const CODES: CodeParams[] = [
  { kind: 'rate', T: 7, maxSpikes: Infinity },
  { kind: 'rate', T: 5, maxSpikes: 1 },
  { kind: 'binary', T: 9 },
  { kind: 'ternary', T: 10 },
];

function thresholds(b: Backend, theta: Float32Array): DeviceThresholds {
  return { theta: b.upload(new Tensor([theta.length], theta), 'vector'), invTheta: b.upload(new Tensor([theta.length], theta.map((t) => 1 / t)), 'vector') };
}

/** Random x [R, C] with some values beyond the calibrated range (θ ≈ 0.5 … 1). */
function inputs(R: number, C: number, seed: number) {
  const x = Tensor.from([R, C], randomArray(R * C, seed, 1.5));
  x.data[3] = 9.5; // an overflow: extra planes for weighted codes, clipping for rate-single
  const theta = Float32Array.from(randomArray(C, seed + 1, 0.25), (v) => Math.fround(0.75 + v));
  return { x, theta };
}

describe('event-driven synapses equal the dense product of the digit sums (CPU)', () => {
  it.each(CODES)('%j: planeMatmul(digits) = the dense spike product of the sums (the fast execution) with the same folded weights, bias and residual', (code) => {
    const R = 5, K = 37, N = 29;
    const { x, theta } = inputs(R, K, 3);
    const stats = cpu.zeros([1, STATS_WIDTH]);
    const enc = cpu.encode(x, thresholds(cpu, theta), code, { tensor: stats, row: 0, fanout: N }, true);
    const w = Tensor.from([N, K], randomArray(N * K, 5, 0.8).map((v, i) => v * theta[i % K]! * unitOf(code)));
    const bias = Tensor.from([N], randomArray(N, 6)), residual = Tensor.from([R, N], randomArray(R * N, 7));
    const dense = cpu.spikeMatmul(enc.sums, cpu.upload(w, 'linear'), bias, residual, 'dense');
    const event = cpu.planeMatmul(enc.digits!, planesOf(code), code.kind === 'rate' ? 1 : 2, cpu.upload(w, 'linear'), bias, residual);
    expect(Array.from(cpu.readSync(event).data)).toEqual(Array.from(cpu.readSync(dense).data));
    // and the synaptic operations counted are events × fan-out
    const s = cpu.readSync(stats).data;
    expect(s[5]).toBe(s[0]! * N);
  });
});

describe('spike-driven attention: the event execution equals the fast one (CPU)', () => {
  it.each([
    [{ q: { kind: 'ternary', T: 9 }, p: { kind: 'ternary', T: 9 } }, 4, 2],
    [{ q: { kind: 'binary', T: 8 }, p: { kind: 'binary', T: 8 } }, 3, 3],
    [{ q: { kind: 'rate', T: 6, maxSpikes: Infinity }, p: { kind: 'rate', T: 6, maxSpikes: Infinity } }, 2, 1],
    [{ q: { kind: 'ternary', T: 9 }, p: { kind: 'ternary', T: 9 } }, 4, 2, 3],
  ] as [SpikeAttentionCodes, number, number, number?][])('%j, H = %i, Hkv = %i, window %s: outputs and statistics', async (codes, H, Hkv, window) => {
    const d = 4, S = 3, start = 4, L = start + S;
    const { q, k, v, thQ, thP, params } = attentionCase(cpu, codes, H, Hkv, d, S, start, L, window);
    const statsF = cpu.zeros([2, STATS_WIDTH]), statsE = cpu.zeros([2, STATS_WIDTH]);
    const encQ = cpu.encode(q, thresholds(cpu, thQ), codes.q, { tensor: statsF, row: 0, fanout: 1 }, true);
    cpu.encode(q, thresholds(cpu, thQ), codes.q, { tensor: statsE, row: 0, fanout: 1 }, false);
    const fast = cpu.spikeAttention(encQ.sums, k, v, cpu.upload(new Tensor([H * d], thQ), 'vector'), thresholds(cpu, thP), params, codes, 'fast', { tensor: statsF, row: 1, fanout: d });
    const event = cpu.spikeAttention(encQ.digits!, k, v, cpu.upload(new Tensor([H * d], thQ), 'vector'), thresholds(cpu, thP), params, codes, 'event', { tensor: statsE, row: 1, fanout: d });
    expect(Array.from(await read(cpu, event))).toEqual(Array.from(await read(cpu, fast)));
    expect(Array.from(await read(cpu, statsE))).toEqual(Array.from(await read(cpu, statsF)));
    const s = await read(cpu, statsF);
    expect(s[STATS_WIDTH]).toBeGreaterThan(0); // the probabilities spiked
    // p neurons: one per (query, head, key it sees — the last `window` within a window), each running T (+ extra) steps
    const keysSeen = H * [0, 1, 2].reduce((a, i) => a + Math.min(window ?? Infinity, start + i + 1), 0);
    expect(s[STATS_WIDTH + 3]).toBeGreaterThanOrEqual(keysSeen * codes.p.T);
    if (window) expect(s[STATS_WIDTH + 3]).toBeLessThan(keysSeen * (codes.p.T + 4));
  });
});

function attentionCase(b: Backend, codes: SpikeAttentionCodes, H: number, Hkv: number, d: number, S: number, start: number, L: number, window?: number) {
  const q = b.upload(Tensor.from([S, H * d], randomArray(S * H * d, 11, 1.2)));
  const k = b.upload(Tensor.from([L + 2, Hkv * d], randomArray((L + 2) * Hkv * d, 12, 1.2)));
  const v = b.upload(Tensor.from([L + 2, Hkv * d], randomArray((L + 2) * Hkv * d, 13, 1)));
  const thQ = Float32Array.from(randomArray(H * d, 14, 0.2), (x) => Math.fround(0.7 + x));
  // probabilities ≤ 1: θp = 1 / range of the code
  const thP = new Float32Array(H).fill(codes.p.kind === 'binary' ? 0.5 : codes.p.kind === 'ternary' ? 0.75 : 1);
  const params = { numHeads: H, numKvHeads: Hkv, headDim: d, queryStart: start, kvLength: L, scale: 1 / Math.sqrt(d), ...(window ? { window } : {}) };
  void codes;
  return { q, k, v, thQ, thP, params };
}

describe('WGSL twins of the layerwise kernels', () => {
  it.for(CODES)('encode %j: the same digits, sums and statistics as the CPU', async (code, ctx) => {
    const gpu = await requireGpu(ctx);
    const R = 67, C = 13;
    const { x, theta } = inputs(R, C, 21);
    const fanout = Float32Array.from({ length: R }, (_, i) => i + 1);
    const sc = cpu.zeros([3, STATS_WIDTH]), sg = gpu.zeros([3, STATS_WIDTH]);
    const ec = cpu.encode(x, thresholds(cpu, theta), code, { tensor: sc, row: 2, fanout }, true);
    const eg = gpu.encode(gpu.upload(x), thresholds(gpu, theta), code, { tensor: sg, row: 2, fanout }, true);
    expect(Array.from(await read(gpu, eg.sums))).toEqual(Array.from(await read(cpu, ec.sums)));
    expect(Array.from(await read(gpu, eg.digits!))).toEqual(Array.from(await read(cpu, ec.digits!)));
    expect(Array.from(await read(gpu, sg))).toEqual(Array.from(await read(cpu, sc)));
    // digitStatsInto over the same digits (what stepwise encoders report)
    const dc = cpu.zeros([1, STATS_WIDTH]), dg = gpu.zeros([1, STATS_WIDTH]);
    cpu.digitStatsInto(ec.digits!, { tensor: dc, row: 0, fanout: 3 });
    gpu.digitStatsInto(eg.digits!, { tensor: dg, row: 0, fanout: 3 });
    expect(Array.from(await read(gpu, dg))).toEqual(Array.from(await read(cpu, dc)));
  });

  it.for(CODES)('planeMatmul %j (events over digit planes) matches the CPU', async (code, ctx) => {
    const gpu = await requireGpu(ctx);
    const R = 9, K = 21, N = 70;
    const { x, theta } = inputs(R, K, 31);
    const enc = cpu.encode(x, thresholds(cpu, theta), code, { tensor: cpu.zeros([1, STATS_WIDTH]), row: 0, fanout: 1 }, true);
    const w = Tensor.from([N, K], randomArray(N * K, 32, 0.5).map((v) => v * unitOf(code)));
    const bias = Tensor.from([N], randomArray(N, 33)), residual = Tensor.from([R, N], randomArray(R * N, 34));
    const growth = code.kind === 'rate' ? 1 : 2;
    const yc = cpu.planeMatmul(enc.digits!, planesOf(code), growth, cpu.upload(w, 'linear'), bias, residual);
    const yg = gpu.planeMatmul(gpu.upload(cpu.readSync(enc.digits!)), planesOf(code), growth, gpu.upload(w, 'linear'), gpu.upload(bias), gpu.upload(residual));
    expectClose(await read(gpu, yg), await read(cpu, yc), TOL.gpuKernel, 'planeMatmul');
    // weights stored in f16 on the GPU: the CPU twin with the weights rounded to binary16
    const half = await requireGpu(ctx, { weightFormat: 'f16' });
    const w16 = Tensor.from([N, K], w.data.map((v) => f16BitsToNumber(numberToF16Bits(v))));
    const yc16 = cpu.planeMatmul(enc.digits!, planesOf(code), growth, cpu.upload(w16, 'linear'), bias, residual);
    const yg16 = half.planeMatmul(half.upload(cpu.readSync(enc.digits!)), planesOf(code), growth, half.upload(w, 'linear'), half.upload(bias), half.upload(residual));
    expectClose(await read(half, yg16), await read(cpu, yc16), TOL.gpuKernel, 'planeMatmul, f16 weights');
  });

  it.for([
    [{ q: { kind: 'ternary', T: 9 }, p: { kind: 'ternary', T: 9 } }, 'fast'],
    [{ q: { kind: 'ternary', T: 9 }, p: { kind: 'ternary', T: 9 } }, 'event'],
    [{ q: { kind: 'binary', T: 7 }, p: { kind: 'binary', T: 7 } }, 'event'],
    [{ q: { kind: 'rate', T: 5, maxSpikes: Infinity }, p: { kind: 'rate', T: 5, maxSpikes: Infinity } }, 'event'],
    [{ q: { kind: 'ternary', T: 9 }, p: { kind: 'ternary', T: 9 } }, 'fast', 4],
    [{ q: { kind: 'ternary', T: 9 }, p: { kind: 'ternary', T: 9 } }, 'event', 3],
  ] as [SpikeAttentionCodes, 'fast' | 'event', number?][])('spikeAttention %j %s (window %s) matches the CPU', async ([codes, mode, window], ctx) => {
    const gpu = await requireGpu(ctx);
    const H = 4, Hkv = 2, d = 4, S = 3, start = 5, L = start + S;
    const c = attentionCase(cpu, codes, H, Hkv, d, S, start, L, window);
    const encQ = cpu.encode(c.q, thresholds(cpu, c.thQ), codes.q, { tensor: cpu.zeros([1, STATS_WIDTH]), row: 0, fanout: 1 }, true);
    const qIn = mode === 'fast' ? encQ.sums : encQ.digits!;
    const sc = cpu.zeros([1, STATS_WIDTH]), sg = gpu.zeros([1, STATS_WIDTH]);
    const yc = cpu.spikeAttention(qIn, c.k, c.v, cpu.upload(new Tensor([H * d], c.thQ), 'vector'), thresholds(cpu, c.thP), c.params, codes, mode, { tensor: sc, row: 0, fanout: d });
    const yg = gpu.spikeAttention(gpu.upload(cpu.readSync(qIn)), gpu.upload(cpu.readSync(c.k)), gpu.upload(cpu.readSync(c.v)), gpu.upload(new Tensor([H * d], c.thQ)), thresholds(gpu, c.thP), c.params, codes, mode, { tensor: sg, row: 0, fanout: d });
    expectClose(await read(gpu, yg), await read(cpu, yc), TOL.gpuKernel, `spikeAttention ${mode}`);
    // statistics may differ only where a probability sits on a rounding boundary (float32 exp)
    expectClose(await read(gpu, sg), await read(cpu, sc), { atol: 0, rtol: 0.02 }, 'p statistics');
  });
});
