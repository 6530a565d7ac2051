/**
 * The CPU backend: every primitive as the plain-TypeScript kernel of its family file. This is the
 * executable definition the GPU kernels are tested against. Handles are host Tensors.
 *
 * Two kernel sets (SPIKELM_CPU_KERNELS, or the `kernels` option): `ts`, the plain TypeScript
 * kernels, and `wasm` (the default wherever WebAssembly SIMD validates), which runs the products —
 * dense, event-driven and plane-accumulating — as the wasm SIMD twins of ./wasm, with weights held in
 * the shared `WebAssembly.Memory`. Every other primitive runs the TypeScript kernel in both sets.
 * The ANN's dense products sum in float32 under wasm (in doubles under ts); the spiking products sum
 * in doubles in both, so the fast and event executions agree within a set as they always have.
 */
import { ShapeError } from '../errors.js';
import type { Backend, BTensor, TokenIds, DeviceThresholds, Encoded, SiteStatsTarget, SpikeKernel, TimeState, WeightRole } from './backend.js';
import { type CodeParams, STATS_WIDTH, digitStatsCpu, encodeCpu, planesOf, statsIntoCpu } from './kernels/codes.js';
import { planeMatmulCpu } from './kernels/plane-matmul.js';
import { type SpikeAttentionCodes, type SpikeExecution, spikeAttentionCpu } from './kernels/spike-attention.js';
import { spikeDensity, spikeMatmulEventCpu, useEventDriven } from './kernels/spike-matmul.js';
import { type NeuronConfig, neuronRunCpu } from './kernels/neuron.js';
import { type TimeDomain, sumAbsCpu, timeDeltaCpu, timeMeanCpu } from './kernels/temporal.js';
import { type Activation, activationCpu, binaryCpu, gatedActivationCpu, scaleCpu } from './kernels/elementwise.js';
import { type QkvLayout, qkvToCacheCpu } from './kernels/qkv.js';
import { type AttentionParams, attentionCpu, checkAttention } from './kernels/attention.js';
import { embeddingCpu } from './kernels/embedding.js';
import { type TokenChoice, sampleTokenCpu } from './kernels/sampling.js';
import { matmulCpu } from './kernels/matmul.js';
import { foldHalfRowsCpu, foldRowsCpu } from './kernels/fold.js';
import { type QkNormHeads, checkQkNorm, layerNormCpu, qkNormCpu, rmsNormCpu } from './kernels/norm.js';
import { ropeCpu } from './kernels/rope.js';
import { type CausalMask, softmaxCpu } from './kernels/softmax.js';
import { refineCpu, topKCpu } from './kernels/top-k.js';
import { threadCount } from './threads.js';
import { type CpuKernelSet, type WasmRuntime, cpuKernelSet, logOnce, wasmRuntime } from './wasm/runtime.js';
import { ATTENTION_MIN_QUERIES, activationWasm, attentionWasm, foldWasm, spikeAttentionWasm, gatedActivationWasm, eventWasm, matmulHalfWasm, matmulWasm, nonzeros, normWasm, planeWasm } from './wasm/products.js';
import { encodeWasm } from './wasm/encoders.js';
import { embeddingHalfCpu, matmulHalfCpu } from './kernels/half-matmul.js';
import { attentionDims, binaryBroadcast, checkVector, embeddingDims, gatedDims, matmulDims, planeRows, qkvCheck, refineDims, topKDims, ropeCheck, spikeAttentionDims, stateCheck, timeMajorDims, writeRowsCheck } from './shapes.js';
import { HalfTensor } from './half.js';
import { type Shape, Tensor, shapeToString } from './tensor.js';

function host(t: BTensor): Tensor {
  if (!(t instanceof Tensor)) {
    if (t instanceof HalfTensor) throw new ShapeError(`cpu backend: a 16-bit (${t.format}) weight ${shapeToString(t.shape)} is only a matmul weight or an embedding table; this operation needs float32 (widen it with f32Weight)`);
    throw new ShapeError('cpu backend: got a tensor that lives on another backend');
  }
  return t;
}

/** A matmul weight or embedding table: float32, or 16-bit (half.ts). */
function hostWeight(t: BTensor): Tensor | HalfTensor {
  return t instanceof HalfTensor ? t : host(t);
}

export interface CpuBackendOptions {
  /** The kernel set (default: SPIKELM_CPU_KERNELS, else wasm where SIMD validates). */
  readonly kernels?: CpuKernelSet;
}

