/**
 * The decode loops side by side (nn/generate.ts): the device loop (the token chosen on the backend,
 * one id read back) against the host loop (the logits read back and the token chosen on the host),
 * on the GPT-2-small-shaped random model, on the CPU, on llvmpipe through Dawn's OpenGL ES backend
 * and on lavapipe through its Vulkan backend — all in one run. A process holds one Dawn device, so
 * each backend runs in a child process of its own (bench/loop-child.ts); within a child the two
 * loops alternate round by round, and each round's device/host ratio is taken there.
 *
 * Figures per backend and loop: prefill of 128 tokens (with the first token chosen) in tokens/s,
 * decode tokens/s after a 32-token prompt, and what a decoded token crossed on a GPU: submits and
 * bytes read back; and on each GPU, whether its greedy tokens are the CPU's up to the first near-tie
 * (the CPU's top two logits within 1e-3). No target on software rasterizers: they are correctness
 * oracles. A backend that cannot open here (no lavapipe, say) is reported as such.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GPT2_SMALL, cachedRandomGpt2 } from '../src/bench/random-model.js';
import { median } from './decode.bench.js';
import type { BenchRow, Suite } from './harness.js';
import { FIXTURES } from './model.bench.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** What a child reports for one backend. */
export interface LoopReport {
  readonly backend: string;
  readonly adapter: string;
  readonly error?: string;
  readonly loops?: Readonly<Record<'host' | 'device', { prefillTokS: number[]; decodeTokS: number[]; submitsPerToken: number; bytesReadPerToken: number }>>;
  readonly ratios?: { prefill: number[]; decode: number[] };
  /** GPU greedy tokens equal to the CPU's (of `compared`), up to the first near-tie (null: none met). */
  readonly agreement?: { compared: number; agree: number; firstNearTie: number | null };
}

export const loopSuite: Suite = {
  name: 'loop',
  description: 'decode loops (device: token chosen on the backend, 4 bytes read; host: logits read back) on the GPT-2-small-shaped model: prefill 128 and decode tokens/s on CPU, llvmpipe (OpenGL ES) and lavapipe (Vulkan), in one run',
  async run(ctx) {
    const dir = cachedRandomGpt2(GPT2_SMALL, { tokenizerFrom: path.join(FIXTURES, 'gpt2-random-f16') });
    const plan = ctx.quick ? { rounds: 1, tokens: 2, prefill: 16 } : { rounds: 3, tokens: 6, prefill: 128 };
    const rows: BenchRow[] = [];
    const only = process.env.SPIKELM_BENCH_BACKENDS?.split(',').map((b) => b.trim());
    for (const backend of ['cpu', 'opengles', 'vulkan'].filter((b) => !only || only.includes(b) || (b !== 'cpu' && only.includes('gpu')))) {
      let report: LoopReport;
      try {
        const out = execFileSync(process.execPath, ['--import', 'tsx', path.join(HERE, 'loop-child.ts'), backend, dir, JSON.stringify(plan)], {
          encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...(backend === 'cpu' ? {} : { SPIKELM_GPU: backend }) }, timeout: 20 * 60_000,
        });
        report = JSON.parse(out.trim().split('\n').at(-1)!) as LoopReport;
      } catch (err) {
        report = { backend, adapter: '', error: (err as Error).message.split('\n')[0]! };
      }
      if (report.error || !report.loops) {
        ctx.log(`${backend}: not measured (${report.error})`);
        rows.push({ suite: 'loop', name: `${backend}: not available`, meanMs: NaN, samples: 0, metrics: { reason: report.error ?? 'no result' } });
        continue;
      }
      for (const loop of ['host', 'device'] as const) {
        const r = report.loops[loop];
        const prefill = median(r.prefillTokS), decode = median(r.decodeTokS);
        const ratio: Record<string, number> = loop === 'device' ? { 'prefill device/host': median(report.ratios!.prefill), 'decode device/host': median(report.ratios!.decode) } : {};
        rows.push({
          suite: 'loop', name: `${backend} ${loop} loop`, meanMs: 1000 / decode, samples: plan.rounds,
          metrics: { adapter: report.adapter, [`prefill ${plan.prefill} tokens/s`]: prefill, 'decode tokens/s': decode, 'submits/token': r.submitsPerToken, 'bytes read/token': r.bytesReadPerToken, ...ratio },
        });
        ctx.log(`${backend} (${report.adapter}) ${loop} loop: prefill ${prefill.toFixed(2)} tokens/s, decode ${decode.toFixed(2)} tokens/s, ${r.submitsPerToken} submit(s) and ${r.bytesReadPerToken} bytes read per token`);
      }
      ctx.log(`${backend}: device/host decode ${median(report.ratios!.decode).toFixed(3)}, prefill ${median(report.ratios!.prefill).toFixed(3)} (median of ${plan.rounds} rounds' ratios)`);
      const a = report.agreement;
      if (a) {
        ctx.log(`${backend}: greedy tokens equal the CPU's for ${a.agree} of ${a.compared}${a.firstNearTie === null ? ' (no near-tie met)' : `, the first near-tie (top-2 margin < 1e-3) at token ${a.firstNearTie}`}`);
        rows.push({ suite: 'loop', name: `${backend} greedy tokens vs CPU`, meanMs: NaN, samples: 1, metrics: { 'equal tokens': a.agree, compared: a.compared, 'first near-tie': a.firstNearTie ?? 'none' } });
      }
    }
    return rows;
  },
};
