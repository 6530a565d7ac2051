/**
 * Decode speed through the conversation processor: tokens/s generating after a prompt, with the KV
 * cache (each step feeds one token) and without (each step recomputes the whole sequence), for the
 * ANN and the spiking model (T = 16), on the CPU and the GPU.
 */
import path from 'node:path';
import { convertModelToSpiking, createCalibrationData } from '../src/convert/api.js';
import { TemporalSpikeProcessor } from '../src/conversation/processor.js';
import { type CausalLM, loadModel } from '../src/nn/model.js';
import type { SpikingLM } from '../src/snn/model.js';
import { argmax } from '../src/nn/sampling.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';
import type { Backend } from '../src/tensor/backend.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { benchGpu } from './gpu.js';
import { type BenchRow, type Suite, timeIt } from './harness.js';
import { FIXTURES } from './model.bench.js';

export const decodeSuite: Suite = {
  name: 'decode',
  description: 'decode tokens/s after a 32-token prompt through the processor: ANN, stepwise SNN (T=16), default layerwise SNN (fast and event-driven); with and without the KV cache',
  async run(ctx) {
    const rows: BenchRow[] = [];
    const dir = path.join(FIXTURES, 'stories260k');
    const tok = loadTokenizer(dir);
    const gpu = await benchGpu(ctx);
    const newTokens = ctx.quick ? 8 : 16;
    for (const backend of (gpu ? [new CpuBackend(), gpu] : [new CpuBackend()]) as Backend[]) {
      const ann = loadModel(dir, { backend });
      const data = createCalibrationData(tok, { numSamples: 4 });
      const stepwise = (await convertModelToSpiking(ann, data, { timesteps: 16, schedule: 'stepwise', coding: 'rate', backend })).snn;
      const layerwise = (await convertModelToSpiking(ann, data, { backend })).snn;
      const prompt = Array.from({ length: 32 }, (_, i) => (i * 37 + 11) % ann.config.vocabSize);
      let annTps = NaN;
      const models: [string, CausalLM | SpikingLM][] = [
        ['ANN', ann], ['stepwise rate T=16', stepwise],
        [`layerwise ${layerwise.coding} T=${layerwise.timesteps} fast`, layerwise], [`layerwise ${layerwise.coding} T=${layerwise.timesteps} event`, layerwise.with({ execution: 'event' })],
      ];
      for (const [kind, model] of models) {
        for (const useCache of [true, false]) {
          if (!useCache && kind !== 'ANN' && ctx.quick) continue;
          const r = await timeIt(`${backend.name} ${kind} ${useCache}`, async () => {
            const p = new TemporalSpikeProcessor(model);
            const seq = [...prompt];
            let out = await p.forward(seq, { useCache });
            for (let i = 0; i < newTokens; i++) {
              seq.push(argmax(out.lastLogits[0]!));
              out = await p.forward(seq, { useCache });
            }
            p.resetCache();
          }, ctx, { iterations: 1 });
          const tps = newTokens / (r.meanMs / 1000);
          if (kind === 'ANN' && useCache) annTps = tps;
          rows.push({ suite: 'decode', name: `${backend.name} ${kind} ${useCache ? 'with cache' : 'no cache'}`, ...r, metrics: { 'tokens/s': tps, 'vs ANN': tps / annTps } });
          ctx.log(`${backend.name} ${kind} ${useCache ? 'with cache' : 'no cache'}: ${tps.toFixed(1)} tokens/s (${(tps / annTps).toFixed(2)} × the ANN with cache; prompt included in the time)`);
        }
      }
    }
    return rows;
  },
};