export class CpuBackend implements Backend {
  readonly name = 'cpu' as const;
  readonly kernels: CpuKernelSet;
  private readonly wasm: WasmRuntime | undefined;

  constructor(options: CpuBackendOptions = {}) {
    this.kernels = options.kernels ?? cpuKernelSet();
    this.wasm = this.kernels === 'wasm' ? wasmRuntime() : undefined;
    if (this.kernels === 'wasm' && !this.wasm) throw new ShapeError('cpu backend: the wasm kernel set needs WebAssembly SIMD, which this runtime does not validate');
  }

  describe(): string {
    const set = this.kernels === 'wasm' ? 'wasm SIMD kernels for the products, attention, activations and weighted encoders; TypeScript for the rest' : 'plain TypeScript kernels';
    return `cpu (${set}, ${threadCount()} thread${threadCount() === 1 ? '' : 's'} for large products)`;
  }

  /**
   * Shared-memory copies of uploaded weights (float32 and 16-bit), one per source, so a tied matrix
   * uploaded in two roles is one copy; under the wasm set each copy is counted, and its last dispose
   * frees its bytes.
   */
  private readonly f32Copies = new WeightCopies<Tensor>();
  private readonly halfCopies = new WeightCopies<HalfTensor>();

  upload(t: Tensor, role?: WeightRole): Tensor;
  upload(t: HalfTensor, role?: WeightRole): HalfTensor;
  upload(t: Tensor | HalfTensor, role?: WeightRole): Tensor | HalfTensor;
  upload(t: Tensor | HalfTensor, role?: WeightRole): Tensor | HalfTensor {
    const rt = this.wasm;
    if (t instanceof HalfTensor) {
      if (role !== 'linear' && role !== 'embedding') throw new ShapeError(`cpu backend: a 16-bit (${t.format}) tensor ${shapeToString(t.shape)} uploaded as a ${role ?? 'plain'} tensor; only matmul weights and embedding tables stay 16-bit`);
      // 16-bit weights: their bits copied once into the wasm memory (wasm set), else used in place
      if (!rt) return t;
      return this.halfCopies.acquire(t, rt.addressOf(t.bits) !== undefined, true, () => {
        const bits = rt.u16(t.size);
        if (!bits) {
          logOnce('wasm-4gib', `the weights do not fit in wasm32's 4 GiB (at ${t.format} weight ${JSON.stringify(t.shape)}): products on weights past it run the TypeScript kernels`);
          return undefined;
        }
        bits.set(t.bits);
        return new HalfTensor(t.shape, t.format, bits);
      });
    }
    if (role !== 'linear' && role !== 'embedding') return t;
    // Weights go to shared memory once, so the matmul workers read them in place: the wasm memory
    // under the wasm set (its kernels address nothing else), a SharedArrayBuffer otherwise.
    const inPlace = rt ? rt.addressOf(t.data) !== undefined : t.data.buffer instanceof SharedArrayBuffer;
    return this.f32Copies.acquire(t, inPlace, rt !== undefined, () => {
      const data = this.sharedArray(t.data.length, `weight ${JSON.stringify(t.shape)}`);
      data.set(t.data);
      return new Tensor(t.shape, data);
    });
  }

  /**
   * W·diag(scaled) into a counted weight copy in shared memory (kernels/fold.ts; the wasm set's twin
   * over the pool where the weight is in the wasm memory), so it is made where the products read it:
   * folding on the host and uploading made every folded weight twice (a GPT-2-small's fixed
   * conversion spent 5 of its 23 s there on a 2-core AMD EPYC VM).
   */
  uploadFolded(w: Tensor | HalfTensor, scaled: Float64Array): Tensor {
    const [N, K] = w.shape as [number, number];
    if (w.shape.length !== 2 || scaled.length !== K) throw new ShapeError(`cpu backend: a fold of weight ${shapeToString(w.shape)} with ${scaled.length} scales (expected [N, K] and K scales)`);
    const dst = this.sharedArray(N * K, `folded weight ${JSON.stringify(w.shape)}`);
    const half = w instanceof HalfTensor;
    const rt = this.wasm;
    if (!(rt && foldWasm(rt, half ? w.bits : w.data, half ? w.format : undefined, scaled, dst, N, K))) {
      if (half) foldHalfRowsCpu(w.bits, w.format, scaled, dst, K, 0, N);
      else foldRowsCpu(w.data, scaled, dst, K, 0, N);
    }
    return this.f32Copies.adopt(new Tensor(w.shape, dst), rt !== undefined && rt.addressOf(dst) !== undefined);
  }

