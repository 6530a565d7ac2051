/**
 * 16-bit host weights (src/tensor/half.ts): BF16/F16 checkpoints keep their matrices in 16 bits on
 * the host, and every kernel widens as it reads.
 *
 * What is proven, and against what:
 * - widening equals an independent decoding of every one of the 65,536 bit patterns of each format
 *   (BF16 from its sign/exponent/mantissa fields, F16 by dtype.ts's formula);
 * - the wasm half kernels give the bits the wasm float32 kernels give over the widened copy (same
 *   lanes, same sums), over random shapes that are not multiples of 4, split column ranges,
 *   subnormal and large halves, and non-finite activations; the TypeScript half kernel is within
 *   TOL.f32 of the float64 definition (matmulReference) over the widened copy;
 * - a BF16 model directory loads 16-bit (half the bytes), gives the logits of its float32-widened
 *   twin (bitwise under wasm; TOL.f32 under ts, whose blocked float32 kernel adds the bias in
 *   another order), saves back as BF16, refuses NaN bits by name, and frees its wasm copies.
 */
import fs from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SafetensorsFile, writeSafetensors } from '../src/io/safetensors.js';
import { convertModelToSpiking, createCalibrationData } from '../src/convert/api.js';
import { loadSnnModel, saveSnnModel } from '../src/convert/snn-io.js';
import { exportHfTensors, loadModel, loadWeights } from '../src/nn/model.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { f16BitsToNumber } from '../src/tensor/dtype.js';
import { HalfTensor, type HalfFormat, f32Weight, isHalf, widenInto } from '../src/tensor/half.js';
import { matmulHalfCpu } from '../src/tensor/kernels/half-matmul.js';
import { matmulReference } from '../src/tensor/kernels/matmul.js';
import { Tensor } from '../src/tensor/tensor.js';
import { matmulHalfWasm, matmulWasm } from '../src/tensor/wasm/products.js';
import { type WasmRuntime, wasmRuntime } from '../src/tensor/wasm/runtime.js';
import { fixtureDir } from './helpers/fixtures.js';
import { rewriteModelDir } from './helpers/model-dirs.js';
import { TOL, expectClose, expectIdentical } from './helpers/tolerance.js';
import { requireGpu } from './helpers/backends.js';

const runtime = (): WasmRuntime => {
  const rt = wasmRuntime();
  if (!rt) throw new Error('WebAssembly SIMD does not validate on this Node: the wasm kernel set cannot be tested');
  return rt;
};

/** BF16 bits decoded from their fields (not by a shift into a float32). */
function bf16Decode(b: number): number {
  const sign = b & 0x8000 ? -1 : 1, e = (b >> 7) & 0xff, m = b & 0x7f;
  if (e === 0xff) return m ? NaN : sign * Infinity;
  return e === 0 ? sign * m * 2 ** -133 : sign * (1 + m / 128) * 2 ** (e - 127);
}
const decode = (format: HalfFormat, b: number) => (format === 'bf16' ? bf16Decode(b) : f16BitsToNumber(b));

/** Finite 16-bit patterns of a format, subnormals and the largest exponents included. */
const finiteBits = (format: HalfFormat) => fc.integer({ min: 0, max: 0xffff }).filter((b) => Number.isFinite(decode(format, b)) && Math.abs(decode(format, b)) < 1e30);

describe('widening 16-bit values', () => {
  for (const format of ['bf16', 'f16'] as const) {
    it(`${format}: every bit pattern widens to its value`, () => {
      const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
      const out = new Float32Array(65536);
      widenInto(all, format, 0, out);
      for (let b = 0; b < 65536; b++) {
        const want = decode(format, b);
        if (!Object.is(out[b], Math.fround(want)) && !(Number.isNaN(want) && Number.isNaN(out[b]))) expect.fail(`${format} 0x${b.toString(16)}: ${out[b]} ≠ ${want}`);
      }
    });
  }
});

