/**
 * Energy of a spiking run against its ANN, counted from what ran (DESIGN.md §4 and §6). Compute
 * only: memory and data movement are excluded, and reports say so; KV-cache reads are counted
 * beside, not priced.
 *
 *   E = ACs × E_AC + MACs × E_MAC        (Horowitz, ISSCC 2014, 45 nm: FP32 0.9 / 4.6 pJ,
 *                                         FP16 0.4 / 1.5 pJ, INT8 0.03 / 0.23 pJ)
 *
 * Both networks are counted with the same rules for the same work: a forward over n tokens whose
 * queries attend A keys in all, with the LM head run for r rows (the positions whose logits were
 * asked for; the stepwise head's neurons run for all n, and are counted so).
 *
 * ANN (per forward)
 *   linear       K·N MACs per token per layer (q|k|v, o, gate|up, down), r·E·V for the LM head,
 *                n·E·D for OPT's project_in and r·D·E for its project_out; a bias is one AC per
 *                output that has one (Qwen2: q, k, v but not o) per token
 *   attention    2·H·d MACs per attended key (scores, weighted sum); softmax SOFTMAX_OPS MACs per
 *                score; RoPE ROPE_OPS MACs per rotated q and k element
 *   elementwise  NORM_OPS MACs per normalised element (two norms a layer, pre- or post-LN alike;
 *                Qwen3's q/k norms on H·d + Hkv·d elements a token; the final norm on r rows where
 *                the model has one), ACT_OPS per activation element (ReLU: one AC), one MAC per
 *                SwiGLU product, one AC per element of each residual add (two a layer), the
 *                learned-position add (GPT-2, OPT)
 *
 * SNN, layerwise schedule (every dense operator once per token, as the ANN)
 *   synapses     events × fan-out ACs (kernels count them: STAT.synapticOps); for q spikes the
 *                fan-out is the keys the query sees, for probability spikes the head dimension
 *   membranes    a receiving accumulator doubles at every plane of a weighted code: (steps − 1) ACs
 *                per receiver per token (N for a linear layer, H·keys for scores, d per head for
 *                the attention output), extra planes included (STAT.extraFanout)
 *   neurons      weighted codes: a charge per neuron-token, a comparison per neuron-step against
 *                the plane's threshold (θ halves each step), a reset per event — all ACs. Rate codes
 *                integrate every step (an AC); bursts compute ⌊v/θ⌋ and subtract n·θ (two MACs per
 *                neuron-step), single spikes compare (an AC) and reset per event (an AC). A neuron
 *                whose charge cannot reach the smallest threshold never fires: one comparison says
 *                so, and it runs no steps (STAT.activeNeurons; most attention probabilities).
 *   cache        keys scaled by θq·scale and values by θp once per token (2·Hkv·d MACs), so a
 *                spike event is an accumulate
 *   two-stage head (P planes, P_c coarse, top k; SpikingConfig.head): the coarse events (those of
 *                the first P_c planes, extra planes included) reach all V outputs, the rest only
 *                the k selected: synapses coarse events × V + fine events × k; membranes
 *                (P_c − 1)·V + (P − P_c)·k doublings per row, extra planes × V; the selection
 *                SELECTION comparisons: V·(1 + ⌈log₂ k⌉) ACs per row at most (each coarse logit
 *                against the k-th held, a binary insertion for those that enter), counted so
 *   dense        norms, activation, SwiGLU product, RoPE, softmax, residual adds: as the ANN
 * SNN, stepwise schedule (T steps; every dense operator at every step)
 *   synapses     events × fan-out ACs; biases N ACs per token per step
 *   neurons      rate neurons as above, per neuron-step
 *   dense        T × the ANN's attention, softmax, RoPE, norms, activation and residual adds, plus
 *                the compensation bookkeeping (running mean and difference: COMPENSATION_MACS per
 *                element per step of every compensated operator's inputs and outputs)
 */
