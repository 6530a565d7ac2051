/** The CLI, in-process (main with captured output) and once through the real `bin/spikelm.js`. */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseArgs } from '../src/cli/args.js';
import { timingSummary } from '../src/cli/generate.js';
import { runCli } from './helpers/cli-run.js';
import { fixtureDir, golden } from './helpers/fixtures.js';
import { TOL, expectClose } from './helpers/tolerance.js';

const run = runCli;

const stories = fixtureDir('stories260k');

// Hub names must never reach the network from a test: an empty cache and an endpoint on a closed local port.
const savedHubEnv = { HF_ENDPOINT: process.env.HF_ENDPOINT, HF_HUB_CACHE: process.env.HF_HUB_CACHE, HF_HUB_OFFLINE: process.env.HF_HUB_OFFLINE };
beforeAll(() => {
  process.env.HF_ENDPOINT = 'http://127.0.0.1:9';
  process.env.HF_HUB_CACHE = fs.mkdtempSync(path.join(fs.realpathSync('/tmp'), 'spikelm-cli-hub-'));
  delete process.env.HF_HUB_OFFLINE;
});
afterAll(() => {
  fs.rmSync(process.env.HF_HUB_CACHE!, { recursive: true, force: true });
  for (const [k, v] of Object.entries(savedHubEnv)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
});

describe('spikelm generate / logits', () => {
  it('prints the golden story for stories260k', async () => {
    const r = await run(['generate', '--model', stories, '--prompt', 'Once upon a time', '--max-new-tokens', '40']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Once upon a time, there was a little girl named Lily\. She loved to play outside in the park\. One day, she saw a big, red ball\./);
  });

  it('generate ends with a timing line on stderr; the summary is arithmetic on its inputs', async () => {
    const r = await run(['generate', '--model', stories, '--prompt', 'Once upon a time', '--max-new-tokens', '12']);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/^timing: prompt 5 tokens \+ first token in \d+\.\d\d s \([\d.]+ tokens\/s\); 11 more tokens in \d+\.\d\d s \([\d.]+ tokens\/s\); stopped by max_new_tokens \(cpu\)\n$/m);
    expect(timingSummary(100, 21, 1000, 3000, 7000, 'stop_token')).toBe('timing: prompt 100 tokens + first token in 2.00 s (50.0 tokens/s); 20 more tokens in 4.00 s (5.0 tokens/s); stopped by stop_token');
    expect(timingSummary(7, 0, 0, Number.NaN, 500, 'max_new_tokens')).toBe('timing: prompt 7 tokens, nothing generated (max_new_tokens) in 0.50 s');
  });

  it('--json gives input_ids, output_ids and text; snake_case flags work', async () => {
    const g = golden('gpt2-random-f16')['Hello, world']!;
    const r = await run(['generate', '--model_name', fixtureDir('gpt2-random-f16'), '--prompt', 'Hello, world', '--max_new_tokens=12', '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.input_ids).toEqual(g.input_ids);
    expect(j.output_ids).toEqual(g.greedy_continuation);
    expect(typeof j.text).toBe('string');
  });

  it('sampling is reproducible with a seed and differs across seeds', async () => {
    const args = (seed: number) => ['generate', '--model', stories, '--prompt', 'Once upon a time', '--max-new-tokens', '20', '--temperature', '1', '--top-k', '50', '--top-p', '0.95', '--seed', String(seed), '--json'];
    const a = JSON.parse((await run(args(1))).out).output_ids;
    const b = JSON.parse((await run(args(1))).out).output_ids;
    const c = JSON.parse((await run(args(2))).out).output_ids;
    expect(a).toEqual(b);
    expect(c).not.toEqual(a);
  });

  it('sampling defaults come from the model\'s generation_config.json; a flag given wins', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-genconfig-'));
    for (const f of fs.readdirSync(stories)) if (fs.statSync(path.join(stories, f)).isFile()) fs.copyFileSync(path.join(stories, f), path.join(dir, f));
    fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ do_sample: true, temperature: 1.3, top_k: 40, top_p: 0.9 }));
    const ids = async (model: string, extra: string[] = []) => {
      const r = await run(['generate', '--model', model, '--prompt', 'Once upon a time', '--max-new-tokens', '24', '--json', ...extra]);
      expect(r.code, r.err).toBe(0);
      return { ids: JSON.parse(r.out).output_ids as number[], err: r.err };
    };
    const greedy = (await ids(stories)).ids;
    const fromConfig = await ids(dir);
    expect(fromConfig.err).toMatch(/sampling defaults from generation_config\.json: temperature 1\.3, top-k 40, top-p 0\.9, seed 0/);
    expect(fromConfig.ids).not.toEqual(greedy);
    // the same as giving those flags to the model without the file
    expect(fromConfig.ids).toEqual((await ids(stories, ['--temperature', '1.3', '--top-k', '40', '--top-p', '0.9'])).ids);
    // a flag given overrides the file: --temperature 0 is greedy again
    expect((await ids(dir, ['--temperature', '0'])).ids).toEqual(greedy);
    // do_sample false (transformers' default) is greedy whatever the temperature says
    fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ temperature: 1.3 }));
    expect((await ids(dir)).ids).toEqual(greedy);
    fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ do_sample: true, top_p: 1.5 }));
    const bad = await run(['generate', '--model', dir, '--prompt', 'x', '--max-new-tokens', '2']);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/generation_config\.json: "top_p" must be in \(0, 1\], got 1\.5/);
  });

  it('logits prints { input_ids, last_logits } matching golden', async () => {
    const g = golden('stories260k')['Once upon a time']!;
    const r = await run(['logits', '--model', stories, '--prompt', 'Once upon a time', '--backend', 'cpu']);
    const j = JSON.parse(r.out);
    expect(j.input_ids).toEqual(g.input_ids);
    expectClose(j.last_logits, g.last_logits, TOL.golden, 'cli logits');
  });

  it.each([
    [['generate', '--model', '/no/such/dir', '--prompt', 'x'], 1, /no such directory/],
    [['generate', '--model', 'HuggingFaceTB/SmolLM2-135M', '--prompt', 'x'], 1, /HuggingFaceTB\/SmolLM2-135M: cannot reach http:\/\/127\.0\.0\.1:9 .*HF_HUB_OFFLINE=1/],
    [['generate', '--model', 'distilgpt2', '--prompt', 'x'], 1, /distilgpt2: cannot reach http:\/\/127\.0\.0\.1:9/],
    [['generate', '--model', stories, '--prompt', 'x', '--top-p', '2'], 2, /--top-p must be in \(0, 1\]/],
    [['generate', '--model', stories, '--prompt', 'x', '--max-new-tokens', '-1'], 2, /--max-new-tokens must be an integer ≥ 0/],
    [['generate', '--model', stories, '--prompt', 'x', '--truncate', 'middle'], 2, /--truncate must be error or left/],
    [['chat', '--model', stories, '--max-new-tokens', '-3'], 2, /--max-new-tokens must be an integer ≥ 0/],
    [['chat', '--model', stories, '--top-k', '-1'], 2, /--top-k must be an integer ≥ 0/],
    [['chat', '--model', stories, '--script', path.dirname(stories)], 2, /--script .*: is a directory/],
    [['generate', '--model', path.dirname(stories), '--prompt', 'x'], 1, /config\.json: not found/],
    [['generate', '--model', stories], 2, /--prompt is required/],
    [['generate', '--model', stories, '--prompt', 'x', '--max-new-tokens', 'ten'], 2, /--max-new-tokens must be an integer/],
    [['generate', '--model', stories, '--prompt', 'x', '--frobnicate'], 2, /unknown flag --frobnicate/],
    [['generate', '--model', stories, '--prompt', 'x', '--backend', 'tpu'], 2, /--backend must be cpu, gpu or auto/],
    [['generate', '--model', stories, '--prompt', 'x', '--temperature', '-1'], 2, /--temperature must be a number ≥ 0/],
    [['frobnicate'], 2, /unknown command/],
  ])('%j exits %i with one clear line', async (argv, code, pattern) => {
    const r = await run(argv as string[]);
    expect(r.code).toBe(code);
    // bad flags fail before any work: nothing was printed (no prompt echo, no chat banner)
    expect(r.out).toBe('');
    expect(r.err).toMatch(pattern);
    expect(r.err.trim().split('\n')[0]).toMatch(/^spikelm: error: /);
  });

  it('a prompt longer than the context is refused naming both lengths; --truncate left keeps the most recent tokens', async () => {
    const gpt2 = fixtureDir('gpt2-random-f16'); // 256 positions
    const prompt = 'one two three four '.repeat(80);
    const r = await run(['generate', '--model', gpt2, '--prompt', prompt, '--max-new-tokens', '2']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/the prompt is \d+ tokens, longer than the model's context of 256 positions/);
    expect(r.out).toBe('');
    const t = await run(['generate', '--model', gpt2, '--prompt', prompt, '--max-new-tokens', '2', '--truncate', 'left', '--json']);
    expect(t.code, t.err).toBe(0);
    expect(t.err).toMatch(/keeping the last 256/);
    const j = JSON.parse(t.out);
    expect(j.input_ids).toHaveLength(256);
    expect(j.output_ids).toHaveLength(1); // the context is full: one prediction, then the limit
    expect(t.err).toMatch(/stopped at the model's context limit of 256/);
  });

  it('a directory with broken weights fails with one line, exit 1', async () => {
    const dir = fs.mkdtempSync(path.join(fs.realpathSync('/tmp'), 'spikelm-bad-'));
    for (const f of ['config.json', 'tokenizer.json']) fs.copyFileSync(path.join(stories, f), path.join(dir, f));
    fs.writeFileSync(path.join(dir, 'model.safetensors'), Buffer.from([1, 2, 3]));
    const r = await run(['generate', '--model', dir, '--prompt', 'x']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/model\.safetensors: file is 3 bytes, too short/);
  });
});

