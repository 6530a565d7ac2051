/**
 * The spiking language model: a GPT-2 or Llama network converted to run over T time steps, in one of
 * two schedules (src/snn/codes.ts says what each is for):
 *
 *   stepwise   rate codes, compensated operators at every step (src/snn/stepwise.ts)
 *   layerwise  any code, every nonlinear operator once per token, spike-driven attention
 *              (src/snn/layerwise.ts)
 *
 * Modes: `spiking` is the spiking network; `exact` replaces every encoder by the identity (each value
 * delivered whole), which must reproduce the ANN — the identity the tests anchor to.
 *
 * Every forward returns, beside the decoded logits, the statistics of every encoder site (events,
 * the largest burst, synaptic operations = events × fan-out, neuron-steps, extra planes, clipped
 * values; kernels/codes.ts STAT): what src/snn/stats.ts and the energy report are computed from.
 */
import { ArgumentError } from '../errors.js';
import { type ModelConfig, keysAttended } from '../nn/config.js';
import { KvCache } from '../nn/kv-cache.js';
import type { LMWeights } from '../nn/weights.js';
import { type Backend, type BTensor, type SpikeKernel, tokenCount, tokenIds } from '../tensor/backend.js';
import { STATS_WIDTH } from '../tensor/kernels/codes.js';
import { MAX_TOP_K } from '../tensor/kernels/top-k.js';
import { type NeuronConfig, validateNeuron } from '../tensor/kernels/neuron.js';
import { type Adapters, applyAdapters } from './adapters.js';
import { type CodingName, type ScheduleName, checkCombination } from './codes.js';
import { LayerwiseNet } from './layerwise.js';
import type { OperatorForm } from './operators.js';
import { type EncoderSite, MAX_SITE_PLANES, type SiteKind, type SitePlanes, encoderSites, kindOfSiteName, shiftPlanes, stepsOfSite } from './sites.js';
import { StepwiseNet } from './stepwise.js';
import type { SurrogateName } from './surrogate.js';

export type SnnMode = 'spiking' | 'exact';
/** stepwise: 'multi' (all steps of a layer at once) or 'single'; layerwise: 'fast' or 'event'. */
export type Execution = 'multi' | 'single' | 'fast' | 'event';

/**
 * How each nonlinear operator runs over time in the stepwise schedule: `compensated` (accumulated
 * form, exact on decoded values) or `naive` (f applied to each step's currents, as a converter that
 * only swaps modules does — kept to measure what compensation buys).
 */
export type { OperatorForm };
export interface OperatorForms {
  readonly norm: OperatorForm;
  readonly attention: OperatorForm;
  readonly activation: OperatorForm;
}
export const COMPENSATED: OperatorForms = { norm: 'compensated', attention: 'compensated', activation: 'compensated' };

