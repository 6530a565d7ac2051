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
import type { Backend, BTensor, DeviceThresholds, TimeState } from '../tensor/backend.js';
import type { Activation } from '../tensor/kernels/elementwise.js';
import { type NeuronConfig, inverseThresholds, validateNeuron } from '../tensor/kernels/neuron.js';
import { ropeInvFreq } from '../tensor/kernels/rope.js';
import { Tensor } from '../tensor/tensor.js';
import { type EncoderSite, encoderSites } from './sites.js';
import type { SurrogateName } from './surrogate.js';

export type SnnMode = 'rate' | 'exact';
export type Execution = 'multi' | 'single';

/**
 * How each nonlinear operator runs over time: `compensated` (accumulated form, exact on decoded
 * values) or `naive` (f applied to each step's currents, as a converter that only swaps modules
 * does — kept to measure what compensation buys).
 */
export type OperatorForm = 'compensated' | 'naive';
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

interface DeviceLinear {
  weight: BTensor;
  bias?: BTensor;
}
interface DeviceNorm {
  weight: BTensor;
  bias?: BTensor;
}
interface DeviceBlock {
  attnNorm: DeviceNorm;
  qkv: DeviceLinear;
  o: DeviceLinear;
  mlpNorm: DeviceNorm;
  gateUp?: DeviceLinear;
  up?: DeviceLinear;
  down: DeviceLinear;
}

/** One call's view of time: all T steps at once, or step t0 of a single-step loop. */
interface TimeContext {
  readonly steps: number;
  readonly t0: number;
  /** The carried state of one operator (single-step only). */
  state(key: string, rows: number, cols: number): TimeState | undefined;
  /** Where this call's steps sit in the per-step KV cache. */
  readonly kvBatches: number;
  readonly kvOffset: number;
}

/**
 * The synapses of an encoder: W·diag(θ) (they carry its thresholds), and with a centre μ the bias
 * b + W·μ (the offset the neuron no longer encodes).
 */
export function scaleInputs(l: LinearWeights, theta: Float32Array | undefined, center?: Float32Array): LinearWeights {
  if (!theta) return l;
  const [N, K] = l.weight.shape as [number, number];
  if (theta.length !== K) throw new ArgumentError(`thresholds: ${theta.length} values for a layer with ${K} inputs`);
  if (center && center.length !== K) throw new ArgumentError(`centres: ${center.length} values for a layer with ${K} inputs`);
  const w = new Tensor([N, K]);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) w.data[n * K + k] = l.weight.data[n * K + k]! * theta[k]!;
  if (!center) return { weight: w, ...(l.bias ? { bias: l.bias } : {}) };
  const bias = new Tensor([N]);
  for (let n = 0; n < N; n++) {
    let acc = l.bias ? l.bias.data[n]! : 0;
    for (let k = 0; k < K; k++) acc += l.weight.data[n * K + k]! * center[k]!;
    bias.data[n] = acc;
  }
  return { weight: w, bias };
}

