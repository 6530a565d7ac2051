/**
 * 16-bit weights (BF16 or IEEE binary16 bits) widened to float32 in registers as they are loaded,
 * for matmul.ts's float32-summing kernels over 16-bit weights (matvecBf16Row, matmulF16Tile4x4, …;
 * twins of src/tensor/kernels/half-matmul.ts). BF16: the bits shifted up 16. F16 (Node 20's SIMD
 * has no f16 instructions): exponent and mantissa shifted into place and scaled by 2^112, which also
 * turns subnormal halves into the right normal floats; Inf/NaN patterns get float32's all-ones
 * exponent; the sign is or-ed back. The format is a type parameter (u8 marks BF16, u16 marks F16),
 * resolved at compile time.
 */

const F16_SCALE: f32 = reinterpret<f32>(<u32>0x77800000); // 2^112

/** Four 16-bit weights at p, widened to an f32x4. */
@inline export function wide4<T>(p: usize): v128 {
  const h = v128.load16x4_u(p); // one widening load (pmovzxwd on x64)
  if (sizeof<T>() == 1) return i32x4.shl(h, 16);
  return f16Lanes(h);
}

/** Of eight 16-bit weights in v, the first four, widened: BF16 by one unpack with zero (each into a lane's high half). */
@inline export function wideLow<T>(v: v128): v128 {
  const z = i32x4.splat(0);
  if (sizeof<T>() == 1) return i16x8.shuffle(z, v, 0, 8, 1, 9, 2, 10, 3, 11);
  return f16Lanes(i16x8.shuffle(v, z, 0, 8, 1, 9, 2, 10, 3, 11));
}

/** Of eight 16-bit weights in v, the last four, widened (as wideLow). */
@inline export function wideHigh<T>(v: v128): v128 {
  const z = i32x4.splat(0);
  if (sizeof<T>() == 1) return i16x8.shuffle(z, v, 4, 12, 5, 13, 6, 14, 7, 15);
  return f16Lanes(i16x8.shuffle(v, z, 4, 12, 5, 13, 6, 14, 7, 15));
}

/** F16 bits in the low halves of four i32 lanes (high halves zero), as float32. */
@inline function f16Lanes(h: v128): v128 {
  const mag = v128.and(h, i32x4.splat(0x7fff));
  const em = i32x4.shl(mag, 13);
  const scaled = f32x4.mul(em, f32x4.splat(F16_SCALE));
  const special = i32x4.ge_u(mag, i32x4.splat(0x7c00));
  const bits = v128.bitselect(v128.or(em, i32x4.splat(0x7f800000)), scaled, special);
  return v128.or(bits, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

/** One 16-bit weight at p, widened. */
@inline export function wide1<T>(p: usize): f32 {
  const h = <u32>load<u16>(p);
  if (sizeof<T>() == 1) return reinterpret<f32>(h << 16);
  const mag = h & 0x7fff, em = mag << 13;
  const bits = mag >= 0x7c00 ? em | 0x7f800000 : reinterpret<u32>(reinterpret<f32>(em) * F16_SCALE);
  return reinterpret<f32>(bits | ((h & 0x8000) << 16));
}

/** Four weights of type W at p as an f32x4: float32 as loaded, 16-bit widened (W: f32, or u8/u16 as above). */
@inline export function wload4<W>(p: usize): v128 {
  if (sizeof<W>() == 4) return v128.load(p);
  return wide4<W>(p);
}

/** One weight of type W at p. */
@inline export function wload1<W>(p: usize): f32 {
  if (sizeof<W>() == 4) return load<f32>(p);
  return wide1<W>(p);
}
