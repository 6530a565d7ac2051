/**
 * The network fine-tuning trains: a converted model's forward as a straight line of the operators in
 * ops.ts with a neuron (quantizer.ts) at every encoder site, and its backward in reverse. It computes
 * the same function as the SpikingLM it was built from (a test compares their logits):
 *
 *   layerwise  every site of src/snn/sites.ts — attn_in, q_in (rotated queries), p_in (attention
 *              probabilities, θ per head), o_in, mlp_in, down_in, head_in, and OPT's proj_in /
 *              proj_out — with the model's code
 *   stepwise   rate neurons at attn_in, o_in, mlp_in, down_in, head_in (the compensated operators
 *              are exact on decoded values, so the network at T is the ANN with these quantizers;
 *              centres μ shift a site's neuron: x̂ = μ + Q(x − μ))
 *
 * Trained parameters (everything else frozen): log θ per channel of every site (θ = e^φ), optionally
 * the norms' gains γ and low-rank corrections W + s·B·A of the linear layers behind chosen sites.
 * One sequence per forward, from position 0, in float64. The block follows the config's features
 * (pre- or post-LN, LayerNorm or RMSNorm, gated MLP, RoPE or learned positions, Qwen3's q/k norms
 * (frozen, differentiated through), a sliding window), as the forward of src/nn/model.ts does.
 */
import { f32Weight } from '../tensor/half.js';
import { ArgumentError } from '../errors.js';
import type { ModelConfig } from '../nn/config.js';
import { stackLinear } from '../nn/model.js';
import type { LMWeights, LinearWeights } from '../nn/weights.js';
import type { SpikingLM } from '../snn/model.js';
import type { EncoderSite } from '../snn/sites.js';
import { surrogate } from '../snn/surrogate.js';
import { codeParams } from '../snn/codes.js';
import { ropeInvFreq } from '../tensor/kernels/rope.js';
import {
  type Dense, type LoRA, type NormKind, activationBackward, activationForward, linearBackward, linearForward, normBackward, normForward, ropeInPlace,
} from './ops.js';
import { type FireMode, type NeuronCode, type NeuronOut, extraPlanesOf, neuronBackward, neuronForward } from './quantizer.js';

/** The sites whose linear layer may carry a LoRA (keys of TrainParams.lora). */
export const LORA_SITE_KINDS = ['attn_in', 'o_in', 'mlp_in', 'down_in', 'head_in'] as const;

export interface TrainParams {
  /** φ = log θ per channel, per site. */
  readonly logTheta: Map<string, Float64Array>;
  /** Norm gains by norm name (`layers.{l}.attn_norm`, `layers.{l}.mlp_norm`, `final_norm`). */
  readonly gains: Map<string, Float64Array>;
  /** LoRA per site name (the linear layer that site feeds). */
  readonly lora: Map<string, LoRA>;
}

/** Gradients, the same shapes as TrainParams (LoRA: a and b). */
export interface TrainGrads {
  readonly logTheta: Map<string, Float64Array>;
  readonly gains: Map<string, Float64Array>;
  readonly lora: Map<string, { a: Float64Array; b: Float64Array }>;
}

export function zeroGrads(p: TrainParams): TrainGrads {
  return {
    logTheta: new Map([...p.logTheta].map(([k, v]) => [k, new Float64Array(v.length)])),
    gains: new Map([...p.gains].map(([k, v]) => [k, new Float64Array(v.length)])),
    lora: new Map([...p.lora].map(([k, v]) => [k, { a: new Float64Array(v.a.length), b: new Float64Array(v.b.length) }])),
  };
}

export interface ForwardResult {
  /** [S, V] */
  readonly logits: Float64Array;
  /** Spike events and neurons, summed over sites (spikes per neuron per token = events / neurons). */
  readonly events: number;
  readonly neurons: number;
  /** What the backward needs. */
  readonly tape: Tape;
}

/**
 * One block's saved values (S tokens; x̂ is a site's decoded output, what the next layer saw; *Xa the
 * LoRA's x·Aᵀ [S, rank] of the layer behind a site, when it has one).
 */
