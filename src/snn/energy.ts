/**
 * Energy estimate of a spiking run against its ANN, after DESIGN.md §4 (compute only).
 *
 *   E_ANN = MACs × E_MAC
 *   E_SNN = synaptic ACs × E_AC + remaining MACs × E_MAC
 *
 * Counting rules, per token (the ANN) or per token and time step (the SNN):
 *   ANN MACs       every linear layer K·N; attention 2·H·d per key (scores and the weighted sum);
 *                  norms and activations ELEMENTWISE_MACS per output element.
 *   SNN ACs        synaptic: every spike (a burst of n counts n) × the fan-out of the layer it drives
 *                  (q|k|v: H·d + 2·Hkv·d; o: D; up (|gate): I or 2I; down: D; LM head: V), plus one
 *                  accumulate per neuron per step for the membrane and one per output per step for a bias.
 *   SNN MACs       what stays dense: attention on decoded values at every step (T × the ANN's), the
 *                  nonlinear f of every compensated operator at every step (T × the ANN's elementwise
 *                  MACs) and its bookkeeping (running mean and difference: COMPENSATION_MACS per element
 *                  per step).
 * Memory traffic and data movement are excluded (reports say so); on real hardware they often dominate.
 *
 * Horowitz (ISSCC 2014, 45 nm): FP32 MAC 4.6 pJ, AC 0.9 pJ; FP16 1.5 / 0.4; INT8 0.23 / 0.03.
 * A spiking linear layer beats its dense twin when T × spike rate < E_MAC / E_AC (5.1 at FP32).
 */
import type { ModelConfig } from '../nn/config.js';
import { encoderSites } from './sites.js';

export const ENERGY_PRESETS = {
  fp32: { mac: 4.6e-12, ac: 0.9e-12 },
  fp16: { mac: 1.5e-12, ac: 0.4e-12 },
  int8: { mac: 0.23e-12, ac: 0.03e-12 },
} as const;
export type EnergyPreset = keyof typeof ENERGY_PRESETS;

export const ELEMENTWISE_MACS = 4;
export const COMPENSATION_MACS = 3;

export interface EnergyInput {
  readonly config: ModelConfig;
  readonly timesteps: number;
  /** Tokens run. */
  readonly tokens: number;
  /** Σ over tokens of the keys each attended to (position + 1). */
  readonly attendedKeys: number;
  /** Measured spikes per encoder site (Σ|n|), in encoderSites order. */
  readonly spikesPerSite: ArrayLike<number>;
}

export interface LayerEnergy {
  readonly layer: string;
  readonly annMacs: number;
  readonly snnAcs: number;
  readonly snnMacs: number;
  /** Spikes per neuron per step at the layer's encoder(s). */
  readonly spikeRate: number;
}

export interface EnergyReport {
  readonly layers: LayerEnergy[];
  readonly annMacs: number;
  readonly snnAcs: number;
  readonly snnMacs: number;
  readonly spikeRate: number;
  readonly timesteps: number;
  readonly presets: Record<EnergyPreset, { readonly annJoules: number; readonly snnJoules: number; readonly ratio: number; readonly breakEvenTRate: number; readonly tTimesRate: number }>;
  readonly note: string;
}

