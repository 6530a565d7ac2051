/**
 * The stepwise schedule: every layer advances one time step at a time (or all T steps at once in
 * multi-step execution), with rate-coded spikes.
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
 *                (the compensated product q·kᵀ, the compensated masked softmax and the compensated
 *                product with v chained — each is exact on decoded values, so the chain is), then
 *                timeDelta
 *   residual     currents add per step
 *
 * Only the encoders lose information. With the default sigma-delta neuron (signed, subtract reset,
 * half start, unbounded bursts) an encoder's total output is its total input rounded to the θ grid,
 * so the decoded logits at T equal the ANN with each encoder input quantized to steps of θ/T — the
 * error falls as 1/T. Bounded bursts (B spikes per step) add clipping when |x| > B·θ.
 *
 * Execution: `multi` runs each layer for all T steps at once (a linear layer is one product over
 * [T·S, K]); `single` runs the whole network one step at a time carrying every state. They agree.
 */
import { ArgumentError } from '../errors.js';
import type { ModelConfig } from '../nn/config.js';
import type { KvCache } from '../nn/kv-cache.js';
import { positionRows, stackLinear } from '../nn/model.js';
import type { LMWeights, LinearWeights, NormWeights } from '../nn/weights.js';
import type { Backend, BTensor } from '../tensor/backend.js';
import { ropeInvFreq } from '../tensor/kernels/rope.js';
import type { Tensor } from '../tensor/tensor.js';
import {
  Compensated, SpikeAttention, type SpikeCounter, SpikeEncoder, SpikeGatedActivation, SpikeGELU, SpikeLayerNorm, SpikeLinear, SpikeReLU, SpikeRMSNorm,
  SpikeSiLU, type TimeContext, multiStep, singleStep, timeMean,
} from './operators.js';
import type { EncoderSite } from './sites.js';
import type { NetForward, NetOptions, SpikingConfig } from './model.js';

interface SpikingBlock {
  /** Before attention (pre-LN) or after its residual add (post-LN). */
  attnNorm: Compensated;
  attention: SpikeAttention;
  mlpNorm: Compensated;
  /** up (or the fused gate|up) behind the mlp_in encoder. */
  up: SpikeLinear;
  /** The activation in compensated form; absent when a ReLU neuron is the down encoder itself. */
  act?: Compensated;
  down: SpikeLinear;
}

export class StepwiseNet {
  readonly invFreq: Float64Array | undefined;
  private readonly blocks: SpikingBlock[];
  private readonly embed: BTensor;
  private readonly positions?: BTensor;
  private readonly finalNorm?: Compensated;
  private readonly projectIn?: SpikeLinear;
  private readonly projectOut?: SpikeLinear;
  private readonly head: SpikeLinear;
  /** Every tensor this network uploaded (disposed together). */
  private readonly owned: BTensor[] = [];
  private readonly linears: SpikeLinear[] = [];