interface BlockTape {
  h0: Float64Array;            // [S, D] block input (residual stream)
  attnRho: Float64Array;       // [S] the attention norm's 1/√(…) (post-LN: of the norm after the attention residual)
  a: Float64Array;             // [S, D] attn_in input;  ah: its x̂
  ah: Float64Array;
  qkvXa?: Float64Array;
  kv: Float64Array;            // [S, H·d + 2·Hkv·d] q | k | v, q and k rotated
  qkRaw?: Float64Array;        // q | k | v before the q/k norms (Qwen3); qRho [S·H], kRho [S·Hkv]
  qRho?: Float64Array;
  kRho?: Float64Array;
  q: Float64Array;             // [S, H·d] q_in input (rotated q);  qh: its x̂
  qh: Float64Array;
  probs: Float64Array;         // [S·H, S] attention probabilities (row s·H + h sees keys 0 … s);  ph: their x̂
  ph: Float64Array;
  att: Float64Array;           // [S, H·d] o_in input;  atth: its x̂
  atth: Float64Array;
  oXa?: Float64Array;
  h1: Float64Array;            // [S, D] after the attention residual (post-LN: and its norm)
  h1raw?: Float64Array;        // post-LN: the sum before that norm; h2raw the block's sum before its last norm
  h2raw?: Float64Array;
  mlpRho: Float64Array;        // [S] (post-LN: of the norm after the MLP residual)
  m: Float64Array;             // [S, D] mlp_in input;  mh: its x̂
  mh: Float64Array;
  upXa?: Float64Array;
  u: Float64Array;             // [S, I or 2·I] up (gate | up) output
  z: Float64Array;             // [S, I] down_in input (the activation);  zh: its x̂
  zh: Float64Array;
  downXa?: Float64Array;
}

interface Tape {
  readonly tokens: Int32Array;
  readonly blocks: BlockTape[];
  e?: Float64Array;            // [S, E] proj_in input (the token embedding);  eh: its x̂
  eh?: Float64Array;
  hL: Float64Array;            // [S, D] the last block's output
  finalRho: Float64Array;      // [S]
  n?: Float64Array;            // [S, D] proj_out input (the final norm's output);  nh: its x̂
  nh?: Float64Array;
  f: Float64Array;             // [S, E] head_in input;  fh: its x̂
  fh: Float64Array;
  headXa?: Float64Array;
}

/** 'spiking': the neurons run (hard fire or smooth); 'exact': every site is the identity (the ANN). */
export type NetMode = 'spiking' | 'exact';

export class TrainNet {
  readonly config: ModelConfig;
  readonly sites: readonly EncoderSite[];
  private readonly codes: Map<string, NeuronCode>;
  private readonly centers: ReadonlyMap<string, Float32Array>;
  private readonly blocks: { qkv: Dense; o: Dense; up: Dense; down: Dense; attnNorm: { beta?: Float32Array }; mlpNorm: { beta?: Float32Array }; qNorm?: Float64Array; kNorm?: Float64Array }[];
  private readonly head: Dense;
  /** The embedding table as float32 (the head's when tied). */
  private readonly embedTable: Float32Array;
  private readonly projectIn?: Dense;
  private readonly projectOut?: Dense;
  private readonly finalBeta?: Float32Array;
  private readonly weights: LMWeights;
  private readonly invFreq?: Float64Array;
  private readonly normKind: NormKind;
  /** The norms' gains as the model has them (fine-tuned gains included), used where γ is not trained. */
  private readonly frozenGains = new Map<string, Float64Array>();

