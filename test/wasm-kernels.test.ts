/**
 * The wasm SIMD kernel set against its TypeScript twins: every kernel over random shapes (sizes that
 * are not multiples of 4 or 16, column ranges that split a tile), non-finite inputs and sub-views;
 * the CPU backend with each set; the shared memory's allocator; and the committed binary being what
 * the AssemblyScript source compiles to.
 *
 * Tolerances: the f32-summing kernels (the ANN's products) against the TypeScript kernels (double
 * sums) are two float32 computations in different orders: TOL.f32. The f64-summing kernels (spike
 * products) round the same exact products once, as the TypeScript kernels do: at most one float32
 * ulp apart (only where two double sums straddle a rounding boundary).
 */
import { execFileSync } from 'node:child_process';
import v8 from 'node:v8';
import vm from 'node:vm';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { convertModelToSpiking, createCalibrationData } from '../src/convert/api.js';
import { loadModel } from '../src/nn/model.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';
import { SpikingLM } from '../src/snn/model.js';
import { forwardStats } from '../src/snn/stats.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { attentionRange } from '../src/tensor/kernels/attention.js';
import { spikeAttentionCpu } from '../src/tensor/kernels/spike-attention.js';
import { ACTIVATIONS, type Activation, activationCpu, gatedActivationCpu } from '../src/tensor/kernels/elementwise.js';
import { matmulBlocked, matvecBlocked } from '../src/tensor/kernels/matmul.js';
import { planeMatmulCpu } from '../src/tensor/kernels/plane-matmul.js';
import { spikeMatmulEventCpu } from '../src/tensor/kernels/spike-matmul.js';
import { Tensor } from '../src/tensor/tensor.js';
import { PARALLEL_MIN_MACS } from '../src/tensor/threads.js';
import { HalfTensor } from '../src/tensor/half.js';
import { activationWasm, attentionWasm, foldWasm, spikeAttentionWasm, gatedActivationWasm, normWasm, productInput } from '../src/tensor/wasm/products.js';
import { layerNormCpu, rmsNormCpu } from '../src/tensor/kernels/norm.js';
import { foldHalfRowsCpu, foldRowsCpu } from '../src/tensor/kernels/fold.js';
import { encodeWasm } from '../src/tensor/wasm/encoders.js';
import { EXTRA_PLANES, STAT, STATS_WIDTH, TERNARY_LIMIT, encodeCpu, planesOf } from '../src/tensor/kernels/codes.js';
import { type WasmKernel, WasmRuntime, cpuKernelSet, relaxedRequested, relaxedSimdSupported, simdSupported, wasmRuntime } from '../src/tensor/wasm/runtime.js';
import { relaxedOperands, relaxedWorkload } from './helpers/relaxed-workload.js';
import { fixtureDir } from './helpers/fixtures.js';
import { TOL, expectClose, expectIdentical, randomArray } from './helpers/tolerance.js';

const runtime = (): WasmRuntime => {
  const rt = wasmRuntime();
  if (!rt) throw new Error('WebAssembly SIMD does not validate on this Node: the wasm kernel set cannot be tested');
  return rt;
};

/** An array in the wasm memory holding `values`. */
function inMemory(rt: WasmRuntime, values: Float32Array): Float32Array {
  const a = rt.f32(values.length)!;
  a.set(values);
  return a;
}

const addr = (rt: WasmRuntime, a: Float32Array | undefined) => (a ? rt.addressOf(a)! : 0);

/** Float32 ulps between a and b (0 for equal values, both NaN, or ±0). */
function ulps(a: number, b: number): number {
  if (Number.isNaN(a) && Number.isNaN(b)) return 0;
  if (a === b) return 0;
  if (!Number.isFinite(a) || !Number.isFinite(b)) return Infinity;
  const bits = (v: number) => {
    const i = new Int32Array(Float32Array.of(v).buffer)[0]!;
    return i < 0 ? -(i & 0x7fffffff) : i;
  };
  return Math.abs(bits(a) - bits(b));
}

function expectWithinUlps(actual: Float32Array, expected: Float32Array, max: number, what: string): void {
  let worst = 0, at = -1;
  for (let i = 0; i < expected.length; i++) {
    const u = ulps(actual[i]!, expected[i]!);
    if (u > worst) [worst, at] = [u, i];
  }
  expect(worst, `${what}: ${worst} ulps at [${at}] (${actual[at]} vs ${expected[at]})`).toBeLessThanOrEqual(max);
}

/** Where expected is not finite, actual is the same (NaN, or the same infinity); elsewhere within tol. */
function expectCloseNonFinite(actual: Float32Array, expected: Float32Array, what: string): void {
  const finite: number[] = [];
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!, a = actual[i]!;
    if (Number.isNaN(e)) expect(Number.isNaN(a), `${what} [${i}]: ${a}, expected NaN`).toBe(true);
    else if (!Number.isFinite(e)) expect(a, `${what} [${i}]`).toBe(e);
    else finite.push(i);
  }
  expectClose(Float32Array.from(finite, (i) => actual[i]!), Float32Array.from(finite, (i) => expected[i]!), TOL.f32, what);
}

/** Random values with some entries replaced by NaN or ±Infinity. */
function withNonFinite(a: Float32Array, seed: number, count: number): Float32Array {
  const out = Float32Array.from(a);
  const pick = randomArray(2 * count, seed);
  for (let j = 0; j < count && out.length; j++) {
    const i = Math.floor(Math.abs(pick[2 * j]!) * out.length) % out.length;
    out[i] = [Number.NaN, Infinity, -Infinity][Math.floor(Math.abs(pick[2 * j + 1]!) * 3) % 3]!;
  }
  return out;
}

/** Integer spike counts in [−B, B] with the given density of nonzeros. */
function spikes(n: number, density: number, seed: number, B = 3): Float32Array {
  const u = randomArray(n, seed), v = randomArray(n, seed + 7);
  return Float32Array.from(u, (x, i) => (Math.abs(x) < density ? Math.sign(v[i]!) * (1 + Math.floor(Math.abs(v[i]!) * B)) : 0));
}

const transpose = (w: Float32Array, N: number, K: number) => Float32Array.from({ length: K * N }, (_, i) => w[(i % N) * K + Math.floor(i / N)]!);

const shape = { M: fc.integer({ min: 1, max: 11 }), K: fc.integer({ min: 0, max: 45 }), N: fc.integer({ min: 1, max: 41 }) };

