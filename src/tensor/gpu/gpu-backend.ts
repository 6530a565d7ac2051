/**
 * The GPU backend: every primitive of backend.ts as a WGSL dispatch (the kernels live beside their
 * CPU twins in src/tensor/kernels/). Weights are uploaded once and stay resident; activations come
 * from a buffer pool; a forward pass is recorded into one compute pass and submitted when a result
 * is read.
 */
import { ShapeError } from '../../errors.js';
import type { Backend, BTensor, TokenIds, DeviceThresholds, Encoded, SiteStatsTarget, SpikeKernel, TimeState, WeightRole } from '../backend.js';
import { type CodeParams, STATS_WIDTH, digitStatsGpu, encodeGpu, planesOf, statsIntoGpu } from '../kernels/codes.js';
import { planeMatmulGpu } from '../kernels/plane-matmul.js';
import { type SpikeAttentionCodes, type SpikeExecution, spikeAttentionGpu } from '../kernels/spike-attention.js';
import { spikeMatmulEventGpu, useEventDriven } from '../kernels/spike-matmul.js';
import { type NeuronConfig, neuronRunGpu } from '../kernels/neuron.js';
import { type TimeDomain, sumAbsGpu, temporalGpu } from '../kernels/temporal.js';
import { type Activation, activationGpu, binaryGpu, gatedActivationGpu, scaleGpu } from '../kernels/elementwise.js';
import { type QkvLayout, qkvToCacheGpu } from '../kernels/qkv.js';
import { type AttentionParams, attentionGpu } from '../kernels/attention.js';
import { copyGpu } from '../kernels/copy.js';
import { refineGpu, topKGpu } from '../kernels/top-k.js';
import { GpuEmbeddingTable, embeddingGpu, packEmbeddingTable } from '../kernels/embedding.js';
import { GPU_ARITHMETICS, type GpuArithmetic, GpuLinearWeight, type MatmulVariant, WEIGHT_FORMATS, type WeightFormat, isF16Exact, matmulGpu, packLinearWeight } from '../kernels/matmul.js';
import { type QkNormHeads, checkQkNorm, layerNormGpu, qkNormGpu, rmsNormGpu } from '../kernels/norm.js';
import { ropeGpu } from '../kernels/rope.js';
import { type TokenChoice, sampleTokenGpu } from '../kernels/sampling.js';
import { type CausalMask, softmaxGpu } from '../kernels/softmax.js';
import { attentionDims, binaryBroadcast, checkVector, embeddingDims, gatedDims, matmulDims, planeRows, qkvCheck, refineDims, ropeCheck, sliceRowsCheck, spikeAttentionDims, stateCheck, timeMajorDims, topKDims, writeRowsCheck } from '../shapes.js';
import { type HalfTensor, isHalf, widenInto } from '../half.js';
import { type Shape, Tensor, shapeToString } from '../tensor.js';
import { type GpuContext, GpuError, acquireGpu } from './device.js';
import { GpuRuntime, GpuTensor } from './runtime.js';
import { forcedVariant } from './variants.js';

export interface GpuBackendOptions {
  /** Split weights larger than this many bytes into chunks (default: the adapter's binding limit). */
  readonly maxWeightChunkBytes?: number;
  /** Force one matmul variant (default: chosen per adapter and shape). */
  readonly matmulVariant?: MatmulVariant;
  /**
   * How linear weights are stored on the GPU (`weightFormatFor`): 'f32'; 'f16' (half the memory and
   * bandwidth, values rounded to binary16; arithmetic stays float32); 'auto' (the default): f16 for
   * weights that are exactly binary16 (from F16 checkpoints: nothing changes but the bytes), f32
   * otherwise. SPIKELM_GPU_WEIGHTS=f32|f16|auto sets it when this is not given. (On llvmpipe f16 is
   * faster too: GPT-2-small from an F16 file decodes at 1.72 tokens/s against 1.29 from the F32 one, bench/scale.)
   */
  readonly weightFormat?: WeightFormat | 'auto';
  /**
   * The dense matmuls' arithmetic (kernels/matmul.ts GpuArithmetic): 'f32'; 'f16' (f16 weights times
   * activations rounded to f16, accumulated in float32; needs the device's shader-f16 and stores the
   * weights in f16, so it refuses weightFormat 'f32'); 'auto' (the default) is 'f32' — f16 is chosen
   * automatically only once it has been measured faster on hardware, which no run has done yet.
   * SPIKELM_GPU_ARITH=f32|f16|auto sets it when this is not given.
   */
  readonly arithmetic?: GpuArithmetic | 'auto';
}

