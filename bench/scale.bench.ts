/**
 * The whole pipeline at GPT-2-small scale, on a random GPT-2-small-shaped model the suite generates
 * itself (124M parameters, F32, never committed; src/bench/random-model.ts):
 *
 *   memory    load time and process RSS against the file size (F32 and F16), each in a fresh process
 *   bandwidth what this machine can stream: a native read (Buffer.indexOf over 256 MiB, no match) on
 *             1 thread and on every thread at once, and the CPU matrix–vector kernel on decode's
 *             shapes (bytes of weights per second) — with decode's weight bytes per token, the
 *             roofline a decode at that bandwidth would reach
 *   ANN       prefill 128 tokens, decode tokens/s after a 32-token prompt (median of rounds), CPU and GPU
 *   SNN       conversion time (default configuration, default calibration, as `spikelm convert` does)
 *             and, for each layerwise code at its default T and the stepwise schedule, prefill and
 *             decode tokens/s (the event execution and the stepwise schedule decode fewer tokens:
 *             time per token is what counts)
 *
 * Outputs of a random model mean nothing; only time and memory do. SPIKELM_BENCH_BACKENDS=gpu (or
 * cpu) limits the suite to one backend (bench/device-check.sh runs the GPU half on a device).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { convertModelToSpiking, createCalibrationData, DEFAULT_CONVERSION } from '../src/convert/api.js';
import { GPT2_SMALL, cachedRandomGpt2, gpt2Parameters } from '../src/bench/random-model.js';
import { type CausalLM, loadModel } from '../src/nn/model.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';
import { CODINGS, type CodingName } from '../src/snn/codes.js';
import type { SpikingLM } from '../src/snn/model.js';
import type { Backend } from '../src/tensor/backend.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { matmulCpu } from '../src/tensor/kernels/matmul.js';
import { allocF32 } from '../src/tensor/tensor.js';
import { threadCount } from '../src/tensor/threads.js';
import { decodeSeconds, median } from './decode.bench.js';
import { benchGpu } from './gpu.js';
import type { BenchRow, BenchContext, Suite } from './harness.js';
import { FIXTURES } from './model.bench.js';

const MiB = 2 ** 20;

/** GB/s of a native streaming read (memchr over a buffer with no match) on `threads` threads at once. */
async function streamingRead(threads: number, bytesPerThread = 256 * MiB, reps = 5): Promise<number> {
  const src = `
    const { parentPort, workerData } = require('node:worker_threads');
    const buf = Buffer.alloc(workerData.bytes, 2);
    buf.indexOf(1);
    parentPort.postMessage('ready');
    parentPort.on('message', () => {
      const t0 = performance.now();
      for (let i = 0; i < workerData.reps; i++) if (buf.indexOf(1) !== -1) throw new Error('found');
      parentPort.postMessage((performance.now() - t0) / 1000);
    });`;
  const workers = Array.from({ length: threads }, () => new Worker(src, { eval: true, workerData: { bytes: bytesPerThread, reps } }));
  try {
    await Promise.all(workers.map((w) => new Promise((r) => w.once('message', r))));
    const seconds = await Promise.all(workers.map((w) => new Promise<number>((r) => {
      w.once('message', r);
      w.postMessage('go');
    })));
    return (threads * bytesPerThread * reps) / Math.max(...seconds) / 1e9;
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/** GB/s of weights through the CPU matrix–vector dispatcher (all threads) at one product shape. */
function matvecBandwidth(K: number, N: number, ms: number): number {
  const w = allocF32(K * N), x = allocF32(K), y = allocF32(N);
  for (let i = 0; i < w.length; i += 97) w[i] = Math.sin(i);
  for (let i = 0; i < K; i++) x[i] = Math.cos(i);
  for (let i = 0; i < 3; i++) matmulCpu(x, w, undefined, y, 1, K, N);
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    matmulCpu(x, w, undefined, y, 1, K, N);
    n++;
  }
  return (K * N * 4 * n) / ((performance.now() - t0) / 1000) / 1e9;
}

/** Load a model in a fresh process: seconds and RSS after loading (and before), bytes. */
function loadInFreshProcess(dir: string): { seconds: number; rss: number; rssBefore: number } {
  const script = `
    import { loadModel } from ${JSON.stringify(path.resolve('src/nn/model.ts'))};
    const before = process.memoryUsage().rss;
    const t0 = performance.now();
    const m = loadModel(${JSON.stringify(dir)});
    const seconds = (performance.now() - t0) / 1000;
    globalThis.gc?.();
    console.log(JSON.stringify({ seconds, rss: process.memoryUsage().rss, rssBefore: before, layers: m.config.numLayers }));`;
  const file = path.join(fs.mkdtempSync(path.join(fs.realpathSync('/tmp'), 'spikelm-scale-')), 'load.mts');
  fs.writeFileSync(file, script);
  try {
    const out = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', file], { encoding: 'utf8', env: { ...process.env, SPIKELM_THREADS: '1' } });
    return JSON.parse(out.trim().split('\n').at(-1)!);
  } finally {
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  }
}

const fileBytes = (dir: string) => fs.statSync(path.join(dir, 'model.safetensors')).size;

async function prefillSeconds(model: CausalLM | SpikingLM, n: number): Promise<number> {
  const ids = Array.from({ length: n }, (_, i) => (i * 37 + 11) % model.config.vocabSize);
  const t0 = performance.now();
  const logits = 'timesteps' in model ? model.forward(Int32Array.from(ids), model.newCache()).logits : model.forward(ids);
  await model.backend.read(logits);
  model.backend.dispose(logits);
  return (performance.now() - t0) / 1000;
}

export const scaleSuite: Suite = {
  name: 'scale',
  description: 'GPT-2-small-shaped random model (124M, generated): load time and RSS, streaming-read and matrix–vector bandwidth, ANN and SNN prefill 128 / decode tokens/s on CPU and GPU, conversion time',
  async run(ctx: BenchContext) {
    const rows: BenchRow[] = [];
    const row = (name: string, meanMs: number, metrics: BenchRow['metrics']) => {
      rows.push({ suite: 'scale', name, meanMs, samples: 1, metrics });
      ctx.log(`${name}: ${Object.entries(metrics).map(([k, v]) => `${k} ${typeof v === 'number' ? +v.toPrecision(4) : v}`).join(', ')}`);
    };
    const only = process.env.SPIKELM_BENCH_BACKENDS?.split(',').map((b) => b.trim());
    const wants = (b: string) => !only || only.includes(b);
    const tokenizerFrom = path.join(FIXTURES, 'gpt2-random-f16');
    const dir = cachedRandomGpt2(GPT2_SMALL, { tokenizerFrom });
    const params = gpt2Parameters(GPT2_SMALL);

    // memory: each load in a fresh process
    for (const dtype of wants('cpu') ? (['F32', 'F16'] as const) : []) {
      const d = dtype === 'F32' ? dir : cachedRandomGpt2(GPT2_SMALL, { tokenizerFrom, dtype });
      const r = loadInFreshProcess(d);
      row(`cpu load ${dtype}`, r.seconds * 1000, { 'file MiB': fileBytes(d) / MiB, 'RSS MiB': r.rss / MiB, 'RSS / file': r.rss / fileBytes(d), 'RSS before load MiB': r.rssBefore / MiB, 'load s': r.seconds, target: dtype === 'F32' ? 'RSS ≤ 1.25× file' : 'stated' });
    }

    // bandwidth: what the machine streams, what the kernel streams, and decode's roofline
    const T = threadCount();
    // what a decode step reads: every linear weight once per layer, the LM head (tied to the embedding) once
    const W = GPT2_SMALL.width, L = GPT2_SMALL.layers, V = GPT2_SMALL.vocab;
    const shapes: { label: string; K: number; N: number; count: number }[] = [
      { label: 'qkv 768→2304', K: W, N: 3 * W, count: L }, { label: 'o 768→768', K: W, N: W, count: L },
      { label: 'fc 768→3072', K: W, N: 4 * W, count: L }, { label: 'proj 3072→768', K: 4 * W, N: W, count: L },
      { label: 'head 768→50257', K: W, N: V, count: 1 },
    ];
    const decodeBytes = shapes.reduce((a, x) => a + 4 * x.K * x.N * x.count, 0);
    let readAll = Number.NaN;
    if (wants('cpu')) {
      const read1 = await streamingRead(1);
      readAll = await streamingRead(T);
      const kernel: Record<string, number> = {};
      for (const x of shapes) kernel[x.label] = matvecBandwidth(x.K, x.N, ctx.quick ? 150 : 600);
      // time per token if every product ran at its measured kernel bandwidth
      const kernelSeconds = shapes.reduce((a, x) => a + (4 * x.K * x.N * x.count) / (kernel[x.label]! * 1e9), 0);
      const kernelGBs = decodeBytes / kernelSeconds / 1e9;
      row('native streaming read', 0, { 'GB/s 1 thread': read1, [`GB/s ${T} threads`]: readAll, 'decode roofline tokens/s': readAll * 1e9 / decodeBytes, 'decode weight MiB per token': decodeBytes / MiB });
      row(`cpu matrix–vector kernel (${T} threads)`, kernelSeconds * 1000, { ...Object.fromEntries(Object.entries(kernel).map(([k, v]) => [`GB/s ${k}`, v])), 'GB/s decode mix': kernelGBs, 'vs streaming read': kernelGBs / readAll, 'kernel-bound decode tokens/s': 1 / kernelSeconds });
    }

    const gpu = await benchGpu(ctx);
    const backends = ([new CpuBackend(), ...(gpu ? [gpu] : [])] as Backend[]).filter((b) => wants(b.name));
    const prompt = Array.from({ length: 32 }, (_, i) => (i * 37 + 11) % V);
    for (const backend of backends) {
      const isGpu = backend.name !== 'cpu';
      const ann = loadModel(dir, { backend });
      const prefillN = ctx.quick ? 32 : 128;
      await prefillSeconds(ann, 8); // warm-up
      const pre = await prefillSeconds(ann, prefillN);
      await decodeSeconds(ann, prompt, 1);
      const tokens = ctx.quick ? 3 : isGpu ? 6 : 16;
      const rounds = ctx.quick ? 1 : 3;
      const tps: number[] = [];
      for (let r = 0; r < rounds; r++) tps.push(tokens / (await decodeSeconds(ann, prompt, tokens)));
      const annDecode = median(tps);
      row(`${backend.name} ANN`, 1000 / annDecode, {
        [`prefill ${prefillN} tokens/s`]: prefillN / pre, 'decode tokens/s': annDecode, 'weights GB/s at decode': annDecode * decodeBytes / 1e9,
        ...(isGpu ? {} : { 'vs streaming read': annDecode * decodeBytes / 1e9 / readAll, target: 'decode ≥ 18 tokens/s, ≥ 50% of the streaming read' }),
      });

      // the same model from an F16 checkpoint: on the GPU its weights stay binary16 (half the bytes)
      if (isGpu) {
        const half = loadModel(cachedRandomGpt2(GPT2_SMALL, { tokenizerFrom, dtype: 'F16' }), { backend });
        await prefillSeconds(half, 8);
        const halfPre = await prefillSeconds(half, prefillN);
        await decodeSeconds(half, prompt, 1);
        const halfTps: number[] = [];
        for (let r = 0; r < rounds; r++) halfTps.push(tokens / (await decodeSeconds(half, prompt, tokens)));
        row(`${backend.name} ANN, F16 checkpoint (weights in f16 on the GPU)`, 1000 / median(halfTps), {
          [`prefill ${prefillN} tokens/s`]: prefillN / halfPre, 'decode tokens/s': median(halfTps), 'weights GB/s at decode': median(halfTps) * decodeBytes / 2 / 1e9, 'vs F32 decode': median(halfTps) / annDecode,
        });
      }

      // SNN: the default conversion timed as the CLI runs it, then every code at its default T
      const tok = loadTokenizer(dir);
      const t0 = performance.now();
      const dflt = (await convertModelToSpiking(ann, createCalibrationData(tok), { backend })).snn;
      const convertS = (performance.now() - t0) / 1000;
      row(`${backend.name} SNN convert (default: layerwise ${dflt.coding} T=${dflt.timesteps})`, convertS * 1000, { seconds: convertS, params, ...(isGpu ? {} : { target: '≤ 30 s' }) });
      const few = createCalibrationData(tok, { numSamples: 2 });
      const configs: [string, () => Promise<SpikingLM>, number][] = [[`layerwise ${dflt.coding} T=${dflt.timesteps} fast (default)`, async () => dflt, tokens]];
      // every configuration on the CPU; on the GPU the default (each conversion calibrates on the CPU anyway)
      if (!ctx.quick && !isGpu) {
        configs.push([`layerwise ${dflt.coding} T=${dflt.timesteps} event`, async () => dflt.with({ execution: 'event' }), 1]);
        for (const coding of CODINGS.filter((c) => c !== DEFAULT_CONVERSION.coding) as CodingName[]) {
          configs.push([`layerwise ${coding} fast`, async () => (await convertModelToSpiking(ann, few, { backend, coding })).snn, Math.max(2, tokens / 2)]);
        }
        configs.push(['stepwise rate T=16', async () => (await convertModelToSpiking(ann, few, { backend, schedule: 'stepwise', coding: 'rate', timesteps: 16 })).snn, 1]);
      }
      for (const [label, make, n] of configs) {
        const snn = await make();
        const snnPre = label.startsWith('stepwise') || label.endsWith('event') ? NaN : await prefillSeconds(snn, ctx.quick ? 16 : 32);
        await decodeSeconds(snn, prompt, 1);
        const t = n / (await decodeSeconds(snn, prompt, n));
        row(`${backend.name} SNN ${label.replace(/ fast$/, ` T=${snn.timesteps} fast`).replace(/T=(\d+) T=\1/, 'T=$1')}`, 1000 / t, {
          ...(Number.isNaN(snnPre) ? {} : { [`prefill ${ctx.quick ? 16 : 32} tokens/s`]: (ctx.quick ? 16 : 32) / snnPre }),
          'decode tokens/s': t, 'vs ANN decode': t / annDecode, 'tokens timed': n,
        });
        if (snn !== dflt) snn.dispose();
      }
      dflt.dispose();
    }
    return rows;
  },
};
