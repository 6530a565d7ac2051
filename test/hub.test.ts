/**
 * Models by Hub name against a real HTTP server on 127.0.0.1 speaking the Hub's URL scheme (the
 * official client does the requests): first download into the huggingface_hub cache layout, reuse
 * from the cache with the server gone, HF_HUB_OFFLINE, 404, 401 (gated), a connection dropped
 * mid-file (no corrupt cache entry; the next run succeeds), a shard missing, no safetensors, and
 * only the files loading needs.
 */
import { runCli } from './helpers/cli-run.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HubError, type HubSettings, hubSettings, parseHubName, resolveHubModel } from '../src/hub/index.js';
import { loadGenerationDefaults } from '../src/nn/generation-config.js';
import { loadModel } from '../src/nn/model.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { fixtureDir } from './helpers/fixtures.js';
import { COMMIT, type HubServer, repoFromDir, startHubServer } from './helpers/hub-server.js';
import { rewriteModelDir } from './helpers/model-dirs.js';

const cpu = new CpuBackend();
let server: HubServer;
const stories = fixtureDir('stories260k');
const sharded = rewriteModelDir(fixtureDir('tiny-gpt2-random'), { shards: 2 });

beforeAll(async () => {
  const missingShard = repoFromDir(sharded);
  missingShard.files.delete([...missingShard.files.keys()].find((f) => f.startsWith('model-00002'))!);
  server = await startHubServer({
    'org/stories': repoFromDir(stories, { 'pytorch_model.bin': Buffer.alloc(1000, 1), 'onnx/model.onnx': Buffer.alloc(500, 2), 'README.md': Buffer.from('# stories') }),
    'org/sharded': repoFromDir(sharded),
    'org/missing-shard': missingShard,
    'org/gated': repoFromDir(stories, {}, 'hf_secret'),
    'org/bin-only': { files: new Map([['config.json', fs.readFileSync(path.join(stories, 'config.json'))], ['tokenizer.json', fs.readFileSync(path.join(stories, 'tokenizer.json'))], ['pytorch_model.bin', Buffer.alloc(100)]]) },
    distilstories: repoFromDir(stories),
    'Qwen/tiny-qwen2': repoFromDir(fixtureDir('qwen2-random')),
    'facebook/tiny-opt': optSlowTokenizerRepo(),
  });
});
afterAll(async () => server?.close());

