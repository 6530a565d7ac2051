/** Loading Hugging Face layouts the fixtures do not use, the KV cache, and load errors. */
import { f32Weight } from '../src/tensor/half.js';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ModelLoadError } from '../src/errors.js';
import { loadModel, loadWeights } from '../src/nn/model.js';
import { parseConfig } from '../src/nn/config.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';
import { main } from '../src/cli/main.js';
import { fromFloat32, toFloat32 } from '../src/tensor/dtype.js';
import { fixtureDir, golden } from './helpers/fixtures.js';
import { rewriteModelDir } from './helpers/model-dirs.js';
import { TOL, expectClose } from './helpers/tolerance.js';

const stories = fixtureDir('stories260k');
const storiesGolden = golden('stories260k')['Once upon a time']!;
const f16Gpt2 = fixtureDir('gpt2-random-f16');
const gpt2Golden = golden('gpt2-random-f16')['Hello, world']!;

async function lastLogits(dir: string, ids: number[]): Promise<Float32Array> {
  const m = loadModel(dir);
  return (await m.backend.read(m.forward(ids))).data;
}

describe('loader on unseen layouts', () => {
  it('Llama: only lm_head.weight stored, embed_tokens aliased to it in __metadata__', async () => {
    const dir = rewriteModelDir(stories, {
      rename: (n) => (n === 'model.embed_tokens.weight' ? 'lm_head.weight' : n),
      metadata: { format: 'pt', 'model.embed_tokens.weight': 'lm_head.weight' },
    });
    expectClose(await lastLogits(dir, storiesGolden.input_ids), storiesGolden.last_logits, TOL.golden, 'aliased');
  });

  it('Llama: only lm_head.weight stored, no alias, tie_word_embeddings true', async () => {
    const dir = rewriteModelDir(stories, { rename: (n) => (n === 'model.embed_tokens.weight' ? 'lm_head.weight' : n) });
    expectClose(await lastLogits(dir, storiesGolden.input_ids), storiesGolden.last_logits, TOL.golden, 'lm_head only');
  });

  it('Llama: untied, both tensors stored', async () => {
    const embed = f32Weight(loadWeights(stories).weights.embed);
    const dir = rewriteModelDir(stories, {
      config: (c) => ({ ...c, tie_word_embeddings: false }),
      extra: [{ name: 'lm_head.weight', shape: embed.shape, data: embed.data }],
    });
    const m = loadModel(dir);
    expect(m.weights.lmHead).not.toBe(m.weights.embed);
    expectClose(await lastLogits(dir, storiesGolden.input_ids), storiesGolden.last_logits, TOL.golden, 'untied');
  });

  it('Llama: BF16 weights equal the same rounded values stored as F32', async () => {
    const toBf16 = (data: Float32Array) => toFloat32(fromFloat32(data, 'BF16'), 'BF16', data.length);
    const bf16 = rewriteModelDir(stories, { dtype: 'BF16' });
    const rounded = rewriteModelDir(stories, { transform: (_n, shape, data) => ({ shape, data: toBf16(data) }) });
    const a = await lastLogits(bf16, storiesGolden.input_ids);
    expectClose(a, await lastLogits(rounded, storiesGolden.input_ids), { atol: 0, rtol: 0 }, 'bf16');
    // and it is still the same model, to bf16 precision
    expectClose(a, storiesGolden.last_logits, { atol: 0.5, rtol: 0.05 }, 'bf16 vs golden');
  });

  it('Llama: sharded into three files with model.safetensors.index.json', async () => {
    const dir = rewriteModelDir(stories, { shards: 3 });
    expect(fs.existsSync(path.join(dir, 'model.safetensors'))).toBe(false);
    expectClose(await lastLogits(dir, storiesGolden.input_ids), storiesGolden.last_logits, TOL.golden, 'sharded');
  });

  it('GPT-2: no transformer. prefix, an explicit lm_head.weight, and the attn.bias buffers present', async () => {
    const wte = f32Weight(loadWeights(f16Gpt2).weights.embed);
    const dir = rewriteModelDir(f16Gpt2, {
      rename: (n) => n.replace(/^transformer\./, ''),
      extra: [
        { name: 'lm_head.weight', shape: wte.shape, data: wte.data },
        { name: 'h.0.attn.bias', shape: [1, 1, 4, 4], data: new Float32Array(16).fill(1) },
        { name: 'h.0.attn.masked_bias', shape: [], data: new Float32Array([-1e4]) },
      ],
    });
    const { unused } = loadWeights(dir);
    expect(unused).toEqual([]);
    expectClose(await lastLogits(dir, gpt2Golden.input_ids), gpt2Golden.last_logits, TOL.golden, 'gpt2 unprefixed');
  });
});

