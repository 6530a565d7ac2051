/**
 * The compensated operators' law, on every backend: the decoded (accumulated) output equals f of the
 * decoded input at every step — softmax with a causal mask, LayerNorm, RMSNorm, GELU, SiLU, SwiGLU,
 * the product of two spike trains — in the mean domain and the sum domain. Linear maps commute with
 * the time sum. Single-step chains equal multi-step runs.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KvCache } from '../src/nn/kv-cache.js';
import { DEFAULT_NEURON } from '../src/snn/neurons.js';
import { Compensated, SpikeAttention, SpikeEncoder, SpikeGELU, SpikeLayerNorm, SpikeLinear, SpikeRMSNorm, SpikeSiLU, type TimeContext, multiStep, singleStep, timeDelta, timeMean } from '../src/snn/operators.js';
import { ropeInvFreq } from '../src/tensor/kernels/rope.js';
import type { Backend, BTensor } from '../src/tensor/backend.js';
import type { TimeDomain } from '../src/tensor/kernels/temporal.js';
import { Tensor } from '../src/tensor/tensor.js';
import { BACKEND_NAMES, backendFor } from './helpers/backends.js';
import * as ref from './helpers/reference.js';
import { TOL, compare, expectClose, randomArray } from './helpers/tolerance.js';

const rand = (shape: number[], seed: number, scale = 1) => Tensor.from(shape, randomArray(shape.reduce((a, b) => a * b, 1), seed, scale));
const read = async (b: Backend, x: BTensor) => (await b.read(x)).data;
/** Decoded operators accumulate float32 rounding over T steps; the law is checked to this. */
const LAW = (b: Backend, T: number) => ({ atol: (b.name === 'gpu' ? 4e-4 : 1e-4) * Math.max(1, T / 8), rtol: 2e-4 * Math.max(1, T / 8) });

