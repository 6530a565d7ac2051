/**
 * Dense matrix products in WebAssembly SIMD (AssemblyScript), twins of src/tensor/kernels/matmul.ts:
 *   y[m, n] = Σ_k x[m, k] · w[n, k] + bias[n]      x: [M, K], w: [N, K] (nn.Linear layout), y: [M, N]
 * over output columns [n0, n1), so the thread pool splits columns exactly as it does for the
 * TypeScript kernels. Pointers are byte addresses in the shared memory; bias = 0 means none.
 *
 * Two arithmetics, named by what they accumulate in (XNNPACK-style: type, tile, instruction set):
 *   matmulF32Tile4x4 / matvecF32Row   f32 products summed in four f32 lanes (the tile: one
 *       accumulator per output over k mod 4; the row form: four, over the quarters of each block
 *       of 16, added (a0 + a1) + (a2 + a3)), lanes added
 *       pairwise ((l0 + l1) + (l2 + l3)), then the scalar tail k ≥ K − K mod 4, then bias. Each
 *       form's bits do not depend on where the pool splits the columns.
 *       The ANN's products: what every inference engine computes, 4 multiply-adds per instruction.
 *   matmulF64Tile4x4 / matvecF64Row   f32 products promoted to f64 (exact: 24 + 24 bits < 53) and
 *       summed in two f64 lanes, rounded to f32 once with the bias — the TypeScript kernels'
 *       contract (they sum in JavaScript doubles). The spiking products use these, so the dense
 *       and event executions (spike.ts, also f64) agree as they do in TypeScript. matvecF64Row
 *       takes x as float64 (its caller widens it once: products.ts productInput).
 *   matvecBf16Row / matmulBf16Tile4x4, matvecF16Row / matmulF16Tile4x4   the same f32 kernels
 *       over 16-bit weights (BF16, F16), widened in registers by half.ts: one generic source.
 * Tiles: 4 rows of x × 4 weight rows (16 accumulators; every load feeds 4 products; the f64 tile
 * over column blocks, BLOCK_BYTES says why); decode's
 * matrix–vector form streams one weight row at a time (rowW says why). Remainders: columns past the
 * last tile (N not a multiple of 4) run the tile's own sums one output at a time, as do the f32
 * tiles' rows past the last tile; the f64 tile's remaining rows run its row form (exact sums in the
 * spiking products, so the order is immaterial there); K's remainder is a scalar tail.
 */

import { wideHigh, wideLow, wload1, wload4 } from './half';

/**
 * c + a·b. Compiled twice (scripts/build-wasm.mjs): as a multiply and an add in simd.wasm, as a
 * relaxed fused multiply-add in simd-relaxed.wasm (SPIKELM_WASM_RELAXED=1, where it validates).
 * Fused, float32 products are rounded once instead of twice, and whether the machine fuses is its
 * choice (relaxed SIMD): results may depend on the machine. The f64 products here are of float32
 * values, exact in f64, so fusing them changes nothing: the spiking products are the same either way.
 */
@inline function madd4(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(c, f32x4.mul(a, b));
}

@inline function madd2(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f64x2.relaxed_madd(a, b, c);
  return f64x2.add(c, f64x2.mul(a, b));
}

@inline function hsum4(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

@inline function hsum2(v: v128): f64 {
  return f64x2.extract_lane(v, 0) + f64x2.extract_lane(v, 1);
}

/** Lanes 2 and 3 of an f32x4, as an f64x2. */
@inline function highPair(v: v128): v128 {
  return f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1));
}

/** Two f32 at p, as an f64x2. */
@inline function load2(p: usize): v128 {
  return f64x2.promote_low_f32x4(v128.load64_zero(p));
}

@inline function biasF32(bias: usize, n: i32): f32 {
  return bias ? load<f32>(bias + (<usize>n << 2)) : 0;
}

