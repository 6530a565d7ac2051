/**
 * A causal language model on a backend: GPT-2 or Llama, loaded from a Hugging Face directory.
 *
 * forward(ids, cache) is one straight sequence of primitive calls per block, built from the
 * config's features (config.ts), never from the family's name:
 *   GPT-2:  h = wte[ids] + wpe[pos];  per block: h += o(attn(ln1 h));  h += down(gelu(up(ln2 h)))
 *   Llama:  h = embed[ids];           per block: h += o(attn(rope(q), rope(k), v of rms1 h));
 *                                                h += down(silu(gate(rms2 h)) ⊙ up(rms2 h))
 *   Qwen2:  Llama with q, k, v biases;  Qwen3: Llama with q, k ← rmsNorm per head before RoPE;
 *   Mistral: Llama whose queries see the last W keys (sliding window)
 *   OPT:    h = project_in(embed[ids]) + pos[p + 2]; pre-LN blocks as GPT-2 with ReLU, or post-LN:
 *           h = ln1(h + o(attn(h)));  h = ln2(h + down(relu(up(h))))
 *   logits = lmHead · project_out(norm(h))   (each of norm and project_out only where the model has it)
 * On the device q|k|v and gate|up are each one fused projection (weights concatenated at upload),
 * qkvToCache splits q, k, v, applies RoPE and appends k, v to the KV cache, and residual adds ride
 * on the output projections: nine dispatches per block instead of eighteen.
 * Feeding a prompt whole or token by token gives the same logits (a test asserts it).
 */
import fs from 'node:fs';
import { ArgumentError, ModelLoadError } from '../errors.js';
import { WeightFiles } from '../io/safetensors.js';
import { type Backend, type BTensor, type TokenIds, tokenCount, tokenIds } from '../tensor/backend.js';
import { CpuBackend } from '../tensor/cpu-backend.js';
import { ropeInvFreq } from '../tensor/kernels/rope.js';
import { type HalfFormat, HalfTensor, isHalf } from '../tensor/half.js';
import { Tensor, retainRoot } from '../tensor/tensor.js';
import type { TensorToWrite } from '../io/safetensors.js';
import type { AttentionParams } from '../tensor/kernels/attention.js';
import { type ModelConfig, loadConfig } from './config.js';
import { exportGpt2Tensors, isGpt2IgnoredBuffer, loadGpt2Weights } from './gpt2.js';
import { KvCache } from './kv-cache.js';
import { exportLlamaTensors, isLlamaIgnoredBuffer, loadLlamaWeights } from './llama.js';
import { exportOptTensors, loadOptWeights } from './opt.js';
import { type HostAllocator, type LMWeights, type LinearWeights, type LoadProgress, type NormWeights, WeightLoader, concatRows } from './weights.js';

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
  qNorm?: BTensor;
  kNorm?: BTensor;
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
  projectIn?: DeviceLinear;
  projectOut?: DeviceLinear;
  blocks: DeviceBlock[];
  finalNorm?: DeviceNorm;
  lmHead: BTensor;
}

