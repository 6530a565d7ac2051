/**
 * The decode loop shaped for GPUs (nn/generate.ts) and the token choice it runs on the device
 * (kernels/sampling.ts):
 *   - the float32 sampler's laws, checked against float64 arithmetic: greedy is the first-ranked
 *     token, draws stay in the top-k set and in the float64 nucleus (up to float32 rounding at its
 *     edge), and follow the softmax;
 *   - the WGSL twin gives the CPU reference's token on the same logits, in both its shapes, over
 *     vocabularies that are not multiples of the workgroup, with ties, −∞ and NaN logits;
 *   - generate's device loop gives the host loop's tokens (CPU and GPU), and from the third token on
 *     each GPU token costs one submit, a 4-byte read-back, one uniform write and no new buffer or
 *     bind group — for the ANN and for the layerwise spiking model;
 *   - GPU greedy tokens equal the CPU's on the random GPT-2 fixture up to its first near-tie.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { convertModelToSpiking, createCalibrationData } from '../src/convert/api.js';
import { type DecodeLoop, decodeLoopFromEnv, generate } from '../src/nn/generate.js';
import { loadModel } from '../src/nn/model.js';
import { Sampler, seededRandom } from '../src/nn/sampling.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';
import { SpikingLM } from '../src/snn/model.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import type { GpuBackend } from '../src/tensor/gpu/gpu-backend.js';
import { GREEDY, type TokenChoice, drawOf, keyOf, sampleTokenCpu } from '../src/tensor/kernels/sampling.js';
import { Tensor } from '../src/tensor/tensor.js';
import { requireGpu } from './helpers/backends.js';
import { fixtureDir, golden } from './helpers/fixtures.js';
import { withEnv } from './helpers/env.js';

/** float64 softmax of (logits − max)/τ over the first-ranked order (score desc, index asc). */
function float64Ranked(logits: Float32Array, temperature: number): { order: number[]; p: number[] } {
  const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b);
  const m = logits[order[0]!]!;
  const w = order.map((i) => Math.exp((logits[i]! - m) / temperature));
  const total = w.reduce((a, b) => a + b, 0);
  return { order, p: w.map((x) => x / total) };
}

// finite logits, −0 read as +0 (the sampler ranks −0 below +0; float64 comparison does not)
const logitsArb = (maxLength: number) => fc.array(fc.float({ min: -12, max: 12, noNaN: true, noDefaultInfinity: true }), { minLength: 1, maxLength }).map((a) => Float32Array.from(a, (x) => (x === 0 ? 0 : x)));

