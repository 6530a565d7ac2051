/**
 * Decode speed through the conversation processor: tokens/s generating after a 32-token prompt,
 * with the KV cache (each step feeds one token), for the ANN and its spiking conversions, on the
 * CPU and the GPU, for stories260k and a random GPT-2-small-shaped model (768 wide, 12 layers; its
 * outputs mean nothing, only its time does).
 *
 * Only the generated tokens are timed (the prompt is processed before the clock starts). Models are
 * timed in interleaved rounds (ANN, then each spiking model, then again), and each spiking model's
 * ratio to the ANN is taken within a round, then the median over rounds: a machine that slows down
 * for a while slows both sides of a ratio. The rounds' median tokens/s are reported beside it.
 *
 * Configurations: the default conversion; layerwise phase coding at T=10 (fast and event-driven
 * executions, the issue's reference point); stepwise rate T=16 (stories260k only: at GPT-2 size it
 * runs T full passes per token and is not a decoding configuration).
 */
import path from 'node:path';
import { convertModelToSpiking, createCalibrationData } from '../src/convert/api.js';
import { TemporalSpikeProcessor } from '../src/conversation/processor.js';
import { GPT2_SMALL, cachedRandomGpt2 } from '../src/bench/random-model.js';
import { type CausalLM, loadModel } from '../src/nn/model.js';
import type { SpikingLM } from '../src/snn/model.js';
import { argmax } from '../src/nn/sampling.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';
import type { Backend } from '../src/tensor/backend.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { benchGpu } from './gpu.js';
import type { BenchRow, Suite } from './harness.js';
import { FIXTURES, modelDir } from './model.bench.js';

export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** Seconds to generate `n` tokens greedily after `prompt` (the prompt's forward pass untimed). */
export async function decodeSeconds(model: CausalLM | SpikingLM, prompt: readonly number[], n: number): Promise<number> {
  const p = new TemporalSpikeProcessor(model);
  const seq = [...prompt];
  let out = await p.forward(seq);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    seq.push(argmax(out.lastLogits[0]!));
    out = await p.forward(seq);
  }
  const s = (performance.now() - t0) / 1000;
  p.resetCache();
  return s;
}

export const decodeSuite: Suite = {
  name: 'decode',
  description: 'decode tokens/s after a 32-token prompt (prompt untimed, KV cache), ANN and spiking conversions, median of interleaved rounds; stories260k and a random GPT-2-small-shaped model',
  async run(ctx) {
    const rows: BenchRow[] = [];
    const gpu = await benchGpu(ctx);
    const subjects = [
      { label: 'stories260k', dir: modelDir('stories260k'), tokens: ctx.quick ? 16 : 48, rounds: ctx.quick ? 3 : 9, stepwise: true },
      {
        label: 'random GPT-2-small (768×12)',
        dir: cachedRandomGpt2(GPT2_SMALL, { tokenizerFrom: path.join(FIXTURES, 'gpt2-random-f16') }),
        tokens: ctx.quick ? 2 : 6, rounds: ctx.quick ? 1 : 3, stepwise: false,
      },
    ];
    // SPIKELM_BENCH_BACKENDS=cpu|gpu and SPIKELM_BENCH_MODELS=stories260k|gpt2 narrow the run
    const backends = process.env.SPIKELM_BENCH_BACKENDS?.split(',').map((b) => b.trim());
    const models = process.env.SPIKELM_BENCH_MODELS?.split(',').map((m) => m.trim());
    for (const backend of ((gpu ? [new CpuBackend(), gpu] : [new CpuBackend()]) as Backend[]).filter((b) => !backends || backends.includes(b.name))) {
      for (const subject of subjects.filter((x) => !models || models.some((m) => x.label.toLowerCase().includes(m.toLowerCase())))) {
        const ann = loadModel(subject.dir, { backend });
        const data = createCalibrationData(loadTokenizer(subject.dir), { numSamples: 4 });
        const dflt = (await convertModelToSpiking(ann, data, { backend })).snn;
        const phase10 = (await convertModelToSpiking(ann, data, { backend, schedule: 'layerwise', coding: 'phase', timesteps: 10 })).snn;
        const models: [string, CausalLM | SpikingLM][] = [
          ['ANN', ann],
          [`default (layerwise ${dflt.coding} T=${dflt.timesteps}) fast`, dflt],
          [`default (layerwise ${dflt.coding} T=${dflt.timesteps}) event`, dflt.with({ execution: 'event' })],
          ['layerwise phase T=10 fast', phase10],
          ['layerwise phase T=10 event', phase10.with({ execution: 'event' })],
        ];
        if (subject.stepwise) models.push(['stepwise rate T=16', (await convertModelToSpiking(ann, data, { backend, timesteps: 16, schedule: 'stepwise', coding: 'rate' })).snn]);
        const prompt = Array.from({ length: 32 }, (_, i) => (i * 37 + 11) % ann.config.vocabSize);
        // event-driven executions are slow on the CPU: they run fewer tokens (time per token is what counts)
        const tokensOf = (name: string) => (name.endsWith('event') || name.startsWith('stepwise') ? Math.max(1, Math.ceil(subject.tokens / 4)) : subject.tokens);
        await decodeSeconds(ann, prompt, 1); // warm-up (JIT, pipelines)
        const tps = new Map<string, number[]>(), ratios = new Map<string, number[]>();
        for (let r = 0; r < subject.rounds; r++) {
          let annTps = NaN;
          for (const [name, model] of models) {
            const n = tokensOf(name);
            const t = n / (await decodeSeconds(model, prompt, n));
            if (name === 'ANN') annTps = t;
            tps.set(name, [...(tps.get(name) ?? []), t]);
            ratios.set(name, [...(ratios.get(name) ?? []), t / annTps]);
          }
        }
        for (const [name] of models) {
          const t = median(tps.get(name)!), ratio = median(ratios.get(name)!);
          rows.push({
            suite: 'decode', name: `${backend.name} ${subject.label} ${name}`, meanMs: 1000 / t, samples: subject.rounds,
            metrics: { 'tokens/s': t, 'vs ANN': ratio, rounds: subject.rounds, 'tokens per round': tokensOf(name) },
          });
          ctx.log(`${backend.name} ${subject.label} ${name}: ${t.toFixed(2)} tokens/s, ${ratio.toFixed(2)} × the ANN (median of ${subject.rounds} interleaved rounds)`);
        }
        for (const [, m] of models) if (m !== ann) (m as SpikingLM).dispose();
      }
    }
    return rows;
  },
};
