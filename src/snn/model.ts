/**
 * The spiking language model: a GPT-2 or Llama network converted to run over T time steps.
 *
 * Conventions (the "mean domain"): a signal is a sequence of per-step currents x_1 … x_T whose
 * decoded value at step t is the running mean D_t = (1/t)·Σ_{τ≤t} x_τ. The token embedding enters
 * as a constant current. Then, per block (every op is one of the backend's time-major primitives):
 *
 *   encoder      before every linear layer: a neuron turns currents into integer spike counts n_t;
 *                the synapses carry θ (weights are stored as W·diag(θ)), so W·θ·n_t is the current
 *   linear       applied at every step to the spikes (it commutes with the time sum); the bias is
 *                a current added every step, i.e. once to the decoded value
 *   nonlinear f  compensated: timeDelta(f(timeMean(x))), so decoded out = f(decoded in) at every t —
 *                norms, GELU/SiLU (and SwiGLU's product), the final norm
 *   attention    compensated as a whole: q, k, v are decoded (timeMean), RoPE applied, k and v kept
 *                in the per-step KV cache, softmax(q·kᵀ)·v evaluated on the decoded values of step t
 *                (this is the compensated product q·kᵀ, the compensated masked softmax and the
 *                compensated product with v chained — each is exact on decoded values, so the chain
 *                is), then timeDelta
 *   residual     currents add per step
 *
 * Only the encoders lose information. With the default sigma-delta neuron (signed, subtract reset,
 * half start, unbounded bursts) an encoder's total output is its total input rounded to the θ grid,
 * so the decoded logits at T equal the ANN with each encoder input quantized to steps of θ/T — the
 * error falls as 1/T. Bounded bursts (B spikes per step) add clipping when |x| > B·θ.
 *
 * Modes: `rate` is the spiking network; `exact` replaces every encoder by the identity (each value
 * delivered whole), which must reproduce the ANN — the identity the tests anchor to.
 * Execution: `multi` runs each layer for all T steps at once (a linear layer is one product over
 * [T·S, K]); `single` runs the whole network one step at a time carrying every state. They agree.
 */
import { ArgumentError } from '../errors.js';
import type { ModelConfig } from '../nn/config.js';
import { KvCache } from '../nn/kv-cache.js';
import { stackLinear } from '../nn/model.js';
import type { LMWeights, LinearWeights, NormWeights } from '../nn/weights.js';
import type { Backend, BTensor, SpikeKernel } from '../tensor/backend.js';
import { type NeuronConfig, validateNeuron } from '../tensor/kernels/neuron.js';
import { ropeInvFreq } from '../tensor/kernels/rope.js';
import type { Tensor } from '../tensor/tensor.js';
import {
  Compensated, type OperatorForm, SpikeAttention, type SpikeCounter, SpikeEncoder, SpikeGatedActivation, SpikeLayerNorm, SpikeLinear, SpikeRMSNorm,
  type TimeContext, multiStep, singleStep, timeMean,
} from './operators.js';
import { type EncoderSite, encoderSites } from './sites.js';
import type { SurrogateName } from './surrogate.js';

export type SnnMode = 'rate' | 'exact';
export type Execution = 'multi' | 'single';

/**
 * How each nonlinear operator runs over time: `compensated` (accumulated form, exact on decoded
 * values) or `naive` (f applied to each step's currents, as a converter that only swaps modules
 * does — kept to measure what compensation buys).
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
  readonly neuron: NeuronConfig;
  /** θ per channel for every encoder site (rate mode). */
  readonly thresholds: ReadonlyMap<string, Float32Array>;
  /**
   * Optional per-channel centres μ per site: the neuron encodes x − μ and the layer it feeds gets
   * W·μ added to its bias (exact by linearity), so θ resolves the spread around the offset.
   */
  readonly centers?: ReadonlyMap<string, Float32Array>;
  readonly surrogate: { readonly name: SurrogateName; readonly alpha: number };
  /** Default: every operator compensated. */
  readonly operators?: OperatorForms;
  /** Spike × weight products: 'auto' (default: by density), 'dense' or 'event' (event-driven). */
  readonly spikeKernel?: SpikeKernel;
  /** Measured fraction of nonzero spike counts per site, so a GPU can choose event-driven products. */
  readonly densityHints?: ReadonlyMap<string, number>;
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
  /** Also decode the logits at these steps (1 … T). */
  readonly decodedAt?: readonly number[];
  /** Sees the input currents of every encoder site, [steps·S, C], before the neuron. */
  readonly observe?: (site: string, currents: BTensor, steps: number) => void;
  /** Sees the spike counts every encoder emits, [steps·S, C]. */
  readonly observeSpikes?: (site: string, spikes: BTensor, steps: number) => void;
}