describe('wasm SIMD kernels', () => {
  it('SIMD validates on this Node, so the default set is wasm (SPIKELM_CPU_KERNELS chooses)', () => {
    expect(simdSupported()).toBe(true);
    expect(cpuKernelSet(undefined)).toBe('wasm');
    expect(cpuKernelSet('ts')).toBe('ts');
    expect(() => cpuKernelSet('simd')).toThrow(/SPIKELM_CPU_KERNELS must be wasm, ts or auto, got "simd"/);
  });

  it('the committed simd.wasm is what the AssemblyScript source compiles to', () => {
    const out = execFileSync(process.execPath, ['scripts/build-wasm.mjs', '--check'], { encoding: 'utf8' });
    expect(out).toMatch(/up to date/);
  });

  for (const accumulate of ['f32', 'f64'] as const) {
    it(`${accumulate} dense products equal the TypeScript kernels on any shape and column range (tile and matrix–vector forms)`, () => {
      const rt = runtime();
      fc.assert(
        fc.property(shape.M, shape.K, shape.N, fc.boolean(), fc.nat(), fc.integer(), (M, K, N, withBias, cut, seed) => {
          const x = randomArray(M * K, seed), w = randomArray(N * K, seed + 1), b = withBias ? randomArray(N, seed + 2) : undefined;
          const ref = new Float32Array(M * N);
          (M < 4 ? matvecBlocked : matmulBlocked)(x, w, b ?? null, ref, M, K, N, 0, N);
          const xm = inMemory(rt, x), wm = inMemory(rt, w), bm = b ? inMemory(rt, b) : undefined, y = inMemory(rt, new Float32Array(M * N).fill(Number.NaN));
          const c = cut % (N + 1);
          for (const tile of [true, false]) {
            if (!tile && M >= 8) continue;
            const name: WasmKernel = accumulate === 'f32' ? (tile ? 'matmulF32Tile4x4' : 'matvecF32Row') : tile ? 'matmulF64Tile4x4' : 'matvecF64Row';
            const fn = rt.kernels[name];
            y.fill(Number.NaN);
            const xp = productInput(rt, name, xm, M, K);
            fn(xp, addr(rt, wm), addr(rt, bm), addr(rt, y), M, K, N, 0, c);
            fn(xp, addr(rt, wm), addr(rt, bm), addr(rt, y), M, K, N, c, N);
            if (accumulate === 'f32') expectClose(y, ref, TOL.f32, `f32 ${tile ? 'tile' : 'rows'} ${M}×${K}×${N} cut ${c}`);
            else expectWithinUlps(y, ref, 1, `f64 ${tile ? 'tile' : 'rows'} ${M}×${K}×${N} cut ${c}`);
          }
        }),
        { numRuns: 150, endOnFailure: true },
      );
    });
  }

  it('f64 tile: rows long enough that the weight rows run in column blocks (8–12 rows of 2.7–4 thousand weights) give the TypeScript kernel\'s outputs at any column range', () => {
    const rt = runtime();
    fc.assert(
      fc.property(fc.integer({ min: 4, max: 11 }), fc.integer({ min: 2700, max: 4000 }), fc.integer({ min: 9, max: 41 }), fc.nat(), fc.integer(), (M, K, N, cut, seed) => {
        const x = randomArray(M * K, seed), w = randomArray(N * K, seed + 1), b = randomArray(N, seed + 2);
        const ref = new Float32Array(M * N);
        matmulBlocked(x, w, b, ref, M, K, N, 0, N);
        const xm = inMemory(rt, x), wm = inMemory(rt, w), bm = inMemory(rt, b), y = inMemory(rt, new Float32Array(M * N).fill(Number.NaN));
        const c = 1 + (cut % (N - 1));
        rt.kernels.matmulF64Tile4x4(addr(rt, xm), addr(rt, wm), addr(rt, bm), addr(rt, y), M, K, N, 0, c);
        rt.kernels.matmulF64Tile4x4(addr(rt, xm), addr(rt, wm), addr(rt, bm), addr(rt, y), M, K, N, c, N);
        expectWithinUlps(y, ref, 1, `f64 tile ${M}×${K}×${N} cut ${c}`);
      }),
      { numRuns: 12, endOnFailure: true },
    );
  });

  it('f32: the matrix–vector form sums in its documented order (four accumulators over the quarters of each block of 16), bit for bit at any column split', () => {
    // an independent emulation of assembly/matmul.ts dotRowW in float32 steps: accumulator j, lane l
    // of the block at k takes the entry k + 4j + l
    const f = Math.fround;
    const rowOrder = (x: Float32Array, w: Float32Array, K: number, bias: number): number => {
      const acc = [0, 1, 2, 3].map(() => [0, 0, 0, 0]);
      const k16 = K & ~15, k4 = K & ~3;
      for (let k = 0; k < k16; k += 16) {
        for (let j = 0; j < 4; j++) {
          for (let l = 0; l < 4; l++) {
            const i = k + 4 * j + l;
            acc[j]![l] = f(acc[j]![l]! + f(x[i]! * w[i]!));
          }
        }
      }
      for (let k = k16; k < k4; k += 4) for (let l = 0; l < 4; l++) acc[0]![l] = f(acc[0]![l]! + f(x[k + l]! * w[k + l]!));
      const lane = [0, 1, 2, 3].map((l) => f(f(acc[0]![l]! + acc[1]![l]!) + f(acc[2]![l]! + acc[3]![l]!)));
      let s = f(f(lane[0]! + lane[1]!) + f(lane[2]! + lane[3]!));
      for (let k = k4; k < K; k++) s = f(s + f(x[k]! * w[k]!));
      return f(s + bias);
    };
    const rt = runtime();
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 70 }), shape.N, fc.boolean(), fc.nat(), fc.integer(), (M, K, N, withBias, cut, seed) => {
        const x = randomArray(M * K, seed), w = randomArray(N * K, seed + 1), b = withBias ? randomArray(N, seed + 2) : undefined;
        const xm = inMemory(rt, x), wm = inMemory(rt, w), bm = b ? inMemory(rt, b) : undefined, y = inMemory(rt, new Float32Array(M * N).fill(Number.NaN));
        const c = cut % (N + 1);
        const xp = addr(rt, xm);
        for (const [n0, n1] of [[0, c], [c, N]] as const) rt.kernels.matvecF32Row(xp, addr(rt, wm), addr(rt, bm), addr(rt, y), M, K, N, n0, n1);
        const want = Float32Array.from({ length: M * N }, (_, i) => rowOrder(x.subarray(Math.floor(i / N) * K), w.subarray((i % N) * K), K, b ? b[i % N]! : 0));
        expectIdentical(y, want, `f32 rows ${M}×${K}×${N} cut ${c}`);
        for (const a of [xm, wm, y, ...(bm ? [bm] : [])]) rt.free(a);
      }),
      { numRuns: 150, endOnFailure: true },
    );
  });

  it('non-finite inputs give what the TypeScript kernels give (NaN, the same infinity)', () => {
    const rt = runtime();
    fc.assert(
      fc.property(shape.M, fc.integer({ min: 1, max: 45 }), shape.N, fc.integer(), (M, K, N, seed) => {
        const x = withNonFinite(randomArray(M * K, seed), seed + 5, 2), w = withNonFinite(randomArray(N * K, seed + 1), seed + 6, 2);
        const ref = new Float32Array(M * N);
        matmulBlocked(x, w, null, ref, M, K, N, 0, N);
        const xm = inMemory(rt, x), wm = inMemory(rt, w), y = inMemory(rt, new Float32Array(M * N));
        for (const name of ['matmulF32Tile4x4', 'matmulF64Tile4x4', 'matvecF32Row', 'matvecF64Row'] as const) {
          rt.kernels[name](productInput(rt, name, xm, M, K), addr(rt, wm), 0, addr(rt, y), M, K, N, 0, N);
          expectCloseNonFinite(y, ref, `${name} ${M}×${K}×${N}`);
        }
      }),
      { numRuns: 100, endOnFailure: true },
    );
  });

  it('event-driven rows equal spikeMatmulEventCpu at densities 0 to 1, with bias and residual, on any column range', () => {
    const rt = runtime();
    fc.assert(
      fc.property(shape.M, shape.K, shape.N, fc.double({ min: 0, max: 1, noNaN: true }), fc.boolean(), fc.nat(), fc.integer(), (M, K, N, density, withResidual, cut, seed) => {
        const s = spikes(M * K, density, seed), wT = transpose(randomArray(N * K, seed + 1), N, K), b = randomArray(N, seed + 2), r = withResidual ? randomArray(M * N, seed + 3) : undefined;
        const ref = new Float32Array(M * N);
        spikeMatmulEventCpu(s, wT, b, r, ref, M, K, N);
        const sm = inMemory(rt, s), wm = inMemory(rt, wT), bm = inMemory(rt, b), rm = r ? inMemory(rt, r) : undefined, y = inMemory(rt, new Float32Array(M * N).fill(Number.NaN));
        const c = cut % (N + 1), acc = rt.stage('test-acc', N * 8);
        rt.kernels.eventRowsF64(addr(rt, sm), addr(rt, wm), addr(rt, bm), addr(rt, rm), addr(rt, y), M, K, N, 0, c, acc);
        rt.kernels.eventRowsF64(addr(rt, sm), addr(rt, wm), addr(rt, bm), addr(rt, rm), addr(rt, y), M, K, N, c, N, acc);
        expectWithinUlps(y, ref, 1, `event ${M}×${K}×${N} density ${density.toFixed(2)}`);
      }),
      { numRuns: 150, endOnFailure: true },
    );
  });

  it('plane accumulation equals planeMatmulCpu for weighted (doubling) and rate planes', () => {
    const rt = runtime();
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 9 }), shape.K, shape.N, fc.constantFrom(1 as const, 2 as const), fc.boolean(), fc.nat(), fc.integer(), (R, P, K, N, growth, withResidual, cut, seed) => {
        const d = spikes(P * R * K, 0.3, seed, 1), wT = transpose(randomArray(N * K, seed + 1), N, K), b = randomArray(N, seed + 2), r = withResidual ? randomArray(R * N, seed + 3) : undefined;
        const ref = new Float32Array(R * N);
        planeMatmulCpu(d, P, R, K, N, growth, wT, b, r, ref);
        const dm = inMemory(rt, d), wm = inMemory(rt, wT), bm = inMemory(rt, b), rm = r ? inMemory(rt, r) : undefined, y = inMemory(rt, new Float32Array(R * N).fill(Number.NaN));
        const c = cut % (N + 1), acc = rt.stage('test-acc', N * 8);
        rt.kernels.planeAccumulateF64(addr(rt, dm), P, R, K, N, growth, addr(rt, wm), addr(rt, bm), addr(rt, rm), addr(rt, y), 0, c, acc);
        rt.kernels.planeAccumulateF64(addr(rt, dm), P, R, K, N, growth, addr(rt, wm), addr(rt, bm), addr(rt, rm), addr(rt, y), c, N, acc);
        expectWithinUlps(y, ref, 1, `planes ${P}×${R}×${K}×${N} growth ${growth}`);
      }),
      { numRuns: 150, endOnFailure: true },
    );
  });
});

