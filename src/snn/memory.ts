/**
 * Energy beyond compute: the bytes a forward moves, priced by where each datum lives (DESIGN.md §7),
 * beside src/snn/energy.ts's operation counts. After Lemaire et al. 2022 (E = E_mem + E_ops +
 * E_addr), Dampfhoffer et al. (IEEE TETCI 2023) and Yan et al. (arXiv 2409.08290): count weight,
 * activation and state traffic, and compare against an ANN of the same precision.
 *
 * Elements moved in a forward over n tokens (A attended keys in all, r LM-head rows), per linear
 * layer of K inputs and N outputs, L layers, kvW = numKvHeads·headDim:
 *
 *   ANN
 *     weights       decode (batch 1): every weight once per token, K·N·n (the head D·V·r);
 *                   prefill: once per tile of TILE tokens that share it, K·N·⌈n/TILE⌉ (the head D·V·⌈r/TILE⌉)
 *     activations   each linear's input read and output written: (K + N)·n
 *     kv            each token's key and value written, 2·kvW·n per layer; every attended key's
 *                   key and value read, 2·kvW·A per layer
 *   SNN, layerwise, the event execution (what a neuromorphic chip does; the fast one moves less)
 *     weights       a weight row per event: events × fan-out elements (STAT.synapticOps); the same
 *                   in decode and prefill — an event cannot share its row with another token's
 *     accumulators  every synaptic operation reads and writes the accumulator it adds into (2 per
 *                   op), and every doubling of a weighted code's receiver is a read and a write
 *     neuron state  each encoder neuron's membrane written when charged, read and written at every
 *                   step it runs (STAT.activeSteps)
 *     spikes        address-events: a 32-bit word per event (neuron address, sign; the plane is the
 *                   time slot), written by the encoder and read by the synapses — 8 bytes an event
 *     activations   as the ANN: each linear's input read (the charge) and output written (decoded)
 *     kv            writes as the ANN; reads: a key element per q event and key seen, a value row
 *                   per probability event (q_in's and p_in's synaptic operations)
 *     two-stage head  its coarse events read V-long weight columns, its fine events k gathered
 *                   weights (energy.ts's synapses); the selection reads each coarse accumulator
 *                   once (V per row) and writes k indices
 *
 * Widths follow the precision (FP32 4 bytes, FP16 2, INT8 1) for weights, activations, the cache,
 * accumulators and membranes alike; spikes are 32-bit words at every precision. Energy per 64-bit
 * access from Horowitz (ISSCC 2014, 45 nm): SRAM of 8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ; DRAM
 * 1.3 nJ (the lower of his 1.3–2.6 nJ). Left out: addressing logic (E_addr) beyond the AER words,
 * instruction and control overheads, leakage, the embedding lookup and the norms' own state.
 */
import { ArgumentError } from '../errors.js';
import { type ModelConfig, hasProjections } from '../nn/config.js';
import type { SiteKind } from './sites.js';
import type { EnergyInput, EnergyPreset, EnergyReport } from './energy.js';
import { siteRules } from './energy.js';

export const MEMORY_LEVELS = ['sram_8kb', 'sram_32kb', 'sram_1mb', 'dram'] as const;
export type MemoryLevel = (typeof MEMORY_LEVELS)[number];
export const DATA_KINDS = ['weights', 'activations', 'kv', 'accumulators', 'neuron_state', 'spikes'] as const;
export type DataKind = (typeof DATA_KINDS)[number];

/** Where each kind of datum lives: a level, or `auto` (the 1 MB SRAM if it fits there, else DRAM). */
export interface MemoryPreset {
  readonly name: string;
  readonly description: string;
  /** pJ per 64-bit access at each level. */
  readonly pjPer64Bits: Readonly<Record<MemoryLevel, number>>;
  readonly placement: Readonly<Record<DataKind, MemoryLevel | 'auto'>>;
}

const HOROWITZ: Record<MemoryLevel, number> = { sram_8kb: 10, sram_32kb: 20, sram_1mb: 100, dram: 1300 };

export const MEMORY_PRESETS: Readonly<Record<string, MemoryPreset>> = {
  'horowitz-45nm': {
    name: 'horowitz-45nm',
    description: 'weights and the KV cache in a 1 MB SRAM where they fit, else DRAM; activations, accumulators and spikes in 32 KB SRAM; membranes in 8 KB SRAM',
    pjPer64Bits: HOROWITZ,
    placement: { weights: 'auto', kv: 'auto', activations: 'sram_32kb', accumulators: 'sram_32kb', spikes: 'sram_32kb', neuron_state: 'sram_8kb' },
  },
  'on-chip': {
    name: 'on-chip',
    description: 'everything on chip (as a neuromorphic chip with enough SRAM): weights and the KV cache in 1 MB-class SRAM whatever their size, the rest as horowitz-45nm',
    pjPer64Bits: HOROWITZ,
    placement: { weights: 'sram_1mb', kv: 'sram_1mb', activations: 'sram_32kb', accumulators: 'sram_32kb', spikes: 'sram_32kb', neuron_state: 'sram_8kb' },
  },
  dram: {
    name: 'dram',
    description: 'weights and the KV cache in DRAM whatever their size (a GPU- or CPU-like memory system), the rest as horowitz-45nm',
    pjPer64Bits: HOROWITZ,
    placement: { weights: 'dram', kv: 'dram', activations: 'sram_32kb', accumulators: 'sram_32kb', spikes: 'sram_32kb', neuron_state: 'sram_8kb' },
  },
};

