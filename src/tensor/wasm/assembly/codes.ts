/**
 * The weighted encoders (phase: binary digits; phase-ternary: signed digits) in WebAssembly SIMD,
 * twin of the weighted branch of encodeCpu (src/tensor/kernels/codes.ts): the same float32
 * membranes, the same extra planes, clipping and statistics, so the digits, digit sums and row
 * statistics are bit for bit the TypeScript kernel's. Four neurons per lane group, all planes in
 * registers (the TypeScript kernel runs planes outer, neurons inner, to interleave dependency
 * chains; here the lanes do that). A row's last C mod 4 neurons run as a group whose missing lanes
 * are zeros and are not stored.
 *
 * Per neuron (charge v₀ = x/θ in float32; binary codes |x|/θ + 2^−T, the sign applied to the sums):
 *   fire  ternary: d = +1 if v > ⅔, −1 if v < −⅔, else 0;  binary: d = 1 if v ≥ 1
 *   then  v ← 2·(v − d), m ← 2·m + d      (exact in float32: |v| ≤ 2, Sterbenz; m < 2^24)
 * over the T + extra planes the row opens (extra: how many halvings bring the row's largest charge
 * into range, at most E; beyond, charges clip to the range's top and are counted). Binary codes
 * without digits take the closed form m = ⌊v·2^(T+extra−1)⌋ (events: its set bits), as the
 * TypeScript kernel does.
 */

import { STATS, storeRowStats } from './stats';

/** Up to four floats at p as lanes (the rest 0). */
@inline function loadLanes(p: usize, n: i32): v128 {
  if (n >= 4) return v128.load(p);
  let v = f32x4.splat(0);
  v = f32x4.replace_lane(v, 0, load<f32>(p));
  if (n > 1) v = f32x4.replace_lane(v, 1, load<f32>(p, 4));
  if (n > 2) v = f32x4.replace_lane(v, 2, load<f32>(p, 8));
  return v;
}

