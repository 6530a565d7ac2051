/**
 * Causal multi-head attention (GQA, sliding windows, left-padded blocks) in WebAssembly SIMD, twin of
 * `attentionRange` in src/tensor/kernels/attention.ts, over units [u0, u1) of (block b, head h),
 * u = b·H + h:
 *   out[s, h] = Σ_j softmax_j(scale · q[s, h]·k[j, g]) · v[j, g]     g = h / (H / Hkv), j ≤ its own position
 * The same arithmetic as the TypeScript kernel: dot products and the weighted sum in f64 (f32 values
 * promoted, two lanes), exp in f64, one rounding to f32 at the end; `scores` (kvLength f64) and `acc`
 * (headDim f64) are per-thread scratch. keyStarts = 0 means every block starts at key 0; window < 0
 * means no sliding window.
 */

@inline function load2(p: usize): v128 {
  return f64x2.promote_low_f32x4(v128.load64_zero(p));
}

export function attentionF64(
  q: usize, k: usize, v: usize, out: usize, S: i32, H: i32, Hkv: i32, d: i32, queryStart: i32, kvLength: i32, scale: f64,
  stride: i32, kvOffset: i32, causal: i32, window: i32, keyStarts: usize, u0: i32, u1: i32, scores: usize, acc: usize,
): void {
  const group = H / Hkv, qWidth = H * d, kvWidth = Hkv * d, d2 = d & ~1;
  for (let u = u0; u < u1; u++) {
    const b = u / H, h = u % H, g = h / group;
    const blockFirst = keyStarts ? load<i32>(keyStarts + (<usize>b << 2)) : 0;
    for (let s = 0; s < S; s++) {
      const qo = q + (<usize>((b * S + s) * qWidth + h * d) << 2);
      const oo = out + (<usize>((b * S + s) * qWidth + h * d) << 2);
      const last = causal ? queryStart + s : kvLength - 1;
      const first = window < 0 ? blockFirst : max(blockFirst, last + 1 - window);
      if (last < first) {
        memory.fill(oo, 0, <usize>d << 2); // a padding row: no keys to see
        continue;
      }
      let mx = -Infinity;
      for (let j = first; j <= last; j++) {
        const ko = k + (<usize>((kvOffset + b * stride + j) * kvWidth + g * d) << 2);
        let dv = f64x2.splat(0);
        for (let i = 0; i < d2; i += 2) dv = f64x2.add(dv, f64x2.mul(load2(qo + (<usize>i << 2)), load2(ko + (<usize>i << 2))));
        let dot = f64x2.extract_lane(dv, 0) + f64x2.extract_lane(dv, 1);
        if (d2 < d) dot += <f64>load<f32>(qo + (<usize>d2 << 2)) * <f64>load<f32>(ko + (<usize>d2 << 2));
        const sc = dot * scale;
        store<f64>(scores + (<usize>j << 3), sc);
        if (sc > mx) mx = sc;
      }
      let sum: f64 = 0;
      for (let j = first; j <= last; j++) {
        const e = Math.exp(load<f64>(scores + (<usize>j << 3)) - mx);
        store<f64>(scores + (<usize>j << 3), e);
        sum += e;
      }
      memory.fill(acc, 0, <usize>d << 3);
      for (let j = first; j <= last; j++) {
        const wv = f64x2.splat(load<f64>(scores + (<usize>j << 3)));
        const vo = v + (<usize>((kvOffset + b * stride + j) * kvWidth + g * d) << 2);
        for (let i = 0; i < d2; i += 2) {
          const a = acc + (<usize>i << 3);
          v128.store(a, f64x2.add(v128.load(a), f64x2.mul(wv, load2(vo + (<usize>i << 2)))));
        }
        if (d2 < d) {
          const a = acc + (<usize>d2 << 3);
          store<f64>(a, load<f64>(a) + f64x2.extract_lane(wv, 0) * <f64>load<f32>(vo + (<usize>d2 << 2)));
        }
      }
      for (let i = 0; i < d; i++) store<f32>(oo + (<usize>i << 2), <f32>(load<f64>(acc + (<usize>i << 3)) / sum));
    }
  }
}
