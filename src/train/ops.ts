/**
 * The operators a spiking model's forward uses, each with its exact backward, on float64 row-major
 * matrices — a small, fixed set (not a general autograd): the fine-tuning network (network.ts) calls
 * them in a straight line forward and in reverse backward. Shapes are [rows, columns].
 *
 *   linear       y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ        W [N, K] frozen; LoRA A [r, K], B [N, r] trained
 *   rmsNorm      y = γ ⊙ x·ρ,  ρ = 1/√(mean(x²) + ε)
 *   layerNorm    y = γ ⊙ (x − μ)·ρ + β,  ρ = 1/√(var(x) + ε)
 *   activation   y = f(x) (GELU tanh/erf/quick, SiLU, ReLU); gated: y = f(g)·u
 *   rope         rotation of each (i, i + d/2) pair by position·ω_i (Llama's rotate_half layout)
 *   klLoss       KL(p ‖ softmax(z)) of a teacher distribution p, gradient softmax(z) − p
 */
import type { Activation } from '../tensor/kernels/elementwise.js';
import { ACTIVATIONS, erf } from '../tensor/kernels/elementwise.js';

export interface LoRA {
  readonly rank: number;
  /** [rank, K] */
  readonly a: Float64Array;
  /** [N, rank] */
  readonly b: Float64Array;
  /** The update's scale s (1/rank·α in the LoRA paper; here 1: the optimiser's step sets the size). */
  readonly scale: number;
}

export interface Dense {
  /** [N, K], the frozen weight. */
  readonly weight: Float32Array;
  readonly bias?: Float32Array;
  readonly N: number;
  readonly K: number;
}

/** y [R, N] = x [R, K]·Wᵀ + b (+ LoRA). Returns also x·Aᵀ [R, rank] for the backward. */
export function linearForward(x: Float64Array, R: number, l: Dense, lora?: LoRA): { y: Float64Array; xa?: Float64Array } {
  const { N, K, weight: W, bias } = l;
  const y = new Float64Array(R * N);
  for (let r = 0; r < R; r++) {
    const xo = r * K;
    for (let n = 0; n < N; n++) {
      const wo = n * K;
      let acc = bias ? bias[n]! : 0;
      for (let k = 0; k < K; k++) acc += x[xo + k]! * W[wo + k]!;
      y[r * N + n] = acc;
    }
  }
  if (!lora) return { y };
  const rank = lora.rank, xa = new Float64Array(R * rank);
  for (let r = 0; r < R; r++) {
    for (let j = 0; j < rank; j++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += x[r * K + k]! * lora.a[j * K + k]!;
      xa[r * rank + j] = acc;
    }
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let j = 0; j < rank; j++) acc += xa[r * rank + j]! * lora.b[n * rank + j]!;
      y[r * N + n] += lora.scale * acc;
    }
  }
  return { y, xa };
}

/** dx [R, K] = dy·W (+ s·(dy·B)·A); accumulates dA, dB when a LoRA is given. */
export function linearBackward(dy: Float64Array, x: Float64Array, R: number, l: Dense, lora?: LoRA, xa?: Float64Array, grad?: { a: Float64Array; b: Float64Array }): Float64Array {
  const { N, K, weight: W } = l;
  const dx = new Float64Array(R * K);
  for (let r = 0; r < R; r++) {
    const xo = r * K;
    for (let n = 0; n < N; n++) {
      const g = dy[r * N + n]!;
      if (g === 0) continue;
      const wo = n * K;
      for (let k = 0; k < K; k++) dx[xo + k] += g * W[wo + k]!;
    }
  }
  if (!lora || !xa || !grad) return dx;
  const rank = lora.rank, s = lora.scale, dyb = new Float64Array(rank);
  for (let r = 0; r < R; r++) {
    dyb.fill(0);
    for (let n = 0; n < N; n++) {
      const g = dy[r * N + n]! * s;
      if (g === 0) continue;
      for (let j = 0; j < rank; j++) {
        dyb[j] += g * lora.b[n * rank + j]!;
        grad.b[n * rank + j] += g * xa[r * rank + j]!;
      }
    }
    for (let j = 0; j < rank; j++) {
      const g = dyb[j]!;
      for (let k = 0; k < K; k++) {
        dx[r * K + k] += g * lora.a[j * K + k]!;
        grad.a[j * K + k] += g * x[r * K + k]!;
      }
    }
  }
  return dx;
}

export type NormKind = 'rms' | 'layer';

/** Row norms: y and the per-row ρ (the backward's only saved statistic besides x). */
export function normForward(kind: NormKind, x: Float64Array, R: number, C: number, gamma: Float64Array, beta: Float32Array | undefined, eps: number): { y: Float64Array; rho: Float64Array } {
  const y = new Float64Array(R * C), rho = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    const o = r * C;
    let mean = 0;
    if (kind === 'layer') {
      for (let c = 0; c < C; c++) mean += x[o + c]!;
      mean /= C;
    }
    let ss = 0;
    for (let c = 0; c < C; c++) ss += (x[o + c]! - mean) ** 2;
    const p = 1 / Math.sqrt(ss / C + eps);
    rho[r] = p;
    for (let c = 0; c < C; c++) y[o + c] = (x[o + c]! - mean) * p * gamma[c]! + (beta ? beta[c]! : 0);
  }
  return { y, rho };
}

