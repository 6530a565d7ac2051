/**
 * Dense products over 16-bit weights (BF16 or IEEE binary16 bits), twins of
 * src/tensor/kernels/half-matmul.ts: y[m, n] = Σ_k x[m, k] · widen(w[n, k]) + bias[n] over output
 * columns [n0, n1), x and y float32, w [N, K] 16-bit (row stride 2·K bytes).
 *
 * Each weight is widened to float32 in registers as it is loaded — BF16: the bits shifted up 16;
 * F16 (Node 20's SIMD has no f16 instructions): exponent and mantissa shifted into place and scaled
 * by 2^112, which also turns subnormal halves into the right normal floats, with Inf/NaN patterns
 * given float32's all-ones exponent and the sign or-ed back. The sums are exactly those of
 * matmul.ts's float32 kernels (same lanes, same pairwise lane sum, same tail, then the bias), so a
 * product over a half weight gives the bits the float32 kernel gives over its widened copy: the
 * only difference is half the bytes read per weight, which is what decode is bound by.
 *
 * The format is a type parameter (u8 marks BF16, u16 marks F16), resolved at compile time.
 */

const F16_SCALE: f32 = reinterpret<f32>(<u32>0x77800000); // 2^112

@inline function hsum4(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

/** Four 16-bit weights at p, widened to an f32x4. */
@inline function wide4<T>(p: usize): v128 {
  const h = i32x4.extend_low_i16x8_u(v128.load64_zero(p));
  if (sizeof<T>() == 1) return i32x4.shl(h, 16);
  const mag = v128.and(h, i32x4.splat(0x7fff));
  const em = i32x4.shl(mag, 13);
  const scaled = f32x4.mul(em, f32x4.splat(F16_SCALE));
  const special = i32x4.ge_u(mag, i32x4.splat(0x7c00));
  const bits = v128.bitselect(v128.or(em, i32x4.splat(0x7f800000)), scaled, special);
  return v128.or(bits, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

/** One 16-bit weight at p, widened. */
@inline function wide1<T>(p: usize): f32 {
  const h = <u32>load<u16>(p);
  if (sizeof<T>() == 1) return reinterpret<f32>(h << 16);
  const mag = h & 0x7fff, em = mag << 13;
  const bits = mag >= 0x7c00 ? em | 0x7f800000 : reinterpret<u32>(reinterpret<f32>(em) * F16_SCALE);
  return reinterpret<f32>(bits | ((h & 0x8000) << 16));
}

@inline function biasF32(bias: usize, n: i32): f32 {
  return bias ? load<f32>(bias + (<usize>n << 2)) : 0;
}

/** x row (float32) · one 16-bit weight row, as matmul.ts's dotF32. */
function dotHalf<T>(a: usize, b: usize, K: i32): f32 {
  const k4 = K & ~3;
  let acc = f32x4.splat(0);
  for (let k = 0; k < k4; k += 4) acc = f32x4.add(acc, f32x4.mul(v128.load(a + (<usize>k << 2)), wide4<T>(b + (<usize>k << 1))));
  let s = hsum4(acc);
  for (let k = k4; k < K; k++) s += load<f32>(a + (<usize>k << 2)) * wide1<T>(b + (<usize>k << 1));
  return s;
}

/** One row of x against weight rows [n0, n1), four at a time (matmul.ts's rowF32). */
function rowHalf<T>(xr: usize, w: usize, bias: usize, yr: usize, K: i32, n0: i32, n1: i32): void {
  const rb = <usize>K << 1, k4 = K & ~3;
  let n = n0;
  for (; n + 4 <= n1; n += 4) {
    const p0 = w + <usize>n * rb, p1 = p0 + rb, p2 = p1 + rb, p3 = p2 + rb;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    for (let k = 0; k < k4; k += 4) {
      const xv = v128.load(xr + (<usize>k << 2)), o = <usize>k << 1;
      a0 = f32x4.add(a0, f32x4.mul(xv, wide4<T>(p0 + o)));
      a1 = f32x4.add(a1, f32x4.mul(xv, wide4<T>(p1 + o)));
      a2 = f32x4.add(a2, f32x4.mul(xv, wide4<T>(p2 + o)));
      a3 = f32x4.add(a3, f32x4.mul(xv, wide4<T>(p3 + o)));
    }
    let s0 = hsum4(a0), s1 = hsum4(a1), s2 = hsum4(a2), s3 = hsum4(a3);
    for (let k = k4; k < K; k++) {
      const xk = load<f32>(xr + (<usize>k << 2)), o = <usize>k << 1;
      s0 += xk * wide1<T>(p0 + o); s1 += xk * wide1<T>(p1 + o); s2 += xk * wide1<T>(p2 + o); s3 += xk * wide1<T>(p3 + o);
    }
    const yo = yr + (<usize>n << 2);
    store<f32>(yo, s0 + biasF32(bias, n));
    store<f32>(yo, s1 + biasF32(bias, n + 1), 4);
    store<f32>(yo, s2 + biasF32(bias, n + 2), 8);
    store<f32>(yo, s3 + biasF32(bias, n + 3), 12);
  }
  for (; n < n1; n++) store<f32>(yr + (<usize>n << 2), dotHalf<T>(xr, w + <usize>n * rb, K) + biasF32(bias, n));
}

function matvecHalf<T>(x: usize, w: usize, bias: usize, y: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  for (let m = 0; m < M; m++) rowHalf<T>(x + <usize>m * (<usize>K << 2), w, bias, y + <usize>m * (<usize>N << 2), K, n0, n1);
}

/** One output row of a 4×4 tile: lane sums, the K tail, the bias (matmul.ts's tile4F32). */
@inline function tile4Half<T>(xr: usize, w0: usize, bias: usize, yr: usize, rb: usize, K: i32, k4: i32, n: i32, a0: v128, a1: v128, a2: v128, a3: v128): void {
  let s0 = hsum4(a0), s1 = hsum4(a1), s2 = hsum4(a2), s3 = hsum4(a3);
  for (let k = k4; k < K; k++) {
    const xk = load<f32>(xr + (<usize>k << 2)), o = <usize>k << 1;
    s0 += xk * wide1<T>(w0 + o); s1 += xk * wide1<T>(w0 + rb + o); s2 += xk * wide1<T>(w0 + 2 * rb + o); s3 += xk * wide1<T>(w0 + 3 * rb + o);
  }
  const yo = yr + (<usize>n << 2);
  store<f32>(yo, s0 + biasF32(bias, n));
  store<f32>(yo, s1 + biasF32(bias, n + 1), 4);
  store<f32>(yo, s2 + biasF32(bias, n + 2), 8);
  store<f32>(yo, s3 + biasF32(bias, n + 3), 12);
}

/** 4 rows of x × 4 weight rows per tile (matmul.ts's matmulF32Tile4x4); each weight load widened once for 4 rows. */
function matmulHalf<T>(x: usize, w: usize, bias: usize, y: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  const xb = <usize>K << 2, rb = <usize>K << 1, yb = <usize>N << 2, k4 = K & ~3;
  let m = 0;
  for (; m + 4 <= M; m += 4) {
    const x0 = x + <usize>m * xb, x1 = x0 + xb, x2 = x1 + xb, x3 = x2 + xb;
    let n = n0;
    for (; n + 4 <= n1; n += 4) {
      const w0 = w + <usize>n * rb, w1 = w0 + rb, w2 = w1 + rb, w3 = w2 + rb;
      let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c02 = f32x4.splat(0), c03 = f32x4.splat(0);
      let c10 = f32x4.splat(0), c11 = f32x4.splat(0), c12 = f32x4.splat(0), c13 = f32x4.splat(0);
      let c20 = f32x4.splat(0), c21 = f32x4.splat(0), c22 = f32x4.splat(0), c23 = f32x4.splat(0);
      let c30 = f32x4.splat(0), c31 = f32x4.splat(0), c32 = f32x4.splat(0), c33 = f32x4.splat(0);
      for (let k = 0; k < k4; k += 4) {
        const o = <usize>k << 2, h = <usize>k << 1;
        const wa = wide4<T>(w0 + h), wb = wide4<T>(w1 + h), wc = wide4<T>(w2 + h), wd = wide4<T>(w3 + h);
        let xv = v128.load(x0 + o);
        c00 = f32x4.add(c00, f32x4.mul(xv, wa)); c01 = f32x4.add(c01, f32x4.mul(xv, wb)); c02 = f32x4.add(c02, f32x4.mul(xv, wc)); c03 = f32x4.add(c03, f32x4.mul(xv, wd));
        xv = v128.load(x1 + o);
        c10 = f32x4.add(c10, f32x4.mul(xv, wa)); c11 = f32x4.add(c11, f32x4.mul(xv, wb)); c12 = f32x4.add(c12, f32x4.mul(xv, wc)); c13 = f32x4.add(c13, f32x4.mul(xv, wd));
        xv = v128.load(x2 + o);
        c20 = f32x4.add(c20, f32x4.mul(xv, wa)); c21 = f32x4.add(c21, f32x4.mul(xv, wb)); c22 = f32x4.add(c22, f32x4.mul(xv, wc)); c23 = f32x4.add(c23, f32x4.mul(xv, wd));
        xv = v128.load(x3 + o);
        c30 = f32x4.add(c30, f32x4.mul(xv, wa)); c31 = f32x4.add(c31, f32x4.mul(xv, wb)); c32 = f32x4.add(c32, f32x4.mul(xv, wc)); c33 = f32x4.add(c33, f32x4.mul(xv, wd));
      }
      tile4Half<T>(x0, w0, bias, y + <usize>m * yb, rb, K, k4, n, c00, c01, c02, c03);
      tile4Half<T>(x1, w0, bias, y + <usize>(m + 1) * yb, rb, K, k4, n, c10, c11, c12, c13);
      tile4Half<T>(x2, w0, bias, y + <usize>(m + 2) * yb, rb, K, k4, n, c20, c21, c22, c23);
      tile4Half<T>(x3, w0, bias, y + <usize>(m + 3) * yb, rb, K, k4, n, c30, c31, c32, c33);
    }
    for (; n < n1; n++) {
      const wn = w + <usize>n * rb, bn = biasF32(bias, n);
      for (let r = 0; r < 4; r++) store<f32>(y + <usize>(m + r) * yb + (<usize>n << 2), dotHalf<T>(x + <usize>(m + r) * xb, wn, K) + bn);
    }
  }
  for (; m < M; m++) rowHalf<T>(x + <usize>m * xb, w, bias, y + <usize>m * yb, K, n0, n1);
}

export function matvecBf16Rows4(x: usize, w: usize, bias: usize, y: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  matvecHalf<u8>(x, w, bias, y, M, K, N, n0, n1);
}

export function matmulBf16Tile4x4(x: usize, w: usize, bias: usize, y: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  matmulHalf<u8>(x, w, bias, y, M, K, N, n0, n1);
}

export function matvecF16Rows4(x: usize, w: usize, bias: usize, y: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  matvecHalf<u16>(x, w, bias, y, M, K, N, n0, n1);
}

export function matmulF16Tile4x4(x: usize, w: usize, bias: usize, y: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  matmulHalf<u16>(x, w, bias, y, M, K, N, n0, n1);
}