export interface SpikingConfig {
  readonly timesteps: number;
  readonly mode: SnnMode;
  /** Default 'stepwise'. */
  readonly schedule?: ScheduleName;
  /** Default 'rate' (stepwise) or 'phase-ternary' (layerwise). */
  readonly coding?: CodingName;
  /** The stepwise neuron (and the rate code's burst limit). */
  readonly neuron: NeuronConfig;
  /** θ per channel for every encoder site. */
  readonly thresholds: ReadonlyMap<string, Float32Array>;
  /**
   * Stepwise only: per-channel centres μ per site: the neuron encodes x − μ and the layer it feeds
   * gets W·μ added to its bias (exact by linearity), so θ resolves the spread around the offset.
   */
  readonly centers?: ReadonlyMap<string, Float32Array>;
  readonly surrogate: { readonly name: SurrogateName; readonly alpha: number };
  /** Stepwise: how each operator runs over time (default every operator compensated). */
  readonly operators?: OperatorForms;
  /** Stepwise spike × weight products: 'auto' (default: by density), 'dense' or 'event'. */
  readonly spikeKernel?: SpikeKernel;
  /** Measured fraction of nonzero spike counts per site, so a GPU can choose event-driven products. */
  readonly densityHints?: ReadonlyMap<string, number>;
  /** Default execution: 'multi' (stepwise) or 'fast' (layerwise). */
  readonly execution?: Execution;
  /**
   * Layerwise: steps per site kind relative to `timesteps` (e.g. { q_in: +1, mlp_in: −1 }): each
   * encoder runs T + offset steps (planes), so precision can be spent where it matters.
   */
  readonly siteSteps?: Readonly<Partial<Record<SiteKind, number>>>;
  /**
   * Layerwise: planes per (layer, site), by site name (`layers.2.o_in`: 7), absolute; they take
   * precedence over `siteSteps`. The target-driven conversion (src/convert/search) chooses them;
   * `timesteps` is then the largest. Running such a model at another T moves every site by the same
   * number of planes (withTimesteps).
   */
  readonly planes?: SitePlanes;
  /**
   * Layerwise, phase-ternary: the two-stage LM head. The head's input runs its planes as usual, but
   * only the first `coarsePlanes` of them reach every output; the k = `topK` leading outputs of that
   * coarse sum (per row, the sampler's rank) receive the remaining planes and so their full logits,
   * the others keep their coarse ones. The ternary code is prefix-stable (the first planes of a
   * P-plane run are the digits of a run at fewer planes), which is what makes the coarse sum a
   * code of its own. Absent: the head is one stage.
   */
  readonly head?: HeadStages;
  /**
   * Fine-tuned norm gains and LoRA corrections (src/snn/adapters.ts), merged into this model's copy
   * of the affected weights; `weights` stays the ANN's.
   */
  readonly adapters?: Adapters;
}

/** The two-stage LM head's parameters (SpikingConfig.head). */
export interface HeadStages {
  /** Planes every output receives (1 ≤ coarsePlanes < the head's planes). */
  readonly coarsePlanes: number;
  /** Outputs per row that receive the rest (1 ≤ topK ≤ 64, below the vocabulary). */
  readonly topK: number;
}

/** What conversion needs of an ANN: its config and host weights (a CausalLM has both). */
export interface CausalLMLike {
  readonly config: ModelConfig;
  readonly weights: LMWeights;
}

export interface SnnForwardOptions {
  /** Decoded logits for every new position ([S, V]) instead of the last ([1, V]). */
  readonly allLogits?: boolean;
  readonly execution?: Execution;
  /** Stepwise: also decode the logits at these steps (1 … T). */
  readonly decodedAt?: readonly number[];
  /**
   * Sees the input of every encoder site before its neurons: [steps·S, C] currents (stepwise) or [S, C]
   * values (layerwise), the LM head's input included on every new row even when fewer logits are asked for.
   */
  readonly observe?: (site: string, currents: BTensor, steps: number) => void;
  /** Sees the spike counts (digits) every encoder emits, [steps·S, C]. */
  readonly observeSpikes?: (site: string, spikes: BTensor, steps: number) => void;
  /**
   * The statistics tensor to add into (what `stats` of the output is), e.g. one for a whole
   * generation so that a decode step allocates nothing; a fresh zeroed one by default.
   */
  readonly stats?: BTensor;
  /**
   * Layerwise: more LM heads on the same head input (the plane search's head stage: one forward
   * scores several). Each writes its head_in (and coarse) statistics into its own `stats`, a
   * zeroed tensor of a row per site and, for a two-stage head, one more; `stages` undefined is the one-stage head.
   */
  readonly extraHeads?: readonly { readonly stages?: HeadStages; readonly stats: BTensor }[];
}