  constructor(
    readonly config: ModelConfig,
    weights: LMWeights,
    readonly backend: Backend,
    readonly spiking: SpikingConfig,
    readonly sites: readonly EncoderSite[],
  ) {
    const spikingMode = spiking.mode === 'spiking';
    const b = backend, cfg = config, forms = spiking.operators!;
    const own = <T extends BTensor>(t: T): T => {
      this.owned.push(t);
      return t;
    };
    const slots = new Map(sites.map((s, i) => [s.name, i]));
    const encoder = (site: string, relu = false): SpikeEncoder => {
      const info = sites[slots.get(site)!]!;
      const th = spikingMode ? spiking.thresholds.get(site) : undefined;
      if (spikingMode && !th) throw new ArgumentError(`the spiking model needs thresholds for encoder site "${site}" (run the calibration)`);
      if (th && th.length !== info.channels) throw new ArgumentError(`thresholds for "${site}": ${th.length} values, the site has ${info.channels} channels`);
      const mu = spikingMode ? spiking.centers?.get(site) : undefined;
      if (mu && relu) throw new ArgumentError(`centres for "${site}": a ReLU neuron site cannot be centred (ReLU(x − μ) + μ ≠ ReLU(x))`);
      return relu
        ? SpikeReLU(b, site, th, spiking.neuron, slots.get(site)!, info.fanout)
        : new SpikeEncoder(b, site, th, spiking.neuron, mu, slots.get(site)!, info.fanout);
    };
    const vec = (t: Tensor | undefined) => (t ? own(b.upload(t, 'vector')) : undefined);
    const linear = (enc: SpikeEncoder, w: LinearWeights): SpikeLinear => {
      const l = new SpikeLinear(b, enc, w);
      l.kernel = spiking.spikeKernel ?? 'auto';
      const hint = spiking.densityHints?.get(enc.name);
      if (hint !== undefined) l.densityHint = hint;
      this.owned.push(...l.tensors(), ...enc.tensors());
      this.linears.push(l);
      return l;
    };
    const norm = (key: string, n: NormWeights): Compensated =>
      cfg.norm === 'layer' ? SpikeLayerNorm(b, key, vec(n.weight)!, vec(n.bias), cfg.normEps, forms.norm) : SpikeRMSNorm(b, key, vec(n.weight)!, cfg.normEps, forms.norm);
    this.invFreq = cfg.rotary ? ropeInvFreq(cfg.headDim, cfg.ropeTheta, cfg.ropeScaling) : undefined;
    const reluNeuron = cfg.activation === 'relu' && !cfg.gatedMlp;
    const T = spiking.timesteps;
    this.blocks = weights.blocks.map((blk, l) => {
      const p = `layers.${l}`;
      const attention = new SpikeAttention(b, cfg.hiddenSize, cfg.numHeads, {
        T, causal: true, numKvHeads: cfg.numKvHeads, headDim: cfg.headDim, ...(this.invFreq ? { rope: this.invFreq } : {}), form: forms.attention,
        ...(cfg.slidingWindow !== undefined ? { window: cfg.slidingWindow } : {}),
        ...(blk.qNorm && blk.kNorm ? { qkNorm: { q: vec(blk.qNorm.weight)!, k: vec(blk.kNorm.weight)!, eps: cfg.normEps } } : {}),
      }, linear(encoder(`${p}.attn_in`), stackLinear([blk.q, blk.k, blk.v])), linear(encoder(`${p}.o_in`), blk.o), `${p}.attention`);
      const up = linear(encoder(`${p}.mlp_in`), blk.gate ? stackLinear([blk.gate, blk.up]) : blk.up);
      const act = blk.gate
        ? SpikeGatedActivation(b, `${p}.act`, cfg.activation, forms.activation)
        : reluNeuron ? undefined
        : cfg.activation === 'silu' ? SpikeSiLU(b, `${p}.act`, forms.activation)
        : SpikeGELU(b, `${p}.act`, cfg.activation as 'gelu_tanh' | 'gelu_erf' | 'gelu_quick', forms.activation);
      return {
        attnNorm: norm(`${p}.attn_norm`, blk.attnNorm), attention, mlpNorm: norm(`${p}.mlp_norm`, blk.mlpNorm), up,
        ...(act ? { act } : {}), down: linear(encoder(`${p}.down_in`, reluNeuron), blk.down),
      };
    });
    this.embed = own(b.upload(weights.embed, 'embedding'));
    if (weights.positions) this.positions = own(b.upload(weights.positions, 'embedding'));
    if (weights.finalNorm) this.finalNorm = norm('final_norm', weights.finalNorm);
    if (weights.projectIn) this.projectIn = linear(encoder('proj_in'), weights.projectIn);
    if (weights.projectOut) this.projectOut = linear(encoder('proj_out'), weights.projectOut);
    this.head = linear(encoder('head_in'), { weight: weights.lmHead });
  }

  setDensityHints(hints: ReadonlyMap<string, number>): void {
    for (const l of this.linears) {
      const h = hints.get(l.encoder.name);
      if (h !== undefined) l.densityHint = h;
    }
  }