describe('wasm attention', () => {
  it('equals attentionRange (GQA, odd head dims, cached prefixes, sliding windows, left-padded blocks, non-causal)', () => {
    const rt = runtime();
    fc.assert(
      fc.property(
        fc.constantFrom([1, 1], [2, 1], [4, 2], [6, 3], [3, 3]), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 7 }), fc.integer({ min: 0, max: 6 }),
        fc.integer({ min: 1, max: 3 }), fc.option(fc.integer({ min: 1, max: 5 }), { nil: undefined }), fc.boolean(), fc.boolean(), fc.integer(),
        ([H, Hkv], d, S, queryStart, batches, window, padded, causal, seed) => {
          const kvLength = queryStart + S, stride = kvLength + 2, kvOffset = 1;
          const rows = kvOffset + batches * stride;
          const q = randomArray(batches * S * H * d + 3, seed).subarray(3), k = randomArray(rows * Hkv * d, seed + 1, 2), v = randomArray(rows * Hkv * d, seed + 2);
          const keyStarts = padded ? Int32Array.from({ length: batches }, (_, b) => Math.min(kvLength, b * 2)) : undefined;
          const p = { numHeads: H, numKvHeads: Hkv, headDim: d, queryStart, kvLength, scale: 1 / Math.sqrt(d), batches, kvBatchStride: stride, kvOffset, causal, ...(window ? { window } : {}), ...(keyStarts ? { keyStarts } : {}) };
          const ref = new Float32Array(batches * S * H * d).fill(Number.NaN), out = new Float32Array(ref.length).fill(Number.NaN);
          attentionRange(q, k, v, S, p, ref, 0, batches * H);
          attentionWasm(rt, q, k, v, S, p, out);
          expectWithinUlps(out, ref, 1, `attention H ${H}/${Hkv} d ${d} S ${S} start ${queryStart} batches ${batches} window ${window} causal ${causal}`);
        },
      ),
      { numRuns: 200, endOnFailure: true },
    );
  });
});

