/**
 * One backend of the loop suite (bench/loop.bench.ts), in its own process (one Dawn device each):
 *
 *   node --import tsx bench/loop-child.ts cpu|opengles|vulkan MODEL_DIR '{"rounds":3,"tokens":6,"prefill":128}'
 *
 * prints one JSON line (LoopReport). SPIKELM_GPU is set by the parent for the GPU backends.
 */
import { generate, type DecodeLoop } from '../src/nn/generate.js';
import { loadModel } from '../src/nn/model.js';
import type { Backend } from '../src/tensor/backend.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { GpuBackend } from '../src/tensor/gpu/gpu-backend.js';
import { GREEDY, sampleTokenCpu } from '../src/tensor/kernels/sampling.js';
import { median } from './decode.bench.js';
import type { LoopReport } from './loop.bench.js';

const [backendName, dir, planJson] = process.argv.slice(2);
const plan = JSON.parse(planJson ?? '{}') as { rounds: number; tokens: number; prefill: number };

async function main(): Promise<LoopReport> {
  let backend: Backend, adapter = 'CPU (TypeScript kernels)';
  if (backendName === 'cpu') backend = new CpuBackend();
  else {
    try {
      const gpu = await GpuBackend.create();
      if (gpu.report.path !== backendName) return { backend: backendName!, adapter: gpu.report.description, error: `asked for ${backendName}, the adapter came through ${gpu.report.path}` };
      backend = gpu;
      adapter = gpu.report.description;
      const note = gpu.deviceSamplingNote();
      if (note) return { backend: backendName!, adapter, error: note };
    } catch (err) {
      return { backend: backendName!, adapter: '', error: (err as Error).message };
    }
  }
  const model = loadModel(dir!, { backend });
  const V = model.config.vocabSize;
  const prompt = (n: number) => Array.from({ length: n }, (_, i) => (i * 37 + 11) % V);
  const counters = () => (backend instanceof GpuBackend ? { ...backend.rt.counters } : undefined);
  const loops = { host: { prefillTokS: [] as number[], decodeTokS: [] as number[], submitsPerToken: 0, bytesReadPerToken: 0 }, device: { prefillTokS: [] as number[], decodeTokS: [] as number[], submitsPerToken: 0, bytesReadPerToken: 0 } };
  const ratios = { prefill: [] as number[], decode: [] as number[] };
  await generate(model, prompt(8), { maxNewTokens: 2, stopTokenIds: [] }); // warm-up: pipelines, JIT
  for (let r = 0; r < plan.rounds; r++) {
    const round: Record<DecodeLoop, { prefill: number; decode: number }> = { host: { prefill: 0, decode: 0 }, device: { prefill: 0, decode: 0 } };
    for (const loop of ['host', 'device'] as const) {
      // prefill: the prompt's forward and the first token chosen
      const t0 = performance.now();
      await generate(model, prompt(plan.prefill), { maxNewTokens: 1, stopTokenIds: [], loop });
      round[loop].prefill = plan.prefill / ((performance.now() - t0) / 1000);
      // decode: the tokens after the first (the prompt's forward untimed)
      let first = 0, last = 0;
      const snaps: NonNullable<ReturnType<typeof counters>>[] = [];
      await generate(model, prompt(32), {
        maxNewTokens: plan.tokens + 1, stopTokenIds: [], loop, onToken: () => {
          if (first === 0) first = performance.now();
          last = performance.now();
          const c = counters();
          if (c) snaps.push(c);
        },
      });
      round[loop].decode = plan.tokens / ((last - first) / 1000);
      // what a token's interval between two callbacks holds, from the second interval on and without
      // the last (the pipelined loop submits each step one token early, so its last interval has none)
      const per = (k: 'submits' | 'bytesRead') => median(snaps.slice(1).map((s, i) => s[k] - snaps[i]![k]).slice(1, -1));
      if (snaps.length > 3) {
        loops[loop].submitsPerToken = per('submits');
        loops[loop].bytesReadPerToken = per('bytesRead');
      }
    }
    for (const loop of ['host', 'device'] as const) {
      loops[loop].prefillTokS.push(round[loop].prefill);
      loops[loop].decodeTokS.push(round[loop].decode);
    }
    ratios.prefill.push(round.device.prefill / round.host.prefill);
    ratios.decode.push(round.device.decode / round.host.decode);
  }
  // on a GPU: its greedy tokens against the CPU's, up to the first CPU logit margin (top two) < 1e-3
  let agreement: LoopReport['agreement'];
  if (backend instanceof GpuBackend) {
    const n = plan.tokens + 2;
    const got = (await generate(model, prompt(32), { maxNewTokens: n, stopTokenIds: [] })).ids;
    const cpu = new CpuBackend(), ref = loadModel(dir!, { backend: cpu }), cache = ref.newCache();
    let input = prompt(32), agree = 0, nearTie: number | null = null;
    for (let i = 0; i < n; i++) {
      const logits = cpu.readSync(ref.forward(input, cache)).data;
      const id = sampleTokenCpu(logits, GREEDY, undefined, 0);
      let second = -Infinity;
      for (let j = 0; j < logits.length; j++) if (j !== id && logits[j]! > second) second = logits[j]!;
      if (logits[id]! - second < 1e-3) {
        nearTie = i;
        break;
      }
      if (got[i] !== id) break;
      agree++;
      input = [id];
    }
    agreement = { compared: n, agree, firstNearTie: nearTie };
  }
  return { backend: backendName!, adapter, loops, ratios, ...(agreement ? { agreement } : {}) };
}

process.stdout.write(`${JSON.stringify(await main())}\n`);
process.exit(0);