  /**
   * Where a loader should put weight matrices so that `upload` uses them in place: the wasm memory
   * under the wasm set; undefined under ts (its SharedArrayBuffers are what loading makes anyway).
   */
  hostAllocator(): { f32(n: number): Float32Array | undefined; u16(n: number): Uint16Array | undefined } | undefined {
    const rt = this.wasm;
    return rt ? { f32: (n) => rt.f32(n), u16: (n) => rt.u16(n) } : undefined;
  }

  /** n zeroed floats in the wasm memory (wasm set) or a SharedArrayBuffer (ts set, or past 4 GiB). */
  private sharedArray(n: number, what: string): Float32Array {
    const a = this.wasm?.f32(n);
    if (a) return a;
    if (this.wasm) logOnce('wasm-4gib', `the weights do not fit in wasm32's 4 GiB (at ${what}): products on weights past it run the TypeScript kernels`);
    return new Float32Array(new SharedArrayBuffer(n * 4));
  }

  async read(t: BTensor): Promise<Tensor> {
    return host(t);
  }

  /** Synchronous read, available on the CPU backend only. */
  readSync(t: BTensor): Tensor {
    return host(t);
  }

  zeros(shape: Shape): Tensor {
    return Tensor.zeros(shape);
  }

  /**
   * Under the wasm set, the last dispose of an uploaded weight copy frees its bytes in the wasm memory
   * (and its transposed copy's) at once; anything else is left to the garbage collector.
   */
  dispose(t?: BTensor): void {
    if (this.wasm && t instanceof HalfTensor) {
      if (this.halfCopies.release(t)) this.wasm.free(t.bits);
      return;
    }
    if (!this.wasm || !(t instanceof Tensor) || !this.f32Copies.release(t)) return;
    const wT = this.transposed.get(t);
    if (wT) {
      this.transposed.delete(t);
      this.wasm.free(wT);
    }
    this.wasm.free(t.data);
  }

  tidy<T>(fn: () => T): T {
    return fn();
  }

  matmul(xIn: BTensor, wIn: BTensor, biasIn?: BTensor, residualIn?: BTensor): Tensor {
    const x = host(xIn), w = hostWeight(wIn), bias = biasIn ? host(biasIn) : undefined, residual = residualIn ? host(residualIn) : undefined;
    const { M, K, N } = matmulDims(x, w, bias, residual);
    const y = new Tensor([...x.shape.slice(0, -1), N]);
    if (w instanceof HalfTensor) {
      if (!(this.wasm && matmulHalfWasm(this.wasm, x.data, w.bits, w.format, bias?.data, y.data, M, K, N, residual?.data))) matmulHalfCpu(x.data, w.bits, w.format, bias?.data, y.data, M, K, N, residual?.data);
      return y;
    }
    if (!(this.wasm && matmulWasm(this.wasm, x.data, w.data, bias?.data, y.data, M, K, N, residual?.data, 'f32'))) matmulCpu(x.data, w.data, bias?.data, y.data, M, K, N, residual?.data);
    return y;
  }

  /** A dense spiking product: sums in doubles in both sets (the event kernels' contract). */
  private spikeDense(n: Tensor, w: Tensor, bias: Tensor | undefined, residual: Tensor | undefined, M: number, K: number, N: number): Tensor {
    const y = new Tensor([...n.shape.slice(0, -1), N]);
    if (!(this.wasm && matmulWasm(this.wasm, n.data, w.data, bias?.data, y.data, M, K, N, residual?.data, 'f64'))) matmulCpu(n.data, w.data, bias?.data, y.data, M, K, N, residual?.data);
    return y;
  }

  /** Transposed copies of linear weights, made the first time an event-driven product needs one. */
  private readonly transposed = new WeakMap<Tensor, Float32Array>();

  private transposeOf(w: Tensor): Float32Array {
    let wT = this.transposed.get(w);
    if (!wT) {
      const [N, K] = w.shape as [number, number];
      wT = this.wasm ? this.sharedArray(K * N, `transposed weight ${JSON.stringify(w.shape)}`) : new Float32Array(K * N);
      for (let j = 0; j < N; j++) for (let k = 0; k < K; k++) wT[k * N + j] = w.data[j * K + k]!;
      this.transposed.set(w, wT);
    }
    return wT;
  }