import type { ModelConfig } from '../nn/config.js';
import type { CodingName, ScheduleName } from './codes.js';
import { isWeighted } from './codes.js';
import type { EncoderSite } from './sites.js';
import type { SpikeTally } from './stats.js';
import { STAT } from '../tensor/kernels/codes.js';

export const ENERGY_PRESETS = {
  fp32: { mac: 4.6e-12, ac: 0.9e-12 },
  fp16: { mac: 1.5e-12, ac: 0.4e-12 },
  int8: { mac: 0.23e-12, ac: 0.03e-12 },
} as const;
export type EnergyPreset = keyof typeof ENERGY_PRESETS;

export const NORM_OPS = 4;
export const ACT_OPS = 4;
export const SOFTMAX_OPS = 4;
export const ROPE_OPS = 2;
export const COMPENSATION_MACS = 3;

export interface OpCount {
  acs: number;
  macs: number;
}

export interface EnergyInput {
  readonly config: ModelConfig;
  readonly schedule: ScheduleName;
  readonly coding: CodingName;
  readonly timesteps: number;
  /** Steps of each site's neurons (layerwise planes or siteSteps; default: timesteps). */
  readonly stepsOf?: (site: EncoderSite) => number;
  /** Spikes a rate neuron may emit per step (1: single-spike neurons; Infinity: bursts). */
  readonly maxSpikes: number;
  readonly tally: SpikeTally;
}

export interface LayerEnergy {
  readonly layer: string;
  readonly ann: OpCount;
  readonly snn: OpCount;
  /** Spikes per neuron per token at the layer's encoders. */
  readonly spikesPerNeuronPerToken: number;
}

export interface EnergyReport {
  readonly schedule: ScheduleName;
  readonly coding: CodingName;
  readonly timesteps: number;
  readonly tokens: number;
  readonly attendedKeys: number;
  readonly headRows: number;
  /** Operation counts by part, for both networks. */
  readonly ann: { readonly total: OpCount; readonly parts: Record<string, OpCount> };
  readonly snn: { readonly total: OpCount; readonly parts: Record<string, OpCount> };
  readonly layers: readonly LayerEnergy[];
  /** Cached key/value elements read (not priced: memory is excluded). */
  readonly kvReads: { readonly ann: number; readonly snn: number };
  readonly spikesPerNeuronPerToken: number;
  readonly spikesPerNeuronPerStep: number;
  readonly maxSpikesPerNeuronPerStep: number;
  /** Fraction of (neuron, step) digits that are nonzero. */
  readonly density: number;
  readonly presets: Record<EnergyPreset, { readonly annJoules: number; readonly snnJoules: number; readonly ratio: number }>;
  readonly note: string;
}

const add = (a: OpCount, b: Partial<OpCount>): void => {
  a.acs += b.acs ?? 0;
  a.macs += b.macs ?? 0;
};

/**
 * The per-site rules (header): a site's encoder neurons, and the doublings of the accumulators its
 * spikes reach. Shared by the report and by the plane search, which prices a site's planes with them.
 */
