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
import type { TensorToWrite } from '../io/safetensors.js';
import type { WeightTensor } from '../tensor/half.js';
import { Tensor } from '../tensor/tensor.js';
import type { ModelConfig } from './config.js';
import { type BlockWeights, type LMWeights, type LinearWeights, WeightLoader, concatRows, rowRange, tensorToWrite, transpose } from './weights.js';

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
    weight: p.matrixConv1d('weight', inF, outF),
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
  const embed = tf.matrix('wte.weight', [V, D]);
  const lmHead = root.has('lm_head.weight') ? root.matrix('lm_head.weight', [V, D]) : embed;
  return {
    embed,
    positions: tf.get('wpe.weight', [cfg.maxPositions, D]),
    blocks,
    finalNorm: layerNorm(tf.pp('ln_f')),
    lmHead,
  };
}

/** The inverse of the name table (keys prefixed `transformer.`; Conv1D weights transposed back). */
export function exportGpt2Tensors(cfg: ModelConfig, w: LMWeights): TensorToWrite[] {
  const out: TensorToWrite[] = [];
  const put = (name: string, t: WeightTensor | undefined) => {
    if (t) out.push(tensorToWrite(name, t));
  };
  const tied = w.lmHead === w.embed;
  const D = cfg.hiddenSize;
  put('transformer.wte.weight', w.embed);
  put('transformer.wpe.weight', w.positions);
  w.blocks.forEach((b, i) => {
    const p = `transformer.h.${i}`;
    put(`${p}.ln_1.weight`, b.attnNorm.weight);
    put(`${p}.ln_1.bias`, b.attnNorm.bias);
    const qkv = concatRows([b.q.weight, b.k.weight, b.v.weight]);
    const bias = new Tensor([3 * D]);
    [b.q, b.k, b.v].forEach((l, j) => {
      if (l.bias) bias.data.set(l.bias.data, j * D);
    });
    put(`${p}.attn.c_attn.weight`, transpose(qkv));
    put(`${p}.attn.c_attn.bias`, bias);
    put(`${p}.attn.c_proj.weight`, transpose(b.o.weight));
    put(`${p}.attn.c_proj.bias`, b.o.bias);
    put(`${p}.ln_2.weight`, b.mlpNorm.weight);
    put(`${p}.ln_2.bias`, b.mlpNorm.bias);
    put(`${p}.mlp.c_fc.weight`, transpose(b.up.weight));
    put(`${p}.mlp.c_fc.bias`, b.up.bias);
    put(`${p}.mlp.c_proj.weight`, transpose(b.down.weight));
    put(`${p}.mlp.c_proj.bias`, b.down.bias);
  });
  put('transformer.ln_f.weight', w.finalNorm?.weight);
  put('transformer.ln_f.bias', w.finalNorm?.bias);
  if (!tied) put('lm_head.weight', w.lmHead);
  return out;
}

