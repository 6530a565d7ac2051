/**
 * Each fused primitive equals its composite of other primitives (candle's `*_slow` rule), on every
 * backend; and the GPU's fused kernels equal the CPU's.
 */
import fc from 'fast-check';
import { describe, it } from 'vitest';
import type { Backend } from '../src/tensor/backend.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import type { Activation } from '../src/tensor/kernels/elementwise.js';
import { ropeInvFreq } from '../src/tensor/kernels/rope.js';
import { Tensor } from '../src/tensor/tensor.js';
import { BACKEND_NAMES, backendFor } from './helpers/backends.js';
import { TOL, expectClose, randomArray } from './helpers/tolerance.js';

const t = (shape: number[], seed: number, scale = 1) => Tensor.from(shape, randomArray(shape.reduce((a, b) => a * b, 1), seed, scale));
const cpu = new CpuBackend();
const tol = (b: Backend) => (b.name === 'gpu' ? TOL.gpuKernel : TOL.f32);

async function data(b: Backend, x: unknown): Promise<Float32Array> {
  return (await b.read(x as never)).data;
}

describe.each(BACKEND_NAMES)('fused ops on %s', (name) => {
  it('matmul with residual = matmul + add', async (ctx) => {
    const b = await backendFor(name, ctx);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 33 }), fc.integer({ min: 1, max: 33 }), fc.integer(), async (M, K, N, seed) => {
        const x = b.upload(t([M, K], seed)), w = b.upload(t([N, K], seed + 1), 'linear'), bias = b.upload(t([N], seed + 2)), r = b.upload(t([M, N], seed + 3));
        const fused = await data(b, b.matmul(x, w, bias, r));
        expectClose(fused, await data(b, b.add(b.matmul(x, w, bias), r)), tol(b), 'matmul + residual');
      }),
      { numRuns: 15 },
    );
  });

  it.for(['silu', 'gelu_tanh', 'gelu_erf', 'relu'] as Activation[])('gatedActivation %s = act(gate) · up', async (kind, ctx) => {
    const b = await backendFor(name, ctx);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 40 }), fc.integer(), async (R, C, seed) => {
        const x = t([R, 2 * C], seed, 4);
        const gate = Tensor.from([R, C], Array.from({ length: R * C }, (_, i) => x.data[Math.floor(i / C) * 2 * C + (i % C)]!));
        const up = Tensor.from([R, C], Array.from({ length: R * C }, (_, i) => x.data[Math.floor(i / C) * 2 * C + C + (i % C)]!));
        const fused = await data(b, b.gatedActivation(kind, b.upload(x)));
        expectClose(fused, await data(b, b.mul(b.activation(kind, b.upload(gate)), b.upload(up))), tol(b), `gated ${kind}`);
        if (b.name === 'gpu') expectClose(fused, cpu.gatedActivation(kind, x).data, TOL.gpuKernel, `gated ${kind} gpu vs cpu`);
      }),
      { numRuns: 10 },
    );
  });

  it('qkvToCache = column split + rope + writeRows, with and without rotary positions', async (ctx) => {
    const b = await backendFor(name, ctx);
    await fc.assert(
      fc.asyncProperty(fc.constantFrom([4, 4], [4, 2], [6, 3], [2, 2]), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 5 }), fc.constantFrom(1, 2, 6, 8), fc.boolean(), fc.integer(), async ([H, Hkv], S, offset, d, rope, seed) => {
        if (rope && d % 2 !== 0) return;
        const qW = H * d, kvW = Hkv * d, total = qW + 2 * kvW;
        const qkv = t([S, total], seed);
        const positions = Int32Array.from({ length: S }, (_, i) => offset + i);
        const invFreq = rope ? ropeInvFreq(d, 10000) : undefined;
        const kc = b.zeros([offset + S + 1, kvW]), vc = b.zeros([offset + S + 1, kvW]);
        const q = await data(b, b.qkvToCache(b.upload(qkv), kc, vc, { numHeads: H, numKvHeads: Hkv, headDim: d, positions, invFreq, rowOffset: offset }));
        // composite: split columns on the host, rope, writeRows into fresh caches
        const cols = (from: number, width: number) => Tensor.from([S, width], Array.from({ length: S * width }, (_, i) => qkv.data[Math.floor(i / width) * total + from + (i % width)]!));
        const rot = (x: Tensor, heads: number) => (invFreq ? cpu.rope(x, positions, heads, d, invFreq) : x);
        const kc2 = cpu.zeros([offset + S + 1, kvW]), vc2 = cpu.zeros([offset + S + 1, kvW]);
        cpu.writeRows(kc2, rot(cols(qW, kvW), Hkv), offset);
        cpu.writeRows(vc2, cols(qW + kvW, kvW), offset);
        expectClose(q, rot(cols(0, qW), H).data, tol(b), 'q');
        expectClose(await data(b, kc), kc2.data, tol(b), 'k cache');
        expectClose(await data(b, vc), vc2.data, tol(b), 'v cache');
      }),
      { numRuns: 25 },
    );
  });
});
