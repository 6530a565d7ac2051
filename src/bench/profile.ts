/**
 * `spikelm bench --profile`: GPU time per kernel kind per decoded token (timestamp queries,
 * tensor/gpu/profile.ts) beside the wall time per token, for the ANN and for the SNN's layerwise
 * schedule. Profiling puts each dispatch in a pass of its own, a slower loop than the real one, so the
 * wall time is given twice: of the profiled loop, and of the same decode unprofiled.
 */
import { ArgumentError } from '../errors.js';
import { generate } from '../nn/generate.js';
import type { CausalLM } from '../nn/model.js';
import type { SpikingLM } from '../snn/model.js';
import { GpuBackend } from '../tensor/gpu/gpu-backend.js';

export interface KernelRow {
  readonly kind: string;
  readonly msPerToken: number;
  readonly dispatchesPerToken: number;
}

export interface DecodeProfile {
  readonly model: string;
  readonly tokens: number;
  /** Wall time per token of the profiled loop and of the real (unprofiled) one, ms. */
  readonly wallMsPerToken: { readonly profiled: number; readonly real: number };
  /** Σ of the kernels' GPU time per token, ms. */
  readonly gpuMsPerToken: number;
  readonly kernels: readonly KernelRow[];
  /** Dispatches that could not be timed (a submit's timestamp pairs used up). */
  readonly untimed: number;
}

/** Decode `tokens` greedy tokens after `prompt` (untimed), first unprofiled, then profiled. */
export async function profileDecode(label: string, model: CausalLM | SpikingLM, prompt: readonly number[], tokens: number): Promise<DecodeProfile> {
  const gpu = model.backend;
  if (!(gpu instanceof GpuBackend)) throw new ArgumentError('bench --profile: the model must be on the GPU backend');
  if (!gpu.report.features.includes('timestamp-query')) throw new ArgumentError(`bench --profile: this adapter (${gpu.report.description}, Dawn ${gpu.report.path}) has no timestamp-query feature`);
  if (!Number.isInteger(tokens) || tokens < 1) throw new ArgumentError(`bench --profile: --tokens must be an integer ≥ 1, got ${tokens}`);
  const rt = gpu.rt;
  /** ms per token of the decode after the first token; profiled from the first token on when asked. */
  const decode = async (profile: boolean): Promise<number> => {
    let first = 0, last = 0, n = 0;
    await generate(model, prompt, {
      maxNewTokens: tokens + 1, stopTokenIds: [], onToken: () => {
        if (n++ === 0) {
          if (profile) rt.startProfile();
          first = performance.now();
        }
        last = performance.now();
      },
    });
    return (last - first) / tokens;
  };
  await decode(false); // warm-up: pipelines, bind groups
  const real = await decode(false);
  let profiled: number;
  try {
    profiled = await decode(true);
    await rt.sync();
    await rt.profile!.collect();
  } catch (err) {
    rt.stopProfile();
    throw err;
  }
  const profiler = rt.profile!;
  rt.stopProfile(); // the totals stay readable
  // the steps profiled: one sampling dispatch each (the pipelined loop submits the second token's
  // step before the first token's callback starts the profile, so fewer steps than tokens are timed)
  const steps = profiler.totals.get('sampling')?.dispatches ?? tokens;
  const kernels = [...profiler.totals].map(([kind, t]) => ({ kind, msPerToken: t.ms / steps, dispatchesPerToken: t.dispatches / steps }))
    .sort((a, b) => b.msPerToken - a.msPerToken);
  return {
    model: label, tokens, wallMsPerToken: { profiled, real },
    gpuMsPerToken: kernels.reduce((a, k) => a + k.msPerToken, 0), kernels, untimed: profiler.untimed,
  };
}

/** The profile as text: one line per kernel kind, then the totals. */
export function formatProfile(p: DecodeProfile): string {
  const lines = [`${p.model}: ${p.tokens} decoded tokens`];
  for (const k of p.kernels) lines.push(`  ${k.kind.padEnd(16)} ${k.msPerToken.toFixed(3).padStart(9)} ms/token  ${k.dispatchesPerToken.toFixed(1).padStart(6)} dispatches/token`);
  lines.push(`  ${'GPU total'.padEnd(16)} ${p.gpuMsPerToken.toFixed(3).padStart(9)} ms/token`);
  lines.push(`  wall per token: ${p.wallMsPerToken.real.toFixed(3)} ms (the real loop), ${p.wallMsPerToken.profiled.toFixed(3)} ms (profiled: a pass per dispatch)${p.untimed ? `; ${p.untimed} dispatch(es) untimed` : ''}`);
  return lines.join('\n');
}
