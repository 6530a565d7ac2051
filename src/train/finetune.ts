/**
 * Surrogate-gradient fine-tuning of a converted model: distil the ANN into its spiking network
 * through the spikes.
 *
 *   loss  = mean over positions of KL(p_ANN ‖ p_SNN)  +  λ · (spike events / neuron-tokens)
 *
 * on the calibration text (the ANN's distributions are computed once, exact), minimised by Adam
 * over what `train` names: `thresholds` (log θ per channel of every encoder site), `normGains` (γ of
 * every norm) and `lora:R` (a rank-R correction W + B·A of the linear layers behind the sites of
 * `loraSites`, B starting at zero so training starts from the converted network). The forward is the
 * spiking network itself (network.ts, equal to SpikingLM's logits); the backward runs through each
 * neuron's steps with the surrogate the model carries (`applySurrogateGradients`). Deterministic:
 * the same model, data and options give the same result (batches are drawn by a seeded generator).
 */
import { ArgumentError } from '../errors.js';
import { seededRandom } from '../nn/sampling.js';
import type { LoraAdapter } from '../snn/adapters.js';
import type { SpikingLM } from '../snn/model.js';
import type { CalibrationData } from '../convert/calibration-data.js';
import { klLoss } from './ops.js';
import { LORA_SITE_KINDS, type TrainGrads, TrainNet, type TrainParams, zeroGrads } from './network.js';

export interface FineTuneOptions {
  /** Adam steps (default 150). */
  readonly steps?: number;
  /** Learning rate of log θ (default 0.05: the best of 0.02 / 0.05 on stories260k's rate and phase codes at T = 8); norm gains and LoRA use lr·adapterLrScale. */
  readonly lr?: number;
  /** Default 0.25: gains and LoRA factors are O(1) and O(weights), log θ moves in ratios. */
  readonly adapterLrScale?: number;
  /** Weight λ of the spike penalty, in spikes per neuron per token (default 0). */
  readonly lambdaSpikes?: number;
  /** What is trained (default ['thresholds']): 'thresholds', 'normGains', 'lora:R'. */
  readonly train?: readonly string[];
  /** Site kinds whose linear layers get a LoRA (default every block's: attn_in, o_in, mlp_in, down_in). */
  readonly loraSites?: readonly string[];
  /** Calibration samples per step (default 4). */
  readonly batchSize?: number;
  readonly seed?: number;
  readonly onStep?: (s: StepReport) => void;
  /** Stops between steps (the model so far is returned, `stopped` set). */
  readonly signal?: AbortSignal;
}

export interface StepReport {
  readonly step: number;
  readonly steps: number;
  /** The batch's loss (KL + λ·spikes). */
  readonly loss: number;
  readonly kl: number;
  readonly spikesPerNeuronPerToken: number;
  readonly elapsedMs: number;
}

export interface TrainingRecord {
  readonly steps: number;
  readonly lr: number;
  readonly adapterLrScale: number;
  readonly lambdaSpikes: number;
  readonly train: readonly string[];
  readonly loraSites: readonly string[];
  readonly batchSize: number;
  readonly seed: number;
  readonly surrogate: { readonly name: string; readonly alpha: number };
  readonly data: string;
  /** Over the whole training data, before and after. */
  readonly before: { readonly kl: number; readonly spikesPerNeuronPerToken: number };
  readonly after: { readonly kl: number; readonly spikesPerNeuronPerToken: number };
  readonly seconds: number;
  readonly stopped: boolean;
}

export interface FineTuneResult {
  /** The fine-tuned model (a new SpikingLM; the input is left as it was). */
  readonly snn: SpikingLM;
  readonly history: readonly StepReport[];
  readonly record: TrainingRecord;
}

export interface ParsedTargets {
  readonly thresholds: boolean;
  readonly normGains: boolean;
  readonly loraRank: number;
}

export function parseTrainTargets(train: readonly string[]): ParsedTargets {
  let thresholds = false, normGains = false, loraRank = 0;
  for (const t of train) {
    const m = /^lora:(\d+)$/.exec(t);
    if (t === 'thresholds') thresholds = true;
    else if (t === 'normGains' || t === 'norm_gains' || t === 'norm-gains') normGains = true;
    else if (m && +m[1]! >= 1) loraRank = +m[1]!;
    else throw new ArgumentError(`train: "${t}" is not one of thresholds, normGains, lora:RANK (RANK a positive integer)`);
  }
  if (!thresholds && !normGains && !loraRank) throw new ArgumentError('train: nothing to train (give thresholds, normGains and/or lora:RANK)');
  return { thresholds, normGains, loraRank };
}