export interface SnnOutput {
  /** Decoded logits at step T. */
  readonly logits: BTensor;
  /** Decoded logits at the requested steps. */
  readonly decoded: ReadonlyMap<number, BTensor>;
  /** Spike counts (Σ|n| over the site's neurons) per encoder site and step, [sites, T]. */
  readonly spikes: BTensor;
  /** Neurons per site in this forward (new tokens × channels). */
  readonly neurons: readonly number[];
}

interface SpikingBlock {
  attnNorm: Compensated;
  attention: SpikeAttention;
  mlpNorm: Compensated;
  /** up (or the fused gate|up) behind the mlp_in encoder. */
  up: SpikeLinear;
  /** The activation in compensated form; absent when a ReLU neuron is the down encoder itself. */
  act?: Compensated;
  down: SpikeLinear;
}

export class SpikingLM {
  readonly sites: readonly EncoderSite[];
  readonly invFreq: Float64Array | undefined;
  private readonly blocks: SpikingBlock[];
  private readonly embed: BTensor;
  private readonly positions?: BTensor;
  private readonly finalNorm: Compensated;
  private readonly head: SpikeLinear;

  constructor(
    readonly config: ModelConfig,
    /** The ANN's host weights (shared, not copied). */
    readonly weights: LMWeights,
    readonly backend: Backend,
    readonly spiking: SpikingConfig,
  ) {
    const T = spiking.timesteps;
    if (!Number.isInteger(T) || T < 1) throw new ArgumentError(`timesteps must be a positive integer, got ${T}`);
    validateNeuron(spiking.neuron);
    this.sites = encoderSites(config);
    const rate = spiking.mode === 'rate';
    const b = backend, cfg = config, forms = this.forms;
    const slots = new Map(this.sites.map((s, i) => [s.name, i]));
    const encoder = (site: string, relu = false): SpikeEncoder => {
      const expected = this.sites[slots.get(site)!]!.channels;
      const th = rate ? spiking.thresholds.get(site) : undefined;
      if (rate && !th) throw new ArgumentError(`rate mode needs thresholds for encoder site "${site}" (run the calibration)`);
      if (th && th.length !== expected) throw new ArgumentError(`thresholds for "${site}": ${th.length} values, the site has ${expected} channels`);
      const mu = rate ? spiking.centers?.get(site) : undefined;
      if (mu && relu) throw new ArgumentError(`centres for "${site}": a ReLU neuron site cannot be centred (ReLU(x − μ) + μ ≠ ReLU(x))`);
      const neuron = relu ? { ...spiking.neuron, signed: false } : spiking.neuron;
      return new SpikeEncoder(b, site, th, neuron, mu, slots.get(site)!);
    };
    const vec = (t: Tensor | undefined) => (t ? b.upload(t, 'vector') : undefined);
    const linear = (enc: SpikeEncoder, w: LinearWeights): SpikeLinear => {
      const l = new SpikeLinear(b, enc, w);
      l.kernel = spiking.spikeKernel ?? 'auto';
      const hint = spiking.densityHints?.get(enc.name);
      if (hint !== undefined) l.densityHint = hint;
      return l;
    };
    const norm = (key: string, n: NormWeights): Compensated =>
      cfg.family === 'gpt2' ? SpikeLayerNorm(b, key, vec(n.weight)!, vec(n.bias), cfg.normEps, forms.norm) : SpikeRMSNorm(b, key, vec(n.weight)!, cfg.normEps, forms.norm);
    this.invFreq = cfg.family === 'llama' ? ropeInvFreq(cfg.headDim, cfg.ropeTheta, cfg.ropeScaling) : undefined;
    const reluNeuron = this.reluNeuron;
    this.blocks = weights.blocks.map((blk, l) => {
      const p = `layers.${l}`;
      const attention = new SpikeAttention(b, cfg.hiddenSize, cfg.numHeads, {
        T, causal: true, numKvHeads: cfg.numKvHeads, headDim: cfg.headDim, ...(this.invFreq ? { rope: this.invFreq } : {}), form: forms.attention,
      }, linear(encoder(`${p}.attn_in`), stackLinear([blk.q, blk.k, blk.v])), linear(encoder(`${p}.o_in`), blk.o), `${p}.attention`);
      const up = linear(encoder(`${p}.mlp_in`), blk.gate ? stackLinear([blk.gate, blk.up]) : blk.up);
      const act = blk.gate
        ? SpikeGatedActivation(b, `${p}.act`, cfg.activation, forms.activation)
        : reluNeuron ? undefined : new Compensated(b, `${p}.act`, (x) => b.activation(cfg.activation, x), forms.activation);
      return {
        attnNorm: norm(`${p}.attn_norm`, blk.attnNorm), attention, mlpNorm: norm(`${p}.mlp_norm`, blk.mlpNorm), up,
        ...(act ? { act } : {}), down: linear(encoder(`${p}.down_in`, reluNeuron), blk.down),
      };
    });
    this.embed = b.upload(weights.embed, 'embedding');
    if (weights.positions) this.positions = b.upload(weights.positions, 'embedding');
    this.finalNorm = norm('final_norm', weights.finalNorm);
    this.head = linear(encoder('head_in'), { weight: weights.lmHead });
  }

