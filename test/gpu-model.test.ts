/**
 * Whole models on the GPU: golden logits and greedy continuations on every fixture, cached decoding
 * equal to a full recompute, and a GPT-2-small-sized LM head (50257×768 float32 = 154 MB, above
 * llvmpipe's 128 MiB binding limit) split into chunks.
 */
import { type WeightTensor, f32Weight } from '../src/tensor/half.js';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { main } from '../src/cli/main.js';
import { parseConfig } from '../src/nn/config.js';
import { generate } from '../src/nn/generate.js';
import { CausalLM, loadModel, loadWeights } from '../src/nn/model.js';
import { argmax } from '../src/nn/sampling.js';
import type { BlockWeights, LinearWeights, LMWeights } from '../src/nn/weights.js';
import { f16BitsToNumber, numberToF16Bits } from '../src/tensor/dtype.js';
import { GpuLinearWeight } from '../src/tensor/kernels/matmul.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { Tensor } from '../src/tensor/tensor.js';
import { GPU_REQUIRED, requireGpu } from './helpers/backends.js';
import { FIXTURE_NAMES, fixtureDir, golden } from './helpers/fixtures.js';
import { TOL, compare, expectClose, randomArray } from './helpers/tolerance.js';
import { withEnv } from './helpers/env.js';

/**
 * The kernels real GPUs get, forced on this adapter: workgroup row reductions, split-K matmul, and
 * attention split-K (decode's) or in tiles (prefill's).
 */
const HARDWARE_SHAPES = { SPIKELM_ROWS: 'workgroup', SPIKELM_ATTENTION: 'splitk', SPIKELM_MATMUL: 'splitk' } as const;
const HARDWARE_PREFILL = { ...HARDWARE_SHAPES, SPIKELM_ATTENTION: 'tiled' } as const;

describe.each(FIXTURE_NAMES)('GPU golden: %s', (name) => {
  it.for([['the adapter\'s kernels', {}], ['the hardware-shaped kernels forced', HARDWARE_SHAPES], ['the hardware-shaped kernels with tiled attention forced', HARDWARE_PREFILL]] as const)('%s: last logits within the CPU golden tolerance, per-position argmax and greedy continuation', async ([, env], ctx) => {
    const gpu = await requireGpu(ctx);
    await withEnv(env, async () => {
    const model = loadModel(fixtureDir(name), { backend: gpu });
    for (const [prompt, g] of Object.entries(golden(name))) {
      const V = model.config.vocabSize, S = g.input_ids.length;
      const all = await gpu.read(model.forward(g.input_ids, model.newCache(), { allLogits: true }));
      expectClose(all.data.subarray((S - 1) * V), g.last_logits, TOL.gpuGolden, `${name} "${prompt}" GPU last logits`);
      expect(Array.from({ length: S }, (_, s) => argmax(all.data.subarray(s * V, (s + 1) * V)))).toEqual(g.all_positions_argmax);
      const { ids } = await generate(model, g.input_ids, { maxNewTokens: g.greedy_continuation.length });
      expect(ids).toEqual(g.greedy_continuation);
    }
    });
  });
});

