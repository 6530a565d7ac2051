/**
 * The layerwise schedule: a layer runs its T steps on the spikes it receives and decodes; every
 * nonlinear operator runs once per token on decoded values; the next encoder re-encodes a constant
 * current. Latency is L·T steps (plus extra planes where a token's values overflow), not L + T.
 *
 * Per block (every family: the features of ModelConfig), every product of an activation with a
 * weight or a cached value is spike-driven:
 *
 *   a     = norm(h)                                   once per token (post-LN: a = h)
 *   qkv   = attn_in spikes · (W_qkv·diag(θ)·unit)ᵀ + b  synapses: a weight row per event
 *   q, k  ← rmsNorm per head (Qwen3's q/k norms)      once per token, dense
 *   q, k, v: RoPE; k and v cached once per token (decoded values, not one copy per step)
 *   attn  = spikeAttention(q_in spikes, K, V)         scores: key rows per q event; softmax once;
 *                                                      p_in spikes: value rows per probability event
 *   h     = h + o_in spikes · W_oᵀ + b                 (post-LN: then h = norm(h), once per token)
 *   m     = norm(h)                                   once per token (post-LN: m = h)
 *   u     = mlp_in spikes · W_(gate|up)ᵀ + b;  act(gate)·up  (or act(u))   once per token
 *   h     = h + down_in spikes · W_downᵀ + b          (post-LN: then h = norm(h))
 *   logits = head_in spikes (of norm(h) on the rows asked for) · W_headᵀ
 * or, with a two-stage head (SpikingConfig.head: P_c coarse planes of the head's P, top k):
 *   coarse = (the first P_c planes of head_in's spikes) · W_headᵀ     every output
 *   logits = coarse, except at the k first-ranked columns of coarse (per row), which get the
 *            full P planes (kernels/top-k.ts refine): what a one-stage head computes there
 * Attention within a sliding window (Mistral) sees the last W keys: q's spikes fan out to that many.
 * OPT's project_in and project_out are linear layers like any other, behind the proj_in and
 * proj_out encoders.
 *
 * The code's unit (2^(1−T) or 1/T) and θ are folded into each layer's weights once, so a spike
 * event adds a weight row. Two executions give the same numbers: `event` accumulates rows per event
 * over the digit planes (the auditable reference, what a neuromorphic chip does); `fast` multiplies
 * the digit sums densely (what chat and benchmarks use). In `exact` mode every encoder is the
 * identity: the network is the ANN (a test anchors to it).
 */
import { type WeightTensor, isHalf, f32Weight } from '../tensor/half.js';
import { foldHalfRowsCpu, foldRowsCpu } from '../tensor/kernels/fold.js';
import { ArgumentError } from '../errors.js';
import type { ModelConfig } from '../nn/config.js';
import type { KvCache } from '../nn/kv-cache.js';
import { positionRows, stackLinear } from '../nn/model.js';
import type { LMWeights, LinearWeights, NormWeights } from '../nn/weights.js';
import type { Backend, BTensor, DeviceThresholds, TokenIds } from '../tensor/backend.js';
import { type CodeParams, EXTRA_PLANES, planesOf, unitOf } from '../tensor/kernels/codes.js';
import { inverseThresholds } from '../tensor/kernels/neuron.js';
import { ropeInvFreq } from '../tensor/kernels/rope.js';
import { Tensor } from '../tensor/tensor.js';
import { codeParams } from './codes.js';
import type { HeadStages, NetForward, NetOptions, SpikingConfig } from './model.js';
import { type EncoderSite, stepsOfSite } from './sites.js';

interface Linear {
  readonly slot: number;
  readonly fanout: number;
  readonly code: CodeParams;
  /** Thresholds of the encoder in front (absent in exact mode). */
  readonly th?: DeviceThresholds;
  /** W·diag(θ)·unit (spiking) or W (exact), [out, in]. */
  readonly weight: BTensor;
  /**
   * The unit folded into `weight` (spiking): the code's own, or — in a network sharing another's
   * synapses at another plane count (withPlanes) — the other code's, a power of two away, which the
   * fast execution makes up on the digit sums (exact: integers times a power of two).
   */
  readonly unit?: number;
  readonly bias?: BTensor;
}

interface Norm {
  readonly weight: BTensor;
  readonly bias?: BTensor;
}

