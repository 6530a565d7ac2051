/**
 * Every WGSL kernel variant against its CPU twin on random inputs, at shapes that are not multiples
 * of the workgroup size (M=1, odd K and N). Each variant's worst max |Δ| and relative RMS error over
 * the sampled shapes is printed.
 */
import fc from 'fast-check';
import { type TestContext, afterAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { type GpuBackend, weightFormatFor } from '../src/tensor/gpu/gpu-backend.js';
import { GpuTensor } from '../src/tensor/gpu/runtime.js';
import { GpuError } from '../src/tensor/gpu/device.js';
import { type Reduction, type RowVariant, chooseReduction } from '../src/tensor/gpu/variants.js';
import type { Activation } from '../src/tensor/kernels/elementwise.js';
import { type MatmulVariant, type WeightFormat, isF16Exact, matmulGpu, matmulReference, packLinearWeight } from '../src/tensor/kernels/matmul.js';
import { f16BitsToNumber, numberToF16Bits } from '../src/tensor/dtype.js';
import { ropeInvFreq } from '../src/tensor/kernels/rope.js';
import { attentionGpu } from '../src/tensor/kernels/attention.js';
import { Tensor } from '../src/tensor/tensor.js';
import { requireGpu } from './helpers/backends.js';
import { TOL, compare, randomArray } from './helpers/tolerance.js';

const cpu = new CpuBackend();
const report = new Map<string, { maxAbs: number; relRms: number; cases: number }>();

function check(name: string, actual: Float32Array, expected: Float32Array, tol = TOL.gpuKernel): void {
  const c = compare(actual, expected, tol);
  const r = report.get(name) ?? { maxAbs: 0, relRms: 0, cases: 0 };
  report.set(name, { maxAbs: Math.max(r.maxAbs, c.maxAbsError), relRms: Math.max(r.relRms, c.relRmsError), cases: r.cases + 1 });
  if (!c.ok) expect.fail(`${name}: max |Δ| ${c.maxAbsError.toExponential(2)}, rel RMS ${c.relRmsError.toExponential(2)}; first mismatches ${c.mismatches.join('; ')}`);
}

afterAll(() => {
  if (report.size === 0) return;
  const lines = [...report].map(([k, v]) => `  ${k.padEnd(34)} max |Δ| ${v.maxAbs.toExponential(2)}  rel RMS ${v.relRms.toExponential(2)}  (${v.cases} cases)`);
  console.log(`GPU vs CPU parity (tolerance ${TOL.gpuKernel.atol} + ${TOL.gpuKernel.rtol}·|ref|):\n${lines.join('\n')}`);
});

/** Each value rounded to binary16 and back (the f16 weight format's storage, on the CPU). */
const roundToF16 = (a: Float32Array) => a.map((v) => f16BitsToNumber(numberToF16Bits(v)));

const t = (shape: number[], seed: number, scale = 1) => Tensor.from(shape, randomArray(shape.reduce((a, b) => a * b, 1), seed, scale));
const RUNS = { numRuns: 12 };
const odd = fc.integer({ min: 1, max: 70 });

async function read(g: GpuBackend, x: unknown): Promise<Float32Array> {
  return (await g.read(x as GpuTensor)).data;
}

describe('matmul variants', () => {
  const packed: MatmulVariant[] = ['blocked4', 'blocked1', 'tiled', 'splitk'];
  const formats: WeightFormat[] = ['f32', 'f16'];
  it.for(packed.flatMap((v) => formats.map((f) => [v, f] as const)))('%s, weights in %s, equals the reference, with and without bias / residual and with the weight split into chunks', async ([variant, format], ctx) => {
    const g = await requireGpu(ctx);
    await fc.assert(
      // M up to 150: the tiled variant's 64-row tiles, full and partial
      fc.asyncProperty(fc.integer({ min: 1, max: variant === 'tiled' ? 150 : 37 }), odd, odd, fc.boolean(), fc.boolean(), fc.integer(), async (M, K, N, withBias, chunked, seed) => {
        const x = t([M, K], seed), w = t([N, K], seed + 1), b = t([N], seed + 2), r = t([M, N], seed + 3);
        const withResidual = seed % 2 === 0;
        const rt = g.rt;
        // chunks of 8 columns (K·8 values) exercise the split path of large LM heads
        const weight = packLinearWeight(rt, w, chunked ? K * 8 * (format === 'f16' ? 2 : 4) : undefined, format);
        if (chunked) expect(weight.chunks.length).toBe(Math.ceil(N / 8));
        const xg = rt.fromHost([M, K], x.data), bg = rt.fromHost([N], b.data), rg = rt.fromHost([M, N], r.data);
        const y = rt.alloc([M, N]);
        matmulGpu(rt, xg, weight, withBias ? bg : undefined, y, M, K, N, variant, withResidual ? rg : undefined);
        // f16: the reference multiplies by the weights rounded to binary16 (round to nearest even, dtype.ts)
        const wRef = format === 'f16' ? roundToF16(w.data) : w.data;
        const expected = matmulReference(x.data, wRef, withBias ? b.data : undefined, M, K, N);
        if (withResidual) for (let i = 0; i < expected.length; i++) expected[i] = expected[i]! + r.data[i]!;
        check(`matmul ${variant} ${format}${chunked ? ' (chunked)' : ''}`, await rt.read(y), expected);
        g.dispose(weight);
        for (const z of [xg, bg, rg, y]) rt.release(z);
      }),
      RUNS,
    );
  });

  it.for(packed)('%s: a non-finite input in one row stays in that row (tiles past K or M read zeros)', async (variant, ctx) => {
    const g = await requireGpu(ctx);
    const M = 3, K = 5, N = 6;
    const x = t([M, K], 1), w = t([N, K], 2);
    x.data[K] = Infinity; // row 1
    const weight = packLinearWeight(g.rt, w);
    const y = g.rt.alloc([M, N]);
    matmulGpu(g.rt, g.rt.fromHost([M, K], x.data), weight, undefined, y, M, K, N, variant);
    const out = await g.rt.read(y), expected = matmulReference(x.data, w.data, undefined, M, K, N);
    for (const row of [0, 2]) check(`matmul ${variant} rows beside a non-finite one`, out.subarray(row * N, (row + 1) * N), expected.subarray(row * N, (row + 1) * N));
    expect(out.subarray(N, 2 * N).every((v) => !Number.isFinite(v))).toBe(true);
  });

  it('the f16 format is chosen only where it is lossless (auto) or asked for', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: 64 }), fc.nat(), (halves, at) => {
        const exact = Float32Array.from(halves.filter((h) => (h & 0x7c00) !== 0x7c00).map(f16BitsToNumber));
        fc.pre(exact.length > 0);
        expect(isF16Exact(exact)).toBe(true);
        expect(weightFormatFor('auto', new Tensor([exact.length], exact))).toBe('f16');
        expect(weightFormatFor('f32', new Tensor([exact.length], exact))).toBe('f32');
        const off = exact.slice();
        const i = at % off.length;
        off[i] = off[i] === 0 ? 1e-9 : off[i]! * (1 + 2 ** -20); // between two binary16 values
        expect(isF16Exact(off)).toBe(false);
        expect(weightFormatFor('auto', new Tensor([off.length], off))).toBe('f32');
        expect(weightFormatFor('f16', new Tensor([off.length], off))).toBe('f16');
      }),
    );
    // the bitwise test agrees with its definition (equal to itself rounded to binary16, finite) on
    // float32 values around binary16's range, normal and subnormal, with few or many low bits set
    const definition = (v: number) => Number.isFinite(v) && f16BitsToNumber(numberToF16Bits(v)) === v;
    fc.assert(
      fc.property(fc.boolean(), fc.integer({ min: 95, max: 145 }), fc.integer({ min: 0, max: 0x7fffff }), fc.integer({ min: 0, max: 23 }), (neg, exp, mant, zeros) => {
        const bits = ((neg ? 0x80000000 : 0) | (exp << 23) | (mant & ~((1 << zeros) - 1))) >>> 0;
        const v = new Float32Array(new Uint32Array([bits]).buffer);
        expect(isF16Exact(v)).toBe(definition(v[0]!));
      }),
      { numRuns: 3000 },
    );
    expect(isF16Exact(Float32Array.of(1, Infinity))).toBe(false);
    expect(isF16Exact(Float32Array.of(NaN))).toBe(false);
    expect(isF16Exact(Float32Array.of(0, -0, 2 ** -24, -(2 ** -14), 65504))).toBe(true);
    expect(isF16Exact(Float32Array.of(2 ** -25))).toBe(false);
    expect(isF16Exact(Float32Array.of(65504, 70000))).toBe(false); // past binary16's largest finite value
  });

  it('plain (unpacked [N, K] weight made on the GPU) equals the reference', async (ctx) => {
    const g = await requireGpu(ctx);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 9 }), odd, odd, fc.integer(), async (M, K, N, seed) => {
        const x = t([M, K], seed), w = t([N, K], seed + 1), b = t([N], seed + 2);
        check('matmul plain', await read(g, g.matmul(g.upload(x), g.upload(w), g.upload(b))), matmulReference(x.data, w.data, b.data, M, K, N));
      }),
      RUNS,
    );
  });
});

