import fs from 'node:fs';
import { defineConfig } from 'vitest/config';

/**
 * Two projects, both run by `npm test`:
 *   opengles  every test; GPU tests on Dawn's OpenGL ES backend (Mesa llvmpipe)
 *   vulkan    the files with GPU tests again, on Dawn's Vulkan backend (Mesa lavapipe ≥ 25, the path
 *             NVIDIA, AMD and Intel GPUs take on Linux); the CPU case of each CPU/GPU pair is skipped
 *             there (SPIKELM_GPU_ONLY: it ran in the opengles project)
 * Each sets SPIKELM_GPU to its path and SPIKELM_EXPECT_GPU so that a GPU test whose adapter came
 * through another path fails (test/helpers/backends.ts), and the reporter counts GPU tests per path.
 * The vulkan project runs where CI=true (where a missing Vulkan driver is a failure) or where a
 * Vulkan driver manifest is found; SPIKELM_VULKAN_TESTS=0 or 1 overrides.
 * A third project, ts-kernels, runs the golden and kernel-parity files again with the CPU backend's
 * TypeScript kernel set (SPIKELM_CPU_KERNELS=ts; the other two run the default, wasm SIMD), CPU cases
 * only (SPIKELM_CPU_ONLY); SPIKELM_TS_KERNEL_TESTS=0 leaves it out.
 */
export const TS_KERNEL_FILES = ['golden', 'families', 'snn-model', 'models', 'kernels', 'spike-matmul', 'layerwise-kernels', 'spiking-ops', 'fused-ops', 'codes', 'conversation', 'two-stage-head'].map((f) => `test/${f}.test.ts`);
export const GPU_TEST_FILES = fs.readdirSync('test').filter((f) => f.endsWith('.test.ts') && /\b(requireGpu|backendFor)\(/.test(fs.readFileSync(`test/${f}`, 'utf8'))).map((f) => `test/${f}`);

function vulkanDriverPresent(): boolean {
  if (process.env.VK_ICD_FILENAMES || process.env.VK_DRIVER_FILES) return true;
  return ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d'].some((d) => fs.existsSync(d) && fs.readdirSync(d).some((f) => f.endsWith('.json')));
}

const vulkan = process.env.SPIKELM_VULKAN_TESTS !== undefined ? process.env.SPIKELM_VULKAN_TESTS === '1' : process.env.CI === 'true' || vulkanDriverPresent();
const gpuEnv = (path: 'opengles' | 'vulkan') => ({ SPIKELM_GPU: path, SPIKELM_EXPECT_GPU: path, ...(path === 'vulkan' ? { SPIKELM_GPU_ONLY: '1' } : {}) });

// what both projects share (spread into each: `extends: true` would merge the include lists)
const shared = {
  testTimeout: 120_000,
  hookTimeout: 120_000,
  // Model-sized tests allocate hundreds of MB; forks keep each file's memory separate.
  pool: 'forks',
} as const;

export default defineConfig({
  test: {
    // two test files at a time (vitest's default on 2 cores is one): most files are single-threaded
    // JavaScript or wait on the GPU, and CI's time bound needs both cores busy
    maxWorkers: Number(process.env.SPIKELM_TEST_WORKERS ?? 2),
    // the default output, then how many GPU tests ran on each Dawn backend (test/helpers/gpu-reporter.ts)
    reporters: ['default', './test/helpers/gpu-reporter.ts'],
    projects: [
      { test: { ...shared, name: 'opengles', include: ['test/**/*.test.ts'], env: gpuEnv('opengles') } },
      ...(vulkan ? [{ test: { ...shared, name: 'vulkan', include: GPU_TEST_FILES, env: gpuEnv('vulkan') } }] : []),
      ...(process.env.SPIKELM_TS_KERNEL_TESTS !== '0' ? [{ test: { ...shared, name: 'ts-kernels', include: TS_KERNEL_FILES, env: { SPIKELM_CPU_KERNELS: 'ts', SPIKELM_CPU_ONLY: '1' } } }] : []),
    ],
  },
});