// ---------------------------------------------------------------------------------------------
// f32 accumulation over weights of type W: f32, or 16-bit (u8 marks BF16, u16 marks F16; half.ts
// widens them in registers). One source for all three, so a half weight's product has the float32
// kernel's lanes and sums exactly; the type is resolved at compile time.

/** log2 of a weight's bytes. */
@inline function wshift<W>(): usize {
  return sizeof<W>() == 4 ? 2 : 1;
}

/** One f32 dot product of length K in the tile's own order (its column remainders): one accumulator, lanes k mod 4. */
function dotW<W>(a: usize, b: usize, K: i32): f32 {
  const k4 = K & ~3;
  let acc = f32x4.splat(0);
  for (let k = 0; k < k4; k += 4) acc = madd4(v128.load(a + (<usize>k << 2)), wload4<W>(b + (<usize>k << wshift<W>())), acc);
  let s = hsum4(acc);
  for (let k = k4; k < K; k++) s += load<f32>(a + (<usize>k << 2)) * wload1<W>(b + (<usize>k << wshift<W>()));
  return s;
}

/**
 * One f32 dot product of length K, one weight row streamed (the matrix–vector form), in natural
 * order: per block of 16, four accumulators over its four quarters (lanes: k = b + 4j + l for
 * accumulator j), the four-wide tail into the first, summed (a0 + a1) + (a2 + a3), the lanes
 * pairwise, then the scalar tail. Float32 weights are loaded as they are; a 16-byte load of eight
 * 16-bit weights is widened into its low and high four by one unpack each (half.ts), so every weight
 * type sums in one order and a BF16 weight's product is its float32 widening's, bit for bit. Four
 * accumulators, because one chain of adds bounds a 16-bit weight's stream below the memory's. The
 * even/odd split of each load (one shift or mask, x interleaved once per product) that this replaced
 * needed two shuffles per float32 load: on 2 threads of an Intel Xeon VM (scratch bench, 200 MB of
 * 768-wide rows) float32 rows streamed 19 GB/s that way and 21–23 in this order, BF16 rows
 * 12.4 GB/s against 13.5.
 */