  spikeMatmul(nIn: BTensor, wIn: BTensor, biasIn: BTensor | undefined, residualIn: BTensor | undefined, kernel: SpikeKernel, densityHint?: number): Tensor {
    const n = host(nIn), w = host(wIn), bias = biasIn ? host(biasIn) : undefined, residual = residualIn ? host(residualIn) : undefined;
    const { M, K, N } = matmulDims(n, w, bias, residual);
    const event = kernel === 'event' || (kernel === 'auto' && useEventDriven(densityHint ?? spikeDensity(n.data), 'cpu'));
    if (!event) return this.spikeDense(n, w, bias, residual, M, K, N);
    const y = new Tensor([...n.shape.slice(0, -1), N]);
    const wT = this.transposeOf(w);
    if (!(this.wasm && eventWasm(this.wasm, n.data, wT, bias?.data, residual?.data, y.data, M, K, N, nonzeros(n.data)))) spikeMatmulEventCpu(n.data, wT, bias?.data, residual?.data, y.data, M, K, N);
    return y;
  }

  planeMatmul(digitsIn: BTensor, planes: number, growth: 1 | 2, wIn: BTensor, biasIn?: BTensor, residualIn?: BTensor): Tensor {
    const digits = host(digitsIn), w = host(wIn), bias = biasIn ? host(biasIn) : undefined, residual = residualIn ? host(residualIn) : undefined;
    const { K, N } = matmulDims(digits, w, bias);
    const R = planeRows(digits, planes, 'planeMatmul');
    if (residual && (residual.cols !== N || residual.rows !== R)) throw new ShapeError(`planeMatmul: residual ${JSON.stringify(residual.shape)} must be [${R}, ${N}]`);
    const y = new Tensor([R, N]);
    const wT = this.transposeOf(w);
    if (!(this.wasm && planeWasm(this.wasm, digits.data, planes, R, K, N, growth, wT, bias?.data, residual?.data, y.data, nonzeros(digits.data)))) planeMatmulCpu(digits.data, planes, R, K, N, growth, wT, bias?.data, residual?.data, y.data);
    return y;
  }

  encode(xIn: BTensor, th: DeviceThresholds, code: CodeParams, stats: SiteStatsTarget, withDigits: boolean): Encoded {
    const x = host(xIn);
    const R = x.rows, C = x.cols;
    checkVector(th.theta, C, 'encode thresholds');
    const sums = new Tensor([R, C]);
    const digits = withDigits ? new Tensor([planesOf(code) * R, C]) : undefined;
    const rowStats = new Float32Array(R * STATS_WIDTH);
    const out = { sums: sums.data, rowStats, ...(digits ? { digits: digits.data } : {}) };
    // weighted codes under the wasm set: the SIMD twin (bit for bit the same digits, sums and stats)
    if (this.wasm && code.kind !== 'rate') encodeWasm(this.wasm, x.data, R, C, host(th.invTheta).data, code, out);
    else encodeCpu(x.data, R, C, host(th.theta).data, host(th.invTheta).data, code, out);
    this.statsInto(rowStats, R, stats);
    return { sums, ...(digits ? { digits } : {}) };
  }

  digitStatsInto(digitsIn: BTensor, stats: SiteStatsTarget): void {
    const d = host(digitsIn);
    const rowStats = new Float32Array(d.rows * STATS_WIDTH);
    digitStatsCpu(d.data, d.rows, d.cols, rowStats);
    this.statsInto(rowStats, d.rows, stats);
  }

  private statsInto(rowStats: Float32Array, R: number, stats: SiteStatsTarget): void {
    const t = host(stats.tensor);
    const segments = stats.segments ?? 1;
    if (t.cols !== STATS_WIDTH || stats.row < 0 || stats.row + segments > t.rows) throw new ShapeError(`stats: rows ${stats.row}…${stats.row + segments - 1} of a ${JSON.stringify(t.shape)} tensor (width ${STATS_WIDTH})`);
    if (!Number.isInteger(segments) || segments < 1 || R % segments !== 0) throw new ShapeError(`stats: ${R} rows are not ${segments} equal segments`);
    if (typeof stats.fanout !== 'number' && stats.fanout.length !== R) throw new ShapeError(`stats: ${stats.fanout.length} fan-outs for ${R} rows`);
    statsIntoCpu(rowStats, R, t.data, stats.row, stats.fanout, segments);
  }

