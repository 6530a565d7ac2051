/**
 * A streaming read: the sum of f32 elements [n0, n1) from p, stored at out. Not a model kernel: the
 * bench measures the machine's read bandwidth with it, across the same pool, beside the products
 * (bench/cpu-kernels.bench.ts), so "a fraction of the bandwidth" is measured, not assumed.
 */
export function streamSumF32(p: usize, n0: i32, n1: i32, out: usize): void {
  let a = f32x4.splat(0), b = f32x4.splat(0), c = f32x4.splat(0), d = f32x4.splat(0);
  let i = n0;
  for (; i + 16 <= n1; i += 16) {
    const q = p + (<usize>i << 2);
    a = f32x4.add(a, v128.load(q));
    b = f32x4.add(b, v128.load(q, 16));
    c = f32x4.add(c, v128.load(q, 32));
    d = f32x4.add(d, v128.load(q, 48));
  }
  const v = f32x4.add(f32x4.add(a, b), f32x4.add(c, d));
  let s = (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
  for (; i < n1; i++) s += load<f32>(p + (<usize>i << 2));
  store<f32>(out, s);
}