/** The storage format of one linear weight under a backend's `weightFormat` setting. */
export function weightFormatFor(setting: WeightFormat | 'auto', w: Tensor | HalfTensor): WeightFormat {
  if (setting !== 'auto') return setting;
  if (!isHalf(w)) return isF16Exact(w.data) ? 'f16' : 'f32';
  if (w.format === 'f16') return 'f16';
  // BF16 values are f16-exact where their exponent fits f16's range: checked a row at a time
  const K = w.cols, row = new Float32Array(K);
  for (let r = 0; r < w.rows; r++) {
    widenInto(w.bits, w.format, r * K, row);
    if (!isF16Exact(row)) return 'f32';
  }
  return 'f16';
}

export class GpuBackend implements Backend {
  readonly name = 'gpu' as const;
  readonly rt: GpuRuntime;

  constructor(ctx: GpuContext, private readonly options: GpuBackendOptions = {}) {
    this.rt = new GpuRuntime(ctx);
  }

  static async create(options: GpuBackendOptions = {}): Promise<GpuBackend> {
    return new GpuBackend(await acquireGpu(), options);
  }

  get report() {
    return this.rt.ctx.report;
  }

  describe(): string {
    const r = this.report;
    return `gpu (${r.description}${r.software ? ', software rasterizer' : ''}; ${r.path === 'opengles' ? 'Dawn OpenGL ES, compatibility mode' : r.path === 'vulkan' ? 'Dawn Vulkan' : 'Dawn native backend'})`;
  }

  private dense(t: BTensor, what: string): GpuTensor {
    if (t instanceof GpuTensor) {
      if (t.disposed) throw new ShapeError(`${what}: tensor was disposed`);
      return t;
    }
    if (t instanceof Tensor) throw new ShapeError(`${what}: got a CPU tensor; upload it to the GPU backend first`);
    throw new ShapeError(`${what}: expected a dense GPU tensor, got a packed weight`);
  }

  upload(t: Tensor | HalfTensor, role?: WeightRole): BTensor {
    this.rt.checkHealthy();
    const max = this.options.maxWeightChunkBytes;
    if (isHalf(t) && role !== 'linear' && role !== 'embedding') throw new ShapeError(`upload: a 16-bit (${t.format}) tensor ${shapeToString(t.shape)} is only a linear weight or an embedding table`);
    if (role === 'linear') {
      if (t.shape.length !== 2) throw new ShapeError(`upload: a linear weight must be [out, in], got ${shapeToString(t.shape)}`);
      const setting = this.options.weightFormat ?? forcedVariant('SPIKELM_GPU_WEIGHTS', [...WEIGHT_FORMATS, 'auto'] as const) ?? 'auto';
      const arithmetic = this.arithmetic();
      if (arithmetic === 'f16') {
        if (setting === 'f32') throw new GpuError('SPIKELM_GPU_ARITH=f16 multiplies f16 weights, but the weights are set to be stored in f32 (SPIKELM_GPU_WEIGHTS / weightFormat)');
        return packLinearWeight(this.rt, t, max, 'f16', 'f16');
      }
      return packLinearWeight(this.rt, t, max, weightFormatFor(setting, t));
    }
    if (role === 'embedding') {
      const { V, D } = embeddingDims(t);
      return packEmbeddingTable(this.rt, isHalf(t) ? t : t.data, V, D, max);
    }
    if (isHalf(t)) throw new ShapeError('upload: unreachable');
    if (t.size * 4 > this.rt.maxBindingBytes) throw new ShapeError(`upload: ${shapeToString(t.shape)} exceeds the adapter's binding limit; upload it as a 'linear' or 'embedding' weight`);
    return this.rt.fromHost(t.shape, t.data);
  }

