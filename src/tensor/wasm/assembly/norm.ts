/**
 * Row normalisations in WebAssembly SIMD (AssemblyScript), twins of layerNormCpu and rmsNormCpu in
 * src/tensor/kernels/norm.ts, over rows [r0, r1) of x [R, C]:
 *   layerNormF64   y = ((x − mean)·inv)·γ + β,   inv = 1/√(var + eps)   (β = 0 when hasBeta is 0)
 *   rmsNormF64     y = (x·inv)·γ,                inv = 1/√(mean(x²) + eps)
 * Bit for bit the TypeScript kernels: the statistics are the same sequential double sums (their
 * order is theirs, so no lanes there), √ is exact in both, and the output loop, two elements per
 * instruction, does each element's operations in the TypeScript order, rounded to f32 once. Adding
 * β = 0 where there is none is TypeScript's `+ 0` too (it turns −0 into +0).
 */

@inline function load2(p: usize): v128 {
  return f64x2.promote_low_f32x4(v128.load64_zero(p));
}

/** Two doubles rounded to f32, stored as 8 bytes at p. */
@inline function store2(p: usize, v: v128): void {
  v128.store64_lane(p, f32x4.demote_f64x2_zero(v), 0);
}

export function layerNormF64(x: usize, gamma: usize, beta: usize, hasBeta: i32, out: usize, C: i32, eps: f64, r0: i32, r1: i32): void {
  const c2 = C & ~1;
  for (let r = r0; r < r1; r++) {
    const xo = x + <usize>r * (<usize>C << 2), yo = out + <usize>r * (<usize>C << 2);
    let mean: f64 = 0;
    for (let c = 0; c < C; c++) mean += <f64>load<f32>(xo + (<usize>c << 2));
    mean /= <f64>C;
    let variance: f64 = 0;
    for (let c = 0; c < C; c++) {
      const d = <f64>load<f32>(xo + (<usize>c << 2)) - mean;
      variance += d * d;
    }
    variance /= <f64>C;
    const inv = 1 / Math.sqrt(variance + eps);
    const mv = f64x2.splat(mean), iv = f64x2.splat(inv), zero = f64x2.splat(0);
    for (let c = 0; c < c2; c += 2) {
      const o = <usize>c << 2;
      const b = hasBeta ? load2(beta + o) : zero;
      store2(yo + o, f64x2.add(f64x2.mul(f64x2.mul(f64x2.sub(load2(xo + o), mv), iv), load2(gamma + o)), b));
    }
    if (c2 < C) {
      const o = <usize>c2 << 2;
      const b: f64 = hasBeta ? <f64>load<f32>(beta + o) : 0;
      store<f32>(yo + o, <f32>((<f64>load<f32>(xo + o) - mean) * inv * <f64>load<f32>(gamma + o) + b));
    }
  }
}

export function rmsNormF64(x: usize, gamma: usize, out: usize, C: i32, eps: f64, r0: i32, r1: i32): void {
  const c2 = C & ~1;
  for (let r = r0; r < r1; r++) {
    const xo = x + <usize>r * (<usize>C << 2), yo = out + <usize>r * (<usize>C << 2);
    let ss: f64 = 0;
    for (let c = 0; c < C; c++) {
      const v = <f64>load<f32>(xo + (<usize>c << 2));
      ss += v * v;
    }
    const inv = 1 / Math.sqrt(ss / <f64>C + eps);
    const iv = f64x2.splat(inv);
    for (let c = 0; c < c2; c += 2) {
      const o = <usize>c << 2;
      store2(yo + o, f64x2.mul(f64x2.mul(load2(xo + o), iv), load2(gamma + o)));
    }
    if (c2 < C) {
      const o = <usize>c2 << 2;
      store<f32>(yo + o, <f32>(<f64>load<f32>(xo + o) * inv * <f64>load<f32>(gamma + o)));
    }
  }
}