function dotRowW<W>(a: usize, b: usize, K: i32): f32 {
  const k16 = K & ~15, k4 = K & ~3, ws = wshift<W>();
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  for (let k = 0; k < k16; k += 16) {
    const o = <usize>k << 2, h = <usize>k << ws;
    let w0: v128, w1: v128, w2: v128, w3: v128;
    if (sizeof<W>() == 4) {
      w0 = v128.load(b + h); w1 = v128.load(b + h + 16); w2 = v128.load(b + h + 32); w3 = v128.load(b + h + 48);
    } else {
      const v0 = v128.load(b + h), v1 = v128.load(b + h + 16);
      w0 = wideLow<W>(v0); w1 = wideHigh<W>(v0); w2 = wideLow<W>(v1); w3 = wideHigh<W>(v1);
    }
    a0 = madd4(v128.load(a + o), w0, a0);
    a1 = madd4(v128.load(a + o + 16), w1, a1);
    a2 = madd4(v128.load(a + o + 32), w2, a2);
    a3 = madd4(v128.load(a + o + 48), w3, a3);
  }
  for (let k = k16; k < k4; k += 4) a0 = madd4(v128.load(a + (<usize>k << 2)), wload4<W>(b + (<usize>k << ws)), a0);
  let s = hsum4(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  for (let k = k4; k < K; k++) s += load<f32>(a + (<usize>k << 2)) * wload1<W>(b + (<usize>k << ws));
  return s;
}

/**
 * One row of x against weight rows [n0, n1), one weight row at a time: a single sequential stream
 * of the weights. Four rows at once (four streams, every load of x shared)
 * streamed 20–27 GB/s of float32 weights on 2 threads of this project's AMD EPYC VM where one row at
 * a time streamed 39–43 (scratch bench, 226 MB of 768-wide rows): decode is bound by the weights'
 * read, not by the loads of x (in L1). Its order of sums is dotRowW's, not the tile's: decode and
 * prefill round differently.
 */
function rowW<W>(xr: usize, w: usize, bias: usize, yr: usize, K: i32, n0: i32, n1: i32): void {
  const rb = <usize>K << wshift<W>();
  for (let n = n0; n < n1; n++) store<f32>(yr + (<usize>n << 2), dotRowW<W>(xr, w + <usize>n * rb, K) + biasF32(bias, n));
}

/** Matrix–vector form (decode, M < 4): every row of x streams the weight rows once. */
function matvecW<W>(x: usize, w: usize, bias: usize, y: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  for (let m = 0; m < M; m++) rowW<W>(x + <usize>m * (<usize>K << 2), w, bias, y + <usize>m * (<usize>N << 2), K, n0, n1);
}

/** 4 rows of x × 4 weight rows per tile; every weight load (widened once) feeds 4 products. */
function matmulW<W>(x: usize, w: usize, bias: usize, y: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  const xb = <usize>K << 2, rb = <usize>K << wshift<W>(), yb = <usize>N << 2, k4 = K & ~3;
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
        const o = <usize>k << 2, h = <usize>k << wshift<W>();
        const wa = wload4<W>(w0 + h), wb = wload4<W>(w1 + h), wc = wload4<W>(w2 + h), wd = wload4<W>(w3 + h);
        let xv = v128.load(x0 + o);
        c00 = madd4(xv, wa, c00); c01 = madd4(xv, wb, c01); c02 = madd4(xv, wc, c02); c03 = madd4(xv, wd, c03);
        xv = v128.load(x1 + o);
        c10 = madd4(xv, wa, c10); c11 = madd4(xv, wb, c11); c12 = madd4(xv, wc, c12); c13 = madd4(xv, wd, c13);
        xv = v128.load(x2 + o);
        c20 = madd4(xv, wa, c20); c21 = madd4(xv, wb, c21); c22 = madd4(xv, wc, c22); c23 = madd4(xv, wd, c23);
        xv = v128.load(x3 + o);
        c30 = madd4(xv, wa, c30); c31 = madd4(xv, wb, c31); c32 = madd4(xv, wc, c32); c33 = madd4(xv, wd, c33);
      }
      tile4W<W>(x0, w0, bias, y + <usize>m * yb, rb, K, k4, n, c00, c01, c02, c03);
      tile4W<W>(x1, w0, bias, y + <usize>(m + 1) * yb, rb, K, k4, n, c10, c11, c12, c13);
      tile4W<W>(x2, w0, bias, y + <usize>(m + 2) * yb, rb, K, k4, n, c20, c21, c22, c23);
      tile4W<W>(x3, w0, bias, y + <usize>(m + 3) * yb, rb, K, k4, n, c30, c31, c32, c33);
    }
    for (; n < n1; n++) {
      const wn = w + <usize>n * rb, bn = biasF32(bias, n);
      for (let r = 0; r < 4; r++) store<f32>(y + <usize>(m + r) * yb + (<usize>n << 2), dotW<W>(x + <usize>(m + r) * xb, wn, K) + bn);
    }
  }
  // the rows past the last tile: the tile's order, one output at a time
  for (; m < M; m++) for (let n = n0; n < n1; n++) store<f32>(y + <usize>m * yb + (<usize>n << 2), dotW<W>(x + <usize>m * xb, w + <usize>n * rb, K) + biasF32(bias, n));
}

/** One output row of a 4×4 tile: lane sums, the K tail, the bias, stored at columns n…n+3. */
@inline function tile4W<W>(xr: usize, w0: usize, bias: usize, yr: usize, rb: usize, K: i32, k4: i32, n: i32, a0: v128, a1: v128, a2: v128, a3: v128): void {
  let s0 = hsum4(a0), s1 = hsum4(a1), s2 = hsum4(a2), s3 = hsum4(a3);
  for (let k = k4; k < K; k++) {
    const xk = load<f32>(xr + (<usize>k << 2)), o = <usize>k << wshift<W>();
    s0 += xk * wload1<W>(w0 + o); s1 += xk * wload1<W>(w0 + rb + o); s2 += xk * wload1<W>(w0 + 2 * rb + o); s3 += xk * wload1<W>(w0 + 3 * rb + o);
  }
  const yo = yr + (<usize>n << 2);
  store<f32>(yo, s0 + biasF32(bias, n));
  store<f32>(yo, s1 + biasF32(bias, n + 1), 4);
  store<f32>(yo, s2 + biasF32(bias, n + 2), 8);
  store<f32>(yo, s3 + biasF32(bias, n + 3), 12);
}