describe('wasm spike-driven attention (fast execution)', () => {
  // bit for bit: the same double sums in the same order, JavaScript's exp, the same float32 membranes
  const pCode = fc.oneof(
    fc.record({ kind: fc.constant('ternary' as const), T: fc.integer({ min: 1, max: 12 }) }),
    fc.record({ kind: fc.constant('binary' as const), T: fc.integer({ min: 1, max: 12 }) }),
    fc.record({ kind: fc.constant('rate' as const), T: fc.integer({ min: 1, max: 9 }), maxSpikes: fc.constantFrom(1, 3, Infinity) }),
  );
  it('equals spikeAttentionCpu\'s fast branch: outputs and row statistics (rate, binary and ternary p codes, GQA, windows, non-causal, cached prefixes, probabilities that clip or need extra planes)', () => {
    const rt = runtime();
    fc.assert(
      fc.property(
        fc.constantFrom([1, 1], [2, 1], [4, 2], [6, 3], [3, 3]), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 9 }),
        fc.option(fc.integer({ min: 1, max: 6 }), { nil: undefined }), fc.boolean(), pCode, fc.constantFrom(0.001, 0.004, 0.02, 0.1, 0.5, 2), fc.integer({ min: 3, max: 11 }), fc.integer(),
        ([H, Hkv], d, S, queryStart, window, causal, p, thetaScale, qT, seed) => {
          const L = queryStart + S, qW = H * d, kvW = Hkv * d;
          // q's digit sums: integers of a ternary code of qT planes; θp from 0.001 (probabilities far past the range: every extra plane, then clipping) to 2
          const q = Float32Array.from(randomArray(S * qW, seed), (v) => Math.round(v * 2 ** (qT - 1)));
          const k = randomArray(L * kvW + 5, seed + 1, 3), v = randomArray(L * kvW + 5, seed + 2);
          const thetaQ = Float32Array.from(randomArray(qW, seed + 3), (t) => 0.05 + Math.abs(t));
          const thetaP = Float32Array.from(randomArray(H, seed + 4), (t) => Math.fround(thetaScale * (0.5 + Math.abs(t))));
          const invThetaP = thetaP.map((t) => Math.fround(1 / t));
          const params = { numHeads: H, numKvHeads: Hkv, headDim: d, queryStart, kvLength: L, scale: 1 / Math.sqrt(d), causal, ...(window && causal ? { window } : {}) };
          const codes = { q: { kind: 'ternary' as const, T: qT }, p };
          const inputs = { q, k, v, thetaQ, thetaP, invThetaP };
          const ref = new Float32Array(S * qW).fill(Number.NaN), refStats = new Float32Array(S * H * STATS_WIDTH).fill(Number.NaN);
          spikeAttentionCpu(inputs, S, params, codes, 'fast', ref, refStats);
          const out = new Float32Array(S * qW).fill(Number.NaN), stats = new Float32Array(S * H * STATS_WIDTH).fill(Number.NaN);
          spikeAttentionWasm(rt, inputs, S, params, codes, out, stats);
          const what = `H ${H}/${Hkv} d ${d} S ${S} start ${queryStart} window ${window} causal ${causal} p ${p.kind} T ${p.T}`;
          expectIdentical(out, ref, `${what}: outputs`);
          expectIdentical(stats, refStats, `${what}: row statistics`);
        },
      ),
      { numRuns: 300, endOnFailure: true },
    );
  });

  it('across the pool (prefill-sized work) equals the serial TypeScript kernel; spikes do fire', () => {
    const rt = runtime();
    const H = 8, Hkv = 4, d = 32, S = 48, L = 80, qW = H * d, kvW = Hkv * d;
    const q = Float32Array.from(randomArray(S * qW, 5), (v) => Math.round(v * 512));
    const k = randomArray(L * kvW, 6, 2), v = randomArray(L * kvW, 7);
    const thetaQ = Float32Array.from(randomArray(qW, 8), (t) => 0.002 + Math.abs(t) / 100);
    const thetaP = new Float32Array(H).fill(1), invThetaP = new Float32Array(H).fill(1);
    const params = { numHeads: H, numKvHeads: Hkv, headDim: d, queryStart: L - S, kvLength: L, scale: 1 / Math.sqrt(d) };
    const codes = { q: { kind: 'ternary' as const, T: 10 }, p: { kind: 'ternary' as const, T: 8 } };
    const inputs = { q, k, v, thetaQ, thetaP, invThetaP };
    const ref = new Float32Array(S * qW), refStats = new Float32Array(S * H * STATS_WIDTH);
    spikeAttentionCpu(inputs, S, params, codes, 'fast', ref, refStats);
    const out = rt.f32(S * qW)!, stats = new Float32Array(S * H * STATS_WIDTH);
    spikeAttentionWasm(rt, inputs, S, params, codes, out, stats);
    expectIdentical(out, ref, 'outputs');
    expectIdentical(stats, refStats, 'row statistics');
    expect(refStats.filter((_, i) => i % STATS_WIDTH === STAT.events).reduce((a, b) => a + b, 0)).toBeGreaterThan(S * H);
    rt.free(out);
  });
});

describe('wasm weighted encoders', () => {
  it('give, bit for bit, the TypeScript encoder\'s digit sums, digits and row statistics (phase and phase-ternary, any T, extra planes, clipping, non-finite and zero inputs, sub-views)', () => {
    const rt = runtime();
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 70 }), fc.integer({ min: 1, max: 16 }), fc.constantFrom('binary' as const, 'ternary' as const),
        fc.boolean(), fc.integer({ min: -6, max: 14 }), fc.nat({ max: 4 }), fc.integer(),
        (R, C, T, kind, withDigits, range, nonFinite, seed) => {
          const code = { kind, T };
          // values spread over 2^range of the thresholds: below, in and far beyond the code's range
          // (extra planes open; past 2^EXTRA_PLANES values clip), with exact zeros, ±∞ and NaN
          const base = withNonFinite(randomArray(R * C + 3, seed, 2 ** range), seed + 1, nonFinite);
          for (let i = 0; i < base.length; i += 7) base[i] = i % 14 ? 0 : -0;
          const x = base.subarray(3);
          const theta = Float32Array.from(randomArray(C, seed + 2), (t) => Math.fround(0.05 + Math.abs(t) * 3));
          const inv = Float32Array.from(theta, (t) => 1 / t);
          const P = planesOf(code);
          const ref = { sums: new Float32Array(R * C), rowStats: new Float32Array(R * STATS_WIDTH), ...(withDigits ? { digits: new Float32Array(P * R * C) } : {}) };
          const got = { sums: new Float32Array(R * C).fill(Number.NaN), rowStats: new Float32Array(R * STATS_WIDTH).fill(Number.NaN), ...(withDigits ? { digits: new Float32Array(P * R * C).fill(Number.NaN) } : {}) };
          encodeCpu(x, R, C, theta, inv, code, ref);
          encodeWasm(rt, x, R, C, inv, code, got);
          const what = `${kind} T=${T} ${R}×${C} range 2^${range}${withDigits ? ' with digits' : ''}`;
          expectIdentical(got.sums, ref.sums, `${what}: sums`);
          expectIdentical(got.rowStats, ref.rowStats, `${what}: row stats`);
          if (withDigits) expectIdentical(got.digits!, ref.digits!, `${what}: digits`);
        },
      ),
      { numRuns: 400, endOnFailure: true },
    );
  });

  it('agree at the edges of the range: charges exactly at the top of a plane, where extra planes open and where they run out', () => {
    const rt = runtime();
    for (const kind of ['binary', 'ternary'] as const) {
      for (const T of [1, 5, 9, 16]) {
        const limit = kind === 'ternary' ? TERNARY_LIMIT : 2 - 2 ** (1 - T); // binary charges are |x| + 2^−T
        // one row per charge (θ = 1), each beside neighbours that stay in range
        const charges = [limit, -limit, Math.fround(limit * 1.0000001), limit * 2, limit * 2 ** EXTRA_PLANES, limit * 2 ** (EXTRA_PLANES + 1), 2 ** -T, 0.5, 1,
          // binary: charges of exactly 2 (one extra plane) and of 2^(E+1) (past the last: clipped)
          2 - 2 ** -T, 2 ** (EXTRA_PLANES + 1) - 2 ** -T];
        const C = 6, R = charges.length;
        const x = new Float32Array(R * C).map((_, i) => (i % C === 2 ? charges[Math.floor(i / C)]! : 0.25 * ((i % C) - 2)));
        const theta = new Float32Array(C).fill(1), inv = new Float32Array(C).fill(1);
        const code = { kind, T }, P = planesOf(code);
        const ref = { sums: new Float32Array(R * C), rowStats: new Float32Array(R * STATS_WIDTH), digits: new Float32Array(P * R * C) };
        const got = { sums: new Float32Array(R * C), rowStats: new Float32Array(R * STATS_WIDTH), digits: new Float32Array(P * R * C) };
        encodeCpu(x, R, C, theta, inv, code, ref);
        encodeWasm(rt, x, R, C, inv, code, got);
        expectIdentical(got.rowStats, ref.rowStats, `${kind} T=${T} at the edges: row stats`);
        expectIdentical(got.sums, ref.sums, `${kind} T=${T} at the edges: sums`);
        expectIdentical(got.digits, ref.digits, `${kind} T=${T} at the edges: digits`);
        // and the edges are where the code says: the top of the range opens no extra plane, twice it one
        expect(ref.rowStats[STAT.extraSteps]).toBe(0);
        expect(ref.rowStats[3 * STATS_WIDTH + STAT.extraSteps]).toBe(1);
      }
    }
  });
});