export interface SnnOutput {
  /** Decoded logits at step T, [rows, V]. */
  readonly logits: BTensor;
  /** Stepwise: decoded logits at the requested steps. */
  readonly decoded: ReadonlyMap<number, BTensor>;
  /** Stepwise: spike counts (Σ|n| over the site's neurons) per encoder site and step, [sites, T]. */
  readonly spikes?: BTensor;
  /**
   * Statistics per encoder site, [sites·statsSteps, STATS_WIDTH] (kernels/codes.ts STAT): one row per
   * site (layerwise), one per site and step (stepwise: the first T' rows of a site are a T'-step run).
   */
  readonly stats: BTensor;
  readonly statsSteps: number;
  /** Neurons per site in this forward (p_in: one per head and key a query sees). */
  readonly neurons: readonly number[];
  /** Tokens fed. */
  readonly tokens: number;
  /** Rows the LM head ran for (the positions whose logits were asked for). */
  readonly headRows: number;
  /** Σ over the fed tokens of the keys each attended to. */
  readonly attendedKeys: number;
  /**
   * Where the two-stage head ran: its parameters. `stats` then has one more row, after the sites':
   * the coarse stage's encoder statistics (synaptic ops at fan-out V − k; the head_in row's are at k).
   */
  readonly headStages?: HeadStages;
  /** Logits of the heads asked for in `extraHeads`, in order (their statistics in their own tensors). */
  readonly extraLogits?: readonly BTensor[];
}

/** What a schedule's network is asked to do for one forward (the facade prepares it). */
export interface NetOptions {
  /** Rows of the new tokens whose logits are returned. */
  readonly rows: readonly [number, number];
  readonly allLogits?: boolean;
  readonly execution?: Execution;
  readonly decodedAt?: readonly number[];
  readonly observe?: SnnForwardOptions['observe'];
  readonly observeSpikes?: SnnForwardOptions['observeSpikes'];
  /** [sites·statsSteps (+ 1 for a two-stage head), STATS_WIDTH], zeroed: the encoders add into it. */
  readonly stats: BTensor;
  readonly extraHeads?: SnnForwardOptions['extraHeads'];
}

export interface NetForward {
  readonly logits: BTensor;
  readonly extraLogits?: readonly BTensor[];
  readonly decoded: ReadonlyMap<number, BTensor>;
  readonly spikes?: BTensor;
}

export class SpikingLM {
  readonly sites: readonly EncoderSite[];
  spiking: SpikingConfig;
  private readonly net: StepwiseNet | LayerwiseNet;

  constructor(
    readonly config: ModelConfig,
    /** The ANN's host weights (shared, not copied). */
    readonly weights: LMWeights,
    readonly backend: Backend,
    spiking: SpikingConfig,
    /** A network of the same weights and thresholds whose unchanged layers this one reuses (withPlanes). */
    share?: SpikingLM,
  ) {
    const T = spiking.timesteps;
    if (!Number.isInteger(T) || T < 1) throw new ArgumentError(`timesteps must be a positive integer, got ${T}`);
    if (spiking.mode !== 'spiking' && spiking.mode !== 'exact') throw new ArgumentError(`mode must be spiking or exact, got ${JSON.stringify(spiking.mode)}`);
    const schedule = spiking.schedule ?? 'stepwise';
    const coding = spiking.coding ?? (schedule === 'stepwise' ? 'rate' : 'phase-ternary');
    checkCombination(coding, schedule);
    const neuron = coding === 'rate-single' ? { ...spiking.neuron, maxSpikes: 1 } : spiking.neuron;
    validateNeuron(neuron);
    if (schedule === 'layerwise' && spiking.centers?.size) throw new ArgumentError('centred encoding is a stepwise option (the layerwise codes are signed and need no centre)');
    for (const [kind, off] of Object.entries(spiking.siteSteps ?? {})) {
      if (schedule !== 'layerwise') throw new ArgumentError('siteSteps: per-site steps are a layerwise option');
      if (!Number.isInteger(off)) throw new ArgumentError(`siteSteps: ${kind} must be an integer offset from T, got ${off}`);
    }
    this.sites = encoderSites(config, schedule);
    if (spiking.planes) {
      if (schedule !== 'layerwise') throw new ArgumentError('planes: per-site planes are a layerwise option');
      const names = new Set(this.sites.map((s) => s.name));
      for (const [name, n] of Object.entries(spiking.planes)) {
        if (!names.has(name)) throw new ArgumentError(`planes: "${name}" is not an encoder site of this model (sites are named like layers.0.attn_in and head_in)`);
        if (!Number.isInteger(n) || n < 1 || n > MAX_SITE_PLANES) throw new ArgumentError(`planes: ${name} must be an integer number of planes in 1…${MAX_SITE_PLANES}, got ${n}`);
      }
    }
    if (spiking.head) {
      if (schedule !== 'layerwise' || coding !== 'phase-ternary') throw new ArgumentError(`head: the two-stage head needs the layerwise schedule and the phase-ternary code (its coarse planes are a prefix of the run), got ${schedule} ${coding}`);
      const headPlanes = stepsOfSite(T, spiking.siteSteps, spiking.planes, this.sites.find((s) => s.kind === 'head_in')!);
      checkHeadStages(spiking.head, headPlanes, config.vocabSize);
    }
    this.spiking = { ...spiking, schedule, coding, neuron, operators: spiking.operators ?? COMPENSATED };
    const adapted = spiking.adapters ? applyAdapters(config, weights, spiking.adapters) : weights;
    this.net = schedule === 'stepwise'
      ? new StepwiseNet(config, adapted, backend, this.spiking, this.sites)
      : new LayerwiseNet(config, adapted, backend, this.spiking, this.sites, share?.net instanceof LayerwiseNet ? share.net : undefined);
  }

