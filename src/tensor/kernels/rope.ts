/**
 * Rotary position embedding, rotate-half form (Hugging Face Llama):
 *   for each head and i < d/2, with angle a = pos · invFreq[i]:
 *     y[i]       = x[i]·cos a − x[i + d/2]·sin a
 *     y[i + d/2] = x[i + d/2]·cos a + x[i]·sin a
 * x: [S, H·d], positions: [S]. invFreq[i] = θ^(−2i/d), optionally rescaled (ropeInvFreq).
 * The rotation is linear and fixed per position, so it commutes with a sum over time steps.
 */
import { ArgumentError } from '../../errors.js';

export interface RopeScaling {
  readonly type: 'linear' | 'llama3';
  readonly factor: number;
  readonly lowFreqFactor?: number;
  readonly highFreqFactor?: number;
  readonly originalMaxPositionEmbeddings?: number;
}

/** Inverse frequencies for head dimension d (length d/2), with HF's `linear` and `llama3` scaling. */
export function ropeInvFreq(headDim: number, theta: number, scaling?: RopeScaling): Float64Array {
  if (headDim % 2 !== 0) throw new ArgumentError(`rope: head dimension ${headDim} must be even`);
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / theta ** ((2 * i) / headDim);
  if (scaling?.type === 'linear') for (let i = 0; i < half; i++) inv[i] = inv[i]! / scaling.factor;
  if (scaling?.type === 'llama3') {
    const low = scaling.lowFreqFactor ?? 1, high = scaling.highFreqFactor ?? 4;
    const oldCtx = scaling.originalMaxPositionEmbeddings ?? 8192;
    const lowWavelen = oldCtx / low, highWavelen = oldCtx / high;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i]!;
      if (wavelen > lowWavelen) inv[i] = inv[i]! / scaling.factor;
      else if (wavelen >= highWavelen) {
        const smooth = (oldCtx / wavelen - low) / (high - low);
        inv[i] = (1 - smooth) * (inv[i]! / scaling.factor) + smooth * inv[i]!;
      }
    }
  }
  return inv;
}

export function ropeCpu(x: Float32Array, positions: Int32Array, numHeads: number, headDim: number, invFreq: Float64Array, out: Float32Array): void {
  const half = headDim / 2;
  const width = numHeads * headDim;
  const S = positions.length;
  if (x.length !== S * width) throw new ArgumentError(`rope: x has ${x.length} elements, expected ${S}·${width}`);
  for (let s = 0; s < S; s++) {
    const pos = positions[s]!;
    for (let i = 0; i < half; i++) {
      const a = pos * invFreq[i]!;
      const cos = Math.cos(a), sin = Math.sin(a);
      for (let h = 0; h < numHeads; h++) {
        const o = s * width + h * headDim;
        const x1 = x[o + i]!, x2 = x[o + i + half]!;
        out[o + i] = x1 * cos - x2 * sin;
        out[o + i + half] = x2 * cos + x1 * sin;
      }
    }
  }
}
