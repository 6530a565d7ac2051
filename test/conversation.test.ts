/**
 * The conversation layer: per-conversation KV caches that equal full recomputation over many turns
 * (ANN and SNN, CPU and GPU), the sliding context window, padding, resets, chat formats.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { convertModelToSpiking, createCalibrationData } from '../src/convert/api.js';
import { ChatSession, chatFormat } from '../src/conversation/chat.js';
import { TemporalSpikeProcessor } from '../src/conversation/processor.js';
import { STORY_TURNS, testAttentionMaskContinuity, testPositionIdBoundaries } from '../src/conversation/suite.js';
import { CausalLM, loadModel } from '../src/nn/model.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';
import { SpikingLM } from '../src/snn/model.js';
import type { Backend } from '../src/tensor/backend.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { BACKEND_NAMES, backendFor } from './helpers/backends.js';
import { fixtureDir } from './helpers/fixtures.js';
import { TOL, expectClose } from './helpers/tolerance.js';

const stories = fixtureDir('stories260k');
const tok = loadTokenizer(stories);
const calib = createCalibrationData(tok, { numSamples: 6 });

type Models = { ann: CausalLM; snn: SpikingLM; layerwise: SpikingLM; 'layerwise-event': SpikingLM };
const built = new Map<Backend, Promise<Models>>();
/** The ANN, a stepwise rate SNN and the default layerwise SNN (fast execution, and the event-driven one), once per backend. */
function models(backend: Backend): Promise<Models> {
  let m = built.get(backend);
  if (!m) built.set(backend, (m = buildModels(backend)));
  return m;
}

async function buildModels(backend: Backend): Promise<Models> {
  const ann = loadModel(stories, { backend });
  const { snn } = await convertModelToSpiking(ann, calib, { timesteps: 8, schedule: 'stepwise', coding: 'rate', backend });
  const { snn: layerwise } = await convertModelToSpiking(ann, calib, { backend });
  return { ann, snn, layerwise, 'layerwise-event': layerwise.with({ execution: 'event' }) };
}

describe.each(BACKEND_NAMES)('cached conversations equal full recomputation on %s', (name) => {
  it.for(['ann', 'snn', 'layerwise', 'layerwise-event'] as const)('%s: a 4-turn conversation, turn by turn and token by token', async (kind, ctx) => {
    const backend = await backendFor(name, ctx);
    const m = (await models(backend))[kind];
    const tol = name === 'gpu' ? TOL.gpuKernel : { atol: 1e-5, rtol: 1e-5 };
    const p = new TemporalSpikeProcessor(m);
    const full = new TemporalSpikeProcessor(p.lm);
    let seq: number[] = [];
    for (const [i, turn] of STORY_TURNS.slice(0, 4).entries()) {
      seq = [...seq, ...tok.encode(turn, { addSpecialTokens: i === 0 })];
      const cached = await p.forward(seq, { batchIds: ['c'] });
      // only the new turn's tokens were fed
      expect(cached.positionIds[0]!.length).toBe(i === 0 ? seq.length : tok.encode(turn, { addSpecialTokens: false }).length);
      const recomputed = await full.forward(seq, { useCache: false });
      expectClose(cached.lastLogits[0]!, recomputed.lastLogits[0]!, tol, `turn ${i + 1}`);
      // and two generated tokens, one at a time
      for (let g = 0; g < 2; g++) {
        seq.push(argmaxOf(cached.lastLogits[0]!));
        const step = await p.forward(seq, { batchIds: ['c'] });
        expect(step.positionIds[0]).toEqual([seq.length - 1]);
        expectClose(step.lastLogits[0]!, (await full.forward(seq, { useCache: false })).lastLogits[0]!, tol, `turn ${i + 1} token ${g + 1}`);
      }
    }
  });
});

const argmaxOf = (a: Float32Array) => a.reduce((best, v, i) => (v > a[best]! ? i : best), 0);

const cpuModels = await models(new CpuBackend());

