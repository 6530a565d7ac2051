/**
 * The compensated operators' law, on every backend: the decoded (accumulated) output equals f of the
 * decoded input at every step — softmax with a causal mask, LayerNorm, RMSNorm, GELU, SiLU, SwiGLU,
 * the product of two spike trains — in the mean domain and the sum domain. Linear maps commute with
 * the time sum. Single-step chains equal multi-step runs.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Compensated, SpikeGELU, SpikeLayerNorm, SpikeRMSNorm, SpikeSiLU, SpikeSoftmax, type TimeContext, multiStep, singleStep, spikeProduct } from '../src/snn/operators.js';
import type { Backend, BTensor } from '../src/tensor/backend.js';
import type { TimeDomain } from '../src/tensor/kernels/temporal.js';
import { Tensor } from '../src/tensor/tensor.js';
import { BACKEND_NAMES, backendFor } from './helpers/backends.js';
import { TOL, expectClose, randomArray } from './helpers/tolerance.js';

const rand = (shape: number[], seed: number, scale = 1) => Tensor.from(shape, randomArray(shape.reduce((a, b) => a * b, 1), seed, scale));
const read = async (b: Backend, x: BTensor) => (await b.read(x)).data;
/** Decoded operators accumulate float32 rounding over T steps; the law is checked to this. */
const LAW = (b: Backend, T: number) => ({ atol: (b.name === 'gpu' ? 4e-4 : 1e-4) * Math.max(1, T / 8), rtol: 2e-4 * Math.max(1, T / 8) });

describe.each(BACKEND_NAMES)('compensated operators on %s', (name) => {
  const cases: [string, (b: Backend, mask?: { queries: number; queryStart: number }) => Compensated][] = [
    ['SpikeSoftmax (causal)', (b, mask) => SpikeSoftmax(b, 'sm', mask)],
    ['SpikeLayerNorm', (b) => SpikeLayerNorm(b, 'ln', b.upload(rand([6], 1)), b.upload(rand([6], 2)), 1e-5)],
    ['SpikeRMSNorm', (b) => SpikeRMSNorm(b, 'rms', b.upload(rand([6], 3)), 1e-6)],
    ['SpikeGELU', (b) => SpikeGELU(b, 'gelu')],
    ['SpikeSiLU', (b) => SpikeSiLU(b, 'silu')],
    ['SwiGLU (gated silu)', (b) => new Compensated(b, 'swiglu', (x) => b.gatedActivation('silu', x))],
  ];
  it.for(cases)('%s: decoded output = f(decoded input) at every step, mean and sum domains', async ([opName, make], ctx) => {
    const b = await backendFor(name, ctx);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 24 }), fc.integer({ min: 1, max: 5 }), fc.constantFrom('mean', 'sum') as fc.Arbitrary<TimeDomain>, fc.integer(), async (T, R, domain, seed) => {
        const C = 6;
        const x = b.upload(rand([T * R, C], seed, 3));
        const mask = { queries: R, queryStart: C - R >= 0 ? C - R : 0 };
        const base = make(b, opName.includes('causal') ? mask : undefined);
        const op = new Compensated(b, `${opName}/${domain}`, base.f, 'compensated', domain);
        const ctx = multiStep(T);
        const y = op.forward(ctx, x);
        const decodedOut = await read(b, b.timeMean(y, T, domain));
        const expected = await read(b, base.f(b.timeMean(x, T, domain)));
        expectClose(decodedOut, expected, LAW(b, T), `${opName} ${domain}`);
      }),
      { numRuns: 12 },
    );
  });

  it('the product of two spike trains: decoded A·B = decoded A · decoded B at every step (elementwise and Q·Kᵀ)', async (ctx) => {
    const b = await backendFor(name, ctx);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 24 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 9 }), fc.integer(), async (T, R, C, seed) => {
        const A = b.upload(rand([T * R, C], seed, 2)), B = b.upload(rand([T * R, C], seed + 1, 2));
        const tc = multiStep(T);
        const y = spikeProduct(b, tc, 'p', A, B);
        expectClose(await read(b, b.timeMean(y, T, 'mean')), await read(b, b.mul(b.timeMean(A, T, 'mean'), b.timeMean(B, T, 'mean'))), LAW(b, T), 'elementwise product');
        // matrix form: the compensated Q·Kᵀ for one step block equals the product of decoded Q and K
        const Q = rand([T * R, C], seed + 2), K = rand([R, C], seed + 3);
        const qd = b.timeMean(b.upload(Q), T, 'mean');
        const scores = b.matmul(qd, b.upload(K)); // K fixed over time here: decoded K = K
        const ys = new Compensated(b, 'qk', (d) => b.matmul(d, b.upload(K))).forward(tc, b.upload(Q));
        expectClose(await read(b, b.timeMean(ys, T, 'mean')), await read(b, scores), LAW(b, T), 'Q·Kᵀ');
      }),
      { numRuns: 10 },
    );
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
