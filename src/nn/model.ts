/**
 * A causal language model on a backend: GPT-2 or Llama, loaded from a Hugging Face directory.
 *
 * forward(ids, cache) is one straight sequence of primitive calls per block:
 *   GPT-2:  h = wte[ids] + wpe[pos];  per block: h += o(attn(ln1 h));  h += down(gelu(up(ln2 h)))
 *   Llama:  h = embed[ids];           per block: h += o(attn(rope(q), rope(k), v of rms1 h));
 *                                                h += down(silu(gate(rms2 h)) ⊙ up(rms2 h))
 *   logits = lmHead · norm(h)
 * New keys/values are written into the KV cache, so a prompt can be fed whole or token by token
 * with the same result (a test asserts it).
 */
import fs from 'node:fs';
import { ArgumentError, ModelLoadError } from '../errors.js';
import { WeightFiles } from '../convert/safetensors.js';
import type { Backend, BTensor } from '../tensor/backend.js';
import { CpuBackend } from '../tensor/cpu-backend.js';
import { ropeInvFreq } from '../tensor/kernels/rope.js';
import { type ModelConfig, loadConfig } from './config.js';
import { isGpt2IgnoredBuffer, loadGpt2Weights } from './gpt2.js';
import { KvCache } from './kv-cache.js';
import { isLlamaIgnoredBuffer, loadLlamaWeights } from './llama.js';
import { type LMWeights, type LinearWeights, type NormWeights, WeightLoader } from './weights.js';

interface DeviceLinear {
  weight: BTensor;
  bias?: BTensor;
}
interface DeviceNorm {
  weight: BTensor;
  bias?: BTensor;
}
interface DeviceBlock {
  attnNorm: DeviceNorm;
  q: DeviceLinear;
  k: DeviceLinear;
  v: DeviceLinear;
  o: DeviceLinear;
  mlpNorm: DeviceNorm;
  gate?: DeviceLinear;
  up: DeviceLinear;
  down: DeviceLinear;
}
interface DeviceWeights {
  embed: BTensor;
  positions?: BTensor;
  blocks: DeviceBlock[];
  finalNorm: DeviceNorm;
  lmHead: BTensor;
}

export interface ForwardOptions {
  /** Return logits for every new position ([S, V]) instead of the last one ([1, V]). */
  readonly allLogits?: boolean;
}

export class CausalLM {
  readonly invFreq: Float64Array | undefined;
  private readonly dev: DeviceWeights;

  constructor(
    readonly config: ModelConfig,
    /** Host copies of the weights (the conversion stages read them). */
    readonly weights: LMWeights,
    readonly backend: Backend,
    readonly dir?: string,
  ) {
    this.dev = uploadWeights(backend, weights);
    this.invFreq = config.family === 'llama' ? ropeInvFreq(config.headDim, config.ropeTheta, config.ropeScaling) : undefined;
  }

  newCache(initialCapacity?: number): KvCache {
    const c = this.config;
    return new KvCache(this.backend, c.numLayers, c.numKvHeads * c.headDim, c.maxPositions, initialCapacity);
  }

  /** Feed `ids` after what `cache` holds; returns logits [1, V] (or [S, V] with allLogits). */
  forward(ids: Int32Array | readonly number[], cache: KvCache = this.newCache(), opts: ForwardOptions = {}): BTensor {
    const tokens = ids instanceof Int32Array ? ids : Int32Array.from(ids);
    const S = tokens.length;
    if (S === 0) throw new ArgumentError('forward: no input tokens (empty input)');
    const b = this.backend, cfg = this.config, w = this.dev;
    const start = cache.length;
    cache.reserve(S);
    const positions = Int32Array.from({ length: S }, (_, i) => start + i);
    return b.tidy(() => {
      let h = b.embedding(w.embed, tokens);
      if (w.positions) h = b.add(h, b.embedding(w.positions, positions));
      for (let l = 0; l < cfg.numLayers; l++) h = this.block(l, h, positions, cache);
      cache.advance(S);
      const rows = opts.allLogits ? h : b.sliceRows(h, S - 1, S);
      return b.matmul(this.norm(rows, w.finalNorm), w.lmHead);
    });
  }