  constructor(snn: SpikingLM, readonly fireMode: FireMode = 'hard') {
    const cfg = (this.config = snn.config), sp = snn.spiking;
    if (sp.mode !== 'spiking') throw new ArgumentError('fine-tuning: the model runs in exact mode (no neurons to train); convert it in spiking mode');
    if (snn.schedule === 'stepwise') {
      const n = sp.neuron;
      if (!n.signed || n.reset !== 'subtract' || n.leak !== 1 || n.fire !== '>=' || Number.isFinite(n.maxSpikes) || snn.reluNeuron) {
        throw new ArgumentError('fine-tuning a stepwise model needs its default neurons (signed IF, reset by subtraction, no leak, unbounded bursts, no ReLU neuron): only then is the network at T the ANN with quantized encoder inputs, which training differentiates');
      }
    }
    this.sites = snn.sites;
    this.weights = snn.weights;
    this.centers = sp.centers ?? new Map();
    const s = surrogate(sp.surrogate.name, sp.surrogate.alpha);
    const halfStart = snn.schedule === 'layerwise' || sp.neuron.initial === 'half';
    this.codes = new Map(this.sites.map((site) => [site.name, {
      code: codeParams(snn.coding, snn.stepsOf(site.name), sp.neuron.maxSpikes), halfStart, surrogate: s, mode: fireMode,
    }]));
    const dense = (l: LinearWeights): Dense => {
      const [N, K] = l.weight.shape as [number, number];
      return { weight: f32Weight(l.weight).data, ...(l.bias ? { bias: l.bias.data } : {}), N, K };
    };
    this.blocks = snn.weights.blocks.map((b) => ({
      qkv: dense(stackLinear([b.q, b.k, b.v])), o: dense(b.o), up: dense(b.gate ? stackLinear([b.gate, b.up]) : b.up), down: dense(b.down),
      attnNorm: { ...(b.attnNorm.bias ? { beta: b.attnNorm.bias.data } : {}) }, mlpNorm: { ...(b.mlpNorm.bias ? { beta: b.mlpNorm.bias.data } : {}) },
      ...(b.qNorm && b.kNorm ? { qNorm: Float64Array.from(b.qNorm.weight.data), kNorm: Float64Array.from(b.kNorm.weight.data) } : {}),
    }));
    this.head = dense({ weight: snn.weights.lmHead });
    this.embedTable = snn.weights.embed === snn.weights.lmHead ? this.head.weight : f32Weight(snn.weights.embed).data;
    if (snn.weights.projectIn) this.projectIn = dense(snn.weights.projectIn);
    if (snn.weights.projectOut) this.projectOut = dense(snn.weights.projectOut);
    if (snn.weights.finalNorm?.bias) this.finalBeta = snn.weights.finalNorm.bias.data;
    if (cfg.rotary) this.invFreq = ropeInvFreq(cfg.headDim, cfg.ropeTheta, cfg.ropeScaling);
    this.normKind = cfg.norm;
    const adapted = sp.adapters?.normGains;
    const put = (name: string, t: Float32Array) => this.frozenGains.set(name, Float64Array.from(adapted?.get(name) ?? t));
    snn.weights.blocks.forEach((b, l) => {
      put(`layers.${l}.attn_norm`, b.attnNorm.weight.data);
      put(`layers.${l}.mlp_norm`, b.mlpNorm.weight.data);
    });
    if (snn.weights.finalNorm) put('final_norm', snn.weights.finalNorm.weight.data);
  }

  /** The starting parameters: the model's thresholds (and adapters, if it was fine-tuned before). */
  initialParams(snn: SpikingLM): TrainParams {
    const logTheta = new Map<string, Float64Array>();
    for (const site of this.sites) {
      const th = snn.spiking.thresholds.get(site.name);
      if (!th) throw new ArgumentError(`fine-tuning: no thresholds for site "${site.name}"`);
      logTheta.set(site.name, Float64Array.from(th, Math.log));
    }
    const gains = new Map<string, Float64Array>();
    const lora = new Map<string, LoRA>();
    for (const [k, g] of snn.spiking.adapters?.normGains ?? []) gains.set(k, Float64Array.from(g));
    for (const [k, l] of snn.spiking.adapters?.lora ?? []) lora.set(k, { rank: l.rank, scale: 1, a: Float64Array.from(l.a), b: Float64Array.from(l.b) });
    return { logTheta, gains, lora };
  }

  /** The gain vector of a norm: trained if present in params, else the model's. */
  private gamma(p: TrainParams, name: string): Float64Array {
    return p.gains.get(name) ?? this.frozenGains.get(name)!;
  }

  /** Which norms exist (their names for TrainParams.gains). */
  normNames(): string[] {
    return [...this.frozenGains.keys()];
  }

  /** A norm's gains as the model has them (fine-tuned ones included): where training γ starts. */
  modelGains(name: string): Float64Array {
    const g = this.frozenGains.get(name);
    if (!g) throw new ArgumentError(`fine-tuning: no norm "${name}"`);
    return Float64Array.from(g);
  }

  /** The width [N, K] of the linear layer behind a site (for LoRA shapes). */
  linearShape(site: string): [number, number] {
    const m = /^layers\.(\d+)\.(\w+)$/.exec(site);
    const d = site === 'head_in' ? this.head : m ? ({ attn_in: this.blocks[+m[1]!]!.qkv, o_in: this.blocks[+m[1]!]!.o, mlp_in: this.blocks[+m[1]!]!.up, down_in: this.blocks[+m[1]!]!.down } as Record<string, Dense | undefined>)[m[2]!] : undefined;
    if (!d) throw new ArgumentError(`LoRA: site "${site}" feeds no linear layer (LoRA goes on ${LORA_SITE_KINDS.join(', ')})`);
    return [d.N, d.K];
  }