export const DEFAULT_MEMORY_PRESET = 'horowitz-45nm';
/** Tokens that share a weight read in the ANN's prefill. */
export const PREFILL_TILE = 64;
/** Context the KV cache is sized for when its placement is decided (the default chat context). */
export const KV_CONTEXT = 512;
const ONE_MB = 1 << 20;
const SPIKE_BYTES = 4;
export const BYTES: Readonly<Record<EnergyPreset, number>> = { fp32: 4, fp16: 2, int8: 1 };

/** A user's preset (`--energy-preset FILE`): the same fields, checked, every level and kind given. */
export function parseMemoryPreset(json: unknown, where: string): MemoryPreset {
  const fail = (msg: string): never => {
    throw new ArgumentError(`${where}: ${msg}`);
  };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail('must be a JSON object with "name", "pj_per_64_bits" and "placement"');
  const j = json as Record<string, unknown>;
  const pj = j.pj_per_64_bits as Record<string, unknown> | undefined, pl = j.placement as Record<string, unknown> | undefined;
  if (typeof j.name !== 'string' || !j.name) fail('"name" must be a non-empty string');
  if (typeof pj !== 'object' || pj === null) fail(`"pj_per_64_bits" must be an object with ${MEMORY_LEVELS.join(', ')}`);
  if (typeof pl !== 'object' || pl === null) fail(`"placement" must be an object with ${DATA_KINDS.join(', ')}`);
  for (const l of MEMORY_LEVELS) if (typeof pj![l] !== 'number' || !(pj![l] as number >= 0) || !Number.isFinite(pj![l])) fail(`"pj_per_64_bits.${l}" must be a number ≥ 0 (picojoules per 64-bit access)`);
  for (const k of DATA_KINDS) if (![...MEMORY_LEVELS, 'auto'].includes(pl![k] as string)) fail(`"placement.${k}" must be one of ${[...MEMORY_LEVELS, 'auto'].join(', ')}`);
  return {
    name: j.name as string, description: typeof j.description === 'string' ? j.description : 'a user preset',
    pjPer64Bits: Object.fromEntries(MEMORY_LEVELS.map((l) => [l, pj![l] as number])) as Record<MemoryLevel, number>,
    placement: Object.fromEntries(DATA_KINDS.map((k) => [k, pl![k]])) as Record<DataKind, MemoryLevel | 'auto'>,
  };
}

export type Regime = 'decode' | 'prefill';

export interface NetworkTraffic {
  /** Bytes moved per kind of datum. */
  readonly bytes: Readonly<Record<DataKind, number>>;
  readonly memoryJoules: number;
  readonly computeJoules: number;
  readonly totalJoules: number;
}

export interface MemoryReport {
  readonly regime: Regime;
  readonly precision: EnergyPreset;
  readonly preset: string;
  /** Where each kind lives for this model (auto resolved), and the sizes that decided it. */
  readonly placement: Readonly<Record<DataKind, MemoryLevel>>;
  readonly weightBytes: number;
  readonly kvBytes: number;
  readonly ann: NetworkTraffic;
  readonly snn: NetworkTraffic;
  /** E_SNN / E_ANN with memory and compute; and memory alone. */
  readonly ratio: number;
  readonly memoryRatio: number;
}

interface Linear {
  /** The encoder site in front of it. */
  readonly site: SiteKind;
  readonly K: number;
  readonly N: number;
  /** The rows it runs for (n tokens, or r head rows). */
  readonly rows: 'tokens' | 'head';
}

function linearsOf(c: ModelConfig): Linear[] {
  const qW = c.numHeads * c.headDim, kvW = c.numKvHeads * c.headDim, D = c.hiddenSize, I = c.intermediateSize, E = c.embedDim;
  const per: Linear[] = [
    { site: 'attn_in', K: D, N: qW + 2 * kvW, rows: 'tokens' }, { site: 'o_in', K: qW, N: D, rows: 'tokens' },
    { site: 'mlp_in', K: D, N: c.gatedMlp ? 2 * I : I, rows: 'tokens' }, { site: 'down_in', K: I, N: D, rows: 'tokens' },
  ];
  const projections = hasProjections(c);
  return [
    ...(projections ? [{ site: 'proj_in', K: E, N: D, rows: 'tokens' } as const] : []),
    ...Array.from({ length: c.numLayers }, () => per).flat(),
    ...(projections ? [{ site: 'proj_out', K: D, N: E, rows: 'head' } as const] : []),
    { site: 'head_in', K: E, N: c.vocabSize, rows: 'head' },
  ];
}

/** Weights the linear layers and the head hold (elements). */
export function linearWeightCount(c: ModelConfig): number {
  return linearsOf(c).reduce((a, l) => a + l.K * l.N, 0);
}

