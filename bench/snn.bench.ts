/**
 * Spiking model speed against the ANN's forward on the same tokens, on the CPU and the GPU: the
 * stepwise schedule across T (multi-step: each layer for all T steps at once; single-step), and the
 * default layerwise conversion (fast: dense products of the digit sums; event: a weight row per
 * spike, the reference a neuromorphic chip would run).
 */
import { convertModelToSpiking, createCalibrationData } from '../src/convert/api.js';
import { loadModel } from '../src/nn/model.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';
import type { Execution, SpikingLM } from '../src/snn/model.js';
import type { Backend } from '../src/tensor/backend.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { benchGpu } from './gpu.js';
import { type BenchRow, type Suite, timeIt } from './harness.js';
import { modelDir } from './model.bench.js';

export const SNN_TIMESTEPS = [1, 4, 16, 64];
export const LAYERWISE_TIMESTEPS = [6, 9, 12];

export const snnSuite: Suite = {
  name: 'snn',
  description: 'SNN forward (64 tokens, stories260k) vs the ANN: stepwise (multi-, single-step) across T, layerwise (fast, event-driven), CPU and GPU',
  async run(ctx) {
    const rows: BenchRow[] = [];
    const dir = modelDir('stories260k');
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
      const data = createCalibrationData(tok, { numSamples: 4 });
      const stepwise = (await convertModelToSpiking(ann, data, { timesteps: Math.max(...SNN_TIMESTEPS), schedule: 'stepwise', coding: 'rate', backend })).snn;
      const layerwise = (await convertModelToSpiking(ann, data, { backend })).snn;
      const cases: [SpikingLM, number, Execution][] = [
        ...(ctx.quick ? [1, 16] : SNN_TIMESTEPS).flatMap((T) => (['multi', 'single'] as const).filter((e) => !(e === 'single' && T > 16 && ctx.quick)).map((e) => [stepwise, T, e] as [SpikingLM, number, Execution])),
        ...(ctx.quick ? [9] : LAYERWISE_TIMESTEPS).flatMap((T) => (['fast', 'event'] as const).map((e) => [layerwise, T, e] as [SpikingLM, number, Execution])),
      ];
      for (const [base, T, execution] of cases) {
        const model = base.withTimesteps(T);
        const r = await timeIt(`${backend.name} ${base.schedule} T=${T} ${execution}`, async () => {
          const out = model.forward(ids, model.newCache(), { execution });
          await sync(out.logits);
          for (const t of [out.stats, ...(out.spikes ? [out.spikes] : [])]) backend.dispose(t);
        }, ctx, { iterations: 1 });
        model.dispose();
        const ratio = r.meanMs / annTime.meanMs;
        rows.push({ suite: 'snn', name: `${backend.name} ${base.schedule} ${base.coding} T=${T} ${execution}`, ...r, metrics: { 'SNN / ANN': ratio, 'SNN / (T·ANN)': ratio / T } });
        ctx.log(`${backend.name} ${base.schedule} T=${T} ${execution}: ${r.meanMs.toFixed(1)} ms = ${ratio.toFixed(2)} × ANN (${(ratio / T).toFixed(2)}·T)`);
      }
      stepwise.dispose();
      layerwise.dispose();
    }
    return rows;
  },
};