describe('elementwise, norms, softmax, rope, attention, gather, copies', () => {
  it('add / mul (same shape and row broadcast) and scale', async (ctx) => {
    const g = await requireGpu(ctx);
    await fc.assert(
      fc.asyncProperty(odd, odd, fc.boolean(), fc.integer(), async (R, C, broadcast, seed) => {
        const a = t([R, C], seed), b = broadcast ? t([C], seed + 1) : t([R, C], seed + 1);
        check('add', await read(g, g.add(g.upload(a), g.upload(b))), cpu.add(a, b).data);
        check('mul', await read(g, g.mul(g.upload(a), g.upload(b))), cpu.mul(a, b).data);
        check('scale', await read(g, g.scale(g.upload(a), -1.7)), cpu.scale(a, -1.7).data);
      }),
      RUNS,
    );
  });

  it.for(['gelu_tanh', 'gelu_erf', 'gelu_quick', 'silu', 'relu'] as Activation[])('activation %s, including large |x|', async (kind, ctx) => {
    const g = await requireGpu(ctx);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 300 }), fc.integer(), async (n, seed) => {
        const a = t([n], seed, 12);
        a.data[0] = 80; if (n > 1) a.data[1] = -80;
        check(`activation ${kind}`, await read(g, g.activation(kind, g.upload(a))), cpu.activation(kind, a).data);
      }),
      RUNS,
    );
  });

  // each row-reduction shape, forced one at a time (SPIKELM_ROWS), the workgroup one with each way of
  // reducing (SPIKELM_REDUCE), at rows narrower and wider than a workgroup
  const ROW_CASES = [['row', 'workgroup'], ['workgroup', 'workgroup'], ['workgroup', 'subgroup']] as const satisfies readonly (readonly [RowVariant, Reduction])[];
  const withRows = async (g: GpuBackend, ctx: TestContext, [variant, reduction]: readonly [RowVariant, Reduction], fn: () => Promise<void>) => {
    if (reduction === 'subgroup' && !g.rt.ctx.report.subgroupReductions) {
      // reported as not run, never passed: test/subgroups.test.ts runs these kernels on Chromium's SwiftShader
      console.warn(`subgroup reductions not run on this adapter: ${g.rt.ctx.report.subgroupNote}`);
      ctx.skip();
    }
    const saved = [process.env.SPIKELM_ROWS, process.env.SPIKELM_REDUCE];
    process.env.SPIKELM_ROWS = variant;
    process.env.SPIKELM_REDUCE = reduction;
    try {
      await fn();
    } finally {
      if (saved[0] === undefined) delete process.env.SPIKELM_ROWS;
      else process.env.SPIKELM_ROWS = saved[0];
      if (saved[1] === undefined) delete process.env.SPIKELM_REDUCE;
      else process.env.SPIKELM_REDUCE = saved[1];
    }
  };

  it.for(ROW_CASES)('layerNorm (with and without β) and rmsNorm, %s variant, %s reductions', async (rc, ctx) => {
    const g = await requireGpu(ctx);
    const variant = rc.join('/');
    await withRows(g, ctx, rc, () => fc.assert(
      fc.asyncProperty(odd, fc.integer({ min: 2, max: 700 }), fc.integer(), async (R, C, seed) => {
        const x = t([R, C], seed, 5), gamma = t([C], seed + 1), beta = t([C], seed + 2);
        check(`layerNorm ${variant}`, await read(g, g.layerNorm(g.upload(x), g.upload(gamma), g.upload(beta), 1e-5)), cpu.layerNorm(x, gamma, beta, 1e-5).data);
        check(`layerNorm (no β) ${variant}`, await read(g, g.layerNorm(g.upload(x), g.upload(gamma), undefined, 1e-5)), cpu.layerNorm(x, gamma, undefined, 1e-5).data);
        check(`rmsNorm ${variant}`, await read(g, g.rmsNorm(g.upload(x), g.upload(gamma), 1e-6)), cpu.rmsNorm(x, gamma, 1e-6).data);
      }),
      RUNS,
    ));
  });

  it.for(ROW_CASES)('softmax, plain and causal with a cache offset, %s variant, %s reductions', async (rc, ctx) => {
    const g = await requireGpu(ctx);
    const variant = rc.join('/');
    await withRows(g, ctx, rc, () => fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 9 }), fc.oneof(fc.integer({ min: 0, max: 20 }), fc.integer({ min: 250, max: 600 })), fc.integer({ min: 1, max: 3 }), fc.integer(), async (S, past, heads, seed) => {
        const C = S + past;
        const x = t([heads * S, C], seed, 30);
        const mask = { queries: S, queryStart: past };
        check(`softmax ${variant}`, await read(g, g.softmax(g.upload(x))), cpu.softmax(x).data);
        check(`softmax causal ${variant}`, await read(g, g.softmax(g.upload(x), mask)), cpu.softmax(x, mask).data);
      }),
      RUNS,
    ));
  });

  it('reductions: subgroup ones only where the device has them (llvmpipe has not), forcing them elsewhere says why', async (ctx) => {
    const g = await requireGpu(ctx);
    const r = g.rt.ctx.report;
    if (!r.features.includes('subgroups')) expect(r.subgroupReductions).toBe(false);
    expect(chooseReduction(g.rt)).toBe(r.subgroupReductions ? 'subgroup' : 'workgroup');
    if (r.subgroupReductions) return;
    expect(r.subgroupNote).not.toBe('');
    process.env.SPIKELM_REDUCE = 'subgroup';
    process.env.SPIKELM_ROWS = 'workgroup';
    try {
      expect(() => g.softmax(g.upload(t([2, 300], 1)))).toThrow(/SPIKELM_REDUCE=subgroup: not on this adapter \(.+\)/);
    } finally {
      delete process.env.SPIKELM_REDUCE;
      delete process.env.SPIKELM_ROWS;
    }
  });

  it('uniforms: each dispatch keeps its own values across ring buffers and across batches submitted by flush, sync or read', async (ctx) => {
    const g = await requireGpu(ctx);
    const x = t([3, 5], 7);
    // 700 dispatches in one batch (past the 256 slots of one ring buffer), each with its own factor
    let y = g.upload(x);
    const factors = Array.from({ length: 700 }, (_, i) => 1 + ((i * 37) % 11) / 1000);
    for (const f of factors) y = g.scale(y, f);
    let expected = x.data.slice();
    for (const f of factors) expected = expected.map((v) => Math.fround(v * Math.fround(f)));
    check('uniform ring (700 dispatches)', await read(g, y), expected);
    // a batch submitted by flush (disposing a weight), then one by sync, then one by the read
    const a = g.scale(g.upload(x), 2);
    g.rt.flush();
    const b = g.scale(g.upload(x), 3);
    await g.rt.sync();
    const c = g.scale(g.upload(x), 5);
    check('uniforms of a flushed batch', await read(g, a), x.data.map((v) => v * 2));
    check('uniforms of a synced batch', await read(g, b), x.data.map((v) => v * 3));
    check('uniforms of a read batch', await read(g, c), x.data.map((v) => v * 5));
  });

  it('a variant name that is not one is refused, naming the variable', async (ctx) => {
    const g = await requireGpu(ctx);
    process.env.SPIKELM_ROWS = 'subgroup';
    try {
      expect(() => g.softmax(g.upload(t([2, 3], 1)))).toThrow(/SPIKELM_ROWS=subgroup is not a variant \(one of row, workgroup\)/);
    } finally {
      delete process.env.SPIKELM_ROWS;
    }
  });

  it('rope at arbitrary positions (also past 10k, and past the persistent table\'s 65536) and head counts', async (ctx) => {
    const g = await requireGpu(ctx);
    await fc.assert(
      // consecutive positions read the persistent table at an offset, others a table of their own
      fc.asyncProperty(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 17 }), fc.oneof(fc.integer({ min: 0, max: 20000 }), fc.integer({ min: 65530, max: 70000 })), fc.constantFrom(1, 3), fc.integer(), async (S, H, half, start, stride, seed) => {
        const d = 2 * half;
        const x = t([S, H * d], seed);
        const pos = Int32Array.from({ length: S }, (_, i) => start + stride * i);
        const inv = ropeInvFreq(d, 10000);
        check('rope', await read(g, g.rope(g.upload(x), pos, H, d, inv)), cpu.rope(x, pos, H, d, inv).data);
      }),
      RUNS,
    );
  });

  it('attention with GQA over a partly filled cache', async (ctx) => {
    const g = await requireGpu(ctx);
    await fc.assert(
      fc.asyncProperty(fc.constantFrom([4, 4], [4, 2], [6, 3], [8, 1], [3, 1]), fc.integer({ min: 1, max: 9 }), fc.oneof(fc.integer({ min: 0, max: 30 }), fc.integer({ min: 100, max: 300 })), fc.constantFrom(1, 4, 8, 13, 64), fc.integer(), async ([H, Hkv], S, past, d, seed) => {
        const L = past + S;
        const q = t([S, H * d], seed), k = t([L + 5, Hkv * d], seed + 1), v = t([L + 5, Hkv * d], seed + 2);
        const p = { numHeads: H, numKvHeads: Hkv, headDim: d, queryStart: past, kvLength: L, scale: 1 / Math.sqrt(d) };
        const expected = cpu.attention(q, k, v, p).data;
        check('attention (dispatcher)', await read(g, g.attention(g.upload(q), g.upload(k), g.upload(v), p)), expected);
        for (const variant of d % 4 === 0 ? (['scalar', 'vec4', 'splitk', 'tiled'] as const) : (['scalar', 'splitk', 'tiled'] as const)) {
          const y = g.rt.alloc([S, H * d]);
          attentionGpu(g.rt, g.rt.fromHost(q.shape, q.data), g.rt.fromHost(k.shape, k.data), g.rt.fromHost(v.shape, v.data), S, p, y, variant);
          check(`attention ${variant}`, await g.rt.read(y), expected);
        }
      }),
      RUNS,
    );
  });

  it('attention variants on batched blocks: key starts (left padding), non-causal, block strides and offsets, blocks of 64 keys partly empty', async (ctx) => {
    const g = await requireGpu(ctx);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 200 }), fc.boolean(), fc.integer({ min: 0, max: 7 }), fc.integer(), async (B, S, past, causal, extra, seed) => {
        const H = 4, Hkv = 2, d = 8;
        const L = past + S, stride = L + extra, offset = extra % 3;
        const keyStarts = Int32Array.from({ length: B }, (_, b) => Math.abs(seed + b * 7) % Math.max(1, Math.min(L, 70)));
        const q = t([B * S, H * d], seed), k = t([offset + B * stride, Hkv * d], seed + 1), v = t([offset + B * stride, Hkv * d], seed + 2);
        const p = { numHeads: H, numKvHeads: Hkv, headDim: d, queryStart: past, kvLength: L, scale: 1 / Math.sqrt(d), batches: B, kvBatchStride: stride, kvOffset: offset, causal, keyStarts };
        const expected = cpu.attention(q, k, v, p).data;
        for (const variant of ['scalar', 'vec4', 'splitk', 'tiled'] as const) {
          const y = g.rt.alloc([B * S, H * d]);
          attentionGpu(g.rt, g.rt.fromHost(q.shape, q.data), g.rt.fromHost(k.shape, k.data), g.rt.fromHost(v.shape, v.data), S, p, y, variant);
          check(`attention ${variant} (batched)`, await g.rt.read(y), expected);
        }
      }),
      RUNS,
    );
  });

  it('attention in tiles across several query tiles (prefill of more than 64 rows), with left padding', async (ctx) => {
    const g = await requireGpu(ctx);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 2 }), fc.integer({ min: 60, max: 140 }), fc.constantFrom(0, 37), fc.constantFrom(8, 64), fc.integer(), async (B, S, past, d, seed) => {
        const H = 4, Hkv = 2, L = past + S;
        const keyStarts = Int32Array.from({ length: B }, (_, b) => (b === 0 ? 0 : Math.abs(seed) % 70));
        const q = t([B * S, H * d], seed), k = t([B * L, Hkv * d], seed + 1), v = t([B * L, Hkv * d], seed + 2);
        const p = { numHeads: H, numKvHeads: Hkv, headDim: d, queryStart: past, kvLength: L, scale: 1 / Math.sqrt(d), batches: B, keyStarts };
        const y = g.rt.alloc([B * S, H * d]);
        attentionGpu(g.rt, g.rt.fromHost(q.shape, q.data), g.rt.fromHost(k.shape, k.data), g.rt.fromHost(v.shape, v.data), S, p, y, 'tiled');
        check('attention tiled (prefill)', await g.rt.read(y), cpu.attention(q, k, v, p).data);
      }),
      { numRuns: 8, seed: 5 },
    );
  });

  it('embedding gather, also across table chunks', async (ctx) => {
    const g = await requireGpu(ctx);
    const chunked = await requireGpu(ctx, { maxWeightChunkBytes: 7 * 13 * 4 });
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 60 }), { minLength: 1, maxLength: 20 }), fc.integer(), async (ids, seed) => {
        const table = t([61, 13], seed);
        const idArr = Int32Array.from(ids);
        check('embedding', await read(g, g.embedding(g.upload(table, 'embedding'), idArr)), cpu.embedding(table, idArr).data);
        check('embedding (chunked)', await read(chunked, chunked.embedding(chunked.upload(table, 'embedding'), idArr)), cpu.embedding(table, idArr).data);
      }),
      RUNS,
    );
  });

  it('writeRows and sliceRows', async (ctx) => {
    const g = await requireGpu(ctx);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 0, max: 9 }), odd, fc.integer(), async (rows, offset, C, seed) => {
        const src = t([rows, C], seed);
        const dstG = g.zeros([rows + offset + 2, C]);
        g.writeRows(dstG, g.upload(src), offset);
        const dstC = cpu.zeros([rows + offset + 2, C]);
        cpu.writeRows(dstC, src, offset);
        check('writeRows', await read(g, dstG), dstC.data);
        check('sliceRows', await read(g, g.sliceRows(dstG, offset, offset + rows)), src.data);
      }),
      RUNS,
    );
  });
});

