/**
 * config.json → a typed model configuration, validated. Field names follow Hugging Face; every
 * failure names config.json, the field and what was expected.
 *
 * Example (stories260k, Llama family):
 *   { family: 'llama', vocabSize: 512, hiddenSize: 64, numLayers: 5, numHeads: 8, numKvHeads: 4,
 *     headDim: 8, intermediateSize: 172, maxPositions: 512, normEps: 1e-5, activation: 'silu',
 *     norm: 'rms', gatedMlp: true, rotary: true, ropeTheta: 10000, tieWordEmbeddings: true, … }
 * Example (distilgpt2, GPT-2 family):
 *   { family: 'gpt2', vocabSize: 50257, hiddenSize: 768, numLayers: 6, numHeads: 12, numKvHeads: 12,
 *     headDim: 64, intermediateSize: 3072, maxPositions: 1024, normEps: 1e-5, activation: 'gelu_tanh',
 *     norm: 'layer', gatedMlp: false, rotary: false, positionOffset: 0, … }
 * Example (facebook/opt-350m, OPT family, post-LN with projections):
 *   { family: 'opt', vocabSize: 50272, hiddenSize: 1024, numLayers: 24, numHeads: 16, headDim: 64,
 *     intermediateSize: 4096, maxPositions: 2048, normEps: 1e-5, activation: 'relu', norm: 'layer',
 *     positionOffset: 2, postNorm: true, finalNorm: false, embedDim: 512, bias: { q…mlp: true }, … }
 * Example (Qwen/Qwen3-0.6B): { family: 'qwen3', hiddenSize: 1024, numHeads: 16, numKvHeads: 8,
 *     headDim: 128, qkNorm: true, ropeTheta: 1e6, tieWordEmbeddings: true, … }
 */
import path from 'node:path';
import { ModelLoadError } from '../errors.js';
import { fileKind, readJsonObject } from '../io/files.js';
import type { Activation } from '../tensor/kernels/elementwise.js';
import type { RopeScaling } from '../tensor/kernels/rope.js';

export type ModelFamily = 'gpt2' | 'llama' | 'qwen2' | 'qwen3' | 'mistral' | 'opt';

export type NormKind = 'layer' | 'rms';

/** Which projections carry a bias (Qwen2: q, k, v but not o; GPT-2 and OPT: all; Llama: per config). */
export interface ProjectionBias {
  readonly q: boolean;
  readonly k: boolean;
  readonly v: boolean;
  readonly o: boolean;
  /** gate/up and down (fc1 and fc2). */
  readonly mlp: boolean;
}

/**
 * A model's shape and the features its blocks are made of. Code outside src/nn asks for features
 * (norm kind, gated MLP, rotary or learned positions, post-LN, q/k norms, window, biases), never for
 * the family: the family names only which loader reads the weights and which config.json keys say so.
 */
export interface ModelConfig {
  readonly family: ModelFamily;
  readonly modelType: string;
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly intermediateSize: number;
  readonly maxPositions: number;
  readonly normEps: number;
  readonly activation: Activation;
  /** The activation's name as config.json spells it (`gelu_new`, `silu`, …). */
  readonly activationName: string;
  /** The config.json key that names the activation (`activation_function` or `hidden_act`). */
  readonly activationKey: string;
  /** LayerNorm (mean and variance, optional bias) or RMSNorm. */
  readonly norm: NormKind;
  /** MLP down(act(gate(x)) ⊙ up(x)) (Llama-style) instead of down(act(up(x))). */
  readonly gatedMlp: boolean;
  /** Rotary positions on q and k (else learned positions added to the embedding). */
  readonly rotary: boolean;
  /** Learned positions: the table row of position p is p + positionOffset (OPT: 2; GPT-2: 0). */
  readonly positionOffset: number;
  /** Post-LN blocks (OPT's do_layer_norm_before false): h = norm(h + f(h)) instead of h + f(norm(h)). */
  readonly postNorm: boolean;
  /** A norm before the LM head (absent in post-LN OPT). */
  readonly finalNorm: boolean;
  /** Per-head RMSNorm on q and k after the projection, before RoPE (Qwen3), eps = normEps. */
  readonly qkNorm: boolean;
  /** A query at position i sees keys i − W < j ≤ i (Mistral); undefined: full causal attention. */
  readonly slidingWindow?: number;
  readonly bias: ProjectionBias;
  /**
   * Width of the token embedding and the LM head's input (OPT's word_embed_proj_dim); when it differs
   * from hiddenSize, project_in [D, E] follows the embedding and project_out [E, D] precedes the head.
   */
  readonly embedDim: number;
  readonly ropeTheta: number;
  readonly ropeScaling?: RopeScaling;
  readonly tieWordEmbeddings: boolean;
  readonly bosTokenId?: number;
  readonly eosTokenIds: readonly number[];
  /** config.json as read, for writing it back out. */
  readonly raw: Readonly<Record<string, unknown>>;
}