describe('argument parsing', () => {
  it('accepts snake_case and kebab-case, = and space forms, lists', () => {
    const specs = { 'model-name': { type: 'string', help: '' }, timesteps: { type: 'int-list', help: '' }, simplified: { type: 'boolean', help: '' } } as const;
    const a = parseArgs(['--model_name', 'd', '--timesteps=1,2,4', '--simplified'], specs, 't');
    expect(a.flags).toEqual({ 'model-name': 'd', timesteps: [1, 2, 4], simplified: true });
  });
});

describe('bin/spikelm.js', () => {
  it('--help lists the required flags apart, with a usage line; each missing one is refused before any work', async () => {
    const cases: [string, string[]][] = [['generate', ['model', 'prompt']], ['logits', ['model', 'prompt']], ['convert', ['model', 'output-dir']], ['chat', ['model']], ['fidelity', ['model']], ['bench', ['model', 'out']], ['test', ['model']], ['demo', []], ['info', []]];
    for (const [cmd, required] of cases) {
      const h = await run([cmd, '--help']);
      expect(h.code, cmd).toBe(0);
      const req = /\nrequired:\n((?: {2}--.*\n)+)/.exec(h.out)?.[1] ?? '';
      expect(req.match(/^ {2}--[a-z-]+/gm)?.map((f) => f.trim().slice(2)) ?? [], cmd).toEqual(required);
      expect(h.out).toMatch(new RegExp(`usage: spikelm ${cmd}${required.map((f) => ` --${f} <string>`).join('')}`));
      const full: Record<string, string> = { model: stories, prompt: 'x', 'output-dir': '/tmp/never-written', out: '/tmp/never-written' };
      for (const missing of required) {
        const argv = [cmd, ...required.filter((f) => f !== missing).flatMap((f) => [`--${f}`, full[f]!])];
        const r = await run(argv);
        expect(r.code, argv.join(' ')).toBe(2);
        expect(r.out).toBe('');
        expect(r.err).toMatch(new RegExp(`^spikelm: error: ${cmd}: --${missing} is required`));
      }
    }
  });

  it('info prints readable text (the machine, each backend, the model) and --json every field', async () => {
    const t = await run(['info', '--model', stories]);
    expect(t.code).toBe(0);
    expect(t.out).not.toMatch(/[{}]/);
    expect(t.out).toMatch(/^spikelm on Node v\d+/);
    expect(t.out).toMatch(/\n {2}cpu {2}cpu \(wasm SIMD kernels for the products/);
    expect(t.out).toMatch(/\n {7}kernel set wasm \(the default; wasm\|ts\); WebAssembly SIMD yes, relaxed SIMD no/);
    const ts = await run(['info'], { SPIKELM_CPU_KERNELS: 'ts' });
    expect(ts.out).toMatch(/\n {2}cpu {2}cpu \(plain TypeScript kernels/);
    expect(ts.out).toMatch(/kernel set ts \(SPIKELM_CPU_KERNELS=ts; wasm\|ts\)/);
    expect(t.out).toMatch(/\n {2}gpu {2}/);
    expect(t.out).toMatch(/llama \(llama family\), 260\.0K parameters: 5 layers, width 64, 8 heads of 8 over 4 KV heads, MLP 172 \(silu\)/);
    expect(t.out).toMatch(/vocabulary 512 \(tokenizer 512\), context 512 positions/);
    expect(t.out).toMatch(/pre-RMSNorm \(eps 0\.00001\); gated MLP \(silu\); RoPE θ 10000; full causal attention; no biases; tied head/);
    // the features of the other families, as their configs say
    const features = async (name: Parameters<typeof fixtureDir>[0]) => JSON.parse((await run(['info', '--model', fixtureDir(name), '--json'])).out).model.features;
    expect(await features('qwen3-random')).toEqual(expect.arrayContaining(['q/k RMSNorm per head', 'untied head']));
    expect(await features('qwen2-random')).toContain('biases on q, k, v');
    expect(await features('mistral-random')).toContain('sliding window 8');
    expect(await features('opt-random')).toEqual(expect.arrayContaining(['pre-LayerNorm (eps 0.00001)', 'MLP (relu)', 'learned positions (offset 2)', 'biases on q, k, v, o, mlp']));
    const j = JSON.parse((await run(['info', '--model', stories, '--json'])).out);
    expect(j.model.parameters).toBe(260032);
    expect(j.model.host_weight_bytes).toBe(260032 * 4);
    expect(t.out).toMatch(/host weights 1 MiB \(float32\)/);
    // an F16 checkpoint's matrices stay 16-bit: every parameter but the norms, biases and positions at 2 bytes
    const g = JSON.parse((await run(['info', '--model', fixtureDir('gpt2-random-f16'), '--json'])).out).model;
    expect(g.host_weight_formats).toEqual(['f16', 'f32']);
    const c = JSON.parse(fs.readFileSync(path.join(fixtureDir('gpt2-random-f16'), 'config.json'), 'utf8'));
    const D = c.n_embd, L = c.n_layer, V = c.vocab_size;
    const matrices = L * 12 * D * D + V * D;
    expect(g.host_weight_bytes).toBe(2 * matrices + 4 * (g.parameters - matrices));
    expect(j.model.kv_heads).toBe(4);
    if (j.backends.gpu.available) {
      // where the adapter lacks subgroups (llvmpipe) the report says so and why
      expect(j.backends.gpu.subgroup_reductions).toBe(j.backends.gpu.features.includes('subgroups') && !j.backends.gpu.subgroup_note);
      if (!j.backends.gpu.subgroup_reductions) expect(j.backends.gpu.subgroup_note).toMatch(/\w/);
    }
  });

  it('runs the built CLI as a separate process', () => {
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
    expect(fs.existsSync(path.join(root, 'dist', 'cli', 'main.js')), 'dist/ is missing: `npm test` builds it first').toBe(true);
    const out = execFileSync(process.execPath, [path.join(root, 'bin', 'spikelm.js'), 'generate', '--model', stories, '--prompt', 'Once upon a time', '--max-new-tokens', '12'], { encoding: 'utf8' });
    expect(out).toMatch(/^Once upon a time, there was a little girl named Lily/);
    const bad = spawnSync(process.execPath, [path.join(root, 'bin', 'spikelm.js'), 'logits', '--model', '/nope', '--prompt', 'x'], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe('spikelm convert / fidelity', () => {
  it('convert writes a spiking model (snake_case flags) and --verify prints the fidelity table', async () => {
    const out = path.join(fs.mkdtempSync(path.join(fs.realpathSync('/tmp'), 'spikelm-cli-')), 'snn');
    const r = await run(['convert', '--model_name', stories, '--output_dir', out, '--schedule', 'stepwise', '--coding', 'rate', '--timesteps', '16', '--calibration_samples', '4', '--verify', '--surrogate_function', 'sigmoid']);
    expect(r.code, r.err).toBe(0);
    expect(fs.existsSync(path.join(out, 'snn_config.json'))).toBe(true);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'snn_config.json'), 'utf8'))).toMatchObject({ surrogate: { name: 'sigmoid' }, schedule: 'stepwise', coding: 'rate' });
    expect(r.out).toMatch(/fidelity over \d+ positions/);
    expect(r.out).toMatch(/^\s*stepwise\s+rate\s+16\s+\d+\.\d%/m);
    expect(r.err).toMatch(/calibrating: 100%/);
    // fidelity on the saved model, as JSON
    const f = await run(['fidelity', '--model', stories, '--snn', out, '--timesteps', '4,16', '--json']);
    expect(f.code).toBe(0);
    const j = JSON.parse(f.out);
    expect(j.mode).toBe('spiking');
    expect(j.results.map((x: { T: number }) => x.T)).toEqual([4, 16]);
    for (const x of j.results) {
      for (const k of ['top1_agreement', 'kl', 'max_abs_logit_err', 'ppl_ann', 'ppl_snn', 'distinct_predictions_ann', 'distinct_predictions_snn', 'spike_rate', 'spikes_per_neuron_per_token', 'max_spikes_per_neuron_per_step']) expect(typeof x[k]).toBe('number');
      expect(Object.keys(x.energy_ratio).sort()).toEqual(['fp16', 'fp32', 'int8']);
    }
    expect(j.positions).toBeGreaterThanOrEqual(256);
    expect(j.results[1].kl).toBeLessThan(j.results[0].kl);
  });

  it('fidelity --model DIR --json alone converts for the default target: one row, planes per site, select and evaluation figures', async () => {
    const f = await run(['fidelity', '--model', stories, '--json']);
    expect(f.code, f.err).toBe(0);
    const j = JSON.parse(f.out);
    expect(j.default).toMatchObject({ schedule: 'layerwise', coding: 'phase-ternary', target: { top1: 0.99, kl: 1e-3 } });
    expect(j.text).toEqual({ source: 'data/eval-stories.txt', positions: j.positions });
    expect(j.results).toHaveLength(1);
    const d = j.results[0];
    expect(d).toMatchObject({ schedule: 'layerwise', coding: 'phase-ternary', max_spikes_per_neuron_per_step: 1, meets_target_on_select: true });
    expect(d.T).toBe(Math.max(...Object.values(d.planes as Record<string, number>)));
    expect(d.selection.positions).toBeGreaterThanOrEqual(1500);
    expect(d.top1_agreement).toBeGreaterThanOrEqual(0.99);
    expect(d.kl).toBeLessThanOrEqual(1e-3);
    expect(d.energy_ratio.fp32).toBeLessThanOrEqual(0.6);
  });

  it('fidelity sweeps codes and schedules (lists), skipping the pairs that do not exist', async () => {
    const f = await run(['fidelity', '--model', stories, '--coding', 'rate,phase', '--schedule', 'stepwise,layerwise', '--timesteps', '4,8', '--json']);
    expect(f.code, f.err).toBe(0);
    expect(f.err).toMatch(/skipping stepwise phase: phase codes need the layerwise schedule/);
    const j = JSON.parse(f.out);
    expect([...new Set(j.results.map((x: { schedule: string; coding: string }) => `${x.schedule} ${x.coding}`))]).toEqual(['stepwise rate', 'layerwise rate', 'layerwise phase']);
    // a single-spike code never bursts; rate bursts do
    expect(j.results.filter((x: { coding: string }) => x.coding === 'phase').every((x: { max_spikes_per_neuron_per_step: number }) => x.max_spikes_per_neuron_per_step === 1)).toBe(true);
  });

  it('fidelity without --snn converts first; --simplified converts without calibration', async () => {
    const text = path.join(fs.mkdtempSync(path.join(fs.realpathSync('/tmp'), 'spikelm-txt-')), 't.txt');
    fs.writeFileSync(text, 'Once upon a time there was a cat. The cat liked to play with a ball.');
    const f = await run(['fidelity', '--model', stories, '--timesteps', '2,8', '--text', text, '--json']);
    expect(f.code).toBe(0);
    expect(f.err).toMatch(/fewer than 256/);
    const out = path.join(fs.mkdtempSync(path.join(fs.realpathSync('/tmp'), 'spikelm-cli-')), 'simple');
    const s = await run(['convert', '--model', stories, '--output-dir', out, '--timesteps', '8', '--simplified']);
    expect(s.code).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'snn_config.json'), 'utf8')).simplified).toBe(true);
  });

  it.each([
    [['convert', '--model_name', 'HuggingFaceTB/SmolLM2-135M', '--output_dir', '/tmp/x'], 1, /HuggingFaceTB\/SmolLM2-135M: cannot reach http:\/\/127\.0\.0\.1:9/],
    [['convert', '--model', stories], 2, /--output-dir is required/],
    [['convert', '--model', stories, '--output-dir', '/tmp/x', '--timesteps', '0'], 2, /--timesteps must be an integer ≥ 1/],
    [['convert', '--model', stories, '--output-dir', '/tmp/x', '--surrogate_function', 'tanh'], 2, /--surrogate_function must be one of/],
    [['fidelity', '--model', stories, '--snn', stories], 1, /snn_config\.json: not found/],
    [['fidelity', '--model', stories, '--timesteps', '4,x'], 2, /comma-separated list of integers/],
    [['fidelity', '--model', stories, '--coding', 'morse'], 2, /--coding must be one of rate, rate-single, phase, phase-ternary/],
    [['convert', '--model', stories, '--output-dir', '/tmp/x', '--schedule', 'stepwise', '--coding', 'phase'], 2, /--coding phase needs --schedule layerwise/],
    [['convert', '--model', stories, '--output-dir', '/tmp/x', '--execution', 'multi'], 2, /--execution must be fast or event for the layerwise schedule/],
  ])('%j exits %i with one clear line', async (argv, code, pattern) => {
    const r = await run(argv as string[]);
    expect(r.code).toBe(code);
    expect(r.err).toMatch(pattern);
  });
});

