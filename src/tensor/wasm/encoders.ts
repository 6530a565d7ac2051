/**
 * The wasm SIMD set's dispatcher for the weighted encoders (phase, phase-ternary): the twin of the
 * weighted branch of encodeCpu (src/tensor/kernels/codes.ts), bit for bit (assembly/codes.ts says
 * how). Rate codes stay with the TypeScript kernel in both sets. Rows run on the calling thread:
 * a decode step encodes one row per site, and a prefill's rows are a small part of its products.
 */
import { EXTRA_PLANES, STATS_WIDTH, type CodeParams, type EncodeOut, planesOf, validateCode } from '../kernels/codes.js';
import type { WasmRuntime } from './runtime.js';

export function encodeWasm(rt: WasmRuntime, x: Float32Array, R: number, C: number, invTheta: Float32Array, code: CodeParams, out: EncodeOut): void {
  validateCode(code);
  if (code.kind === 'rate') throw new RangeError('encodeWasm: rate codes run the TypeScript kernel');
  const n = R * C;
  const xp = rt.operand(x.subarray(0, n), 'enc-x'), ip = rt.operand(invTheta.subarray(0, C), 'enc-inv');
  const sp = rt.stage('enc-sums', Math.max(4, n * 4)), stp = rt.stage('enc-stats', Math.max(4, R * STATS_WIDTH * 4)), vp = rt.stage('enc-v', Math.max(4, C * 4));
  const P = planesOf(code);
  let dp = 0;
  if (out.digits) {
    dp = rt.stage('enc-digits', Math.max(4, P * n * 4));
    rt.view(dp, P * n).fill(0);
  }
  rt.kernels.encodeWeightedF32(xp, ip, R, C, code.T, EXTRA_PLANES, code.kind === 'ternary' ? 1 : 0, sp, dp, stp, vp, 0, R);
  out.sums.set(rt.view(sp, n));
  out.rowStats.set(rt.view(stp, R * STATS_WIDTH));
  if (out.digits) out.digits.set(rt.view(dp, P * n));
}
