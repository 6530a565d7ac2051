/**
 * Llama family (SmolLM2, TinyLlama, the TinyStories models): RMSNorm, rotary positions
 * (rotate-half), grouped-query attention, SwiGLU MLP.
 *
 * Name table (Hugging Face key → our weight; layouts are already nn.Linear [out, in]):
 *   model.embed_tokens.weight                 [V, D]      embed
 *   model.layers.{i}.input_layernorm.weight   [D]         attnNorm
 *   model.layers.{i}.self_attn.q_proj.*       [H·d, D]    q   (bias only with attention_bias)
 *   model.layers.{i}.self_attn.k_proj.*       [Hkv·d, D]  k
 *   model.layers.{i}.self_attn.v_proj.*       [Hkv·d, D]  v
 *   model.layers.{i}.self_attn.o_proj.*       [D, H·d]    o
 *   model.layers.{i}.post_attention_layernorm.weight [D]  mlpNorm
 *   model.layers.{i}.mlp.gate_proj.*          [I, D]      gate (bias only with mlp_bias)
 *   model.layers.{i}.mlp.up_proj.*            [I, D]      up
 *   model.layers.{i}.mlp.down_proj.*          [D, I]      down
 *   model.norm.weight                         [D]         finalNorm
 *   lm_head.weight                            [V, D]      lmHead; with tie_word_embeddings the two
 *       are one tensor, stored under either name (or under one, aliased in __metadata__)
 *   model.layers.{i}.self_attn.rotary_emb.inv_freq   buffer: ignored (recomputed from rope_theta)
 */
import { ModelLoadError } from '../errors.js';
import { Tensor } from '../tensor/tensor.js';
import type { ModelConfig } from './config.js';
import { type BlockWeights, type LMWeights, type LinearWeights, WeightLoader } from './weights.js';

export function isLlamaIgnoredBuffer(name: string): boolean {
  return name.endsWith('rotary_emb.inv_freq');
}

export function loadLlamaWeights(cfg: ModelConfig, root: WeightLoader): LMWeights {
  const D = cfg.hiddenSize, I = cfg.intermediateSize, V = cfg.vocabSize;
  const qDim = cfg.numHeads * cfg.headDim, kvDim = cfg.numKvHeads * cfg.headDim;
  const model = root.pp('model');
  const linear = (p: WeightLoader, out: number, inF: number, withBias: boolean): LinearWeights => ({
    weight: p.get('weight', [out, inF]),
    ...(withBias ? { bias: p.get('bias', [out]) } : {}),
  });
  /** Linear layers that share an input, read into consecutive rows of one buffer (stacked for free later). */
  const stacked = (parts: readonly [WeightLoader, number][], inF: number, withBias: boolean): LinearWeights[] => {
    const rows = parts.reduce((a, [, out]) => a + out, 0);
    const w = new Tensor([rows, inF]), b = withBias ? new Tensor([rows]) : undefined;
    let r = 0;
    return parts.map(([p, out]) => {
      const weight = p.get('weight', [out, inF], w.data.subarray(r * inF, (r + out) * inF));
      const bias = b ? p.get('bias', [out], b.data.subarray(r, r + out)) : undefined;
      r += out;
      return { weight, ...(bias ? { bias } : {}) };
    });
  };
  const rmsNorm = (p: WeightLoader) => ({ weight: p.get('weight', [D]) });

  const blocks: BlockWeights[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    const l = model.pp(`layers.${i}`);
    const attn = l.pp('self_attn'), mlp = l.pp('mlp');
    const [q, k, v] = stacked([[attn.pp('q_proj'), qDim], [attn.pp('k_proj'), kvDim], [attn.pp('v_proj'), kvDim]], D, cfg.attentionBias);
    const [gate, up] = stacked([[mlp.pp('gate_proj'), I], [mlp.pp('up_proj'), I]], D, cfg.mlpBias);
    blocks.push({
      attnNorm: rmsNorm(l.pp('input_layernorm')),
      q: q!, k: k!, v: v!,
      o: linear(attn.pp('o_proj'), D, qDim, cfg.attentionBias),
      mlpNorm: rmsNorm(l.pp('post_attention_layernorm')),
      gate: gate!, up: up!,
      down: linear(mlp.pp('down_proj'), D, I, cfg.mlpBias),
    });
  }

  const hasEmbed = model.has('embed_tokens.weight');
  const hasHead = root.has('lm_head.weight');
  let embed, lmHead;
  if (cfg.tieWordEmbeddings) {
    if (!hasEmbed && !hasHead) throw new ModelLoadError(`${root.dir}: missing tensor "model.embed_tokens.weight" (or the tied "lm_head.weight") of shape [${V}, ${D}]`);
    embed = hasEmbed ? model.get('embed_tokens.weight', [V, D]) : root.get('lm_head.weight', [V, D]);
    lmHead = embed;
  } else {
    embed = model.get('embed_tokens.weight', [V, D]);
    if (!hasHead) throw new ModelLoadError(`${root.dir}: missing tensor "lm_head.weight" of shape [${V}, ${D}] (config.json says tie_word_embeddings is false)`);
    lmHead = root.get('lm_head.weight', [V, D]);
  }
  return { embed, blocks, finalNorm: rmsNorm(model.pp('norm')), lmHead };
}
