/**
 * What fine-tuning (src/train) may change in a converted model beside its thresholds, kept apart
 * from the ANN's weights so the directory still holds the original network (fidelity is measured
 * against it, and `--model`/`--snn` pairs are matched by its fingerprint):
 *
 *   normGains   γ of a norm, by name: `layers.{l}.attn_norm`, `layers.{l}.mlp_norm`, `final_norm`   [D]
 *   lora        a low-rank correction of the linear layer behind an encoder site (`layers.{l}.attn_in`:
 *               the fused q|k|v, `o_in`, `mlp_in`: the fused gate|up, `down_in`, `head_in`):
 *               W' = W + B·A,  A [rank, in], B [out, rank]
 *
 * The spiking model merges them into its own copy of the affected weights when it is built
 * (`applyAdapters`): a merged LoRA costs nothing at run time — the layer is the same size.
 */
import { f32Weight } from '../tensor/half.js';
import { ArgumentError } from '../errors.js';
import type { ModelConfig } from '../nn/config.js';
import type { BlockWeights, LMWeights, LinearWeights } from '../nn/weights.js';
import { Tensor } from '../tensor/tensor.js';

export interface LoraAdapter {
  readonly rank: number;
  /** [rank, in] */
  readonly a: Float32Array;
  /** [out, rank] */
  readonly b: Float32Array;
}

export interface Adapters {
  readonly normGains?: ReadonlyMap<string, Float32Array>;
  readonly lora?: ReadonlyMap<string, LoraAdapter>;
}

/** The linear layers (parts, in stacking order) behind a LoRA site of block `blk`. */
function partsOf(kind: string, blk: BlockWeights): (keyof BlockWeights)[] {
  switch (kind) {
    case 'attn_in':
      return ['q', 'k', 'v'];
    case 'o_in':
      return ['o'];
    case 'mlp_in':
      return blk.gate ? ['gate', 'up'] : ['up'];
    case 'down_in':
      return ['down'];
    default:
      throw new ArgumentError(`LoRA site "${kind}": not a linear layer's input (attn_in, o_in, mlp_in, down_in, head_in)`);
  }
}

/** W + B·A over rows [row0, row0 + N) of the stacked layer. */
function merged(w: Tensor, l: LoraAdapter, row0: number, site: string): Tensor {
  const [N, K] = w.shape as [number, number];
  if (l.a.length % K !== 0 || l.a.length / K !== l.rank) throw new ArgumentError(`LoRA "${site}": A has ${l.a.length} values, expected rank ${l.rank} × ${K} inputs`);
  const out = new Tensor([N, K], Float32Array.from(w.data));
  for (let n = 0; n < N; n++) {
    for (let j = 0; j < l.rank; j++) {
      const bv = l.b[(row0 + n) * l.rank + j]!;
      if (bv === 0) continue;
      for (let k = 0; k < K; k++) out.data[n * K + k] += bv * l.a[j * K + k]!;
    }
  }
  return out;
}

function gainOf(name: string, base: Tensor, gains: ReadonlyMap<string, Float32Array> | undefined): Tensor {
  const g = gains?.get(name);
  if (!g) return base;
  if (g.length !== base.shape[0]) throw new ArgumentError(`norm gains "${name}": ${g.length} values, the norm has ${base.shape[0]}`);
  return new Tensor([g.length], Float32Array.from(g));
}

/** The weights with the adapters applied (tensors not touched are shared, not copied). */
export function applyAdapters(cfg: ModelConfig, w: LMWeights, ad: Adapters): LMWeights {
  const known = new Set(['final_norm', ...w.blocks.flatMap((_, l) => [`layers.${l}.attn_norm`, `layers.${l}.mlp_norm`])]);
  for (const k of ad.normGains?.keys() ?? []) if (!known.has(k)) throw new ArgumentError(`norm gains: no norm "${k}" in a ${cfg.numLayers}-layer model`);
  const lora = ad.lora ?? new Map<string, LoraAdapter>();
  const blocks = w.blocks.map((blk, l) => {
    const out: Record<string, unknown> = { ...blk };
    out.attnNorm = { ...blk.attnNorm, weight: gainOf(`layers.${l}.attn_norm`, blk.attnNorm.weight, ad.normGains) };
    out.mlpNorm = { ...blk.mlpNorm, weight: gainOf(`layers.${l}.mlp_norm`, blk.mlpNorm.weight, ad.normGains) };
    for (const kind of ['attn_in', 'o_in', 'mlp_in', 'down_in']) {
      const site = `layers.${l}.${kind}`, ad1 = lora.get(site);
      if (!ad1) continue;
      let row0 = 0;
      for (const part of partsOf(kind, blk)) {
        const lw = blk[part] as LinearWeights;
        out[part] = { ...lw, weight: merged(f32Weight(lw.weight), ad1, row0, site) };
        row0 += lw.weight.shape[0]!;
      }
      if (ad1.b.length !== row0 * ad1.rank) throw new ArgumentError(`LoRA "${site}": B has ${ad1.b.length} values, expected ${row0} outputs × rank ${ad1.rank}`);
    }
    return out as unknown as BlockWeights;
  });
  for (const k of lora.keys()) {
    const m = /^layers\.(\d+)\.\w+$/.exec(k);
    if (k !== 'head_in' && !(m && +m[1]! < w.blocks.length)) throw new ArgumentError(`LoRA: no site "${k}" in a ${cfg.numLayers}-layer model`);
  }
  const head = lora.get('head_in');
  if (head && head.b.length !== w.lmHead.shape[0]! * head.rank) throw new ArgumentError(`LoRA "head_in": B has ${head.b.length} values, expected ${w.lmHead.shape[0]} outputs × rank ${head.rank}`);
  return {
    ...w, blocks,
    ...(w.finalNorm ? { finalNorm: { ...w.finalNorm, weight: gainOf('final_norm', w.finalNorm.weight, ad.normGains) } } : {}),
    lmHead: head ? merged(f32Weight(w.lmHead), head, 0, 'head_in') : w.lmHead,
  };
}