function checkOptions(o: FineTuneOptions): void {
  const posInt = (v: number | undefined, name: string) => {
    if (v !== undefined && !(Number.isInteger(v) && v >= 1)) throw new ArgumentError(`fineTune: ${name} must be a positive integer, got ${v}`);
  };
  posInt(o.steps, 'steps');
  posInt(o.batchSize, 'batchSize');
  if (o.lr !== undefined && !(o.lr > 0 && Number.isFinite(o.lr))) throw new ArgumentError(`fineTune: lr must be a positive number, got ${o.lr}`);
  if (o.adapterLrScale !== undefined && !(o.adapterLrScale > 0 && Number.isFinite(o.adapterLrScale))) throw new ArgumentError(`fineTune: adapterLrScale must be a positive number, got ${o.adapterLrScale}`);
  if (o.lambdaSpikes !== undefined && !(o.lambdaSpikes >= 0 && Number.isFinite(o.lambdaSpikes))) throw new ArgumentError(`fineTune: lambdaSpikes must be a number ≥ 0, got ${o.lambdaSpikes}`);
  if (o.seed !== undefined && !Number.isInteger(o.seed)) throw new ArgumentError(`fineTune: seed must be an integer, got ${o.seed}`);
}

/** Adam (Kingma & Ba) over flat parameter arrays, bias-corrected. */
class Adam {
  private readonly m = new Map<Float64Array, Float64Array>();
  private readonly v = new Map<Float64Array, Float64Array>();
  private t = 0;
  constructor(private readonly beta1 = 0.9, private readonly beta2 = 0.999, private readonly eps = 1e-8) {}
  begin(): void {
    this.t++;
  }
  update(param: Float64Array, grad: Float64Array, lr: number): void {
    let m = this.m.get(param), v = this.v.get(param);
    if (!m || !v) {
      this.m.set(param, (m = new Float64Array(param.length)));
      this.v.set(param, (v = new Float64Array(param.length)));
    }
    const c1 = 1 - this.beta1 ** this.t, c2 = 1 - this.beta2 ** this.t;
    for (let i = 0; i < param.length; i++) {
      const g = grad[i]!;
      m[i] = this.beta1 * m[i]! + (1 - this.beta1) * g;
      v[i] = this.beta2 * v[i]! + (1 - this.beta2) * g * g;
      param[i] -= (lr * (m[i]! / c1)) / (Math.sqrt(v[i]! / c2) + this.eps);
    }
  }
}

/** The loss of one batch and its gradient (accumulated into g). */
function batchLoss(net: TrainNet, samples: readonly Int32Array[], teachers: readonly Float64Array[], p: TrainParams, g: TrainGrads | undefined, lambda: number): { kl: number; spikes: number } {
  const V = net.config.vocabSize;
  const runs = samples.map((ids) => net.forward(ids, p));
  const positions = samples.reduce((a, s) => a + s.length, 0);
  const neurons = runs.reduce((a, r) => a + r.neurons, 0), events = runs.reduce((a, r) => a + r.events, 0);
  let kl = 0;
  runs.forEach((run, i) => {
    const S = samples[i]!.length, { loss, grad } = klLoss(teachers[i]!, run.logits, S, V);
    kl += loss;
    if (!g) return;
    for (let k = 0; k < grad.length; k++) grad[k] = grad[k]! / positions;
    net.backward(run, grad, p, g, lambda / neurons);
  });
  return { kl: kl / positions, spikes: events / neurons };
}

/**
 * Fine-tune `snn` on `data` (calibration samples; never the evaluation text). Returns a new model
 * with the trained thresholds and adapters, the per-step history and the record saved with it.
 */