describe('spikelm chat / test / demo', () => {
  it('chat --script runs a 3-turn conversation with the spiking model, /stats and /reset included', async () => {
    const dir = fs.mkdtempSync(path.join(fs.realpathSync('/tmp'), 'spikelm-chat-'));
    const script = path.join(dir, 'turns.txt');
    fs.writeFileSync(script, ['Once upon a time there was a girl named Lily.', 'She had a dog named Max.', '/stats', 'They went to the park.', '/reset', '/exit', 'never sent'].join('\n'));
    const r = await run(['chat', '--model', stories, '--snn', '--timesteps', '8', '--script', script, '--max-new-tokens', '10']);
    expect(r.code).toBe(0);
    expect(r.out.match(/^User: /gm)).toHaveLength(3);
    expect(r.out.match(/^Assistant: /gm)).toHaveLength(3);
    expect(r.out).toMatch(/per neuron per token, .* per neuron per step, at most 1 per neuron per step/);
    expect(r.out).toMatch(/E_SNN\/E_ANN/);
    expect(r.out).toMatch(/\(conversation reset\)/);
    expect(r.out).not.toMatch(/never sent/);
    expect(r.err).toMatch(/spiking model \(T = 8\)/);
  });

  it('chat with --max-new-tokens 0: every turn is an empty reply, and the session goes on', async () => {
    const dir = fs.mkdtempSync(path.join(fs.realpathSync('/tmp'), 'spikelm-chat-'));
    const script = path.join(dir, 'turns.txt');
    fs.writeFileSync(script, ['Hello.', 'Are you there?', 'Tell me a story.'].join('\n'));
    const r = await run(['chat', '--model', stories, '--script', script, '--max-new-tokens', '0']);
    expect(r.code, r.err).toBe(0);
    expect(r.out.match(/^User: /gm)).toHaveLength(3);
    expect(r.out.match(/\[0 tokens/g)).toHaveLength(3);
  });

  it('test --test_all writes report.json and exits 0; a broken SNN (θ × 100) fails fidelity and coherence', async () => {
    const base = fs.mkdtempSync(path.join(fs.realpathSync('/tmp'), 'spikelm-test-'));
    const out = path.join(base, 'report');
    const r = await run(['test', '--model_name', stories, '--test_all', '--output_dir', out]);
    expect(r.code).toBe(0);
    const report = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
    expect(report.passed).toBe(true);
    expect(report.tests.map((t: { name: string }) => t.name)).toEqual(['conversation', 'position_boundaries', 'attention_mask', 'multi_turn_coherence', 'energy', 'fidelity']);
    expect(r.out).toMatch(/fidelity\s+PASS/);
    // the long position test reports progress (a line per quarter off a terminal)
    expect(r.err).toMatch(/position_boundaries: tokens: 2\d% \(\d+\/\d+, [\d.]+s\)\n(.*\n)*position_boundaries: tokens: 100% /);
    // break a converted model: thresholds × 100
    const { convertModelToSpiking, createCalibrationData, saveSnnModel } = await import('../src/convert/api.js');
    const { loadModel } = await import('../src/nn/model.js');
    const { loadTokenizer } = await import('../src/nn/tokenizer.js');
    const { SpikingLM } = await import('../src/snn/model.js');
    const tok = loadTokenizer(stories);
    const { snn } = await convertModelToSpiking(loadModel(stories), createCalibrationData(tok));
    const broken = new SpikingLM(snn.config, snn.weights, snn.backend, { ...snn.spiking, thresholds: new Map([...snn.spiking.thresholds].map(([k, v]) => [k, v.map((x) => x * 100)])) });
    saveSnnModel(broken, tok, path.join(base, 'broken'));
    const b = await run(['test', '--model_name', stories, '--snn', path.join(base, 'broken'), '--test_fidelity', '--test_multi_turn', '--output_dir', path.join(base, 'broken-report')]);
    expect(b.code).toBe(1);
    expect(b.out).toMatch(/fidelity\s+FAIL/);
    expect(b.out).toMatch(/multi_turn_coherence\s+FAIL/);
    const br = JSON.parse(fs.readFileSync(path.join(base, 'broken-report', 'report.json'), 'utf8'));
    expect(br.passed).toBe(false);
    expect(br.tests.every((t: { passed: boolean }) => !t.passed)).toBe(true);
  });

  it('demo converts the bundled model and prints fidelity, a side-by-side chat, spikes and energy', async () => {
    const r = await run(['demo', '--turns', '2', '--max-new-tokens', '8']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/fidelity over 300 positions/);
    expect(r.out).toMatch(/layerwise schedule, phase-ternary code/);
    expect(r.out.match(/^\s+ANN: /gm)).toHaveLength(2);
    expect(r.out.match(/^\s+SNN: /gm)).toHaveLength(2);
    expect(r.out).toMatch(/fp32: E_ANN .* E_SNN/);
  });
});
