/**
 * CPU kernels against their definitions: the blocked and threaded matmul against the plain loop,
 * fused attention against the composite of primitives, and the laws each op must satisfy.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { attentionComposite, attentionCpu } from '../src/tensor/kernels/attention.js';
import { erf, geluErf, geluTanh, silu } from '../src/tensor/kernels/elementwise.js';
import { matmulBlocked, matmulCpu, matmulReference, matvecBlocked } from '../src/tensor/kernels/matmul.js';
import { layerNormCpu, qkNormCpu, rmsNormCpu } from '../src/tensor/kernels/norm.js';
import { ropeCpu, ropeInvFreq } from '../src/tensor/kernels/rope.js';
import { softmaxCpu } from '../src/tensor/kernels/softmax.js';
import { PARALLEL_MIN_MACS, PARALLEL_MIN_MATVEC_MACS, parallelMatmul } from '../src/tensor/threads.js';
import { Tensor, allocF32 } from '../src/tensor/tensor.js';
import { TOL, expectClose, randomArray } from './helpers/tolerance.js';

const dims = fc.integer({ min: 1, max: 19 });

describe('matmul', () => {
  it('blocked kernel equals the reference at random shapes, including M=1 and odd K/N', () => {
    fc.assert(
      fc.property(dims, dims, dims, fc.boolean(), fc.integer(), (M, K, N, withBias, seed) => {
        const x = randomArray(M * K, seed), w = randomArray(N * K, seed + 1), b = withBias ? randomArray(N, seed + 2) : undefined;
        const y = new Float32Array(M * N);
        matmulBlocked(x, w, b ?? null, y, M, K, N, 0, N);
        expectClose(y, matmulReference(x, w, b, M, K, N), TOL.f32, `matmul ${M}x${K}x${N}`);
      }),
      { numRuns: 200 },
    );
  });

  it('matrix–vector kernel equals the reference for 1–3 rows at random K, N (full 8-column blocks and the tail), on any column range', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 3 }), dims, fc.integer({ min: 1, max: 40 }), fc.boolean(), fc.integer(), fc.nat(), (M, K, N, withBias, seed, cut) => {
        const x = randomArray(M * K, seed), w = randomArray(N * K, seed + 1), b = withBias ? randomArray(N, seed + 2) : undefined;
        const y = new Float32Array(M * N).fill(Number.NaN);
        const c = cut % (N + 1);
        matvecBlocked(x, w, b ?? null, y, M, K, N, 0, c);
        matvecBlocked(x, w, b ?? null, y, M, K, N, c, N);
        expectClose(y, matmulReference(x, w, b, M, K, N), TOL.f32, `matvec ${M}x${K}x${N} split at ${c}`);
      }),
      { numRuns: 300 },
    );
  });

  it('matrix–vector products split across the pool from a smaller size, and equal the reference', () => {
    for (const M of [1, 3]) {
      const K = 301, N = 1031;
      expect(M * K * N).toBeGreaterThan(PARALLEL_MIN_MATVEC_MACS);
      expect(M * K * N).toBeLessThan(PARALLEL_MIN_MACS);
      const x = allocF32(M * K), w = allocF32(N * K), b = allocF32(N), y = allocF32(M * N);
      x.set(randomArray(M * K, 4)); w.set(randomArray(N * K, 5)); b.set(randomArray(N, 6));
      const used = parallelMatmul(x, w, b, y, M, K, N);
      expect(used || process.env.SPIKELM_THREADS === '1').toBe(true);
      expectClose(y, matmulReference(x, w, b, M, K, N), TOL.f32, `threaded matvec M=${M}`);
    }
  });

  it('the threaded split equals the reference on a product large enough to use the pool', () => {
    const M = 37, K = 301, N = 331;
    expect(M * K * N).toBeGreaterThan(PARALLEL_MIN_MACS);
    const x = allocF32(M * K), w = allocF32(N * K), b = allocF32(N), y = allocF32(M * N);
    x.set(randomArray(M * K, 1)); w.set(randomArray(N * K, 2)); b.set(randomArray(N, 3));
    const used = parallelMatmul(x, w, b, y, M, K, N);
    expect(used || process.env.SPIKELM_THREADS === '1').toBe(true);
    expectClose(y, matmulReference(x, w, b, M, K, N), TOL.f32, 'threaded matmul');
    const y2 = allocF32(M * N);
    matmulCpu(x, w, b, y2, M, K, N);
    expectClose(y2, y, { atol: 0, rtol: 0 }, 'dispatcher vs pool');
  });

  it('rejects mismatched shapes with a message naming the dimensions', () => {
    const cpu = new CpuBackend();
    expect(() => cpu.matmul(new Tensor([2, 3]), new Tensor([4, 5]))).toThrow(/disagree on K/);
  });
});

describe('norms, softmax, activations', () => {
  it('layerNorm rows have mean 0 and variance 1 (γ=1, β=0); rmsNorm rows have mean square 1', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 2, max: 40 }), fc.integer(), (R, C, seed) => {
        const x = randomArray(R * C, seed, 10);
        const ones = new Float32Array(C).fill(1);
        const y = new Float32Array(R * C);
        layerNormCpu(x, ones, undefined, 0, R, C, y);
        for (let r = 0; r < R; r++) {
          const row = Array.from(y.subarray(r * C, (r + 1) * C));
          const mean = row.reduce((a, b) => a + b, 0) / C;
          const variance = row.reduce((a, b) => a + (b - mean) ** 2, 0) / C;
          expect(Math.abs(mean)).toBeLessThan(1e-5);
          if (variance > 0) expect(Math.abs(variance - 1)).toBeLessThan(1e-4);
        }
        rmsNormCpu(x, ones, 0, R, C, y);
        for (let r = 0; r < R; r++) {
          const ms = Array.from(y.subarray(r * C, (r + 1) * C)).reduce((a, b) => a + b * b, 0) / C;
          expect(Math.abs(ms - 1)).toBeLessThan(1e-4);
        }
      }),
    );
  });

  it('softmax rows sum to 1, masked entries are exactly 0, and large inputs stay finite', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 0, max: 5 }), fc.integer(), (S, extra, queryStart, seed) => {
        const C = queryStart + S + extra - 1;
        const heads = 2;
        const x = randomArray(heads * S * C, seed, 500);
        const y = new Float32Array(x.length);
        softmaxCpu(x, heads * S, C, y, { queries: S, queryStart });
        for (let r = 0; r < heads * S; r++) {
          const limit = Math.min(C, queryStart + (r % S) + 1);
          const row = y.subarray(r * C, (r + 1) * C);
          expect(row.every(Number.isFinite)).toBe(true);
          expect(Math.abs(row.reduce((a, b) => a + b, 0) - 1)).toBeLessThan(1e-5);
          for (let c = limit; c < C; c++) expect(row[c]).toBe(0);
        }
      }),
    );
  });

  it('activations match known values', () => {
    expect(erf(0)).toBeCloseTo(0, 7);
    expect(erf(1)).toBeCloseTo(0.8427007929, 6);
    expect(erf(-2)).toBeCloseTo(-0.995322265, 6);
    expect(geluErf(1)).toBeCloseTo(0.8413447461, 6);
    expect(geluTanh(1)).toBeCloseTo(0.8411919906, 6);
    expect(silu(2)).toBeCloseTo(1.7615941559, 6);
    expect(geluTanh(-10)).toBeCloseTo(0, 6);
  });
});

describe('rope', () => {
  it('is a rotation: position 0 is the identity, norms per pair are kept, and it composes additively', () => {
    const H = 3, d = 8, S = 5;
    const inv = ropeInvFreq(d, 10000);
    const x = randomArray(S * H * d, 7);
    const y = new Float32Array(x.length);
    ropeCpu(x, new Int32Array(S), H, d, inv, y);
    expectClose(y, x, TOL.f32, 'rope at position 0');
    const pos = Int32Array.from({ length: S }, (_, i) => i * 3 + 1);
    ropeCpu(x, pos, H, d, inv, y);
    for (let s = 0; s < S; s++)
      for (let h = 0; h < H; h++)
        for (let i = 0; i < d / 2; i++) {
          const o = s * H * d + h * d;
          const before = Math.hypot(x[o + i]!, x[o + i + d / 2]!), after = Math.hypot(y[o + i]!, y[o + i + d / 2]!);
          expect(after).toBeCloseTo(before, 5);
        }
    // rotate by p then by q = rotate by p + q
    const z = new Float32Array(x.length), zz = new Float32Array(x.length), direct = new Float32Array(x.length);
    ropeCpu(x, Int32Array.from(pos, (p) => p), H, d, inv, z);
    ropeCpu(z, new Int32Array(S).fill(4), H, d, inv, zz);
    ropeCpu(x, Int32Array.from(pos, (p) => p + 4), H, d, inv, direct);
    expectClose(zz, direct, { atol: 1e-5, rtol: 1e-4 }, 'rope composition');
  });

  it('llama3 scaling leaves high frequencies alone and divides low ones by the factor', () => {
    const base = ropeInvFreq(64, 500000);
    const scaled = ropeInvFreq(64, 500000, { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
    expect(scaled[0]).toBe(base[0]);
    expect(scaled[31]).toBeCloseTo(base[31]! / 8, 12);
  });
});

describe('attention', () => {
  it('the fused kernel equals the composite of primitives (GQA, cache offsets, odd sizes)', () => {
    fc.assert(
      fc.property(fc.constantFrom([4, 4], [4, 2], [6, 3], [3, 1]), fc.integer({ min: 1, max: 7 }), fc.integer({ min: 0, max: 6 }), fc.integer({ min: 1, max: 5 }), fc.integer(), ([H, Hkv], S, past, half, seed) => {
        const d = 2 * half;
        const L = past + S;
        const q = randomArray(S * H * d, seed, 2), k = randomArray((L + 3) * Hkv * d, seed + 1, 2), v = randomArray((L + 3) * Hkv * d, seed + 2);
        const params = { numHeads: H, numKvHeads: Hkv, headDim: d, queryStart: past, kvLength: L, scale: 1 / Math.sqrt(d) };
        const fused = new Float32Array(S * H * d);
        attentionCpu(q, k, v, S, params, fused);
        expectClose(fused, attentionComposite(q, k.subarray(0, L * Hkv * d), v.subarray(0, L * Hkv * d), S, params), TOL.f32, 'attention');
      }),
      { numRuns: 100 },
    );
  });

  it('a query attends only to itself and the past (causality)', () => {
    const H = 2, d = 4, S = 4;
    const q = randomArray(S * H * d, 1), k = randomArray(S * H * d, 2), v = randomArray(S * H * d, 3);
    const params = { numHeads: H, numKvHeads: H, headDim: d, queryStart: 0, kvLength: S, scale: 0.5 };
    const a = new Float32Array(S * H * d), b = new Float32Array(S * H * d);
    attentionCpu(q, k, v, S, params, a);
    const v2 = v.slice();
    v2.fill(99, 3 * H * d); // change the future (last position) only
    attentionCpu(q, k, v2, S, params, b);
    expectClose(b.subarray(0, 3 * H * d), a.subarray(0, 3 * H * d), { atol: 0, rtol: 0 }, 'past rows unchanged');
  });
});

describe('the new families\' kernels against plain references', () => {
  it('sliding-window attention: each query sees keys i − W < j ≤ i (an explicit masked softmax here)', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 20 }), fc.integer({ min: 1, max: 12 }), fc.integer(), (S, past, W, seed) => {
      const H = 4, Hkv = 2, d = 6, L = past + S;
      const q = randomArray(S * H * d, seed, 1.5), k = randomArray(L * Hkv * d, seed + 1, 1.5), v = randomArray(L * Hkv * d, seed + 2);
      const out = new Float32Array(S * H * d);
      attentionCpu(q, k, v, S, { numHeads: H, numKvHeads: Hkv, headDim: d, queryStart: past, kvLength: L, scale: 1 / Math.sqrt(d), window: W }, out);
      const expected = new Float32Array(S * H * d);
      for (let s = 0; s < S; s++) {
        const i = past + s;
        for (let h = 0; h < H; h++) {
          const g = Math.floor(h / 2);
          const w = Array.from({ length: L }, (_, j) => {
            if (j > i || j <= i - W) return -Infinity;
            let dot = 0;
            for (let c = 0; c < d; c++) dot += q[s * H * d + h * d + c]! * k[j * Hkv * d + g * d + c]!;
            return dot / Math.sqrt(d);
          });
          const m = Math.max(...w), e = w.map((x) => Math.exp(x - m)), z = e.reduce((a, b) => a + b, 0);
          for (let c = 0; c < d; c++) expected[s * H * d + h * d + c] = e.reduce((a, p, j) => a + (p / z) * v[j * Hkv * d + g * d + c]!, 0);
        }
      }
      expectClose(out, expected, TOL.f32, `S=${S} past=${past} W=${W}`);
    }), { numRuns: 60, seed: 31 });
  });

  it('qkNorm: each q and k head rmsNorm\'d with its gain, v untouched', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 3 }), fc.constantFrom(2, 6, 24), fc.integer(), (R, group, Hkv, d, seed) => {
      const H = Hkv * group, W = (H + 2 * Hkv) * d;
      const x = randomArray(R * W, seed, 2), gq = randomArray(d, seed + 1, 0.3).map((g) => 1 + g), gk = randomArray(d, seed + 2, 0.3).map((g) => 1 + g);
      const out = new Float32Array(R * W);
      qkNormCpu(x, gq, gk, { numHeads: H, numKvHeads: Hkv, headDim: d }, 1e-6, R, out);
      const expected = new Float32Array(R * W);
      for (let r = 0; r < R; r++) {
        for (let h = 0; h < H + 2 * Hkv; h++) {
          const o = r * W + h * d, row = Array.from(x.subarray(o, o + d));
          const ms = row.reduce((a, b) => a + b * b, 0) / d;
          const gain = h < H ? gq : h < H + Hkv ? gk : undefined;
          row.forEach((vv, i) => (expected[o + i] = gain ? (vv / Math.sqrt(ms + 1e-6)) * gain[i]! : vv));
        }
      }
      expectClose(out, expected, TOL.f32, `R=${R} H=${H} Hkv=${Hkv} d=${d}`);
    }), { numRuns: 40, seed: 32 });
  });
});