describe('load progress', () => {
  it.each(['gpt2-random-f16', 'stories260k'] as const)('%s: bytes read grow to the bytes of every used tensor, out of all the file holds', (name) => {
    const calls: [number, number][] = [];
    loadModel(fixtureDir(name), { onProgress: (read, total) => void calls.push([read, total]) });
    // independently: the header's tensors and their byte ranges
    const file = fs.readFileSync(path.join(fixtureDir(name), 'model.safetensors'));
    const header = JSON.parse(file.subarray(8, 8 + Number(file.readBigUInt64LE(0))).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
    const sizes = Object.entries(header).filter(([k]) => k !== '__metadata__').map(([k, v]) => [k, v.data_offsets[1] - v.data_offsets[0]] as const);
    const total = sizes.reduce((a, [, b]) => a + b, 0);
    const ignored = sizes.filter(([k]) => /\.attn\.(masked_)?bias$/.test(k)).reduce((a, [, b]) => a + b, 0);
    expect(calls.length).toBeGreaterThan(3);
    for (const [i, [read, t]] of calls.entries()) {
      expect(t).toBe(total);
      if (i > 0) expect(read).toBeGreaterThan(calls[i - 1]![0]);
    }
    expect(calls.at(-1)![0]).toBe(total - ignored);
  });
});

describe('load errors name the key, the file and both shapes', () => {
  it('missing tensor', () => {
    const dir = rewriteModelDir(stories, { rename: (n) => (n === 'model.layers.2.mlp.up_proj.weight' ? undefined : n) });
    expect(() => loadModel(dir)).toThrow(/missing tensor "model\.layers\.2\.mlp\.up_proj\.weight" \(expected shape \[172, 64\]\)/);
  });

  it('wrong shape', () => {
    const dir = rewriteModelDir(stories, {
      transform: (n, shape, data) => (n === 'model.layers.1.self_attn.k_proj.weight' ? { shape: [16, 128], data } : { shape, data }),
    });
    expect(() => loadModel(dir)).toThrow(/tensor "model\.layers\.1\.self_attn\.k_proj\.weight" has shape \[16, 128\], but config\.json implies \[32, 64\]/);
  });

  it('untied without lm_head', () => {
    const dir = rewriteModelDir(stories, { config: (c) => ({ ...c, tie_word_embeddings: false }) });
    expect(() => loadModel(dir)).toThrow(/missing tensor "lm_head\.weight"/);
  });

  it('unsupported model_type, bad fields, missing directory', () => {
    expect(() => parseConfig({ model_type: 'mamba' })).toThrow(/unsupported model_type "mamba"/);
    expect(() => parseConfig({ model_type: 'llama', hidden_size: 64, num_attention_heads: 8, num_key_value_heads: 3 })).toThrow(/not a multiple/);
    expect(() => parseConfig({ model_type: 'gpt2', n_embd: 'x' })).toThrow(/"n_embd" must be a positive integer/);
    expect(() => parseConfig({ model_type: 'gpt2', n_embd: 8, n_head: 2, n_layer: 1, vocab_size: 5, activation_function: 'mish' })).toThrow(/unsupported "activation_function" "mish"/);
    expect(() => loadModel('/nonexistent/dir')).toThrow(ModelLoadError);
    const dir = rewriteModelDir(stories);
    fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type": ');
    expect(() => loadModel(dir)).toThrow(/config\.json: not valid JSON/);
  });
});

describe('weights that would run as silent garbage are refused at load, naming the tensor', () => {
  it('NaN or ±Inf in any tensor', () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const dir = rewriteModelDir(stories, {
        transform: (n, shape, data) => (n === 'model.layers.3.mlp.down_proj.weight' ? { shape, data: data.map((v, i) => (i === 7 ? bad : v)) } : { shape, data }),
      });
      expect(() => loadModel(dir)).toThrow(/tensor "model\.layers\.3\.mlp\.down_proj\.weight" holds 1 non-finite value\(s\) \(NaN or ±Inf\), the first at index 7/);
    }
  });

  it('a config.json with fewer layers than the weights: the unused tensors are named; --allow-unused loads anyway', async () => {
    const dir = rewriteModelDir(stories, { config: (c) => ({ ...c, num_hidden_layers: 4 }) });
    expect(() => loadModel(dir)).toThrow(/9 stored tensor\(s\) are not used .*"model\.layers\.4\.[^"]+".*config\.json says 4 layers.*--allow-unused/);
    expect(loadModel(dir, { allowUnused: true }).config.numLayers).toBe(4);
    let err = '';
    const code = await main(['generate', '--model', dir, '--prompt', 'Once upon a time'], { out: () => {}, err: (t) => void (err += t) });
    expect(code).toBe(1);
    expect(err).toMatch(/not used by the architecture/);
  });

  it('integer bytes under an F32 header of the same size', () => {
    const dir = rewriteModelDir(stories, {
      transform: (n, shape, data) => {
        if (n !== 'model.layers.0.self_attn.q_proj.weight') return { shape, data };
        // int32 values 0…999 stored where the header says F32
        const ints = new Int32Array(data.length).map((_, i) => i % 1000);
        return { shape, data: new Float32Array(ints.buffer) };
      },
    });
    expect(() => loadModel(dir)).toThrow(/tensor "model\.layers\.0\.self_attn\.q_proj\.weight": \d+ of \d+ nonzero values are subnormal .*integer data under an F32 header/);
  });
});