describe('the relaxed-SIMD module (SPIKELM_WASM_RELAXED=1)', () => {
  it('runs only when asked for, and asking where relaxed SIMD does not validate is an error', () => {
    expect(relaxedRequested(undefined)).toBe(false);
    expect(relaxedRequested('0')).toBe(false);
    expect(() => relaxedRequested('yes')).toThrow(/SPIKELM_WASM_RELAXED must be 1 or 0, got "yes"/);
    if (relaxedSimdSupported()) expect(relaxedRequested('1')).toBe(true);
    else expect(() => relaxedRequested('1')).toThrow(/does not validate relaxed SIMD/);
    expect(runtime().relaxed).toBe(false);
  });

  it('fuses the float32 products (within TOL.f32 of the default module) and gives its f64 spiking products, spike counts and SNN logits bit for bit', async () => {
    // Node 20 validates relaxed SIMD behind a flag (Node ≥ 21 without one)
    const flags = relaxedSimdSupported() ? [] : ['--experimental-wasm-relaxed-simd'];
    const out = execFileSync(process.execPath, [...flags, '--import', 'tsx', 'test/helpers/relaxed-child.ts'], {
      encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, SPIKELM_WASM_RELAXED: '1', SPIKELM_CPU_KERNELS: 'wasm' },
    });
    const child = JSON.parse(out) as { relaxed: boolean } & Awaited<ReturnType<typeof relaxedWorkload>>;
    expect(child.relaxed).toBe(true);
    const own = await relaxedWorkload(relaxedOperands());
    child.f32.forEach((y, i) => expectClose(Float32Array.from(y), Float32Array.from(own.f32[i]!), TOL.f32, `relaxed f32 product ${i}`));
    child.f64.forEach((y, i) => expectIdentical(y, own.f64[i]!, `relaxed f64 product ${i}`));
    expectClose(Float32Array.from(child.ann), Float32Array.from(own.ann), TOL.golden, 'relaxed ANN logits');
    expect(child.events).toEqual(own.events);
    expectIdentical(child.snn, own.snn, 'relaxed SNN logits');
  });
});

describe('wasm activations', () => {
  it('equal the TypeScript activations and gated activations within one float32 ulp, non-finite inputs included', () => {
    const rt = runtime();
    fc.assert(
      fc.property(fc.constantFrom(...(Object.keys(ACTIVATIONS) as Activation[])), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 300 }), fc.integer(), (kind, R, C, seed) => {
        const x = withNonFinite(randomArray(R * 2 * C + 1, seed, 6), seed + 1, 3).subarray(1);
        const ref = new Float32Array(x.length), out = new Float32Array(x.length).fill(Number.NaN);
        activationCpu(kind, x, ref);
        activationWasm(rt, kind, x, out);
        expectWithinUlps(out, ref, 1, `${kind} over ${x.length}`);
        const gRef = new Float32Array(R * C), gOut = new Float32Array(R * C).fill(Number.NaN);
        gatedActivationCpu(kind, x, R, C, gRef);
        gatedActivationWasm(rt, kind, x, C, gOut);
        expectWithinUlps(gOut, gRef, 1, `gated ${kind} ${R}×${C}`);
      }),
      { numRuns: 200, endOnFailure: true },
    );
  });

  it('across the pool (a product-sized activation) equal the serial TypeScript kernel', () => {
    const x = randomArray(1 << 18, 5, 4), ref = new Float32Array(x.length), out = new Float32Array(x.length);
    activationCpu('gelu_tanh', x, ref);
    activationWasm(runtime(), 'gelu_tanh', x, out);
    expectWithinUlps(out, ref, 1, 'gelu_tanh over 2^18');
  });
});

