/**
 * A causal language model on a backend: GPT-2 or Llama, loaded from a Hugging Face directory.
 *
 * forward(ids, cache) is one straight sequence of primitive calls per block:
 *   GPT-2:  h = wte[ids] + wpe[pos];  per block: h += o(attn(ln1 h));  h += down(gelu(up(ln2 h)))
 *   Llama:  h = embed[ids];           per block: h += o(attn(rope(q), rope(k), v of rms1 h));
 *                                                h += down(silu(gate(rms2 h)) ⊙ up(rms2 h))
 *   logits = lmHead · norm(h)
 * On the device q|k|v and gate|up are each one fused projection (weights concatenated at upload),
 * qkvToCache splits q, k, v, applies RoPE and appends k, v to the KV cache, and residual adds ride
 * on the output projections: nine dispatches per block instead of eighteen.
 * Feeding a prompt whole or token by token gives the same logits (a test asserts it).
 */
import fs from 'node:fs';
import { ArgumentError, ModelLoadError } from '../errors.js';
import { WeightFiles } from '../io/safetensors.js';
import type { Backend, BTensor } from '../tensor/backend.js';
import { CpuBackend } from '../tensor/cpu-backend.js';
import { ropeInvFreq } from '../tensor/kernels/rope.js';
import { Tensor } from '../tensor/tensor.js';
import { type ModelConfig, loadConfig } from './config.js';
import { isGpt2IgnoredBuffer, loadGpt2Weights } from './gpt2.js';
import { KvCache } from './kv-cache.js';
import { isLlamaIgnoredBuffer, loadLlamaWeights } from './llama.js';
import { type LMWeights, type LinearWeights, type LoadProgress, type NormWeights, WeightLoader } from './weights.js';

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
  qkv: DeviceLinear; // [H·d + 2·Hkv·d, D]: q, k, v rows stacked
  o: DeviceLinear;
  mlpNorm: DeviceNorm;
  /** [2I, D]: gate rows then up rows (gated MLPs); `up` alone otherwise. */
  gateUp?: DeviceLinear;
  up?: DeviceLinear;
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
  /**
   * Replace the input of every linear layer before it is used: `at(site, x)` returns what the layer
   * sees. Sites are named as the spiking model's encoders (src/snn/sites.ts): layers.{l}.attn_in,
   * .o_in, .mlp_in, .down_in, and head_in. A quantizer here gives the independent reference a
   * spiking network is tested against.
   */
  readonly inputs?: (site: string, x: BTensor) => BTensor;
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
    const at = opts.inputs ?? ((_site: string, x: BTensor) => x);
    return b.tidy(() => {
      let h = b.embedding(w.embed, tokens);
      if (w.positions) h = b.add(h, b.embedding(w.positions, positions));
      for (let l = 0; l < cfg.numLayers; l++) h = this.block(l, h, positions, cache, at);
      cache.advance(S);
      const rows = opts.allLogits ? h : b.sliceRows(h, S - 1, S);
      return b.matmul(at('head_in', this.norm(rows, w.finalNorm)), w.lmHead);
    });
  }

  /**
   * Several sequences in one forward pass, as a left-padded batch: the rows are padded on the left to
   * the longest, run together (every matmul over all B·S rows; attention per row, masked so that no
   * query sees a padding key; positions counted from each row's first real token), and each row's
   * keys and values are then copied into a cache of its own, ready to continue that sequence alone.
   * Returns the logits of each row's last token, [B, V], and the caches.
   */
  forwardBatch(rows: readonly (readonly number[])[]): { logits: BTensor; caches: KvCache[] } {
    const B = rows.length;
    if (B === 0) throw new ArgumentError('forwardBatch: no rows');
    rows.forEach((r, i) => {
      if (r.length === 0) throw new ArgumentError(`forwardBatch: row ${i} has no tokens`);
    });
    const b = this.backend, cfg = this.config, w = this.dev;
    const S = Math.max(...rows.map((r) => r.length));
    if (S > cfg.maxPositions) throw new ArgumentError(`forwardBatch: ${S} tokens exceed the model's limit of ${cfg.maxPositions} positions`);
    const pads = Int32Array.from(rows, (r) => S - r.length);
    const tokens = new Int32Array(B * S), positions = new Int32Array(B * S);
    rows.forEach((r, i) => {
      // padding rows repeat the row's first token at position 0: masked out, they only need to be valid ids
      for (let s = 0; s < S; s++) {
        const real = s - pads[i]!;
        tokens[i * S + s] = r[Math.max(0, real)]!;
        positions[i * S + s] = Math.max(0, real);
      }
    });
    const batch = new KvCache(b, cfg.numLayers, cfg.numKvHeads * cfg.headDim, cfg.maxPositions, S, B);
    batch.reserve(S);
    const caches = rows.map((r) => {
      const c = this.newCache(r.length);
      c.reserve(r.length);
      return c;
    });
    const logits = b.tidy(() => {
      let h = b.embedding(w.embed, tokens);
      if (w.positions) h = b.add(h, b.embedding(w.positions, positions));
      const heads = { numHeads: cfg.numHeads, numKvHeads: cfg.numKvHeads, headDim: cfg.headDim };
      for (let l = 0; l < cfg.numLayers; l++) {
        const blk = w.blocks[l]!;
        const qkv = this.linear(this.norm(h, blk.attnNorm), blk.qkv);
        const q = b.qkvToCache(qkv, batch.keys(l), batch.values(l), { ...heads, positions, invFreq: this.invFreq, rowOffset: 0, batches: B, kvBatchStride: batch.capacity });
        const attn = b.attention(q, batch.keys(l), batch.values(l), {
          ...heads, queryStart: 0, kvLength: S, scale: 1 / Math.sqrt(cfg.headDim), batches: B, kvBatchStride: batch.capacity, keyStarts: pads,
        });
        h = this.linear(attn, blk.o, h);
        const m = this.norm(h, blk.mlpNorm);
        const hidden = blk.gateUp ? b.gatedActivation(cfg.activation, this.linear(m, blk.gateUp)) : b.activation(cfg.activation, this.linear(m, blk.up!));
        h = this.linear(hidden, blk.down, h);
        // each row's real keys and values into its own cache
        rows.forEach((r, i) => {
          const from = i * batch.capacity + pads[i]!;
          b.writeRows(caches[i]!.keys(l), b.sliceRows(batch.keys(l), from, from + r.length), 0);
          b.writeRows(caches[i]!.values(l), b.sliceRows(batch.values(l), from, from + r.length), 0);
        });
      }
      // the last row of each block (every block ends with its sequence's last token)
      const last = b.zeros([B, cfg.hiddenSize]);
      for (let i = 0; i < B; i++) b.writeRows(last, b.sliceRows(h, i * S + S - 1, i * S + S), i);
      return b.matmul(this.norm(last, w.finalNorm), w.lmHead);
    });
    batch.dispose();
    rows.forEach((r, i) => caches[i]!.advance(r.length));
    return { logits, caches };
  }

  private block(l: number, h: BTensor, positions: Int32Array, cache: KvCache, at: (site: string, x: BTensor) => BTensor): BTensor {
    const b = this.backend, cfg = this.config, w = this.dev.blocks[l]!;
    const start = positions[0]!;
    const x = at(`layers.${l}.attn_in`, this.norm(h, w.attnNorm));
    const qkv = this.linear(x, w.qkv);
    const q = b.qkvToCache(qkv, cache.keys(l), cache.values(l), {
      numHeads: cfg.numHeads, numKvHeads: cfg.numKvHeads, headDim: cfg.headDim, positions, invFreq: this.invFreq, rowOffset: start,
    });
    const attn = b.attention(q, cache.keys(l), cache.values(l), {
      numHeads: cfg.numHeads, numKvHeads: cfg.numKvHeads, headDim: cfg.headDim,
      queryStart: start, kvLength: start + positions.length, scale: 1 / Math.sqrt(cfg.headDim),
    });
    h = this.linear(at(`layers.${l}.o_in`, attn), w.o, h);
    const m = at(`layers.${l}.mlp_in`, this.norm(h, w.mlpNorm));
    const hidden = w.gateUp
      ? b.gatedActivation(cfg.activation, this.linear(m, w.gateUp))
      : b.activation(cfg.activation, this.linear(m, w.up!));
    return this.linear(at(`layers.${l}.down_in`, hidden), w.down, h);
  }

  /** x·wᵀ + b, plus `residual` when given (the fused residual add). */
  private linear(x: BTensor, w: DeviceLinear, residual?: BTensor): BTensor {
    return this.backend.matmul(x, w.weight, w.bias, residual);
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
  return {
    // A tied matrix is uploaded in both roles: backends pack a matmul weight and a gather table
    // differently (the CPU backend keeps one shared copy).
    embed: b.upload(w.embed, 'embedding'),
    ...(w.positions ? { positions: b.upload(w.positions, 'embedding') } : {}),
    blocks: w.blocks.map((blk) => ({
      attnNorm: norm(blk.attnNorm),
      qkv: lin(stackLinear([blk.q, blk.k, blk.v])),
      o: lin(blk.o),
      mlpNorm: norm(blk.mlpNorm),
      ...(blk.gate ? { gateUp: lin(stackLinear([blk.gate, blk.up])) } : { up: lin(blk.up) }),
      down: lin(blk.down),
    })),
    finalNorm: norm(w.finalNorm),
    lmHead: b.upload(w.lmHead, 'linear'),
  };
}

