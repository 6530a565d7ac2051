/** The GPU backend for benchmarks, or undefined (with the reason logged) when there is none. */
import { GpuBackend } from '../src/tensor/gpu/gpu-backend.js';
import type { BenchContext } from './harness.js';

let gpu: Promise<GpuBackend | undefined> | undefined;

export function benchGpu(ctx: BenchContext): Promise<GpuBackend | undefined> {
  gpu ??= GpuBackend.create().catch((err) => {
    ctx.log(`no GPU: ${(err as Error).message}`);
    return undefined;
  });
  return gpu;
}