export function siteRules(input: EnergyInput) {
  const t = input.tally, T = input.timesteps, c = input.config;
  const stepwise = input.schedule === 'stepwise', weighted = isWeighted(input.coding);
  const stepsOf = input.stepsOf ?? (() => T);
  const neuronOps = (i: number): OpCount => {
    const events = t.get(i, 'events'), neurons = t.neurons[i]!;
    // stepwise neurons see a new current every step: all run every step
    const steps = stepwise ? t.get(i, 'neuronSteps') : t.get(i, 'activeSteps');
    const silent = stepwise ? 0 : neurons - t.get(i, 'activeNeurons');
    if (weighted) return { acs: neurons + steps + silent + events, macs: 0 }; // charge, compare per step, reset per event
    if (input.maxSpikes === 1) return { acs: 2 * steps + silent + events, macs: 0 }; // integrate, compare; reset per spike
    return { acs: steps + silent, macs: 2 * steps }; // bursts: integrate, ⌊v/θ⌋, subtract n·θ
  };
  /**
   * Receiving doublings of a weighted code: (steps − 1) per receiver per row, extra planes included
   * (STAT.extraFanout). q_in's receivers are H·keys per query row (the scores), p_in's d per head
   * and row (the outputs); a linear site's are its N outputs on each of its rows.
   */
  const doublings = (i: number, receiversPerRow: number, rows: number): number => {
    if (!weighted) return 0;
    const site = t.sites[i]!, steps = stepsOf(site) - 1;
    const h = t.headStages;
    if (site.kind === 'head_in' && h) {
      // coarse planes on every output, the rest on the k selected (the fine row's extra fan-out is
      // at k, the coarse row's at V − k: extra planes × V together)
      return ((h.coarsePlanes - 1) * receiversPerRow + (steps + 1 - h.coarsePlanes) * h.topK) * rows + t.get(i, 'extraFanout') + t.headCoarse[STAT.extraFanout]!;
    }
    if (site.kind === 'q_in') return steps * c.numHeads * t.attendedKeys + c.numHeads * t.get(i, 'extraFanout');
    if (site.kind === 'p_in') return steps * t.tokens * c.numHeads * c.headDim + t.get(i, 'extraFanout');
    return steps * receiversPerRow * rows + t.get(i, 'extraFanout');
  };
  /** Synaptic operations of a site: its events × fan-out; a two-stage head's coarse events also reach the other V − k outputs. */
  const synapses = (i: number): number => t.get(i, 'synapticOps') + (t.sites[i]!.kind === 'head_in' && t.headStages ? t.headCoarse[STAT.synapticOps]! : 0);
  /** A two-stage head's selection, per its rows (header: SELECTION). */
  const selection = (rows: number): number => (t.headStages ? rows * c.vocabSize * (1 + Math.ceil(Math.log2(t.headStages.topK))) : 0);
  return { neuronOps, doublings, synapses, selection };
}

/**
 * What one encoder site costs in the spiking network, beyond what the planes do not change (biases,
 * dense operators): its synaptic events × fan-out, the doublings of the accumulators they reach, and
 * its neurons. The plane search prices a site's planes with this; the report's parts add the same.
 */
export function siteOps(input: EnergyInput, i: number): OpCount {
  const { neuronOps, doublings, synapses, selection } = siteRules(input);
  const t = input.tally, c = input.config, site = t.sites[i]!;
  const rows = site.kind === 'head_in' || site.kind === 'proj_out' ? t.headRows : t.tokens;
  const neu = neuronOps(i);
  const select = site.kind === 'head_in' ? selection(rows) : 0;
  return { acs: synapses(i) + doublings(i, site.kind === 'head_in' ? c.vocabSize : receiversOf(c, site), rows) + neu.acs + select, macs: neu.macs };
}

/** The accumulators one row of a linear site's spikes reaches (its layer's outputs). */
function receiversOf(c: ModelConfig, site: EncoderSite): number {
  const qW = c.numHeads * c.headDim, kvW = c.numKvHeads * c.headDim;
  switch (site.kind) {
    case 'attn_in': return qW + 2 * kvW;
    case 'o_in': case 'down_in': return c.hiddenSize;
    case 'mlp_in': return c.gatedMlp ? 2 * c.intermediateSize : c.intermediateSize;
    case 'head_in': return c.vocabSize;
    case 'proj_in': return c.hiddenSize;
    case 'proj_out': return c.embedDim;
    default: return 0;
  }
}