describe('linear weights stored in f16 on the GPU', () => {
  /** Each value rounded to binary16 and back: the f16 weight format's storage, on the CPU. */
  const toF16 = (t: WeightTensor) => Tensor.from([...t.shape], f32Weight(t).data.map((v) => f16BitsToNumber(numberToF16Bits(v))));
  it('gpt2-random-f16 (an F16 checkpoint, so binary16 storage is lossless): golden logits, argmax and greedy continuation, through the tiled and the split-K matmul', async (ctx) => {
    const gpu = await requireGpu(ctx);
    for (const matmul of ['tiled', 'splitk']) {
    const upload = vi.spyOn(gpu, 'upload');
    await withEnv({ ...HARDWARE_SHAPES, SPIKELM_ATTENTION: 'tiled', SPIKELM_MATMUL: matmul, SPIKELM_GPU_WEIGHTS: 'auto' }, async () => {
      const model = loadModel(fixtureDir('gpt2-random-f16'), { backend: gpu });
      // the default ('auto') stores them in f16: each is exactly binary16
      const formats = upload.mock.results.map((r) => r.value as unknown).filter((w) => w instanceof GpuLinearWeight).map((w) => w.format);
      upload.mockRestore();
      expect(formats.length).toBe(4 * model.config.numLayers + 1); // qkv, o, up, down per block, and the head
      expect(new Set(formats)).toEqual(new Set(['f16']));
      for (const [prompt, g] of Object.entries(golden('gpt2-random-f16'))) {
        const V = model.config.vocabSize, S = g.input_ids.length;
        const all = await gpu.read(model.forward(g.input_ids, model.newCache(), { allLogits: true }));
        expectClose(all.data.subarray((S - 1) * V), g.last_logits, TOL.gpuGolden, `"${prompt}" last logits, f16 weights`);
        expect(Array.from({ length: S }, (_, s) => argmax(all.data.subarray(s * V, (s + 1) * V)))).toEqual(g.all_positions_argmax);
        const { ids } = await generate(model, g.input_ids, { maxNewTokens: g.greedy_continuation.length });
        expect(ids).toEqual(g.greedy_continuation);
      }
    });
    }
  });

  it('stories260k (float32) with f16 forced equals the CPU model with its linear weights rounded to binary16', async (ctx) => {
    const gpu = await requireGpu(ctx, { weightFormat: 'f16' });
    const { config, weights } = loadWeights(fixtureDir('stories260k'));
    const lin = (l: LinearWeights): LinearWeights => ({ weight: toF16(l.weight), ...(l.bias ? { bias: l.bias } : {}) });
    const rounded: LMWeights = {
      ...weights,
      blocks: weights.blocks.map((b) => ({ ...b, q: lin(b.q), k: lin(b.k), v: lin(b.v), o: lin(b.o), up: lin(b.up), down: lin(b.down), ...(b.gate ? { gate: lin(b.gate) } : {}) })),
      lmHead: toF16(weights.lmHead), // the gather table (embed) stays float32 on the GPU too
    };
    const ids = Object.values(golden('stories260k'))[0]!.input_ids;
    const cpu = new CpuBackend();
    const cpuModel = new CausalLM(config, rounded, cpu);
    const expected = cpu.readSync(cpuModel.forward(ids, cpuModel.newCache(), { allLogits: true })).data;
    const gpuModel = new CausalLM(config, weights, gpu);
    const actual = (await gpu.read(gpuModel.forward(ids, gpuModel.newCache(), { allLogits: true }))).data;
    expectClose(actual, expected, TOL.gpuKernel, 'stories260k logits, f16 weights');
    // and the rounding is visible: the float32 model's logits differ by more than the tolerance
    const float32Model = new CausalLM(config, weights, cpu);
    expect(compare(actual, cpu.readSync(float32Model.forward(ids, float32Model.newCache(), { allLogits: true })).data, TOL.gpuKernel).ok).toBe(false);
  });
});

describe('GPU KV cache', () => {
  it.for(['stories260k', 'gpt2-random-f16'] as const)('%s: incremental decoding equals full recompute (cache grows on the GPU)', async (name, ctx) => {
    const gpu = await requireGpu(ctx);
    const m = loadModel(fixtureDir(name), { backend: gpu });
    const ids = Object.values(golden(name))[1]!.input_ids;
    const V = m.config.vocabSize;
    const full = (await gpu.read(m.forward(ids, m.newCache(), { allLogits: true }))).data;
    const cache = m.newCache(2);
    let pos = 0;
    for (const chunk of [ids.slice(0, 3), ...ids.slice(3).map((t) => [t])]) {
      const logits = (await gpu.read(m.forward(chunk, cache, { allLogits: true }))).data;
      expectClose(logits, full.subarray(pos * V, (pos + chunk.length) * V), TOL.gpuKernel, `positions from ${pos}`);
      pos += chunk.length;
    }
    expect(cache.capacity).toBeGreaterThanOrEqual(ids.length);
  });
});