export function energyReport(input: EnergyInput): EnergyReport {
  const c = input.config, T = input.timesteps, n = input.tokens;
  const D = c.hiddenSize, I = c.intermediateSize, V = c.vocabSize;
  const qW = c.numHeads * c.headDim, kvW = c.numKvHeads * c.headDim;
  const gated = c.family === 'llama';
  const reluNeuron = c.activation === 'relu' && c.family === 'gpt2';
  const sites = encoderSites(c);
  const spikes = (name: string) => input.spikesPerSite[sites.findIndex((s) => s.name === name)] ?? 0;
  const fanOut: Record<string, number> = { attn_in: qW + 2 * kvW, o_in: D, mlp_in: gated ? 2 * I : I, down_in: D };
  const attentionMacs = 2 * c.numHeads * c.headDim * input.attendedKeys;
  const layers: LayerEnergy[] = [];
  let spikeTotal = 0, neuronSteps = 0;
  for (let l = 0; l < c.numLayers; l++) {
    const linear = D * (qW + 2 * kvW) + qW * D + D * (gated ? 2 * I : I) + I * D;
    const elementwise = (2 * D + (gated ? I : reluNeuron ? 0 : I)) * ELEMENTWISE_MACS; // two norms, the activation
    const annMacs = n * (linear + elementwise) + attentionMacs;
    let acs = 0, layerSpikes = 0, layerNeurons = 0;
    for (const [site, fo] of Object.entries(fanOut)) {
      const s = spikes(`layers.${l}.${site}`);
      const width = site === 'down_in' ? I : site === 'o_in' ? qW : D;
      acs += s * fo + n * T * width /* membrane */ + n * T * fo /* bias currents */;
      layerSpikes += s;
      layerNeurons += n * T * width;
    }
    // compensated operators: attn norm, mlp norm, attention output (q|k|v decode + output), activation
    const compensatedElements = 2 * D + (qW + 2 * kvW) + qW + (gated ? 2 * I + I : reluNeuron ? 0 : 2 * I);
    const snnMacs = T * (attentionMacs + n * elementwise) + n * T * compensatedElements * COMPENSATION_MACS;
    layers.push({ layer: `layers.${l}`, annMacs, snnAcs: acs, snnMacs, spikeRate: layerNeurons ? layerSpikes / layerNeurons : 0 });
    spikeTotal += layerSpikes;
    neuronSteps += layerNeurons;
  }
  const headSpikes = spikes('head_in');
  layers.push({
    layer: 'final norm + lm_head', annMacs: n * (D * V + D * ELEMENTWISE_MACS),
    snnAcs: headSpikes * V + n * T * (D + V), snnMacs: n * T * D * (ELEMENTWISE_MACS + COMPENSATION_MACS), spikeRate: headSpikes / Math.max(1, n * T * D),
  });
  spikeTotal += headSpikes;
  neuronSteps += n * T * D;
  const annMacs = layers.reduce((a, x) => a + x.annMacs, 0);
  const snnAcs = layers.reduce((a, x) => a + x.snnAcs, 0);
  const snnMacs = layers.reduce((a, x) => a + x.snnMacs, 0);
  const spikeRate = neuronSteps ? spikeTotal / neuronSteps : 0;
  const presets = {} as EnergyReport['presets'];
  for (const [name, e] of Object.entries(ENERGY_PRESETS) as [EnergyPreset, { mac: number; ac: number }][]) {
    const annJoules = annMacs * e.mac, snnJoules = snnAcs * e.ac + snnMacs * e.mac;
    presets[name] = { annJoules, snnJoules, ratio: snnJoules / annJoules, breakEvenTRate: e.mac / e.ac, tTimesRate: T * spikeRate };
  }
  return {
    layers, annMacs, snnAcs, snnMacs, spikeRate, timesteps: T, presets,
    note: 'compute only (Horowitz 45 nm); memory and data movement are excluded. A spiking linear layer breaks even when T × spike rate < E_MAC/E_AC.',
  };
}

export function formatEnergy(r: EnergyReport): string {
  const lines = [`energy (T = ${r.timesteps}, ${r.spikeRate.toFixed(3)} spikes/neuron/step; ${r.note})`];
  lines.push(`  ${'layer'.padEnd(22)} ${'ANN MACs'.padStart(12)} ${'SNN ACs'.padStart(12)} ${'SNN MACs'.padStart(12)} ${'spikes/n/step'.padStart(13)}`);
  for (const l of r.layers) lines.push(`  ${l.layer.padEnd(22)} ${l.annMacs.toExponential(3).padStart(12)} ${l.snnAcs.toExponential(3).padStart(12)} ${l.snnMacs.toExponential(3).padStart(12)} ${l.spikeRate.toFixed(3).padStart(13)}`);
  for (const [name, p] of Object.entries(r.presets)) {
    lines.push(`  ${name}: E_ANN ${(p.annJoules * 1e6).toFixed(3)} µJ, E_SNN ${(p.snnJoules * 1e6).toFixed(3)} µJ, E_SNN/E_ANN ${p.ratio.toFixed(2)}; T × rate ${p.tTimesRate.toFixed(2)} vs break-even ${p.breakEvenTRate.toFixed(2)}`);
  }
  return lines.join('\n');
}
