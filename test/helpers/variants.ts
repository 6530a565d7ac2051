/**
 * Model directories of the variants no shared fixture covers (post-LN OPT with project_in/out and
 * `decoder.` keys, untied or BF16 Qwen2, Qwen3 with biases and head_dim ≠ D/H, Mistral with a short
 * or no window), written from seeded random tensors under their Hugging Face names.
 *
 * `referenceWeights` rebuilds the network from those same named tensors with a name table written
 * here, independently of the loaders in src/nn, so that a loader that mixes tensors up (project_in
 * for project_out, k_norm for q_norm) disagrees with test/helpers/reference-lm.ts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type TensorToWrite, writeSafetensors } from '../../src/io/safetensors.js';
import type { LMWeights, LinearWeights } from '../../src/nn/weights.js';
import { seededRandom } from '../../src/nn/sampling.js';
import { Tensor } from '../../src/tensor/tensor.js';
import { BUNDLED_MODEL } from '../../src/bundled.js';

export interface Variant {
  readonly dir: string;
  readonly tensors: ReadonlyMap<string, Float32Array>;
  readonly shapes: ReadonlyMap<string, readonly number[]>;
}

/** Seeded normal(0, std) values (Box–Muller). */
function normal(n: number, std: number, next: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next()) * std;
  return out;
}

/** Values exactly representable in `dtype` (BF16: the top 16 bits of each float32), so storing them loses nothing. */
function representable(x: Float32Array, dtype: 'F32' | 'BF16'): Float32Array {
  if (dtype === 'F32') return x;
  const u = new Uint32Array(Float32Array.from(x).buffer);
  for (let i = 0; i < u.length; i++) u[i] = u[i]! & 0xffff0000;
  return new Float32Array(u.buffer);
}

/**
 * Write `config` and random tensors named by `names` (name → shape; names ending in `norm.weight`
 * or `layer_norm.weight` are 1 + noise, biases small) into a fresh directory with the bundled
 * model's tokenizer (vocabulary 512).
 */