  /** The matmul arithmetic for weights uploaded now (options, else SPIKELM_GPU_ARITH; 'auto' is f32). */
  arithmetic(): GpuArithmetic {
    const setting = this.options.arithmetic ?? forcedVariant('SPIKELM_GPU_ARITH', [...GPU_ARITHMETICS, 'auto'] as const) ?? 'auto';
    if (setting !== 'f16') return 'f32';
    if (!this.report.shaderF16) throw new GpuError(`SPIKELM_GPU_ARITH=f16 needs the shader-f16 feature, which this adapter (${this.report.description}, Dawn ${this.report.path}) does not offer`);
    return 'f16';
  }

  async read(t: BTensor): Promise<Tensor> {
    const g = this.dense(t, 'read');
    return new Tensor(g.shape, await this.rt.read(g));
  }

  /** Wait for all queued GPU work (for benchmarks). */
  sync(): Promise<void> {
    return this.rt.sync();
  }

  zeros(shape: Shape): GpuTensor {
    return this.rt.zeros(shape);
  }

  dispose(t: BTensor): void {
    if (t instanceof GpuTensor) this.rt.release(t);
    else if (t instanceof GpuLinearWeight || t instanceof GpuEmbeddingTable) {
      if (t.disposed) return;
      t.disposed = true;
      this.rt.flush();
      for (const c of t.chunks) this.rt.destroyBuffer(c.buffer);
    }
  }

  tidy<T>(fn: () => T): T {
    return this.rt.tidy(fn);
  }

  matmul(xIn: BTensor, w: BTensor, biasIn?: BTensor, residualIn?: BTensor): GpuTensor {
    const x = this.dense(xIn, 'matmul x');
    const bias = biasIn ? this.dense(biasIn, 'matmul bias') : undefined;
    const residual = residualIn ? this.dense(residualIn, 'matmul residual') : undefined;
    const { M, K, N } = matmulDims(x, w, bias, residual);
    const weight = w instanceof GpuLinearWeight ? w : this.dense(w, 'matmul weight');
    const y = this.rt.alloc([...x.shape.slice(0, -1), N]);
    matmulGpu(this.rt, x, weight, bias, y, M, K, N, this.options.matmulVariant, residual);
    return y;
  }

  /** 'auto' needs a density hint on the GPU (reading spikes back to count them would cost more). */
  spikeMatmul(nIn: BTensor, w: BTensor, biasIn: BTensor | undefined, residualIn: BTensor | undefined, kernel: SpikeKernel, densityHint?: number): GpuTensor {
    const event = kernel === 'event' || (kernel === 'auto' && densityHint !== undefined && useEventDriven(densityHint, 'gpu'));
    if (!event || !(w instanceof GpuLinearWeight)) return this.matmul(nIn, w, biasIn, residualIn);
    const n = this.dense(nIn, 'spikeMatmul spikes');
    const bias = biasIn ? this.dense(biasIn, 'spikeMatmul bias') : undefined;
    const residual = residualIn ? this.dense(residualIn, 'spikeMatmul residual') : undefined;
    const { M, K, N } = matmulDims(n, w, bias, residual);
    const y = this.rt.alloc([...n.shape.slice(0, -1), N]);
    spikeMatmulEventGpu(this.rt, n, w, bias, residual, y, M, K, N);
    return y;
  }

  add(a: BTensor, b: BTensor): GpuTensor {
    return this.binary('add', a, b);
  }

  mul(a: BTensor, b: BTensor): GpuTensor {
    return this.binary('mul', a, b);
  }

  private binary(op: 'add' | 'mul', aIn: BTensor, bIn: BTensor): GpuTensor {
    const a = this.dense(aIn, op), b = this.dense(bIn, op);
    binaryBroadcast(op, a, b);
    const y = this.rt.alloc(a.shape);
    binaryGpu(this.rt, op, a, b, y);
    return y;
  }