export function energyReport(input: EnergyInput): EnergyReport {
  const c = input.config, T = input.timesteps, t = input.tally;
  const n = t.tokens, A = t.attendedKeys, r = t.headRows;
  const D = c.hiddenSize, I = c.intermediateSize, V = c.vocabSize, H = c.numHeads, d = c.headDim;
  const qW = H * d, kvW = c.numKvHeads * d;
  const gated = c.gatedMlp, relu = c.activation === 'relu', E = c.embedDim, bias = c.bias;
  const stepwise = input.schedule === 'stepwise';
  const siteIndex = new Map(t.sites.map((s, i) => [s.name, i]));
  const annParts: Record<string, OpCount> = {}, snnParts: Record<string, OpCount> = {};
  const part = (rec: Record<string, OpCount>, name: string) => (rec[name] ??= { acs: 0, macs: 0 });
  const layers: LayerEnergy[] = [];
  const { neuronOps, doublings, synapses, selection } = siteRules(input);
  const perTokenSteps = stepwise ? T : 1;
  /**
   * A linear layer of K inputs and N outputs (biasOutputs of them with a bias) behind site `name`,
   * on `rows` rows: the ANN's MACs and bias ACs, the SNN's synapses, membranes and neurons.
   */
  const linearLayer = (name: string, K: number, N: number, biasOutputs: number, rows: number, ann: OpCount, snn: OpCount): { events: number; neurons: number } => {
    const lin = { macs: rows * K * N, acs: rows * biasOutputs };
    add(ann, lin);
    add(part(annParts, 'linear'), lin);
    const i = siteIndex.get(name)!;
    const syn = { acs: t.get(i, 'synapticOps') + perTokenSteps * rows * biasOutputs };
    const mem = { acs: doublings(i, N, rows) };
    const neu = neuronOps(i);
    for (const [label, x] of [['synapses', syn], ['membranes', mem], ['neurons', neu]] as const) {
      add(snn, x);
      add(part(snnParts, label), x);
    }
    return { events: t.get(i, 'events'), neurons: t.neurons[i]! };
  };
  if (siteIndex.has('proj_in')) {
    const ann: OpCount = { acs: 0, macs: 0 }, snn: OpCount = { acs: 0, macs: 0 };
    const { events, neurons } = linearLayer('proj_in', E, D, 0, n, ann, snn);
    layers.push({ layer: 'project_in', ann, snn, spikesPerNeuronPerToken: neurons ? events / neurons : 0 });
  }
  for (let l = 0; l < c.numLayers; l++) {
    const ann: OpCount = { acs: 0, macs: 0 }, snn: OpCount = { acs: 0, macs: 0 };
    const qkvBias = (bias.q ? qW : 0) + (bias.k ? kvW : 0) + (bias.v ? kvW : 0);
    const linears: [string, number, number, number][] = [
      ['attn_in', D, qW + 2 * kvW, qkvBias], ['o_in', qW, D, bias.o ? D : 0],
      ['mlp_in', D, gated ? 2 * I : I, bias.mlp ? (gated ? 2 * I : I) : 0], ['down_in', I, D, bias.mlp ? D : 0],
    ];
    let layerEvents = 0, layerNeurons = 0;
    for (const [kind, K, N, biasOutputs] of linears) {
      const x = linearLayer(`layers.${l}.${kind}`, K, N, biasOutputs, n, ann, snn);
      layerEvents += x.events;
      layerNeurons += x.neurons;
    }
    // attention on the cache
    const scores = { macs: 2 * qW * A };
    const softmax = { macs: SOFTMAX_OPS * H * A };
    const rope = { macs: c.rotary ? ROPE_OPS * n * (qW + kvW) : 0 };
    add(ann, scores); add(part(annParts, 'attention'), scores);
    add(ann, softmax); add(part(annParts, 'softmax'), softmax);
    add(ann, rope); add(part(annParts, 'rope'), rope);
    if (stepwise) {
      const dense = { macs: T * (scores.macs + softmax.macs + rope.macs) };
      add(snn, dense);
      add(part(snnParts, 'attention (dense, every step)'), dense);
    } else {
      const qi = siteIndex.get(`layers.${l}.q_in`)!, pi = siteIndex.get(`layers.${l}.p_in`)!;
      const syn = { acs: t.get(qi, 'synapticOps') + t.get(pi, 'synapticOps') };
      // scores: H·keys receivers per query row; outputs: d receivers per (row, head)
      const mem = { acs: doublings(qi, H, 0) + doublings(pi, 0, 0) };
      const neu = { acs: neuronOps(qi).acs + neuronOps(pi).acs, macs: neuronOps(qi).macs + neuronOps(pi).macs };
      const cache = { macs: 2 * n * kvW };
      for (const [name, x] of [['synapses', syn], ['membranes', mem], ['neurons', neu], ['cache scaling', cache], ['softmax', softmax], ['rope', rope]] as const) {
        add(snn, x);
        add(part(snnParts, name), x);
      }
      layerEvents += t.get(qi, 'events') + t.get(pi, 'events');
      layerNeurons += t.neurons[qi]! + t.neurons[pi]!;
    }
    // norms (the block's two, and Qwen3's q/k norms), activation, residual adds
    const qkNorm = c.qkNorm ? NORM_OPS * n * (qW + kvW) : 0;
    const elementwise: OpCount = { macs: 2 * NORM_OPS * n * D + qkNorm + (relu ? 0 : ACT_OPS * n * I) + (gated ? n * I : 0), acs: (relu ? n * I : 0) + 2 * n * D };
    add(ann, elementwise);
    add(part(annParts, 'norms, activation, residual'), elementwise);
    const snnElementwise = { macs: perTokenSteps * elementwise.macs, acs: perTokenSteps * elementwise.acs };
    add(snn, snnElementwise);
    add(part(snnParts, 'norms, activation, residual'), snnElementwise);
    if (stepwise) {
      // running mean in, difference out, for every compensated operator, at every step
      const compensated = 2 * D + (qW + 2 * kvW) + qW + (gated ? 3 * I : relu ? 0 : 2 * I);
      const comp = { macs: T * n * compensated * COMPENSATION_MACS };
      add(snn, comp);
      add(part(snnParts, 'compensation'), comp);
    }
    layers.push({ layer: `layers.${l}`, ann, snn, spikesPerNeuronPerToken: layerNeurons ? layerEvents / layerNeurons : 0 });
  }
  if (siteIndex.has('proj_out')) {
    const ann: OpCount = { acs: 0, macs: 0 }, snn: OpCount = { acs: 0, macs: 0 };
    const { events, neurons } = linearLayer('proj_out', D, E, 0, r, ann, snn);
    layers.push({ layer: 'project_out', ann, snn, spikesPerNeuronPerToken: neurons ? events / neurons : 0 });
  }
  // final norm (where the model has one) and LM head; the learned-position add is counted here too
  {
    const finalNorm = c.finalNorm ? 1 : 0, positionAdd = c.rotary ? 0 : n * D;
    const ann: OpCount = { macs: r * E * V + finalNorm * NORM_OPS * r * D, acs: positionAdd };
    add(part(annParts, 'linear'), { macs: r * E * V });
    add(part(annParts, 'norms, activation, residual'), { macs: finalNorm * NORM_OPS * r * D, acs: ann.acs });
    const i = siteIndex.get('head_in')!;
    const headNeuronRows = stepwise ? n : r;
    const snn: OpCount = { acs: 0, macs: 0 };
    const syn = { acs: synapses(i) };
    const mem = { acs: doublings(i, V, r) };
    const neu = neuronOps(i);
    const select = { acs: selection(r) };
    const dense = { macs: finalNorm * (stepwise ? T * headNeuronRows : r) * D * NORM_OPS, acs: perTokenSteps * positionAdd };
    const comp = { macs: stepwise ? finalNorm * T * n * D * COMPENSATION_MACS : 0 };
    for (const [name, x] of [['synapses', syn], ['membranes', mem], ['neurons', neu], ['head selection', select], ['norms, activation, residual', dense], ['compensation', comp]] as [string, Partial<OpCount>][]) {
      add(snn, x);
      if (x.acs || x.macs) add(part(snnParts, name), x);
    }
    layers.push({ layer: 'final norm + lm_head', ann, snn, spikesPerNeuronPerToken: t.neurons[i] ? t.get(i, 'events') / t.neurons[i]! : 0 });
  }
  const sum = (k: 'ann' | 'snn'): OpCount => layers.reduce((a, x) => ({ acs: a.acs + x[k].acs, macs: a.macs + x[k].macs }), { acs: 0, macs: 0 });
  const annTotal = sum('ann'), snnTotal = sum('snn');
  const presets = {} as EnergyReport['presets'];
  for (const [name, e] of Object.entries(ENERGY_PRESETS) as [EnergyPreset, { mac: number; ac: number }][]) {
    const annJoules = annTotal.acs * e.ac + annTotal.macs * e.mac, snnJoules = snnTotal.acs * e.ac + snnTotal.macs * e.mac;
    presets[name] = { annJoules, snnJoules, ratio: snnJoules / annJoules };
  }
  let kvSnn = 0;
  for (let l = 0; l < c.numLayers; l++) {
    kvSnn += stepwise ? 0 : t.get(siteIndex.get(`layers.${l}.q_in`)!, 'synapticOps') + t.get(siteIndex.get(`layers.${l}.p_in`)!, 'synapticOps');
  }
  const kvAnn = c.numLayers * 2 * qW * A;
  const s = t.summary();
  return {
    schedule: input.schedule, coding: input.coding, timesteps: T, tokens: n, attendedKeys: A, headRows: r,
    ann: { total: annTotal, parts: annParts }, snn: { total: snnTotal, parts: snnParts }, layers,
    kvReads: { ann: kvAnn, snn: stepwise ? T * kvAnn : kvSnn },
    spikesPerNeuronPerToken: s.spikesPerNeuronPerToken, spikesPerNeuronPerStep: s.spikesPerNeuronPerStep, maxSpikesPerNeuronPerStep: s.maxSpikesPerNeuronPerStep,
    density: s.density, presets,
    note: 'compute only (Horowitz 45 nm: FP32 MAC 4.6 pJ, AC 0.9 pJ); memory and data movement excluded, KV reads counted beside.',
  };
}

