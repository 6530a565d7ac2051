/** Neurons: run ≡ step loop, the decoding bound, saturation, reset modes, LIF, and GPU parity. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IFNeuron, LIFNeuron } from '../src/snn/neurons.js';
import { inverseThresholds, neuronRunCpu } from '../src/tensor/kernels/neuron.js';
import { Tensor } from '../src/tensor/tensor.js';
import { requireGpu } from './helpers/backends.js';

const f32 = Math.fround;
const mean = (a: ArrayLike<number>) => Array.from(a).reduce((x, y) => x + y, 0) / a.length;

describe('IF / LIF neurons', () => {
  it('run(xSeq) equals a loop of step(x, state), for every parameter combination', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 4 }),
        fc.record({ maxSpikes: fc.constantFrom(1, 2, Infinity), signed: fc.boolean(), reset: fc.constantFrom('subtract', 'zero', 'none') as fc.Arbitrary<'subtract' | 'zero' | 'none'>, fire: fc.constantFrom('>=', '>') as fc.Arbitrary<'>=' | '>'>, initial: fc.constantFrom('zero', 'half') as fc.Arbitrary<'zero' | 'half'> }),
        fc.boolean(), fc.integer(),
        (T, rowsPerChannel, C, cfg, leaky, seed) => {
          const theta = Float32Array.from({ length: C }, (_, i) => 0.5 + i * 0.3);
          const neuron = leaky ? new LIFNeuron(theta, 4, cfg) : new IFNeuron(theta, cfg);
          const n = rowsPerChannel * C;
          const x = Float32Array.from({ length: T * n }, (_, i) => f32(Math.sin(seed + i * 1.7) * 2));
          const all = neuron.run(x, T);
          const state = neuron.initState(n);
          for (let t = 0; t < T; t++) {
            const out = neuron.step(x.subarray(t * n, (t + 1) * n), state);
            expect(Array.from(out)).toEqual(Array.from(all.subarray(t * n, (t + 1) * n)));
          }
          expect(state.t).toBe(T);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('|θ·N(T)/T − mean input| ≤ θ/(2T) with the half start and θ/T without, for in-range input', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }), fc.float({ min: Math.fround(0.05), max: 4, noNaN: true }), fc.boolean(), fc.boolean(), fc.integer(), (T, theta, half, signed, seed) => {
        const neuron = new IFNeuron(theta, { maxSpikes: 1, signed, initial: half ? 'half' : 'zero' });
        // in range for single-spike neurons: |x_t| ≤ θ (x_t ≥ 0 when unsigned), any sequence
        const x = Float32Array.from({ length: T }, (_, t) => f32(theta * (signed ? Math.sin(seed + t * 2.3) : 0.5 + 0.5 * Math.sin(seed + t * 2.3))));
        const spikes = neuron.run(x, T);
        const decoded = (theta * spikes.reduce((a, b) => a + b, 0)) / T;
        const bound = (half ? theta / 2 : theta) / T;
        expect(Math.abs(decoded - mean(x))).toBeLessThanOrEqual(bound * (1 + 1e-5) + 1e-6);
      }),
      { numRuns: 500 },
    );
  });

  it('unbounded bursts (sigma-delta) keep the bound for any input, and Σn·θ is the rounded input sum', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100 }), fc.float({ min: Math.fround(0.1), max: 3, noNaN: true }), fc.integer(), (T, theta, seed) => {
        const neuron = new IFNeuron(theta, { maxSpikes: Infinity });
        const x = Float32Array.from({ length: T }, (_, t) => f32(10 * Math.sin(seed + t * 0.9) + 3));
        const N = neuron.run(x, T).reduce((a, b) => a + b, 0);
        const sum = x.reduce((a, b) => a + b, 0);
        expect(Math.abs((theta * N) / T - sum / T)).toBeLessThanOrEqual(theta / (2 * T) + 1e-4);
        expect(N).toBe(Math.floor(sum / theta + 0.5));
      }),
      { numRuns: 300 },
    );
  });

  it('saturation: input beyond B·θ per step decodes to B·θ, and predictedError says how much is lost', () => {
    for (const B of [1, 3]) {
      const theta = 0.5, x = 2.2, T = 64;
      const neuron = new IFNeuron(theta, { maxSpikes: B });
      const decoded = (theta * neuron.run(new Float32Array(T).fill(x), T).reduce((a, b) => a + b, 0)) / T;
      const { clipping, quantization } = neuron.predictedError(x, T);
      expect(clipping).toBeCloseTo(Math.max(0, x - B * theta), 6);
      expect(Math.abs(x - decoded - clipping)).toBeLessThanOrEqual(quantization + 1e-6);
    }
  });

  it('reset modes, fire conditions and LIF leak follow their equations', () => {
    // fire '>' does not fire at exactly θ; '>=' does
    expect(Array.from(new IFNeuron(1, { initial: 'zero', fire: '>=' }).run(Float32Array.of(1), 1))).toEqual([1]);
    expect(Array.from(new IFNeuron(1, { initial: 'zero', fire: '>' }).run(Float32Array.of(1), 1))).toEqual([0]);
    // reset to zero forgets the surplus; subtract keeps it
    expect(Array.from(new IFNeuron(1, { initial: 'zero', maxSpikes: 1, reset: 'zero' }).run(Float32Array.of(1.6, 0.6), 2))).toEqual([1, 0]);
    expect(Array.from(new IFNeuron(1, { initial: 'zero', maxSpikes: 1, reset: 'subtract' }).run(Float32Array.of(1.6, 0.6), 2))).toEqual([1, 1]);
    // no reset: fires every step while above threshold
    expect(Array.from(new IFNeuron(1, { initial: 'zero', maxSpikes: 1, reset: 'none' }).run(Float32Array.of(1.2, 0, 0), 3))).toEqual([1, 1, 1]);
    // unsigned neurons never spike negatively
    expect(Array.from(new IFNeuron(1, { signed: false }).run(Float32Array.of(-3, -3), 2))).toEqual([0, 0]);
    // LIF: v = β v + x with β = 1 − 1/τ; with τ = 2 a constant 0.6 settles at 1.2 → fires once then decays
    const lif = new LIFNeuron(1, 2, { initial: 'zero', maxSpikes: 1 });
    const s = lif.initState(1);
    const fired: number[] = [];
    for (let t = 0; t < 4; t++) fired.push(lif.step(Float32Array.of(0.6), s)[0]!);
    expect(fired).toEqual([0, 0, 1, 0]); // v: .6, .9, 1.05→.05, .625
    expect(s.v[0]).toBeCloseTo(0.625, 5);
  });

  it('rejects bad parameters with clear errors', () => {
    expect(() => new IFNeuron(0)).toThrow(/threshold 0 must be a positive number/);
    expect(() => new IFNeuron(1, { maxSpikes: 0 })).toThrow(/maxSpikes/);
    expect(() => new LIFNeuron(1, 0.5)).toThrow(/τ must be ≥ 1/);
    expect(() => new IFNeuron(Float32Array.of(1, 2)).run(new Float32Array(3), 1)).toThrow(/not a multiple of 2/);
  });
});

describe('neuron kernel on the GPU', () => {
  it('emits exactly the CPU spikes and membrane, in one run and split into single steps', async (ctx) => {
    const g = await requireGpu(ctx);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 37 }), fc.integer({ min: 1, max: 9 }), fc.constantFrom(1, 3, Infinity), fc.boolean(), fc.constantFrom('>=', '>') as fc.Arbitrary<'>=' | '>'>, fc.constantFrom('subtract', 'zero', 'none') as fc.Arbitrary<'subtract' | 'zero' | 'none'>, fc.integer(), async (T, R, C, maxSpikes, signed, fire, reset, seed) => {
        const cfg = { maxSpikes, signed, fire, reset, initial: 'half' as const, leak: seed % 3 === 0 ? 0.75 : 1 };
        const theta = Float32Array.from({ length: C }, (_, i) => f32(0.3 + (Math.abs(seed + i * 7) % 10) / 7));
        const inv = inverseThresholds(theta);
        const x = Float32Array.from({ length: T * R * C }, (_, i) => f32(Math.sin(seed * 0.01 + i * 0.77) * 3));
        const expected = new Float32Array(x.length), membrane = new Float32Array(R * C);
        neuronRunCpu(x, T, R, C, theta, inv, cfg, expected, membrane);
        const th = { theta: g.upload(new Tensor([C], theta)), invTheta: g.upload(new Tensor([C], inv)) };
        const spikes = await g.read(g.neuronRun(g.upload(new Tensor([T * R, C], x)), T, th, cfg));
        expect(Array.from(spikes.data)).toEqual(Array.from(expected));
        // single steps with the membrane carried on the GPU
        const state = g.zeros([R, C]);
        for (let t = 0; t < T; t++) {
          const step = await g.read(g.neuronRun(g.upload(new Tensor([R, C], x.subarray(t * R * C, (t + 1) * R * C))), 1, th, cfg, { tensor: state, t0: t }));
          expect(Array.from(step.data)).toEqual(Array.from(expected.subarray(t * R * C, (t + 1) * R * C)));
        }
        expect(Array.from((await g.read(state)).data)).toEqual(Array.from(membrane));
      }),
      { numRuns: 25 },
    );
  });
});