  scale(aIn: BTensor, s: number): GpuTensor {
    const a = this.dense(aIn, 'scale');
    const y = this.rt.alloc(a.shape);
    scaleGpu(this.rt, a, s, y);
    return y;
  }

  activation(kind: Activation, xIn: BTensor): GpuTensor {
    const x = this.dense(xIn, kind);
    const y = this.rt.alloc(x.shape);
    activationGpu(this.rt, kind, x, y);
    return y;
  }

  gatedActivation(kind: Activation, xIn: BTensor): GpuTensor {
    const x = this.dense(xIn, `gated ${kind}`);
    const { R, C } = gatedDims(x);
    const y = this.rt.alloc([...x.shape.slice(0, -1), C]);
    gatedActivationGpu(this.rt, kind, x, R, C, y);
    return y;
  }

  embedding(table: BTensor, idsIn: TokenIds): GpuTensor {
    if (!(table instanceof GpuEmbeddingTable)) throw new ShapeError("embedding: the table must be uploaded with role 'embedding'");
    const ids = idsIn instanceof Int32Array ? idsIn : this.dense(idsIn, 'embedding ids');
    const y = this.rt.alloc([ids instanceof Int32Array ? ids.length : ids.size, table.shape[1]]);
    embeddingGpu(this.rt, table, ids, y);
    return y;
  }

  /**
   * Mesa before 23 through OpenGL ES (Debian bookworm's 22.3.6) compiles the sampling kernel wrongly
   * in both its shapes (sampled tokens outside the top-p set; Mesa 25 and Vulkan give the CPU's
   * tokens exactly), so the decode loop reads the logits back there.
   */
  deviceSamplingNote(): string | undefined {
    const r = this.report, mesa = /Mesa (\d+)\./.exec(r.description);
    if (r.path === 'opengles' && mesa && Number(mesa[1]) < 23) return `Mesa ${mesa[1]}'s OpenGL ES compiler miscompiles the sampling kernel; tokens are chosen on the host (Mesa ≥ 23 or Vulkan choose them on the GPU)`;
    return undefined;
  }

  sampleToken(logitsIn: BTensor, row: number, choice: TokenChoice, random: number, outIn: BTensor, seenIn?: BTensor): void {
    const logits = this.dense(logitsIn, 'sampleToken logits'), out = this.dense(outIn, 'sampleToken out');
    const seen = seenIn ? this.dense(seenIn, 'sampleToken seen') : undefined;
    const V = logits.shape.at(-1) ?? 0, R = V === 0 ? 0 : logits.size / V;
    if (!Number.isInteger(row) || row < 0 || row >= R) throw new ShapeError(`sampleToken: row ${row} of ${R}`);
    if (out.size < 1) throw new ShapeError('sampleToken: the output tensor has no element');
    if (seen && seen.size !== V) throw new ShapeError(`sampleToken: ${seen.size} seen flags for a vocabulary of ${V}`);
    sampleTokenGpu(this.rt, logits, row, V, choice, seen, random, out);
  }

  layerNorm(xIn: BTensor, gammaIn: BTensor, betaIn: BTensor | undefined, eps: number): GpuTensor {
    const x = this.dense(xIn, 'layerNorm'), gamma = this.dense(gammaIn, 'layerNorm gamma');
    const beta = betaIn ? this.dense(betaIn, 'layerNorm beta') : undefined;
    const C = x.shape.at(-1) ?? 1;
    checkVector(gamma, C, 'layerNorm gamma');
    checkVector(beta, C, 'layerNorm beta');
    const y = this.rt.alloc(x.shape);
    layerNormGpu(this.rt, x, gamma, beta, eps, x.size / C, C, y);
    return y;
  }

  rmsNorm(xIn: BTensor, gammaIn: BTensor, eps: number): GpuTensor {
    const x = this.dense(xIn, 'rmsNorm'), gamma = this.dense(gammaIn, 'rmsNorm gamma');
    const C = x.shape.at(-1) ?? 1;
    checkVector(gamma, C, 'rmsNorm gamma');
    const y = this.rt.alloc(x.shape);
    rmsNormGpu(this.rt, x, gamma, eps, x.size / C, C, y);
    return y;
  }