describe('the float32 sampler (the CPU reference)', () => {
  it('greedy is the first largest logit; no NaN wins; −0 ranks below +0', () => {
    fc.assert(fc.property(logitsArb(80), (logits) => {
      const best = logits.reduce((b, v, i) => (v > logits[b]! ? i : b), 0);
      expect(sampleTokenCpu(logits, GREEDY, undefined, 0)).toBe(best);
    }), { endOnFailure: true });
    expect(sampleTokenCpu(Float32Array.from([NaN, 1, 2, NaN]), GREEDY, undefined, 0)).toBe(2);
    expect(sampleTokenCpu(Float32Array.from([-0, 0]), GREEDY, undefined, 0)).toBe(1);
    // equal scores: the smaller index first, for greedy and for a top-1 draw
    expect(sampleTokenCpu(Float32Array.from([3, 5, 5, 1, 5]), GREEDY, undefined, 0)).toBe(1);
    expect(sampleTokenCpu(Float32Array.from([3, 5, 5, 1, 5]), { temperature: 1, topK: 1, topP: 1, repetitionPenalty: 1 }, undefined, 0.9)).toBe(1);
    expect(sampleTokenCpu(Float32Array.from([3, 5, 5, 1, 5]), { temperature: 1, topK: 2, topP: 1, repetitionPenalty: 1 }, undefined, 0.9)).toBe(2);
    expect(keyOf(-1) < keyOf(-0) && keyOf(-0) < keyOf(0) && keyOf(0) < keyOf(1e-30) && keyOf(NaN) === 0).toBe(true);
  });

  it('a draw stays in the top-k set and in the float64 nucleus (its edge within float32 rounding)', () => {
    fc.assert(fc.property(logitsArb(300), fc.integer({ min: 0, max: 20 }), fc.double({ min: 0.05, max: 1, noNaN: true }), fc.double({ min: 0.3, max: 2, noNaN: true }), fc.double({ min: 0, max: 0.999999, noNaN: true }), (logits, topK, topP, temperature, r) => {
      const id = sampleTokenCpu(logits, { temperature, topK, topP, repetitionPenalty: 1 }, undefined, r);
      // the temperature the float32 sampler applies: 1/τ rounded to float32
      const { order, p } = float64Ranked(logits, 1 / Math.fround(1 / temperature));
      const rank = order.indexOf(id);
      if (topK > 0) expect(rank).toBeLessThan(topK);
      const k = topK > 0 ? Math.min(topK, logits.length) : logits.length;
      const kMass = p.slice(0, k).reduce((a, b) => a + b, 0);
      // the float64 nucleus of p rounded to float32 (as the sampler takes it) plus a slack for its
      // float32 sums: a shortest prefix of the candidates reaching (p + 1e-5) of their mass
      let cum = 0, nucleus = k;
      for (let i = 0; i < k; i++) {
        cum += p[i]!;
        if (cum >= (Math.fround(topP) + 1e-5) * kMass) {
          nucleus = i + 1;
          break;
        }
      }
      if (topP < 1) expect(rank).toBeLessThan(nucleus);
    }), { numRuns: 300, endOnFailure: true });
  });

  it('draws follow the softmax of the kept tokens (6000 draws, within 0.03 of each probability)', () => {
    const logits = Float32Array.from([0, Math.log(2), Math.log(3), Math.log(4), -50]);
    const s = new Sampler({ temperature: 1, topK: 3, seed: 42 });
    const counts = [0, 0, 0, 0, 0];
    for (let i = 0; i < 6000; i++) counts[s.next(logits)]!++;
    expect(counts[0]! + counts[4]!).toBe(0);
    for (const [i, p] of [[1, 2 / 9], [2, 3 / 9], [3, 4 / 9]] as const) expect(Math.abs(counts[i]! / 6000 - p)).toBeLessThan(0.03);
  });

  it('the repetition penalty divides positive and multiplies negative seen scores', () => {
    const logits = Float32Array.from([2, 1.9, -1, -1.1]);
    expect(sampleTokenCpu(logits, { ...GREEDY, repetitionPenalty: 1.2 }, [1, 0, 0, 0], 0)).toBe(1);
    expect(sampleTokenCpu(Float32Array.from([-1, -1.1]), { ...GREEDY, repetitionPenalty: 1.2 }, [1, 0], 0)).toBe(1);
    expect(sampleTokenCpu(Float32Array.from([-1, -1.1]), GREEDY, [1, 0], 0)).toBe(0);
  });

  it('a draw of (almost) 1 still picks a kept token; bad draws and empty logits are errors', () => {
    const logits = Float32Array.from([3, 2, 1, -40]);
    expect(sampleTokenCpu(logits, { temperature: 1, topK: 2, topP: 1, repetitionPenalty: 1 }, undefined, 1 - 1e-12)).toBe(1);
    expect(drawOf(1 - 1e-12)).toBeLessThan(1);
    expect(() => drawOf(1)).toThrow(/\[0, 1\)/);
    expect(() => sampleTokenCpu(new Float32Array(0), GREEDY, undefined, 0)).toThrow(/no logits/);
  });
});

/** Random choices for the parity test: greedy, top-k, top-p, both, with and without a penalty. */
const choiceArb: fc.Arbitrary<TokenChoice> = fc.record({
  temperature: fc.constantFrom(0, 0.7, 1, 1.5),
  topK: fc.constantFrom(0, 1, 5, 40),
  topP: fc.constantFrom(1, 0.9, 0.5),
  repetitionPenalty: fc.constantFrom(1, 1.3),
});

