/**
 * Spiking operators over time-major tensors [T·R, C] (step t = rows t·R … t·R+R−1), on any backend.
 * Signals are streams of per-step currents whose decoded value at step t is their running mean
 * D_t = (1/t)·Σ_{τ≤t} x_τ ("mean domain"; `timeMean`).
 *
 *   SpikeEncoder     neurons: currents → integer spike counts n_t (θ per channel); exact mode: identity
 *   SpikeLinear      encoder → y_t = W·θ·n_t + b: the weights act on spikes at every step (linear maps
 *                    commute with the time sum) and the bias enters the decoded value once
 *   Compensated      y = timeDelta(f(timeMean(x))): decoded output = f(decoded input) at every step,
 *                    so the operator adds no error. SpikeLayerNorm, SpikeRMSNorm, SpikeGELU, SpikeSiLU,
 *                    SpikeGatedActivation (SwiGLU's activation and product together) are this with
 *                    their f; the attention's masked softmax is compensated inside SpikeAttention.
 *                    With form 'naive' f is applied to each step's currents instead (ablations).
 *   SpikeReLU        a plain unsigned IF neuron: its rate is max(0, input) — no compensation needed
 *   SpikeAttention   q|k|v spike linear → decoded q, k, v (RoPE, GQA) → softmax(q·kᵀ)·v on the decoded
 *                    values of each step with k, v kept per step in the KV cache (the compensated
 *                    product, masked softmax and product chained) → timeDelta → o spike linear
 *
 * Every operator takes a TimeContext: all T steps at once (multi-step), or one step carrying its
 * state between calls (single-step). The two are equal; tests check it.
 */
import { f32Weight } from '../tensor/half.js';
import { ArgumentError } from '../errors.js';
import type { KvCache } from '../nn/kv-cache.js';
import type { LinearWeights } from '../nn/weights.js';
import type { Backend, BTensor, DeviceThresholds, SpikeKernel, TimeState } from '../tensor/backend.js';
import type { Activation } from '../tensor/kernels/elementwise.js';
import { type NeuronConfig, inverseThresholds } from '../tensor/kernels/neuron.js';
import type { TimeDomain } from '../tensor/kernels/temporal.js';
import { Tensor } from '../tensor/tensor.js';

export type OperatorForm = 'compensated' | 'naive';

/** One call's view of time. */
export interface TimeContext {
  /** Steps processed by this call (T in multi-step, 1 in single-step). */
  readonly steps: number;
  /** Steps taken before this call. */
  readonly t0: number;
  /** The carried state of one operator: undefined in multi-step (each call starts fresh). */
  state(key: string, rows: number, cols: number): TimeState | undefined;
  /** Where this call's steps sit in a per-step KV cache: blocks, and the row of the first. */
  readonly kvBatches: number;
  readonly kvOffset: number;
  /** Sees the input currents of every encoder (calibration's observe stage). */
  readonly observe?: (site: string, currents: BTensor, steps: number) => void;
  /** Sees the spike counts every encoder emits (spike statistics). */
  readonly observeSpikes?: (site: string, spikes: BTensor, steps: number) => void;
}

/** All T steps at once. */
export interface Observers {
  readonly observe?: TimeContext['observe'];
  readonly observeSpikes?: TimeContext['observeSpikes'];
}

export function multiStep(T: number, observers: Observers = {}): TimeContext {
  return { steps: T, t0: 0, state: () => undefined, kvBatches: T, kvOffset: 0, ...observers };
}

/** A single-step loop: `at(t)` is the context of step t, states kept in `states` across steps. */
export function singleStep(backend: Backend, kvCapacity = 0, observers: Observers = {}): { at(t: number): TimeContext; readonly states: Map<string, BTensor> } {
  const states = new Map<string, BTensor>();
  return {
    states,
    at: (t) => ({
      steps: 1, t0: t, kvBatches: 1, kvOffset: t * kvCapacity, ...observers,
      state: (key, rows, cols) => {
        let s = states.get(key);
        if (!s) states.set(key, (s = backend.zeros([rows, cols])));
        return { tensor: s, t0: t };
      },
    }),
  };
}

