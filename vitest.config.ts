import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Model-sized tests allocate hundreds of MB; forks keep each file's memory separate.
    pool: 'forks',
    // the default output, then how many GPU tests ran on each Dawn backend (test/helpers/gpu-reporter.ts)
    reporters: ['default', './test/helpers/gpu-reporter.ts'],
  },
});