describe('TemporalSpikeProcessor', () => {
  const { ann, snn, layerwise } = cpuModels;

  it('position ids never reach max_position_embeddings after thousands of tokens (the window slides)', async () => {
    const progress: [number, number][] = [];
    const r = await testPositionIdBoundaries(ann, tok, { totalTokens: 3000, onProgress: (d, t) => void progress.push([d, t]) });
    expect(r.passed).toBe(true);
    expect(progress.at(-1)).toEqual([3000, 3000]);
    expect(progress.length).toBe(Math.ceil(3000 / 48));
    expect(r.metrics.max_position_id).toBeLessThan(512);
    expect(r.metrics.window_rebuilds).toBeGreaterThan(3);
    // the spiking model with a small context, quickly
    const s = await testPositionIdBoundaries(snn, tok, { totalTokens: 400, maxContextLength: 64, chunk: 16 });
    expect(s.passed).toBe(true);
    expect(s.metrics.max_position_id).toBeLessThan(64);
  });

  it('the sliding window keeps a turn boundary and rebuilds the cache from the kept tokens', async () => {
    const p = new TemporalSpikeProcessor(ann, { maxContextLength: 40, keepFraction: 0.75 });
    const seq = Array.from({ length: 41 }, (_, i) => 300 + (i % 50));
    const out = await p.forward(seq, { turnStarts: [[0, 12, 25, 33]] });
    expect(p.getPositionIds().windowStart).toBe(12); // the oldest turn start leaving ≤ 30 tokens… is 12 (29 left)
    expect(out.positionIds[0]![0]).toBe(0);
    expect(p.getPositionIds().cacheLength).toBe(29);
    const alone = await new TemporalSpikeProcessor(ann).forward(seq.slice(12), { useCache: false });
    expectClose(out.lastLogits[0]!, alone.lastLogits[0]!, { atol: 1e-5, rtol: 1e-5 }, 'windowed = the window alone');
    expect(p.getPositionIds()).toMatchObject({ maxContextLength: 40, maxPositionEmbeddings: 512 });
    expect(new TemporalSpikeProcessor(ann, { maxContextLength: 10_000 }).maxContextLength).toBe(512);
  });

  it('resetCache(id) resets only that conversation', async () => {
    const p = new TemporalSpikeProcessor(snn);
    const a = tok.encode(STORY_TURNS[0]!), b = tok.encode(STORY_TURNS[1]!);
    await p.forward([a, b], { batchIds: ['a', 'b'] }); // rows of different lengths, no padding needed
    expect(p.cachedTokens('a')).toEqual(a);
    p.resetCache('a');
    expect(p.cachedTokens('a')).toEqual([]);
    expect(p.cachedTokens('b')).toEqual(b);
    const again = await p.forward(b, { batchIds: ['b'] });
    expect(again.positionIds[0]).toEqual([b.length - 1]); // still cached: only the last token recomputed
    p.resetCache();
    expect(p.cachedTokens('b')).toEqual([]);
  });

  it.for(BACKEND_NAMES)('%s: a left-padded batch of new conversations runs together on the ANN (one forward, masked) and equals its rows run alone; they continue alone', async (name, ctx) => {
    const rows = STORY_TURNS.slice(0, 3).map((t) => tok.encode(t));
    const w = Math.max(...rows.map((r) => r.length));
    expect(new Set(rows.map((r) => r.length)).size).toBeGreaterThan(1); // real padding
    const padded = rows.map((r) => [...new Array(w - r.length).fill(0), ...r]);
    const mask = rows.map((r) => [...new Array(w - r.length).fill(0), ...new Array(r.length).fill(1)]);
    {
      const backend = await backendFor(name, ctx);
      const model = (await models(backend)).ann;
      const tol = name === 'gpu' ? TOL.gpuKernel : TOL.f32;
      const p = new TemporalSpikeProcessor(model);
      const out = await p.forward(padded, { attentionMask: mask, batchIds: ['x', 'y', 'z'] });
      expect(p.stats.batchedForwards).toBe(1);
      expect(p.stats.tokens).toBe(rows.reduce((a, r) => a + r.length, 0)); // padding is never fed as tokens
      for (let i = 0; i < rows.length; i++) {
        const alone = await new TemporalSpikeProcessor(model).forward(rows[i]!, { useCache: false });
        expectClose(out.lastLogits[i]!, alone.lastLogits[0]!, tol, `${name} row ${i}`);
        // each conversation continues from its own cache, as if it had run alone
        const next = [...rows[i]!, 42];
        const cont = await p.forward(next, { batchIds: [['x', 'y', 'z'][i]!] });
        expect(cont.positionIds[0]).toEqual([rows[i]!.length]);
        expectClose(cont.lastLogits[0]!, (await new TemporalSpikeProcessor(model).forward(next, { useCache: false })).lastLogits[0]!, tol, `${name} row ${i} continued`);
      }
    }
  });

  it('spiking models (and all-position logits) run the rows of a padded batch one at a time, equal to the unpadded runs', async () => {
    for (const m of [ann, snn]) {
      const rows = STORY_TURNS.slice(0, 3).map((t) => tok.encode(t));
      const w = Math.max(...rows.map((r) => r.length));
      const padded = rows.map((r) => [...new Array(w - r.length).fill(0), ...r]);
      const mask = rows.map((r) => [...new Array(w - r.length).fill(0), ...new Array(r.length).fill(1)]);
      const p = new TemporalSpikeProcessor(m);
      const out = await p.forward(padded, { attentionMask: mask, batchIds: ['x', 'y', 'z'], allLogits: true });
      expect(p.stats.batchedForwards).toBe(0);
      for (let i = 0; i < rows.length; i++) {
        expect(out.logits[i]!.data.every(Number.isFinite)).toBe(true);
        const alone = await new TemporalSpikeProcessor(p.lm).forward(rows[i]!, { useCache: false, allLogits: true });
        expect(Array.from(out.logits[i]!.data)).toEqual(Array.from(alone.logits[0]!.data));
      }
    }
  });

  it('the suite\'s attention_mask test runs the ANN\'s padded rows together and passes (and a spiking model\'s one at a time)', async () => {
    const a = await testAttentionMaskContinuity(ann, tok);
    expect(a).toMatchObject({ passed: true, metrics: { rows_run_together: true } });
    expect(a.metrics.max_abs_padded_vs_unpadded).toBeLessThanOrEqual(1e-5);
    const s = await testAttentionMaskContinuity(layerwise, tok);
    expect(s).toMatchObject({ passed: true, metrics: { rows_run_together: false } });
  });

  it('computes and reads back only the last position\'s logits unless all are asked for', async () => {
    for (const m of [ann, snn]) {
      const ids = tok.encode(STORY_TURNS[0]!);
      const V = m.config.vocabSize;
      const last = await new TemporalSpikeProcessor(m).forward(ids, { useCache: false });
      const all = await new TemporalSpikeProcessor(m).forward(ids, { useCache: false, allLogits: true });
      expect(last.logits[0]!.shape).toEqual([1, V]);
      expect(all.logits[0]!.shape).toEqual([ids.length, V]);
      expectClose(last.lastLogits[0]!, all.logits[0]!.data.subarray((ids.length - 1) * V), TOL.f32, 'last row');
    }
  });

  it('bad input is a clear error: empty rows, all-padding rows, holes in the mask, mismatched shapes', async () => {
    const p = new TemporalSpikeProcessor(ann);
    await expect(p.forward([])).rejects.toThrow(/empty input/);
    await expect(p.forward([[1, 2]], { attentionMask: [[0, 0]] })).rejects.toThrow(/no real tokens .*empty input/);
    await expect(p.forward([[1, 2, 3]], { attentionMask: [[1, 0, 1]] })).rejects.toThrow(/hole at 1/);
    await expect(p.forward([[1, 2, 3]], { attentionMask: [[1, 1]] })).rejects.toThrow(/3 tokens but 2 mask values/);
    await expect(p.forward([[1], [2]], { batchIds: ['only-one'] })).rejects.toThrow(/1 batchIds for 2 rows/);
    expect(() => new TemporalSpikeProcessor(ann, { maxContextLength: 1 })).toThrow(/maxContextLength/);
  });

  it('uses the requested T for a spiking model and reports spikes and energy (both schedules)', async () => {
    for (const m of [snn, layerwise]) {
      const p = new TemporalSpikeProcessor(m, { T: 4 });
      expect(p.timesteps).toBe(4);
      await p.forward(tok.encode(STORY_TURNS[0]!));
      expect(p.spikeRate()).toBeGreaterThan(0);
      const e = p.energy()!;
      expect(e).toMatchObject({ timesteps: 4, schedule: m.schedule, coding: m.coding, tokens: tok.encode(STORY_TURNS[0]!).length });
      expect(e.presets.fp32.ratio).toBeCloseTo(e.presets.fp32.snnJoules / e.presets.fp32.annJoules, 12);
    }
    expect(new TemporalSpikeProcessor(ann).energy()).toBeUndefined();
  });
});