/**
 * dx from dy; accumulates dγ. With x̂ the normalised row and g = γ ⊙ dy:
 *   rms:   dx = ρ·g − ρ·x̂·mean(g ⊙ x̂)          (x̂ = x·ρ)
 *   layer: dx = ρ·(g − mean(g) − x̂·mean(g ⊙ x̂))  (x̂ = (x − μ)·ρ)
 */
export function normBackward(kind: NormKind, dy: Float64Array, x: Float64Array, rho: Float64Array, R: number, C: number, gamma: Float64Array, dGamma?: Float64Array): Float64Array {
  const dx = new Float64Array(R * C), xh = new Float64Array(C), g = new Float64Array(C);
  for (let r = 0; r < R; r++) {
    const o = r * C, p = rho[r]!;
    let mean = 0;
    if (kind === 'layer') {
      for (let c = 0; c < C; c++) mean += x[o + c]!;
      mean /= C;
    }
    let gMean = 0, gx = 0;
    for (let c = 0; c < C; c++) {
      xh[c] = (x[o + c]! - mean) * p;
      g[c] = gamma[c]! * dy[o + c]!;
      if (dGamma) dGamma[c] += dy[o + c]! * xh[c]!;
      gMean += g[c]!;
      gx += g[c]! * xh[c]!;
    }
    gMean = kind === 'layer' ? gMean / C : 0;
    gx /= C;
    for (let c = 0; c < C; c++) dx[o + c] = p * (g[c]! - gMean - xh[c]! * gx);
  }
  return dx;
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** f'(x) of each activation (the forward is kernels/elementwise.ts's ACTIVATIONS). */
export function activationGrad(kind: Activation, x: number): number {
  switch (kind) {
    case 'gelu_tanh': {
      const u = SQRT_2_OVER_PI * (x + 0.044715 * x ** 3), t = Math.tanh(u);
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x);
    }
    case 'gelu_erf':
      return 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
    case 'gelu_quick': {
      const s = 1 / (1 + Math.exp(-1.702 * x));
      return s + 1.702 * x * s * (1 - s);
    }
    case 'silu': {
      const s = 1 / (1 + Math.exp(-x));
      return s + x * s * (1 - s);
    }
    case 'relu':
      return x > 0 ? 1 : 0;
  }
}

/** y = f(x), or f(gate)·up for a gated MLP whose input rows are [gate | up] (width 2·I). */
export function activationForward(kind: Activation, x: Float64Array, R: number, I: number, gated: boolean): Float64Array {
  const f = ACTIVATIONS[kind], y = new Float64Array(R * I);
  for (let r = 0; r < R; r++) {
    for (let i = 0; i < I; i++) y[r * I + i] = gated ? f(x[r * 2 * I + i]!) * x[r * 2 * I + I + i]! : f(x[r * I + i]!);
  }
  return y;
}

export function activationBackward(kind: Activation, dy: Float64Array, x: Float64Array, R: number, I: number, gated: boolean): Float64Array {
  const f = ACTIVATIONS[kind], dx = new Float64Array(x.length);
  for (let r = 0; r < R; r++) {
    for (let i = 0; i < I; i++) {
      const g = dy[r * I + i]!;
      if (!gated) {
        dx[r * I + i] = g * activationGrad(kind, x[r * I + i]!);
        continue;
      }
      const gv = x[r * 2 * I + i]!, up = x[r * 2 * I + I + i]!;
      dx[r * 2 * I + i] = g * activationGrad(kind, gv) * up;
      dx[r * 2 * I + I + i] = g * f(gv);
    }
  }
  return dx;
}

/**
 * RoPE on columns [col, col + heads·d) of rows of width W, in place; `inverse` rotates back (the
 * backward of a rotation is its transpose).
 */
export function ropeInPlace(x: Float64Array, S: number, W: number, col: number, heads: number, d: number, invFreq: Float64Array, inverse: boolean): void {
  const half = d / 2;
  for (let s = 0; s < S; s++) {
    for (let i = 0; i < half; i++) {
      const angle = s * invFreq[i]!, cos = Math.cos(angle), sin = inverse ? -Math.sin(angle) : Math.sin(angle);
      for (let h = 0; h < heads; h++) {
        const o = s * W + col + h * d;
        const x1 = x[o + i]!, x2 = x[o + i + half]!;
        x[o + i] = x1 * cos - x2 * sin;
        x[o + i + half] = x2 * cos + x1 * sin;
      }
    }
  }
}

/**
 * KL(p ‖ softmax(z)) summed over rows of teacher logits t and student logits z [R, V], and its
 * gradient softmax(z) − softmax(t) (per row; scale by the caller's normalisation).
 */
export function klLoss(teacher: Float64Array, z: Float64Array, R: number, V: number): { loss: number; grad: Float64Array } {
  const grad = new Float64Array(R * V);
  let loss = 0;
  for (let r = 0; r < R; r++) {
    const o = r * V;
    const lse = (a: Float64Array) => {
      let m = -Infinity;
      for (let v = 0; v < V; v++) m = Math.max(m, a[o + v]!);
      let s = 0;
      for (let v = 0; v < V; v++) s += Math.exp(a[o + v]! - m);
      return m + Math.log(s);
    };
    const lt = lse(teacher), lz = lse(z);
    for (let v = 0; v < V; v++) {
      const logP = teacher[o + v]! - lt, logQ = z[o + v]! - lz, p = Math.exp(logP);
      loss += p * (logP - logQ);
      grad[o + v] = Math.exp(logQ) - p;
    }
  }
  return { loss, grad };
}
