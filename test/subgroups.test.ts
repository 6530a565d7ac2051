/**
 * Subgroup reductions (src/tensor/gpu/subgroups.ts) on a WebGPU adapter that has them: Chromium's
 * SwiftShader (subgroups of 4), driven headless (helpers/browser-gpu.ts), since Dawn's Node
 * bindings on llvmpipe offer no subgroups. Each workgroup-reducing kernel — layerNorm, rmsNorm,
 * softmax (plain and causal), split-K attention — runs there with subgroup and with workgroup
 * reductions and is compared with its CPU twin. With CI=true a missing Chromium, or an adapter
 * without subgroups, fails these tests; elsewhere they are skipped with the reason (never passed).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { subgroupLayoutProblem } from '../src/tensor/gpu/subgroups.js';
import type { Reduction } from '../src/tensor/gpu/variants.js';
import { type AttentionParams, attentionCpu } from '../src/tensor/kernels/attention.js';
import { layerNormCpu, rmsNormCpu } from '../src/tensor/kernels/norm.js';
import { softmaxCpu } from '../src/tensor/kernels/softmax.js';
import type { GpuAdapterReport } from '../src/tensor/gpu/device.js';
import { GPU_REQUIRED } from './helpers/backends.js';
import { type BrowserGpu, chromiumPath, openBrowserGpu } from './helpers/browser-gpu.js';
import { TOL, expectClose, randomArray } from './helpers/tolerance.js';

let browser: BrowserGpu | undefined;
let report: GpuAdapterReport | undefined;
let unavailable = '';

/** The page, or: fail (CI=true) / skip with the reason. */
function page(ctx: TestContext) {
  if (!browser || unavailable) {
    if (GPU_REQUIRED) throw new Error(`subgroup tests must run here (CI=true): ${unavailable || 'Chromium did not start'}`);
    console.warn(`subgroup tests not run: ${unavailable}`);
    ctx.skip();
  }
  return browser!.page;
}

const call = <T>(ctx: TestContext, fn: string, ...args: unknown[]): Promise<T> =>
  page(ctx).evaluate(([f, a]) => (globalThis as any).spikelm[f as string](...(a as unknown[])), [fn, args] as const) as Promise<T>;

const REDUCTIONS: Reduction[] = ['subgroup', 'workgroup'];
const arr = (n: number, seed: number, scale = 1) => Array.from(randomArray(n, seed, scale));