/**
 * Linear layers with the same input stacked into one ([Σ out, in]); missing biases count as zero.
 * Parts that are consecutive rows of one buffer (as the loaders lay q|k|v and gate|up out) are
 * returned as a view of it: no copy.
 */
export function stackLinear(parts: readonly LinearWeights[]): LinearWeights {
  const K = parts[0]!.weight.shape[1]!;
  const rows = parts.reduce((a, p) => a + p.weight.shape[0]!, 0);
  const weightView = contiguousView(parts.map((p) => p.weight.data), [rows, K]);
  const weight = weightView ?? new Tensor([rows, K]);
  const anyBias = parts.some((p) => p.bias);
  const biasView = anyBias && parts.every((p) => p.bias) ? contiguousView(parts.map((p) => p.bias!.data), [rows]) : undefined;
  const bias = biasView ?? (anyBias ? new Tensor([rows]) : undefined);
  let r = 0;
  for (const p of parts) {
    if (!weightView) weight.data.set(p.weight.data, r * K);
    if (!biasView && bias && p.bias) bias.data.set(p.bias.data, r);
    r += p.weight.shape[0]!;
  }
  return { weight, ...(bias ? { bias } : {}) };
}

/** A tensor over arrays that follow one another in one buffer, or undefined. */
function contiguousView(arrays: readonly Float32Array[], shape: readonly number[]): Tensor | undefined {
  const first = arrays[0]!;
  let end = first.byteOffset + first.byteLength;
  for (const a of arrays.slice(1)) {
    if (a.buffer !== first.buffer || a.byteOffset !== end) return undefined;
    end += a.byteLength;
  }
  return new Tensor(shape, new Float32Array(first.buffer, first.byteOffset, (end - first.byteOffset) / 4));
}