  dispose(): void {
    for (const t of this.owned.splice(0)) this.backend.dispose(t);
  }

  forward(tokens: Int32Array, positions: Int32Array, cache: KvCache, opts: NetOptions): NetForward {
    const b = this.backend, T = this.spiking.timesteps, S = tokens.length;
    const decodedAt = [...new Set(opts.decodedAt ?? [])].sort((a, c) => a - c);
    for (const t of decodedAt) if (!Number.isInteger(t) || t < 1 || t > T) throw new ArgumentError(`decodedAt: step ${t} is outside 1…${T}`);
    if (decodedAt.length > 0 && !opts.allLogits && opts.rows[1] - opts.rows[0] !== 1) throw new ArgumentError('decodedAt: internal row range');
    const counter: SpikeCounter = { stats: b.zeros([this.sites.length, T]), stride: T, siteStats: opts.stats };
    const [r0, r1] = opts.rows;
    // The LM head is linear: decoded logits at step t are W·θ·(mean of its input spikes up to t) + b.
    const decode = (headMean: BTensor, block: number): BTensor => this.head.onDecoded(b.sliceRows(headMean, block * S + r0, block * S + r1));
    const decoded = new Map<number, BTensor>();
    let logits: BTensor | undefined;
    if ((opts.execution ?? 'multi') === 'multi') {
      const headMean = this.run(multiStep(T, { observe: opts.observe, observeSpikes: opts.observeSpikes }), tokens, positions, cache, counter);
      for (const t of decodedAt) decoded.set(t, decode(headMean, t - 1));
      logits = decode(headMean, T - 1);
    } else if (opts.execution === 'single') {
      const loop = singleStep(b, cache.capacity, { observe: opts.observe, observeSpikes: opts.observeSpikes });
      for (let t = 0; t < T; t++) {
        const headMean = this.run(loop.at(t), tokens, positions, cache, counter);
        if (decodedAt.includes(t + 1)) decoded.set(t + 1, decode(headMean, 0));
        if (t === T - 1) logits = decode(headMean, 0);
      }
    } else {
      throw new ArgumentError(`the stepwise schedule runs 'multi' or 'single' execution, got '${opts.execution}'`);
    }
    return { logits: logits!, decoded, spikes: counter.stats };
  }

  /** The network over ctx.steps steps; returns the decoded LM-head input (running mean of its spikes). */
  private run(ctx: TimeContext, tokens: Int32Array, positions: Int32Array, cache: KvCache, counter: SpikeCounter): BTensor {
    const b = this.backend;
    const S = tokens.length;
    // The embedding is a constant current: the same rows at every step.
    const repeat = (a: Int32Array) => Int32Array.from({ length: ctx.steps * S }, (_, i) => a[i % S]!);
    let h = b.embedding(this.embed, repeat(tokens));
    if (this.projectIn) h = this.projectIn.forward(ctx, h, counter);
    if (this.positions) h = b.add(h, b.embedding(this.positions, repeat(positionRows(this.config, positions))));
    const pre = !this.config.postNorm;
    this.blocks.forEach((blk, l) => {
      h = blk.attention.forward(ctx, pre ? blk.attnNorm.forward(ctx, h) : h, cache, l, positions, counter, h);
      if (!pre) h = blk.attnNorm.forward(ctx, h);
      const up = blk.up.forward(ctx, pre ? blk.mlpNorm.forward(ctx, h) : h, counter);
      h = blk.down.forward(ctx, blk.act ? blk.act.forward(ctx, up) : up, counter, h);
      if (!pre) h = blk.mlpNorm.forward(ctx, h);
    });
    let f = this.finalNorm ? this.finalNorm.forward(ctx, h) : h;
    if (this.projectOut) f = this.projectOut.forward(ctx, f, counter);
    const spikes = this.head.encoder.forward(ctx, f, counter);
    return timeMean(b, ctx, 'head_in', spikes);
  }
}