  spikeAttention(qIn: BTensor, kIn: BTensor, vIn: BTensor, thetaQ: BTensor, thetaP: DeviceThresholds, params: AttentionParams, codes: SpikeAttentionCodes, mode: SpikeExecution, stats: SiteStatsTarget): Tensor {
    const q = host(qIn), k = host(kIn), v = host(vIn);
    const S = spikeAttentionDims(q, k, v, params, codes, mode);
    checkVector(thetaQ, params.numHeads * params.headDim, 'spikeAttention q thresholds');
    checkVector(thetaP.theta, params.numHeads, 'spikeAttention p thresholds');
    const out = new Tensor([S, params.numHeads * params.headDim]);
    const rowStats = new Float32Array(S * params.numHeads * STATS_WIDTH);
    const inputs = { q: q.data, k: k.data, v: v.data, thetaQ: host(thetaQ).data, thetaP: host(thetaP.theta).data, invThetaP: host(thetaP.invTheta).data };
    // the fast execution in wasm (bit for bit); the event-driven one stays the TypeScript reference
    if (this.wasm && mode === 'fast') {
      checkAttention(params, S);
      spikeAttentionWasm(this.wasm, inputs, S, params, codes, out.data, rowStats);
    } else spikeAttentionCpu(inputs, S, params, codes, mode, out.data, rowStats);
    this.statsInto(rowStats, S * params.numHeads, stats);
    return out;
  }

  add(a: BTensor, b: BTensor): Tensor {
    return this.binary('add', a, b);
  }

  mul(a: BTensor, b: BTensor): Tensor {
    return this.binary('mul', a, b);
  }

  private binary(op: 'add' | 'mul', aIn: BTensor, bIn: BTensor): Tensor {
    const a = host(aIn), b = host(bIn);
    binaryBroadcast(op, a, b);
    const out = new Tensor(a.shape);
    binaryCpu(op, a.data, b.data, out.data);
    return out;
  }

  scale(aIn: BTensor, s: number): Tensor {
    const a = host(aIn);
    const out = new Tensor(a.shape);
    scaleCpu(a.data, s, out.data);
    return out;
  }

  activation(kind: Activation, xIn: BTensor): Tensor {
    const x = host(xIn);
    const out = new Tensor(x.shape);
    if (this.wasm) activationWasm(this.wasm, kind, x.data, out.data);
    else activationCpu(kind, x.data, out.data);
    return out;
  }

  gatedActivation(kind: Activation, xIn: BTensor): Tensor {
    const x = host(xIn);
    const { R, C } = gatedDims(x);
    const out = new Tensor([...x.shape.slice(0, -1), C]);
    if (this.wasm) gatedActivationWasm(this.wasm, kind, x.data, C, out.data);
    else gatedActivationCpu(kind, x.data, R, C, out.data);
    return out;
  }

  embedding(tableIn: BTensor, idsIn: TokenIds): Tensor {
    const table = hostWeight(tableIn);
    const { V, D } = embeddingDims(table);
    const ids = idsIn instanceof Int32Array ? idsIn : idsOf(host(idsIn));
    const out = new Tensor([ids.length, D]);
    if (table instanceof HalfTensor) embeddingHalfCpu(table.bits, table.format, V, D, ids, out.data);
    else embeddingCpu(table.data, V, D, ids, out.data);
    return out;
  }

  deviceSamplingNote(): undefined {
    return undefined;
  }

  sampleToken(logitsIn: BTensor, row: number, choice: TokenChoice, random: number, outIn: BTensor, seenIn?: BTensor): void {
    const logits = host(logitsIn), out = host(outIn), seen = seenIn ? host(seenIn) : undefined;
    const V = logits.shape.at(-1) ?? 0, R = V === 0 ? 0 : logits.size / V;
    if (!Number.isInteger(row) || row < 0 || row >= R) throw new ShapeError(`sampleToken: row ${row} of ${R}`);
    if (out.size < 1) throw new ShapeError('sampleToken: the output tensor has no element');
    if (seen && seen.size !== V) throw new ShapeError(`sampleToken: ${seen.size} seen flags for a vocabulary of ${V}`);
    const id = sampleTokenCpu(logits.data.subarray(row * V, (row + 1) * V), choice, seen?.data, random);
    out.data[0] = id;
    if (seen && choice.repetitionPenalty !== 1) seen.data[id] = 1;
  }