  /**
   * A neuron's charge x/θ. Hard fire computes it as the kernels do, in float32 (x and 1/θ rounded,
   * then their product), so that both fire the same digits on the same values; smooth fire keeps
   * float64 (its finite differences need the precision).
   */
  private charge(x: number, theta: number): number {
    return this.fireMode === 'hard' ? Math.fround(Math.fround(x) * Math.fround(1 / theta)) : x / theta;
  }

  /**
   * The charges a = (x − μ)/θ of row r's first `cols` neurons at a site (into this.charges) and the
   * row's extra planes (weighted codes; p_in neurons choose theirs one by one, as the kernel does).
   */
  private rowCharges(x: Float64Array, r: number, C: number, c0: number, cols: number, theta: Float64Array, perHead: boolean, mu: Float32Array | undefined, n: NeuronCode): number {
    if (this.charges.length < cols) this.charges = new Float64Array(cols);
    const a = this.charges;
    let big = 0;
    for (let c = c0; c < cols; c++) {
      a[c] = this.charge(x[r * C + c]! - (mu ? mu[c]! : 0), theta[perHead ? r % theta.length : c]!);
      big = Math.max(big, Math.abs(a[c]!));
    }
    return perHead || n.code.kind === 'rate' ? 0 : extraPlanesOf(big, n.code, n.mode);
  }

  private charges = new Float64Array(64);

  /**
   * Quantize rows x [R, C] at a site (θ per channel; p_in: rows are (query, head) pairs of `C` keys
   * with θ of head `row % H`, and each probability chooses its own extra planes, as the kernel does).
   * `valid(r)` = [first, end): the columns of row r that have neurons (the keys a query sees).
   */
  private quantize(site: string, x: Float64Array, R: number, C: number, p: TrainParams, mode: NetMode, acc: { events: number; neurons: number }, valid?: (r: number) => [number, number]): Float64Array {
    if (mode === 'exact') return x;
    const n = this.codes.get(site)!, theta = Float64Array.from(p.logTheta.get(site)!, Math.exp), mu = this.centers.get(site), perHead = site.endsWith('.p_in');
    const out = new Float64Array(x.length), o: NeuronOut = { value: 0, events: 0 };
    let events = 0, neurons = 0;
    for (let r = 0; r < R; r++) {
      const [c0, cols] = valid ? valid(r) : [0, C];
      const extra = this.rowCharges(x, r, C, c0, cols, theta, perHead, mu, n), a = this.charges;
      for (let c = c0; c < cols; c++) {
        const t = theta[perHead ? r % theta.length : c]!;
        neuronForward(a[c]!, perHead ? extraPlanesOf(Math.abs(a[c]!), n.code, n.mode) : extra, n, o);
        out[r * C + c] = (mu ? mu[c]! : 0) + t * o.value;
        events += o.events;
      }
      neurons += cols - c0;
    }
    acc.events += events;
    acc.neurons += neurons;
    return out;
  }

  /** dL/dx of a site from dL/dx̂ (and dL/d(events) = gEvents per event); accumulates dL/dφ. */
  private quantizeBack(site: string, x: Float64Array, R: number, C: number, dOut: Float64Array, p: TrainParams, g: TrainGrads, gEvents: number, mode: NetMode, valid?: (r: number) => [number, number]): Float64Array {
    if (mode === 'exact') return dOut;
    const n = this.codes.get(site)!, theta = Float64Array.from(p.logTheta.get(site)!, Math.exp), dPhi = g.logTheta.get(site)!, mu = this.centers.get(site), perHead = site.endsWith('.p_in');
    const dx = new Float64Array(x.length), o: NeuronOut = { value: 0, events: 0 };
    for (let r = 0; r < R; r++) {
      const [c0, cols] = valid ? valid(r) : [0, C];
      const extra = this.rowCharges(x, r, C, c0, cols, theta, perHead, mu, n), a = this.charges;
      for (let c = c0; c < cols; c++) {
        const gv = dOut[r * C + c]!, i = perHead ? r % theta.length : c, t = theta[i]!, ac = a[c]!;
        // x̂ = μ + θ·g(a), a = (x − μ)/θ:  dL/da = θ·gv·g'(a) + gEvents·E'(a)
        const dA = neuronBackward(ac, perHead ? extraPlanesOf(Math.abs(ac), n.code, n.mode) : extra, n, t * gv, gEvents, o);
        dx[r * C + c] = dA / t;
        // dL/dθ = gv·g(a) − dL/da·a/θ;  dL/dφ = θ·dL/dθ
        dPhi[i] += t * gv * o.value - dA * ac;
      }
    }
    return dx;
  }