  qkNorm(qkvIn: BTensor, qGammaIn: BTensor, kGammaIn: BTensor, heads: QkNormHeads, eps: number): GpuTensor {
    const qkv = this.dense(qkvIn, 'qkNorm'), qGamma = this.dense(qGammaIn, 'qkNorm q gamma'), kGamma = this.dense(kGammaIn, 'qkNorm k gamma');
    checkQkNorm(qkv, qGamma, kGamma, heads);
    const y = this.rt.alloc(qkv.shape);
    qkNormGpu(this.rt, qkv, qGamma, kGamma, heads, eps, qkv.size / (qkv.shape.at(-1) ?? 1), y);
    return y;
  }

  softmax(xIn: BTensor, mask?: CausalMask): GpuTensor {
    const x = this.dense(xIn, 'softmax');
    const C = x.shape.at(-1) ?? 1;
    const y = this.rt.alloc(x.shape);
    softmaxGpu(this.rt, x, C === 0 ? 0 : x.size / C, C, y, mask);
    return y;
  }

  rope(xIn: BTensor, positions: Int32Array, numHeads: number, headDim: number, invFreq: Float64Array): GpuTensor {
    const x = this.dense(xIn, 'rope');
    ropeCheck(x, positions, numHeads, headDim);
    const y = this.rt.alloc(x.shape);
    ropeGpu(this.rt, x, positions, numHeads, headDim, invFreq, y);
    return y;
  }

  attention(qIn: BTensor, kIn: BTensor, vIn: BTensor, params: AttentionParams): GpuTensor {
    const q = this.dense(qIn, 'attention q'), k = this.dense(kIn, 'attention k'), v = this.dense(vIn, 'attention v');
    const { S } = attentionDims(q, k, v, params);
    const y = this.rt.alloc(q.shape);
    attentionGpu(this.rt, q, k, v, S, params, y);
    return y;
  }

  qkvToCache(qkvIn: BTensor, kIn: BTensor, vIn: BTensor, layout: QkvLayout): GpuTensor {
    const qkv = this.dense(qkvIn, 'qkvToCache'), k = this.dense(kIn, 'qkvToCache k cache'), v = this.dense(vIn, 'qkvToCache v cache');
    const { S, qWidth } = qkvCheck(qkv, k, v, layout);
    const q = this.rt.alloc([(layout.batches ?? 1) * S, qWidth]);
    qkvToCacheGpu(this.rt, qkv, S, layout, q, k, v);
    return q;
  }

  neuronRun(xIn: BTensor, steps: number, th: DeviceThresholds, cfg: NeuronConfig, state?: TimeState): GpuTensor {
    const x = this.dense(xIn, 'neuronRun');
    const { R, C } = timeMajorDims(x, steps, 'neuronRun');
    const theta = this.dense(th.theta, 'neuronRun thresholds'), inv = this.dense(th.invTheta, 'neuronRun thresholds');
    checkVector(theta, C, 'neuronRun thresholds');
    stateCheck(state?.tensor, R, C, 'neuronRun');
    const out = this.rt.alloc(x.shape);
    const membrane = state ? this.dense(state.tensor, 'neuronRun state') : this.rt.alloc([R, C]);
    neuronRunGpu(this.rt, x, steps, R, C, theta, inv, cfg, out, membrane, !state || state.t0 === 0);
    if (!state) this.rt.release(membrane);
    return out;
  }

  timeMean(xIn: BTensor, steps: number, domain: TimeDomain, state?: TimeState): GpuTensor {
    return this.temporal('mean', xIn, steps, domain, state);
  }

  timeDelta(fIn: BTensor, steps: number, domain: TimeDomain, state?: TimeState): GpuTensor {
    return this.temporal('delta', fIn, steps, domain, state);
  }