describe('wasm norms', () => {
  // bit for bit: the statistics are the TypeScript kernels' sequential double sums (norm.ts says why)
  it('equal layerNormCpu and rmsNormCpu bit for bit: any width, with and without β, non-finite and zero rows, eps 0, sub-views in and out of the memory', () => {
    const rt = runtime();
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 70 }), fc.integer(), fc.constantFrom(1e-5, 1e-6, 0), fc.boolean(), fc.boolean(), fc.nat(3), (R, C, seed, eps, withBeta, resident, zeroRow) => {
        const values = withNonFinite(randomArray(R * C + 3, seed, 8), seed + 1, R > 1 ? 2 : 0);
        // a row of zeros (with eps 0: 0 · ∞, NaN in both) and a row of equal values (variance 0)
        if (zeroRow < R) values.fill(0, 3 + zeroRow * C, 3 + (zeroRow + 1) * C);
        if (R > 1 && zeroRow + 1 < R) values.fill(-0.75, 3 + (zeroRow + 1) * C, 3 + (zeroRow + 2) * C);
        const x = (resident ? inMemory(rt, values) : values).subarray(3);
        const gamma = randomArray(C + 1, seed + 2, 2).subarray(1), beta = withBeta ? randomArray(C, seed + 3, 1) : undefined;
        const ref = new Float32Array(R * C), out = new Float32Array(R * C).fill(Number.NaN);
        layerNormCpu(x, gamma, beta, eps, R, C, ref);
        normWasm(rt, 'layer', x, gamma, beta, eps, R, C, out);
        expectIdentical(out, ref, `layer norm ${R}×${C}${withBeta ? ' with β' : ''}, eps ${eps}`);
        const rRef = new Float32Array(R * C), rOut = resident ? rt.f32(R * C + 5)!.fill(Number.NaN).subarray(5) : new Float32Array(R * C).fill(Number.NaN);
        rmsNormCpu(x, gamma, eps, R, C, rRef);
        normWasm(rt, 'rms', x, gamma, undefined, eps, R, C, rOut);
        expectIdentical(rOut, rRef, `RMS norm ${R}×${C}, eps ${eps}`);
      }),
      { numRuns: 300, endOnFailure: true },
    );
  });

  it('sum in the TypeScript order: rows whose double sums change with the order give the same values', () => {
    // 1e30 + 1 − 1e30 + 1 + 1 + 1 + 1 is 4 summed in order, 5 with the even and odd entries apart
    // (the 1 after 1e30 is lost either way, the one after −1e30 only in order): the mean moves
    const rt = runtime(), C = 7;
    const x = Float32Array.of(1e30, 1, -1e30, 1, 1, 1, 1, 1e19, 1, -1e19, 1, 5, 2, 1e18);
    const gamma = new Float32Array(C).fill(1), ref = new Float32Array(x.length), out = new Float32Array(x.length);
    layerNormCpu(x, gamma, undefined, 1e-5, 2, C, ref);
    normWasm(rt, 'layer', x, gamma, undefined, 1e-5, 2, C, out);
    expectIdentical(out, ref, 'layer norm of cancelling rows');
    rmsNormCpu(x, gamma, 1e-5, 2, C, ref);
    normWasm(rt, 'rms', x, gamma, undefined, 1e-5, 2, C, out);
    expectIdentical(out, ref, 'RMS norm of cancelling rows');
  });

  it('across the pool (prefill-sized rows) equal the serial TypeScript kernels', () => {
    const rt = runtime(), R = 129, C = 771;
    const x = randomArray(R * C, 11, 5), gamma = randomArray(C, 12, 1), beta = randomArray(C, 13, 1);
    const ref = new Float32Array(R * C), out = new Float32Array(R * C);
    layerNormCpu(x, gamma, beta, 1e-5, R, C, ref);
    normWasm(rt, 'layer', x, gamma, beta, 1e-5, R, C, out);
    expectIdentical(out, ref, `layer norm ${R}×${C}`);
    rmsNormCpu(x, gamma, 1e-6, R, C, ref);
    normWasm(rt, 'rms', x, gamma, undefined, 1e-6, R, C, out);
    expectIdentical(out, ref, `RMS norm ${R}×${C}`);
  });
});

describe('wasm threshold folds', () => {
  // bit for bit: each weight promoted to double, times its double scale, rounded to f32 once
  it('equal foldRowsCpu and foldHalfRowsCpu bit for bit: any width, F32/BF16/F16 weights, non-finite weights and scales, serial and across the pool', () => {
    const rt = runtime();
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 45 }), fc.integer(), fc.constantFrom('f32', 'bf16', 'f16'), fc.boolean(), (N, K, seed, format, pool) => {
        // the pool splits rows from 2^18 weights on: a tall weight of the same width runs there
        const rows = pool ? Math.ceil((1 << 18) / K) + N : N;
        const values = withNonFinite(randomArray(rows * K, seed, 40), seed + 1, 3);
        const scaled = Float64Array.from(withNonFinite(randomArray(K, seed + 2, 3), seed + 3, K > 4 ? 1 : 0), (v, i) => v * 2 ** (i % 7 - 3) / 3);
        const ref = new Float32Array(rows * K), out = rt.f32(rows * K)!.fill(Number.NaN);
        if (format === 'f32') {
          const w = inMemory(rt, values);
          foldRowsCpu(values, scaled, ref, K, 0, rows);
          expect(foldWasm(rt, w, undefined, scaled, out, rows, K)).toBe(true);
          rt.free(w);
        } else {
          // 16-bit patterns over the whole range (subnormals, infinities, NaNs in F16)
          const bits = Uint16Array.from(randomArray(rows * K, seed + 4), (v) => Math.floor(Math.abs(v) * 65536) & 0xffff);
          const w = rt.u16(rows * K)!;
          w.set(bits);
          foldHalfRowsCpu(bits, format, scaled, ref, K, 0, rows);
          expect(foldWasm(rt, w, format, scaled, out, rows, K)).toBe(true);
          rt.free(w);
        }
        expectIdentical(out, ref, `${format} fold ${rows}×${K}`);
        rt.free(out);
      }),
      { numRuns: 120, endOnFailure: true },
    );
  });

  it('refuses, having done nothing, a weight or an output outside the memory', () => {
    const rt = runtime();
    const w = new Float32Array(12).fill(1), out = rt.f32(12)!;
    expect(foldWasm(rt, w, undefined, new Float64Array(4).fill(2), out, 3, 4)).toBe(false);
    expect(Array.from(out)).toEqual(new Array(12).fill(0));
    rt.free(out);
  });
});

