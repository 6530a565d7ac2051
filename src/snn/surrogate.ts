/**
 * Surrogate gradients: the forward pass of a spike is the Heaviside step H(u) of the membrane
 * relative to threshold, u = v − θ; the backward pass replaces H' (a Dirac delta) by the derivative
 * of a smooth function σ(u) that H approximates. `alpha` sets the sharpness.
 *
 *   atan      σ(u) = ½ + (1/π)·atan(½π·α·u),   σ'(u) = (α/2) / (1 + (½π·α·u)²)     (SpikingJelly ATan)
 *   sigmoid   σ(u) = 1 / (1 + e^(−α·u)),       σ'(u) = α·σ(u)·(1 − σ(u))           (SpikingJelly Sigmoid)
 *   stbif_plus  the straight-through estimator of SpikeZIP-TF's ST-BIF+ neuron (You et al., "SpikeZIP-TF:
 *             Conversion is All You Need for Transformer-based SNN", ICML 2024). There the ST-BIF+
 *             neuron is trained as its quantized-ANN equivalent, Q(x) = clip(round(x/θ), S_min, S_max)·θ,
 *             and the rounding's gradient is passed straight through (taken as 1) inside the clip
 *             range and 0 outside. For one spike (u in units of θ) that is the clipped identity
 *               σ(u) = clip(α·u + ½, 0, 1),   σ'(u) = α for |u| < 1/(2α), else 0,
 *             with α = 1 the plain straight-through estimator over one threshold's width.
 * `heaviside` is the forward of all three; tests check each σ' against finite differences of σ.
 */
import { ArgumentError } from '../errors.js';

export type SurrogateName = 'atan' | 'sigmoid' | 'stbif_plus';
export const SURROGATE_NAMES: readonly SurrogateName[] = ['atan', 'sigmoid', 'stbif_plus'];

export interface Surrogate {
  readonly name: SurrogateName;
  readonly alpha: number;
  /** Forward: the spike, H(u) = 1 if u ≥ 0 else 0. */
  forward(u: number): number;
  /** The smooth function the spike stands for. */
  smooth(u: number): number;
  /** Backward: dσ/du, used in place of H'(u). */
  grad(u: number): number;
}

export function heaviside(u: number): number {
  return u >= 0 ? 1 : 0;
}

export function surrogate(name: SurrogateName, alpha?: number): Surrogate {
  switch (name) {
    case 'atan': {
      const a = alpha ?? 2;
      check(name, a);
      return {
        name, alpha: a, forward: heaviside,
        smooth: (u) => 0.5 + Math.atan((Math.PI / 2) * a * u) / Math.PI,
        grad: (u) => a / 2 / (1 + ((Math.PI / 2) * a * u) ** 2),
      };
    }
    case 'sigmoid': {
      const a = alpha ?? 4;
      check(name, a);
      const sig = (u: number) => 1 / (1 + Math.exp(-a * u));
      return { name, alpha: a, forward: heaviside, smooth: sig, grad: (u) => a * sig(u) * (1 - sig(u)) };
    }
    case 'stbif_plus': {
      const a = alpha ?? 1;
      check(name, a);
      return {
        name, alpha: a, forward: heaviside,
        smooth: (u) => Math.min(1, Math.max(0, a * u + 0.5)),
        grad: (u) => (Math.abs(u) < 0.5 / a ? a : 0),
      };
    }
    default:
      throw new ArgumentError(`unknown surrogate function "${name as string}" (known: ${SURROGATE_NAMES.join(', ')})`);
  }
}

function check(name: string, alpha: number): void {
  if (!(alpha > 0) || !Number.isFinite(alpha)) throw new ArgumentError(`surrogate ${name}: alpha must be a positive number, got ${alpha}`);
}

/**
 * Backward through one IF neuron's spike (single-spike view): given the membrane before firing,
 * v[t], and the upstream gradient dL/dn[t], returns dL/dv[t] = dL/dn · σ'((v − θ)/θ)/θ.
 */
export function spikeBackward(s: Surrogate, v: Float32Array, theta: Float32Array, gradOut: Float32Array): Float32Array {
  const out = new Float32Array(v.length);
  const C = theta.length;
  for (let i = 0; i < v.length; i++) {
    const th = theta[i % C]!;
    out[i] = (gradOut[i]! * s.grad((v[i]! - th) / th)) / th;
  }
  return out;
}