describe('products over 16-bit weights', () => {
  const shapes = fc.record({ M: fc.integer({ min: 1, max: 9 }), K: fc.integer({ min: 1, max: 41 }), N: fc.integer({ min: 1, max: 19 }), bias: fc.boolean(), seed: fc.integer() });

  for (const format of ['bf16', 'f16'] as const) {
    it(`${format}: wasm gives the float32 kernel's bits over the widened weight (column ranges split anywhere)`, () => {
      const rt = runtime();
      fc.assert(
        fc.property(shapes, fc.array(finiteBits(format), { minLength: 41 * 19, maxLength: 41 * 19 }), fc.integer({ min: 0, max: 19 }), ({ M, K, N, bias, seed }, bitsPool, cut) => {
          const bits = rt.u16(N * K)!;
          bits.set(bitsPool.slice(0, N * K));
          const wide = rt.f32(N * K)!;
          widenInto(bits, format, 0, wide);
          const x = rt.f32(M * K)!, b = rt.f32(N)!;
          for (let i = 0; i < x.length; i++) x[i] = Math.sin(seed + i * 1.7) * 3;
          for (let i = 0; i < N; i++) b[i] = Math.cos(seed + i);
          const y16 = new Float32Array(M * N), y32 = new Float32Array(M * N);
          expect(matmulHalfWasm(rt, x, bits, format, bias ? b : undefined, y16, M, K, N, undefined)).toBe(true);
          expect(matmulWasm(rt, x, wide, bias ? b : undefined, y32, M, K, N, undefined, 'f32')).toBe(true);
          expectIdentical(y16, y32, `${format} [${M}×${K}]·[${N}×${K}]ᵀ`);
          // the same product over two column ranges, as the thread pool splits it
          const c = Math.min(cut, N), ySplit = rt.f32(M * N)!;
          const fn = format === 'bf16' ? (M < 4 ? 'matvecBf16Row' : 'matmulBf16Tile4x4') : M < 4 ? 'matvecF16Row' : 'matmulF16Tile4x4';
          const xp = rt.addressOf(x)!;
          for (const [n0, n1] of [[0, c], [c, N]] as const) rt.kernels[fn](xp, rt.addressOf(bits)!, bias ? rt.addressOf(b)! : 0, rt.addressOf(ySplit)!, M, K, N, n0, n1);
          expectIdentical(ySplit, y32, `${format} split at column ${c}`);
          for (const a of [bits, wide, x, b, ySplit]) rt.free(a);
        }),
        { numRuns: 60 },
      );
    });

    it(`${format}: the TypeScript kernel is the float64 definition over the widened weight`, () => {
      fc.assert(
        fc.property(shapes, ({ M, K, N, bias, seed }) => {
          const bits = Uint16Array.from({ length: N * K }, (_, i) => (seed * 7919 + i * 104729) & 0x3bff); // finite, both signs not needed
          const wide = f32Weight(new HalfTensor([N, K], format, bits)).data;
          const x = Float32Array.from({ length: M * K }, (_, i) => Math.sin(seed + i) * 2);
          const b = bias ? Float32Array.from({ length: N }, (_, i) => Math.cos(i)) : undefined;
          const y = new Float32Array(M * N), r = Float32Array.from({ length: M * N }, (_, i) => i % 3);
          matmulHalfCpu(x, bits, format, b, y, M, K, N, r);
          const want = matmulReference(x, wide, b, M, K, N).map((v, i) => v + r[i]!);
          expectClose(y, want, TOL.f32, `${format} ts [${M}×${K}]·[${N}×${K}]ᵀ + residual`);
        }),
        { numRuns: 60 },
      );
    });
  }

  for (const format of ['bf16', 'f16'] as const) {
    it(`${format}: Inf and NaN weight patterns widen as the TypeScript widening does, in lanes and in the tail`, () => {
      const rt = runtime();
      const specials = format === 'f16' ? [0x7c00, 0xfc00, 0x7e00, 0x7c01, 0x3c00] : [0x7f80, 0xff80, 0x7fc0, 0x7f81, 0x3f80];
      const M = 1, K = 5, N = specials.length; // K = 5: lanes 0–3 and a scalar tail
      const bits = rt.u16(N * K)!;
      for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) bits[n * K + k] = k === n % K ? specials[n]! : format === 'f16' ? 0x3c00 : 0x3f80;
      bits[N * K - 1] = specials[0]!; // a special in the tail
      const wide = rt.f32(N * K)!;
      widenInto(bits, format, 0, wide);
      const x = rt.f32(M * K)!.fill(1);
      const y16 = new Float32Array(M * N), y32 = new Float32Array(M * N);
      matmulHalfWasm(rt, x, bits, format, undefined, y16, M, K, N, undefined);
      matmulWasm(rt, x, wide, undefined, y32, M, K, N, undefined, 'f32');
      expectIdentical(y16, y32, `${format} special weights`);
      expect(y16[0]).toBe(Infinity);
    });
  }

  it('non-finite activations propagate as they do through the float32 kernel', () => {
    const rt = runtime();
    const M = 2, K = 9, N = 6;
    const bits = rt.u16(N * K)!;
    for (let i = 0; i < bits.length; i++) bits[i] = 0x3c00 + (i % 7); // F16 values near 1
    const wide = rt.f32(N * K)!;
    widenInto(bits, 'f16', 0, wide);
    const x = rt.f32(M * K)!;
    x.set([1, NaN, 2, 3, 4, 5, 6, 7, 8, Infinity, 1, 1, 1, 1, 1, 1, 1, -Infinity]);
    const y16 = new Float32Array(M * N), y32 = new Float32Array(M * N);
    matmulHalfWasm(rt, x, bits, 'f16', undefined, y16, M, K, N, undefined);
    matmulWasm(rt, x, wide, undefined, y32, M, K, N, undefined, 'f32');
    expectIdentical(y16, y32, 'NaN and ±∞ rows');
    expect(Number.isNaN(y16[0])).toBe(true);
  });
});

