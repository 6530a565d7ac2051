/**
 * Event-driven spike products in WebAssembly SIMD (AssemblyScript), twins of
 * src/tensor/kernels/spike-matmul.ts and plane-matmul.ts, over output columns [n0, n1):
 *   eventRowsF64          y[m, :] = Σ_{k : s[m,k] ≠ 0} s[m,k] · wᵀ[k, :] (+ bias, + residual)
 *   planeAccumulateF64    y[r, :] = Σ_j g^(P−1−j) · Σ_{k : d[j,r,k] ≠ 0} d[j,r,k] · wᵀ[k, :] (+ bias, + residual)
 * Every event adds one weight row (wᵀ [K, N], the transposed layout) into an f64 membrane, two
 * columns per instruction; the membrane doubles at every plane (Horner) for weighted codes. The
 * sums are the TypeScript kernels' own (exact f32 weights in double precision, rounded once), so
 * these agree with them, and with the dense f64 products of matmul.ts, except where two double
 * sums straddle a float32 rounding boundary. `acc` is f64 scratch for n1 − n0 columns, one per thread.
 */

@inline function load2(p: usize): v128 {
  return f64x2.promote_low_f32x4(v128.load64_zero(p));
}

/** acc[0, C) += s · row[0, C) (row f32, acc f64); s = ±1 adds or subtracts without a multiply. */
function addRow(acc: usize, row: usize, C: i32, s: f64): void {
  const c2 = C & ~1;
  if (s == 1) {
    for (let c = 0; c < c2; c += 2) {
      const a = acc + (<usize>c << 3);
      v128.store(a, f64x2.add(v128.load(a), load2(row + (<usize>c << 2))));
    }
  } else if (s == -1) {
    for (let c = 0; c < c2; c += 2) {
      const a = acc + (<usize>c << 3);
      v128.store(a, f64x2.sub(v128.load(a), load2(row + (<usize>c << 2))));
    }
  } else {
    const sv = f64x2.splat(s);
    for (let c = 0; c < c2; c += 2) {
      const a = acc + (<usize>c << 3);
      v128.store(a, f64x2.add(v128.load(a), f64x2.mul(sv, load2(row + (<usize>c << 2)))));
    }
  }
  if (c2 < C) {
    const a = acc + (<usize>c2 << 3);
    store<f64>(a, load<f64>(a) + s * <f64>load<f32>(row + (<usize>c2 << 2)));
  }
}

export function eventRowsF64(s: usize, wT: usize, bias: usize, residual: usize, y: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32, acc: usize): void {
  const C = n1 - n0;
  if (C <= 0) return;
  const wb = <usize>N << 2;
  for (let m = 0; m < M; m++) {
    for (let c = 0; c < C; c++) store<f64>(acc + (<usize>c << 3), bias ? <f64>load<f32>(bias + (<usize>(n0 + c) << 2)) : 0);
    const row = s + <usize>m * (<usize>K << 2);
    for (let k = 0; k < K; k++) {
      const v = <f64>load<f32>(row + (<usize>k << 2));
      if (v == 0) continue;
      addRow(acc, wT + <usize>k * wb + (<usize>n0 << 2), C, v);
    }
    const yo = y + <usize>m * wb + (<usize>n0 << 2);
    if (residual) {
      const ro = residual + <usize>m * wb + (<usize>n0 << 2);
      for (let c = 0; c < C; c++) store<f32>(yo + (<usize>c << 2), <f32>(load<f64>(acc + (<usize>c << 3)) + <f64>load<f32>(ro + (<usize>c << 2))));
    } else {
      for (let c = 0; c < C; c++) store<f32>(yo + (<usize>c << 2), <f32>load<f64>(acc + (<usize>c << 3)));
    }
  }
}

export function planeAccumulateF64(digits: usize, P: i32, R: i32, K: i32, N: i32, growth: i32, wT: usize, bias: usize, residual: usize, y: usize, n0: i32, n1: i32, acc: usize): void {
  const C = n1 - n0;
  if (C <= 0) return;
  const wb = <usize>N << 2, kb = <usize>K << 2;
  for (let r = 0; r < R; r++) {
    memory.fill(acc, 0, <usize>C << 3);
    let started = false;
    for (let j = 0; j < P; j++) {
      // the membrane doubles at every plane (a no-op until the first event arrived)
      if (growth == 2 && started) {
        for (let c = 0; c < C; c += 1) {
          const a = acc + (<usize>c << 3);
          store<f64>(a, load<f64>(a) * 2);
        }
      }
      const row = digits + (<usize>j * <usize>R + <usize>r) * kb;
      for (let k = 0; k < K; k++) {
        const d = <f64>load<f32>(row + (<usize>k << 2));
        if (d == 0) continue;
        started = true;
        addRow(acc, wT + <usize>k * wb + (<usize>n0 << 2), C, d);
      }
    }
    // rounded as the dense kernel rounds: (Σ + bias) to float32, then the residual added
    const yo = y + <usize>r * wb + (<usize>n0 << 2);
    for (let c = 0; c < C; c++) {
      const b = bias ? <f64>load<f32>(bias + (<usize>(n0 + c) << 2)) : 0;
      store<f32>(yo + (<usize>c << 2), <f32>(load<f64>(acc + (<usize>c << 3)) + b));
    }
    if (residual) {
      const ro = residual + <usize>r * wb + (<usize>n0 << 2);
      for (let c = 0; c < C; c++) store<f32>(yo + (<usize>c << 2), <f32>(<f64>load<f32>(yo + (<usize>c << 2)) + <f64>load<f32>(ro + (<usize>c << 2))));
    }
  }
}