export function formatEnergy(r: EnergyReport): string {
  const lines = [`energy: ${r.schedule} ${r.coding}, T = ${r.timesteps}, ${r.tokens} tokens (${r.attendedKeys} attended keys), ${r.spikesPerNeuronPerToken.toFixed(2)} spikes/neuron/token, at most ${r.maxSpikesPerNeuronPerStep} per neuron per step`];
  lines.push(`  ${r.note}`);
  lines.push(`  ${'layer'.padEnd(22)} ${'ANN MACs'.padStart(11)} ${'ANN ACs'.padStart(11)} ${'SNN MACs'.padStart(11)} ${'SNN ACs'.padStart(11)} ${'spikes/n/tok'.padStart(12)}`);
  for (const l of r.layers) {
    lines.push(`  ${l.layer.padEnd(22)} ${l.ann.macs.toExponential(3).padStart(11)} ${l.ann.acs.toExponential(3).padStart(11)} ${l.snn.macs.toExponential(3).padStart(11)} ${l.snn.acs.toExponential(3).padStart(11)} ${l.spikesPerNeuronPerToken.toFixed(3).padStart(12)}`);
  }
  lines.push('  SNN by part: ' + Object.entries(r.snn.parts).map(([k, v]) => `${k} ${v.acs.toExponential(2)} ACs + ${v.macs.toExponential(2)} MACs`).join('; '));
  for (const [name, p] of Object.entries(r.presets)) {
    lines.push(`  ${name}: E_ANN ${(p.annJoules * 1e6).toFixed(3)} µJ, E_SNN ${(p.snnJoules * 1e6).toFixed(3)} µJ, E_SNN/E_ANN ${p.ratio.toFixed(3)}`);
  }
  return lines.join('\n');
}
