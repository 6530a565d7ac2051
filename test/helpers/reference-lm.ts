/**
 * An independent float64 forward pass of a network of any family here (GPT-2, Llama, Qwen2, Qwen3,
 * Mistral, OPT, by the config's features) from its host weights, written from the Hugging Face
 * definitions with plain arrays (helpers/reference.ts for the operators), with
 * an optional hook at every encoder site of the layerwise schedule — before each linear layer, on
 * the rotated queries, and on the attention probabilities. With quantizers in the hooks it is the
 * network a layerwise SNN must equal; without, it is the ANN.
 */
import type { ModelConfig } from '../../src/nn/config.js';
import type { SpikingLM } from '../../src/snn/model.js';
import type { LMWeights, LinearWeights } from '../../src/nn/weights.js';
import { f16BitsToNumber } from '../../src/tensor/dtype.js';
import type { WeightTensor } from '../../src/tensor/half.js';
import * as ref from './reference.js';

/**
 * A weight's values as numbers, decoded here (not by src/tensor/half.ts): BF16 as its bits times a
 * power of two (sign, 8-bit exponent, 7-bit mantissa), F16 by dtype.ts's formula.
 */
function values(t: WeightTensor): ArrayLike<number> {
  if (!('bits' in t)) return t.data;
  const out = new Float64Array(t.bits.length);
  for (let i = 0; i < out.length; i++) {
    const b = t.bits[i]!;
    if (t.format === 'f16') out[i] = f16BitsToNumber(b);
    else {
      const sign = b & 0x8000 ? -1 : 1, e = (b >> 7) & 0xff, m = b & 0x7f;
      out[i] = e === 0 ? sign * m * 2 ** -133 : sign * (1 + m / 128) * 2 ** (e - 127);
    }
  }
  return out;
}
const decoded = new WeakMap<WeightTensor, ArrayLike<number>>();
const valuesOf = (t: WeightTensor): ArrayLike<number> => {
  let v = decoded.get(t);
  if (!v) decoded.set(t, (v = values(t)));
  return v;
};

/** Replaces a row of values at a site: (site, row values, per-row context) → values the layer sees. */
export type SiteHook = (site: string, row: number[], ctx: { head?: number }) => number[];

const linear = (x: number[], l: LinearWeights): number[] => {
  const [N, K] = l.weight.shape as [number, number];
  const w = valuesOf(l.weight);
  const out = new Array<number>(N);
  for (let n = 0; n < N; n++) {
    let a = l.bias ? l.bias.data[n]! : 0;
    for (let k = 0; k < K; k++) a += w[n * K + k]! * x[k]!;
    out[n] = a;
  }
  return out;
};

/** Logits of every position of `ids` (one sequence from position 0). */
export function referenceLogits(cfg: ModelConfig, w: LMWeights, ids: readonly number[], hook?: SiteHook): number[][] {
  const D = cfg.hiddenSize, E = cfg.embedDim, H = cfg.numHeads, Hkv = cfg.numKvHeads, d = cfg.headDim, group = H / Hkv;
  const at = (site: string, x: number[], ctx: { head?: number } = {}) => (hook ? hook(site, x, ctx) : x);
  const norm = (x: number[], n: { weight: { data: Float32Array }; bias?: { data: Float32Array } }) =>
    cfg.norm === 'layer' ? ref.layerNorm(x, n.weight.data, n.bias?.data, cfg.normEps) : ref.rmsNorm(x, n.weight.data, cfg.normEps);
  const invFreq = cfg.rotary ? Array.from({ length: d / 2 }, (_, i) => 1 / cfg.ropeTheta ** ((2 * i) / d)) : undefined;
  const act = ref.ACTIVATIONS[cfg.activation]!;
  const post = cfg.postNorm, W = cfg.slidingWindow ?? Infinity;
  // every head of q (or k) rmsNorm'd on its own (Qwen3)
  const headNorm = (x: number[], heads: number, gamma: Float32Array) =>
    Array.from({ length: heads }, (_, hd) => ref.rmsNorm(x.slice(hd * d, (hd + 1) * d), gamma, cfg.normEps)).flat();
  let h = ids.map((id, p) => {
    let e = Array.from({ length: E }, (_, i) => valuesOf(w.embed)[id * E + i]!);
    if (w.projectIn) e = linear(at('proj_in', e), w.projectIn);
    return e.map((x, i) => x + (w.positions ? w.positions.data[(p + cfg.positionOffset) * D + i]! : 0));
  });
  w.blocks.forEach((blk, l) => {
    const pre = `layers.${l}`;
    const K: number[][] = [], V: number[][] = [];
    const attnOut: number[][] = [];
    h.forEach((row, p) => {
      const a = at(`${pre}.attn_in`, post ? row : norm(row, blk.attnNorm));
      let q = linear(a, blk.q), k = linear(a, blk.k);
      const v = linear(a, blk.v);
      if (blk.qNorm && blk.kNorm) {
        q = headNorm(q, H, blk.qNorm.weight.data);
        k = headNorm(k, Hkv, blk.kNorm.weight.data);
      }
      if (invFreq) {
        q = ref.rope(q, H, d, p, invFreq);
        k = ref.rope(k, Hkv, d, p, invFreq);
      }
      K.push(k);
      V.push(v);
      q = at(`${pre}.q_in`, q);
      const first = Math.max(0, p + 1 - W); // the keys p − W < j ≤ p
      const out: number[] = [];
      for (let hd = 0; hd < H; hd++) {
        const g = Math.floor(hd / group);
        const scores = K.slice(first).map((kr) => {
          let s = 0;
          for (let i = 0; i < d; i++) s += q[hd * d + i]! * kr[g * d + i]!;
          return s / Math.sqrt(d);
        });
        const probs = at(`${pre}.p_in`, ref.softmax(scores), { head: hd });
        for (let i = 0; i < d; i++) out.push(probs.reduce((acc, pj, j) => acc + pj * V[first + j]![g * d + i]!, 0));
      }
      attnOut.push(out);
    });
    h = h.map((row, p) => {
      const o = linear(at(`${pre}.o_in`, attnOut[p]!), blk.o);
      let r1 = row.map((x, i) => x + o[i]!);
      if (post) r1 = norm(r1, blk.attnNorm);
      const m = at(`${pre}.mlp_in`, post ? r1 : norm(r1, blk.mlpNorm));
      const hidden = blk.gate ? linear(m, blk.gate).map((gv, i) => act(gv) * linear(m, blk.up)[i]!) : linear(m, blk.up).map(act);
      const down = linear(at(`${pre}.down_in`, hidden), blk.down);
      const r2 = r1.map((x, i) => x + down[i]!);
      return post ? norm(r2, blk.mlpNorm) : r2;
    });
  });
  return h.map((row) => {
    let x = w.finalNorm ? norm(row, w.finalNorm) : row;
    if (w.projectOut) x = linear(at('proj_out', x), w.projectOut);
    return linear(at('head_in', x), { weight: w.lmHead });
  });
}