describe.each(BACKEND_NAMES)('compensated operators on %s', (name) => {
  /** Each operator with its float64 reference f (helpers/reference.ts, written independently). */
  const C = 6;
  const g = randomArray(C, 1), beta = randomArray(C, 2), gr = randomArray(C, 3);
  const cases: [string, (b: Backend, mask?: { queries: number; queryStart: number }) => Compensated, (rows: number[][], queryStart: number) => number[][]][] = [
    ['softmax with a causal mask (compensated)', (b, mask) => new Compensated(b, 'sm', (x) => b.softmax(x, mask)), (rows, q0) => rows.map((r, i) => {
      const p = ref.softmax(r.slice(0, q0 + i + 1));
      return r.map((_, j) => p[j] ?? 0);
    })],
    ['SpikeLayerNorm', (b) => SpikeLayerNorm(b, 'ln', b.upload(Tensor.from([C], g)), b.upload(Tensor.from([C], beta)), 1e-5), (rows) => rows.map((r) => ref.layerNorm(r, g, beta, 1e-5))],
    ['SpikeRMSNorm', (b) => SpikeRMSNorm(b, 'rms', b.upload(Tensor.from([C], gr)), 1e-6), (rows) => rows.map((r) => ref.rmsNorm(r, gr, 1e-6))],
    ['SpikeGELU', (b) => SpikeGELU(b, 'gelu'), (rows) => rows.map((r) => r.map(ref.ACTIVATIONS.gelu_tanh!))],
    ['SpikeSiLU', (b) => SpikeSiLU(b, 'silu'), (rows) => rows.map((r) => r.map(ref.ACTIVATIONS.silu!))],
    ['SwiGLU (gated silu)', (b) => new Compensated(b, 'swiglu', (x) => b.gatedActivation('silu', x)), (rows) => rows.map((r) => r.slice(0, C / 2).map((v, i) => ref.ACTIVATIONS.silu!(v) * r[C / 2 + i]!))],
  ];
  it.for(cases)('%s: decoded output = f(decoded input) at every step (float64 reference), and the naive form breaks it', async ([opName, make, f], ctx) => {
    const b = await backendFor(name, ctx);
    let naiveWorst = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 2, max: 24 }), fc.integer({ min: 1, max: 5 }), fc.constantFrom('mean', 'sum') as fc.Arbitrary<TimeDomain>, fc.integer(), async (T, R, domain, seed) => {
        const xs = rand([T * R, C], seed, 3);
        const queryStart = C - R >= 0 ? C - R : 0;
        const base = make(b, opName.includes('causal') ? { queries: R, queryStart } : undefined);
        const outC = opName.startsWith('SwiGLU') ? C / 2 : C;
        // the law in the operator's own domain: decoded = running mean (or running sum) of the currents
        const decode = (a: ArrayLike<number>, width: number) => ref.decodedSteps(a, T, width).map((step, t) => (domain === 'sum' ? step.map((r) => r.map((v) => v * (t + 1))) : step));
        const inputs = decode(xs.data, C);
        for (const form of ['compensated', 'naive'] as const) {
          const op = new Compensated(b, `${opName}/${domain}/${form}`, base.f, form, domain);
          const out = decode(await read(b, op.forward(multiStep(T), b.upload(xs))), outC);
          for (let t = 0; t < T; t++) {
            const expected = ref.flat(f(inputs[t]!, queryStart));
            if (form === 'compensated') expectClose(ref.flat(out[t]!), expected, LAW(b, T), `${opName} ${domain} step ${t + 1} of ${T}`);
            else naiveWorst = Math.max(naiveWorst, compare(ref.flat(out[t]!), expected, LAW(b, T)).maxAbsError);
          }
        }
      }),
      { numRuns: 10 },
    );
    // the law can fail: applying f to each step's currents (the naive form) misses it by far
    expect(naiveWorst).toBeGreaterThan(0.05);
  });

  it('the compensated product of two spike trains (SwiGLU\'s form): decoded A·B = decoded A · decoded B at every step', async (ctx) => {
    const b = await backendFor(name, ctx);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 24 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 9 }), fc.integer(), async (T, R, Cp, seed) => {
        const A = rand([T * R, Cp], seed, 2), B = rand([T * R, Cp], seed + 1, 2);
        const tc = multiStep(T);
        const y = await read(b, timeDelta(b, tc, 'p', b.mul(timeMean(b, tc, 'a', b.upload(A)), timeMean(b, tc, 'b', b.upload(B)))));
        const [dy, da, db] = [y, A.data, B.data].map((a) => ref.decodedSteps(a, T, Cp));
        for (let t = 0; t < T; t++) expectClose(ref.flat(dy[t]!), ref.flat(da[t]!).map((v, i) => v * ref.flat(db[t]!)[i]!), LAW(b, T), `step ${t + 1}`);
      }),
      { numRuns: 10 },
    );
  });

  it.for([
    ['GPT-2 style (H = Hkv, no RoPE)', 4, 4, 3, false],
    ['Llama style (GQA, RoPE)', 4, 2, 4, true],
  ] as const)('SpikeAttention, %s: q, k and v all vary per step; decoded output = softmax(q̄·k̄ᵀ)·v̄ at every step, across a cached chunk', async ([_label, H, Hkv, d, rope], ctx) => {
    const b = await backendFor(name, ctx);
    const D = H * d, kvW = Hkv * d;
    const T = 5, S1 = 3, S2 = 2;
    const wq = rand([H * d, D], 11, 0.7), wk = rand([kvW, D], 12, 0.7), wv = rand([kvW, D], 13, 0.7);
    const qkvW = Tensor.from([H * d + 2 * kvW, D], [...wq.data, ...wk.data, ...wv.data]);
    const eye = Tensor.from([D, D], Array.from({ length: D * D }, (_, i) => (i % (D + 1) === 0 ? 1 : 0)));
    const exact = (n: string) => new SpikeEncoder(b, n, undefined, DEFAULT_NEURON);
    const invFreq = rope ? ropeInvFreq(d, 10000) : undefined;
    const attn = new SpikeAttention(b, D, H, { T, numKvHeads: Hkv, headDim: d, ...(invFreq ? { rope: invFreq } : {}) }, new SpikeLinear(b, exact('qkv'), { weight: qkvW }), new SpikeLinear(b, exact('o'), { weight: eye }), 'attn');
    const cache = new KvCache(b, 1, kvW, 64, 4, T);
    const xs1 = rand([T * S1, D], 21, 2), xs2 = rand([T * S2, D], 22, 2);
    cache.reserve(S1);
    const y1 = await read(b, attn.forward(multiStep(T), b.upload(xs1), cache, 0, Int32Array.from([0, 1, 2])));
    cache.advance(S1);
    cache.reserve(S2);
    const y2 = await read(b, attn.forward(multiStep(T), b.upload(xs2), cache, 0, Int32Array.from([3, 4])));
    const xd1 = ref.decodedSteps(xs1.data, T, D), xd2 = ref.decodedSteps(xs2.data, T, D);
    const yd1 = ref.decodedSteps(y1, T, D), yd2 = ref.decodedSteps(y2, T, D);
    const rot = (m: number[][], heads: number, start: number) => (invFreq ? m.map((r, s) => ref.rope(r, heads, d, start + s, invFreq)) : m);
    for (let t = 0; t < T; t++) {
      const x = [...xd1[t]!, ...xd2[t]!];
      const q = rot(ref.matmulT(x, ref.rowsOf(wq.data, D)), H, 0);
      const k = rot(ref.matmulT(x, ref.rowsOf(wk.data, D)), Hkv, 0);
      const v = ref.matmulT(x, ref.rowsOf(wv.data, D));
      const expected = ref.attention(q, k, v, H, Hkv, d, 0, 1 / Math.sqrt(d));
      expectClose(ref.flat([...yd1[t]!, ...yd2[t]!]), ref.flat(expected), LAW(b, T), `step ${t + 1}`);
    }
  });

  it('linear maps commute with the time sum', async (ctx) => {
    const b = await backendFor(name, ctx);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 17 }), fc.integer({ min: 1, max: 13 }), fc.integer(), async (T, R, K, N, seed) => {
        const x = b.upload(rand([T * R, K], seed)), w = b.upload(rand([N, K], seed + 1), 'linear');
        const sumThenMap = b.matmul(b.timeMean(x, T, 'sum'), w);
        const mapThenSum = b.timeMean(b.matmul(x, w), T, 'sum');
        expectClose(await read(b, mapThenSum), await read(b, sumThenMap), LAW(b, T), 'W·Σx = Σ W·x');
      }),
      { numRuns: 12 },
    );
  });

  it('single-step execution of timeMean / timeDelta / a compensated op equals the multi-step run', async (ctx) => {
    const b = await backendFor(name, ctx);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 10 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 7 }), fc.integer(), async (T, R, C, seed) => {
        const xs = rand([T * R, C], seed, 2);
        const op = SpikeSiLU(b, 'silu');
        const whole = await read(b, op.forward(multiStep(T), b.upload(xs)));
        const loop = singleStep(b);
        for (let t = 0; t < T; t++) {
          const step = await read(b, op.forward(loop.at(t) as TimeContext, b.upload(new Tensor([R, C], xs.data.subarray(t * R * C, (t + 1) * R * C)))));
          expectClose(step, whole.subarray(t * R * C, (t + 1) * R * C), { atol: 1e-5, rtol: 1e-5 }, `step ${t}`);
        }
      }),
      { numRuns: 12 },
    );
  });
});