interface Block {
  readonly attnNorm: Norm;
  readonly qkv: Linear;
  readonly qNorm?: BTensor;
  readonly kNorm?: BTensor;
  readonly q: { readonly slot: number; readonly th?: DeviceThresholds };
  readonly p: { readonly slot: number; readonly th?: DeviceThresholds };
  readonly o: Linear;
  readonly mlpNorm: Norm;
  readonly up: Linear;
  readonly down: Linear;
}

export class LayerwiseNet {
  readonly invFreq: Float64Array | undefined;
  /** The code of each site, by name (its planes: SpikingConfig.planes, or T + its kind's offset). */
  private readonly codes: Map<string, CodeParams>;
  private readonly blocks: Block[];
  private readonly embed: BTensor;
  private readonly positions?: BTensor;
  private readonly finalNorm?: Norm;
  private readonly projectIn?: Linear;
  private readonly projectOut?: Linear;
  private readonly head: Linear;
  private readonly owned: BTensor[] = [];
  /** The layers by site name, so a network with other planes can share the ones that did not change. */
  private readonly linears = new Map<string, Linear>();
  /**
   * Layers sharing synapses folded for another plane count: how to fold their own, which the
   * event-driven execution (whose kernel adds weight rows as they are) makes on first use.
   */
  private readonly refolds = new Map<Linear, { fold: () => BTensor; weight?: BTensor }>();

  /**
   * `share`: a network of the same weights and thresholds (other planes) whose device tensors this
   * one reuses where a site's code is the same; it owns them, and must outlive this one.
   */
  constructor(
    readonly config: ModelConfig,
    weights: LMWeights,
    readonly backend: Backend,
    readonly spiking: SpikingConfig,
    readonly sites: readonly EncoderSite[],
    share?: LayerwiseNet,
  ) {
    const b = backend, cfg = config, spikingMode = spiking.mode === 'spiking';
    const coding = spiking.coding ?? 'phase-ternary';
    this.codes = new Map(sites.map((s) => [s.name, codeParams(coding, stepsOfSite(spiking.timesteps, spiking.siteSteps, spiking.planes, s), spiking.neuron.maxSpikes)]));
    const own = <T extends BTensor>(t: T): T => {
      this.owned.push(t);
      return t;
    };
    const slots = new Map(sites.map((s, i) => [s.name, i]));
    const site = (name: string): EncoderSite => {
      const s = sites[slots.get(name)!];
      if (!s) throw new ArgumentError(`layerwise network: no encoder site "${name}"`);
      return s;
    };
    const thresholdsOf = (name: string): Float32Array | undefined => {
      if (!spikingMode) return undefined;
      const th = spiking.thresholds.get(name);
      if (!th) throw new ArgumentError(`the spiking model needs thresholds for encoder site "${name}" (run the calibration)`);
      if (th.length !== site(name).channels) throw new ArgumentError(`thresholds for "${name}": ${th.length} values, the site has ${site(name).channels} channels`);
      return th;
    };
    const device = (th: Float32Array | undefined): DeviceThresholds | undefined =>
      th ? { theta: own(b.upload(new Tensor([th.length], th), 'vector')), invTheta: own(b.upload(new Tensor([th.length], inverseThresholds(th)), 'vector')) } : undefined;
    const linear = (name: string, weightsOf: () => LinearWeights): Linear => {
      const code = this.codes.get(name)!;
      const shared = share?.linears.get(name);
      if (shared && shared.code.kind === code.kind && shared.code.T === code.T && shared.code.maxSpikes === code.maxSpikes) {
        this.linears.set(name, shared);
        return shared;
      }
      if (shared?.th && shared.unit !== undefined && shared.code.kind === code.kind && code.kind !== 'rate') {
        // a weighted code at another plane count: its unit 2^(1−T) is a power of two away from the
        // one folded into the shared synapses, so they serve as they are (the search builds dozens
        // of such networks; folding and uploading every weight each time was a third of its time)
        const made: Linear = { ...shared, code };
        this.refolds.set(made, { fold: () => foldedWeight(b, weightsOf().weight, thresholdsOf(name)!, unitOf(code)) });
        this.linears.set(name, made);
        return made;
      }
      const th = thresholdsOf(name), w = weightsOf();
      const made: Linear = {
        slot: slots.get(name)!, fanout: site(name).fanout, code, ...(th ? { th: device(th)!, unit: unitOf(code) } : {}),
        weight: own(th ? foldedWeight(b, w.weight, th, unitOf(code)) : b.upload(f32Weight(w.weight), 'linear')), ...(w.bias ? { bias: own(b.upload(w.bias, 'vector')) } : {}),
      };
      this.linears.set(name, made);
      return made;
    };
    const norm = (n: NormWeights): Norm => ({ weight: own(b.upload(n.weight, 'vector')), ...(n.bias ? { bias: own(b.upload(n.bias, 'vector')) } : {}) });
    this.invFreq = cfg.rotary ? ropeInvFreq(cfg.headDim, cfg.ropeTheta, cfg.ropeScaling) : undefined;
    if (share) {
      // only codes differ: norms, embeddings and the attention thresholds are the other network's
      this.embed = share.embed;
      if (share.positions) this.positions = share.positions;
      if (share.finalNorm) this.finalNorm = share.finalNorm;
      if (weights.projectIn) this.projectIn = linear('proj_in', () => weights.projectIn!);
      if (weights.projectOut) this.projectOut = linear('proj_out', () => weights.projectOut!);
      this.blocks = share.blocks.map((blk, l) => {
        const p = `layers.${l}`;
        const wb = weights.blocks[l]!;
        return {
          ...blk,
          qkv: linear(`${p}.attn_in`, () => stackLinear([wb.q, wb.k, wb.v])), o: linear(`${p}.o_in`, () => wb.o),
          up: linear(`${p}.mlp_in`, () => (wb.gate ? stackLinear([wb.gate, wb.up]) : wb.up)), down: linear(`${p}.down_in`, () => wb.down),
        };
      });
      this.head = linear('head_in', () => ({ weight: weights.lmHead }));
      return;
    }
    this.blocks = weights.blocks.map((blk, l) => {
      const p = `layers.${l}`;
      return {
        attnNorm: norm(blk.attnNorm),
        qkv: linear(`${p}.attn_in`, () => stackLinear([blk.q, blk.k, blk.v])),
        ...(blk.qNorm && blk.kNorm ? { qNorm: own(b.upload(blk.qNorm.weight, 'vector')), kNorm: own(b.upload(blk.kNorm.weight, 'vector')) } : {}),
        q: { slot: slots.get(`${p}.q_in`)!, ...(spikingMode ? { th: device(thresholdsOf(`${p}.q_in`))! } : {}) },
        p: { slot: slots.get(`${p}.p_in`)!, ...(spikingMode ? { th: device(thresholdsOf(`${p}.p_in`))! } : {}) },
        o: linear(`${p}.o_in`, () => blk.o),
        mlpNorm: norm(blk.mlpNorm),
        up: linear(`${p}.mlp_in`, () => (blk.gate ? stackLinear([blk.gate, blk.up]) : blk.up)),
        down: linear(`${p}.down_in`, () => blk.down),
      };
    });
    this.embed = own(b.upload(weights.embed, 'embedding'));
    if (weights.positions) this.positions = own(b.upload(weights.positions, 'embedding'));
    if (weights.finalNorm) this.finalNorm = norm(weights.finalNorm);
    if (weights.projectIn) this.projectIn = linear('proj_in', () => weights.projectIn!);
    if (weights.projectOut) this.projectOut = linear('proj_out', () => weights.projectOut!);
    this.head = linear('head_in', () => ({ weight: weights.lmHead }));
  }

