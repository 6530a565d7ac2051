/**
 * Spiking model speed: forward time across T against the ANN's forward on the same tokens, for
 * multi-step (each layer for all T steps at once) and single-step (the network one step at a time)
 * execution, on the CPU and the GPU. The figure of merit is SNN time / (T × ANN time).
 */
import path from 'node:path';
import { convertModelToSpiking, createCalibrationData } from '../src/convert/api.js';
import { loadModel } from '../src/nn/model.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';
import type { Backend } from '../src/tensor/backend.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { benchGpu } from './gpu.js';
import { type BenchRow, type Suite, timeIt } from './harness.js';
import { FIXTURES } from './model.bench.js';

export const SNN_TIMESTEPS = [1, 4, 16, 64];

export const snnSuite: Suite = {
  name: 'snn',
  description: 'SNN forward (64 tokens, stories260k) across T vs the ANN: multi-step and single-step, CPU and GPU',
  async run(ctx) {
    const rows: BenchRow[] = [];
    const dir = path.join(FIXTURES, 'stories260k');
    const tok = loadTokenizer(dir);
    const gpu = await benchGpu(ctx);
    const backends: Backend[] = gpu ? [new CpuBackend(), gpu] : [new CpuBackend()];
    for (const backend of backends) {
      const ann = loadModel(dir, { backend });
      const ids = Array.from({ length: 64 }, (_, i) => (i * 37 + 11) % ann.config.vocabSize);
      const sync = async (t: unknown) => {
        await backend.read(t as never);
        backend.dispose(t as never);
      };
      const annTime = await timeIt(`${backend.name} ann`, () => sync(ann.forward(ids)), ctx);
      rows.push({ suite: 'snn', name: `${backend.name} ANN forward 64 tokens`, ...annTime, metrics: { 'tokens/s': 64 / (annTime.meanMs / 1000) } });
      const { snn } = convertModelToSpiking(ann, createCalibrationData(tok, { numSamples: 4 }), { timesteps: Math.max(...SNN_TIMESTEPS), backend });
      for (const T of ctx.quick ? [1, 16] : SNN_TIMESTEPS) {
        const model = snn.withTimesteps(T);
        for (const execution of ['multi', 'single'] as const) {
          if (execution === 'single' && T > 16 && ctx.quick) continue;
          const r = await timeIt(`${backend.name} snn T=${T} ${execution}`, async () => {
            const out = model.forward(ids, model.newCache(), { execution });
            await sync(out.logits);
            backend.dispose(out.spikes);
          }, ctx, { iterations: 1 });
          const ratio = r.meanMs / (T * annTime.meanMs);
          rows.push({ suite: 'snn', name: `${backend.name} SNN T=${T} ${execution}-step`, ...r, metrics: { 'ms/step': r.meanMs / T, 'SNN / (T·ANN)': ratio } });
          ctx.log(`${backend.name} T=${T} ${execution}-step: ${r.meanMs.toFixed(1)} ms = ${ratio.toFixed(2)}·T·ANN`);
        }
      }
    }
    return rows;
  },
};