export function fineTune(snn: SpikingLM, data: CalibrationData, opts: FineTuneOptions = {}): FineTuneResult {
  checkOptions(opts);
  const train = opts.train ?? ['thresholds'];
  const targets = parseTrainTargets(train);
  const steps = opts.steps ?? 150, lr = opts.lr ?? 0.05, scale = opts.adapterLrScale ?? 0.25, lambda = opts.lambdaSpikes ?? 0;
  if (data.samples.length === 0) throw new ArgumentError('fineTune: no calibration samples');
  const batchSize = Math.min(opts.batchSize ?? 4, data.samples.length), seed = opts.seed ?? 0;
  const loraSites = opts.loraSites ?? ['attn_in', 'o_in', 'mlp_in', 'down_in'];
  for (const k of loraSites) if (!(LORA_SITE_KINDS as readonly string[]).includes(k)) throw new ArgumentError(`fineTune: loraSites: "${k}" is not one of ${LORA_SITE_KINDS.join(', ')}`);
  const t0 = performance.now();
  const net = new TrainNet(snn, 'hard');
  const p = net.initialParams(snn);
  const random = seededRandom(seed);
  if (targets.normGains) for (const name of net.normNames()) if (!p.gains.has(name)) p.gains.set(name, net.modelGains(name));
  if (targets.loraRank) {
    for (const site of net.sites) {
      if (!loraSites.includes(site.kind) || p.lora.has(site.name)) continue;
      const [N, K] = net.linearShape(site.name), r = targets.loraRank;
      if (r > Math.min(N, K)) throw new ArgumentError(`fineTune: lora:${r} exceeds the smaller side of ${site.name}'s layer (${N}×${K})`);
      // A: small random (Kaiming-uniform-like, 1/√K); B: zero, so the model starts unchanged
      const a = Float64Array.from({ length: r * K }, () => ((random() * 2 - 1) / Math.sqrt(K)));
      p.lora.set(site.name, { rank: r, scale: 1, a, b: new Float64Array(N * r) });
    }
  }
  const samples = data.samples.map((s) => Int32Array.from(s));
  const teachers = samples.map((ids) => net.forward(ids, p, 'exact').logits);
  const before = batchLoss(net, samples, teachers, p, undefined, 0);
  const adam = new Adam();
  const history: StepReport[] = [];
  let order: number[] = [], cursor = 0, stopped = false;
  for (let step = 1; step <= steps; step++) {
    if (opts.signal?.aborted) {
      stopped = true;
      break;
    }
    const batch: number[] = [];
    while (batch.length < batchSize) {
      if (cursor >= order.length) {
        // a fresh seeded permutation of the samples per epoch (Fisher–Yates)
        order = samples.map((_, i) => i);
        for (let i = order.length - 1; i > 0; i--) {
          const j = Math.floor(random() * (i + 1));
          [order[i], order[j]] = [order[j]!, order[i]!];
        }
        cursor = 0;
      }
      batch.push(order[cursor++]!);
    }
    const g = zeroGrads(p);
    const { kl, spikes } = batchLoss(net, batch.map((i) => samples[i]!), batch.map((i) => teachers[i]!), p, g, lambda);
    adam.begin();
    if (targets.thresholds) for (const [k, v] of p.logTheta) adam.update(v, g.logTheta.get(k)!, lr);
    if (targets.normGains) for (const [k, v] of p.gains) adam.update(v, g.gains.get(k)!, lr * scale);
    if (targets.loraRank) {
      for (const [k, l] of p.lora) {
        const gl = g.lora.get(k)!;
        adam.update(l.a, gl.a, lr * scale);
        adam.update(l.b, gl.b, lr * scale);
      }
    }
    const report = { step, steps, loss: kl + lambda * spikes, kl, spikesPerNeuronPerToken: spikes, elapsedMs: performance.now() - t0 };
    history.push(report);
    opts.onStep?.(report);
  }
  const after = batchLoss(net, samples, teachers, p, undefined, 0);
  const thresholds = new Map([...p.logTheta].map(([k, v]) => [k, Float32Array.from(v, Math.exp)]));
  const normGains = new Map([...p.gains].map(([k, v]) => [k, Float32Array.from(v)]));
  const lora = new Map<string, LoraAdapter>([...p.lora].map(([k, l]) => [k, { rank: l.rank, a: Float32Array.from(l.a), b: Float32Array.from(l.b) }]));
  const tuned = snn.with({ thresholds, ...(normGains.size || lora.size ? { adapters: { ...(normGains.size ? { normGains } : {}), ...(lora.size ? { lora } : {}) } } : {}) });
  const record: TrainingRecord = {
    steps: history.length, lr, adapterLrScale: scale, lambdaSpikes: lambda, train: [...train], loraSites: [...loraSites], batchSize, seed,
    surrogate: { ...snn.spiking.surrogate }, data: `${data.source} (${data.samples.length} samples, ${data.tokens} tokens)`,
    before: { kl: before.kl, spikesPerNeuronPerToken: before.spikes }, after: { kl: after.kl, spikesPerNeuronPerToken: after.spikes },
    seconds: (performance.now() - t0) / 1000, stopped,
  };
  return { snn: tuned, history, record };
}