describe('GPU errors surface, never as silent wrong numbers', () => {
  it('a validation error in a batch is raised when its result is read', async (ctx) => {
    const g = await requireGpu(ctx);
    const rt = g.rt;
    const a = rt.fromHost([4], new Float32Array([1, 2, 3, 4]));
    const y = rt.alloc([4]);
    const destroyed = rt.fromHost([4], new Float32Array(4));
    destroyed.buffer.destroy();
    const pipe = rt.pipeline('test/copy', () => `
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(4) fn main(@builtin(global_invocation_id) i: vec3u) { y[i.x] = a[i.x]; }`);
    rt.dispatch(pipe, [destroyed.buffer, y.buffer], [], [1]);
    await expect(rt.read(y)).rejects.toThrow(GpuError);
    // the backend keeps working afterwards
    const ok = await read(g, g.add(g.upload(Tensor.from([4], [1, 2, 3, 4])), g.upload(Tensor.from([4], [1, 1, 1, 1]))));
    expect(Array.from(ok)).toEqual([2, 3, 4, 5]);
    rt.release(a);
  });

  it('shape errors match the CPU backend, and CPU tensors are refused', async (ctx) => {
    const g = await requireGpu(ctx);
    expect(() => g.matmul(g.upload(t([2, 3], 1)), g.upload(t([4, 5], 2), 'linear'))).toThrow(/disagree on K/);
    expect(() => g.add(t([2], 1), t([2], 1))).toThrow(/CPU tensor/);
    const x = g.upload(t([2], 1));
    g.dispose(x);
    await expect(g.read(x)).rejects.toThrow(/disposed/);
  });
});