/** The first n lanes of v at p. */
@inline function storeLanes(p: usize, v: v128, n: i32): void {
  if (n >= 4) {
    v128.store(p, v);
    return;
  }
  store<f32>(p, f32x4.extract_lane(v, 0));
  if (n > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (n > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}

/** Lanes of a comparison mask that are set, among the first n. */
@inline function countMask(mask: v128, n: i32): i32 {
  let c = 0;
  if (i32x4.extract_lane(mask, 0) != 0) c++;
  if (n > 1 && i32x4.extract_lane(mask, 1) != 0) c++;
  if (n > 2 && i32x4.extract_lane(mask, 2) != 0) c++;
  if (n > 3 && i32x4.extract_lane(mask, 3) != 0) c++;
  return c;
}

/** Sum of the first n lanes (exact: small integers). */
@inline function sumLanes(v: v128, n: i32): f32 {
  let s = f32x4.extract_lane(v, 0);
  if (n > 1) s += f32x4.extract_lane(v, 1);
  if (n > 2) s += f32x4.extract_lane(v, 2);
  if (n > 3) s += f32x4.extract_lane(v, 3);
  return s;
}

/**
 * Rows [r0, r1) of x [R, C]: sums [R, C], digits (plane-major [(T + E)·R, C], zeroed by the caller;
 * 0: none) and rowStats [R, STATS] (encodeCpu's order). `v` is scratch for C floats.
 */
export function encodeWeightedF32(x: usize, invTheta: usize, R: i32, C: i32, T: i32, E: i32, ternary: i32, sums: usize, digits: usize, stats: usize, v: usize, r0: i32, r1: i32): void {
  const P = T + E;
  const fire = f32x4.splat(<f32>(2.0 / 3.0)), nfire = f32x4.splat(-<f32>(2.0 / 3.0));
  const limit: f32 = ternary ? <f32>(4.0 / 3.0) : 2;
  const one = f32x4.splat(1), two = f32x4.splat(2), zero = f32x4.splat(0);
  const halfLsb: f32 = <f32>Math.pow(2, <f64>-T);
  for (let r = r0; r < r1; r++) {
    const xr = x + (<usize>r * <usize>C << 2);
    // charges, and the row's largest (NaN propagates, as Math.max does)
    let big: f32 = 0;
    for (let c = 0; c < C; c += 4) {
      const n = min(4, C - c);
      let q = f32x4.mul(loadLanes(xr + (<usize>c << 2), n), loadLanes(invTheta + (<usize>c << 2), n));
      if (!ternary) q = f32x4.add(f32x4.abs(q), f32x4.splat(halfLsb));
      const a = f32x4.abs(q);
      big = max(big, f32x4.extract_lane(a, 0));
      if (n > 1) big = max(big, f32x4.extract_lane(a, 1));
      if (n > 2) big = max(big, f32x4.extract_lane(a, 2));
      if (n > 3) big = max(big, f32x4.extract_lane(a, 3));
      storeLanes(v + (<usize>c << 2), q, n);
    }
    let extra = 0;
    while (extra < E && (ternary ? <f64>big * Math.pow(2, <f64>-extra) > <f64>limit : <f64>big * Math.pow(2, <f64>-extra) >= <f64>limit)) extra++;
    const scale = f32x4.splat(<f32>Math.pow(2, <f64>-extra));
    const top = f32x4.splat(<f32>(2 - Math.pow(2, <f64>-(T + extra - 1))));
    const limitV = f32x4.splat(limit), signBit = i32x4.splat(0x80000000);
    const closed = !ternary && digits == 0;
    const scaleUp = f32x4.splat(<f32>Math.pow(2, <f64>(T + extra - 1)));
    let events: f64 = 0, clipped = 0, active = 0;
    for (let c = 0; c < C; c += 4) {
      const n = min(4, C - c);
      let q = f32x4.mul(loadLanes(v + (<usize>c << 2), n), scale);
      if (ternary) {
        const over = f32x4.gt(f32x4.abs(q), limitV);
        clipped += countMask(over, n);
        // Math.sign(x)·limit: the charge's sign on the limit
        q = v128.bitselect(v128.or(v128.and(q, signBit), limitV), q, over);
      } else {
        const over = f32x4.ge(q, limitV);
        clipped += countMask(over, n);
        q = v128.bitselect(top, q, over);
      }
      // binary codes carry the input's sign apart (NaN: −1, as `xv >= 0` is false)
      const sign = ternary ? one : v128.bitselect(one, f32x4.splat(-1), f32x4.ge(loadLanes(xr + (<usize>c << 2), n), zero));
      let m = zero;
      if (closed) {
        m = f32x4.floor(f32x4.mul(q, scaleUp));
        const bits = i32x4.trunc_sat_f32x4_s(m);
        events += <f64>(popcnt<i32>(i32x4.extract_lane(bits, 0)) + (n > 1 ? popcnt<i32>(i32x4.extract_lane(bits, 1)) : 0) + (n > 2 ? popcnt<i32>(i32x4.extract_lane(bits, 2)) : 0) + (n > 3 ? popcnt<i32>(i32x4.extract_lane(bits, 3)) : 0));
      } else {
        let ev = zero;
        for (let j = E - extra; j < P; j++) {
          const d = ternary ? f32x4.sub(v128.and(f32x4.gt(q, fire), one), v128.and(f32x4.lt(q, nfire), one)) : v128.and(f32x4.ge(q, one), one);
          q = f32x4.mul(two, f32x4.sub(q, d));
          m = f32x4.add(f32x4.mul(two, m), d);
          ev = f32x4.add(ev, f32x4.abs(d));
          // + 0 keeps a zero digit +0 where the sign is −1 (the TypeScript kernel writes only nonzero digits)
          if (digits) storeLanes(digits + (((<usize>j * <usize>R + <usize>r) * <usize>C + <usize>c) << 2), f32x4.add(f32x4.mul(d, sign), zero), n);
        }
        events += <f64>sumLanes(ev, n);
      }
      active += countMask(f32x4.ne(m, zero), n);
      storeLanes(sums + ((<usize>r * <usize>C + <usize>c) << 2), f32x4.mul(m, sign), n);
    }
    const so = stats + (<usize>r * STATS << 2), planes = <f32>(T + extra);
    storeRowStats(so, <f32>events, events > 0 ? 1 : 0, <f32>events, <f32>C * planes, <f32>extra, <f32>clipped, <f32>active, <f32>active * planes);
  }
}