function rowsPerStep(ctx: TimeContext, x: BTensor): number {
  return x.shape.slice(0, -1).reduce((a, d) => a * d, 1) / ctx.steps;
}

/** Running mean (or sum) over time: the decoded value at every step. */
export function timeMean(b: Backend, ctx: TimeContext, key: string, x: BTensor, domain: TimeDomain = 'mean'): BTensor {
  return b.timeMean(x, ctx.steps, domain, ctx.state(`${key}/mean`, rowsPerStep(ctx, x), x.shape.at(-1)!));
}

/** Per-step currents whose running mean (or sum) is F. */
export function timeDelta(b: Backend, ctx: TimeContext, key: string, F: BTensor, domain: TimeDomain = 'mean'): BTensor {
  return b.timeDelta(F, ctx.steps, domain, ctx.state(`${key}/delta`, rowsPerStep(ctx, F), F.shape.at(-1)!));
}

/** Spike counts of a forward, written by the encoders. */
export interface SpikeCounter {
  /** Σ|n| per (site slot, step), [sites, T]. */
  readonly stats: BTensor;
  /** Slots per site (= T). */
  readonly stride: number;
  /** Statistics per site and step, [sites·T, STATS_WIDTH] (kernels/codes.ts: events, largest burst, synaptic ops, …). */
  readonly siteStats: BTensor;
}

/**
 * Neurons turning currents into spike counts. With a centre μ the neuron encodes x − μ (the layer
 * it feeds adds W·μ to its bias). In exact mode (no thresholds) it passes the currents through —
 * through max(0, x) for an unsigned (ReLU) neuron.
 */
export class SpikeEncoder {
  private readonly device?: DeviceThresholds;
  private readonly negCenter?: BTensor;

  constructor(
    private readonly backend: Backend,
    readonly name: string,
    readonly theta: Float32Array | undefined,
    readonly neuron: NeuronConfig,
    readonly center?: Float32Array,
    /** Index of this site in a SpikeCounter. */
    readonly slot = 0,
    /** Outputs one spike reaches (for the synaptic-operation count). */
    readonly fanout = 1,
  ) {
    if (theta) {
      this.device = { theta: backend.upload(new Tensor([theta.length], theta), 'vector'), invTheta: backend.upload(new Tensor([theta.length], inverseThresholds(theta)), 'vector') };
      if (center) {
        if (center.length !== theta.length) throw new ArgumentError(`encoder ${name}: ${center.length} centres for ${theta.length} channels`);
        this.negCenter = backend.upload(new Tensor([center.length], center.map((v) => -v)), 'vector');
      }
    }
  }

  get exact(): boolean {
    return this.theta === undefined;
  }

  /** The device tensors it uploaded (for dispose). */
  tensors(): BTensor[] {
    return [this.device?.theta, this.device?.invTheta, this.negCenter].filter((t): t is BTensor => t !== undefined);
  }

  forward(ctx: TimeContext, currents: BTensor, counter?: SpikeCounter): BTensor {
    const b = this.backend;
    const relu = !this.neuron.signed;
    if (ctx.observe) ctx.observe(this.name, relu ? b.activation('relu', currents) : currents, ctx.steps);
    if (!this.device) return relu ? b.activation('relu', currents) : currents;
    const x = this.negCenter ? b.add(currents, this.negCenter) : currents;
    const n = b.neuronRun(x, ctx.steps, this.device, this.neuron, ctx.state(`${this.name}/membrane`, rowsPerStep(ctx, x), x.shape.at(-1)!));
    if (counter) {
      b.sumAbsInto(n, ctx.steps, counter.stats, this.slot * counter.stride + ctx.t0);
      // per step: stats rows slot·T + t0 … (the prefix of T' steps is a T'-step run)
      b.digitStatsInto(n, { tensor: counter.siteStats, row: this.slot * counter.stride + ctx.t0, fanout: this.fanout, segments: ctx.steps });
    }
    ctx.observeSpikes?.(this.name, n, ctx.steps);
    return n;
  }
}

