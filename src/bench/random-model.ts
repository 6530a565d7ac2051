/**
 * Model directories with random weights in a real model's shape (GPT-2 small: 768 wide, 12 layers,
 * 50257 tokens), for speed and memory measurements at scale where no trained weights can be
 * downloaded. The weights follow GPT-2's initialisation (normal, σ = 0.02; residual projections
 * σ = 0.02/√(2·layers); norms 1, biases 0) from a seeded generator, so a directory is the same
 * on every machine. Its outputs mean nothing: use it for time and memory, never for fidelity.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ArgumentError } from '../errors.js';
import { writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { seededRandom } from '../nn/sampling.js';

export interface Gpt2Shape {
  readonly layers: number;
  readonly width: number;
  readonly heads: number;
  readonly vocab: number;
  readonly positions: number;
}

export const GPT2_SMALL: Gpt2Shape = { layers: 12, width: 768, heads: 12, vocab: 50257, positions: 1024 };

/** The tokenizer files a GPT-2 directory carries (copied from `tokenizerFrom` when given). */
const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.json', 'merges.txt'];

function normal(n: number, std: number, next: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    // Box–Muller: two normals per pair of uniforms (1 − u keeps the log finite)
    const r = Math.sqrt(-2 * Math.log(1 - next())) * std, a = 2 * Math.PI * next();
    out[i] = r * Math.cos(a);
    if (i + 1 < n) out[i + 1] = r * Math.sin(a);
  }
  return out;
}

/** The number of parameters of a GPT-2 of this shape (tied head). */
export function gpt2Parameters(s: Gpt2Shape): number {
  const w = s.width;
  return s.vocab * w + s.positions * w + s.layers * (2 * 2 * w + w * 3 * w + 3 * w + w * w + w + w * 4 * w + 4 * w + 4 * w * w + w) + 2 * w;
}

/**
 * Write a random GPT-2 of shape `s` into `dir` (created; must not exist or be empty): config.json,
 * model.safetensors (F32 or F16) and, from `tokenizerFrom`, the tokenizer files.
 */
export function writeRandomGpt2(dir: string, s: Gpt2Shape, opts: { seed?: number; dtype?: 'F32' | 'F16' | 'BF16'; tokenizerFrom?: string } = {}): void {
  for (const [k, v] of Object.entries(s)) if (!Number.isInteger(v) || v < 1) throw new ArgumentError(`random GPT-2: ${k} must be a positive integer, got ${v}`);
  if (s.width % s.heads !== 0) throw new ArgumentError(`random GPT-2: width ${s.width} is not a multiple of heads ${s.heads}`);
  fs.mkdirSync(dir, { recursive: true });
  if (fs.readdirSync(dir).length) throw new ArgumentError(`random GPT-2: ${dir} is not empty`);
  const next = seededRandom(opts.seed ?? 0);
  const w = s.width, dtype = opts.dtype ?? 'F32';
  const residualStd = 0.02 / Math.sqrt(2 * s.layers);
  const tensors: TensorToWrite[] = [];
  const add = (name: string, shape: number[], data: Float32Array) => tensors.push({ name, shape, data, dtype });
  const ones = (n: number) => new Float32Array(n).fill(1);
  add('transformer.wte.weight', [s.vocab, w], normal(s.vocab * w, 0.02, next));
  add('transformer.wpe.weight', [s.positions, w], normal(s.positions * w, 0.01, next));
  for (let l = 0; l < s.layers; l++) {
    const p = `transformer.h.${l}`;
    add(`${p}.ln_1.weight`, [w], ones(w));
    add(`${p}.ln_1.bias`, [w], new Float32Array(w));
    // Conv1D layout: [in, out]
    add(`${p}.attn.c_attn.weight`, [w, 3 * w], normal(w * 3 * w, 0.02, next));
    add(`${p}.attn.c_attn.bias`, [3 * w], new Float32Array(3 * w));
    add(`${p}.attn.c_proj.weight`, [w, w], normal(w * w, residualStd, next));
    add(`${p}.attn.c_proj.bias`, [w], new Float32Array(w));
    add(`${p}.ln_2.weight`, [w], ones(w));
    add(`${p}.ln_2.bias`, [w], new Float32Array(w));
    add(`${p}.mlp.c_fc.weight`, [w, 4 * w], normal(w * 4 * w, 0.02, next));
    add(`${p}.mlp.c_fc.bias`, [4 * w], new Float32Array(4 * w));
    add(`${p}.mlp.c_proj.weight`, [4 * w, w], normal(4 * w * w, residualStd, next));
    add(`${p}.mlp.c_proj.bias`, [w], new Float32Array(w));
  }
  add('transformer.ln_f.weight', [w], ones(w));
  add('transformer.ln_f.bias', [w], new Float32Array(w));
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt', origin: `spikelm random GPT-2 (seed ${opts.seed ?? 0})` });
  const config = {
    architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', activation_function: 'gelu_new',
    n_embd: w, n_head: s.heads, n_layer: s.layers, n_positions: s.positions, n_ctx: s.positions, vocab_size: s.vocab,
    layer_norm_epsilon: 1e-5, bos_token_id: s.vocab - 1, eos_token_id: s.vocab - 1, torch_dtype: { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[dtype],
  };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  if (opts.tokenizerFrom) {
    for (const f of TOKENIZER_FILES) {
      const src = path.join(opts.tokenizerFrom, f);
      if (fs.existsSync(src)) fs.copyFileSync(src, path.join(dir, f));
    }
  }
}

/**
 * A random GPT-2 directory under the system's temporary folder, written once per shape, seed and
 * dtype and reused by later runs (built in a private folder and renamed into place, so a run that
 * dies half-way leaves nothing a later one would trust).
 */
export function cachedRandomGpt2(s: Gpt2Shape, opts: { seed?: number; dtype?: 'F32' | 'F16' | 'BF16'; tokenizerFrom?: string } = {}): string {
  const name = `spikelm-random-gpt2-${s.layers}x${s.width}h${s.heads}v${s.vocab}p${s.positions}-${opts.dtype ?? 'F32'}-s${opts.seed ?? 0}`;
  const dir = path.join(os.tmpdir(), name);
  if (fs.existsSync(path.join(dir, 'config.json'))) return dir;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `${name}.partial-`));
  try {
    writeRandomGpt2(tmp, s, opts);
    fs.renameSync(tmp, dir);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    // another process may have published the same directory first
    if (fs.existsSync(path.join(dir, 'config.json'))) return dir;
    throw e;
  }
  return dir;
}
