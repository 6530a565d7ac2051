/**
 * A vitest reporter that prints, at the end of a run, how many GPU tests passed on each Dawn path
 * (OpenGL ES on llvmpipe, Vulkan on lavapipe), from the path each test's requireGpu recorded in its
 * meta: the count CI's log shows for each backend.
 */
import type { Reporter, TestModule } from 'vitest/node';

export default class GpuReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const counts = new Map<string, { passed: number; failed: number; adapter: string }>();
    for (const m of modules) {
      for (const t of m.children.allTests()) {
        const meta = t.meta() as { gpuPath?: string; gpuAdapter?: string };
        if (!meta.gpuPath) continue;
        const key = `${meta.gpuPath} (project ${t.project.name || 'default'})`;
        const c = counts.get(key) ?? { passed: 0, failed: 0, adapter: meta.gpuAdapter ?? '' };
        if (t.result().state === 'passed') c.passed++;
        else if (t.result().state === 'failed') c.failed++;
        counts.set(key, c);
      }
    }
    const lines = [...counts].map(([k, c]) => `  ${k}: ${c.passed} passed${c.failed ? `, ${c.failed} failed` : ''} on ${c.adapter}`);
    process.stdout.write(`\nGPU tests by Dawn backend:\n${lines.length ? lines.join('\n') : '  none ran on a GPU'}\n`);
  }
}