/**
 * W·diag(θ) and, with a centre μ, the bias b + W·μ: the synapses behind an encoder.
 */
export function synapses(linear: LinearWeights, theta: Float32Array | undefined, center?: Float32Array): LinearWeights {
  if (!theta) return linear;
  const l = { ...linear, weight: f32Weight(linear.weight) };
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

/**
 * encoder → y_t = W·θ·n_t + b (+ a residual current). In rate mode the product meets spike counts:
 * dense or event-driven (`kernel`, default chosen by density; `densityHint` lets a GPU choose too).
 */
export class SpikeLinear {
  private readonly weight: BTensor;
  private readonly bias?: BTensor;
  kernel: SpikeKernel = 'auto';
  densityHint?: number;

  constructor(private readonly backend: Backend, readonly encoder: SpikeEncoder, weights: LinearWeights) {
    const w = synapses(weights, encoder.theta, encoder.center);
    this.weight = backend.upload(w.weight, 'linear');
    if (w.bias) this.bias = backend.upload(w.bias, 'vector');
  }

  /** The device tensors it uploaded (for dispose). */
  tensors(): BTensor[] {
    return this.bias ? [this.weight, this.bias] : [this.weight];
  }

  forward(ctx: TimeContext, currents: BTensor, counter?: SpikeCounter, residual?: BTensor): BTensor {
    const input = this.encoder.forward(ctx, currents, counter);
    if (this.encoder.exact) return this.backend.matmul(input, this.weight, this.bias, residual);
    return this.backend.spikeMatmul(input, this.weight, this.bias, residual, this.kernel, this.densityHint);
  }

  /** The layer on already decoded spikes (e.g. the LM head on the mean of its input's spikes). */
  onDecoded(meanSpikes: BTensor): BTensor {
    return this.backend.matmul(meanSpikes, this.weight, this.bias);
  }
}

/** A nonlinear f over time: compensated timeDelta(f(timeMean(x))), or naive f(x_t). */
export class Compensated {
  constructor(
    private readonly backend: Backend,
    readonly key: string,
    /** The function on decoded values. */
    readonly f: (decoded: BTensor) => BTensor,
    readonly form: OperatorForm = 'compensated',
    readonly domain: TimeDomain = 'mean',
  ) {}

  forward(ctx: TimeContext, x: BTensor): BTensor {
    if (this.form === 'naive') return this.f(x);
    const b = this.backend;
    return timeDelta(b, ctx, this.key, this.f(timeMean(b, ctx, this.key, x, this.domain)), this.domain);
  }
}

export const SpikeLayerNorm = (b: Backend, key: string, gamma: BTensor, beta: BTensor | undefined, eps: number, form?: OperatorForm) =>
  new Compensated(b, key, (x) => b.layerNorm(x, gamma, beta, eps), form);
export const SpikeRMSNorm = (b: Backend, key: string, gamma: BTensor, eps: number, form?: OperatorForm) =>
  new Compensated(b, key, (x) => b.rmsNorm(x, gamma, eps), form);
export const SpikeGELU = (b: Backend, key: string, kind: 'gelu_tanh' | 'gelu_erf' | 'gelu_quick' = 'gelu_tanh', form?: OperatorForm) =>
  new Compensated(b, key, (x) => b.activation(kind, x), form);
export const SpikeSiLU = (b: Backend, key: string, form?: OperatorForm) => new Compensated(b, key, (x) => b.activation('silu', x), form);
/** act(gate)·up over a fused [gate | up] stream: SwiGLU's product compensated together with its activation. */
export const SpikeGatedActivation = (b: Backend, key: string, kind: Activation, form?: OperatorForm) =>
  new Compensated(b, key, (x) => b.gatedActivation(kind, x), form);

/** ReLU as a plain unsigned IF neuron (its output already is spikes for the next layer). */
export function SpikeReLU(b: Backend, name: string, theta: Float32Array | undefined, neuron: NeuronConfig, slot = 0, fanout = 1): SpikeEncoder {
  return new SpikeEncoder(b, name, theta, { ...neuron, signed: false }, undefined, slot, fanout);
}


export interface SpikeAttentionOptions {
  readonly T: number;
  readonly causal?: boolean;
  readonly numKvHeads?: number;
  readonly headDim?: number;
  /** RoPE inverse frequencies (Llama); omitted for learned positions (GPT-2). */
  readonly rope?: Float64Array;
  /** Sliding window (Mistral): a query sees the last W keys. */
  readonly window?: number;
  /** Qwen3's per-head RMSNorms of q and k, on the decoded q|k|v before RoPE (gains [d]). */
  readonly qkNorm?: { readonly q: BTensor; readonly k: BTensor; readonly eps: number };
  readonly form?: OperatorForm;
}

/**
 * Spiking self-attention (GPT-2 with learned positions, Llama with RoPE and GQA): a q|k|v spike
 * linear, the compensated attention core over the per-step KV cache, and the o spike linear.
 */
export class SpikeAttention {
  readonly numKvHeads: number;
  readonly headDim: number;

  constructor(
    private readonly backend: Backend,
    readonly embedDim: number,
    readonly numHeads: number,
    readonly opts: SpikeAttentionOptions,
    private readonly qkv: SpikeLinear,
    private readonly o: SpikeLinear,
    readonly key: string,
  ) {
    this.numKvHeads = opts.numKvHeads ?? numHeads;
    this.headDim = opts.headDim ?? embedDim / numHeads;
    if (!Number.isInteger(this.headDim)) throw new ArgumentError(`SpikeAttention: embedDim ${embedDim} is not divisible by ${numHeads} heads and no headDim is given`);
    if (numHeads % this.numKvHeads !== 0) throw new ArgumentError(`SpikeAttention: ${numHeads} heads are not a multiple of ${this.numKvHeads} KV heads`);
  }

  /**
   * x: the input currents [steps·S, D]; the layer's keys/values go to `cache` (layer `layer`) at
   * the given positions. Returns the output currents, with `residual` added.
   */
  forward(ctx: TimeContext, x: BTensor, cache: KvCache, layer: number, positions: Int32Array, counter?: SpikeCounter, residual?: BTensor): BTensor {
    const b = this.backend;
    const compensated = (this.opts.form ?? 'compensated') === 'compensated';
    const S = positions.length, start = positions[0]!;
    const qkvCurrents = this.qkv.forward(ctx, x, counter);
    const heads = { numHeads: this.numHeads, numKvHeads: this.numKvHeads, headDim: this.headDim };
    let qkv = compensated ? timeMean(b, ctx, `${this.key}.qkv`, qkvCurrents) : qkvCurrents;
    const qk = this.opts.qkNorm;
    if (qk) qkv = b.qkNorm(qkv, qk.q, qk.k, heads, qk.eps);
    const q = b.qkvToCache(qkv, cache.keys(layer), cache.values(layer), {
      ...heads, positions, invFreq: this.opts.rope, rowOffset: ctx.kvOffset + start, batches: ctx.kvBatches, kvBatchStride: cache.capacity,
    });
    const attn = b.attention(q, cache.keys(layer), cache.values(layer), {
      ...heads, queryStart: start, kvLength: start + S, scale: 1 / Math.sqrt(this.headDim),
      batches: ctx.kvBatches, kvBatchStride: cache.capacity, kvOffset: ctx.kvOffset, causal: this.opts.causal ?? true,
      ...(this.opts.window !== undefined ? { window: this.opts.window } : {}),
    });
    const out = compensated ? timeDelta(b, ctx, `${this.key}.attn`, attn) : attn;
    return this.o.forward(ctx, out, counter, residual);
  }
}