describe('GPU decode loop resources', () => {
  it('bind groups are reused token after token and read-back buffers come from a ring; results equal the CPU', async (ctx) => {
    const gpu = await requireGpu(ctx);
    const rt = gpu.rt;
    const m = loadModel(fixtureDir('stories260k'), { backend: gpu });
    const cache = m.newCache(64);
    const step = async (id: number) => {
      const logits = m.forward([id], cache);
      const data = (await gpu.read(logits)).data;
      gpu.dispose(logits);
      return data;
    };
    await step(1);
    await step(2); // the first tokens create what decode needs
    const before = { ...rt.bindGroupStats }, live = rt.liveBytes(), staged = { ...rt.stagingStats };
    const out: Float32Array[] = [];
    for (let i = 0; i < 20; i++) out.push(await step(10 + i));
    const created = rt.bindGroupStats.created - before.created, reused = rt.bindGroupStats.reused - before.reused;
    // per token only the groups binding a buffer made for that token are made anew: the embedding's
    // (the token's id) and at most two more (the pool handing buffers back in another order); uniforms
    // live in a persistent ring and RoPE reads a persistent table, so nothing position-dependent
    // makes a group (it made 2 per layer before the ring, 1 per layer before the table)
    expect(created).toBeLessThanOrEqual(20 * 3);
    expect(reused).toBeGreaterThan(10 * created);
    // the read-back buffer of the [1, 512] logits is reused by all 20 reads (the runtime is the
    // process's: other tests' sizes may sit in the ring too)
    expect(rt.stagingStats.reused - staged.reused).toBe(20);
    expect(rt.stagingStats.created - staged.created).toBe(0);
    // device memory does not grow with the tokens: no uniform buffers or RoPE tables are made,
    // read-backs come from their ring
    expect(rt.liveBytes() - live).toBe(0);
    // the same numbers as a fresh model without any cache
    const cpu = new CpuBackend();
    const fresh = loadModel(fixtureDir('stories260k'), { backend: cpu });
    const ref = fresh.newCache();
    fresh.forward([1, 2], ref);
    for (let i = 0; i < 20; i++) expectClose(out[i]!, cpu.readSync(fresh.forward([10 + i], ref)).data, TOL.gpuKernel, `token ${i}`);
  });
});

describe('GPT-2-small-sized LM head on the GPU', () => {
  it('a 50257×768 tied embedding (154 MB) is split across bindings and matches the CPU', async (ctx) => {
    const gpu = await requireGpu(ctx);
    const D = 768, V = 50257, I = 4 * D;
    const config = parseConfig({ model_type: 'gpt2', n_embd: D, n_head: 12, n_layer: 1, vocab_size: V, n_positions: 64 });
    const rnd = (shape: number[], seed: number, scale: number) => Tensor.from(shape, randomArray(shape.reduce((a, b) => a * b, 1), seed, scale));
    const ones = Tensor.from([D], new Float32Array(D).fill(1));
    const lin = (out: number, inF: number, seed: number) => ({ weight: rnd([out, inF], seed, 0.05), bias: rnd([out], seed + 1, 0.02) });
    const block: BlockWeights = {
      attnNorm: { weight: ones, bias: rnd([D], 3, 0.1) }, q: lin(D, D, 10), k: lin(D, D, 20), v: lin(D, D, 30), o: lin(D, D, 40),
      mlpNorm: { weight: ones, bias: rnd([D], 4, 0.1) }, up: lin(I, D, 50), down: lin(D, I, 60),
    };
    const embed = rnd([V, D], 1, 0.1);
    const weights: LMWeights = { embed, positions: rnd([64, D], 2, 0.02), blocks: [block], finalNorm: { weight: ones, bias: rnd([D], 5, 0.1) }, lmHead: embed };
    const ids = [15496, 11, 995, 50256, 0];
    const cpuModel = new CausalLM(config, weights, new CpuBackend());
    const expected = (await cpuModel.backend.read(cpuModel.forward(ids, cpuModel.newCache(), { allLogits: true }))).data;
    const gpuModel = new CausalLM(config, weights, gpu);
    const actual = (await gpu.read(gpuModel.forward(ids, gpuModel.newCache(), { allLogits: true }))).data;
    expectClose(actual, expected, TOL.gpuKernel, 'gpt2-small-sized logits');
    // and decoding a few tokens keeps working after the big work (the brief's crash site)
    const out = await generate(gpuModel, ids, { maxNewTokens: 3 });
    const ref = await generate(cpuModel, ids, { maxNewTokens: 3 });
    expect(out.ids).toEqual(ref.ids);
  });
});