  forward(tokens: Int32Array, p: TrainParams, mode: NetMode = 'spiking'): ForwardResult {
    const cfg = this.config, w = this.weights, S = tokens.length, D = cfg.hiddenSize, E = cfg.embedDim;
    const H = cfg.numHeads, Hkv = cfg.numKvHeads, d = cfg.headDim, qW = H * d, kvW = Hkv * d, group = H / Hkv, I = cfg.intermediateSize;
    if (S > cfg.maxPositions) throw new ArgumentError(`fine-tuning: a sample of ${S} tokens exceeds the model's ${cfg.maxPositions} positions`);
    const layerwise = this.sites.some((s) => s.kind === 'q_in');
    const pre = !cfg.postNorm;
    const acc = { events: 0, neurons: 0 };
    const lora = (site: string) => p.lora.get(site);
    const tape = { tokens, blocks: [] } as unknown as Tape;
    // the embedding, through project_in where the model has it, plus learned positions
    const e = new Float64Array(S * E);
    for (let s = 0; s < S; s++) {
      const tok = tokens[s]!;
      if (!(tok >= 0 && tok < cfg.vocabSize)) throw new ArgumentError(`fine-tuning: token id ${tok} outside the vocabulary (${cfg.vocabSize})`);
      for (let i = 0; i < E; i++) e[s * E + i] = this.embedTable[tok * E + i]!;
    }
    let h: Float64Array = e;
    if (this.projectIn) {
      tape.e = e;
      tape.eh = this.quantize('proj_in', e, S, E, p, mode, acc);
      h = linearForward(tape.eh, S, this.projectIn).y;
    }
    if (w.positions) {
      const off = cfg.positionOffset;
      for (let s = 0; s < S; s++) for (let i = 0; i < D; i++) h[s * D + i] += w.positions.data[(s + off) * D + i]!;
    }
    const scale = 1 / Math.sqrt(d);
    const W = cfg.slidingWindow;
    /** The first key query s sees (its sliding window's start). */
    const firstKey = (s: number) => (W === undefined ? 0 : Math.max(0, s - W + 1));
    this.blocks.forEach((blk, l) => {
      const name = `layers.${l}`;
      const bt = { h0: h } as BlockTape;
      if (pre) {
        const an = normForward(this.normKind, h, S, D, this.gamma(p, `${name}.attn_norm`), blk.attnNorm.beta, cfg.normEps);
        bt.attnRho = an.rho;
        bt.a = an.y;
      } else {
        bt.a = h;
      }
      bt.ah = this.quantize(`${name}.attn_in`, bt.a, S, D, p, mode, acc);
      const qkv = linearForward(bt.ah, S, blk.qkv, lora(`${name}.attn_in`));
      bt.qkvXa = qkv.xa;
      const kv = qkv.y; // [S, qW + 2·kvW]; q and k normed (Qwen3) and rotated in place
      const Wqkv = qW + 2 * kvW;
      if (blk.qNorm && blk.kNorm) {
        bt.qkRaw = Float64Array.from(kv);
        bt.qRho = headNormForward(kv, S, Wqkv, 0, H, d, blk.qNorm, cfg.normEps);
        bt.kRho = headNormForward(kv, S, Wqkv, qW, Hkv, d, blk.kNorm, cfg.normEps);
      }
      if (this.invFreq) {
        ropeInPlace(kv, S, Wqkv, 0, H, d, this.invFreq, false);
        ropeInPlace(kv, S, Wqkv, qW, Hkv, d, this.invFreq, false);
      }
      bt.kv = kv;
      const q = new Float64Array(S * qW);
      for (let s = 0; s < S; s++) for (let i = 0; i < qW; i++) q[s * qW + i] = kv[s * Wqkv + i]!;
      bt.q = q;
      bt.qh = layerwise ? this.quantize(`${name}.q_in`, q, S, qW, p, mode, acc) : q;
      // probabilities [S·H rows, S keys] (row s·H + h sees keys firstKey(s) … s)
      const probs = new Float64Array(S * H * S);
      for (let s = 0; s < S; s++) {
        const j0 = firstKey(s);
        for (let hd = 0; hd < H; hd++) {
          const g = Math.floor(hd / group), row = (s * H + hd) * S;
          let max = -Infinity;
          for (let j = j0; j <= s; j++) {
            let a = 0;
            for (let i = 0; i < d; i++) a += bt.qh[s * qW + hd * d + i]! * kv[j * Wqkv + qW + g * d + i]!;
            probs[row + j] = a * scale;
            max = Math.max(max, a * scale);
          }
          let sum = 0;
          for (let j = j0; j <= s; j++) sum += (probs[row + j] = Math.exp(probs[row + j]! - max));
          for (let j = j0; j <= s; j++) probs[row + j] = probs[row + j]! / sum;
        }
      }
      bt.probs = probs;
      const keys = (r: number): [number, number] => [firstKey(Math.floor(r / H)), Math.floor(r / H) + 1];
      bt.ph = layerwise ? this.quantize(`${name}.p_in`, probs, S * H, S, p, mode, acc, keys) : probs;
      const att = new Float64Array(S * qW);
      for (let s = 0; s < S; s++) {
        for (let hd = 0; hd < H; hd++) {
          const g = Math.floor(hd / group), row = (s * H + hd) * S;
          for (let j = firstKey(s); j <= s; j++) {
            const pj = bt.ph[row + j]!;
            if (pj === 0) continue;
            for (let i = 0; i < d; i++) att[s * qW + hd * d + i] += pj * kv[j * Wqkv + qW + kvW + g * d + i]!;
          }
        }
      }
      bt.att = att;
      bt.atth = this.quantize(`${name}.o_in`, att, S, qW, p, mode, acc);
      const o = linearForward(bt.atth, S, blk.o, lora(`${name}.o_in`));
      bt.oXa = o.xa;
      let h1: Float64Array = new Float64Array(S * D);
      for (let i = 0; i < h1.length; i++) h1[i] = h[i]! + o.y[i]!;
      if (!pre) {
        bt.h1raw = h1;
        const an = normForward(this.normKind, h1, S, D, this.gamma(p, `${name}.attn_norm`), blk.attnNorm.beta, cfg.normEps);
        bt.attnRho = an.rho;
        h1 = an.y;
      }
      bt.h1 = h1;
      if (pre) {
        const mn = normForward(this.normKind, h1, S, D, this.gamma(p, `${name}.mlp_norm`), blk.mlpNorm.beta, cfg.normEps);
        bt.mlpRho = mn.rho;
        bt.m = mn.y;
      } else {
        bt.m = h1;
      }
      bt.mh = this.quantize(`${name}.mlp_in`, bt.m, S, D, p, mode, acc);
      const up = linearForward(bt.mh, S, blk.up, lora(`${name}.mlp_in`));
      bt.upXa = up.xa;
      bt.u = up.y;
      bt.z = activationForward(cfg.activation, up.y, S, I, cfg.gatedMlp);
      bt.zh = this.quantize(`${name}.down_in`, bt.z, S, I, p, mode, acc);
      const down = linearForward(bt.zh, S, blk.down, lora(`${name}.down_in`));
      bt.downXa = down.xa;
      let h2: Float64Array = new Float64Array(S * D);
      for (let i = 0; i < h2.length; i++) h2[i] = h1[i]! + down.y[i]!;
      if (!pre) {
        bt.h2raw = h2;
        const mn = normForward(this.normKind, h2, S, D, this.gamma(p, `${name}.mlp_norm`), blk.mlpNorm.beta, cfg.normEps);
        bt.mlpRho = mn.rho;
        h2 = mn.y;
      }
      h = h2;
      tape.blocks.push(bt);
    });
    tape.hL = h;
    let f = h;
    if (this.frozenGains.has('final_norm')) {
      const fn = normForward(this.normKind, h, S, D, this.gamma(p, 'final_norm'), this.finalBeta, cfg.normEps);
      tape.finalRho = fn.rho;
      f = fn.y;
    }
    if (this.projectOut) {
      tape.n = f;
      tape.nh = this.quantize('proj_out', f, S, D, p, mode, acc);
      f = linearForward(tape.nh, S, this.projectOut).y;
    }
    tape.f = f;
    tape.fh = this.quantize('head_in', f, S, E, p, mode, acc);
    const head = linearForward(tape.fh, S, this.head, lora('head_in'));
    tape.headXa = head.xa;
    return { logits: head.y, events: acc.events, neurons: acc.neurons, tape };
  }

