/**
 * OPT (facebook/opt-125m … opt-66b): learned positions at offset 2, LayerNorm (eps 1e-5), ReLU MLP,
 * biases everywhere, pre-LN blocks (every size but 350m) or post-LN (opt-350m), project_in /
 * project_out when word_embed_proj_dim ≠ hidden_size, tied LM head.
 *
 * Name table (Hugging Face key → our weight; every key is under `model.decoder.` or `decoder.`;
 * layouts are already nn.Linear [out, in]):
 *   embed_tokens.weight                       [V, E]      embed (and the tied LM head)
 *   embed_positions.weight                    [P + 2, D]  positions (position p is row p + 2)
 *   project_in.weight                         [D, E]      projectIn (only when E ≠ D; no bias)
 *   layers.{i}.self_attn_layer_norm.*         [D]         attnNorm (before attention with pre-LN,
 *                                                         after its residual add with post-LN)
 *   layers.{i}.self_attn.q_proj.* / k_proj.* / v_proj.*   [D, D]   q, k, v
 *   layers.{i}.self_attn.out_proj.*           [D, D]      o
 *   layers.{i}.final_layer_norm.*             [D]         mlpNorm (the block's second LayerNorm)
 *   layers.{i}.fc1.*                          [I, D]      up
 *   layers.{i}.fc2.*                          [D, I]      down
 *   final_layer_norm.*                        [D]         finalNorm (pre-LN, unless _remove_final_layer_norm)
 *   project_out.weight                        [E, D]      projectOut (only when E ≠ D)
 *   lm_head.weight                            [V, E]      lmHead: stored only when untied
 * q_proj's scaling by d^−½ is attention's usual scale, applied there.
 */
import { ModelLoadError } from '../errors.js';
import type { TensorToWrite } from '../io/safetensors.js';
import { type WeightTensor, isHalf } from '../tensor/half.js';
import { Tensor, subview } from '../tensor/tensor.js';
import { type ModelConfig, hasProjections } from './config.js';
import { type BlockWeights, type LMWeights, type LinearWeights, WeightLoader, tensorToWrite } from './weights.js';

export function loadOptWeights(cfg: ModelConfig, root: WeightLoader): LMWeights {
  const D = cfg.hiddenSize, I = cfg.intermediateSize, V = cfg.vocabSize, E = cfg.embedDim;
  let dec: WeightLoader;
  if (root.has('model.decoder.embed_tokens.weight')) dec = root.pp('model.decoder');
  else if (root.has('decoder.embed_tokens.weight')) dec = root.pp('decoder');
  else throw new ModelLoadError(`${root.dir}: missing tensor "model.decoder.embed_tokens.weight" (or "decoder.embed_tokens.weight") of shape [${V}, ${E}]`);
  const layerNorm = (p: WeightLoader) => ({ weight: p.get('weight', [D]), bias: p.get('bias', [D]) });
  /** q, k, v read into consecutive rows of one buffer (stacked for free later), like llama.ts. */
  const linear = (p: WeightLoader, out: number, inF: number): LinearWeights => ({ weight: p.matrix('weight', [out, inF]), bias: p.get('bias', [out]) });

  const blocks: BlockWeights[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    const l = dec.pp(`layers.${i}`), attn = l.pp('self_attn');
    // 16-bit rows where q, k and v are stored in the same 16-bit format, else float32
    const format = ['q_proj', 'k_proj', 'v_proj'].map((n) => attn.pp(n).halfFormat('weight')).reduce((a, f) => (a === f ? a : undefined));
    const w = format ? root.newHalf([3 * D, D], format) : root.newTensor([3 * D, D]), b = new Tensor([3 * D]);
    const part = (name: string, j: number): LinearWeights => ({
      weight: isHalf(w) ? attn.pp(name).matrix('weight', [D, D], subview(w.bits, j * D * D, (j + 1) * D * D)) : attn.pp(name).get('weight', [D, D], subview(w.data, j * D * D, (j + 1) * D * D)),
      bias: attn.pp(name).get('bias', [D], b.data.subarray(j * D, (j + 1) * D)),
    });
    blocks.push({
      attnNorm: layerNorm(l.pp('self_attn_layer_norm')),
      q: part('q_proj', 0), k: part('k_proj', 1), v: part('v_proj', 2),
      o: linear(attn.pp('out_proj'), D, D),
      mlpNorm: layerNorm(l.pp('final_layer_norm')),
      up: linear(l.pp('fc1'), I, D),
      down: linear(l.pp('fc2'), D, I),
    });
  }
  const embed = dec.matrix('embed_tokens.weight', [V, E]);
  let lmHead = embed;
  if (!cfg.tieWordEmbeddings) {
    if (!root.has('lm_head.weight')) throw new ModelLoadError(`${root.dir}: missing tensor "lm_head.weight" of shape [${V}, ${E}] (config.json says tie_word_embeddings is false)`);
    lmHead = root.matrix('lm_head.weight', [V, E]);
  }
  const proj = hasProjections(cfg);
  return {
    embed,
    positions: dec.get('embed_positions.weight', [cfg.maxPositions + cfg.positionOffset, D]),
    ...(proj ? { projectIn: { weight: dec.matrix('project_in.weight', [D, E]) }, projectOut: { weight: dec.matrix('project_out.weight', [E, D]) } } : {}),
    blocks,
    ...(cfg.finalNorm ? { finalNorm: layerNorm(dec.pp('final_layer_norm')) } : {}),
    lmHead,
  };
}

/** The inverse of the name table (keys under `model.decoder.`). */
export function exportOptTensors(w: LMWeights): TensorToWrite[] {
  const out: TensorToWrite[] = [];
  const put = (name: string, t: WeightTensor | undefined) => {
    if (t) out.push(tensorToWrite(name, t));
  };
  const p0 = 'model.decoder';
  put(`${p0}.embed_tokens.weight`, w.embed);
  put(`${p0}.embed_positions.weight`, w.positions);
  put(`${p0}.project_in.weight`, w.projectIn?.weight);
  w.blocks.forEach((b, i) => {
    const p = `${p0}.layers.${i}`;
    put(`${p}.self_attn_layer_norm.weight`, b.attnNorm.weight);
    put(`${p}.self_attn_layer_norm.bias`, b.attnNorm.bias);
    for (const [name, l] of [['q_proj', b.q], ['k_proj', b.k], ['v_proj', b.v], ['out_proj', b.o]] as const) {
      put(`${p}.self_attn.${name}.weight`, l.weight);
      put(`${p}.self_attn.${name}.bias`, l.bias);
    }
    put(`${p}.final_layer_norm.weight`, b.mlpNorm.weight);
    put(`${p}.final_layer_norm.bias`, b.mlpNorm.bias);
    put(`${p}.fc1.weight`, b.up.weight);
    put(`${p}.fc1.bias`, b.up.bias);
    put(`${p}.fc2.weight`, b.down.weight);
    put(`${p}.fc2.bias`, b.down.bias);
  });
  put(`${p0}.final_layer_norm.weight`, w.finalNorm?.weight);
  put(`${p0}.final_layer_norm.bias`, w.finalNorm?.bias);
  put(`${p0}.project_out.weight`, w.projectOut?.weight);
  if (w.lmHead !== w.embed) put('lm_head.weight', w.lmHead);
  return out;
}