  layerNorm(xIn: BTensor, gamma: BTensor, beta: BTensor | undefined, eps: number): Tensor {
    const x = host(xIn);
    checkVector(gamma, x.cols, 'layerNorm gamma');
    checkVector(beta, x.cols, 'layerNorm beta');
    const out = new Tensor(x.shape);
    if (this.wasm) normWasm(this.wasm, 'layer', x.data, host(gamma).data, beta ? host(beta).data : undefined, eps, x.rows, x.cols, out.data);
    else layerNormCpu(x.data, host(gamma).data, beta ? host(beta).data : undefined, eps, x.rows, x.cols, out.data);
    return out;
  }

  rmsNorm(xIn: BTensor, gamma: BTensor, eps: number): Tensor {
    const x = host(xIn);
    checkVector(gamma, x.cols, 'rmsNorm gamma');
    const out = new Tensor(x.shape);
    if (this.wasm) normWasm(this.wasm, 'rms', x.data, host(gamma).data, undefined, eps, x.rows, x.cols, out.data);
    else rmsNormCpu(x.data, host(gamma).data, eps, x.rows, x.cols, out.data);
    return out;
  }

  qkNorm(qkvIn: BTensor, qGamma: BTensor, kGamma: BTensor, heads: QkNormHeads, eps: number): Tensor {
    const qkv = host(qkvIn);
    checkQkNorm(qkv, qGamma, kGamma, heads);
    const out = new Tensor(qkv.shape);
    qkNormCpu(qkv.data, host(qGamma).data, host(kGamma).data, heads, eps, qkv.rows, out.data);
    return out;
  }

  softmax(xIn: BTensor, mask?: CausalMask): Tensor {
    const x = host(xIn);
    const out = new Tensor(x.shape);
    softmaxCpu(x.data, x.rows, x.cols, out.data, mask);
    return out;
  }

  rope(xIn: BTensor, positions: Int32Array, numHeads: number, headDim: number, invFreq: Float64Array): Tensor {
    const x = host(xIn);
    ropeCheck(x, positions, numHeads, headDim);
    const out = new Tensor(x.shape);
    ropeCpu(x.data, positions, numHeads, headDim, invFreq, out.data);
    return out;
  }

  attention(qIn: BTensor, kIn: BTensor, vIn: BTensor, params: AttentionParams): Tensor {
    const q = host(qIn), k = host(kIn), v = host(vIn);
    const { S } = attentionDims(q, k, v, params);
    const out = new Tensor(q.shape);
    if (this.wasm && S >= ATTENTION_MIN_QUERIES) {
      checkAttention(params, S);
      attentionWasm(this.wasm, q.data, k.data, v.data, S, params, out.data);
    } else attentionCpu(q.data, k.data, v.data, S, params, out.data);
    return out;
  }

  qkvToCache(qkvIn: BTensor, kIn: BTensor, vIn: BTensor, layout: QkvLayout): Tensor {
    const qkv = host(qkvIn), k = host(kIn), v = host(vIn);
    const { S, qWidth } = qkvCheck(qkv, k, v, layout);
    const q = new Tensor([(layout.batches ?? 1) * S, qWidth]);
    qkvToCacheCpu(qkv.data, S, layout, q.data, k.data, v.data);
    return q;
  }

  neuronRun(xIn: BTensor, steps: number, th: DeviceThresholds, cfg: NeuronConfig, state?: TimeState): Tensor {
    const x = host(xIn);
    const { R, C } = timeMajorDims(x, steps, 'neuronRun');
    checkVector(th.theta, C, 'neuronRun thresholds');
    stateCheck(state?.tensor, R, C, 'neuronRun');
    const out = new Tensor(x.shape);
    neuronRunCpu(x.data, steps, R, C, host(th.theta).data, host(th.invTheta).data, cfg, out.data, state ? host(state.tensor).data : undefined, !state || state.t0 === 0);
    return out;
  }

  timeMean(x: BTensor, steps: number, domain: TimeDomain, state?: TimeState): Tensor {
    return this.temporal('timeMean', timeMeanCpu, x, steps, domain, state);
  }

  timeDelta(f: BTensor, steps: number, domain: TimeDomain, state?: TimeState): Tensor {
    return this.temporal('timeDelta', timeDeltaCpu, f, steps, domain, state);
  }

