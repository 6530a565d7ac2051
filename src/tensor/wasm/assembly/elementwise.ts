/**
 * The activations in WebAssembly (AssemblyScript), twins of src/tensor/kernels/elementwise.ts, over
 * elements [i0, i1) so the pool can split them. The same formulas in f64, rounded to f32 once, as
 * the TypeScript kernels compute them in JavaScript doubles; tanh and exp are AssemblyScript's own
 * (musl's algorithms, where V8 has fdlibm's: the two may differ in a double's last bit, which moves
 * a float32 result by at most one ulp). kind: 0 gelu_tanh, 1 gelu_erf, 2 gelu_quick, 3 silu, 4 relu.
 */

const SQRT_2_OVER_PI: f64 = Math.sqrt(2 / Math.PI);

/** erf by the complementary error function's Chebyshev fit (Numerical Recipes `erfcc`), as in TypeScript. */
@inline function erf(x: f64): f64 {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - r : r - 1;
}

@inline function act(kind: i32, x: f64): f64 {
  if (kind == 0) return 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));
  if (kind == 1) return 0.5 * x * (1 + erf(x / Math.SQRT2));
  if (kind == 2) return x / (1 + Math.exp(-1.702 * x));
  if (kind == 3) return x / (1 + Math.exp(-x));
  return x > 0 ? x : 0;
}

export function activationF64(kind: i32, x: usize, out: usize, i0: i32, i1: i32): void {
  for (let i = i0; i < i1; i++) store<f32>(out + (<usize>i << 2), <f32>act(kind, <f64>load<f32>(x + (<usize>i << 2))));
}

/** out[r, c] = act(x[r, c]) · x[r, C + c] over output elements [i0, i1) of [R, C] (x is [R, 2C]). */
export function gatedActivationF64(kind: i32, x: usize, out: usize, C: i32, i0: i32, i1: i32): void {
  for (let i = i0; i < i1; i++) {
    const r = i / C, c = i - r * C;
    const g = x + (<usize>(r * 2 * C + c) << 2);
    store<f32>(out + (<usize>i << 2), <f32>(act(kind, <f64>load<f32>(g)) * <f64>load<f32>(g + (<usize>C << 2))));
  }
}