describe('CLI --backend gpu / auto', () => {
  it('generate --backend gpu prints the golden story; auto says which backend it chose', async (ctx) => {
    await requireGpu(ctx);
    let out = '', err = '';
    const io = { out: (t: string) => void (out += t), err: (t: string) => void (err += t) };
    expect(await main(['generate', '--model', fixtureDir('stories260k'), '--prompt', 'Once upon a time', '--max-new-tokens', '30', '--backend', 'gpu'], io)).toBe(0);
    expect(out).toMatch(/^Once upon a time, there was a little girl named Lily\. She loved to play outside in the park\./);
    out = '';
    expect(await main(['logits', '--model', fixtureDir('stories260k'), '--prompt', 'Once upon a time', '--backend', 'auto'], io)).toBe(0);
    // auto takes a hardware adapter, and passes over a software rasterizer (llvmpipe here and on CI)
    const software = (await requireGpu(ctx)).rt.ctx.report.software;
    expect(err).toMatch(software
      ? /backend: cpu .*\(auto: the only WebGPU adapter is a software rasterizer \(.+\), slower than the CPU backend; --backend gpu uses it anyway\)/
      : /backend: gpu .*\(auto: a hardware WebGPU adapter is available\)/);
    expectClose(JSON.parse(out).last_logits, golden('stories260k')['Once upon a time']!.last_logits, TOL.gpuGolden, 'auto logits');
  });
});

describe('choosing the Dawn path (SPIKELM_GPU)', () => {
  const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'spikelm.js');
  const infoWith = (value: string, extra: Record<string, string> = {}) => {
    const r = spawnSync(process.execPath, [BIN, 'info', '--json'], { env: { ...process.env, SPIKELM_GPU: value, ...extra }, encoding: 'utf8' });
    return { status: r.status, gpu: r.status === 0 ? JSON.parse(r.stdout).backends.gpu : undefined, stderr: r.stderr };
  };
  // a Vulkan driver installed, or named by the loader's variables (a private lavapipe)
  const vulkanDriver = Boolean(process.env.VK_ICD_FILENAMES || process.env.VK_DRIVER_FILES) || ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d'].some((d) => fs.existsSync(d) && fs.readdirSync(d).some((f) => f.endsWith('.json')));

  it('vulkan takes Dawn\'s Vulkan backend or says why it cannot, never OpenGL ES', () => {
    const { gpu } = infoWith('vulkan');
    if (gpu.available) expect([gpu.dawn_backend, gpu.choice, gpu.fallback]).toEqual(['vulkan', 'vulkan', undefined]);
    else {
      expect(vulkanDriver).toBe(false);
      expect(gpu.available).toBe(false);
      expect(gpu.reason).toMatch(/^SPIKELM_GPU=vulkan: no Vulkan (loader|adapter).*Vulkan driver/);
    }
  });

  it('opengles takes OpenGL ES; default prefers the native backend, and a fallback to OpenGL ES is announced and reported', (ctx) => {
    const gles = infoWith('opengles');
    if (!gles.gpu.available) {
      if (GPU_REQUIRED) throw new Error(`no OpenGL ES adapter: ${gles.gpu.reason}`);
      ctx.skip();
    }
    expect([gles.gpu.dawn_backend, gles.gpu.choice]).toEqual(['opengles', 'opengles']);
    expect(gles.gpu.fallback).toBeUndefined();
    const def = infoWith('default');
    expect(def.gpu.choice).toBe('default');
    if (def.gpu.dawn_backend === 'opengles') {
      expect(def.gpu.fallback).toMatch(/no Vulkan (loader|adapter)/);
      expect(def.stderr).toMatch(/spikelm: GPU through OpenGL ES: no Vulkan/);
    } else {
      expect(def.gpu.dawn_backend).toBe('vulkan');
    }
    expect(infoWith('metal').gpu.reason).toMatch(/SPIKELM_GPU must be default, vulkan or opengles, got "metal"/);
  });

  it('SPIKELM_GPU_ADAPTER picks by a substring of the device name; no match, or an index, is an error naming it', async (ctx) => {
    const gpu = await requireGpu(ctx);
    const dawn = gpu.report.path === 'vulkan' ? 'vulkan' : 'opengles';
    const part = gpu.report.device.slice(0, 8);
    const same = infoWith(dawn, { SPIKELM_GPU_ADAPTER: part });
    expect([same.gpu.available, same.gpu.device, same.gpu.dawn_backend]).toEqual([true, gpu.report.device, dawn]);
    expect(infoWith(dawn, { SPIKELM_GPU_ADAPTER: 'no-such-gpu-7' }).gpu.reason).toMatch(/SPIKELM_GPU_ADAPTER|"no-such-gpu-7"/);
    expect(infoWith(dawn, { SPIKELM_GPU_ADAPTER: 'no-such-gpu-7' }).gpu.available).toBe(false);
    expect(infoWith(dawn, { SPIKELM_GPU_ADAPTER: '1' }).gpu.reason).toMatch(/SPIKELM_GPU_ADAPTER=1: give a substring of the adapter's device name/);
  });
});
