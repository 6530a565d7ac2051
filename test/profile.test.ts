/**
 * `spikelm bench --profile` (src/bench/profile.ts, src/tensor/gpu/profile.ts): where the adapter has
 * timestamp-query (lavapipe through Vulkan), each kernel kind's dispatches per token are the
 * runtime's own dispatch count per token, every dispatch is timed, and the CLI writes the profile;
 * where it has none (llvmpipe through OpenGL ES), the profile is refused, naming the feature.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { profileDecode } from '../src/bench/profile.js';
import { main } from '../src/cli/main.js';
import { generate } from '../src/nn/generate.js';
import { loadModel } from '../src/nn/model.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { requireGpu } from './helpers/backends.js';
import { fixtureDir } from './helpers/fixtures.js';

describe('GPU profile', () => {
  it('per kernel kind: dispatches per token equal the runtime\'s count, all timed; refused without timestamp-query', async (ctx) => {
    const gpu = await requireGpu(ctx);
    const m = loadModel(fixtureDir('stories260k'), { backend: gpu });
    const prompt = [1, 403, 407, 261];
    if (!gpu.report.features.includes('timestamp-query')) {
      await expect(profileDecode('ANN', m, prompt, 4)).rejects.toThrow(/has no timestamp-query feature/);
      return;
    }
    // the dispatches of one decoded token, counted by the runtime (independent of the profiler)
    const perToken: number[] = [];
    let last = 0;
    await generate(m, prompt, { maxNewTokens: 4, stopTokenIds: [], onToken: () => {
      perToken.push(gpu.rt.dispatchCount - last);
      last = gpu.rt.dispatchCount;
    } });
    // a steady token's (the pipelined loop's last interval holds no step)
    const dispatches = perToken[1]!;
    expect(dispatches).toBeGreaterThan(0);
    const p = await profileDecode('ANN', m, prompt, 6);
    expect(p.untimed).toBe(0);
    expect(p.kernels.reduce((a, k) => a + k.dispatchesPerToken, 0)).toBeCloseTo(dispatches, 10);
    expect(p.kernels.map((k) => k.kind)).toEqual(expect.arrayContaining(['matmul', 'attention', 'norm', 'sampling', 'embedding']));
    for (const k of p.kernels) expect(k.msPerToken).toBeGreaterThan(0);
    expect(p.gpuMsPerToken).toBeCloseTo(p.kernels.reduce((a, k) => a + k.msPerToken, 0), 9);
    // profiling observes: the tokens are those of an unprofiled CPU run
    expect(p.wallMsPerToken.real).toBeGreaterThan(0);
    const want = await generate(loadModel(fixtureDir('stories260k'), { backend: new CpuBackend() }), prompt, { maxNewTokens: 6, stopTokenIds: [] });
    gpu.rt.startProfile();
    const got = await generate(m, prompt, { maxNewTokens: 6, stopTokenIds: [] });
    gpu.rt.stopProfile();
    expect(got.ids).toEqual(want.ids);
  });

  it('spikelm bench --profile prints the ANN and the SNN per kernel kind and writes profile.json', async (ctx) => {
    const gpu = await requireGpu(ctx);
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-profile-'));
    const lines: string[] = [], errs: string[] = [];
    const code = await main(['bench', '--model', fixtureDir('stories260k'), '--profile', '--tokens', '3', '--out', out], { out: (s) => lines.push(s), err: (s) => errs.push(s) });
    if (!gpu.report.features.includes('timestamp-query')) {
      expect(code).not.toBe(0);
      expect(errs.join('')).toMatch(/timestamp-query/);
      return;
    }
    expect(code, errs.join('')).toBe(0);
    const text = lines.join('');
    expect(text).toMatch(/^ANN: 3 decoded tokens/m);
    expect(text).toMatch(/^SNN \(layerwise .+ T=\d+\): 3 decoded tokens/m);
    expect(text).toMatch(/wall per token: [\d.]+ ms \(the real loop\), [\d.]+ ms \(profiled: a pass per dispatch\)/);
    const json = JSON.parse(fs.readFileSync(path.join(out, 'profile.json'), 'utf8'));
    expect(json.dawn_backend).toBe(gpu.report.path);
    expect(json.profiles.map((p: { model: string }) => p.model)).toHaveLength(2);
    expect(json.profiles[1].kernels.map((k: { kind: string }) => k.kind)).toContain('codes');
  });
});