  get timesteps(): number {
    return this.spiking.timesteps;
  }

  get schedule(): ScheduleName {
    return this.spiking.schedule!;
  }

  get coding(): CodingName {
    return this.spiking.coding!;
  }

  get forms(): OperatorForms {
    return this.spiking.operators!;
  }

  /**
   * Steps a site's neurons run (planes of a weighted code): its own planes, or T + its kind's
   * siteSteps offset (at least 1), or T (stepwise). Takes a site name (`layers.1.mlp_in`) or, where
   * every layer's site of that kind runs the same planes, a kind (`mlp_in`).
   */
  stepsOf(site: string): number {
    if (this.schedule !== 'layerwise') return this.timesteps;
    const named = this.sites.find((s) => s.name === site);
    if (named) return stepsOfSite(this.timesteps, this.spiking.siteSteps, this.spiking.planes, named);
    const kind = kindOfSiteName(site);
    if (!kind) throw new ArgumentError(`stepsOf: "${site}" is neither an encoder site nor a site kind`);
    const steps = new Set(this.sites.filter((s) => s.kind === kind).map((s) => stepsOfSite(this.timesteps, this.spiking.siteSteps, this.spiking.planes, s)));
    if (steps.size !== 1) throw new ArgumentError(`stepsOf: the ${kind} sites run different planes per layer (${[...steps].join(', ')}): name the site`);
    return [...steps][0]!;
  }

  /** Every site's steps, by name (what a planes map would say for this model). */
  planesBySite(): Record<string, number> {
    return Object.fromEntries(this.sites.map((s) => [s.name, this.stepsOf(s.name)]));
  }

  /** RoPE inverse frequencies (Llama), for tests and tools. */
  get invFreq(): Float64Array | undefined {
    return this.net.invFreq;
  }

  /** The same network with some spiking parameters changed (host weights shared; device weights uploaded anew: dispose the old one when done). */
  with(change: Partial<SpikingConfig>): SpikingLM {
    return new SpikingLM(this.config, this.weights, this.backend, { ...this.spiking, ...change });
  }