describe('the WGSL sampler', () => {
  it.for(['row', 'workgroup'] as const)('%s shape: the CPU reference\'s token on the same logits (vocabularies 1…700, ties, −∞, NaN)', async (shape, ctx) => {
    const gpu = await requireGpu(ctx);
    const note = gpu.deviceSamplingNote();
    if (note) {
      // Mesa 22's OpenGL ES: the loop must not trust the kernel (and says so)
      expect(note).toMatch(/miscompiles the sampling kernel/);
      return;
    }
    await withEnv({ SPIKELM_ROWS: shape }, async () => {
      const out = gpu.zeros([1]);
      let draws = 0;
      await fc.assert(fc.asyncProperty(fc.integer({ min: 1, max: 700 }), fc.integer(), choiceArb, fc.double({ min: 0, max: 0.999999, noNaN: true }), async (V, seed, choice, r) => {
        const rnd = seededRandom(seed);
        const logits = Float32Array.from({ length: V }, () => {
          const u = rnd();
          // ties at the top (6 is above every ordinary logit) and below it, −∞ and NaN among ordinary logits
          return u < 0.03 ? 6 : u < 0.06 ? 1.5 : u < 0.08 ? -Infinity : u < 0.09 ? NaN : (rnd() - 0.5) * 10;
        });
        const seen = Float32Array.from({ length: V }, () => (rnd() < 0.2 ? 1 : 0));
        const lt = gpu.upload(Tensor.from([1, V], logits)), st = gpu.upload(Tensor.from([V], seen));
        gpu.sampleToken(lt, 0, choice, r, out, st);
        const id = (await gpu.read(out)).data[0]!;
        const want = sampleTokenCpu(logits, choice, seen, r);
        const seenAfter = (await gpu.read(st)).data;
        gpu.dispose(lt);
        gpu.dispose(st);
        draws++;
        expect(id, `V=${V} ${JSON.stringify(choice)} r=${r}`).toBe(want);
        // the chosen token is marked seen exactly when a penalty applies
        expect(seenAfter[id]).toBe(choice.repetitionPenalty !== 1 ? 1 : seen[id]);
      }), { numRuns: 60, seed: 20261201, endOnFailure: true });
      expect(draws).toBe(60);
      gpu.dispose(out);
    });
  });

  it('samples row `row` of a [R, V] tensor and refuses bad arguments', async (ctx) => {
    const gpu = await requireGpu(ctx);
    const logits = Float32Array.from([0, 5, 1, 9, 2, 3]);
    const lt = gpu.upload(Tensor.from([2, 3], logits)), out = gpu.zeros([1]);
    gpu.sampleToken(lt, 1, GREEDY, 0, out);
    expect((await gpu.read(out)).data[0]).toBe(0); // row 1 is [9, 2, 3]
    expect(() => gpu.sampleToken(lt, 2, GREEDY, 0, out)).toThrow(/row 2 of 2/);
    expect(() => gpu.sampleToken(lt, 0, GREEDY, 0, out, gpu.zeros([4]))).toThrow(/4 seen flags for a vocabulary of 3/);
    expect(() => gpu.sampleToken(lt, 0, { ...GREEDY, temperature: 1 }, 1, out)).toThrow(/\[0, 1\)/);
  });
});

const SAMPLED = { temperature: 0.9, topK: 40, topP: 0.9, repetitionPenalty: 1.3, seed: 7 };
const PROMPT = [1, 403, 407, 261, 114];

/** What each generated token cost on the GPU: counter differences between consecutive tokens. */
async function costs(gpu: GpuBackend, run: (onToken: () => void) => Promise<unknown>) {
  const snaps: (typeof gpu.rt.counters)[] = [];
  await run(() => snaps.push({ ...gpu.rt.counters }));
  return snaps.slice(1).map((s, i) => {
    const p = snaps[i]!;
    return { submits: s.submits - p.submits, bytesRead: s.bytesRead - p.bytesRead, buffersCreated: s.buffersCreated - p.buffersCreated, bindGroupsCreated: s.bindGroupsCreated - p.bindGroupsCreated, writeBuffers: s.writeBuffers - p.writeBuffers };
  });
}

/** From the third token on: one submit, one id read back, one uniform write, nothing created. */
const STEADY = { submits: 1, bytesRead: 4, buffersCreated: 0, bindGroupsCreated: 0, writeBuffers: 1 };

/**
 * The device loop is pipelined: a token's interval holds the submit of the step after it, so the
 * last interval holds none (no step goes past the budget). `hostLoop`: the counts of a loop that
 * reads logits back (where the device cannot sample), the same for every interval.
 */