export interface ForwardOptions {
  /** Return logits for every new position ([S, V]) instead of the last one ([1, V]). */
  readonly allLogits?: boolean;
  /**
   * Replace the input of every linear layer before it is used: `at(site, x)` returns what the layer
   * sees. Sites are named as the spiking model's encoders (src/snn/sites.ts): layers.{l}.attn_in,
   * .o_in, .mlp_in, .down_in, head_in, and proj_in / proj_out where the model has them. A quantizer here gives the independent reference a
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
    this.invFreq = config.rotary ? ropeInvFreq(config.headDim, config.ropeTheta, config.ropeScaling) : undefined;
  }

  newCache(initialCapacity?: number): KvCache {
    const c = this.config;
    return new KvCache(this.backend, c.numLayers, c.numKvHeads * c.headDim, c.maxPositions, initialCapacity);
  }

  /**
   * Feed `ids` after what `cache` holds; returns logits [1, V] (or [S, V] with allLogits). The ids may
   * be a backend tensor (a token sampled on the device: nn/generate.ts's decode loop).
   */
  forward(ids: Int32Array | readonly number[] | BTensor, cache: KvCache = this.newCache(), opts: ForwardOptions = {}): BTensor {
    const tokens = tokenIds(ids);
    const S = tokenCount(tokens);
    if (S === 0) throw new ArgumentError('forward: no input tokens (empty input)');
    const b = this.backend, cfg = this.config;
    const start = cache.length;
    cache.reserve(S);
    const positions = Int32Array.from({ length: S }, (_, i) => start + i);
    const at = opts.inputs ?? ((_site: string, x: BTensor) => x);
    const heads = { numHeads: cfg.numHeads, numKvHeads: cfg.numKvHeads, headDim: cfg.headDim };
    return b.tidy(() => {
      let h = this.embed(tokens, positions, at);
      for (let l = 0; l < cfg.numLayers; l++) {
        h = this.block(l, h, at, (qkv) => {
          const q = b.qkvToCache(qkv, cache.keys(l), cache.values(l), { ...heads, positions, invFreq: this.invFreq, rowOffset: start });
          return b.attention(q, cache.keys(l), cache.values(l), this.attentionParams({ queryStart: start, kvLength: start + S }));
        });
      }
      cache.advance(S);
      return this.head(opts.allLogits ? h : b.sliceRows(h, S - 1, S), at);
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
    const b = this.backend, cfg = this.config;
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
    const noSites = (_site: string, x: BTensor) => x;
    const logits = b.tidy(() => {
      let h = this.embed(tokens, positions, noSites);
      const heads = { numHeads: cfg.numHeads, numKvHeads: cfg.numKvHeads, headDim: cfg.headDim };
      for (let l = 0; l < cfg.numLayers; l++) {
        h = this.block(l, h, noSites, (qkv) => {
          const q = b.qkvToCache(qkv, batch.keys(l), batch.values(l), { ...heads, positions, invFreq: this.invFreq, rowOffset: 0, batches: B, kvBatchStride: batch.capacity });
          return b.attention(q, batch.keys(l), batch.values(l), this.attentionParams({ queryStart: 0, kvLength: S, batches: B, kvBatchStride: batch.capacity, keyStarts: pads }));
        });
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
      return this.head(last, noSites);
    });
    batch.dispose();
    rows.forEach((r, i) => caches[i]!.advance(r.length));
    return { logits, caches };
  }

  /** Token embeddings (through project_in where the model has it) plus learned positions. */
  private embed(tokens: TokenIds, positions: Int32Array, at: (site: string, x: BTensor) => BTensor): BTensor {
    const b = this.backend, w = this.dev;
    let h = b.embedding(w.embed, tokens);
    if (w.projectIn) h = this.linear(at('proj_in', h), w.projectIn);
    if (w.positions) h = b.add(h, b.embedding(w.positions, positionRows(this.config, positions)));
    return h;
  }

  /** Logits of the rows of h: lmHead · project_out(norm(h)), each part where the model has it. */
  private head(h: BTensor, at: (site: string, x: BTensor) => BTensor): BTensor {
    const w = this.dev;
    let x = w.finalNorm ? this.norm(h, w.finalNorm) : h;
    if (w.projectOut) x = this.linear(at('proj_out', x), w.projectOut);
    return this.backend.matmul(at('head_in', x), w.lmHead);
  }

  /** Attention over the model's heads, causal, within its sliding window if it has one. */
  private attentionParams(p: Pick<AttentionParams, 'queryStart' | 'kvLength'> & Partial<AttentionParams>): AttentionParams {
    const cfg = this.config;
    return {
      numHeads: cfg.numHeads, numKvHeads: cfg.numKvHeads, headDim: cfg.headDim, scale: 1 / Math.sqrt(cfg.headDim),
      ...(cfg.slidingWindow !== undefined ? { window: cfg.slidingWindow } : {}), ...p,
    };
  }

  /**
   * One block; `attend` turns the fused q|k|v projection (q/k-normed where the model has the norms)
   * into the attention output, writing k and v to whichever cache the caller keeps.
   */
  private block(l: number, h: BTensor, at: (site: string, x: BTensor) => BTensor, attend: (qkv: BTensor) => BTensor): BTensor {
    const b = this.backend, cfg = this.config, w = this.dev.blocks[l]!;
    const pre = !cfg.postNorm;
    const x = at(`layers.${l}.attn_in`, pre ? this.norm(h, w.attnNorm) : h);
    let qkv = this.linear(x, w.qkv);
    if (w.qNorm) qkv = b.qkNorm(qkv, w.qNorm, w.kNorm!, { numHeads: cfg.numHeads, numKvHeads: cfg.numKvHeads, headDim: cfg.headDim }, cfg.normEps);
    h = this.linear(at(`layers.${l}.o_in`, attend(qkv)), w.o, h);
    if (!pre) h = this.norm(h, w.attnNorm);
    const m = at(`layers.${l}.mlp_in`, pre ? this.norm(h, w.mlpNorm) : h);
    const hidden = w.gateUp
      ? b.gatedActivation(cfg.activation, this.linear(m, w.gateUp))
      : b.activation(cfg.activation, this.linear(m, w.up!));
    h = this.linear(at(`layers.${l}.down_in`, hidden), w.down, h);
    return pre ? h : this.norm(h, w.mlpNorm);
  }

  /** x·wᵀ + b, plus `residual` when given (the fused residual add). */
  private linear(x: BTensor, w: DeviceLinear, residual?: BTensor): BTensor {
    return this.backend.matmul(x, w.weight, w.bias, residual);
  }

  private norm(x: BTensor, w: DeviceNorm): BTensor {
    return this.config.norm === 'layer'
      ? this.backend.layerNorm(x, w.weight, w.bias, this.config.normEps)
      : this.backend.rmsNorm(x, w.weight, this.config.normEps);
  }
}

/** The rows of the learned position table that hold `positions` (OPT's table starts at offset 2). */
export function positionRows(cfg: ModelConfig, positions: Int32Array): Int32Array {
  return cfg.positionOffset === 0 ? positions : Int32Array.from(positions, (p) => p + cfg.positionOffset);
}

function uploadWeights(b: Backend, w: LMWeights): DeviceWeights {
  const lin = (l: LinearWeights): DeviceLinear => ({ weight: b.upload(l.weight, 'linear'), ...(l.bias ? { bias: b.upload(l.bias, 'vector') } : {}) });
  const norm = (n: NormWeights): DeviceNorm => ({ weight: b.upload(n.weight, 'vector'), ...(n.bias ? { bias: b.upload(n.bias, 'vector') } : {}) });
  return {
    // A tied matrix is uploaded in both roles: backends pack a matmul weight and a gather table
    // differently (the CPU backend keeps one shared copy).
    embed: b.upload(w.embed, 'embedding'),
    ...(w.positions ? { positions: b.upload(w.positions, 'embedding') } : {}),
    ...(w.projectIn ? { projectIn: lin(w.projectIn) } : {}),
    ...(w.projectOut ? { projectOut: lin(w.projectOut) } : {}),
    blocks: w.blocks.map((blk) => ({
      attnNorm: norm(blk.attnNorm),
      qkv: lin(stackLinear([blk.q, blk.k, blk.v])),
      ...(blk.qNorm && blk.kNorm ? { qNorm: b.upload(blk.qNorm.weight, 'vector'), kNorm: b.upload(blk.kNorm.weight, 'vector') } : {}),
      o: lin(blk.o),
      mlpNorm: norm(blk.mlpNorm),
      ...(blk.gate ? { gateUp: lin(stackLinear([blk.gate, blk.up])) } : { up: lin(blk.up) }),
      down: lin(blk.down),
    })),
    ...(w.finalNorm ? { finalNorm: norm(w.finalNorm) } : {}),
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
  const weights = parts.map((p) => p.weight), first = weights[0]!;
  const sameHalf = isHalf(first) && weights.every((w) => isHalf(w) && w.format === first.format);
  const weightView = sameHalf
    ? contiguousHalfView(weights.map((w) => (w as HalfTensor).bits), [rows, K], (first as HalfTensor).format)
    : weights.every((w) => !isHalf(w)) ? contiguousView(weights.map((w) => (w as Tensor).data), [rows, K]) : undefined;
  const weight = weightView ?? concatRows(weights);
  const anyBias = parts.some((p) => p.bias);
  const biasView = anyBias && parts.every((p) => p.bias) ? contiguousView(parts.map((p) => p.bias!.data), [rows]) : undefined;
  const bias = biasView ?? (anyBias ? new Tensor([rows]) : undefined);
  let r = 0;
  for (const p of parts) {
    if (!biasView && bias && p.bias) bias.data.set(p.bias.data, r);
    r += p.weight.shape[0]!;
  }
  return { weight, ...(bias ? { bias } : {}) };
}

/** A 16-bit tensor over arrays that follow one another in one buffer, or undefined. */
function contiguousHalfView(arrays: readonly Uint16Array[], shape: readonly number[], format: HalfFormat): HalfTensor | undefined {
  const first = arrays[0]!;
  let end = first.byteOffset + first.byteLength;
  for (const a of arrays.slice(1)) {
    if (a.buffer !== first.buffer || a.byteOffset !== end) return undefined;
    end += a.byteLength;
  }
  return new HalfTensor(shape, format, retainRoot(new Uint16Array(first.buffer, first.byteOffset, (end - first.byteOffset) / 2), arrays));
}

/** A tensor over arrays that follow one another in one buffer, or undefined. */
function contiguousView(arrays: readonly Float32Array[], shape: readonly number[]): Tensor | undefined {
  const first = arrays[0]!;
  let end = first.byteOffset + first.byteLength;
  for (const a of arrays.slice(1)) {
    if (a.buffer !== first.buffer || a.byteOffset !== end) return undefined;
    end += a.byteLength;
  }
  return new Tensor(shape, retainRoot(new Float32Array(first.buffer, first.byteOffset, (end - first.byteOffset) / 4), arrays));
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
  /** WeightsOptions.halfWeights */
  readonly halfWeights?: boolean;
}

export interface WeightsOptions {
  readonly allowUnused?: boolean;
  readonly onProgress?: LoadProgress;
  /** Stored tensors that belong to something else and are not "unused" (e.g. spikelm's `snn.*`). */
  readonly ignore?: (name: string) => boolean;
  /**
   * Keep BF16/F16 matrices (linear layers, embeddings) in their 16 bits on the host (src/tensor/half.ts);
   * default true. False widens them to float32 on load.
   */
  readonly halfWeights?: boolean;
  /** Where matrices are put (the CPU backend's wasm memory: `loadModel` passes it). */
  readonly allocator?: HostAllocator;
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
    const root = WeightLoader.root(files, opts.onProgress, opts.halfWeights ?? true, opts.allocator);
    const weights = config.family === 'gpt2' ? loadGpt2Weights(config, root) : config.family === 'opt' ? loadOptWeights(config, root) : loadLlamaWeights(config, root);
    const known = config.family === 'gpt2' ? isGpt2IgnoredBuffer : config.family === 'opt' ? () => false : isLlamaIgnoredBuffer;
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
  const backend = opts.backend ?? new CpuBackend();
  // on the CPU backend the matrices are read straight into the memory its kernels use: one copy
  const allocator = backend instanceof CpuBackend ? backend.hostAllocator() : undefined;
  const { config, weights } = loadWeights(dir, {
    allowUnused: opts.allowUnused, onProgress: opts.onProgress, ...(opts.halfWeights !== undefined ? { halfWeights: opts.halfWeights } : {}), ...(allocator ? { allocator } : {}),
  });
  return new CausalLM(config, weights, backend, dir);
}

/** The ANN weights under their Hugging Face names and layouts (the inverse of each family's name table). */
export function exportHfTensors(cfg: ModelConfig, w: LMWeights): TensorToWrite[] {
  return cfg.family === 'gpt2' ? exportGpt2Tensors(cfg, w) : cfg.family === 'opt' ? exportOptTensors(w) : exportLlamaTensors(w);
}