  dispose(): void {
    for (const t of this.owned.splice(0)) this.backend.dispose(t);
    this.refolds.clear();
  }

  /** The synapses an event-driven product adds rows of: the layer's own fold (made once, here, where it shares another's). */
  private eventWeight(l: Linear): BTensor {
    const r = this.refolds.get(l);
    if (!r) return l.weight;
    if (!r.weight) {
      r.weight = r.fold();
      this.owned.push(r.weight);
    }
    return r.weight;
  }

  forward(tokens: TokenIds, positions: Int32Array, cache: KvCache, opts: NetOptions): NetForward {
    const b = this.backend, cfg = this.config, S = positions.length;
    const execution = opts.execution ?? 'fast';
    if (execution !== 'fast' && execution !== 'event') throw new ArgumentError(`the layerwise schedule runs 'fast' or 'event' execution, got '${execution}'`);
    if (opts.decodedAt?.length) throw new ArgumentError('decodedAt: the layerwise schedule decodes once per layer, at T only (run one model per T)');
    const event = execution === 'event';
    const start = positions[0]!;
    const stats = opts.stats;
    const observe = (name: string, x: BTensor) => opts.observe?.(name, x, 1);
    const lin = (l: Linear, name: string, x: BTensor, residual?: BTensor, observed = true): BTensor => {
      if (observed) observe(name, x);
      // exact mode (no thresholds anywhere: the ANN as the calibration's probe runs it): a spike
      // product too, summed exactly on the CPU, so the thresholds fitted to what it observes are
      // the same with either CPU kernel set (the ANN's own products sum in float32 under wasm)
      if (!l.th) return b.spikeMatmul(x, l.weight, l.bias, residual, 'dense');
      const enc = b.encode(x, l.th, l.code, { tensor: stats, row: l.slot, fanout: l.fanout }, event);
      if (opts.observeSpikes && enc.digits) opts.observeSpikes(name, enc.digits, planesOf(l.code));
      if (event) return b.planeMatmul(enc.digits!, planesOf(l.code), l.code.kind === 'rate' ? 1 : 2, this.eventWeight(l), l.bias, residual);
      // the dense twin: a spike product too, so on the CPU it sums exactly as the event one does;
      // synapses folded for another plane count take the power of two between the units on the sums
      const ratio = unitOf(l.code) / l.unit!;
      if (ratio === 1) return b.spikeMatmul(enc.sums, l.weight, l.bias, residual, 'dense');
      return b.spikeMatmul(b.scale(enc.sums, ratio), l.weight, l.bias, residual, 'dense');
    };
    const norm = (x: BTensor, n: Norm) => (cfg.norm === 'layer' ? b.layerNorm(x, n.weight, n.bias, cfg.normEps) : b.rmsNorm(x, n.weight, cfg.normEps));
    const pre = !cfg.postNorm, W = cfg.slidingWindow;
    // a query row sees the keys up to its own position (the last W of them in a sliding window):
    // its q spikes fan out to that many keys
    const keysSeenRows = Float32Array.from(positions, (p) => (W === undefined ? p + 1 : Math.min(W, p + 1)));
    // one row (decode) is one number: nothing uploaded per token
    const keysSeen = S === 1 ? keysSeenRows[0]! : keysSeenRows;
    let h = b.embedding(this.embed, tokens);
    if (this.projectIn) h = lin(this.projectIn, 'proj_in', h);
    if (this.positions) h = b.add(h, b.embedding(this.positions, positionRows(cfg, positions)));
    this.blocks.forEach((blk, l) => {
      const p = `layers.${l}`;
      const heads = { numHeads: cfg.numHeads, numKvHeads: cfg.numKvHeads, headDim: cfg.headDim };
      let qkv = lin(blk.qkv, `${p}.attn_in`, pre ? norm(h, blk.attnNorm) : h);
      if (blk.qNorm) qkv = b.qkNorm(qkv, blk.qNorm, blk.kNorm!, heads, cfg.normEps);
      const q = b.qkvToCache(qkv, cache.keys(l), cache.values(l), { ...heads, positions, invFreq: this.invFreq, rowOffset: start });
      observe(`${p}.q_in`, q);
      const params = { ...heads, queryStart: start, kvLength: start + S, scale: 1 / Math.sqrt(cfg.headDim), ...(W !== undefined ? { window: W } : {}) };
      let attn: BTensor;
      if (!blk.q.th || !blk.p.th) {
        attn = b.attention(q, cache.keys(l), cache.values(l), params);
      } else {
        const codes = { q: this.codes.get(`${p}.q_in`)!, p: this.codes.get(`${p}.p_in`)! };
        const encQ = b.encode(q, blk.q.th, codes.q, { tensor: stats, row: blk.q.slot, fanout: keysSeen }, event);
        if (opts.observeSpikes && encQ.digits) opts.observeSpikes(`${p}.q_in`, encQ.digits, planesOf(codes.q));
        attn = b.spikeAttention(event ? encQ.digits! : encQ.sums, cache.keys(l), cache.values(l), blk.q.th.theta, blk.p.th, params,
          codes, execution, { tensor: stats, row: blk.p.slot, fanout: cfg.headDim });
      }
      h = lin(blk.o, `${p}.o_in`, attn, h);
      if (!pre) h = norm(h, blk.attnNorm);
      const up = lin(blk.up, `${p}.mlp_in`, pre ? norm(h, blk.mlpNorm) : h);
      const hidden = cfg.gatedMlp ? b.gatedActivation(cfg.activation, up) : b.activation(cfg.activation, up);
      h = lin(blk.down, `${p}.down_in`, hidden, h);
      if (!pre) h = norm(h, blk.mlpNorm);
    });
    // the LM head: one stage, or coarse planes everywhere and the rest for the top k (header)
    const headOf = (x: BTensor, statsInto: BTensor, stages: HeadStages | undefined): BTensor => {
      const l = this.head;
      if (!stages || !l.th) return lin(l, 'head_in', x, undefined, false);
      const V = cfg.vocabSize, R = x.shape[0]!, P = l.code.T, finer = 2 ** (P - stages.coarsePlanes);
      // the whole run (its spikes, neurons and steps; every event reaches the k selected outputs),
      // and the coarse run alone for what its events cost beyond them (fan-out V − k, the extra row)
      const all = b.encode(x, l.th, l.code, { tensor: statsInto, row: l.slot, fanout: stages.topK }, event);
      if (opts.observeSpikes && all.digits) opts.observeSpikes('head_in', all.digits, planesOf(l.code));
      const coarseCode: CodeParams = { ...l.code, T: stages.coarsePlanes };
      const coarseRun = b.encode(x, l.th, coarseCode, { tensor: statsInto, row: this.sites.length, fanout: V - stages.topK }, false);
      let coarse: BTensor;
      if (event) {
        // the first extra + P_c planes of the run are the coarse run's digits; their membranes have
        // doubled P − P_c times fewer, a power of two applied once (exact, and so is the fast twin's)
        const planes = EXTRA_PLANES + stages.coarsePlanes;
        coarse = b.scale(b.planeMatmul(b.sliceRows(all.digits!, 0, planes * R), planes, 2, this.eventWeight(l)), finer);
      } else {
        coarse = b.spikeMatmul(b.scale(coarseRun.sums, (unitOf(coarseCode) / l.unit!)), l.weight, undefined, undefined, 'dense');
      }
      if (l.bias) coarse = b.add(coarse, l.bias);
      const selected = b.topK(coarse, stages.topK);
      if (event) return b.refineColumns(coarse, selected, all.digits!, planesOf(l.code), this.eventWeight(l), l.bias);
      const ratio = unitOf(l.code) / l.unit!;
      return b.refineColumns(coarse, selected, ratio === 1 ? all.sums : b.scale(all.sums, ratio), 0, l.weight, l.bias);
    };
    const heads = (x: BTensor): { logits: BTensor; extraLogits?: BTensor[] } => ({
      logits: headOf(x, stats!, this.spiking.head),
      ...(opts.extraHeads?.length ? { extraLogits: opts.extraHeads.map((h) => headOf(x, h.stats, h.stages)) } : {}),
    });
    const [r0, r1] = opts.rows;
    // the head's input: norm(h) where the model has a final norm, then project_out where it has one
    const headInput = (x: BTensor, observed: boolean): BTensor => {
      const n = this.finalNorm ? norm(x, this.finalNorm) : x;
      return this.projectOut ? lin(this.projectOut, 'proj_out', n, undefined, observed) : n;
    };
    if (opts.observe && r1 - r0 < S) {
      // observers (calibration) see the head's input on every new row, as in the stepwise schedule,
      // while the head runs only for the rows whose logits were asked for (the norm is row-wise)
      const all = headInput(h, true);
      opts.observe('head_in', all, 1);
      return { ...heads(b.sliceRows(all, r0, r1)), decoded: new Map() };
    }
    const x = headInput(b.sliceRows(h, r0, r1), true);
    observe('head_in', x);
    return { ...heads(x), decoded: new Map() };
  }
}

