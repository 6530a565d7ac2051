/**
 * Tolerances, stated once per number format: |actual − expected| ≤ atol + rtol·|expected|.
 * Comparisons report max abs error, relative RMS error and the first mismatches.
 */
import { expect } from 'vitest';

export interface Tolerance {
  readonly atol: number;
  readonly rtol: number;
}

export const TOL = {
  /** Two float32 computations of the same value by different summation orders. */
  f32: { atol: 1e-5, rtol: 1e-5 },
  /** float32 engine vs the float64 golden reference (issue 2's acceptance bound). */
  golden: { atol: 1e-4, rtol: 1e-4 },
  /**
   * GPU (WGSL f32, different reduction order and transcendental approximations) vs golden: the CPU's
   * bound. Measured on llvmpipe: max |Δ| 1.1e-5 (stories260k), 1.9e-6 (gpt2-random-f16), 5e-7
   * (tiny-gpt2-random), with the adapter's kernels and with the hardware-shaped ones forced.
   */
  gpuGolden: { atol: 1e-4, rtol: 1e-4 },
  /** A GPU kernel vs its CPU twin on random inputs. */
  gpuKernel: { atol: 1e-4, rtol: 1e-4 },
  /**
   * The f16-arithmetic matmul (SPIKELM_GPU_ARITH=f16) vs an f16 reference (inputs and each product
   * rounded to binary16, summed in float64): the accumulation's float32 rounding and order only.
   */
  gpuF16Kernel: { atol: 1e-4, rtol: 1e-4 },
  /**
   * Whole models with f16 arithmetic vs the CPU's float32 logits: the error budget of rounding every
   * weight and matmul input to binary16. Measured on lavapipe: max |Δ| 1.8e-2 (stories260k, logits
   * up to 18.9), 3.6e-3 (gpt2-random-f16), 6.4e-3 (qwen3-random).
   */
  gpuF16Model: { atol: 5e-2, rtol: 1e-2 },
} as const satisfies Record<string, Tolerance>;

export interface Comparison {
  readonly ok: boolean;
  readonly maxAbsError: number;
  readonly relRmsError: number;
  readonly mismatches: string[];
}

export function compare(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance): Comparison {
  if (actual.length !== expected.length) {
    return { ok: false, maxAbsError: Infinity, relRmsError: Infinity, mismatches: [`length ${actual.length} ≠ ${expected.length}`] };
  }
  let maxAbs = 0, errSq = 0, refSq = 0;
  const mismatches: string[] = [];
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!, e = expected[i]!;
    const d = Math.abs(a - e);
    if (!(d <= tol.atol + tol.rtol * Math.abs(e))) {
      if (mismatches.length < 8) mismatches.push(`[${i}] ${a} vs ${e} (|Δ| ${d.toExponential(2)})`);
      else if (mismatches.length === 8) mismatches.push('…');
    }
    if (!(d <= maxAbs)) maxAbs = Number.isNaN(d) ? NaN : Math.max(maxAbs, d);
    errSq += d * d;
    refSq += e * e;
  }
  const relRms = Math.sqrt(errSq / Math.max(refSq, 1e-30));
  return { ok: mismatches.length === 0, maxAbsError: maxAbs, relRmsError: relRms, mismatches };
}

export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance, what = 'values'): Comparison {
  const c = compare(actual, expected, tol);
  if (!c.ok) {
    expect.fail(`${what}: max |Δ| ${c.maxAbsError.toExponential(3)}, rel RMS ${c.relRmsError.toExponential(3)}, tolerance ${tol.atol} + ${tol.rtol}·|ref|; first mismatches: ${c.mismatches.join('; ')}`);
  }
  return c;
}

/** Deterministic pseudo-random floats in [−scale, scale). */
export function randomArray(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

/**
 * Bitwise equality of two long float arrays, failing with the first differing index (vitest's
 * toEqual would diff every element of logits-sized arrays, which takes minutes).
 */
export function expectIdentical(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  let first = -1;
  for (let i = 0; i < expected.length; i++) if (!Object.is(actual[i], expected[i])) { first = i; break; }
  expect(first, first < 0 ? what : `${what}: first difference at [${first}]: ${actual[first]} vs ${expected[first]}`).toBe(-1);
}
