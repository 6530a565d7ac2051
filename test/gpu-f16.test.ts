/**
 * f16 arithmetic on the GPU (SPIKELM_GPU_ARITH=f16, kernels/matmul.ts GpuArithmetic): where the device
 * has shader-f16 (lavapipe through Vulkan), every dense matmul variant equals an independent f16
 * reference (activation and weight rounded to binary16, each product rounded to binary16, the sum in
 * float64), and whole models stay within the stated error budget of the CPU's float32 logits, with the
 * CPU's greedy tokens; where it has none (llvmpipe through OpenGL ES), asking for it is an error
 * naming the feature. f16 arithmetic is opt-in: nothing picks it by default.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { generate } from '../src/nn/generate.js';
import { loadModel } from '../src/nn/model.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { f16BitsToNumber, numberToF16Bits } from '../src/tensor/dtype.js';
import { GpuBackend } from '../src/tensor/gpu/gpu-backend.js';
import { GpuLinearWeight, type MatmulVariant } from '../src/tensor/kernels/matmul.js';
import { Tensor } from '../src/tensor/tensor.js';
import { requireGpu } from './helpers/backends.js';
import { withEnv } from './helpers/env.js';
import { fixtureDir, golden } from './helpers/fixtures.js';
import { TOL, expectClose, randomArray } from './helpers/tolerance.js';

const h = (x: number) => f16BitsToNumber(numberToF16Bits(x));

/** y = x·wᵀ with binary16 inputs and products, summed exactly (float64), plus bias. */
function f16Reference(x: Float32Array, w: Float32Array, bias: Float32Array, M: number, K: number, N: number): Float32Array {
  const y = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += h(h(x[m * K + k]!) * h(w[n * K + k]!));
      y[m * N + n] = acc + bias[n]!;
    }
  }
  return y;
}

const VARIANTS: MatmulVariant[] = ['blocked1', 'blocked4', 'tiled', 'splitk'];

describe('f16 arithmetic', () => {
  it('every dense matmul variant equals the f16 reference (shapes not multiples of 4); refused without shader-f16', async (ctx) => {
    const base = await requireGpu(ctx);
    const gpu = new GpuBackend(base.rt.ctx, { arithmetic: 'f16' });
    const w0 = Tensor.from([3, 5], randomArray(15, 1, 1));
    if (!base.report.shaderF16) {
      expect(() => gpu.upload(w0, 'linear')).toThrow(/SPIKELM_GPU_ARITH=f16 needs the shader-f16 feature, which this adapter .+ does not offer/);
      return;
    }
    const packed = gpu.upload(w0, 'linear') as GpuLinearWeight;
    expect([packed.format, packed.arithmetic]).toEqual(['f16', 'f16']);
    expect(() => new GpuBackend(base.rt.ctx, { arithmetic: 'f16', weightFormat: 'f32' }).upload(w0, 'linear')).toThrow(/weights are set to be stored in f32/);
    for (const variant of VARIANTS) {
      await fc.assert(fc.asyncProperty(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 70 }), fc.integer({ min: 1, max: 37 }), fc.integer(), async (M, K, N, seed) => {
        const x = randomArray(M * K, seed, 2), w = randomArray(N * K, seed + 1, 0.5), bias = randomArray(N, seed + 2, 0.1);
        const g = new GpuBackend(base.rt.ctx, { arithmetic: 'f16', matmulVariant: variant });
        const wt = g.upload(Tensor.from([N, K], w), 'linear'), xt = g.upload(Tensor.from([M, K], x)), bt = g.upload(Tensor.from([N], bias));
        const got = (await g.read(g.matmul(xt, wt, bt))).data;
        expectClose(got, f16Reference(x, w, bias, M, K, N), TOL.gpuF16Kernel, `${variant} M=${M} K=${K} N=${N}`);
        for (const t of [wt, xt, bt]) g.dispose(t);
      }), { numRuns: 8, endOnFailure: true });
    }
  });

  it('whole models: logits within the f16 error budget of the CPU\'s, and the CPU\'s greedy tokens', async (ctx) => {
    const base = await requireGpu(ctx);
    if (!base.report.shaderF16) {
      await withEnv({ SPIKELM_GPU_ARITH: 'f16' }, async () => {
        expect(() => loadModel(fixtureDir('stories260k'), { backend: new GpuBackend(base.rt.ctx) })).toThrow(/shader-f16/);
      });
      return;
    }
    const cpu = new CpuBackend();
    for (const name of ['stories260k', 'gpt2-random-f16', 'qwen3-random'] as const) {
      const g = Object.values(golden(name))[0]!;
      const gpu = new GpuBackend(base.rt.ctx, { arithmetic: 'f16' });
      const m = loadModel(fixtureDir(name), { backend: gpu });
      const want = cpu.readSync(loadModel(fixtureDir(name), { backend: cpu }).forward(g.input_ids, undefined, { allLogits: true })).data;
      expectClose((await gpu.read(m.forward(g.input_ids, undefined, { allLogits: true }))).data, want, TOL.gpuF16Model, `${name} f16 arithmetic`);
      if (name === 'stories260k') {
        // a real model's greedy continuation (the random fixtures' logits are near-tied)
        expect((await generate(m, g.input_ids, { maxNewTokens: g.greedy_continuation.length, stopTokenIds: [] })).ids).toEqual(g.greedy_continuation);
      }
    }
  });

  it('is opt-in: by default, and with SPIKELM_GPU_ARITH=auto, weights are multiplied in float32', async (ctx) => {
    const base = await requireGpu(ctx);
    const w = Tensor.from([4, 4], new Float32Array(16).fill(0.5)); // exact in f16: stored as f16
    for (const env of [{ SPIKELM_GPU_ARITH: '' }, { SPIKELM_GPU_ARITH: 'auto' }, { SPIKELM_GPU_ARITH: 'f32' }]) {
      await withEnv(env, async () => {
        const packed = new GpuBackend(base.rt.ctx).upload(w, 'linear') as GpuLinearWeight;
        expect(packed.arithmetic).toBe('f32');
      });
    }
    await withEnv({ SPIKELM_GPU_ARITH: 'half' }, async () => {
      expect(() => new GpuBackend(base.rt.ctx).upload(w, 'linear')).toThrow(/SPIKELM_GPU_ARITH=half is not a variant/);
    });
  });
});