/**
 * Keys attended by S queries at positions start … start+S−1: each sees the keys up to its own
 * position, the last W of them within a sliding window.
 */
export function keysAttended(c: Pick<ModelConfig, 'slidingWindow'>, start: number, S: number): number {
  const W = c.slidingWindow;
  if (W === undefined) return S * start + (S * (S + 1)) / 2;
  let n = 0;
  for (let p = start; p < start + S; p++) n += Math.min(W, p + 1);
  return n;
}

/** The block's features in words (for `spikelm info`): what the forward of this config does. */
export function describeFeatures(c: ModelConfig): string[] {
  const biases = (['q', 'k', 'v', 'o', 'mlp'] as const).filter((k) => c.bias[k]);
  return [
    `${c.postNorm ? 'post' : 'pre'}-${c.norm === 'layer' ? 'LayerNorm' : 'RMSNorm'} (eps ${c.normEps})${c.finalNorm ? '' : ', no final norm'}`,
    c.gatedMlp ? `gated MLP (${c.activationName})` : `MLP (${c.activationName})`,
    c.rotary ? `RoPE θ ${c.ropeTheta}${c.ropeScaling ? ` (${c.ropeScaling.type} scaling ×${c.ropeScaling.factor})` : ''}` : `learned positions${c.positionOffset ? ` (offset ${c.positionOffset})` : ''}`,
    ...(c.qkNorm ? ['q/k RMSNorm per head'] : []),
    c.slidingWindow !== undefined ? `sliding window ${c.slidingWindow}` : 'full causal attention',
    biases.length ? `biases on ${biases.join(', ')}` : 'no biases',
    ...(hasProjections(c) ? [`project_in/out (embeddings ${c.embedDim} wide)`] : []),
    c.tieWordEmbeddings ? 'tied head' : 'untied head',
  ];
}

/** project_in / project_out exist (embedDim ≠ hiddenSize). */
export function hasProjections(c: ModelConfig): boolean {
  return c.embedDim !== c.hiddenSize;
}

/** Hugging Face activation names → kernels. */
export const ACTIVATION_NAMES: Readonly<Record<string, Activation>> = {
  gelu_new: 'gelu_tanh',
  gelu_pytorch_tanh: 'gelu_tanh',
  gelu_fast: 'gelu_tanh',
  gelu: 'gelu_erf',
  quick_gelu: 'gelu_quick',
  silu: 'silu',
  swish: 'silu',
  relu: 'relu',
};

export const SUPPORTED_MODEL_TYPES: Readonly<Record<string, ModelFamily>> = {
  gpt2: 'gpt2',
  llama: 'llama',
  qwen2: 'qwen2',
  qwen3: 'qwen3',
  mistral: 'mistral',
  opt: 'opt',
};

/** Fields that mean a mixture-of-experts MLP, which no loader here reads. */
const MOE_FIELDS = ['num_experts', 'num_local_experts', 'n_routed_experts', 'moe_intermediate_size'] as const;

export function readConfigFile(dir: string): Record<string, unknown> {
  const file = path.join(dir, 'config.json');
  if (fileKind(file) === 'missing') throw new ModelLoadError(`${file}: not found (a model directory needs config.json)`);
  try {
    return readJsonObject(file, 'the model\'s config.json, a JSON object');
  } catch (err) {
    throw new ModelLoadError((err as Error).message);
  }
}

type Base = Omit<ModelConfig, 'raw' | 'eosTokenIds' | 'bosTokenId'>;