describe('a BF16 model directory', () => {
  const stories = fixtureDir('stories260k');
  const bf16Dir = () => rewriteModelDir(stories, { dtype: 'BF16' });

  it('loads its matrices in 16 bits (norms in float32) and gives its float32 twin\'s logits', async () => {
    const dir = bf16Dir();
    const { weights } = loadWeights(dir);
    expect(isHalf(weights.embed)).toBe(true);
    expect(isHalf(weights.blocks[0]!.q.weight) && isHalf(weights.blocks[0]!.down.weight)).toBe(true);
    expect(isHalf(weights.blocks[0]!.attnNorm.weight)).toBe(false);
    // the bits are the file's
    const file = SafetensorsFile.open(path.join(dir, 'model.safetensors'));
    const raw = file.readRaw('model.layers.0.mlp.down_proj.weight');
    file.close();
    const down = weights.blocks[0]!.down.weight as HalfTensor;
    expect(Buffer.from(down.bits.buffer, down.bits.byteOffset, down.bits.byteLength).equals(Buffer.from(raw))).toBe(true);
    const ids = Int32Array.from([1, 403, 407, 261, 378, 13, 2, 77, 250, 31]);
    for (const kernels of ['wasm', 'ts'] as const) {
      const half = loadModel(dir, { backend: new CpuBackend({ kernels }) });
      const wide = loadModel(dir, { backend: new CpuBackend({ kernels }), halfWeights: false });
      expect(isHalf(wide.weights.embed)).toBe(false);
      const a = (await half.backend.read(half.forward(ids, half.newCache(), { allLogits: true }))).data;
      const b = (await wide.backend.read(wide.forward(ids, wide.newCache(), { allLogits: true }))).data;
      if (kernels === 'wasm') expectIdentical(a, b, 'wasm: BF16 weights vs their float32 widening');
      else expectClose(a, b, TOL.f32, 'ts: BF16 weights vs their float32 widening');
    }
  });

  it('on the wasm set its matrices are read straight into the wasm memory: the backend holds no second copy', () => {
    const rt = runtime();
    for (const halfWeights of [true, false]) {
      const before = rt.liveBytes;
      const m = loadModel(bf16Dir(), { backend: new CpuBackend({ kernels: 'wasm' }), halfWeights });
      const w = m.weights.blocks[1]!.up.weight, e = m.weights.embed;
      expect(rt.addressOf(isHalf(w) ? w.bits : w.data), `halfWeights ${halfWeights}: the up projection lives in the wasm memory`).toBeDefined();
      expect(rt.addressOf(isHalf(e) ? e.bits : e.data)).toBeDefined();
      // every matrix once, at its width: the live bytes grew by the matrices' bytes and no more
      const c = m.config, width = halfWeights ? 2 : 4;
      const perLayer = c.hiddenSize * (c.numHeads + 2 * c.numKvHeads) * c.headDim + c.numHeads * c.headDim * c.hiddenSize + 3 * c.hiddenSize * c.intermediateSize;
      const matrices = width * (c.numLayers * perLayer + c.vocabSize * c.hiddenSize);
      const grown = rt.liveBytes - before;
      expect(grown).toBeGreaterThanOrEqual(matrices);
      expect(grown).toBeLessThan(matrices * 1.05 + 65536);
    }
  });

  it('converts to the spiking network of its float32 twin: the same thresholds, spikes and logits (wasm)', async () => {
    const dir = bf16Dir();
    const tok = loadTokenizer(dir);
    const data = createCalibrationData(tok, { numSamples: 4 });
    const half = await convertModelToSpiking(loadModel(dir, { backend: new CpuBackend({ kernels: 'wasm' }) }), data, { timesteps: 6 });
    const wide = await convertModelToSpiking(loadModel(dir, { backend: new CpuBackend({ kernels: 'wasm' }), halfWeights: false }), data, { timesteps: 6 });
    for (const [site, th] of wide.snn.spiking.thresholds) expectIdentical(half.snn.spiking.thresholds.get(site)!, th, `θ at ${site}`);
    const ids = Int32Array.from([1, 403, 407, 261, 378, 13]);
    const a = half.snn.forward(ids, half.snn.newCache(), { allLogits: true }), b = wide.snn.forward(ids, wide.snn.newCache(), { allLogits: true });
    const logits = (await half.snn.backend.read(a.logits)).data;
    expectIdentical(logits, (await wide.snn.backend.read(b.logits)).data, 'SNN logits, BF16 vs widened');
    // saved and loaded back: the directory keeps BF16, the network gives the same logits
    const out = path.join(fs.mkdtempSync(path.join(path.dirname(dir), 'spikelm-bf16-snn-')), 'snn');
    saveSnnModel(half.snn, tok, out, half.record);
    const file = SafetensorsFile.open(path.join(out, 'model.safetensors'));
    expect(file.info('model.layers.0.self_attn.q_proj.weight').dtype).toBe('BF16');
    file.close();
    const back = loadSnnModel(out);
    expect(isHalf(back.weights.blocks[0]!.q.weight)).toBe(true);
    const c = back.snn.forward(ids, back.snn.newCache(), { allLogits: true });
    expectIdentical((await back.snn.backend.read(c.logits)).data, logits, 'SNN logits after save and load');
    back.snn.dispose();
    half.snn.dispose();
    wide.snn.dispose();
  });

  it('the GPU packs it from the 16-bit copy: logits of the CPU model within TOL.gpuGolden', async (ctx) => {
    // small chunks: the embedding table and the head are uploaded in several bindings
    const gpu = await requireGpu(ctx, { maxWeightChunkBytes: 8192 });
    const dir = bf16Dir();
    const cpuModel = loadModel(dir, { backend: new CpuBackend() }), gpuModel = loadModel(dir, { backend: gpu });
    expect(isHalf(gpuModel.weights.embed)).toBe(true);
    const ids = Int32Array.from([1, 403, 407, 261, 378, 13, 2, 77]);
    const a = (await cpuModel.backend.read(cpuModel.forward(ids, cpuModel.newCache(), { allLogits: true }))).data;
    const b = (await gpu.read(gpuModel.forward(ids, gpuModel.newCache(), { allLogits: true }))).data;
    expectClose(b, a, TOL.gpuGolden, 'GPU vs CPU logits of the BF16 model');
  });

  for (const [name, halfWeights] of [['stories260k F32', false], ['stories260k BF16', true], ['gpt2-random-f16', true]] as const) {
    it(`${name}: weights read into the wasm memory survive collections while the model lives (views keep their storage)`, async () => {
      v8.setFlagsFromString('--expose-gc');
      const gc = vm.runInNewContext('gc') as () => void;
      const rt = runtime();
      const dir = name === 'gpt2-random-f16' ? fixtureDir('gpt2-random-f16') : halfWeights ? bf16Dir() : stories;
      const m = loadModel(dir, { backend: new CpuBackend({ kernels: 'wasm' }), halfWeights });
      const ids = Int32Array.from([1, 403, 407, 261, 378, 13].map((i) => i % m.config.vocabSize));
      const before = Float32Array.from((await m.backend.read(m.forward(ids, m.newCache(), { allLogits: true }))).data);
      // collect, let finalizers run, then take whatever the allocator freed and scribble on it
      for (let i = 0; i < 3; i++) {
        gc();
        await new Promise((r) => setTimeout(r, 0));
      }
      const scribbles = Array.from({ length: 64 }, () => rt.f32(1 << 14)!.fill(NaN));
      const after = (await m.backend.read(m.forward(ids, m.newCache(), { allLogits: true }))).data;
      expectIdentical(after, before, `${name}: logits after collections`);
      for (const a of scribbles) rt.free(a);
    });
  }

  it('saves back in BF16, bit for bit', () => {
    const dir = bf16Dir();
    const { config, weights } = loadWeights(dir);
    const out = path.join(fs.mkdtempSync(path.join(path.dirname(dir), 'spikelm-bf16-save-')), 'model.safetensors');
    writeSafetensors(out, exportHfTensors(config, weights));
    const a = SafetensorsFile.open(out), b = SafetensorsFile.open(path.join(dir, 'model.safetensors'));
    for (const name of b.names) {
      expect(a.info(name).dtype, name).toBe(name.includes('norm') ? 'F32' : 'BF16');
      if (a.info(name).dtype === 'BF16') expect(Buffer.from(a.readRaw(name)).equals(Buffer.from(b.readRaw(name))), name).toBe(true);
    }
    a.close();
    b.close();
  });

  it('refuses NaN bits naming the tensor', () => {
    const dir = rewriteModelDir(stories, { dtype: 'BF16', transform: (name, shape, data) => (name.endsWith('o_proj.weight') ? { shape, data: data.map((v, i) => (i === 5 ? NaN : v)) } : { shape, data }) });
    expect(() => loadWeights(dir)).toThrow(/o_proj\.weight.*non-finite.*index 5/);
  });

  it('refuses F16 NaN bits too', () => {
    const dir = rewriteModelDir(stories, { dtype: 'F16', transform: (name, shape, data) => (name.endsWith('up_proj.weight') ? { shape, data: data.map((v, i) => (i === 7 ? NaN : v)) } : { shape, data }) });
    expect(() => loadWeights(dir)).toThrow(/up_proj\.weight.*non-finite.*index 7/);
    expect(() => loadWeights(rewriteModelDir(stories, { dtype: 'F16' }))).not.toThrow();
  });

  it('a 16-bit tensor is refused where only float32 makes sense, and its wasm copy is freed on dispose', () => {
    const be = new CpuBackend({ kernels: 'wasm' }), rt = runtime();
    const t = new HalfTensor([64, 96], 'bf16');
    expect(() => be.upload(t, 'vector')).toThrow(/16-bit \(bf16\).*\[64, 96\].*only matmul weights/);
    const before = rt.liveBytes;
    const u = be.upload(t, 'linear'), again = be.upload(t, 'linear');
    expect(again).toBe(u);
    expect(rt.liveBytes - before).toBe(64 * 96 * 2);
    be.dispose(u);
    expect(rt.liveBytes - before).toBe(64 * 96 * 2); // a second owner holds it
    be.dispose(again);
    expect(rt.liveBytes).toBe(before);
    expect(() => be.add(u as unknown as Tensor, new Tensor([64, 96]))).toThrow(/16-bit \(bf16\) weight/);
  });
});