/** opt-random as many OPT repositories ship: vocab.json + merges.txt instead of tokenizer.json, add_bos_token, a generation_config.json. */
function optSlowTokenizerRepo() {
  const dir = fixtureDir('opt-random');
  const tok = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
  const repo = repoFromDir(dir, {
    'vocab.json': Buffer.from(JSON.stringify(tok.model.vocab)),
    'merges.txt': Buffer.from(`#version: 0.2\n${(tok.model.merges as string[]).join('\n')}\n`),
    'tokenizer_config.json': Buffer.from(JSON.stringify({ bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', add_bos_token: true })),
    'generation_config.json': Buffer.from(JSON.stringify({ do_sample: true, temperature: 0.7, top_k: 20 })),
  });
  repo.files.delete('tokenizer.json');
  return repo;
}

const settings = (extra: Partial<HubSettings> = {}): HubSettings => ({ endpoint: server.url, cacheDir: fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-hf-')), offline: false, ...extra });
const logits = (dir: string) => Array.from(cpu.readSync(loadModel(dir).forward([1, 2, 3])).data);
const expectHubError = async (p: Promise<unknown>, pattern: RegExp) => {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(HubError);
  expect((err as Error).message).toMatch(pattern);
};

describe('Hub names', () => {
  it('parses org/name, name and @revision; refuses paths', () => {
    expect(parseHubName('HuggingFaceTB/SmolLM2-135M-Instruct')).toEqual({ repo: 'HuggingFaceTB/SmolLM2-135M-Instruct', revision: 'main' });
    expect(parseHubName('distilgpt2')).toEqual({ repo: 'distilgpt2', revision: 'main' });
    expect(parseHubName('org/name@v1.0')).toEqual({ repo: 'org/name', revision: 'v1.0' });
    for (const bad of ['./model', '/abs/dir', 'a/b/c', '../x', 'org/..', 'org/name@', '']) expect(parseHubName(bad), bad).toBeUndefined();
  });

  it('reads the huggingface_hub environment', () => {
    expect(hubSettings({ HF_HOME: '/h', HF_ENDPOINT: 'http://m/', HF_TOKEN: 't', HF_HUB_OFFLINE: '1' })).toEqual({ endpoint: 'http://m', cacheDir: '/h/hub', token: 't', offline: true });
    expect(hubSettings({ HF_HUB_CACHE: '/c', HOME: '/x' }).cacheDir).toBe('/c');
    expect(hubSettings({}).offline).toBe(false);
  });
});

describe('download into the shared cache', () => {
  it('first run downloads only what loading needs, in the huggingface_hub layout; the model equals the local one', async () => {
    const s = settings();
    const seen: string[] = [];
    let bytes = 0;
    const r = await resolveHubModel({ repo: 'org/stories', revision: 'main' }, { settings: s, progress: { file: (f, _size, cached) => seen.push(`${f}${cached ? ' (cached)' : ''}`), bytes: (_f, n) => (bytes = Math.max(bytes, n)) } });
    expect(r).toMatchObject({ repo: 'org/stories', revision: 'main', commit: COMMIT, fromCache: false });
    expect([...r.files].sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'].filter((f) => fs.existsSync(path.join(stories, f))).sort());
    expect(seen.every((f) => !f.includes('cached'))).toBe(true);
    expect(bytes).toBeGreaterThan(0);
    // never the other formats
    expect(server.requests.some((q) => /pytorch_model\.bin|\.onnx|README/.test(q))).toBe(false);
    const folder = path.join(s.cacheDir, 'models--org--stories');
    expect(fs.readFileSync(path.join(folder, 'refs', 'main'), 'utf8')).toBe(COMMIT);
    expect(r.dir).toBe(path.join(folder, 'snapshots', COMMIT));
    expect(fs.lstatSync(path.join(r.dir, 'model.safetensors')).isSymbolicLink()).toBe(true);
    expect(fs.realpathSync(path.join(r.dir, 'model.safetensors')).startsWith(fs.realpathSync(path.join(folder, 'blobs')))).toBe(true);
    expect(fs.readdirSync(path.join(folder, 'blobs')).some((f) => f.endsWith('.incomplete'))).toBe(false);
    expect(logits(r.dir)).toEqual(logits(stories));

    // second run: everything cached, nothing fetched (only the revision and listing are asked)
    const before = server.requests.length;
    const again = await resolveHubModel({ repo: 'org/stories', revision: 'main' }, { settings: s });
    expect(again.fromCache).toBe(true);
    expect(server.requests.slice(before).some((q) => q.includes('/resolve/'))).toBe(false);

    // offline: no request at all
    const n = server.requests.length;
    const off = await resolveHubModel({ repo: 'org/stories', revision: 'main' }, { settings: { ...s, offline: true } });
    expect(off).toMatchObject({ dir: r.dir, fromCache: true, commit: COMMIT });
    expect(server.requests.length).toBe(n);
    // and a cache that does not hold the model says so
    await expectHubError(resolveHubModel({ repo: 'org/other', revision: 'main' }, { settings: { ...s, offline: true } }), /not in the Hugging Face cache .* HF_HUB_OFFLINE is set/);
  });

  it('the new families by name: a Qwen2 loads as the local one; an OPT with only vocab.json + merges.txt gets them (and generation_config.json) and its tokenizer prepends BOS', async () => {
    const q = await resolveHubModel({ repo: 'Qwen/tiny-qwen2', revision: 'main' }, { settings: settings() });
    expect(logits(q.dir)).toEqual(logits(fixtureDir('qwen2-random')));
    const o = await resolveHubModel({ repo: 'facebook/tiny-opt', revision: 'main' }, { settings: settings() });
    expect([...o.files].sort()).toEqual(['config.json', 'generation_config.json', 'merges.txt', 'model.safetensors', 'special_tokens_map.json', 'tokenizer_config.json', 'vocab.json']);
    expect(logits(o.dir)).toEqual(logits(fixtureDir('opt-random')));
    const local = loadTokenizer(fixtureDir('opt-random'));
    expect(loadTokenizer(o.dir).encode('Hello, world')).toEqual([50256, ...local.encode('Hello, world')]);
    expect(loadGenerationDefaults(o.dir)).toEqual({ temperature: 0.7, topK: 20, topP: 1 });
  });

  it('sharded weights: the index and every shard; a shard listed but missing is a clear error', async () => {
    const s = settings();
    const r = await resolveHubModel({ repo: 'org/sharded', revision: 'main' }, { settings: s });
    expect(r.files.filter((f) => f.startsWith('model-0'))).toHaveLength(2);
    expect(logits(r.dir)).toEqual(logits(sharded));
    await expectHubError(resolveHubModel({ repo: 'org/missing-shard', revision: 'main' }, { settings: s }), /model-00002-of-00002\.safetensors is listed by the weight index but not in the repository/);
  });

  it('404, gated (401, then with HF_TOKEN), no safetensors, unreachable Hub', async () => {
    const s = settings();
    await expectHubError(resolveHubModel({ repo: 'org/nope', revision: 'main' }, { settings: s }), /org\/nope: no such model on http:\/\/127\.0\.0\.1:\d+ \(HTTP 404\)/);
    await expectHubError(resolveHubModel({ repo: 'org/stories', revision: 'v9' }, { settings: s }), /HTTP 404\) or no revision "v9"/);
    await expectHubError(resolveHubModel({ repo: 'org/gated', revision: 'main' }, { settings: s }), /refused access \(HTTP 401\).*gated or private.*set HF_TOKEN/);
    expect((await resolveHubModel({ repo: 'org/gated', revision: 'main' }, { settings: { ...s, token: 'hf_secret' } })).files).toContain('model.safetensors');
    await expectHubError(resolveHubModel({ repo: 'org/bin-only', revision: 'main' }, { settings: s }), /no safetensors weights .*the repository has pytorch_model\.bin\. spikelm reads safetensors only/);
    await expectHubError(resolveHubModel({ repo: 'org/stories', revision: 'main' }, { settings: { ...s, endpoint: 'http://127.0.0.1:9' } }), /cannot reach http:\/\/127\.0\.0\.1:9 .*HF_HUB_OFFLINE=1/);
  });

  it('a connection dropped mid-file leaves no cache entry for it; the next run fetches it and loads', async () => {
    const s = settings();
    server.cutOnce('org/stories/model.safetensors');
    await expectHubError(resolveHubModel({ repo: 'org/stories', revision: 'main' }, { settings: s }), /org\/stories/);
    const snap = path.join(s.cacheDir, 'models--org--stories', 'snapshots', COMMIT);
    expect(fs.existsSync(path.join(snap, 'model.safetensors'))).toBe(false);
    // with the Hub unreachable the incomplete snapshot is not served either
    await expectHubError(resolveHubModel({ repo: 'org/stories', revision: 'main' }, { settings: { ...s, offline: true } }), /not in the Hugging Face cache|lacks model\.safetensors/);
    const r = await resolveHubModel({ repo: 'org/stories', revision: 'main' }, { settings: s });
    expect(logits(r.dir)).toEqual(logits(stories));
  });

  it('a download that ends cleanly but short (no Content-Length) is removed, named with both sizes; the next run loads', async () => {
    const s = settings();
    const size = fs.statSync(path.join(stories, 'model.safetensors')).size;
    server.shortOnce('org/stories/model.safetensors');
    await expectHubError(resolveHubModel({ repo: 'org/stories', revision: 'main' }, { settings: s }), new RegExp(`org/stories: model\\.safetensors arrived with ${size >> 1} bytes, the Hub lists ${size}; removed it`));
    const folder = path.join(s.cacheDir, 'models--org--stories');
    expect(fs.existsSync(path.join(folder, 'snapshots', COMMIT, 'model.safetensors'))).toBe(false);
    const blobs = fs.readdirSync(path.join(folder, 'blobs')).map((b) => fs.statSync(path.join(folder, 'blobs', b)).size);
    expect(blobs).not.toContain(size >> 1);
    const r = await resolveHubModel({ repo: 'org/stories', revision: 'main' }, { settings: s });
    expect(logits(r.dir)).toEqual(logits(stories));
  });

  it('the Hub gone: a complete cached snapshot still serves', async () => {
    const s = settings();
    const other = await startHubServer({ 'org/stories': repoFromDir(stories) });
    await resolveHubModel({ repo: 'org/stories', revision: 'main' }, { settings: { ...s, endpoint: other.url } });
    await other.close();
    const r = await resolveHubModel({ repo: 'org/stories', revision: 'main' }, { settings: { ...s, endpoint: other.url } });
    expect(r.fromCache).toBe(true);
    expect(logits(r.dir)).toEqual(logits(stories));
  });
});

describe('the CLI takes Hub names', () => {
  const run = runCli;

  it('generate --model name downloads (progress on stderr, stdout clean); info with HF_HUB_OFFLINE=1 uses the cache and says where', async () => {
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-hf-cli-'));
    const env = { HF_ENDPOINT: server.url, HF_HUB_CACHE: cache, HF_HUB_OFFLINE: '' };
    const g = await run(['generate', '--model_name', 'distilstories', '--prompt', 'Once upon a time', '--max-new-tokens', '4', '--json'], env);
    expect(g.code, g.err).toBe(0);
    expect(JSON.parse(g.out).output_ids).toHaveLength(4);
    expect(g.err).toMatch(/model\.safetensors/);
    const i = await run(['info', '--model', 'distilstories', '--json'], { ...env, HF_HUB_OFFLINE: '1', HF_ENDPOINT: 'http://127.0.0.1:9' });
    expect(i.code, i.err).toBe(0);
    const info = JSON.parse(i.out);
    expect(info.model.source).toMatchObject({ hub: 'distilstories', revision: 'main', commit: COMMIT, offline: true, cache: path.join(cache, 'models--distilstories', 'snapshots', COMMIT) });
    const missing = await run(['info', '--model', 'org/elsewhere'], { ...env, HF_HUB_OFFLINE: '1' });
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/org\/elsewhere@main: not in the Hugging Face cache/);
  });
});
