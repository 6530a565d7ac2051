/**
 * Matmul GFLOP/s on the CPU at the shapes of a GPT-2-small layer: the single-threaded blocked
 * kernel and the dispatcher (which spreads large products over the worker threads).
 */
import { matmulBlocked, matmulCpu } from '../src/tensor/kernels/matmul.js';
import { threadCount } from '../src/tensor/threads.js';
import { allocF32 } from '../src/tensor/tensor.js';
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
  description: 'CPU matmul GFLOP/s: 1 thread (blocked 4×4) vs all threads',
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
    }
    return rows;
  },
};