describe('the CPU backend with each kernel set', () => {
  const wasm = new CpuBackend({ kernels: 'wasm' }), ts = new CpuBackend({ kernels: 'ts' });

  it('says which set runs', () => {
    expect(wasm.describe()).toMatch(/wasm SIMD/);
    expect(ts.describe()).toMatch(/plain TypeScript/);
  });

  it('uploads weights into the wasm memory (the ts set into a SharedArrayBuffer)', () => {
    const w = Tensor.from([5, 7], randomArray(35, 1));
    expect(runtime().addressOf(wasm.upload(w, 'linear').data)).toBeDefined();
    expect(runtime().addressOf(ts.upload(w, 'linear').data)).toBeUndefined();
    expect(ts.upload(w, 'linear').data.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(wasm.upload(w, 'vector')).toBe(w);
  });

  it('uploadFolded gives, under either set, what uploading the host fold gives; the wasm copy is counted and freed by its dispose', () => {
    const rt = runtime();
    for (const [N, K] of [[5, 7], [700, 400]] as const) {
      const f = Tensor.from([N, K], randomArray(N * K, N));
      const h = new HalfTensor([N, K], 'f16', Uint16Array.from(randomArray(N * K, K), (v) => Math.floor(Math.abs(v) * 65536) & 0xffff));
      const scaled = Float64Array.from(randomArray(K, 3), (v) => v / 7);
      for (const w of [f, h]) {
        const ref = new Float32Array(N * K);
        if (w instanceof HalfTensor) foldHalfRowsCpu(w.bits, w.format, scaled, ref, K, 0, N);
        else foldRowsCpu(w.data, scaled, ref, K, 0, N);
        const [a, b] = [wasm.uploadFolded(wasm.upload(w, 'linear'), scaled), ts.uploadFolded(w, scaled)];
        expectIdentical(a.data, ref, `wasm ${w instanceof HalfTensor ? 'f16' : 'f32'} ${N}×${K}`);
        expectIdentical(b.data, ref, `ts ${w instanceof HalfTensor ? 'f16' : 'f32'} ${N}×${K}`);
        expect(rt.addressOf(a.data)).toBeDefined();
        expect(b.data.buffer).toBeInstanceOf(SharedArrayBuffer);
        expect(wasm.upload(a, 'linear')).toBe(a); // used in place: one more owner, no copy
        const live = rt.liveBytes;
        wasm.dispose(a);
        expect(rt.liveBytes).toBe(live);
        wasm.dispose(a);
        expect(Math.ceil((N * K * 4) / 64) * 64, 'freed by the last owner (in 64-byte blocks)').toBe(live - rt.liveBytes);
      }
    }
    expect(() => wasm.uploadFolded(Tensor.from([2, 3], randomArray(6, 1)), new Float64Array(2))).toThrow(/fold of weight \[2, 3\] with 2 scales/);
  });

  it('products agree across the sets, from sub-views, with bias and residual, serial and across the pool', () => {
    // the last two shapes cross the pool's thresholds (matrix–vector from 2^17, matmul from 2^20 multiply-adds)
    for (const [M, K, N] of [[1, 13, 9], [3, 30, 21], [7, 37, 29], [1, 600, 701], [9, 330, 515]] as const) {
      const big = randomArray(M * K + 11, M + K), wBig = randomArray(N * K + 5, N);
      const x = new Tensor([M, K], big.subarray(3, 3 + M * K));
      const w = new Tensor([N, K], wBig.subarray(5));
      const bias = Tensor.from([N], randomArray(N, 7)), residual = Tensor.from([M, N], randomArray(M * N, 8));
      const [ww, wt] = [wasm.upload(w, 'linear'), ts.upload(w, 'linear')];
      expectClose(wasm.matmul(x, ww, bias, residual).data, ts.matmul(x, wt, bias, residual).data, TOL.f32, `matmul ${M}×${K}×${N}`);
      const s = new Tensor([M, K], spikes(M * K + 4, 0.1, K).subarray(4));
      for (const kernel of ['dense', 'event'] as const) {
        expectWithinUlps(wasm.spikeMatmul(s, ww, bias, residual, kernel).data, ts.spikeMatmul(s, wt, bias, residual, kernel).data, 1, `spike ${kernel} ${M}×${K}×${N}`);
      }
      // a weight that lives in the wasm memory as a sub-view of a larger allocation
      const inner = runtime().f32(N * K + 8)!;
      inner.set(w.data, 8);
      const sub = new Tensor([N, K], inner.subarray(8));
      expect(wasm.upload(sub, 'linear')).toBe(sub);
      expectClose(wasm.matmul(x, sub, bias).data, ts.matmul(x, wt, bias).data, TOL.f32, `sub-view weight ${M}×${K}×${N}`);
    }
  });

  it('tile products across the pool (column chunks taken by whichever thread is free) equal the serial kernel bit for bit', () => {
    const rt = runtime();
    for (const [M, K, N] of [[4, 300, 877], [9, 257, 515], [16, 128, 1029]] as const) {
      const x = inMemory(rt, randomArray(M * K, K)), w = inMemory(rt, randomArray(N * K, N)), b = inMemory(rt, randomArray(N, 3));
      const wt = new Tensor([N, K], w), xt = new Tensor([M, K], x), bt = new Tensor([N], b);
      expect(M * K * N).toBeGreaterThanOrEqual(PARALLEL_MIN_MACS);
      for (const [name, product] of [['matmulF32Tile4x4', () => wasm.matmul(xt, wt, bt)], ['matmulF64Tile4x4', () => wasm.spikeMatmul(xt, wt, bt, undefined, 'dense')]] as const) {
        const serial = inMemory(rt, new Float32Array(M * N).fill(Number.NaN));
        rt.kernels[name](addr(rt, x), addr(rt, w), addr(rt, b), addr(rt, serial), M, K, N, 0, N);
        // twice: the chunk counter starts afresh for every product
        for (let rep = 0; rep < 2; rep++) expectWithinUlps(product().data, serial, 0, `${name} ${M}×${K}×${N} across the pool, product ${rep + 1}`);
      }
    }
  });

  it('plane products agree across the sets', () => {
    const R = 5, P = 6, K = 70, N = 90;
    const w = Tensor.from([N, K], randomArray(N * K, 3));
    const d = Tensor.from([P * R, K], spikes(P * R * K, 0.2, 4, 1));
    const bias = Tensor.from([N], randomArray(N, 5));
    for (const growth of [1, 2] as const) {
      expectWithinUlps(wasm.planeMatmul(d, P, growth, wasm.upload(w, 'linear'), bias).data, ts.planeMatmul(d, P, growth, ts.upload(w, 'linear'), bias).data, 1, `planes growth ${growth}`);
    }
  });
});

describe('the shared memory allocator', () => {
  it('reuses released ranges, merges neighbours and returns the top to the bump pointer', () => {
    runtime();
    const rt = new WasmRuntime(); // a memory of its own, so nothing else allocates in between
    const a = rt.alloc(1000)!, b = rt.alloc(3000)!, c = rt.alloc(64)!;
    expect(b).toBeGreaterThanOrEqual(a + 1000);
    const live = rt.liveBytes;
    rt.release(a, 1000);
    expect(rt.alloc(900)).toBe(a); // first fit: the freed range
    rt.release(a, 900);
    rt.release(b, 3000);
    // a and b merged: 4000 bytes fit where a began
    const merged = rt.alloc(4000)!;
    expect(merged).toBe(a);
    rt.release(merged, 4000);
    rt.release(c, 64);
    expect(rt.liveBytes).toBe(live - 1024 - 3008 - 64);
    // everything above `a` is free again, so the next allocation starts at `a`
    expect(rt.alloc(10_000)).toBe(a);
    // arrays are zeroed, also where the bytes were used before
    const used = rt.f32(5000)!.fill(7);
    rt.free(used);
    expect(rt.f32(5000)!.every((v) => v === 0)).toBe(true);
  });

  it('holds the memory flat when weights come and go (released when collected)', async () => {
    const rt = runtime();
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const cpu = new CpuBackend({ kernels: 'wasm' });
    const before = rt.byteLength, liveBefore = rt.liveBytes;
    // 200 models' worth of 4 MB weights, each dropped after one product
    for (let i = 0; i < 200; i++) {
      const w = cpu.upload(Tensor.from([1024, 1024], new Float32Array(1 << 20).fill(i)), 'linear');
      expect(cpu.matmul(Tensor.from([1, 1024], new Float32Array(1024).fill(1)), w).data[0]).toBe(1024 * i);
      if (i % 20 === 19) {
        gc();
        await new Promise((r) => setTimeout(r, 0));
      }
    }
    // without releases the memory would have grown by 800 MB; with them it holds the 20 weights made
    // between two collections and those collected but not yet finalized (measured: 160 MB)
    expect(rt.byteLength - before).toBeLessThan(50 * (4 << 20));
    gc();
    for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 0));
    expect(rt.liveBytes - liveBefore).toBeLessThan(2 * (4 << 20));
  });
});