function expectSteady(perToken: Awaited<ReturnType<typeof costs>>, hostLoop?: typeof STEADY): void {
  // perToken[0] is the second token's interval
  const steady = perToken.slice(1);
  if (hostLoop) {
    for (const c of steady) expect(c).toEqual(hostLoop);
    return;
  }
  for (const c of steady.slice(0, -1)) expect(c).toEqual(STEADY);
  expect(steady.at(-1)).toEqual({ submits: 0, bytesRead: 0, buffersCreated: 0, bindGroupsCreated: 0, writeBuffers: 0 });
}

describe('generate: the device loop', () => {
  it('SPIKELM_DECODE_LOOP chooses the loop; anything else is an error naming it', () => {
    expect(decodeLoopFromEnv({})).toBe('device');
    expect(decodeLoopFromEnv({ SPIKELM_DECODE_LOOP: 'host' })).toBe('host');
    expect(() => decodeLoopFromEnv({ SPIKELM_DECODE_LOOP: 'gpu' })).toThrow(/SPIKELM_DECODE_LOOP must be one of device, host, got 'gpu'/);
  });

  it('on the CPU: the device loop and the host loop give the same tokens, greedy and sampled', async () => {
    const m = loadModel(fixtureDir('stories260k'), { backend: new CpuBackend() });
    // greedy with a strong penalty: the tokens generated so far must count as seen
    for (const o of [{}, SAMPLED, { repetitionPenalty: 5 }]) {
      const [host, device] = await Promise.all((['host', 'device'] as DecodeLoop[]).map((loop) => generate(m, PROMPT, { ...o, maxNewTokens: 16, stopTokenIds: [], loop })));
      expect(device.ids).toEqual(host.ids);
      expect(device.ids).toHaveLength(16);
    }
    // the turn's rows are reserved before its first token (so no decode step grows the cache)
    const cache = m.newCache(4);
    let capacity = 0;
    await expect(generate(m, PROMPT, { maxNewTokens: 300, stopTokenIds: [], cache, onToken: () => {
      capacity = cache.capacity;
      throw new Error('seen the first token');
    } })).rejects.toThrow(/seen the first token/);
    expect(capacity).toBeGreaterThanOrEqual(PROMPT.length + 300);
    await expect(generate(m, [], {})).rejects.toThrow(/empty prompt/);
    await expect(generate(m, PROMPT, { maxNewTokens: -1 })).rejects.toThrow(/maxNewTokens/);
  });

  it('ANN on the GPU: the CPU\'s tokens with the same seed; from the third token 1 submit, 4 bytes read, 0 buffers and bind groups', async (ctx) => {
    const gpu = await requireGpu(ctx);
    const cpuModel = loadModel(fixtureDir('stories260k'), { backend: new CpuBackend() });
    const m = loadModel(fixtureDir('stories260k'), { backend: gpu });
    const note = gpu.deviceSamplingNote();
    for (const o of [{}, SAMPLED]) {
      const want = await generate(cpuModel, PROMPT, { ...o, maxNewTokens: 12, stopTokenIds: [], loop: 'host' });
      let got: number[] = [];
      const perToken = await costs(gpu, async (onToken) => {
        // a cache made for 4 rows: the turn's rows are reserved before its first token, not grown into
        got = (await generate(m, PROMPT, { ...o, maxNewTokens: 12, stopTokenIds: [], onToken, cache: m.newCache(4) })).ids;
      });
      expect(got).toEqual(want.ids);
      expectSteady(perToken, note ? { ...STEADY, bytesRead: 4 * m.config.vocabSize } : undefined);
    }
  });

  it('a stop token and the context limit end the pipelined loop where the host loop ends, with the same cache', async (ctx) => {
    const gpu = await requireGpu(ctx);
    const m = loadModel(fixtureDir('stories260k'), { backend: gpu });
    const greedy = (await generate(m, PROMPT, { maxNewTokens: 8, stopTokenIds: [], loop: 'host' })).ids;
    const long = Array.from({ length: m.config.maxPositions - 4 }, (_, i) => (i * 7 + 3) % m.config.vocabSize);
    for (const [prompt, o] of [[PROMPT, { stopTokenIds: [greedy[4]!] }], [long, { stopTokenIds: [] }]] as const) {
      const runs = [];
      for (const loop of ['host', 'device'] as const) {
        const cache = m.newCache();
        const r = await generate(m, prompt, { ...o, maxNewTokens: 8, loop, cache });
        // the cache then continues the same way under both loops
        const next = await generate(m, [1], { maxNewTokens: 1, stopTokenIds: [], loop: 'host', cache }).catch((e: Error) => e.message);
        runs.push({ ...r, length: cache.length, next });
      }
      expect(runs[1]).toEqual(runs[0]);
    }
    expect(await generate(m, PROMPT, { stopTokenIds: [greedy[4]!], maxNewTokens: 8 })).toMatchObject({ ids: greedy.slice(0, greedy.indexOf(greedy[4]!) + 1), stoppedBy: 'stop_token' });
    expect((await generate(m, long, { maxNewTokens: 8, stopTokenIds: [] })).stoppedBy).toBe('context_limit');
  });

  it('the host loop, kept for comparison, reads the logits back every token', async (ctx) => {
    const gpu = await requireGpu(ctx);
    const m = loadModel(fixtureDir('stories260k'), { backend: gpu });
    const perToken = await costs(gpu, (onToken) => generate(m, PROMPT, { maxNewTokens: 6, stopTokenIds: [], onToken, loop: 'host' }));
    for (const c of perToken.slice(1)) expect(c.bytesRead).toBe(4 * m.config.vocabSize);
  });

  it.for([false, true])('layerwise spiking model on the GPU (two-stage head: %s): the host loop\'s tokens; from the third token the same steady costs', async (twoStage, ctx) => {
    const gpu = await requireGpu(ctx);
    const dir = fixtureDir('stories260k');
    const { snn: cpuSnn } = await convertModelToSpiking(loadModel(dir), createCalibrationData(loadTokenizer(dir), { numSamples: 4 }));
    expect(cpuSnn.schedule).toBe('layerwise');
    const snn = new SpikingLM(cpuSnn.config, cpuSnn.weights, gpu, { ...cpuSnn.spiking, ...(twoStage ? { head: { coarsePlanes: 5, topK: 16 } } : {}) });
    const note = gpu.deviceSamplingNote();
    for (const o of [{}, SAMPLED]) {
      const host = await generate(snn, PROMPT, { ...o, maxNewTokens: 10, stopTokenIds: [], loop: 'host' });
      let got: number[] = [];
      const perToken = await costs(gpu, async (onToken) => {
        got = (await generate(snn, PROMPT, { ...o, maxNewTokens: 10, stopTokenIds: [], onToken })).ids;
      });
      expect(got).toEqual(host.ids);
      expectSteady(perToken, note ? { ...STEADY, bytesRead: 4 * snn.config.vocabSize } : undefined);
    }
  });

  it('random GPT-2 on the GPU: the CPU\'s greedy tokens up to the first near-tie (top-2 margin < 1e-3)', async (ctx) => {
    const gpu = await requireGpu(ctx);
    const cpu = new CpuBackend();
    for (const name of ['tiny-gpt2-random', 'gpt2-random-f16'] as const) {
      const c = loadModel(fixtureDir(name), { backend: cpu }), g = loadModel(fixtureDir(name), { backend: gpu });
      const prompt = Object.values(golden(name))[0]!.input_ids;
      const n = 12;
      const got = (await generate(g, prompt, { maxNewTokens: n, stopTokenIds: [] })).ids;
      // the CPU's tokens and, at each, the margin between its two largest logits
      const cache = c.newCache();
      let input = prompt, tie = n;
      for (let i = 0; i < n; i++) {
        const logits = cpu.readSync(c.forward(input, cache)).data;
        const id = sampleTokenCpu(logits, GREEDY, undefined, 0);
        const second = Math.max(...Array.from(logits).filter((_, j) => j !== id));
        if (logits[id]! - second < 1e-3) {
          tie = i;
          break;
        }
        expect(got[i], `${name} token ${i}`).toBe(id);
        input = [id];
      }
      ctx.annotate(`${name}: first near-tie at token ${tie === n ? 'none (all 12 compared)' : tie}`);
      expect(tie).toBeGreaterThan(0);
    }
  });
});