  private block(l: number, h: BTensor, positions: Int32Array, cache: KvCache): BTensor {
    const b = this.backend, cfg = this.config, w = this.dev.blocks[l]!;
    const start = positions[0]!;
    const x = this.norm(h, w.attnNorm);
    let q = this.linear(x, w.q);
    let k = this.linear(x, w.k);
    const v = this.linear(x, w.v);
    if (this.invFreq) {
      q = b.rope(q, positions, cfg.numHeads, cfg.headDim, this.invFreq);
      k = b.rope(k, positions, cfg.numKvHeads, cfg.headDim, this.invFreq);
    }
    cache.write(l, k, v);
    const attn = b.attention(q, cache.keys(l), cache.values(l), {
      numHeads: cfg.numHeads, numKvHeads: cfg.numKvHeads, headDim: cfg.headDim,
      queryStart: start, kvLength: start + positions.length, scale: 1 / Math.sqrt(cfg.headDim),
    });
    h = b.add(h, this.linear(attn, w.o));
    const m = this.norm(h, w.mlpNorm);
    const hidden = w.gate
      ? b.mul(b.activation(cfg.activation, this.linear(m, w.gate)), this.linear(m, w.up))
      : b.activation(cfg.activation, this.linear(m, w.up));
    return b.add(h, this.linear(hidden, w.down));
  }

  private linear(x: BTensor, w: DeviceLinear): BTensor {
    return this.backend.matmul(x, w.weight, w.bias);
  }

  private norm(x: BTensor, w: DeviceNorm): BTensor {
    return this.config.family === 'gpt2'
      ? this.backend.layerNorm(x, w.weight, w.bias, this.config.normEps)
      : this.backend.rmsNorm(x, w.weight, this.config.normEps);
  }
}

function uploadWeights(b: Backend, w: LMWeights): DeviceWeights {
  const lin = (l: LinearWeights): DeviceLinear => ({ weight: b.upload(l.weight, 'linear'), ...(l.bias ? { bias: b.upload(l.bias, 'vector') } : {}) });
  const norm = (n: NormWeights): DeviceNorm => ({ weight: b.upload(n.weight, 'vector'), ...(n.bias ? { bias: b.upload(n.bias, 'vector') } : {}) });
  const lmHead = b.upload(w.lmHead, 'linear');
  return {
    // A tied matrix is uploaded in both roles: backends pack a matmul weight and a gather table
    // differently (the CPU backend keeps one shared copy).
    embed: b.upload(w.embed, 'embedding'),
    ...(w.positions ? { positions: b.upload(w.positions, 'embedding') } : {}),
    blocks: w.blocks.map((blk) => ({
      attnNorm: norm(blk.attnNorm), q: lin(blk.q), k: lin(blk.k), v: lin(blk.v), o: lin(blk.o),
      mlpNorm: norm(blk.mlpNorm), ...(blk.gate ? { gate: lin(blk.gate) } : {}), up: lin(blk.up), down: lin(blk.down),
    })),
    finalNorm: norm(w.finalNorm),
    lmHead,
  };
}

export interface LoadOptions {
  readonly backend?: Backend;
}

/**
 * Read config.json and the safetensors weights of a Hugging Face model directory. `unused` lists
 * stored tensors the architecture does not use (known buffers such as GPT-2's attn.bias excluded).
 */
export function loadWeights(dir: string): { config: ModelConfig; weights: LMWeights; unused: string[] } {
  if (!fs.existsSync(dir)) throw new ModelLoadError(`${dir}: no such directory`);
  if (!fs.statSync(dir).isDirectory()) throw new ModelLoadError(`${dir}: not a directory (expected a Hugging Face model directory)`);
  const config = loadConfig(dir);
  const files = WeightFiles.open(dir);
  try {
    const root = WeightLoader.root(files);
    const weights = config.family === 'gpt2' ? loadGpt2Weights(config, root) : loadLlamaWeights(config, root);
    const ignore = config.family === 'gpt2' ? isGpt2IgnoredBuffer : isLlamaIgnoredBuffer;
    return { config, weights, unused: root.unused(ignore) };
  } finally {
    files.close();
  }
}

export function loadModel(dir: string, opts: LoadOptions = {}): CausalLM {
  const { config, weights } = loadWeights(dir);
  return new CausalLM(config, weights, opts.backend ?? new CpuBackend(), dir);
}