  get timesteps(): number {
    return this.spiking.timesteps;
  }

  /** The same network run for T steps (thresholds and weights shared). */
  withTimesteps(timesteps: number): SpikingLM {
    return new SpikingLM(this.config, this.weights, this.backend, { ...this.spiking, timesteps });
  }

  withSurrogate(surrogate: SpikingConfig['surrogate']): SpikingLM {
    return new SpikingLM(this.config, this.weights, this.backend, { ...this.spiking, surrogate });
  }

  get forms(): OperatorForms {
    return this.spiking.operators ?? COMPENSATED;
  }

  /** The MLP activation runs as a plain unsigned IF neuron (ReLU networks without a gate). */
  get reluNeuron(): boolean {
    return this.config.activation === 'relu' && this.config.family === 'gpt2';
  }

  /** A KV cache holding every past token's decoded key and value at every step. */
  newCache(initialCapacity?: number): KvCache {
    const c = this.config;
    return new KvCache(this.backend, c.numLayers, c.numKvHeads * c.headDim, c.maxPositions, initialCapacity, this.timesteps);
  }

  forward(ids: Int32Array | readonly number[], cache: KvCache = this.newCache(), opts: SnnForwardOptions = {}): SnnOutput {
    const tokens = ids instanceof Int32Array ? ids : Int32Array.from(ids);
    const S = tokens.length;
    if (S === 0) throw new ArgumentError('forward: no input tokens (empty input)');
    if (cache.steps !== this.timesteps) throw new ArgumentError(`forward: the cache holds ${cache.steps} steps per token, the model runs ${this.timesteps}`);
    const T = this.timesteps;
    const decodedAt = [...new Set(opts.decodedAt ?? [])].sort((a, b) => a - b);
    for (const t of decodedAt) if (!Number.isInteger(t) || t < 1 || t > T) throw new ArgumentError(`decodedAt: step ${t} is outside 1…${T}`);
    const b = this.backend;
    const start = cache.length;
    cache.reserve(S);
    const positions = Int32Array.from({ length: S }, (_, i) => start + i);
    const counter: SpikeCounter = { stats: b.zeros([this.sites.length, T]), stride: T };
    const [r0, r1] = opts.allLogits ? [0, S] : [S - 1, S];
    // The LM head is linear: decoded logits at step t are W·θ·(mean of its input spikes up to t) + b.
    const decode = (headMean: BTensor, block: number): BTensor => this.head.onDecoded(b.sliceRows(headMean, block * S + r0, block * S + r1));

    return b.tidy(() => {
      const decoded = new Map<number, BTensor>();
      let logits: BTensor | undefined;
      if ((opts.execution ?? 'multi') === 'multi') {
        const headMean = this.run(multiStep(T, { observe: opts.observe, observeSpikes: opts.observeSpikes }), tokens, positions, cache, counter);
        for (const t of decodedAt) decoded.set(t, decode(headMean, t - 1));
        logits = decode(headMean, T - 1);
      } else {
        const loop = singleStep(b, cache.capacity, { observe: opts.observe, observeSpikes: opts.observeSpikes });
        for (let t = 0; t < T; t++) {
          const headMean = this.run(loop.at(t), tokens, positions, cache, counter);
          if (decodedAt.includes(t + 1)) decoded.set(t + 1, decode(headMean, 0));
          if (t === T - 1) logits = decode(headMean, 0);
        }
      }
      cache.advance(S);
      return { logits: logits!, decoded, spikes: counter.stats, neurons: this.sites.map((s) => s.channels * S) };
    });
  }