  private temporal(op: 'mean' | 'delta', xIn: BTensor, steps: number, domain: TimeDomain, state?: TimeState): GpuTensor {
    const what = op === 'mean' ? 'timeMean' : 'timeDelta';
    const x = this.dense(xIn, what);
    const { R, C } = timeMajorDims(x, steps, what);
    stateCheck(state?.tensor, R, C, what);
    const out = this.rt.alloc(x.shape);
    const st = state ? this.dense(state.tensor, `${what} state`) : this.rt.alloc([R, C]);
    temporalGpu(this.rt, op, x, steps, R * C, domain, out, st, state?.t0 ?? 0);
    if (!state) this.rt.release(st);
    return out;
  }

  sumAbsInto(xIn: BTensor, steps: number, statsIn: BTensor, offset: number): void {
    const x = this.dense(xIn, 'sumAbsInto'), stats = this.dense(statsIn, 'sumAbsInto stats');
    timeMajorDims(x, steps, 'sumAbsInto');
    if (offset < 0 || offset + steps > stats.size) throw new ShapeError(`sumAbsInto: slots [${offset}, ${offset + steps}) outside [0, ${stats.size})`);
    sumAbsGpu(this.rt, x, steps, stats, offset);
  }

  planeMatmul(digitsIn: BTensor, planes: number, growth: 1 | 2, w: BTensor, biasIn?: BTensor, residualIn?: BTensor): GpuTensor {
    const digits = this.dense(digitsIn, 'planeMatmul digits');
    const bias = biasIn ? this.dense(biasIn, 'planeMatmul bias') : undefined;
    const residual = residualIn ? this.dense(residualIn, 'planeMatmul residual') : undefined;
    const { K, N } = matmulDims(digits, w, bias);
    const R = planeRows(digits, planes, 'planeMatmul');
    if (residual && (residual.shape.at(-1) !== N || residual.size !== R * N)) throw new ShapeError(`planeMatmul: residual ${shapeToString(residual.shape)} must be [${R}, ${N}]`);
    if (!(w instanceof GpuLinearWeight)) throw new ShapeError("planeMatmul: the weight must be uploaded with role 'linear'");
    const y = this.rt.alloc([R, N]);
    planeMatmulGpu(this.rt, digits, planes, R, K, N, growth, w, bias, residual, y);
    return y;
  }

  encode(xIn: BTensor, th: DeviceThresholds, code: CodeParams, stats: SiteStatsTarget, withDigits: boolean): Encoded {
    const x = this.dense(xIn, 'encode');
    const C = x.shape.at(-1) ?? 1, R = C === 0 ? 0 : x.size / C;
    const theta = this.dense(th.theta, 'encode thresholds'), inv = this.dense(th.invTheta, 'encode thresholds');
    checkVector(theta, C, 'encode thresholds');
    const sums = this.rt.alloc([R, C]);
    const digits = withDigits ? this.rt.alloc([planesOf(code) * R, C]) : undefined;
    const rowStats = this.rt.alloc([R, STATS_WIDTH]);
    encodeGpu(this.rt, x, R, C, theta, inv, code, sums, digits, rowStats);
    this.statsInto(rowStats, R, stats);
    this.rt.release(rowStats);
    return { sums, ...(digits ? { digits } : {}) };
  }

  digitStatsInto(digitsIn: BTensor, stats: SiteStatsTarget): void {
    const d = this.dense(digitsIn, 'digitStatsInto');
    const C = d.shape.at(-1) ?? 1, rows = C === 0 ? 0 : d.size / C;
    const rowStats = this.rt.alloc([rows, STATS_WIDTH]);
    digitStatsGpu(this.rt, d, rows, C, rowStats);
    this.statsInto(rowStats, rows, stats);
    this.rt.release(rowStats);
  }

