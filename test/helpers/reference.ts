/**
 * Independent float64 references for the operators the spiking models compose, written from their
 * textbook definitions (not from src/): tests compare the engine against these, never the engine
 * against itself.
 */

/** Rows of a row-major [R, C] matrix. */
export function rowsOf(a: ArrayLike<number>, C: number): number[][] {
  const R = a.length / C;
  return Array.from({ length: R }, (_, r) => Array.from({ length: C }, (_, c) => a[r * C + c]!));
}

export const flat = (m: number[][]): number[] => m.flat();

export function layerNorm(x: number[], gamma: ArrayLike<number>, beta: ArrayLike<number> | undefined, eps: number): number[] {
  const mu = x.reduce((a, b) => a + b, 0) / x.length;
  const varr = x.reduce((a, b) => a + (b - mu) ** 2, 0) / x.length;
  return x.map((v, i) => ((v - mu) / Math.sqrt(varr + eps)) * gamma[i]! + (beta ? beta[i]! : 0));
}

export function rmsNorm(x: number[], gamma: ArrayLike<number>, eps: number): number[] {
  const ms = x.reduce((a, b) => a + b * b, 0) / x.length;
  return x.map((v, i) => (v / Math.sqrt(ms + eps)) * gamma[i]!);
}

export function softmax(x: number[]): number[] {
  const m = Math.max(...x);
  const e = x.map((v) => Math.exp(v - m));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / z);
}

const erf = (x: number): number => {
  // Abramowitz–Stegun 7.1.26 is too coarse for 1e-6 checks; use the series / continued fraction.
  const t = Math.abs(x);
  if (t < 3) {
    let sum = t, term = t;
    for (let n = 1; n < 80; n++) {
      term *= (-t * t) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * ((2 / Math.sqrt(Math.PI)) * sum);
  }
  // erfc asymptotic via continued fraction (Lentz)
  let f = t, C = t, D = 0;
  for (let n = 1; n < 60; n++) {
    const an = n / 2;
    D = t + an * D;
    D = 1 / D;
    C = t + an / C;
    f *= C * D;
  }
  return Math.sign(x) * (1 - Math.exp(-t * t) / (f * Math.sqrt(Math.PI)));
};

export const ACTIVATIONS: Record<string, (x: number) => number> = {
  gelu_tanh: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
  gelu_erf: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  gelu_quick: (x) => x / (1 + Math.exp(-1.702 * x)),
  silu: (x) => x / (1 + Math.exp(-x)),
  relu: (x) => Math.max(0, x),
};

/** Row-major x [R, K] times wᵀ (w [N, K]). */
export function matmulT(x: number[][], w: number[][]): number[][] {
  return x.map((row) => w.map((wr) => wr.reduce((a, v, k) => a + v * row[k]!, 0)));
}

/**
 * Causal multi-head attention with grouped KV heads: q [S, H·d] at positions start…start+S−1 over
 * k, v [start+S, Hkv·d]; each query sees keys up to its own position.
 */
export function attention(q: number[][], k: number[][], v: number[][], H: number, Hkv: number, d: number, start: number, scale: number): number[][] {
  return q.map((qr, s) => {
    const out: number[] = [];
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / (H / Hkv));
      const keys = k.slice(0, start + s + 1);
      const scores = keys.map((kr) => {
        let dot = 0;
        for (let i = 0; i < d; i++) dot += qr[h * d + i]! * kr[kh * d + i]!;
        return dot * scale;
      });
      const p = softmax(scores);
      for (let i = 0; i < d; i++) out.push(p.reduce((a, pj, j) => a + pj * v[j]![kh * d + i]!, 0));
    }
    return out;
  });
}

/** Running means over time of a time-major [T·R, C] array: the decoded value at every step, [T][R][C]. */
export function decodedSteps(x: ArrayLike<number>, T: number, C: number): number[][][] {
  const R = x.length / (T * C);
  const sum = Array.from({ length: R }, () => new Array<number>(C).fill(0));
  const out: number[][][] = [];
  for (let t = 0; t < T; t++) {
    for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) sum[r]![c]! += x[(t * R + r) * C + c]!;
    out.push(sum.map((row) => row.map((v) => v / (t + 1))));
  }
  return out;
}

/** Rotate-half RoPE of one row holding `heads` heads of size d, at position `pos`. */
export function rope(row: number[], heads: number, d: number, pos: number, invFreq: ArrayLike<number>): number[] {
  const out = row.slice();
  const half = d / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      const a = pos * invFreq[i]!, c = Math.cos(a), s = Math.sin(a);
      const x0 = row[h * d + i]!, x1 = row[h * d + half + i]!;
      out[h * d + i] = x0 * c - x1 * s;
      out[h * d + half + i] = x1 * c + x0 * s;
    }
  }
  return out;
}