describe('non-regular files never hang the loader', () => {
  it.each(['config.json', 'model.safetensors', 'tokenizer.json'])('a FIFO as %s is an error naming it (no open() that waits for a writer)', (file) => {
    const dir = rewriteModelDir(stories);
    fs.rmSync(path.join(dir, file));
    execFileSync('mkfifo', [path.join(dir, file)]);
    const t0 = performance.now();
    expect(() => {
      const m = loadModel(dir);
      loadTokenizer(dir, m.config.eosTokenIds);
    }).toThrow(new RegExp(`${file.replace('.', '\\.')}: is a FIFO \\(named pipe\\)`));
    expect(performance.now() - t0).toBeLessThan(10_000);
  });

  it('a directory where a file belongs is named, not a bare EISDIR', () => {
    const dir = rewriteModelDir(stories);
    fs.rmSync(path.join(dir, 'config.json'));
    fs.mkdirSync(path.join(dir, 'config.json'));
    expect(() => loadModel(dir)).toThrow(/config\.json: is a directory \(expected/);
  });
});

describe('KV cache', () => {
  it.each(['stories260k', 'gpt2-random-f16'] as const)('%s: cached token-by-token decoding equals full recomputation', async (name) => {
    const m = loadModel(fixtureDir(name));
    const ids = Object.values(golden(name))[1]!.input_ids;
    const full = (await m.backend.read(m.forward(ids, m.newCache(), { allLogits: true }))).data;
    const cache = m.newCache(2); // small start: the cache must grow while decoding
    const V = m.config.vocabSize;
    // feed in uneven chunks: 1, then 3, then the rest one at a time
    const chunks = [ids.slice(0, 1), ids.slice(1, 4), ...ids.slice(4).map((t) => [t])];
    let pos = 0;
    for (const chunk of chunks) {
      const logits = (await m.backend.read(m.forward(chunk, cache, { allLogits: true }))).data;
      expectClose(logits, full.subarray(pos * V, (pos + chunk.length) * V), TOL.f32, `positions ${pos}…${pos + chunk.length - 1}`);
      pos += chunk.length;
    }
    expect(cache.length).toBe(ids.length);
  });

  it('refuses to pass the model position limit, and empty input, with clear errors', () => {
    const m = loadModel(fixtureDir('gpt2-random-f16'));
    const cache = m.newCache();
    expect(() => m.forward(new Array(257).fill(11), cache)).toThrow(/257 positions exceed the model's limit of 256/);
    expect(() => m.forward([], cache)).toThrow(/empty input/);
    expect(() => m.forward([50257])).toThrow(/token id 50257 .* outside the vocabulary/);
  });
});