  private statsInto(rowStats: GpuTensor, R: number, stats: SiteStatsTarget): void {
    const t = this.dense(stats.tensor, 'stats');
    const segments = stats.segments ?? 1;
    if (t.shape.at(-1) !== STATS_WIDTH || stats.row < 0 || (stats.row + segments) * STATS_WIDTH > t.size) throw new ShapeError(`stats: rows ${stats.row}…${stats.row + segments - 1} of a ${shapeToString(t.shape)} tensor (width ${STATS_WIDTH})`);
    if (!Number.isInteger(segments) || segments < 1 || R % segments !== 0) throw new ShapeError(`stats: ${R} rows are not ${segments} equal segments`);
    if (typeof stats.fanout === 'number') {
      statsIntoGpu(this.rt, rowStats, R, t, stats.row, stats.fanout, segments);
      return;
    }
    if (stats.fanout.length !== R) throw new ShapeError(`stats: ${stats.fanout.length} fan-outs for ${R} rows`);
    const fan = this.rt.fromHost([R], stats.fanout);
    statsIntoGpu(this.rt, rowStats, R, t, stats.row, fan, segments);
    this.rt.release(fan);
  }

  spikeAttention(qIn: BTensor, kIn: BTensor, vIn: BTensor, thetaQIn: BTensor, thetaP: DeviceThresholds, params: AttentionParams, codes: SpikeAttentionCodes, mode: SpikeExecution, stats: SiteStatsTarget): GpuTensor {
    const q = this.dense(qIn, 'spikeAttention q'), k = this.dense(kIn, 'spikeAttention k'), v = this.dense(vIn, 'spikeAttention v');
    const S = spikeAttentionDims(q, k, v, params, codes, mode);
    const thetaQ = this.dense(thetaQIn, 'spikeAttention q thresholds');
    checkVector(thetaQ, params.numHeads * params.headDim, 'spikeAttention q thresholds');
    checkVector(thetaP.theta, params.numHeads, 'spikeAttention p thresholds');
    const y = this.rt.alloc([S, params.numHeads * params.headDim]);
    const rowStats = this.rt.alloc([S * params.numHeads, STATS_WIDTH]);
    spikeAttentionGpu(this.rt, q, k, v, thetaQ, this.dense(thetaP.theta, 'p thresholds'), this.dense(thetaP.invTheta, 'p thresholds'), S, params, codes, mode, y, rowStats);
    this.statsInto(rowStats, S * params.numHeads, stats);
    this.rt.release(rowStats);
    return y;
  }

  writeRows(dstIn: BTensor, srcIn: BTensor, rowOffset: number): void {
    const dst = this.dense(dstIn, 'writeRows'), src = this.dense(srcIn, 'writeRows');
    writeRowsCheck(dst, src, rowOffset);
    copyGpu(this.rt, src, 0, dst, rowOffset * (dst.shape.at(-1) ?? 1), src.size);
  }

  sliceRows(xIn: BTensor, start: number, end: number): GpuTensor {
    const x = this.dense(xIn, 'sliceRows');
    sliceRowsCheck(x, start, end);
    const C = x.shape.at(-1) ?? 1;
    const y = this.rt.alloc([end - start, C]);
    copyGpu(this.rt, x, start * C, y, 0, (end - start) * C);
    return y;
  }
  topK(xIn: BTensor, k: number): GpuTensor {
    const x = this.dense(xIn, 'topK');
    const { R, N } = topKDims(x, k);
    const out = this.rt.alloc([R, k]);
    topKGpu(this.rt, x, R, N, k, out);
    return out;
  }

  refineColumns(coarseIn: BTensor, idxIn: BTensor, xIn: BTensor, planes: number, w: BTensor, biasIn?: BTensor): GpuTensor {
    const coarse = this.dense(coarseIn, 'refineColumns coarse'), idx = this.dense(idxIn, 'refineColumns idx'), x = this.dense(xIn, 'refineColumns x');
    const bias = biasIn ? this.dense(biasIn, 'refineColumns bias') : undefined;
    const { R, N, K, k } = refineDims(coarse, idx, x, planes, w, bias);
    if (!(w instanceof GpuLinearWeight)) throw new ShapeError("refineColumns: the weight must be uploaded with role 'linear'");
    const y = this.rt.alloc([R, N]);
    copyGpu(this.rt, coarse, 0, y, 0, R * N);
    refineGpu(this.rt, idx, x, planes, w, bias, y, R, N, K, k);
    return y;
  }

}
