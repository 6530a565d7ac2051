/**
 * Kernel benchmarks, CPU vs GPU: event-driven vs dense spike products across spike densities
 * (1%–50%), attention, the neuron step, and a compensated operator (timeMean → f → timeDelta).
 * The event-driven crossover measured here is EVENT_CROSSOVER in src/tensor/kernels/spike-matmul.ts.
 */
import type { Backend, BTensor } from '../src/tensor/backend.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { DEFAULT_NEURON, inverseThresholds } from '../src/tensor/kernels/neuron.js';
import { Tensor } from '../src/tensor/tensor.js';
import { benchGpu } from './gpu.js';
import { type BenchRow, type Suite, timeIt } from './harness.js';

export const DENSITIES = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5];

function spikeTensor(M: number, K: number, density: number): Tensor {
  let s = 12345;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 4294967296);
  return Tensor.from([M, K], Array.from({ length: M * K }, () => (rnd() < density ? (rnd() < 0.5 ? -1 : 1) : 0)));
}

async function done(b: Backend, t: BTensor): Promise<void> {
  await b.read(t);
  b.dispose(t);
}

export const kernelsSuite: Suite = {
  name: 'kernels',
  description: 'event-driven vs dense spike products across densities; attention, neuron, compensated op; CPU vs GPU',
  async run(ctx) {
    const rows: BenchRow[] = [];
    const gpu = await benchGpu(ctx);
    const backends: Backend[] = gpu ? [new CpuBackend(), gpu] : [new CpuBackend()];
    const [M, K, N] = ctx.quick ? [256, 256, 256] : [1024, 768, 768];
    for (const b of backends) {
      const w = b.upload(Tensor.from([N, K], Array.from({ length: N * K }, (_, i) => Math.sin(i) * 0.01)), 'linear');
      let crossover: number | undefined;
      for (const density of DENSITIES) {
        const n = b.upload(spikeTensor(M, K, density));
        const dense = await timeIt(`${b.name} dense ${density}`, () => done(b, b.spikeMatmul(n, w, undefined, undefined, 'dense')), ctx);
        const event = await timeIt(`${b.name} event ${density}`, () => done(b, b.spikeMatmul(n, w, undefined, undefined, 'event')), ctx);
        if (event.meanMs < dense.meanMs) crossover = density;
        rows.push({ suite: 'kernels', name: `${b.name} spike product (${M},${K},${N}) density ${density}`, meanMs: event.meanMs, samples: event.samples, metrics: { 'dense ms': dense.meanMs, 'event ms': event.meanMs, 'event speedup': dense.meanMs / event.meanMs } });
        ctx.log(`${b.name} density ${density}: dense ${dense.meanMs.toFixed(2)} ms, event-driven ${event.meanMs.toFixed(2)} ms (${(dense.meanMs / event.meanMs).toFixed(2)}×)`);
      }
      ctx.log(`${b.name}: event-driven wins up to density ${crossover ?? 'none measured'}`);
      // attention, neuron, compensated operator at SNN shapes (T=16 steps of 64 tokens, stories260k widths)
      const T = 16, S = 64, H = 8, d = 8;
      const q = b.upload(Tensor.from([T * S, H * d], Array.from({ length: T * S * H * d }, (_, i) => Math.sin(i))));
      const kv = b.upload(Tensor.from([T * S, 4 * d], Array.from({ length: T * S * 4 * d }, (_, i) => Math.cos(i))));
      const att = await timeIt(`${b.name} attention`, () => done(b, b.attention(q, kv, kv, { numHeads: H, numKvHeads: 4, headDim: d, queryStart: 0, kvLength: S, scale: 0.35, batches: T, kvBatchStride: S })), ctx);
      rows.push({ suite: 'kernels', name: `${b.name} attention ${T} steps × ${S} tokens`, ...att, metrics: {} });
      const x = b.upload(Tensor.from([T * S, 172], Array.from({ length: T * S * 172 }, (_, i) => Math.sin(i * 0.3))));
      const theta = new Float32Array(172).fill(0.5);
      const th = { theta: b.upload(new Tensor([172], theta)), invTheta: b.upload(new Tensor([172], inverseThresholds(theta))) };
      const neuron = await timeIt(`${b.name} neuron`, () => done(b, b.neuronRun(x, T, th, DEFAULT_NEURON)), ctx);
      rows.push({ suite: 'kernels', name: `${b.name} neuron ${T} steps × ${S}×172`, ...neuron, metrics: { 'ns/neuron-step': (neuron.meanMs * 1e6) / (T * S * 172) } });
      const comp = await timeIt(`${b.name} compensated`, () => done(b, b.timeDelta(b.activation('silu', b.timeMean(x, T, 'mean')), T, 'mean')), ctx);
      rows.push({ suite: 'kernels', name: `${b.name} compensated SiLU ${T} steps × ${S}×172`, ...comp, metrics: {} });
      ctx.log(`${b.name}: attention ${att.meanMs.toFixed(2)} ms, neuron ${neuron.meanMs.toFixed(2)} ms, compensated SiLU ${comp.meanMs.toFixed(2)} ms`);
    }
    return rows;
  },
};
