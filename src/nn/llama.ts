/**
 * The Llama block (SmolLM2, TinyLlama, the TinyStories models) and the families that are Llama blocks
 * with a few differences, read by this one loader: RMSNorm, rotary positions (rotate-half),
 * grouped-query attention, SwiGLU MLP; what differs is in ModelConfig (config.ts) as features:
 *   llama    q/k/v/o biases with attention_bias, gate/up/down biases with mlp_bias
 *   qwen2    (Qwen2, Qwen2.5) biases on q_proj, k_proj, v_proj only
 *   qwen3    self_attn.q_norm / k_norm [d]: per-head RMSNorm after the projection, before RoPE
 *   mistral  no weight differs; sliding_window limits attention (the forward reads it)
 * One loader rather than four near-copies: a reader audits the differences as the few flags below
 * instead of diffing files.
 *
 * Name table (Hugging Face key → our weight; layouts are already nn.Linear [out, in]):
 *   model.embed_tokens.weight                 [V, D]      embed
 *   model.layers.{i}.input_layernorm.weight   [D]         attnNorm
 *   model.layers.{i}.self_attn.q_proj.*       [H·d, D]    q   (bias: ModelConfig.bias.q)
 *   model.layers.{i}.self_attn.k_proj.*       [Hkv·d, D]  k   (bias.k)
 *   model.layers.{i}.self_attn.v_proj.*       [Hkv·d, D]  v   (bias.v)
 *   model.layers.{i}.self_attn.q_norm.weight  [d]         qNorm (qwen3 only)
 *   model.layers.{i}.self_attn.k_norm.weight  [d]         kNorm (qwen3 only)
 *   model.layers.{i}.self_attn.o_proj.*       [D, H·d]    o   (bias.o)
 *   model.layers.{i}.post_attention_layernorm.weight [D]  mlpNorm
 *   model.layers.{i}.mlp.gate_proj.*          [I, D]      gate (bias.mlp, as up and down)
 *   model.layers.{i}.mlp.up_proj.*            [I, D]      up
 *   model.layers.{i}.mlp.down_proj.*          [D, I]      down
 *   model.norm.weight                         [D]         finalNorm
 *   lm_head.weight                            [V, D]      lmHead; with tie_word_embeddings the two
 *       are one tensor, stored under either name (or under one, aliased in __metadata__)
 *   model.layers.{i}.self_attn.rotary_emb.inv_freq   buffer: ignored (recomputed from rope_theta)
 */
import { ModelLoadError } from '../errors.js';
import type { TensorToWrite } from '../io/safetensors.js';
import { Tensor, subview } from '../tensor/tensor.js';
import { type WeightTensor, isHalf } from '../tensor/half.js';
import type { ModelConfig } from './config.js';
import { type BlockWeights, type LMWeights, type LinearWeights, WeightLoader, tensorToWrite } from './weights.js';

export function isLlamaIgnoredBuffer(name: string): boolean {
  return name.endsWith('rotary_emb.inv_freq');
}