const f = Math.fround;

/**
 * The decoded value of one neuron of a layerwise code, written from the equations in
 * src/snn/codes.ts (membrane charged in float32 as the kernels do, then exact dynamics):
 * weighted codes with extra planes above the range as a row needs them (`extra`).
 */
export function weightedDecode(x: number, theta: number, T: number, ternary: boolean, extra: number): number {
  const inv = f(1 / theta);
  let v = ternary ? f(x * inv) : f(Math.abs(f(x * inv)) + 2 ** -T);
  v = f(v * 2 ** -extra);
  const fire = f(2 / 3);
  let value = 0;
  for (let k = 0; k < T + extra; k++) {
    const dgt = ternary ? (v > fire ? 1 : v < -fire ? -1 : 0) : v >= 1 ? 1 : 0;
    value += dgt * 2 ** (extra - k);
    v = f(2 * f(v - dgt));
  }
  return theta * value * (ternary || x >= 0 ? 1 : -1);
}

/** The extra planes a row of charges needs (the largest |x|/θ decides). */
export function extraPlanes(row: readonly number[], theta: (i: number) => number, T: number, ternary: boolean): number {
  let big = 0;
  row.forEach((x, i) => {
    const inv = f(1 / theta(i));
    const v = ternary ? Math.abs(f(x * inv)) : f(Math.abs(f(x * inv)) + 2 ** -T);
    big = Math.max(big, v);
  });
  const limit = ternary ? f(4 / 3) : 2;
  let e = 0;
  while (e < 8 && (ternary ? big * 2 ** -e > limit : big * 2 ** -e >= limit)) e++;
  return e;
}

const kindOf = (site: string) => site.slice(site.lastIndexOf('.') + 1);

/**
 * The independent reference for a layerwise network: referenceLogits with every encoder site's
 * input replaced by the value its neurons decode to, computed here from the code's equations
 * (per-row extra planes; p: per probability, θ per head; rate: the burst neuron starting at θ/2
 * sums to ⌊T·x/θ + ½⌋ spikes). All positions' logits, flattened.
 */
export function layerwiseReference(snn: SpikingLM, ids: readonly number[]): number[] {
  const ternary = snn.coding === 'phase-ternary';
  return referenceLogits(snn.config, snn.weights, ids, (site, row, ctx) => {
    const th = snn.spiking.thresholds.get(site)!, T = snn.stepsOf(site);
    const thetaOf = (i: number) => (kindOf(site) === 'p_in' ? th[ctx.head!]! : th[i]!);
    if (snn.coding === 'rate') return row.map((x, i) => (thetaOf(i) / T) * Math.floor((T * x) / thetaOf(i) + 0.5));
    if (kindOf(site) === 'p_in') return row.map((x, i) => weightedDecode(x, thetaOf(i), T, ternary, extraPlanes([x], () => thetaOf(i), T, ternary)));
    const e = extraPlanes(row, thetaOf, T, ternary);
    return row.map((x, i) => weightedDecode(x, thetaOf(i), T, ternary, e));
  }).flat();
}

/**
 * The independent reference for a stepwise rate network with signed neurons (no ReLU neuron): the
 * float64 forward with every encoder input x replaced by θ/T·⌊T·x/θ + ½⌋ (the compensated operators
 * are exact on decoded values). q_in and p_in are not stepwise sites: unchanged.
 */
export function stepwiseReference(snn: SpikingLM, ids: readonly number[]): number[] {
  const T = snn.timesteps, sites = new Set(snn.sites.map((s) => s.name));
  return referenceLogits(snn.config, snn.weights, ids, (site, row) => {
    if (!sites.has(site)) return row;
    const th = snn.spiking.thresholds.get(site)!;
    return row.map((x, i) => (th[i]! / T) * Math.floor((T * x) / th[i]! + 0.5));
  }).flat();
}