export function matvecF32Row(x: usize, w: usize, bias: usize, y: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  matvecW<f32>(x, w, bias, y, M, K, N, n0, n1);
}

export function matmulF32Tile4x4(x: usize, w: usize, bias: usize, y: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  matmulW<f32>(x, w, bias, y, M, K, N, n0, n1);
}

export function matvecBf16Row(x: usize, w: usize, bias: usize, y: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  matvecW<u8>(x, w, bias, y, M, K, N, n0, n1);
}

export function matmulBf16Tile4x4(x: usize, w: usize, bias: usize, y: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  matmulW<u8>(x, w, bias, y, M, K, N, n0, n1);
}

export function matvecF16Row(x: usize, w: usize, bias: usize, y: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  matvecW<u16>(x, w, bias, y, M, K, N, n0, n1);
}

export function matmulF16Tile4x4(x: usize, w: usize, bias: usize, y: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  matmulW<u16>(x, w, bias, y, M, K, N, n0, n1);
}

// ---------------------------------------------------------------------------------------------
// f64 accumulation (the spiking products)

@inline function biasF64(bias: usize, n: i32): f64 {
  return bias ? <f64>load<f32>(bias + (<usize>n << 2)) : 0;
}

/** The f64 tile's own order for one output (its column remainders): one accumulator, lanes k mod 2. */
function dotTileF64(a: usize, b: usize, K: i32): f64 {
  const k2 = K & ~1;
  let acc = f64x2.splat(0);
  for (let k = 0; k < k2; k += 2) acc = madd2(load2(a + (<usize>k << 2)), load2(b + (<usize>k << 2)), acc);
  let s = hsum2(acc);
  if (k2 < K) s += <f64>load<f32>(a + (<usize>k2 << 2)) * <f64>load<f32>(b + (<usize>k2 << 2));
  return s;
}

/** Two x values at p as an f64x2: x of type X is float32 (promoted) or already float64 (loaded). */
@inline function xPair<X>(p: usize): v128 {
  if (sizeof<X>() == 8) return v128.load(p);
  return load2(p);
}

@inline function xOne<X>(p: usize): f64 {
  if (sizeof<X>() == 8) return load<f64>(p);
  return <f64>load<f32>(p);
}

/**
 * One f64 dot product against float32 weights, one weight row streamed (as dotRowW), in natural
 * order: four f64x2 accumulators over k mod 8 (one chain of two-lane adds would bound it below the
 * stream): both halves of each 16-byte weight load widened, the two-wide tail into the first, summed
 * (a0 + a1) + (a2 + a3) and across lanes, then the scalar tail; rounded to f32 by the caller. x is
 * float32 (the f64 tile's remaining rows) or float64 (matvecF64Row: widened once per product by its
 * caller, so each weight's widening is the only one: on an Intel Xeon (Sapphire Rapids) VM,
 * promoting both operands held one thread to 3.3–3.7 GB/s of weights, promoting the weights only to
 * 6.8–7.2; scratch bench). The same order for both, so the same values. It differs from the tile's,
 * as the four-row form's did: the spiking products' sums are exact (integer digit sums times
 * float32 weights, far inside a double's 53 bits), so no order changes them.
 */