describe('subgroup reductions on Chromium SwiftShader', () => {
  beforeAll(async () => {
    const exe = chromiumPath();
    if (!exe) {
      unavailable = 'no Chromium (apt-get install chromium, or set CHROMIUM_PATH)';
      return;
    }
    browser = await openBrowserGpu(exe);
    ({ report } = await browser.page.evaluate(() => (globalThis as any).spikelm.open()));
    if (!report!.features.includes('subgroups')) unavailable = `Chromium's WebGPU adapter (${report!.description}) does not offer subgroups`;
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
  });

  it('the device has the subgroups feature and the layout probe passes, so they are chosen', async (ctx) => {
    page(ctx);
    expect(report!.subgroupNote).toBe('');
    expect(report!.subgroupReductions).toBe(true);
    expect(await call<Reduction>(ctx, 'chosenReduction')).toBe('subgroup');
  });

  it.for(REDUCTIONS)('layerNorm (with and without β) and rmsNorm, %s reductions, rows narrower and wider than the workgroup', async (reduction, ctx) => {
    page(ctx);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 5 }), fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 250, max: 800 })), fc.integer(), async (R, C, seed) => {
        const x = arr(R * C, seed, 5), gamma = arr(C, seed + 1), beta = arr(C, seed + 2);
        for (const withBeta of [true, false]) {
          const expected = new Float32Array(R * C);
          layerNormCpu(Float32Array.from(x), Float32Array.from(gamma), withBeta ? Float32Array.from(beta) : undefined, 1e-5, R, C, expected);
          expectClose(await call<number[]>(ctx, 'norm', 'layer', x, gamma, withBeta ? beta : null, 1e-5, R, C, reduction), expected, TOL.gpuKernel, `layerNorm ${reduction}${withBeta ? '' : ' (no β)'}`);
        }
        const expected = new Float32Array(R * C);
        rmsNormCpu(Float32Array.from(x), Float32Array.from(gamma), 1e-6, R, C, expected);
        expectClose(await call<number[]>(ctx, 'norm', 'rms', x, gamma, null, 1e-6, R, C, reduction), expected, TOL.gpuKernel, `rmsNorm ${reduction}`);
      }),
      { numRuns: 10 },
    );
  });

  it.for(REDUCTIONS)('softmax, plain and causal with a cache offset, %s reductions', async (reduction, ctx) => {
    page(ctx);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 6 }), fc.oneof(fc.integer({ min: 0, max: 20 }), fc.integer({ min: 250, max: 600 })), fc.integer(), async (S, past, seed) => {
        const C = S + past, x = arr(S * C, seed, 30);
        for (const mask of [undefined, { queries: S, queryStart: past }]) {
          const expected = new Float32Array(S * C);
          softmaxCpu(Float32Array.from(x), S, C, expected, mask);
          expectClose(await call<number[]>(ctx, 'softmax', x, S, C, mask ?? null, reduction), expected, TOL.gpuKernel, `softmax ${reduction}${mask ? ' causal' : ''}`);
        }
      }),
      { numRuns: 10 },
    );
  });

  it.for(REDUCTIONS)('split-K attention (GQA, decode and a few queries, caches over several key blocks), %s reductions', async (reduction, ctx) => {
    page(ctx);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 300 }), fc.constantFrom([2, 1], [4, 2], [3, 3]), fc.constantFrom(4, 8, 16), fc.integer(), async (S, past, [H, Hkv], d, seed) => {
        const L = past + S;
        const p: AttentionParams = { numHeads: H, numKvHeads: Hkv, headDim: d, queryStart: past, kvLength: L, scale: 1 / Math.sqrt(d) };
        const q = arr(S * H * d, seed, 2), k = arr(L * Hkv * d, seed + 1, 2), v = arr(L * Hkv * d, seed + 2);
        const expected = new Float32Array(S * H * d);
        attentionCpu(Float32Array.from(q), Float32Array.from(k), Float32Array.from(v), S, p, expected);
        expectClose(await call<number[]>(ctx, 'attention', q, k, v, S, p, reduction), expected, TOL.gpuKernel, `attention splitk ${reduction}`);
      }),
      { numRuns: 10 },
    );
  });
});

describe('the subgroup layout probe', () => {
  /** What the probe writes per invocation (lane, size, first index of its subgroup) for a given layout. */
  const probeOutput = (size: number, groups: number, sg: number, laneOf: (lid: number) => number, firstOf: (lid: number) => number) => {
    const out = new Uint32Array(size * groups * 3);
    for (let i = 0; i < size * groups; i++) out.set([laneOf(i % size), sg, firstOf(i % size)], 3 * i);
    return out;
  };

  it('accepts consecutive subgroups of any power-of-two size from 4 to 128, refuses anything else', () => {
    for (const sg of [4, 8, 16, 32, 64, 128]) {
      expect(subgroupLayoutProblem(probeOutput(256, 2, sg, (l) => l % sg, (l) => l - (l % sg)), 256, 2)).toBeUndefined();
    }
    // interleaved subgroups (lane = lid / 8 for 8 subgroups of 32): the slots would collide
    expect(subgroupLayoutProblem(probeOutput(256, 2, 32, (l) => Math.floor(l / 8), (l) => l % 8), 256, 2)).toMatch(/invocation 1 of 256 is lane 0 of a subgroup of 32 starting at 1/);
    // lanes as expected, but subgroups of 8 made of two runs of 4 ({0–3, 12–15} and {8–11, 4–7})
    const swapped = (l: number) => (l < 16 && l % 8 >= 4 ? l ^ 8 : l);
    expect(subgroupLayoutProblem(probeOutput(256, 1, 8, (l) => l % 8, (l) => swapped(l) - (swapped(l) % 8)), 256, 1)).toMatch(/invocation 4 of 256 is lane 4 of a subgroup of 8 starting at 8/);
    expect(subgroupLayoutProblem(probeOutput(64, 1, 2, (l) => l % 2, (l) => l - (l % 2)), 64, 1)).toMatch(/subgroup size 2/);
    expect(subgroupLayoutProblem(probeOutput(64, 1, 24, (l) => l % 24, (l) => l - (l % 24)), 64, 1)).toMatch(/subgroup size 24/);
  });
});
