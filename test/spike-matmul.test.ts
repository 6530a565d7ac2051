/** Event-driven spike × weight products equal the dense product, on the CPU and the GPU. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { matmulReference } from '../src/tensor/kernels/matmul.js';
import { f16BitsToNumber, numberToF16Bits } from '../src/tensor/dtype.js';
import { EVENT_CROSSOVER, spikeDensity, spikeMatmulEventCpu, useEventDriven } from '../src/tensor/kernels/spike-matmul.js';
import { Tensor } from '../src/tensor/tensor.js';
import { requireGpu } from './helpers/backends.js';
import { TOL, expectClose, randomArray } from './helpers/tolerance.js';

/** Integer spike counts in [−B, B] with the given density of nonzeros. */
function spikes(M: number, K: number, density: number, seed: number, B = 3): Float32Array {
  const u = randomArray(M * K, seed), v = randomArray(M * K, seed + 7);
  return Float32Array.from(u, (x, i) => (Math.abs(x) < density ? Math.sign(v[i]!) * (1 + Math.floor(Math.abs(v[i]!) * B)) : 0));
}

const transpose = (w: Float32Array, N: number, K: number) => Float32Array.from({ length: K * N }, (_, i) => w[(i % N) * K + Math.floor(i / N)]!);

describe('event-driven spike products', () => {
  it('CPU: equal the dense reference at densities from 0 to 1, with bias and residual', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 30 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.integer(), (M, K, N, density, seed) => {
        const n = spikes(M, K, density, seed), w = randomArray(N * K, seed + 1), b = randomArray(N, seed + 2), r = randomArray(M * N, seed + 3);
        const y = new Float32Array(M * N);
        spikeMatmulEventCpu(n, transpose(w, N, K), b, r, y, M, K, N);
        const ref = matmulReference(n, w, b, M, K, N).map((v, i) => v + r[i]!);
        expectClose(y, ref, TOL.f32, 'event-driven');
      }),
      { numRuns: 150 },
    );
  });

  it('the CPU backend picks the kernel by density and gives the same numbers either way', () => {
    const cpu = new CpuBackend();
    const M = 6, K = 33, N = 17;
    const w = cpu.upload(Tensor.from([N, K], randomArray(N * K, 4)), 'linear');
    for (const density of [0.02, 0.5]) {
      const n = Tensor.from([M, K], spikes(M, K, density, 9));
      expect(useEventDriven(spikeDensity(n.data), 'cpu')).toBe(spikeDensity(n.data) < EVENT_CROSSOVER.cpu);
      const auto = cpu.spikeMatmul(n, w, undefined, undefined, 'auto');
      expectClose(auto.data, cpu.spikeMatmul(n, w, undefined, undefined, 'dense').data, TOL.f32, `auto at ${density}`);
      expectClose(cpu.spikeMatmul(n, w, undefined, undefined, 'event').data, cpu.matmul(n, w).data, TOL.f32, `event at ${density}`);
    }
  });

  it('GPU: compaction + accumulation equal the CPU reference, also over weight chunks', async (ctx) => {
    const g = await requireGpu(ctx);
    const chunked = await requireGpu(ctx, { maxWeightChunkBytes: 40 * 8 * 4 });
    const half = await requireGpu(ctx, { weightFormat: 'f16', maxWeightChunkBytes: 40 * 8 * 2 });
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 37 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.boolean(), fc.integer(), async (M, K, N, density, withResidual, seed) => {
        const n = spikes(M, K, density, seed), w = randomArray(N * K, seed + 1), b = randomArray(N, seed + 2), r = randomArray(M * N, seed + 3);
        const ref = matmulReference(n, w, b, M, K, N).map((v, i) => v + (withResidual ? r[i]! : 0));
        for (const backend of [g, chunked]) {
          const y = backend.spikeMatmul(backend.upload(new Tensor([M, K], n)), backend.upload(new Tensor([N, K], w), 'linear'), backend.upload(new Tensor([N], b)), withResidual ? backend.upload(new Tensor([M, N], r)) : undefined, 'event');
          expectClose((await backend.read(y)).data, ref, TOL.gpuKernel, 'gpu event-driven');
        }
        // weights stored in f16: the reference multiplies by the weights rounded to binary16
        const w16 = w.map((v) => f16BitsToNumber(numberToF16Bits(v)));
        const ref16 = matmulReference(n, w16, b, M, K, N).map((v, i) => v + (withResidual ? r[i]! : 0));
        const y16 = half.spikeMatmul(half.upload(new Tensor([M, K], n)), half.upload(new Tensor([N, K], w), 'linear'), half.upload(new Tensor([N], b)), withResidual ? half.upload(new Tensor([M, N], r)) : undefined, 'event');
        expectClose((await half.read(y16)).data, ref16, TOL.gpuKernel, 'gpu event-driven, f16 weights');
      }),
      { numRuns: 20 },
    );
  });
});