export function writeVariant(label: string, config: Record<string, unknown>, names: Record<string, number[]>, opts: { seed?: number; dtype?: 'F32' | 'BF16' } = {}): Variant {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `spikelm-${label}-`));
  const next = seededRandom(opts.seed ?? 7);
  const dtype = opts.dtype ?? 'F32';
  const tensors = new Map<string, Float32Array>(), shapes = new Map<string, readonly number[]>();
  const toWrite: TensorToWrite[] = [];
  for (const [name, shape] of Object.entries(names)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const isNormGain = /norm\.weight$/.test(name) || /layer_norm\.weight$/.test(name);
    const raw = isNormGain ? normal(n, 0.1, next).map((v) => 1 + v) : normal(n, name.endsWith('.bias') ? 0.05 : 0.15, next);
    const data = representable(raw, dtype);
    tensors.set(name, data);
    shapes.set(name, shape);
    toWrite.push({ name, shape, data, dtype });
  }
  writeSafetensors(path.join(dir, 'model.safetensors'), toWrite, { format: 'pt' });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ vocab_size: 512, bos_token_id: 1, eos_token_id: 2, ...config }));
  fs.copyFileSync(path.join(BUNDLED_MODEL, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  return { dir, tensors, shapes };
}

const tensor = (v: Variant, name: string): Tensor => {
  const data = v.tensors.get(name);
  if (!data) throw new Error(`variant: no tensor "${name}"`);
  return new Tensor([...v.shapes.get(name)!], data);
};

/** The Llama-block families' name table (llama, qwen2, qwen3, mistral), written for the tests. */
export function llamaLikeReference(v: Variant, layers: number): LMWeights {
  const has = (n: string) => v.tensors.has(n);
  const lin = (p: string): LinearWeights => ({ weight: tensor(v, `${p}.weight`), ...(has(`${p}.bias`) ? { bias: tensor(v, `${p}.bias`) } : {}) });
  const embed = tensor(v, 'model.embed_tokens.weight');
  return {
    embed,
    blocks: Array.from({ length: layers }, (_, i) => {
      const p = `model.layers.${i}`;
      return {
        attnNorm: { weight: tensor(v, `${p}.input_layernorm.weight`) },
        q: lin(`${p}.self_attn.q_proj`), k: lin(`${p}.self_attn.k_proj`), v: lin(`${p}.self_attn.v_proj`),
        ...(has(`${p}.self_attn.q_norm.weight`) ? { qNorm: { weight: tensor(v, `${p}.self_attn.q_norm.weight`) }, kNorm: { weight: tensor(v, `${p}.self_attn.k_norm.weight`) } } : {}),
        o: lin(`${p}.self_attn.o_proj`),
        mlpNorm: { weight: tensor(v, `${p}.post_attention_layernorm.weight`) },
        gate: lin(`${p}.mlp.gate_proj`), up: lin(`${p}.mlp.up_proj`), down: lin(`${p}.mlp.down_proj`),
      };
    }),
    finalNorm: { weight: tensor(v, 'model.norm.weight') },
    lmHead: has('lm_head.weight') ? tensor(v, 'lm_head.weight') : embed,
  };
}

/** OPT's name table (keys under `prefix`, `model.decoder` or `decoder`), written for the tests. */
export function optReference(v: Variant, layers: number, prefix: string): LMWeights {
  const has = (n: string) => v.tensors.has(n);
  const lin = (p: string): LinearWeights => ({ weight: tensor(v, `${p}.weight`), ...(has(`${p}.bias`) ? { bias: tensor(v, `${p}.bias`) } : {}) });
  const ln = (p: string) => ({ weight: tensor(v, `${p}.weight`), bias: tensor(v, `${p}.bias`) });
  const embed = tensor(v, `${prefix}.embed_tokens.weight`);
  return {
    embed,
    positions: tensor(v, `${prefix}.embed_positions.weight`),
    ...(has(`${prefix}.project_in.weight`) ? { projectIn: lin(`${prefix}.project_in`), projectOut: lin(`${prefix}.project_out`) } : {}),
    blocks: Array.from({ length: layers }, (_, i) => {
      const p = `${prefix}.layers.${i}`;
      return {
        attnNorm: ln(`${p}.self_attn_layer_norm`),
        q: lin(`${p}.self_attn.q_proj`), k: lin(`${p}.self_attn.k_proj`), v: lin(`${p}.self_attn.v_proj`), o: lin(`${p}.self_attn.out_proj`),
        mlpNorm: ln(`${p}.final_layer_norm`),
        up: lin(`${p}.fc1`), down: lin(`${p}.fc2`),
      };
    }),
    ...(has(`${prefix}.final_layer_norm.weight`) ? { finalNorm: ln(`${prefix}.final_layer_norm`) } : {}),
    lmHead: has('lm_head.weight') ? tensor(v, 'lm_head.weight') : embed,
  };
}

/** The tensor names (and shapes) of a Llama-block model. */
export function llamaLikeNames(s: { layers: number; D: number; H: number; Hkv: number; d: number; I: number; V?: number; qkvBias?: boolean; oBias?: boolean; qkNorm?: boolean; untied?: boolean }): Record<string, number[]> {
  const V = s.V ?? 512, out: Record<string, number[]> = { 'model.embed_tokens.weight': [V, s.D], 'model.norm.weight': [s.D] };
  for (let i = 0; i < s.layers; i++) {
    const p = `model.layers.${i}`;
    out[`${p}.input_layernorm.weight`] = [s.D];
    out[`${p}.post_attention_layernorm.weight`] = [s.D];
    for (const [n, rows] of [['q_proj', s.H * s.d], ['k_proj', s.Hkv * s.d], ['v_proj', s.Hkv * s.d]] as const) {
      out[`${p}.self_attn.${n}.weight`] = [rows, s.D];
      if (s.qkvBias) out[`${p}.self_attn.${n}.bias`] = [rows];
    }
    out[`${p}.self_attn.o_proj.weight`] = [s.D, s.H * s.d];
    if (s.oBias) out[`${p}.self_attn.o_proj.bias`] = [s.D];
    if (s.qkNorm) {
      out[`${p}.self_attn.q_norm.weight`] = [s.d];
      out[`${p}.self_attn.k_norm.weight`] = [s.d];
    }
    out[`${p}.mlp.gate_proj.weight`] = [s.I, s.D];
    out[`${p}.mlp.up_proj.weight`] = [s.I, s.D];
    out[`${p}.mlp.down_proj.weight`] = [s.D, s.I];
  }
  if (s.untied) out['lm_head.weight'] = [V, s.D];
  return out;
}

/** The tensor names of an OPT model (`prefix`: model.decoder or decoder). */
export function optNames(s: { layers: number; D: number; E: number; I: number; P: number; prefix: string; finalNorm: boolean; untied?: boolean; V?: number }): Record<string, number[]> {
  const V = s.V ?? 512, p0 = s.prefix;
  const out: Record<string, number[]> = { [`${p0}.embed_tokens.weight`]: [V, s.E], [`${p0}.embed_positions.weight`]: [s.P + 2, s.D] };
  if (s.E !== s.D) {
    out[`${p0}.project_in.weight`] = [s.D, s.E];
    out[`${p0}.project_out.weight`] = [s.E, s.D];
  }
  for (let i = 0; i < s.layers; i++) {
    const p = `${p0}.layers.${i}`;
    for (const n of ['self_attn_layer_norm', 'final_layer_norm']) {
      out[`${p}.${n}.weight`] = [s.D];
      out[`${p}.${n}.bias`] = [s.D];
    }
    for (const n of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      out[`${p}.self_attn.${n}.weight`] = [s.D, s.D];
      out[`${p}.self_attn.${n}.bias`] = [s.D];
    }
    out[`${p}.fc1.weight`] = [s.I, s.D];
    out[`${p}.fc1.bias`] = [s.I];
    out[`${p}.fc2.weight`] = [s.D, s.I];
    out[`${p}.fc2.bias`] = [s.D];
  }
  if (s.finalNorm) {
    out[`${p0}.final_layer_norm.weight`] = [s.D];
    out[`${p0}.final_layer_norm.bias`] = [s.D];
  }
  if (s.untied) out['lm_head.weight'] = [V, s.E];
  return out;
}
