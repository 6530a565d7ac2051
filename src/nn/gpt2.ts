/**
 * GPT-2 (gpt2, distilgpt2): learned positions, pre-LayerNorm blocks, GELU MLP, tied LM head.
 *
 * Name table (Hugging Face key → our weight; every key may carry a `transformer.` prefix):
 *   wte.weight                [V, D]      embed (and the LM head: tied; a stored lm_head.weight is used if present)
 *   wpe.weight                [P, D]      positions
 *   h.{i}.ln_1.weight/bias    [D]         attnNorm
 *   h.{i}.attn.c_attn.weight  [D, 3D]     Conv1D [in, out]: transposed, split into q, k, v [D, D]
 *   h.{i}.attn.c_attn.bias    [3D]        split into the q, k, v biases
 *   h.{i}.attn.c_proj.*       [D, D]      o (transposed)
 *   h.{i}.ln_2.*              [D]         mlpNorm
 *   h.{i}.mlp.c_fc.*          [D, I]      up (transposed)
 *   h.{i}.mlp.c_proj.*        [I, D]      down (transposed)
 *   ln_f.weight/bias          [D]         finalNorm
 *   h.{i}.attn.bias, h.{i}.attn.masked_bias   causal-mask buffers: ignored
 */
import { ModelLoadError } from '../errors.js';
import { Tensor } from '../tensor/tensor.js';
import type { ModelConfig } from './config.js';
import { type BlockWeights, type LMWeights, type LinearWeights, WeightLoader, rowRange } from './weights.js';

export function isGpt2IgnoredBuffer(name: string): boolean {
  return /(^|\.)attn\.(masked_)?bias$/.test(name);
}

export function loadGpt2Weights(cfg: ModelConfig, root: WeightLoader): LMWeights {
  const D = cfg.hiddenSize, I = cfg.intermediateSize, V = cfg.vocabSize;
  let tf: WeightLoader;
  if (root.has('transformer.wte.weight')) tf = root.pp('transformer');
  else if (root.has('wte.weight')) tf = root;
  else throw new ModelLoadError(`${root.dir}: missing tensor "transformer.wte.weight" (or "wte.weight") of shape [${V}, ${D}]`);

  const layerNorm = (p: WeightLoader) => ({ weight: p.get('weight', [D]), bias: p.get('bias', [D]) });
  const conv1d = (p: WeightLoader, inF: number, outF: number): LinearWeights => ({
    weight: p.getConv1d('weight', inF, outF),
    bias: p.get('bias', [outF]),
  });

  const blocks: BlockWeights[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    const h = tf.pp(`h.${i}`);
    const qkv = conv1d(h.pp('attn.c_attn'), D, 3 * D); // weight [3D, D], rows q | k | v
    const part = (j: number): LinearWeights => ({
      weight: rowRange(qkv.weight, j * D, (j + 1) * D),
      bias: new Tensor([D], qkv.bias!.data.subarray(j * D, (j + 1) * D)),
    });
    blocks.push({
      attnNorm: layerNorm(h.pp('ln_1')),
      q: part(0), k: part(1), v: part(2),
      o: conv1d(h.pp('attn.c_proj'), D, D),
      mlpNorm: layerNorm(h.pp('ln_2')),
      up: conv1d(h.pp('mlp.c_fc'), D, I),
      down: conv1d(h.pp('mlp.c_proj'), I, D),
    });
  }
  const embed = tf.get('wte.weight', [V, D]);
  const lmHead = root.has('lm_head.weight') ? root.get('lm_head.weight', [V, D]) : embed;
  return {
    embed,
    positions: tf.get('wpe.weight', [cfg.maxPositions, D]),
    blocks,
    finalNorm: layerNorm(tf.pp('ln_f')),
    lmHead,
  };
}