describe('chat', () => {
  it('an aborted reply (Ctrl-C) stops there, keeps what was streamed as the reply, and the session goes on', async () => {
    const chat = new ChatSession(new TemporalSpikeProcessor(loadModel(stories)), tok, { maxNewTokens: 40 });
    const ac = new AbortController();
    let streamed = '', deltas = 0;
    const r = await chat.send('Once upon a time there was a cat.', (d) => {
      streamed += d;
      if (++deltas === 3) ac.abort();
    }, { signal: ac.signal });
    expect(r.stoppedBy).toBe('interrupted');
    expect(r.tokens).toBeLessThanOrEqual(4);
    expect(r.reply).toBe(streamed.trim());
    expect(chat.messages.at(-1)).toEqual({ role: 'assistant', content: streamed.trim() });
    const next = await chat.send('What did the cat do?', undefined, { signal: new AbortController().signal });
    expect(next.stoppedBy).not.toBe('interrupted');
    expect(next.tokens).toBeGreaterThan(4);
  });

  it('the REPL: SIGINT during a reply interrupts that reply only; SIGINT at the prompt ends the chat', async () => {
    const { PassThrough } = await import('node:stream');
    const readline = (await import('node:readline')).default;
    const { repl } = await import('../src/cli/chat.js');
    const input = new PassThrough();
    const rl = readline.createInterface({ input, terminal: false });
    const chat = new ChatSession(new TemporalSpikeProcessor(loadModel(stories)), tok, { maxNewTokens: 30 });
    let turn: AbortController | undefined;
    const results: string[] = [];
    let err = '';
    const done = repl(rl, async (line) => {
      turn = new AbortController();
      let n = 0;
      const r = await chat.send(line, () => { if (line.startsWith('first') && ++n === 2) rl.emit('SIGINT'); }, { signal: turn.signal });
      turn = undefined;
      results.push(r.stoppedBy);
      if (results.length === 2) setImmediate(() => rl.emit('SIGINT')); // Ctrl-C at the prompt
      return true;
    }, () => turn, { err: (t) => void (err += t) });
    input.write('first: Once upon a time there was a cat.\nsecond: What did the cat do?\n');
    await done;
    expect(results).toEqual(['interrupted', expect.stringMatching(/^(max_new_tokens|stop_token|stop_string)$/)]);
    expect(err).toBe('\n(reply interrupted)\n');
  });

  it('the plain format for base models: User:/Assistant: turns, replies cut at the next "User:"', async () => {
    const f = chatFormat(tok);
    expect(f.kind).toBe('plain');
    expect(f.render([{ role: 'user', content: 'Hi' }])).toBe('User: Hi\nAssistant:');
    const chat = new ChatSession(new TemporalSpikeProcessor(loadModel(stories)), tok, { maxNewTokens: 12 });
    const r1 = await chat.send('Once upon a time there was a cat.');
    const r2 = await chat.send('What did the cat do?');
    expect(r1.reply.length).toBeGreaterThan(0);
    expect(r2.reply).not.toMatch(/User:/);
    expect(r2.promptTokensFed).toBeLessThan(tok.encode(chat.format.render(chat.messages.slice(0, 3))).length); // the cache was reused
    expect(chat.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
    chat.reset();
    expect(chat.messages).toEqual([]);
    await expect(chat.send('   ')).rejects.toThrow(/empty message/);
  });

  it('a reply that ends at once (its first token is a stop token) is an empty turn, not a crash', async () => {
    const model = loadModel(stories);
    const plain = chatFormat(tok);
    // the token greedy decoding picks first for this prompt, declared a stop token
    const first = argmaxOf((await new TemporalSpikeProcessor(model).forward(tok.encode(plain.render([{ role: 'user', content: 'Hi' }])))).lastLogits[0]!);
    const chat = new ChatSession(new TemporalSpikeProcessor(model), tok, { format: { ...plain, stopTokenIds: [first] }, maxNewTokens: 8 });
    const r = await chat.send('Hi');
    expect(r).toMatchObject({ reply: '', tokens: 1, stoppedBy: 'stop_token' });
    expect((await chat.send('Go on.')).tokens).toBeGreaterThan(0);
    expect(chat.messages.map((m) => m.content)).toEqual(['Hi', '', 'Go on.', expect.any(String)]);
    expect(() => new ChatSession(new TemporalSpikeProcessor(model), tok, { maxNewTokens: -1 })).toThrow(/must be an integer ≥ 0/);
  });

  it('the model\'s own chat template (SmolLM2-Instruct style) through @huggingface/jinja', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-tpl-'));
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) fs.copyFileSync(path.join(stories, f), path.join(dir, f));
    const template = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: template, eos_token: '</s>', bos_token: '<s>' }));
    const t = loadTokenizer(dir, [2]);
    const f = chatFormat(t);
    expect(f.kind).toBe('template');
    expect(f.render([{ role: 'user', content: 'Hello' }])).toBe('<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n');
    expect(f.stopStrings).toContain('<|im_end|>');
    expect(f.stopTokenIds).toContain(2);
    expect(chatFormat(t, { plain: true }).kind).toBe('plain');
  });
});