/** θ·unit per input, in doubles: the scales a fold multiplies each weight column by. */
function foldScales(w: WeightTensor, theta: Float32Array, unit: number): Float64Array {
  const K = w.shape[1]!;
  if (theta.length !== K) throw new ArgumentError(`thresholds: ${theta.length} values for a layer with ${K} inputs`);
  return Float64Array.from(theta, (t) => t * unit);
}

/** W·diag(θ)·unit: the synapses behind an encoder (a spike event adds one row of these; kernels/fold.ts). */
export function foldThresholds(w: WeightTensor, theta: Float32Array, unit: number): Tensor {
  const [N, K] = w.shape as [number, number];
  const scaled = foldScales(w, theta, unit);
  const out = new Tensor([N, K]);
  if (isHalf(w)) foldHalfRowsCpu(w.bits, w.format, scaled, out.data, K, 0, N);
  else foldRowsCpu(w.data, scaled, out.data, K, 0, N);
  return out;
}

/** The folded weight, uploaded: made in place where the backend can (uploadFolded), else folded here and uploaded. */
function foldedWeight(b: Backend, w: WeightTensor, theta: Float32Array, unit: number): BTensor {
  if (b.uploadFolded) return b.uploadFolded(w, foldScales(w, theta, unit));
  return b.upload(foldThresholds(w, theta, unit), 'linear');
}
