/**
 * 16-bit host weights (issue 18): the random GPT-2-small-shaped model (124M parameters) saved as F32
 * and as BF16 (the same seed, so the same weights rounded), on the CPU backend's default kernel set.
 *
 *   - decode (tokens/s after a 32-token prompt), the two copies interleaved in each round, the ratio
 *     taken within the round, then the median over rounds: BF16 reads half the weight bytes a token;
 *   - the peak RSS of `spikelm logits` loading each copy (`/usr/bin/time -f %M`, a fresh process per
 *     run, interleaved, the median of the runs), beside the two files' sizes: what the 16-bit host
 *     copy saves against widening to float32 on load.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GPT2_SMALL, cachedRandomGpt2 } from '../src/bench/random-model.js';
import { type CausalLM, loadModel } from '../src/nn/model.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { threadCount } from '../src/tensor/threads.js';
import { decodeSeconds, median } from './decode.bench.js';
import type { BenchRow, Suite } from './harness.js';
import { FIXTURES } from './model.bench.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const weightFileBytes = (dir: string) => fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors')).reduce((a, f) => a + fs.statSync(path.join(dir, f)).size, 0);

/** Peak resident set (bytes) of `spikelm logits --model dir`, a fresh process. */
function logitsPeakRss(dir: string): number {
  const r = spawnSync('/usr/bin/time', ['-f', 'maxrss_kb %M', process.execPath, path.join(ROOT, 'bin/spikelm.js'), 'logits', '--model', dir, '--prompt', 'Hello'], { encoding: 'utf8' });
  const m = /maxrss_kb (\d+)/.exec(r.stderr ?? '');
  if (r.status !== 0 || !m) throw new Error(`spikelm logits --model ${dir} failed (status ${r.status}): ${(r.stderr ?? '').slice(-400)}`);
  return Number(m[1]) * 1024;
}

export const bf16Suite: Suite = {
  name: 'bf16',
  description: 'the GPT-2-small-shaped random model as F32 and as BF16: decode tokens/s (ratio within rounds) and the peak RSS of `spikelm logits` loading each',
  async run(ctx) {
    const tokenizerFrom = path.join(FIXTURES, 'gpt2-random-f16');
    const dirs = { f32: cachedRandomGpt2(GPT2_SMALL, { tokenizerFrom }), bf16: cachedRandomGpt2(GPT2_SMALL, { tokenizerFrom, dtype: 'BF16' }) };
    const plan = ctx.quick ? { rounds: 1, decode: 2, rss: 1 } : { rounds: 5, decode: 8, rss: 3 };
    const be = new CpuBackend();
    const models = { f32: loadModel(dirs.f32, { backend: be }), bf16: loadModel(dirs.bf16, { backend: be }) } as Record<'f32' | 'bf16', CausalLM>;
    const prompt = Array.from({ length: 32 }, (_, i) => (i * 37 + 11) % models.f32.config.vocabSize);
    for (const k of ['f32', 'bf16'] as const) await decodeSeconds(models[k], prompt, 1); // warm-up
    const series = new Map<string, number[]>();
    const push = (k: string, v: number) => series.set(k, [...(series.get(k) ?? []), v]);
    for (let r = 0; r < plan.rounds; r++) {
      const f32 = plan.decode / (await decodeSeconds(models.f32, prompt, plan.decode));
      const bf16 = plan.decode / (await decodeSeconds(models.bf16, prompt, plan.decode));
      push('f32 decode tokens/s', f32);
      push('bf16 decode tokens/s', bf16);
      push('decode ratio bf16/f32', bf16 / f32);
      ctx.log(`round ${r + 1}: decode F32 ${f32.toFixed(2)}, BF16 ${bf16.toFixed(2)} tokens/s (${(bf16 / f32).toFixed(2)}×)`);
    }
    for (let r = 0; r < plan.rss; r++) {
      push('f32 logits peak RSS MB', logitsPeakRss(dirs.f32) / 1e6);
      push('bf16 logits peak RSS MB', logitsPeakRss(dirs.bf16) / 1e6);
    }
    const m = (k: string) => median(series.get(k) ?? [NaN]);
    const fileF32 = weightFileBytes(dirs.f32) / 1e6, fileBf16 = weightFileBytes(dirs.bf16) / 1e6;
    const saved = m('f32 logits peak RSS MB') - m('bf16 logits peak RSS MB');
    ctx.log(`median of ${plan.rounds} rounds, ${threadCount()} threads, ${be.kernels} kernels: BF16 decode ${m('decode ratio bf16/f32').toFixed(2)}× the F32 decode (target ≥ 1.6); ` +
      `peak RSS of spikelm logits F32 ${m('f32 logits peak RSS MB').toFixed(0)} MB, BF16 ${m('bf16 logits peak RSS MB').toFixed(0)} MB: ${saved.toFixed(0)} MB less, ` +
      `against 0.9 × (${fileF32.toFixed(0)} − ${fileBf16.toFixed(0)} MB of files) = ${(0.9 * (fileF32 - fileBf16)).toFixed(0)} MB (target: at least that)`);
    const rows: BenchRow[] = [{
      suite: 'bf16', name: 'random GPT-2-small, BF16 vs F32 host weights', meanMs: 1000 / m('bf16 decode tokens/s'), samples: plan.rounds,
      metrics: {
        ...Object.fromEntries([...series.keys()].map((k) => [k, m(k)])),
        'f32 file MB': fileF32, 'bf16 file MB': fileBf16, 'rss saved MB': saved, 'rss target MB': 0.9 * (fileF32 - fileBf16),
        threads: threadCount(), rounds: plan.rounds, kernels: be.kernels,
      },
    }];
    return rows;
  },
};