  /**
   * Backward from dL/dlogits [S, V] (and dL/d(event) = gEvents for every spike event): accumulates
   * into g the gradients of every parameter present in p.
   */
  backward(res: ForwardResult, dLogits: Float64Array, p: TrainParams, g: TrainGrads, gEvents = 0, mode: NetMode = 'spiking'): void {
    const cfg = this.config, tape = res.tape, S = tape.tokens.length, D = cfg.hiddenSize, E = cfg.embedDim;
    const H = cfg.numHeads, Hkv = cfg.numKvHeads, d = cfg.headDim, qW = H * d, kvW = Hkv * d, group = H / Hkv, I = cfg.intermediateSize;
    const Wqkv = qW + 2 * kvW, scale = 1 / Math.sqrt(d);
    const layerwise = this.sites.some((s) => s.kind === 'q_in');
    const pre = !cfg.postNorm;
    const W = cfg.slidingWindow;
    const firstKey = (s: number) => (W === undefined ? 0 : Math.max(0, s - W + 1));
    const lora = (site: string) => p.lora.get(site), lg = (site: string) => g.lora.get(site);
    const gainGrad = (name: string) => g.gains.get(name);
    const dfh = linearBackward(dLogits, tape.fh, S, this.head, lora('head_in'), tape.headXa, lg('head_in'));
    let dh = this.quantizeBack('head_in', tape.f, S, E, dfh, p, g, gEvents, mode);
    if (this.projectOut) {
      const dnh = linearBackward(dh, tape.nh!, S, this.projectOut);
      dh = this.quantizeBack('proj_out', tape.n!, S, D, dnh, p, g, gEvents, mode);
    }
    if (this.frozenGains.has('final_norm')) dh = normBackward(this.normKind, dh, tape.hL, tape.finalRho, S, D, this.gamma(p, 'final_norm'), gainGrad('final_norm'));
    for (let l = this.blocks.length - 1; l >= 0; l--) {
      const blk = this.blocks[l]!, bt = tape.blocks[l]!, name = `layers.${l}`;
      // post-LN: the block ends with h = norm(h2raw)
      const dh2 = pre ? dh : normBackward(this.normKind, dh, bt.h2raw!, bt.mlpRho, S, D, this.gamma(p, `${name}.mlp_norm`), gainGrad(`${name}.mlp_norm`));
      // h2 = h1 + down(zh): the residual passes dh2 through
      const dzh = linearBackward(dh2, bt.zh, S, blk.down, lora(`${name}.down_in`), bt.downXa, lg(`${name}.down_in`));
      const dz = this.quantizeBack(`${name}.down_in`, bt.z, S, I, dzh, p, g, gEvents, mode);
      const du = activationBackward(cfg.activation, dz, bt.u, S, I, cfg.gatedMlp);
      const dmh = linearBackward(du, bt.mh, S, blk.up, lora(`${name}.mlp_in`), bt.upXa, lg(`${name}.mlp_in`));
      const dm = this.quantizeBack(`${name}.mlp_in`, bt.m, S, D, dmh, p, g, gEvents, mode);
      const dh1 = pre ? normBackward(this.normKind, dm, bt.h1, bt.mlpRho, S, D, this.gamma(p, `${name}.mlp_norm`), gainGrad(`${name}.mlp_norm`)) : dm;
      for (let i = 0; i < dh1.length; i++) dh1[i] += dh2[i]!;
      // post-LN: h1 = norm(h1raw); h1raw = h0 + o(atth)
      const dh1raw = pre ? dh1 : normBackward(this.normKind, dh1, bt.h1raw!, bt.attnRho, S, D, this.gamma(p, `${name}.attn_norm`), gainGrad(`${name}.attn_norm`));
      const datth = linearBackward(dh1raw, bt.atth, S, blk.o, lora(`${name}.o_in`), bt.oXa, lg(`${name}.o_in`));
      const datt = this.quantizeBack(`${name}.o_in`, bt.att, S, qW, datth, p, g, gEvents, mode);
      const dkv = new Float64Array(S * Wqkv); // gradients of (rotated q | rotated k | v)
      const dph = new Float64Array(S * H * S);
      for (let s = 0; s < S; s++) {
        for (let hd = 0; hd < H; hd++) {
          const gr = Math.floor(hd / group), row = (s * H + hd) * S;
          for (let j = firstKey(s); j <= s; j++) {
            const vo = j * Wqkv + qW + kvW + gr * d;
            let a = 0;
            for (let i = 0; i < d; i++) {
              const gi = datt[s * qW + hd * d + i]!;
              a += gi * bt.kv[vo + i]!;
              dkv[vo + i] += gi * bt.ph[row + j]!;
            }
            dph[row + j] = a;
          }
        }
      }
      const keys = (r: number): [number, number] => [firstKey(Math.floor(r / H)), Math.floor(r / H) + 1];
      const dprobs = layerwise ? this.quantizeBack(`${name}.p_in`, bt.probs, S * H, S, dph, p, g, gEvents, mode, keys) : dph;
      const dqh = new Float64Array(S * qW);
      for (let s = 0; s < S; s++) {
        const j0 = firstKey(s);
        for (let hd = 0; hd < H; hd++) {
          const gr = Math.floor(hd / group), row = (s * H + hd) * S;
          let dot = 0;
          for (let j = j0; j <= s; j++) dot += bt.probs[row + j]! * dprobs[row + j]!;
          for (let j = j0; j <= s; j++) {
            const ds = bt.probs[row + j]! * (dprobs[row + j]! - dot) * scale;
            if (ds === 0) continue;
            const ko = j * Wqkv + qW + gr * d;
            for (let i = 0; i < d; i++) {
              dqh[s * qW + hd * d + i] += ds * bt.kv[ko + i]!;
              dkv[ko + i] += ds * bt.qh[s * qW + hd * d + i]!;
            }
          }
        }
      }
      const dq = layerwise ? this.quantizeBack(`${name}.q_in`, bt.q, S, qW, dqh, p, g, gEvents, mode) : dqh;
      for (let s = 0; s < S; s++) for (let i = 0; i < qW; i++) dkv[s * Wqkv + i] += dq[s * qW + i]!;
      if (this.invFreq) {
        ropeInPlace(dkv, S, Wqkv, 0, H, d, this.invFreq, true);
        ropeInPlace(dkv, S, Wqkv, qW, Hkv, d, this.invFreq, true);
      }
      if (blk.qNorm && blk.kNorm) {
        headNormBackward(dkv, bt.qkRaw!, bt.qRho!, S, Wqkv, 0, H, d, blk.qNorm);
        headNormBackward(dkv, bt.qkRaw!, bt.kRho!, S, Wqkv, qW, Hkv, d, blk.kNorm);
      }
      const dah = linearBackward(dkv, bt.ah, S, blk.qkv, lora(`${name}.attn_in`), bt.qkvXa, lg(`${name}.attn_in`));
      const da = this.quantizeBack(`${name}.attn_in`, bt.a, S, D, dah, p, g, gEvents, mode);
      const dh0 = pre ? normBackward(this.normKind, da, bt.h0, bt.attnRho, S, D, this.gamma(p, `${name}.attn_norm`), gainGrad(`${name}.attn_norm`)) : da;
      for (let i = 0; i < dh0.length; i++) dh0[i] += dh1raw[i]!;
      dh = dh0;
    }
    if (this.projectIn) {
      const deh = linearBackward(dh, tape.eh!, S, this.projectIn);
      this.quantizeBack('proj_in', tape.e!, S, E, deh, p, g, gEvents, mode);
    }
  }
}