export function parseConfig(raw: Record<string, unknown>, file = 'config.json'): ModelConfig {
  const fail = (msg: string): never => {
    throw new ModelLoadError(`${file}: ${msg}`);
  };
  const modelType = raw.model_type;
  if (typeof modelType !== 'string') fail('missing "model_type"');
  const family = SUPPORTED_MODEL_TYPES[modelType as string];
  if (!family) fail(`unsupported model_type "${modelType}" (supported: ${Object.keys(SUPPORTED_MODEL_TYPES).join(', ')})`);
  for (const key of MOE_FIELDS) {
    const v = raw[key];
    if (v !== undefined && v !== null && v !== 0) fail(`"${key}" ${JSON.stringify(v)}: mixture-of-experts models are not supported (only dense MLPs)`);
  }

  const int = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) fail(`"${key}" must be a positive integer, got ${JSON.stringify(raw[key])}`);
    return v as number;
  };
  const num = (key: string, fallback: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fail(`"${key}" must be a positive number, got ${JSON.stringify(raw[key])}`);
    return v as number;
  };
  const bool = (key: string, fallback: boolean): boolean => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'boolean') fail(`"${key}" must be true or false, got ${JSON.stringify(raw[key])}`);
    return v as boolean;
  };
  const activationOf = (key: string, fallback: string): [Activation, string] => {
    const name = raw[key] ?? fallback;
    const act = typeof name === 'string' ? ACTIVATION_NAMES[name] : undefined;
    if (!act) fail(`unsupported "${key}" ${JSON.stringify(name)} (supported: ${Object.keys(ACTIVATION_NAMES).join(', ')})`);
    return [act as Activation, name as string];
  };
  const tokenIds = (key: string): number[] => {
    const v = raw[key];
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    for (const id of list) if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) fail(`"${key}" must be a token id or a list of them`);
    return list as number[];
  };
  const ctx: Parse = { raw, fail, int, num, bool, activationOf };
  const cfg: Base = family === 'gpt2' ? gpt2Config(ctx) : family === 'opt' ? optConfig(ctx) : llamaLikeConfig(family as LlamaLike, ctx);
  const bos = tokenIds('bos_token_id');
  return { ...cfg, bosTokenId: bos[0], eosTokenIds: tokenIds('eos_token_id'), raw };
}

interface Parse {
  readonly raw: Record<string, unknown>;
  fail(msg: string): never;
  int(key: string, fallback?: number): number;
  num(key: string, fallback: number): number;
  bool(key: string, fallback: boolean): boolean;
  activationOf(key: string, fallback: string): [Activation, string];
}

const ALL_BIASES: ProjectionBias = { q: true, k: true, v: true, o: true, mlp: true };

function gpt2Config({ raw, fail, int, num, bool, activationOf }: Parse): Base {
  const hiddenSize = int('n_embd');
  const numHeads = int('n_head');
  if (hiddenSize % numHeads !== 0) fail(`"n_embd" ${hiddenSize} is not divisible by "n_head" ${numHeads}`);
  const [activation, activationName] = activationOf('activation_function', 'gelu_new');
  const inner = raw.n_inner;
  return {
    family: 'gpt2', modelType: 'gpt2',
    vocabSize: int('vocab_size'), hiddenSize, numLayers: int('n_layer'), numHeads, numKvHeads: numHeads,
    headDim: hiddenSize / numHeads,
    intermediateSize: inner === undefined || inner === null ? 4 * hiddenSize : int('n_inner'),
    maxPositions: int('n_positions', 1024), normEps: num('layer_norm_epsilon', 1e-5), activation, activationName, activationKey: 'activation_function',
    norm: 'layer', gatedMlp: false, rotary: false, positionOffset: 0, postNorm: false, finalNorm: true, qkNorm: false,
    bias: ALL_BIASES, embedDim: hiddenSize,
    ropeTheta: 0, tieWordEmbeddings: bool('tie_word_embeddings', true),
  };
}

/**
 * OPT (facebook/opt-*): LayerNorm (eps 1e-5, fixed in the modeling code), ReLU, biases everywhere,
 * learned positions at offset 2, pre-LN or post-LN (opt-350m), project_in/out when
 * word_embed_proj_dim ≠ hidden_size.
 */
function optConfig({ fail, int, bool, activationOf }: Parse): Base {
  const hiddenSize = int('hidden_size');
  const numHeads = int('num_attention_heads');
  if (hiddenSize % numHeads !== 0) fail(`"hidden_size" ${hiddenSize} is not divisible by "num_attention_heads" ${numHeads}`);
  if (!bool('enable_bias', true)) fail('"enable_bias" false is not supported (OPT layers without biases)');
  if (!bool('layer_norm_elementwise_affine', true)) fail('"layer_norm_elementwise_affine" false is not supported (LayerNorms without weight and bias)');
  const preLN = bool('do_layer_norm_before', true);
  const [activation, activationName] = activationOf('activation_function', 'relu');
  return {
    family: 'opt', modelType: 'opt',
    vocabSize: int('vocab_size'), hiddenSize, numLayers: int('num_hidden_layers'), numHeads, numKvHeads: numHeads,
    headDim: hiddenSize / numHeads, intermediateSize: int('ffn_dim'), maxPositions: int('max_position_embeddings', 2048),
    normEps: 1e-5, activation, activationName, activationKey: 'activation_function',
    norm: 'layer', gatedMlp: false, rotary: false, positionOffset: 2, postNorm: !preLN,
    finalNorm: preLN && !bool('_remove_final_layer_norm', false), qkNorm: false,
    bias: ALL_BIASES, embedDim: int('word_embed_proj_dim', hiddenSize),
    ropeTheta: 0, tieWordEmbeddings: bool('tie_word_embeddings', true),
  };
}

