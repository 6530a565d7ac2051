/**
 * config.json → a typed model configuration, validated. Field names follow Hugging Face; every
 * failure names config.json, the field and what was expected.
 *
 * Example (stories260k, Llama family):
 *   { family: 'llama', vocabSize: 512, hiddenSize: 64, numLayers: 5, numHeads: 8, numKvHeads: 4,
 *     headDim: 8, intermediateSize: 172, maxPositions: 512, normEps: 1e-5, activation: 'silu',
 *     ropeTheta: 10000, attentionBias: false, mlpBias: false, tieWordEmbeddings: true }
 * Example (distilgpt2, GPT-2 family):
 *   { family: 'gpt2', vocabSize: 50257, hiddenSize: 768, numLayers: 6, numHeads: 12, numKvHeads: 12,
 *     headDim: 64, intermediateSize: 3072, maxPositions: 1024, normEps: 1e-5, activation: 'gelu_tanh' }
 */
import path from 'node:path';
import { ModelLoadError } from '../errors.js';
import { fileKind, readJsonObject } from '../io/files.js';
import type { Activation } from '../tensor/kernels/elementwise.js';
import type { RopeScaling } from '../tensor/kernels/rope.js';

export type ModelFamily = 'gpt2' | 'llama';

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
  readonly ropeTheta: number;
  readonly ropeScaling?: RopeScaling;
  readonly attentionBias: boolean;
  readonly mlpBias: boolean;
  readonly tieWordEmbeddings: boolean;
  readonly bosTokenId?: number;
  readonly eosTokenIds: readonly number[];
  /** config.json as read, for writing it back out. */
  readonly raw: Readonly<Record<string, unknown>>;
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
};

export function readConfigFile(dir: string): Record<string, unknown> {
  const file = path.join(dir, 'config.json');
  if (fileKind(file) === 'missing') throw new ModelLoadError(`${file}: not found (a model directory needs config.json)`);
  try {
    return readJsonObject(file, 'the model\'s config.json, a JSON object');
  } catch (err) {
    throw new ModelLoadError((err as Error).message);
  }
}

export function parseConfig(raw: Record<string, unknown>, file = 'config.json'): ModelConfig {
  const fail = (msg: string): never => {
    throw new ModelLoadError(`${file}: ${msg}`);
  };
  const modelType = raw.model_type;
  if (typeof modelType !== 'string') fail('missing "model_type"');
  const family = SUPPORTED_MODEL_TYPES[modelType as string];
  if (!family) fail(`unsupported model_type "${modelType}" (supported: ${Object.keys(SUPPORTED_MODEL_TYPES).join(', ')})`);

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

  let cfg: Omit<ModelConfig, 'raw' | 'eosTokenIds' | 'bosTokenId'>;
  if (family === 'gpt2') {
    const hiddenSize = int('n_embd');
    const numHeads = int('n_head');
    if (hiddenSize % numHeads !== 0) fail(`"n_embd" ${hiddenSize} is not divisible by "n_head" ${numHeads}`);
    const [activation, activationName] = activationOf('activation_function', 'gelu_new');
    const inner = raw.n_inner;
    cfg = {
      family, modelType: modelType as string,
      vocabSize: int('vocab_size'), hiddenSize, numLayers: int('n_layer'), numHeads, numKvHeads: numHeads,
      headDim: hiddenSize / numHeads,
      intermediateSize: inner === undefined || inner === null ? 4 * hiddenSize : int('n_inner'),
      maxPositions: int('n_positions', 1024), normEps: num('layer_norm_epsilon', 1e-5), activation, activationName,
      ropeTheta: 0, attentionBias: true, mlpBias: true, tieWordEmbeddings: bool('tie_word_embeddings', true),
    };
  } else {
    const hiddenSize = int('hidden_size');
    const numHeads = int('num_attention_heads');
    const numKvHeads = int('num_key_value_heads', numHeads);
    if (numHeads % numKvHeads !== 0) fail(`"num_attention_heads" ${numHeads} is not a multiple of "num_key_value_heads" ${numKvHeads}`);
    const headDim = raw.head_dim === undefined || raw.head_dim === null ? hiddenSize / numHeads : int('head_dim');
    if (!Number.isInteger(headDim)) fail(`"hidden_size" ${hiddenSize} is not divisible by "num_attention_heads" ${numHeads} and no "head_dim" is given`);
    if (headDim % 2 !== 0) fail(`head dimension ${headDim} must be even for rotary embeddings`);
    const [activation, activationName] = activationOf('hidden_act', 'silu');
    const pretrainingTp = raw.pretraining_tp;
    if (pretrainingTp !== undefined && pretrainingTp !== null && pretrainingTp !== 1) fail(`"pretraining_tp" ${JSON.stringify(pretrainingTp)} is not supported (only 1)`);
    cfg = {
      family, modelType: modelType as string,
      vocabSize: int('vocab_size'), hiddenSize, numLayers: int('num_hidden_layers'), numHeads, numKvHeads, headDim,
      intermediateSize: int('intermediate_size'), maxPositions: int('max_position_embeddings', 2048),
      normEps: num('rms_norm_eps', 1e-6), activation, activationName,
      ropeTheta: num('rope_theta', 10000), ropeScaling: parseRopeScaling(raw.rope_scaling, fail),
      attentionBias: bool('attention_bias', false), mlpBias: bool('mlp_bias', false),
      tieWordEmbeddings: bool('tie_word_embeddings', false),
    };
  }
  const bos = tokenIds('bos_token_id');
  return { ...cfg, bosTokenId: bos[0], eosTokenIds: tokenIds('eos_token_id'), raw };
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