function dotF64<X>(a: usize, b: usize, K: i32): f64 {
  const k8 = K & ~7, k2 = K & ~1, xs: usize = sizeof<X>() == 8 ? 3 : 2;
  let a0 = f64x2.splat(0), a1 = f64x2.splat(0), a2 = f64x2.splat(0), a3 = f64x2.splat(0);
  for (let k = 0; k < k8; k += 8) {
    const o = <usize>k << 2, ox = <usize>k << xs;
    const w0 = v128.load(b + o), w1 = v128.load(b + o + 16);
    let x0: v128, x1: v128, x2: v128, x3: v128;
    if (sizeof<X>() == 8) {
      x0 = v128.load(a + ox); x1 = v128.load(a + ox + 16); x2 = v128.load(a + ox + 32); x3 = v128.load(a + ox + 48);
    } else {
      const h0 = v128.load(a + ox), h1 = v128.load(a + ox + 16);
      x0 = f64x2.promote_low_f32x4(h0); x1 = highPair(h0); x2 = f64x2.promote_low_f32x4(h1); x3 = highPair(h1);
    }
    a0 = madd2(x0, f64x2.promote_low_f32x4(w0), a0);
    a1 = madd2(x1, highPair(w0), a1);
    a2 = madd2(x2, f64x2.promote_low_f32x4(w1), a2);
    a3 = madd2(x3, highPair(w1), a3);
  }
  for (let k = k8; k < k2; k += 2) a0 = madd2(xPair<X>(a + (<usize>k << xs)), load2(b + (<usize>k << 2)), a0);
  let s = hsum2(f64x2.add(f64x2.add(a0, a1), f64x2.add(a2, a3)));
  if (k2 < K) s += xOne<X>(a + (<usize>k2 << xs)) * <f64>load<f32>(b + (<usize>k2 << 2));
  return s;
}

/** One row of x (type X) against weight rows [n0, n1), one weight row at a time (rowW says why). */
function rowF64<X>(xr: usize, w: usize, bias: usize, yr: usize, K: i32, n0: i32, n1: i32): void {
  const rb = <usize>K << 2;
  for (let n = n0; n < n1; n++) store<f32>(yr + (<usize>n << 2), <f32>(dotF64<X>(xr, w + <usize>n * rb, K) + biasF64(bias, n)));
}

/** Matrix–vector form of the f64 products: x's M rows as float64 (M·K values), the weights float32. */
export function matvecF64Row(x: usize, w: usize, bias: usize, y: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  for (let m = 0; m < M; m++) rowF64<f64>(x + <usize>m * (<usize>K << 3), w, bias, y + <usize>m * (<usize>N << 2), K, n0, n1);
}

/**
 * The f64 tile's column blocks: it runs every row of x against one block of weight rows (about
 * BLOCK_BYTES of them) before the next, so a block is read from memory once and from cache by each
 * tile of x rows, instead of every weight once per tile of x rows. Each output's sums are the same
 * whatever the block, so this changes speed only. Measured on 64 rows of GPT-2-small's four shapes
 * (scratch, 2-core AMD EPYC VM, calls of 38–151 M multiply-adds): one thread 3.5–5.8 → 5.7–6.6 G
 * multiply-adds/s, two threads 4.0–11.8 → 7.7–11.6; 64, 128 and 256 KB alike. The f32 tiles are
 * not blocked: there it made one thread 6–9% faster and two threads 8–12% slower.
 */
const BLOCK_BYTES: i32 = 128 << 10;

export function matmulF64Tile4x4(x: usize, w: usize, bias: usize, y: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  const nb = max(4, (BLOCK_BYTES / max(1, K << 2)) & ~3);
  for (let b = n0; b < n1; b += nb) tilesF64(x, w, bias, y, M, K, N, b, min(b + nb, n1));
}