type LlamaLike = 'llama' | 'qwen2' | 'qwen3' | 'mistral';

/**
 * The Llama block and its relatives, with their differences as features:
 *   llama    attention_bias (q, k, v, o), mlp_bias, head_dim optional
 *   qwen2    biases on q, k, v only; use_sliding_window refused (it is per layer, from max_window_layers)
 *   qwen3    q_norm / k_norm per head; head_dim explicit (128 when absent, as transformers' default);
 *            attention_bias optional; use_sliding_window refused
 *   mistral  sliding_window (4096 when absent, as transformers' default; null: full attention)
 */
function llamaLikeConfig(family: LlamaLike, { raw, fail, int, num, bool, activationOf }: Parse): Base {
  const hiddenSize = int('hidden_size');
  const numHeads = int('num_attention_heads');
  const numKvHeads = int('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) fail(`"num_attention_heads" ${numHeads} is not a multiple of "num_key_value_heads" ${numKvHeads}`);
  const given = raw.head_dim !== undefined && raw.head_dim !== null;
  const headDim = given ? int('head_dim') : family === 'qwen3' ? 128 : hiddenSize / numHeads;
  if (!Number.isInteger(headDim)) fail(`"hidden_size" ${hiddenSize} is not divisible by "num_attention_heads" ${numHeads} and no "head_dim" is given`);
  if (headDim % 2 !== 0) fail(`head dimension ${headDim} must be even for rotary embeddings`);
  const [activation, activationName] = activationOf('hidden_act', 'silu');
  const pretrainingTp = raw.pretraining_tp;
  if (pretrainingTp !== undefined && pretrainingTp !== null && pretrainingTp !== 1) fail(`"pretraining_tp" ${JSON.stringify(pretrainingTp)} is not supported (only 1)`);
  if ((family === 'qwen2' || family === 'qwen3') && bool('use_sliding_window', false)) {
    fail(`"use_sliding_window" true is not supported for ${family} (its window applies per layer from "max_window_layers"; only full attention is built)`);
  }
  let bias: ProjectionBias, slidingWindow: number | undefined;
  if (family === 'qwen2') {
    bias = { q: true, k: true, v: true, o: false, mlp: false };
  } else {
    const attn = bool('attention_bias', false);
    bias = { q: attn, k: attn, v: attn, o: attn, mlp: family === 'llama' ? bool('mlp_bias', false) : false };
  }
  if (family === 'mistral') {
    const w = raw.sliding_window === undefined ? 4096 : raw.sliding_window;
    slidingWindow = w === null ? undefined : int('sliding_window', 4096);
  }
  return {
    family, modelType: family,
    vocabSize: int('vocab_size'), hiddenSize, numLayers: int('num_hidden_layers'), numHeads, numKvHeads, headDim,
    intermediateSize: int('intermediate_size'), maxPositions: int('max_position_embeddings', family === 'llama' ? 2048 : 32768),
    normEps: num('rms_norm_eps', 1e-6), activation, activationName, activationKey: 'hidden_act',
    norm: 'rms', gatedMlp: true, rotary: true, positionOffset: 0, postNorm: false, finalNorm: true, qkNorm: family === 'qwen3',
    ...(slidingWindow !== undefined ? { slidingWindow } : {}),
    bias, embedDim: hiddenSize,
    ropeTheta: num('rope_theta', family === 'qwen2' || family === 'qwen3' ? 1e6 : 10000), ropeScaling: parseRopeScaling(raw.rope_scaling, fail),
    tieWordEmbeddings: bool('tie_word_embeddings', false),
  };
}

function parseRopeScaling(v: unknown, fail: (msg: string) => never): RopeScaling | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) fail('"rope_scaling" must be an object or null');
  const s = v as Record<string, unknown>;
  const type = s.rope_type ?? s.type;
  if (type === 'default') return undefined;
  if (type !== 'linear' && type !== 'llama3') fail(`unsupported rope_scaling type ${JSON.stringify(type)} (supported: linear, llama3)`);
  const factor = s.factor;
  if (typeof factor !== 'number' || !(factor > 0)) fail('"rope_scaling.factor" must be a positive number');
  const opt = (key: string): number | undefined => (typeof s[key] === 'number' ? (s[key] as number) : undefined);
  return {
    type: type as 'linear' | 'llama3', factor: factor as number,
    lowFreqFactor: opt('low_freq_factor'), highFreqFactor: opt('high_freq_factor'),
    originalMaxPositionEmbeddings: opt('original_max_position_embeddings'),
  };
}

export function loadConfig(dir: string): ModelConfig {
  return parseConfig(readConfigFile(dir), path.join(dir, 'config.json'));
}
