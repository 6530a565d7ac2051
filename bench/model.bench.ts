/**
 * Whole-model speed on the bundled fixtures: prefill of 128 tokens (one forward pass) and
 * incremental decode tokens/s with the KV cache.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backend } from '../src/tensor/backend.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { BUNDLED_MODEL } from '../src/bundled.js';
import { loadModel } from '../src/nn/model.js';
import { benchGpu } from './gpu.js';
import { type BenchRow, type BenchContext, type Suite, timeIt } from './harness.js';

export const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'test', 'fixtures');
export const MODEL_FIXTURES = ['stories260k', 'gpt2-random-f16', 'tiny-gpt2-random'] as const;
/** A fixture's model directory (stories260k is the bundled model in models/). */
export const modelDir = (name: (typeof MODEL_FIXTURES)[number]): string => (name === 'stories260k' ? BUNDLED_MODEL : path.join(FIXTURES, name));

export async function benchModel(name: (typeof MODEL_FIXTURES)[number], backend: Backend, ctx: BenchContext, prefillTokens = 128, decodeTokens = 32): Promise<BenchRow[]> {
  const model = loadModel(modelDir(name), { backend });
  const ids = Array.from({ length: prefillTokens }, (_, i) => (i * 37 + 11) % model.config.vocabSize);
  const prefill = await timeIt(`${name} prefill`, async () => {
    const t = model.forward(ids);
    await backend.read(t);
    backend.dispose(t);
  }, ctx);
  const decode = await timeIt(`${name} decode`, async () => {
    const cache = model.newCache(prefillTokens + decodeTokens);
    backend.dispose(model.forward(ids.slice(0, 8), cache));
    for (let i = 0; i < decodeTokens; i++) {
      const t = model.forward([ids[8 + i]!], cache);
      await backend.read(t);
      backend.dispose(t);
    }
    cache.dispose();
  }, ctx, { iterations: 2 });
  const decodeOnlyMs = decode.meanMs; // includes one 8-token prefill, negligible next to 32 steps
  return [
    { suite: 'model', name: `${backend.name} ${name} prefill ${prefillTokens}`, ...prefill, metrics: { 'tokens/s': prefillTokens / (prefill.meanMs / 1000) } },
    { suite: 'model', name: `${backend.name} ${name} decode ${decodeTokens}`, ...decode, metrics: { 'tokens/s': decodeTokens / (decodeOnlyMs / 1000) } },
  ];
}

export const modelSuite: Suite = {
  name: 'model',
  description: 'ANN prefill (128 tokens) and cached decode tokens/s on the fixtures, CPU vs GPU',
  async run(ctx) {
    const rows: BenchRow[] = [];
    const gpu = await benchGpu(ctx);
    for (const name of MODEL_FIXTURES) {
      for (const backend of gpu ? [new CpuBackend(), gpu] : [new CpuBackend()]) {
        const r = await benchModel(name, backend, ctx);
        for (const row of r) ctx.log(`${row.name}: ${Number(row.metrics['tokens/s']).toFixed(1)} tokens/s`);
        rows.push(...r);
      }
    }
    return rows;
  },
};