export interface LoadOptions {
  readonly backend?: Backend;
  /**
   * Load even if the files hold tensors the architecture does not use (by default that is an error:
   * a config.json with fewer layers than the weights would otherwise load and talk nonsense).
   */
  readonly allowUnused?: boolean;
  /** Called after each tensor is read: bytes read so far and in all (the files' tensors). */
  readonly onProgress?: LoadProgress;
}

export interface WeightsOptions {
  readonly allowUnused?: boolean;
  readonly onProgress?: LoadProgress;
  /** Stored tensors that belong to something else and are not "unused" (e.g. spikelm's `snn.*`). */
  readonly ignore?: (name: string) => boolean;
}

/**
 * Read config.json and the safetensors weights of a Hugging Face model directory. `unused` lists
 * stored tensors the architecture does not use (known buffers such as GPT-2's attn.bias excluded);
 * unless `allowUnused`, any such tensor is an error naming them.
 */
export function loadWeights(dir: string, opts: WeightsOptions = {}): { config: ModelConfig; weights: LMWeights; unused: string[] } {
  if (!fs.existsSync(dir)) throw new ModelLoadError(`${dir}: no such directory`);
  if (!fs.statSync(dir).isDirectory()) throw new ModelLoadError(`${dir}: not a directory (expected a Hugging Face model directory)`);
  const config = loadConfig(dir);
  const files = WeightFiles.open(dir);
  try {
    const root = WeightLoader.root(files, opts.onProgress);
    const weights = config.family === 'gpt2' ? loadGpt2Weights(config, root) : loadLlamaWeights(config, root);
    const known = config.family === 'gpt2' ? isGpt2IgnoredBuffer : isLlamaIgnoredBuffer;
    // a converted model's directory stores its spiking parameters beside the ANN (snn.thresholds.*)
    const unused = root.unused((n) => known(n) || n.startsWith('snn.') || (opts.ignore?.(n) ?? false));
    if (unused.length > 0 && !opts.allowUnused) {
      const shown = unused.slice(0, 3).map((n) => `"${n}"`).join(', ');
      throw new ModelLoadError(
        `${dir}: ${unused.length} stored tensor(s) are not used by the architecture config.json describes (${shown}${unused.length > 3 ? ', …' : ''}; config.json says ${config.numLayers} layers). ` +
        'The config does not match the weights; pass --allow-unused to load anyway',
      );
    }
    return { config, weights, unused };
  } finally {
    files.close();
  }
}

export function loadModel(dir: string, opts: LoadOptions = {}): CausalLM {
  const { config, weights } = loadWeights(dir, { allowUnused: opts.allowUnused, onProgress: opts.onProgress });
  return new CausalLM(config, weights, opts.backend ?? new CpuBackend(), dir);
}
