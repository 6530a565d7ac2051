/**
 * Backends for tests. The GPU backend runs on Mesa llvmpipe in CI; when CI=true (or
 * SPIKELM_REQUIRE_GPU=1) a missing adapter FAILS the GPU tests. Elsewhere they are skipped with a
 * message saying how to enable them.
 */
import type { TestContext } from 'vitest';
import type { Backend } from '../../src/tensor/backend.js';
import { CpuBackend } from '../../src/tensor/cpu-backend.js';
import { GPU_INSTALL_HINT } from '../../src/tensor/gpu/device.js';
import { GpuBackend, type GpuBackendOptions } from '../../src/tensor/gpu/gpu-backend.js';

export const GPU_REQUIRED = process.env.CI === 'true' || process.env.SPIKELM_REQUIRE_GPU === '1';

let gpuError: string | undefined;
let warned = false;
const gpus = new Map<string, Promise<GpuBackend | undefined>>();

/**
 * The Dawn path this test run must be on (vitest.config.ts sets it per project): a GPU test whose
 * adapter came through another path fails, so a Vulkan run that fell back to OpenGL ES cannot pass.
 */
export const EXPECTED_GPU_PATH = process.env.SPIKELM_EXPECT_GPU;

/** A GPU backend (one per option set), or undefined when no adapter exists. */
export function tryGpu(options: GpuBackendOptions = {}): Promise<GpuBackend | undefined> {
  const key = JSON.stringify(options);
  let p = gpus.get(key);
  if (!p) {
    p = GpuBackend.create(options).then((g) => {
      if (EXPECTED_GPU_PATH && g.report.path !== EXPECTED_GPU_PATH) {
        throw new Error(`this test run expects the GPU through Dawn's ${EXPECTED_GPU_PATH} backend, but the adapter (${g.report.description}) came through ${g.report.path}${g.report.fallback ? ` (fallback: ${g.report.fallback})` : ''}`);
      }
      return g;
    }, (err) => {
      gpuError = (err as Error).message;
      return undefined;
    });
    gpus.set(key, p);
  }
  return p;
}

/**
 * Set by the ts-kernels project (vitest.config.ts), which repeats the golden and parity files with
 * the CPU's TypeScript kernel set: its GPU cases are the opengles and vulkan projects', skipped here.
 */
export const CPU_ONLY = process.env.SPIKELM_CPU_ONLY === '1';

/** The GPU backend, or: fail (in CI) / skip with instructions (locally) when there is none. */
export async function requireGpu(ctx: TestContext, options: GpuBackendOptions = {}): Promise<GpuBackend> {
  if (CPU_ONLY) {
    ctx.skip('GPU cases run in the opengles and vulkan projects');
    throw new Error('unreachable');
  }
  const gpu = await tryGpu(options);
  if (gpu) {
    // counted per Dawn path by test/helpers/gpu-reporter.ts
    (ctx.task.meta as { gpuPath?: string; gpuAdapter?: string }).gpuPath = gpu.report.path;
    (ctx.task.meta as { gpuPath?: string; gpuAdapter?: string }).gpuAdapter = gpu.report.description;
    return gpu;
  }
  if (GPU_REQUIRED) throw new Error(`GPU tests must run here (CI=true) but no adapter was found: ${gpuError ?? GPU_INSTALL_HINT}`);
  if (!warned) {
    console.warn(`GPU tests skipped: ${gpuError ?? GPU_INSTALL_HINT}. Set CI=true to make this a failure.`);
    warned = true;
  }
  ctx.skip();
  throw new Error('unreachable');
}

export type BackendName = 'cpu' | 'gpu';
export const BACKEND_NAMES: readonly BackendName[] = ['cpu', 'gpu'];

const cpu = new CpuBackend();

/**
 * Set by the vulkan project (vitest.config.ts), which repeats the files with GPU tests on the second
 * Dawn path: there the CPU case of a `describe.each(BACKEND_NAMES)` pair is the opengles project's,
 * and is skipped saying so (it ran there, on the same code).
 */
export const GPU_ONLY = process.env.SPIKELM_GPU_ONLY === '1';

/** For `describe.each(BACKEND_NAMES)`: the named backend inside a test. */
export async function backendFor(name: BackendName, ctx: TestContext): Promise<Backend> {
  if (name === 'cpu' && GPU_ONLY) {
    ctx.skip('the CPU case runs in the opengles project');
    throw new Error('unreachable');
  }
  return name === 'cpu' ? cpu : requireGpu(ctx);
}