/**
 * The memory traffic of the counted run (`input.tally`), for `regime` and `precision`, priced with
 * `preset`; `compute` is energy.ts's report of the same run, whose joules at `precision` are added.
 */
export function memoryReport(input: EnergyInput, compute: EnergyReport, regime: Regime, precision: EnergyPreset, preset: MemoryPreset = MEMORY_PRESETS[DEFAULT_MEMORY_PRESET]!): MemoryReport {
  if (input.schedule !== 'layerwise') throw new ArgumentError('the memory model prices the layerwise schedule (the event execution); the stepwise schedule moves T copies of everything and is not modelled');
  const c = input.config, t = input.tally, w = BYTES[precision];
  const n = t.tokens, A = t.attendedKeys, r = t.headRows, kvW = c.numKvHeads * c.headDim;
  const weightBytes = linearWeightCount(c) * w;
  const kvBytes = c.numLayers * 2 * kvW * Math.min(c.maxPositions, KV_CONTEXT) * w;
  const resolve = (k: DataKind, size: number): MemoryLevel => {
    const p = preset.placement[k];
    return p === 'auto' ? (size <= ONE_MB ? 'sram_1mb' : 'dram') : p;
  };
  const placement = Object.fromEntries(DATA_KINDS.map((k) => [k, resolve(k, k === 'weights' ? weightBytes : k === 'kv' ? kvBytes : 0)])) as Record<DataKind, MemoryLevel>;
  const tiles = (rows: number) => (regime === 'decode' ? rows : Math.ceil(rows / PREFILL_TILE));

  // ANN
  const linears = linearsOf(c);
  const rowsOf = (l: Linear) => (l.rows === 'head' ? r : n);
  const annEl: Record<DataKind, number> = { weights: 0, activations: 0, kv: 0, accumulators: 0, neuron_state: 0, spikes: 0 };
  for (const l of linears) {
    annEl.weights += l.K * l.N * tiles(rowsOf(l));
    annEl.activations += (l.K + l.N) * rowsOf(l);
  }
  const kvWrites = c.numLayers * 2 * kvW * n;
  annEl.kv = kvWrites + c.numLayers * 2 * kvW * A;

  // SNN (event execution)
  const { doublings, synapses } = siteRules(input);
  const snnEl: Record<DataKind, number> = { weights: 0, activations: annEl.activations, kv: kvWrites, accumulators: 0, neuron_state: 0, spikes: 0 };
  let events = 0;
  t.sites.forEach((site, i) => {
    const syn = synapses(i);
    if (site.kind === 'q_in' || site.kind === 'p_in') snnEl.kv += syn; // key elements per q event and key; value rows per p event
    else snnEl.weights += syn;
    const linear = linears.find((l) => l.site === site.kind);
    const receivers = linear?.N ?? 0;
    snnEl.accumulators += 2 * syn + 2 * doublings(i, receivers, linear?.rows === 'head' ? r : n);
    snnEl.neuron_state += t.neurons[i]! + 2 * t.get(i, 'activeSteps');
    events += t.get(i, 'events');
  });
  // a two-stage head's selection: every coarse accumulator read once, k indices written per row
  if (t.headStages) snnEl.accumulators += r * (c.vocabSize + t.headStages.topK);
  const snnBytes = Object.fromEntries(DATA_KINDS.map((k) => [k, snnEl[k] * w])) as Record<DataKind, number>;
  snnBytes.spikes = 2 * events * SPIKE_BYTES;
  const annBytes = Object.fromEntries(DATA_KINDS.map((k) => [k, annEl[k] * w])) as Record<DataKind, number>;

  const price = (bytes: Record<DataKind, number>) => DATA_KINDS.reduce((a, k) => a + (bytes[k] / 8) * preset.pjPer64Bits[placement[k]] * 1e-12, 0);
  const traffic = (bytes: Record<DataKind, number>, computeJoules: number): NetworkTraffic => {
    const memoryJoules = price(bytes);
    return { bytes, memoryJoules, computeJoules, totalJoules: memoryJoules + computeJoules };
  };
  const ann = traffic(annBytes, compute.presets[precision].annJoules), snn = traffic(snnBytes, compute.presets[precision].snnJoules);
  return { regime, precision, preset: preset.name, placement, weightBytes, kvBytes, ann, snn, ratio: snn.totalJoules / ann.totalJoules, memoryRatio: snn.memoryJoules / ann.memoryJoules };
}

/** Decode and prefill at the three precisions: what `fidelity` reports beside the compute ratio. */
export function memorySummary(input: EnergyInput, compute: EnergyReport, preset?: MemoryPreset) {
  const out: Record<Regime, Record<EnergyPreset, { ratio: number; memory_ratio: number }>> = { decode: {} as never, prefill: {} as never };
  for (const regime of ['decode', 'prefill'] as const) {
    for (const p of ['fp32', 'fp16', 'int8'] as const) {
      const m = memoryReport(input, compute, regime, p, preset);
      out[regime][p] = { ratio: m.ratio, memory_ratio: m.memoryRatio };
    }
  }
  return out;
}