/**
 * Qwen3's q/k norms in place: the `heads` heads of d values starting at column `col` of each row of
 * width `width` are rmsNorm'd with gain γ; returns each head-row's 1/√(mean x² + ε) for the backward.
 */
function headNormForward(x: Float64Array, S: number, width: number, col: number, heads: number, d: number, gamma: Float64Array, eps: number): Float64Array {
  const rho = new Float64Array(S * heads);
  for (let s = 0; s < S; s++) {
    for (let h = 0; h < heads; h++) {
      const o = s * width + col + h * d;
      let ss = 0;
      for (let i = 0; i < d; i++) ss += x[o + i]! ** 2;
      const r = (rho[s * heads + h] = 1 / Math.sqrt(ss / d + eps));
      for (let i = 0; i < d; i++) x[o + i] = x[o + i]! * r * gamma[i]!;
    }
  }
  return rho;
}

/** The backward of headNormForward, in place on dx (γ frozen): dx = ρ·(g − x̂·mean(g·x̂)), g = γ·dy. */
function headNormBackward(dx: Float64Array, raw: Float64Array, rho: Float64Array, S: number, width: number, col: number, heads: number, d: number, gamma: Float64Array): void {
  for (let s = 0; s < S; s++) {
    for (let h = 0; h < heads; h++) {
      const o = s * width + col + h * d, r = rho[s * heads + h]!;
      let dot = 0;
      for (let i = 0; i < d; i++) dot += gamma[i]! * dx[o + i]! * raw[o + i]! * r;
      dot /= d;
      for (let i = 0; i < d; i++) dx[o + i] = r * (gamma[i]! * dx[o + i]! - raw[o + i]! * r * dot);
    }
  }
}