describe('whole models with each kernel set (the cross-set tolerance and spike budget)', () => {
  it('stories260k: the ANN within TOL.golden; the conversion fits the same thresholds; the SNN with them: the same spike counts, logits to one float32 rounding', async () => {
    const dir = fixtureDir('stories260k');
    const tok = loadTokenizer(dir);
    const ids = Array.from(tok.encode('Once upon a time, there was a little girl named Lily. She loved to play outside'));
    const sets = { ts: new CpuBackend({ kernels: 'ts' }), wasm: new CpuBackend({ kernels: 'wasm' }) };
    const ann = { ts: loadModel(dir, { backend: sets.ts }), wasm: loadModel(dir, { backend: sets.wasm }) };
    // the ANN's products sum in float32 (wasm) against doubles (ts): measured max |Δ| 6.2e-6 on logits up to 22 (gpt2-random-f16 1.1e-6, qwen3-random 3.0e-6)
    const [lt, lw] = [ann.ts.forward(ids, ann.ts.newCache(), { allLogits: true }), ann.wasm.forward(ids, ann.wasm.newCache(), { allLogits: true })].map((t) => (t as Tensor).data);
    expectClose(lw!, lt!, TOL.golden, 'ANN logits, wasm vs ts');
    // the spiking network converted once (ts), rebuilt on the wasm set with the same thresholds
    const data = createCalibrationData(tok, { numSamples: 2 });
    const { snn } = await convertModelToSpiking(ann.ts, data);
    // the calibration's probe sums exactly in both sets: the conversion fits the same thresholds
    const { snn: converted } = await convertModelToSpiking(ann.wasm, data);
    for (const [site, th] of snn.spiking.thresholds) expectWithinUlps(converted.spiking.thresholds.get(site)!, th, 0, `thresholds of ${site}, wasm vs ts`);
    converted.dispose();
    const twin = new SpikingLM(snn.config, snn.weights, sets.wasm, snn.spiking);
    for (const execution of ['fast', 'event'] as const) {
      const [a, b] = [snn.with({ execution }), twin.with({ execution })];
      const oa = a.forward(ids, a.newCache(), { allLogits: true }), ob = b.forward(ids, b.newCache(), { allLogits: true });
      const [sa, sb] = [(await forwardStats(a, oa)).summary(), (await forwardStats(b, ob)).summary()];
      // spike products sum exactly in both sets: no flipped spike measured (the budget: none)
      sa.perSite.forEach((site, i) => expect(sb.perSite[i]!.events, `${execution} ${site.site}`).toBe(site.events));
      expectWithinUlps((ob.logits as Tensor).data, (oa.logits as Tensor).data, 1, `SNN ${execution} logits, wasm vs ts`);
    }
    twin.dispose();
    snn.dispose();
  });
});

describe('weights freed by dispose', () => {
  it('an uploaded weight is freed by its last owner\'s dispose, not before', () => {
    const rt = runtime();
    const cpu = new CpuBackend({ kernels: 'wasm' });
    const w = Tensor.from([64, 64], randomArray(4096, 9));
    const [a, b] = [cpu.upload(w, 'linear'), cpu.upload(w, 'linear')];
    expect(b).toBe(a); // one copy, two owners
    const live = rt.liveBytes;
    cpu.dispose(a);
    expect(rt.liveBytes).toBe(live);
    // what a's dispose might have freed is handed out again and overwritten
    const junk = Array.from({ length: 8 }, () => rt.f32(4096)!.fill(Number.NaN));
    expect(Array.from(b.data)).toEqual(Array.from(w.data));
    const withJunk = rt.liveBytes;
    cpu.dispose(b);
    expect(withJunk - rt.liveBytes).toBe(4096 * 4);
    for (const j of junk) rt.free(j);
  });

  it('uploading an uploaded copy counts one more owner (float32 and 16-bit copies alike)', () => {
    const rt = runtime();
    const cpu = new CpuBackend({ kernels: 'wasm' });
    const f = Tensor.from([64, 64], randomArray(4096, 10));
    const h = new HalfTensor([64, 64], 'bf16', Uint16Array.from(randomArray(4096, 11), (v) => (Math.fround(v) === 0 ? 0 : 0x3f80 + (Math.abs(v * 100) & 0x7f))));
    for (const w of [f, h]) {
      const a = cpu.upload(w, 'linear');
      const b = cpu.upload(a, 'linear');
      expect(b).toBe(a);
      const live = rt.liveBytes;
      cpu.dispose(a);
      expect(rt.liveBytes, `${w instanceof HalfTensor ? 'bf16' : 'f32'}: still owned`).toBe(live);
      cpu.dispose(b);
      expect(live - rt.liveBytes, `${w instanceof HalfTensor ? 'bf16' : 'f32'}: freed by the last owner`).toBe(w instanceof HalfTensor ? 4096 * 2 : 4096 * 4);
    }
  });

  it('a spiking model frees its folded weights on dispose; a weight shared with the ANN stays until its last owner lets go', async () => {
    const rt = runtime();
    const dir = fixtureDir('stories260k');
    const tok = loadTokenizer(dir);
    const cpu = new CpuBackend({ kernels: 'wasm' });
    const ann = loadModel(dir, { backend: cpu });
    const ids = Array.from(tok.encode('Once upon a time'));
    const before = (ann.forward(ids, ann.newCache()) as Tensor).data.slice();
    const { snn } = await convertModelToSpiking(ann, createCalibrationData(tok, { numSamples: 2 }));
    const event = snn.with({ execution: 'event' });
    event.forward(ids, event.newCache()); // makes transposed copies, in the wasm memory too
    const live = rt.liveBytes;
    snn.dispose();
    // 5 layers × (q, k, v, o, gate, up, down) folded at 64 wide plus the head: ≥ 0.5 MB, with transposes
    expect(live - rt.liveBytes).toBeGreaterThan(500_000);
    // the freed bytes are handed out again (and overwritten) …
    const junk: Float32Array[] = [];
    for (let got = 0; got < live - rt.liveBytes + (1 << 20); got += 16384) junk.push(rt.f32(4096)!.fill(Number.NaN));
    // … but the tied embedding the SNN also uploaded is the ANN's copy: still there, the ANN still right
    expect(Array.from((ann.forward(ids, ann.newCache()) as Tensor).data)).toEqual(Array.from(before));
    for (const j of junk) rt.free(j);
    // a second dispose frees nothing more
    const after = rt.liveBytes;
    snn.dispose();
    expect(rt.liveBytes).toBe(after);
  });
});