function tilesF64(x: usize, w: usize, bias: usize, y: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  const rb = <usize>K << 2, yb = <usize>N << 2, k2 = K & ~1;
  let m = 0;
  for (; m + 4 <= M; m += 4) {
    const x0 = x + <usize>m * rb, x1 = x0 + rb, x2 = x1 + rb, x3 = x2 + rb;
    let n = n0;
    for (; n + 4 <= n1; n += 4) {
      const w0 = w + <usize>n * rb, w1 = w0 + rb, w2 = w1 + rb, w3 = w2 + rb;
      let c00 = f64x2.splat(0), c01 = f64x2.splat(0), c02 = f64x2.splat(0), c03 = f64x2.splat(0);
      let c10 = f64x2.splat(0), c11 = f64x2.splat(0), c12 = f64x2.splat(0), c13 = f64x2.splat(0);
      let c20 = f64x2.splat(0), c21 = f64x2.splat(0), c22 = f64x2.splat(0), c23 = f64x2.splat(0);
      let c30 = f64x2.splat(0), c31 = f64x2.splat(0), c32 = f64x2.splat(0), c33 = f64x2.splat(0);
      for (let k = 0; k < k2; k += 2) {
        const o = <usize>k << 2;
        const wa = load2(w0 + o), wb = load2(w1 + o), wc = load2(w2 + o), wd = load2(w3 + o);
        let xv = load2(x0 + o);
        c00 = madd2(xv, wa, c00); c01 = madd2(xv, wb, c01); c02 = madd2(xv, wc, c02); c03 = madd2(xv, wd, c03);
        xv = load2(x1 + o);
        c10 = madd2(xv, wa, c10); c11 = madd2(xv, wb, c11); c12 = madd2(xv, wc, c12); c13 = madd2(xv, wd, c13);
        xv = load2(x2 + o);
        c20 = madd2(xv, wa, c20); c21 = madd2(xv, wb, c21); c22 = madd2(xv, wc, c22); c23 = madd2(xv, wd, c23);
        xv = load2(x3 + o);
        c30 = madd2(xv, wa, c30); c31 = madd2(xv, wb, c31); c32 = madd2(xv, wc, c32); c33 = madd2(xv, wd, c33);
      }
      tile4F64(x0, w0, bias, y + <usize>m * yb, rb, K, k2, n, c00, c01, c02, c03);
      tile4F64(x1, w0, bias, y + <usize>(m + 1) * yb, rb, K, k2, n, c10, c11, c12, c13);
      tile4F64(x2, w0, bias, y + <usize>(m + 2) * yb, rb, K, k2, n, c20, c21, c22, c23);
      tile4F64(x3, w0, bias, y + <usize>(m + 3) * yb, rb, K, k2, n, c30, c31, c32, c33);
    }
    for (; n < n1; n++) {
      const wn = w + <usize>n * rb, bn = biasF64(bias, n);
      for (let r = 0; r < 4; r++) store<f32>(y + <usize>(m + r) * yb + (<usize>n << 2), <f32>(dotTileF64(x + <usize>(m + r) * rb, wn, K) + bn));
    }
  }
  for (; m < M; m++) rowF64<f32>(x + <usize>m * rb, w, bias, y + <usize>m * yb, K, n0, n1);
}

@inline function tile4F64(xr: usize, w0: usize, bias: usize, yr: usize, rb: usize, K: i32, k2: i32, n: i32, a0: v128, a1: v128, a2: v128, a3: v128): void {
  let s0 = hsum2(a0), s1 = hsum2(a1), s2 = hsum2(a2), s3 = hsum2(a3);
  if (k2 < K) {
    const o = <usize>k2 << 2;
    const xk = <f64>load<f32>(xr + o);
    s0 += xk * <f64>load<f32>(w0 + o); s1 += xk * <f64>load<f32>(w0 + rb + o); s2 += xk * <f64>load<f32>(w0 + 2 * rb + o); s3 += xk * <f64>load<f32>(w0 + 3 * rb + o);
  }
  const yo = yr + (<usize>n << 2);
  store<f32>(yo, <f32>(s0 + biasF64(bias, n)));
  store<f32>(yo, <f32>(s1 + biasF64(bias, n + 1)), 4);
  store<f32>(yo, <f32>(s2 + biasF64(bias, n + 2)), 8);
  store<f32>(yo, <f32>(s3 + biasF64(bias, n + 3)), 12);
}
