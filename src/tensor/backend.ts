/**
 * The backend seam: one interface, one method per primitive. Models are written against it and run
 * unchanged on the CPU (plain TypeScript, the executable definition of every op) and the GPU (WGSL).
 *
 * Primitive ops (the whole list; everything else is composed from them):
 *   matmul       y = x·wᵀ (+ b) (+ r)                x [M,K], w [N,K] (nn.Linear layout), b [N], residual r [M,N]
 *   add, mul     a ∘ b, b same shape or a row vector [C] broadcast over a's rows
 *   scale        a · s
 *   activation   gelu_tanh | gelu_erf | gelu_quick | silu | relu
 *   gatedActivation  act(x[:, :C]) · x[:, C:] over a fused [gate | up] tensor [R, 2C]
 *   embedding    rows of a table [V,D] gathered by token ids (host ids, or a tensor of ids as floats)
 *   layerNorm    (x − μ)/√(σ² + ε)·γ + β over the last dim
 *   rmsNorm      x/√(mean x² + ε)·γ over the last dim
 *   qkNorm       rmsNorm per head of the q and k heads of a fused q|k|v row (Qwen3); v passes through
 *   softmax      rows of [R,C], optionally with a causal mask
 *   rope         rotate-half rotary embedding at given positions
 *   attention    causal scaled-dot-product attention with grouped KV heads over a KV cache
 *   spikeMatmul  matmul of integer spike counts: dense, or event-driven (accumulate the weight rows of
 *                active inputs only), chosen by spike density
 *   qkvToCache   split a fused q|k|v projection: q rotated (RoPE) returned, k rotated and v written
 *                into the cache rows in place
 *   writeRows    copy rows into a larger tensor in place (KV-cache append)
 * and over the time axis of time-major [T·R, C] tensors (the spiking model's operands):
 *   neuronRun    integrate-and-fire dynamics; integer spike counts out, membrane state in/out
 *   timeMean     running mean (or sum) over time: the decoded value at every step
 *   timeDelta    per-step output whose running mean (or sum) is a given sequence
 *   sumAbsInto   add each step's Σ|x| to consecutive slots of a statistics vector (spike counts)
 *   digitStatsInto  add the spike statistics of digits (events, largest digit, nonzero, …) to a
 *                site's row of a [sites, STATS_WIDTH] statistics tensor
 *   sliceRows    rows [start, end) of a matrix
 * and for decoding on the device (kernels/sampling.ts):
 *   sampleToken  the next token from a row of logits (greedy or sampled, float32, one algorithm on
 *                every backend), written as a float into a [1] tensor that the next embedding reads
 * and the layerwise schedule's codes (kernels/codes.ts, plane-matmul.ts, spike-attention.ts):
 *   encode       a spike code over one value per neuron: digit sums, optionally the digit planes,
 *                statistics into a site's row
 *   planeMatmul  event-driven synapses over digit planes (the receiving membrane doubles per plane)
 *   spikeAttention  scores from q's events over cached keys, softmax, the probabilities encoded,
 *                output from their events over cached values — fast (digit sums) or event-driven
 * and the two-stage LM head (kernels/top-k.ts):
 *   topK         per row, the columns of the k first-ranked values (the sampler's rank), [R, k]
 *   refineColumns  a copy of coarse logits whose selected columns get the full product of the
 *                row's digit sums or digit planes with their weight rows
 *
 * The fused ops (matmul's residual, gatedActivation, qkvToCache) each equal a composite of the others;
 * tests assert it. They exist because a GPU pays per dispatch.
 *
 * Tensors handed out by a backend are opaque handles (`BTensor`); `read` brings one back to the host.
 * Ops are issued eagerly in program order; a GPU backend may queue them and only wait in `read`.
 */
