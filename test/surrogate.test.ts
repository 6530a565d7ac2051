import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SURROGATE_NAMES, heaviside, spikeBackward, surrogate } from '../src/snn/surrogate.js';

describe('surrogate gradients', () => {
  it.each(SURROGATE_NAMES)('%s: forward is the Heaviside step, backward matches finite differences of its smooth function', (name) => {
    fc.assert(
      fc.property(fc.double({ min: -3, max: 3, noNaN: true }), fc.double({ min: 0.5, max: 8, noNaN: true }), (u, alpha) => {
        const s = surrogate(name, alpha);
        expect(s.forward(u)).toBe(heaviside(u));
        const h = 1e-6;
        // skip the kinks of the clipped straight-through estimator
        if (name === 'stbif_plus' && Math.abs(Math.abs(u) - 0.5 / alpha) < 1e-4) return;
        const fd = (s.smooth(u + h) - s.smooth(u - h)) / (2 * h);
        expect(Math.abs(s.grad(u) - fd)).toBeLessThan(1e-4 * Math.max(1, alpha));
      }),
      { numRuns: 300 },
    );
  });

  it('smooth functions go from 0 to 1 through 1/2 at the threshold, and sharpen with alpha', () => {
    for (const name of SURROGATE_NAMES) {
      const s = surrogate(name, 4);
      expect(s.smooth(0)).toBeCloseTo(0.5, 12);
      expect(s.smooth(-1e6)).toBeCloseTo(0, 6);
      expect(s.smooth(1e6)).toBeCloseTo(1, 6);
      expect(surrogate(name, 8).grad(0)).toBeGreaterThan(surrogate(name, 2).grad(0));
    }
  });

  it('spikeBackward scales the upstream gradient by σ\'((v − θ)/θ)/θ per channel', () => {
    const s = surrogate('atan', 2);
    const g = spikeBackward(s, Float32Array.of(1, 3), Float32Array.of(1, 2), Float32Array.of(1, 1));
    expect(g[0]).toBeCloseTo(s.grad(0), 6);
    expect(g[1]).toBeCloseTo(s.grad(0.5) / 2, 6);
  });

  it('rejects unknown names and bad alpha', () => {
    expect(() => surrogate('relu' as never)).toThrow(/unknown surrogate/);
    expect(() => surrogate('atan', -1)).toThrow(/alpha/);
  });
});