  /** The same network run for T steps (thresholds and host weights shared); per-site planes, and a two-stage head's coarse planes, move by as many. */
  withTimesteps(timesteps: number): SpikingLM {
    const planes = this.spiking.planes;
    const { head: _, ...rest } = this.spiking;
    const shifted = { ...rest, timesteps, ...(planes ? { planes: shiftPlanes(planes, timesteps - this.timesteps) } : {}) };
    const headPlanes = stepsOfSite(timesteps, shifted.siteSteps, shifted.planes, this.sites.find((s) => s.kind === 'head_in')!);
    return new SpikingLM(this.config, this.weights, this.backend, { ...shifted, ...this.headAt(headPlanes) });
  }

  /**
   * The same network with other planes per site (layerwise), reusing this one's device weights: as
   * they are where a site's planes did not change, and for a weighted code at any plane count (its
   * unit 2^(1−T) differs by a power of two, which the fast execution applies to the digit sums, so
   * the logits are bit for bit those of a network built for these planes, barring folded weights
   * within a factor 2^16 of float32's subnormal range; the event-driven
   * execution folds a site's own synapses on first use). What the plane search builds many of.
   * This model owns the shared tensors, so it must outlive the result (dispose the result first).
   * A two-stage head's coarse planes move with the head's (headAt).
   */
  withPlanes(planes: SitePlanes): SpikingLM {
    if (this.schedule !== 'layerwise') throw new ArgumentError('withPlanes: per-site planes are a layerwise option');
    const timesteps = Math.max(...this.sites.map((s) => planes[s.name] ?? this.stepsOf(s.name)));
    const { head: _, ...rest } = this.spiking;
    return new SpikingLM(this.config, this.weights, this.backend, {
      ...rest, timesteps, planes: { ...this.planesBySite(), ...planes }, ...this.headAt(planes.head_in ?? this.stepsOf('head_in')),
    }, this);
  }

  /**
   * This model's two-stage head for a head of `headPlanes` planes: its coarse planes moved by as
   * many as the head's (at least one), and none (one stage) where the head would run no more.
   */
  private headAt(headPlanes: number): { head?: HeadStages } {
    const head = this.spiking.head;
    if (!head) return {};
    const coarsePlanes = Math.max(1, head.coarsePlanes + headPlanes - this.stepsOf('head_in'));
    return coarsePlanes < headPlanes ? { head: { ...head, coarsePlanes } } : {};
  }

  withSurrogate(surrogate: SpikingConfig['surrogate']): SpikingLM {
    return this.with({ surrogate });
  }

  /** Measured density of nonzero spikes per site: a GPU picks event-driven products by it (stepwise). */
  setDensityHints(hints: ReadonlyMap<string, number>): void {
    this.spiking = { ...this.spiking, densityHints: hints };
    if (this.net instanceof StepwiseNet) this.net.setDensityHints(hints);
  }

  /** Release the device tensors this model uploaded (weights, thresholds). */
  dispose(): void {
    this.net.dispose();
  }

  /** The MLP activation runs as a plain unsigned IF neuron (stepwise ReLU networks without a gate). */
  get reluNeuron(): boolean {
    return this.schedule === 'stepwise' && this.config.activation === 'relu' && !this.config.gatedMlp;
  }

  /**
   * A KV cache: the stepwise schedule keeps every past token's decoded key and value at every step
   * (T blocks); the layerwise schedule decodes once per token, so it keeps one.
   */
  newCache(initialCapacity?: number): KvCache {
    const c = this.config;
    return new KvCache(this.backend, c.numLayers, c.numKvHeads * c.headDim, c.maxPositions, initialCapacity, this.schedule === 'stepwise' ? this.timesteps : 1);
  }