export class SpikingLM {
  readonly sites: readonly EncoderSite[];
  readonly invFreq: Float64Array | undefined;
  private readonly siteIndex = new Map<string, number>();
  private readonly thresholds = new Map<string, DeviceThresholds>();
  private readonly negCenters = new Map<string, BTensor>();
  private readonly blocks: DeviceBlock[];
  private readonly embed: BTensor;
  private readonly positions?: BTensor;
  private readonly finalNorm: DeviceNorm;
  private readonly lmHead: DeviceLinear;

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
    this.sites.forEach((s, i) => this.siteIndex.set(s.name, i));
    const rate = spiking.mode === 'rate';
    const b = backend;
    const theta = (site: string): Float32Array | undefined => {
      if (!rate) return undefined;
      const th = spiking.thresholds.get(site);
      const expected = this.sites[this.siteIndex.get(site)!]!.channels;
      if (!th) throw new ArgumentError(`rate mode needs thresholds for encoder site "${site}" (run the calibration)`);
      if (th.length !== expected) throw new ArgumentError(`thresholds for "${site}": ${th.length} values, the site has ${expected} channels`);
      return th;
    };
    const center = (site: string): Float32Array | undefined => (rate ? spiking.centers?.get(site) : undefined);
    if (rate) {
      for (const s of this.sites) {
        const th = theta(s.name)!;
        this.thresholds.set(s.name, { theta: b.upload(new Tensor([th.length], th), 'vector'), invTheta: b.upload(new Tensor([th.length], inverseThresholds(th)), 'vector') });
        const mu = center(s.name);
        if (mu && this.reluNeuron && s.name.endsWith('.down_in')) throw new ArgumentError(`centres for "${s.name}": a ReLU neuron site cannot be centred (ReLU(x − μ) + μ ≠ ReLU(x))`);
        if (mu) {
          if (mu.length !== th.length) throw new ArgumentError(`centres for "${s.name}": ${mu.length} values, the site has ${th.length} channels`);
          this.negCenters.set(s.name, b.upload(new Tensor([mu.length], mu.map((v) => -v)), 'vector'));
        }
      }
    }
    const lin = (l: LinearWeights): DeviceLinear => ({ weight: b.upload(l.weight, 'linear'), ...(l.bias ? { bias: b.upload(l.bias, 'vector') } : {}) });
    const norm = (n: NormWeights): DeviceNorm => ({ weight: b.upload(n.weight, 'vector'), ...(n.bias ? { bias: b.upload(n.bias, 'vector') } : {}) });
    this.blocks = weights.blocks.map((blk, l) => ({
      attnNorm: norm(blk.attnNorm),
      qkv: lin(scaleInputs(stackLinear([blk.q, blk.k, blk.v]), theta(`layers.${l}.attn_in`), center(`layers.${l}.attn_in`))),
      o: lin(scaleInputs(blk.o, theta(`layers.${l}.o_in`), center(`layers.${l}.o_in`))),
      mlpNorm: norm(blk.mlpNorm),
      ...(blk.gate
        ? { gateUp: lin(scaleInputs(stackLinear([blk.gate, blk.up]), theta(`layers.${l}.mlp_in`), center(`layers.${l}.mlp_in`))) }
        : { up: lin(scaleInputs(blk.up, theta(`layers.${l}.mlp_in`), center(`layers.${l}.mlp_in`))) }),
      down: lin(scaleInputs(blk.down, theta(`layers.${l}.down_in`), center(`layers.${l}.down_in`))),
    }));
    this.embed = b.upload(weights.embed, 'embedding');
    if (weights.positions) this.positions = b.upload(weights.positions, 'embedding');
    this.finalNorm = norm(weights.finalNorm);
    this.lmHead = lin(scaleInputs({ weight: weights.lmHead }, theta('head_in'), center('head_in')));
    this.invFreq = config.family === 'llama' ? ropeInvFreq(config.headDim, config.ropeTheta, config.ropeScaling) : undefined;
  }

  get timesteps(): number {
    return this.spiking.timesteps;
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
    const spikes = b.zeros([this.sites.length, T]);
    const rows = opts.allLogits ? [0, S] : [S - 1, S];
    const decodeRows = (headMean: BTensor, stepInBlock: number): BTensor =>
      b.matmul(b.sliceRows(headMean, stepInBlock * S + rows[0]!, stepInBlock * S + rows[1]!), this.lmHead.weight, this.lmHead.bias);

    return b.tidy(() => {
      const decoded = new Map<number, BTensor>();
      let logits: BTensor | undefined;
      if ((opts.execution ?? 'multi') === 'multi') {
        const ctx: TimeContext = { steps: T, t0: 0, state: () => undefined, kvBatches: T, kvOffset: 0 };
        const headMean = this.run(ctx, tokens, positions, cache, spikes, opts);
        for (const t of decodedAt) decoded.set(t, decodeRows(headMean, t - 1));
        logits = decodeRows(headMean, T - 1);
      } else {
        const states = new Map<string, BTensor>();
        for (let t = 0; t < T; t++) {
          const ctx: TimeContext = {
            steps: 1, t0: t, kvBatches: 1, kvOffset: t * cache.capacity,
            state: (key, r, c) => {
              let s = states.get(key);
              if (!s) states.set(key, (s = b.zeros([r, c])));
              return { tensor: s, t0: t };
            },
          };
          const headMean = this.run(ctx, tokens, positions, cache, spikes, opts);
          if (decodedAt.includes(t + 1)) decoded.set(t + 1, decodeRows(headMean, 0));
          if (t === T - 1) logits = decodeRows(headMean, 0);
        }
      }
      cache.advance(S);
      return { logits: logits!, decoded, spikes, neurons: this.sites.map((s) => s.channels * S) };
    });
  }

  /** One call of the network over ctx.steps steps; returns the decoded LM-head input (mean of its spikes). */
  private run(ctx: TimeContext, tokens: Int32Array, positions: Int32Array, cache: KvCache, spikes: BTensor, opts: SnnForwardOptions): BTensor {
    const b = this.backend, cfg = this.config;
    const S = tokens.length;
    // The embedding is a constant current: the same rows at every step.
    const repeat = (a: Int32Array) => Int32Array.from({ length: ctx.steps * S }, (_, i) => a[i % S]!);
    let h = b.embedding(this.embed, repeat(tokens));
    if (this.positions) h = b.add(h, b.embedding(this.positions, repeat(positions)));
    for (let l = 0; l < cfg.numLayers; l++) h = this.block(ctx, l, h, positions, cache, spikes, opts);
    const f = this.compensated(ctx, 'final_norm', h, (x) => this.norm(x, this.finalNorm), 'norm');
    const n = this.encode(ctx, 'head_in', f, spikes, opts);
    return this.mean(ctx, 'head_mean', n);
  }

  private block(ctx: TimeContext, l: number, h: BTensor, positions: Int32Array, cache: KvCache, spikes: BTensor, opts: SnnForwardOptions): BTensor {
    const b = this.backend, cfg = this.config, w = this.blocks[l]!;
    const S = positions.length, start = positions[0]!;
    const key = (name: string) => `layers.${l}.${name}`;
    // attention
    const compensatedAttention = this.forms.attention === 'compensated';
    const a = this.compensated(ctx, key('attn_norm'), h, (x) => this.norm(x, w.attnNorm), 'norm');
    const qkvCurrents = b.matmul(this.encode(ctx, key('attn_in'), a, spikes, opts), w.qkv.weight, w.qkv.bias);
    const qkv = compensatedAttention ? this.mean(ctx, key('qkv_mean'), qkvCurrents) : qkvCurrents;
    const layout = { numHeads: cfg.numHeads, numKvHeads: cfg.numKvHeads, headDim: cfg.headDim, positions, invFreq: this.invFreq };
    const q = b.qkvToCache(qkv, cache.keys(l), cache.values(l), { ...layout, rowOffset: ctx.kvOffset + start, batches: ctx.kvBatches, kvBatchStride: cache.capacity });
    const attn = b.attention(q, cache.keys(l), cache.values(l), {
      numHeads: cfg.numHeads, numKvHeads: cfg.numKvHeads, headDim: cfg.headDim, queryStart: start, kvLength: start + S,
      scale: 1 / Math.sqrt(cfg.headDim), batches: ctx.kvBatches, kvBatchStride: cache.capacity, kvOffset: ctx.kvOffset,
    });
    const attnCurrents = compensatedAttention ? this.delta(ctx, key('attn_delta'), attn) : attn;
    h = b.matmul(this.encode(ctx, key('o_in'), attnCurrents, spikes, opts), w.o.weight, w.o.bias, h);
    // MLP
    const m = this.compensated(ctx, key('mlp_norm'), h, (x) => this.norm(x, w.mlpNorm), 'norm');
    const mSpikes = this.encode(ctx, key('mlp_in'), m, spikes, opts);
    let hidden: BTensor;
    if (w.gateUp) {
      const gu = b.matmul(mSpikes, w.gateUp.weight, w.gateUp.bias);
      hidden = this.encode(ctx, key('down_in'), this.compensated(ctx, key('act'), gu, (x) => b.gatedActivation(cfg.activation, x), 'activation'), spikes, opts);
    } else {
      const up = b.matmul(mSpikes, w.up!.weight, w.up!.bias);
      hidden = this.reluNeuron
        ? this.encode(ctx, key('down_in'), up, spikes, opts, true)
        : this.encode(ctx, key('down_in'), this.compensated(ctx, key('act'), up, (x) => b.activation(cfg.activation as Activation, x), 'activation'), spikes, opts);
    }
    return b.matmul(hidden, w.down.weight, w.down.bias, h);
  }

  /** Decoded value at each step (running mean over time). */
  private mean(ctx: TimeContext, key: string, x: BTensor): BTensor {
    const c = x.shape.at(-1)!;
    return this.backend.timeMean(x, ctx.steps, 'mean', ctx.state(`${key}/mean`, this.rowsPerStep(ctx, x), c));
  }

  /** Per-step currents whose running mean is F. */
  private delta(ctx: TimeContext, key: string, F: BTensor): BTensor {
    const c = F.shape.at(-1)!;
    return this.backend.timeDelta(F, ctx.steps, 'mean', ctx.state(`${key}/delta`, this.rowsPerStep(ctx, F), c));
  }

  /**
   * A nonlinear f on a stream of currents: compensated, timeDelta(f(timeMean(x))); or naive, f on
   * each step's currents.
   */
  private compensated(ctx: TimeContext, key: string, x: BTensor, f: (decoded: BTensor) => BTensor, kind: keyof OperatorForms): BTensor {
    if (this.forms[kind] === 'naive') return f(x);
    return this.delta(ctx, key, f(this.mean(ctx, key, x)));
  }

  get forms(): OperatorForms {
    return this.spiking.operators ?? COMPENSATED;
  }

  /**
   * The encoder of a site: neuron dynamics in rate mode (spike counts out; counted into `spikes`),
   * the identity in exact mode. `relu` makes it an unsigned neuron, which computes ReLU itself
   * (exact mode applies max(0, x)).
   */
  private encode(ctx: TimeContext, site: string, currents: BTensor, spikes: BTensor, opts: SnnForwardOptions, relu = false): BTensor {
    const b = this.backend;
    opts.observe?.(site, relu ? b.activation('relu', currents) : currents, ctx.steps);
    if (this.spiking.mode === 'exact') return relu ? b.activation('relu', currents) : currents;
    const neuron: NeuronConfig = relu ? { ...this.spiking.neuron, signed: false } : this.spiking.neuron;
    const C = currents.shape.at(-1)!;
    const negCenter = this.negCenters.get(site);
    if (negCenter) currents = b.add(currents, negCenter);
    const n = b.neuronRun(currents, ctx.steps, this.thresholds.get(site)!, neuron, ctx.state(`${site}/membrane`, this.rowsPerStep(ctx, currents), C));
    b.sumAbsInto(n, ctx.steps, spikes, this.siteIndex.get(site)! * this.timesteps + ctx.t0);
    return n;
  }

  private norm(x: BTensor, w: DeviceNorm): BTensor {
    return this.config.family === 'gpt2'
      ? this.backend.layerNorm(x, w.weight, w.bias, this.config.normEps)
      : this.backend.rmsNorm(x, w.weight, this.config.normEps);
  }

  private rowsPerStep(ctx: TimeContext, x: BTensor): number {
    return x.shape.slice(0, -1).reduce((a, d) => a * d, 1) / ctx.steps;
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