import type { Activation } from './kernels/elementwise.js';
import type { AttentionParams } from './kernels/attention.js';
import type { CodeParams } from './kernels/codes.js';
import type { SpikeAttentionCodes, SpikeExecution } from './kernels/spike-attention.js';
import type { NeuronConfig } from './kernels/neuron.js';
import type { QkvLayout } from './kernels/qkv.js';
import type { QkNormHeads } from './kernels/norm.js';
import type { TimeDomain } from './kernels/temporal.js';
import type { CausalMask } from './kernels/softmax.js';
import type { TokenChoice } from './kernels/sampling.js';
import type { HalfTensor } from './half.js';
import type { Shape, Tensor } from './tensor.js';

export interface BTensor {
  readonly shape: Shape;
}

export type BackendName = 'cpu' | 'gpu';

/** How an uploaded weight will be used, so a backend can pack its layout once at load time. */
export type WeightRole = 'linear' | 'embedding' | 'vector' | 'activation';

export interface Backend {
  readonly name: BackendName;
  /** One line for logs and `spikelm info`: the device and how it runs. */
  describe(): string;

  upload(t: Tensor | HalfTensor, role?: WeightRole): BTensor;
  /**
   * A linear weight with thresholds folded in, w·diag(scaled) (kernels/fold.ts), made where it is
   * used: what `upload(fold(w, scaled), 'linear')` gives, without the host copy in between. Optional:
   * where a backend has none, the caller folds on the host and uploads.
   */
  uploadFolded?(w: Tensor | HalfTensor, scaled: Float64Array): BTensor;
  read(t: BTensor): Promise<Tensor>;
  zeros(shape: Shape): BTensor;
  dispose(t: BTensor): void;
  /** Run fn; every tensor it creates that is not part of its result is disposed afterwards. */
  tidy<T>(fn: () => T): T;

  matmul(x: BTensor, w: BTensor, bias?: BTensor, residual?: BTensor): BTensor;
  spikeMatmul(spikes: BTensor, w: BTensor, bias: BTensor | undefined, residual: BTensor | undefined, kernel: SpikeKernel, densityHint?: number): BTensor;
  add(a: BTensor, b: BTensor): BTensor;
  mul(a: BTensor, b: BTensor): BTensor;
  scale(a: BTensor, s: number): BTensor;
  activation(kind: Activation, x: BTensor): BTensor;
  gatedActivation(kind: Activation, x: BTensor): BTensor;
  embedding(table: BTensor, ids: TokenIds): BTensor;
  layerNorm(x: BTensor, gamma: BTensor, beta: BTensor | undefined, eps: number): BTensor;
  rmsNorm(x: BTensor, gamma: BTensor, eps: number): BTensor;
  qkNorm(qkv: BTensor, qGamma: BTensor, kGamma: BTensor, heads: QkNormHeads, eps: number): BTensor;
  softmax(x: BTensor, mask?: CausalMask): BTensor;
  rope(x: BTensor, positions: Int32Array, numHeads: number, headDim: number, invFreq: Float64Array): BTensor;
  attention(q: BTensor, k: BTensor, v: BTensor, params: AttentionParams): BTensor;
  qkvToCache(qkv: BTensor, kCache: BTensor, vCache: BTensor, layout: QkvLayout): BTensor;
  neuronRun(x: BTensor, steps: number, thresholds: DeviceThresholds, cfg: NeuronConfig, state?: TimeState): BTensor;
  timeMean(x: BTensor, steps: number, domain: TimeDomain, state?: TimeState): BTensor;
  timeDelta(f: BTensor, steps: number, domain: TimeDomain, state?: TimeState): BTensor;
  sumAbsInto(x: BTensor, steps: number, stats: BTensor, offset: number): void;
  digitStatsInto(digits: BTensor, stats: SiteStatsTarget): void;
  encode(x: BTensor, thresholds: DeviceThresholds, code: CodeParams, stats: SiteStatsTarget, withDigits: boolean): Encoded;
  planeMatmul(digits: BTensor, planes: number, growth: 1 | 2, w: BTensor, bias?: BTensor, residual?: BTensor): BTensor;
  spikeAttention(q: BTensor, k: BTensor, v: BTensor, thetaQ: BTensor, thetaP: DeviceThresholds, params: AttentionParams, codes: SpikeAttentionCodes, mode: SpikeExecution, stats: SiteStatsTarget): BTensor;
  writeRows(dst: BTensor, src: BTensor, rowOffset: number): void;
  sliceRows(x: BTensor, start: number, end: number): BTensor;
  /** Per row of x [R, N], the columns of its k first-ranked values in rank order, as float32 indices [R, k] (−1: none). */
  topK(x: BTensor, k: number): BTensor;
  /**
   * coarse [R, N] with each row's columns idx[r, :] replaced by the full product of that row of x —
   * digit sums [R, K] (planes 0) or digit planes [planes·R, K] — with the weight's rows (w [N, K],
   * uploaded 'linear'), plus bias.
   */
  refineColumns(coarse: BTensor, idx: BTensor, x: BTensor, planes: number, w: BTensor, bias?: BTensor): BTensor;
  /**
   * The next token from row `row` of logits [R, V] into out[0] (its id as a float); where `seen` is
   * given ([V] flags, nonzero = the token occurred) the repetition penalty reads it, and seen[id] is
   * set. `random` is the uniform draw in [0, 1) (unused when greedy).
   */
  sampleToken(logits: BTensor, row: number, choice: TokenChoice, random: number, out: BTensor, seen?: BTensor): void;
  /** Why sampleToken cannot be trusted here (a decode loop then chooses on the host), or undefined. */
  deviceSamplingNote(): string | undefined;
}