  forward(ids: Int32Array | readonly number[] | BTensor, cache: KvCache = this.newCache(), opts: SnnForwardOptions = {}): SnnOutput {
    const tokens = tokenIds(ids);
    const S = tokenCount(tokens);
    if (S === 0) throw new ArgumentError('forward: no input tokens (empty input)');
    const steps = this.schedule === 'stepwise' ? this.timesteps : 1;
    if (cache.steps !== steps) throw new ArgumentError(`forward: the cache holds ${cache.steps} steps per token, the ${this.schedule} model needs ${steps}`);
    const b = this.backend;
    if (!(tokens instanceof Int32Array) && this.schedule === 'stepwise') throw new ArgumentError('forward: the stepwise schedule takes host token ids (a device tensor of ids feeds the layerwise schedule)');
    const start = cache.length;
    cache.reserve(S);
    const positions = Int32Array.from({ length: S }, (_, i) => start + i);
    const rows: [number, number] = opts.allLogits ? [0, S] : [S - 1, S];
    const statsSteps = this.schedule === 'stepwise' ? this.timesteps : 1;
    const headStages = this.spiking.mode === 'spiking' ? this.spiking.head : undefined;
    const statsRows = this.statsRows();
    const stats = opts.stats ?? b.zeros([statsRows, STATS_WIDTH]);
    if (opts.stats && (stats.shape.length !== 2 || stats.shape[0] !== statsRows || stats.shape[1] !== STATS_WIDTH)) {
      throw new ArgumentError(`forward: stats must be [${statsRows}, ${STATS_WIDTH}], got [${stats.shape.join(', ')}]`);
    }
    if (opts.extraHeads?.length && this.schedule !== 'layerwise') throw new ArgumentError('forward: extraHeads is a layerwise option');
    for (const h of opts.extraHeads ?? []) {
      if (h.stages) checkHeadStages(h.stages, this.stepsOf('head_in'), this.config.vocabSize);
      const want = this.sites.length + (h.stages ? 1 : 0);
      if (h.stats.shape[0] !== want || h.stats.shape[1] !== STATS_WIDTH) throw new ArgumentError(`forward: an extra head's stats must be [${want}, ${STATS_WIDTH}], got [${h.stats.shape.join(', ')}]`);
    }
    const netOpts = { rows, ...opts, stats, execution: opts.execution ?? this.spiking.execution };
    const net = this.net;
    const out = b.tidy(() => (net instanceof LayerwiseNet ? net.forward(tokens, positions, cache, netOpts) : net.forward(tokens as Int32Array, positions, cache, netOpts)));
    cache.advance(S);
    const attendedKeys = keysAttended(this.config, start, S);
    const headRows = rows[1] - rows[0];
    // the stepwise head's neurons run for every token (its logits are decoded for the rows asked)
    const headNeuronRows = this.schedule === 'stepwise' ? S : headRows;
    // project_out runs on the head's rows, as the final norm before it
    const neurons = this.sites.map((s) => (s.kind === 'p_in' ? s.channels * attendedKeys : s.kind === 'head_in' || s.kind === 'proj_out' ? s.channels * headNeuronRows : s.channels * S));
    return { ...out, stats, statsSteps, neurons, tokens: S, headRows, attendedKeys, ...(headStages ? { headStages } : {}) };
  }

  /** Rows of this model's statistics tensor: a row per site (and step), one more for a two-stage head's coarse stage. */
  statsRows(): number {
    const steps = this.schedule === 'stepwise' ? this.timesteps : 1;
    return this.sites.length * steps + (this.spiking.mode === 'spiking' && this.spiking.head ? 1 : 0);
  }
}

/** A two-stage head's parameters against the head's planes and the vocabulary (clear errors). */
export function checkHeadStages(h: HeadStages, headPlanes: number, vocabSize: number): void {
  if (!Number.isInteger(h.coarsePlanes) || h.coarsePlanes < 1 || h.coarsePlanes >= headPlanes) {
    throw new ArgumentError(`head: coarsePlanes must be an integer from 1 to ${headPlanes - 1} (below the head's ${headPlanes} planes), got ${h.coarsePlanes}`);
  }
  const kMax = Math.min(MAX_TOP_K, vocabSize - 1);
  if (!Number.isInteger(h.topK) || h.topK < 1 || h.topK > kMax) throw new ArgumentError(`head: topK must be an integer from 1 to ${kMax}, got ${h.topK}`);
}