describe('the new families\' WGSL kernels against their CPU twins', () => {
  it('attention variants with a sliding window (blocks of 64 keys cut by the window, left padding)', async (ctx) => {
    const g = await requireGpu(ctx);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 200 }), fc.integer({ min: 1, max: 90 }), fc.integer(), async (B, S, past, W, seed) => {
        const H = 4, Hkv = 2, d = 8, L = past + S;
        const keyStarts = Int32Array.from({ length: B }, (_, b) => Math.abs(seed + b * 5) % Math.max(1, Math.min(L, 40)));
        const q = t([B * S, H * d], seed), k = t([B * L, Hkv * d], seed + 1), v = t([B * L, Hkv * d], seed + 2);
        const p = { numHeads: H, numKvHeads: Hkv, headDim: d, queryStart: past, kvLength: L, scale: 1 / Math.sqrt(d), batches: B, kvBatchStride: L, keyStarts, window: W };
        const expected = cpu.attention(q, k, v, p).data;
        for (const variant of ['scalar', 'vec4', 'splitk', 'tiled'] as const) {
          const y = g.rt.alloc([B * S, H * d]);
          attentionGpu(g.rt, g.rt.fromHost(q.shape, q.data), g.rt.fromHost(k.shape, k.data), g.rt.fromHost(v.shape, v.data), S, p, y, variant);
          check(`attention ${variant} (window)`, await g.rt.read(y), expected);
        }
      }),
      RUNS,
    );
  });

  it('qkNorm matches the CPU (head dims 2, 24, 128)', async (ctx) => {
    const g = await requireGpu(ctx);
    for (const [R, H, Hkv, d] of [[3, 4, 2, 2], [5, 4, 1, 24], [2, 2, 2, 128]] as const) {
      const W = (H + 2 * Hkv) * d;
      const x = t([R, W], R + d, 2), gq = t([d], 3, 0.3), gk = t([d], 4, 0.3);
      const heads = { numHeads: H, numKvHeads: Hkv, headDim: d };
      const y = await g.read(g.qkNorm(g.upload(x), g.upload(gq), g.upload(gk), heads, 1e-6));
      check(`qkNorm d=${d}`, y.data, cpu.qkNorm(x, gq, gk, heads, 1e-6).data);
    }
  });
});