  /** The network over ctx.steps steps; returns the decoded LM-head input (running mean of its spikes). */
  private run(ctx: TimeContext, tokens: Int32Array, positions: Int32Array, cache: KvCache, counter: SpikeCounter): BTensor {
    const b = this.backend;
    const S = tokens.length;
    // The embedding is a constant current: the same rows at every step.
    const repeat = (a: Int32Array) => Int32Array.from({ length: ctx.steps * S }, (_, i) => a[i % S]!);
    let h = b.embedding(this.embed, repeat(tokens));
    if (this.positions) h = b.add(h, b.embedding(this.positions, repeat(positions)));
    this.blocks.forEach((blk, l) => {
      h = blk.attention.forward(ctx, blk.attnNorm.forward(ctx, h), cache, l, positions, counter, h);
      const up = blk.up.forward(ctx, blk.mlpNorm.forward(ctx, h), counter);
      h = blk.down.forward(ctx, blk.act ? blk.act.forward(ctx, up) : up, counter, h);
    });
    const spikes = this.head.encoder.forward(ctx, this.finalNorm.forward(ctx, h), counter);
    return timeMean(b, ctx, 'head_in', spikes);
  }
}

export interface SpikeReport {
  /** Spikes per neuron per step over the first `steps` steps, per site. */
  readonly perSite: Map<string, number>;
  /** Spikes per neuron per step over all sites. */
  readonly overall: number;
  /** Spikes emitted (Σ|n|) in those steps. */
  readonly total: number;
  readonly steps: number;
}

/** Spikes per neuron per step over the first `steps` steps (default all) of a forward. */
export async function spikeRate(model: SpikingLM, out: SnnOutput, steps = model.timesteps): Promise<SpikeReport> {
  return spikeRateFrom(model, (await model.backend.read(out.spikes)).data, out.neurons, steps);
}

export function spikeRateFrom(model: SpikingLM, counts: Float32Array, neuronsPerSite: readonly number[], steps = model.timesteps): SpikeReport {
  const T = model.timesteps;
  const perSite = new Map<string, number>();
  let total = 0, neurons = 0;
  model.sites.forEach((s, i) => {
    let c = 0;
    for (let t = 0; t < steps; t++) c += counts[i * T + t]!;
    perSite.set(s.name, c / (neuronsPerSite[i]! * steps));
    total += c;
    neurons += neuronsPerSite[i]!;
  });
  return { perSite, overall: neurons ? total / (neurons * steps) : 0, total, steps };
}
