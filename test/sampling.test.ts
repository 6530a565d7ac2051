import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Sampler, argmax, seededRandom } from '../src/nn/sampling.js';

describe('sampling', () => {
  it('argmax returns the first maximum', () => {
    expect(argmax([1, 3, 3, 2])).toBe(1);
  });

  it('temperature 0, top-k 1 and a tiny top-p are all greedy', () => {
    fc.assert(
      fc.property(fc.array(fc.float({ min: -20, max: 20, noNaN: true }), { minLength: 2, maxLength: 50 }), fc.integer(), (vals, seed) => {
        const logits = Float32Array.from(vals);
        const best = argmax(logits);
        const unique = logits.filter((v) => v === logits[best]).length === 1;
        expect(new Sampler({ temperature: 0 }).next(logits)).toBe(best);
        if (unique) {
          expect(new Sampler({ temperature: 1, topK: 1, seed }).next(logits)).toBe(best);
          expect(new Sampler({ temperature: 1, topP: 1e-9, seed }).next(logits)).toBe(best);
        }
      }),
    );
  });

  it('only ever samples from the top-k set, and follows the softmax distribution', () => {
    const logits = Float32Array.from([0, Math.log(2), Math.log(3), -50, -50]);
    const s = new Sampler({ temperature: 1, topK: 3, seed: 42 });
    const counts = [0, 0, 0, 0, 0];
    for (let i = 0; i < 6000; i++) counts[s.next(logits)]!++;
    expect(counts[3]! + counts[4]!).toBe(0);
    expect(counts[0]! / 6000).toBeCloseTo(1 / 6, 1);
    expect(counts[2]! / 6000).toBeCloseTo(3 / 6, 1);
  });

  it('repetition penalty pushes repeated tokens down', () => {
    const logits = Float32Array.from([2, 1.9, -1]);
    expect(new Sampler({ repetitionPenalty: 1.2 }).next(logits, [0])).toBe(1);
  });

  it('the seeded generator is reproducible and in [0, 1)', () => {
    const a = seededRandom(7), b = seededRandom(7);
    for (let i = 0; i < 100; i++) {
      const x = a();
      expect(x).toBe(b());
      expect(x >= 0 && x < 1).toBe(true);
    }
  });

  it('bad options are clear errors', () => {
    expect(() => new Sampler({ topP: 0 })).toThrow(/--top-p/);
    expect(() => new Sampler({ topK: -1 })).toThrow(/--top-k/);
  });
});