/**
 * Token ids: on the host, or a backend tensor [S] holding them as floats (exact below 2²⁴) — the
 * token a decode loop sampled on the device, fed back without visiting the host.
 */
export type TokenIds = Int32Array | BTensor;

/**
 * Where an encoder's statistics go: row `row` of a [sites, STATS_WIDTH] tensor, with every event's
 * fan-out (one number, or one per row of the input: the keys a query row attends to).
 */
export interface SiteStatsTarget {
  readonly tensor: BTensor;
  readonly row: number;
  readonly fanout: number | Float32Array;
  /** Time-major input: its rows are this many steps, reduced into rows row … row + segments − 1. */
  readonly segments?: number;
}

/** An encoder's output: digit sums [R, C]; the digit planes [P·R, C] when asked for. */
export interface Encoded {
  readonly sums: BTensor;
  readonly digits?: BTensor;
}

/** How spikes meet weights: dense, event-driven, or chosen per call by spike density ('auto'). */
export type SpikeKernel = 'auto' | 'dense' | 'event';

/** Per-channel thresholds θ [C] and their float32 reciprocals, uploaded once. */
export interface DeviceThresholds {
  readonly theta: BTensor;
  readonly invTheta: BTensor;
}

/**
 * State carried between chunks of a time loop (single-step execution): a [R, C] tensor updated in
 * place, and `t0`, the number of steps already taken (0 = start fresh, ignoring the tensor's contents).
 */
export interface TimeState {
  readonly tensor: BTensor;
  readonly t0: number;
}

export function rowsOf(t: BTensor): number {
  const c = t.shape.length === 0 ? 1 : t.shape[t.shape.length - 1]!;
  return c === 0 ? 0 : t.shape.reduce((a, b) => a * b, 1) / c;
}

export function colsOf(t: BTensor): number {
  return t.shape.length === 0 ? 1 : t.shape[t.shape.length - 1]!;
}

/** Host ids as an Int32Array; a backend tensor of ids as it is. */
export function tokenIds(ids: Int32Array | readonly number[] | BTensor): TokenIds {
  return ids instanceof Int32Array ? ids : Array.isArray(ids) ? Int32Array.from(ids as readonly number[]) : (ids as BTensor);
}

/** How many tokens `ids` holds. */
export function tokenCount(ids: TokenIds): number {
  return ids instanceof Int32Array ? ids.length : ids.shape.reduce((a, b) => a * b, 1);
}