  private temporal(what: string, kernel: typeof timeMeanCpu, xIn: BTensor, steps: number, domain: TimeDomain, state?: TimeState): Tensor {
    const x = host(xIn);
    const { R, C } = timeMajorDims(x, steps, what);
    stateCheck(state?.tensor, R, C, what);
    const out = new Tensor(x.shape);
    kernel(x.data, steps, R * C, domain, out.data, state ? host(state.tensor).data : undefined, state?.t0 ?? 0);
    return out;
  }

  sumAbsInto(xIn: BTensor, steps: number, stats: BTensor, offset: number): void {
    const x = host(xIn), s = host(stats);
    timeMajorDims(x, steps, 'sumAbsInto');
    if (offset < 0 || offset + steps > s.size) throw new ShapeError(`sumAbsInto: slots [${offset}, ${offset + steps}) outside [0, ${s.size})`);
    sumAbsCpu(x.data, steps, s.data, offset);
  }

  writeRows(dstIn: BTensor, srcIn: BTensor, rowOffset: number): void {
    const dst = host(dstIn), src = host(srcIn);
    writeRowsCheck(dst, src, rowOffset);
    dst.data.set(src.data, rowOffset * dst.cols);
  }

  sliceRows(x: BTensor, start: number, end: number): Tensor {
    return host(x).sliceRows(start, end);
  }

  topK(xIn: BTensor, k: number): Tensor {
    const x = host(xIn);
    const { R, N } = topKDims(x, k);
    const out = new Tensor([R, k]);
    topKCpu(x.data, R, N, k, out.data);
    return out;
  }

  refineColumns(coarseIn: BTensor, idxIn: BTensor, xIn: BTensor, planes: number, wIn: BTensor, biasIn?: BTensor): Tensor {
    const coarse = host(coarseIn), idx = host(idxIn), x = host(xIn), w = host(wIn), bias = biasIn ? host(biasIn) : undefined;
    const { R, N, K, k } = refineDims(coarse, idx, x, planes, w, bias);
    const y = new Tensor([R, N]);
    refineCpu(coarse.data, idx.data, x.data, planes, w.data, bias?.data, y.data, R, N, K, k);
    return y;
  }
}

/** Token ids held as floats in a tensor, checked to be integers. */
function idsOf(t: Tensor): Int32Array {
  const ids = new Int32Array(t.size);
  for (let i = 0; i < t.size; i++) {
    const v = t.data[i]!;
    if (!Number.isInteger(v)) throw new ShapeError(`embedding: token id ${v} at position ${i} is not an integer`);
    ids[i] = v;
  }
  return ids;
}

/**
 * Copies of weights, one per source tensor, and (where counted) how many uploads returned each copy
 * and are not disposed yet: the upload bookkeeping of float32 and 16-bit weights alike.
 */
class WeightCopies<T extends object> {
  private readonly copies = new WeakMap<T, T>();
  private readonly owners = new WeakMap<T, { source: T; count: number }>();

  /**
   * What an upload of `t` returns: `t` itself if it is a counted copy (counted once more) or lives
   * where it is used (`inPlace`); else its copy, made once by `make` (where `make` gives nothing,
   * `t`, and nothing is remembered).
   */
  acquire(t: T, inPlace: boolean, counted: boolean, make: () => T | undefined): T {
    const owned = this.owners.get(t);
    if (owned) {
      owned.count++;
      return t;
    }
    if (inPlace) return t;
    let copy = this.copies.get(t);
    if (!copy) {
      copy = make();
      if (!copy) return t;
      this.copies.set(t, copy);
      if (counted) this.owners.set(copy, { source: t, count: 0 });
    }
    const o = this.owners.get(copy);
    if (o) o.count++;
    return copy;
  }

  /**
   * A copy made elsewhere, as its own source, returned as by one upload: counted once where
   * `counted` (its last dispose frees it, as any copy's); uncounted, it lives until collected.
   */
  adopt(copy: T, counted: boolean): T {
    this.copies.set(copy, copy);
    if (counted) this.owners.set(copy, { source: copy, count: 1 });
    return copy;
  }

  /** One dispose of a counted copy: true at the last one (the copy is forgotten; the caller frees its bytes). */
  release(copy: T): boolean {
    const o = this.owners.get(copy);
    if (!o || --o.count > 0) return false;
    this.owners.delete(copy);
    this.copies.delete(o.source);
    return true;
  }
}