describe('temporal kernels: GPU vs CPU', () => {
  it('timeMean / timeDelta / sumAbsInto agree', async (ctx) => {
    const g = await backendFor('gpu', ctx);
    const c = await backendFor('cpu', ctx);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 70 }), fc.constantFrom('mean', 'sum') as fc.Arbitrary<TimeDomain>, fc.integer(), async (T, E, domain, seed) => {
        const x = rand([T, E], seed, 3);
        expectClose(await read(g, g.timeMean(g.upload(x), T, domain)), await read(c, c.timeMean(x, T, domain)), TOL.gpuKernel, 'timeMean');
        expectClose(await read(g, g.timeDelta(g.upload(x), T, domain)), await read(c, c.timeDelta(x, T, domain)), { atol: 1e-4 * T, rtol: 1e-4 }, 'timeDelta');
        const sg = g.zeros([T + 2]), sc = c.zeros([T + 2]);
        g.sumAbsInto(g.upload(x), T, sg, 1);
        c.sumAbsInto(x, T, sc, 1);
        expectClose(await read(g, sg), await read(c, sc), { atol: 1e-4, rtol: 1e-5 }, 'sumAbs');
      }),
      { numRuns: 12 },
    );
  });

  it('reject ragged time-major tensors with a clear error', async (ctx) => {
    const c = await backendFor('cpu', ctx);
    expect(() => c.timeMean(rand([7, 2], 1), 2, 'mean')).toThrow(/7 rows are not 2 steps/);
  });
});
