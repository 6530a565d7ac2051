/**
 * The relaxed-SIMD module (SPIKELM_WASM_RELAXED=1: fused multiply-adds in the dense products)
 * against the default module, each in a child process (a process runs one module), alternating
 * round by round; ratios within a round, then the median. Where relaxed SIMD does not validate
 * without a flag (Node 20) the relaxed child runs with --experimental-wasm-relaxed-simd.
 */
import { execFileSync } from 'node:child_process';
import { relaxedSimdSupported } from '../src/tensor/wasm/runtime.js';
import { median } from './decode.bench.js';
import type { Suite } from './harness.js';

interface Side {
  readonly relaxed: boolean;
  readonly prefill: number;
  readonly decode: number;
}

function runSide(relaxed: boolean, quick: boolean): Side {
  const flags = relaxed && !relaxedSimdSupported() ? ['--experimental-wasm-relaxed-simd'] : [];
  const out = execFileSync(process.execPath, [...flags, '--import', 'tsx', 'bench/relaxed-child.ts', ...(quick ? ['--quick'] : [])], {
    encoding: 'utf8', env: { ...process.env, SPIKELM_WASM_RELAXED: relaxed ? '1' : '0', SPIKELM_CPU_KERNELS: 'wasm' }, maxBuffer: 1 << 20,
  });
  const side = JSON.parse(out) as Side;
  if (side.relaxed !== relaxed) throw new Error(`relaxed suite: a child asked for ${relaxed ? 'the relaxed' : 'the default'} module ran the other`);
  return side;
}

export const relaxedSuite: Suite = {
  name: 'relaxed',
  description: 'the relaxed-SIMD wasm module against the default one on the GPT-2-small-shaped F32 model (prefill 128, decode), child processes alternating',
  async run(ctx) {
    const rounds = ctx.quick ? 1 : 5;
    const pre: number[] = [], dec: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const [a, b] = r % 2 ? [runSide(true, ctx.quick), runSide(false, ctx.quick)] : [runSide(false, ctx.quick), runSide(true, ctx.quick)];
      const [off, on] = a.relaxed ? [b, a] : [a, b];
      pre.push(on.prefill / off.prefill);
      dec.push(on.decode / off.decode);
      ctx.log(`round ${r + 1}: prefill default ${off.prefill.toFixed(1)} relaxed ${on.prefill.toFixed(1)} tokens/s (${pre[r]!.toFixed(2)}×); decode default ${off.decode.toFixed(2)} relaxed ${on.decode.toFixed(2)} tokens/s (${dec[r]!.toFixed(2)}×)`);
    }
    ctx.log(`median of ${rounds} rounds: prefill ${median(pre).toFixed(2)}×, decode ${median(dec).toFixed(2)}× the default module`);
    return [{ suite: 'relaxed', name: 'random GPT-2-small F32, relaxed vs default module', meanMs: 0, samples: rounds, metrics: { 'prefill ratio': median(pre), 'decode ratio': median(dec), rounds } }];
  },
};
