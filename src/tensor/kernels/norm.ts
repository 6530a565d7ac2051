/**
 * Row normalisations over the last dimension of x: [R, C].
 *   layerNorm: y = (x − mean) / √(var + eps) · γ + β     (biased variance, as torch.nn.LayerNorm)
 *   rmsNorm:   y = x / √(mean(x²) + eps) · γ             (Llama RMSNorm)
 * Statistics are accumulated in double precision.
 */

export function layerNormCpu(x: Float32Array, gamma: Float32Array, beta: Float32Array | undefined, eps: number, R: number, C: number, out: Float32Array): void {
  for (let r = 0; r < R; r++) {
    const o = r * C;
    let mean = 0;
    for (let c = 0; c < C; c++) mean += x[o + c]!;
    mean /= C;
    let variance = 0;
    for (let c = 0; c < C; c++) {
      const d = x[o + c]! - mean;
      variance += d * d;
    }
    variance /= C;
    const inv = 1 / Math.sqrt(variance + eps);
    for (let c = 0; c < C; c++) out[o + c] = (x[o + c]! - mean) * inv * gamma[c]! + (beta ? beta[c]! : 0);
  }
}

export function rmsNormCpu(x: Float32Array, gamma: Float32Array, eps: number, R: number, C: number, out: Float32Array): void {
  for (let r = 0; r < R; r++) {
    const o = r * C;
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[o + c]! * x[o + c]!;
    const inv = 1 / Math.sqrt(ss / C + eps);
    for (let c = 0; c < C; c++) out[o + c] = x[o + c]! * inv * gamma[c]!;
  }
}