export function loadLlamaWeights(cfg: ModelConfig, root: WeightLoader): LMWeights {
  const D = cfg.hiddenSize, I = cfg.intermediateSize, V = cfg.vocabSize;
  const qDim = cfg.numHeads * cfg.headDim, kvDim = cfg.numKvHeads * cfg.headDim;
  const model = root.pp('model');
  const linear = (p: WeightLoader, out: number, inF: number, withBias: boolean): LinearWeights => ({
    weight: p.matrix('weight', [out, inF]),
    ...(withBias ? { bias: p.get('bias', [out]) } : {}),
  });
  /**
   * Linear layers that share an input, read into consecutive rows of one buffer (stacked for free
   * later); a part without a bias has zeros in the shared bias buffer and no bias of its own.
   */
  const stacked = (parts: readonly [WeightLoader, number, boolean][], inF: number): LinearWeights[] => {
    const rows = parts.reduce((a, [, out]) => a + out, 0);
    // 16-bit rows where every part is stored in the same 16-bit format, else float32
    const format = parts.map(([p]) => p.halfFormat('weight')).reduce((a, f) => (a === f ? a : undefined));
    const w = format ? root.newHalf([rows, inF], format) : root.newTensor([rows, inF]);
    const b = parts.some(([, , withBias]) => withBias) ? new Tensor([rows]) : undefined;
    let r = 0;
    return parts.map(([p, out, withBias]) => {
      const from = r * inF, to = (r + out) * inF;
      const weight = isHalf(w) ? p.matrix('weight', [out, inF], subview(w.bits, from, to)) : p.get('weight', [out, inF], subview(w.data, from, to));
      const bias = b && withBias ? p.get('bias', [out], b.data.subarray(r, r + out)) : undefined;
      r += out;
      return { weight, ...(bias ? { bias } : {}) };
    });
  };
  const rmsNorm = (p: WeightLoader, dim = D) => ({ weight: p.get('weight', [dim]) });
  const bias = cfg.bias;

  const blocks: BlockWeights[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    const l = model.pp(`layers.${i}`);
    const attn = l.pp('self_attn'), mlp = l.pp('mlp');
    const [q, k, v] = stacked([[attn.pp('q_proj'), qDim, bias.q], [attn.pp('k_proj'), kvDim, bias.k], [attn.pp('v_proj'), kvDim, bias.v]], D);
    const [gate, up] = stacked([[mlp.pp('gate_proj'), I, bias.mlp], [mlp.pp('up_proj'), I, bias.mlp]], D);
    blocks.push({
      attnNorm: rmsNorm(l.pp('input_layernorm')),
      q: q!, k: k!, v: v!,
      ...(cfg.qkNorm ? { qNorm: rmsNorm(attn.pp('q_norm'), cfg.headDim), kNorm: rmsNorm(attn.pp('k_norm'), cfg.headDim) } : {}),
      o: linear(attn.pp('o_proj'), D, qDim, bias.o),
      mlpNorm: rmsNorm(l.pp('post_attention_layernorm')),
      gate: gate!, up: up!,
      down: linear(mlp.pp('down_proj'), D, I, bias.mlp),
    });
  }

  const hasEmbed = model.has('embed_tokens.weight');
  const hasHead = root.has('lm_head.weight');
  let embed, lmHead;
  if (cfg.tieWordEmbeddings) {
    if (!hasEmbed && !hasHead) throw new ModelLoadError(`${root.dir}: missing tensor "model.embed_tokens.weight" (or the tied "lm_head.weight") of shape [${V}, ${D}]`);
    embed = hasEmbed ? model.matrix('embed_tokens.weight', [V, D]) : root.matrix('lm_head.weight', [V, D]);
    lmHead = embed;
  } else {
    embed = model.matrix('embed_tokens.weight', [V, D]);
    if (!hasHead) throw new ModelLoadError(`${root.dir}: missing tensor "lm_head.weight" of shape [${V}, ${D}] (config.json says tie_word_embeddings is false)`);
    lmHead = root.matrix('lm_head.weight', [V, D]);
  }
  return { embed, blocks, finalNorm: rmsNorm(model.pp('norm')), lmHead };
}

/** The inverse of the name table. */
export function exportLlamaTensors(w: LMWeights): TensorToWrite[] {
  const out: TensorToWrite[] = [];
  const put = (name: string, t: WeightTensor | undefined) => {
    if (t) out.push(tensorToWrite(name, t));
  };
  put('model.embed_tokens.weight', w.embed);
  w.blocks.forEach((b, i) => {
    const p = `model.layers.${i}`;
    put(`${p}.input_layernorm.weight`, b.attnNorm.weight);
    for (const [name, l] of [['q_proj', b.q], ['k_proj', b.k], ['v_proj', b.v], ['o_proj', b.o]] as const) {
      put(`${p}.self_attn.${name}.weight`, l.weight);
      put(`${p}.self_attn.${name}.bias`, l.bias);
    }
    put(`${p}.self_attn.q_norm.weight`, b.qNorm?.weight);
    put(`${p}.self_attn.k_norm.weight`, b.kNorm?.weight);
    put(`${p}.post_attention_layernorm.weight`, b.mlpNorm.weight);
    for (const [name, l] of [['gate_proj', b.gate], ['up_proj', b.up], ['down_proj', b.down]] as const) {
      put(`${p}.mlp.${name}.weight`, l?.weight);
      put(`${p}.mlp.${name}.bias`, l?.bias);
    }
  });
  put('model.norm.weight', w.finalNorm?.weight);
  if (w.lmHead !== w.embed) put('lm_head.weight', w.lmHead);
  return out;
}
