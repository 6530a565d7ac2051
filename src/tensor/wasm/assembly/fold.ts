/**
 * Thresholds folded into a linear layer's weights in WebAssembly SIMD (AssemblyScript), twins of
 * foldRowsCpu and foldHalfRowsCpu in src/tensor/kernels/fold.ts, over rows [n0, n1) of w [N, K]:
 *   dst[n, k] = f32(w[n, k] · scaled[k])       scaled: K doubles (θ·unit)
 * Bit for bit the TypeScript kernels: each weight (float32, or a 16-bit weight widened exactly by
 * half.ts) is promoted to double, multiplied by its double and rounded to float32 once, four to a
 * step; the tail k ≥ K − K mod 4 one at a time. The weight type is a type parameter (f32, u8 marks
 * BF16, u16 marks F16), resolved at compile time.
 */

import { wload1, wload4 } from './half';

function foldW<W>(w: usize, scaled: usize, dst: usize, K: i32, n0: i32, n1: i32): void {
  const k4 = K & ~3, ws: usize = sizeof<W>() == 4 ? 2 : 1;
  for (let n = n0; n < n1; n++) {
    const wr = w + ((<usize>n * <usize>K) << ws), dr = dst + ((<usize>n * <usize>K) << 2);
    for (let k = 0; k < k4; k += 4) {
      const v = wload4<W>(wr + (<usize>k << ws));
      const s = scaled + (<usize>k << 3);
      const lo = f32x4.demote_f64x2_zero(f64x2.mul(f64x2.promote_low_f32x4(v), v128.load(s)));
      const hi = f32x4.demote_f64x2_zero(f64x2.mul(f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1)), v128.load(s, 16)));
      v128.store(dr + (<usize>k << 2), i32x4.shuffle(lo, hi, 0, 1, 4, 5));
    }
    for (let k = k4; k < K; k++) store<f32>(dr + (<usize>k << 2), <f32>(<f64>wload1<W>(wr + (<usize>k << ws)) * load<f64>(scaled + (<usize>k << 3))));
  }
}

export function foldF32(w: usize, scaled: usize, dst: usize, K: i32, n0: i32, n1: i32): void {
  foldW<f32>(w, scaled, dst, K, n0, n1);
}

export function foldBf16(w: usize, scaled: usize, dst: usize, K: i32, n0: i32, n1: i32): void {
  foldW<u8>(w, scaled, dst, K, n0, n1);
}

export function foldF16(w: usize, scaled: usize, dst: usize, K: i32, n0: i32, n1: i32): void {
  foldW<u16>(w, scaled, dst, K, n0, n1);
}
