/**
 * Matmul GFLOP/s at the shapes of a GPT-2-small layer: on the CPU the single-threaded blocked kernel
 * and the dispatcher (which spreads large products over the worker threads); on the GPU every packed
 * WGSL variant, each timed until the queue has finished.
 */
import { matmulBlocked, matmulCpu } from '../src/tensor/kernels/matmul.js';
import { threadCount } from '../src/tensor/threads.js';
import { PACKED_VARIANTS, chooseMatmulVariant, matmulGpu, packLinearWeight } from '../src/tensor/kernels/matmul.js';
import { Tensor, allocF32 } from '../src/tensor/tensor.js';
import { benchGpu } from './gpu.js';
import { type BenchRow, type Suite, timeIt } from './harness.js';

export const MATMUL_SHAPES: readonly [number, number, number][] = [
  [1, 768, 768], [1, 768, 50257], [64, 768, 768], [128, 768, 3072], [512, 768, 768],
];

function operands(M: number, K: number, N: number) {
  const x = allocF32(M * K), w = allocF32(N * K), b = allocF32(N), y = allocF32(M * N);
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i);
  for (let i = 0; i < w.length; i++) w[i] = Math.cos(i) * 0.01;
  return { x, w, b, y };
}

export const matmulSuite: Suite = {
  name: 'matmul',
  description: 'matmul GFLOP/s: CPU 1 thread (blocked 4×4), CPU all threads, GPU variants',
  async run(ctx) {
    const rows: BenchRow[] = [];
    for (const [M, K, N] of MATMUL_SHAPES) {
      const { x, w, b, y } = operands(M, K, N);
      const flops = 2 * M * K * N;
      const single = await timeIt(`blocked ${M}x${K}x${N}`, () => matmulBlocked(x, w, b, y, M, K, N, 0, N), ctx);
      const multi = await timeIt(`threaded ${M}x${K}x${N}`, () => matmulCpu(x, w, b, y, M, K, N), ctx);
      const shape = `(${M},${K},${N})`;
      rows.push({ suite: 'matmul', name: `cpu 1 thread ${shape}`, ...single, metrics: { 'GFLOP/s': flops / single.meanMs / 1e6 } });
      rows.push({ suite: 'matmul', name: `cpu ${threadCount()} threads ${shape}`, ...multi, metrics: { 'GFLOP/s': flops / multi.meanMs / 1e6, speedup: single.meanMs / multi.meanMs } });
      ctx.log(`matmul ${shape}: ${(flops / single.meanMs / 1e6).toFixed(2)} GFLOP/s on 1 thread, ${(flops / multi.meanMs / 1e6).toFixed(2)} on ${threadCount()}`);
      const gpu = await benchGpu(ctx);
      if (!gpu) continue;
      const rt = gpu.rt;
      const weight = packLinearWeight(rt, new Tensor([N, K], w));
      const xg = rt.fromHost([M, K], x), bg = rt.fromHost([N], b), yg = rt.alloc([M, N]);
      const preferred = chooseMatmulVariant(rt, M);
      for (const variant of PACKED_VARIANTS) {
        // The workgroup-memory variants are very slow on a software rasterizer; time them on small shapes only.
        if (rt.ctx.report.software && (variant === 'tiled' || variant === 'splitk') && flops > 2e8) continue;
        const r = await timeIt(`gpu ${variant} ${shape}`, async () => {
          matmulGpu(rt, xg, weight, bg, yg, M, K, N, variant);
          await rt.sync();
        }, ctx);
        rows.push({ suite: 'matmul', name: `gpu ${variant}${variant === preferred ? ' (default)' : ''} ${shape}`, ...r, metrics: { 'GFLOP/s': flops / r.meanMs / 1e6, 'vs cpu all threads': multi.meanMs / r.meanMs } });
        ctx.log(`  gpu ${variant} ${shape}: ${(flops / r.meanMs / 1e6).toFixed(2)} GFLOP/s`);
      }
      gpu.dispose(weight);
      for (const t of [xg, bg, yg]) rt.release(t);
    }
    return rows;
  },
};
