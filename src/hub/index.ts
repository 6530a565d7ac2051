/**
 * Models by Hugging Face Hub name (`org/name`, `name`, `name@revision`), downloaded with the official
 * client (@huggingface/hub) into the huggingface_hub cache layout that Python's transformers and
 * huggingface_hub share:
 *
 *   $HF_HUB_CACHE (or $HF_HOME/hub, default ~/.cache/huggingface/hub)
 *     models--org--name/
 *       blobs/<etag>                      the files' bytes (a download lands in <etag>.incomplete first)
 *       snapshots/<commit>/<path>         symlinks into blobs/
 *       refs/<revision>                   the commit a branch or tag pointed to when last resolved
 *
 * Only what loading needs is fetched: config.json, the tokenizer files, and model.safetensors or the
 * sharded index with its shards — never *.bin, *.onnx, *.gguf or other formats. A file already in
 * the snapshot is not fetched again; with HF_HUB_OFFLINE=1 (or when the Hub cannot be reached and the
 * cache holds a complete snapshot) the cache alone is used. HF_ENDPOINT points at another Hub (a
 * mirror, or a test server), HF_TOKEN authenticates (gated and private repositories).
 *
 * A partial download never becomes a cache entry: the client streams into `.incomplete` and renames
 * only a complete file; sizes are checked against the Hub's listing after the rename, and a file that
 * does not match is removed (the next run fetches it again).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HubApiError, downloadFileToCacheDir, listFiles, modelInfo } from '@huggingface/hub';
import { SpikelmError } from '../errors.js';
import { atomicWriteFile } from '../io/atomic-write.js';

export class HubError extends SpikelmError {
  override name = 'HubError';
}

export interface HubName {
  /** `org/name` or `name`. */
  readonly repo: string;
  /** Branch, tag or commit (default `main`). */
  readonly revision: string;
}

const NAME = /^(?:[A-Za-z0-9][\w.-]*\/)?[A-Za-z0-9][\w.-]*$/;

/** `org/name`, `name` or either with `@revision`; undefined when the text cannot be a Hub name. */
export function parseHubName(text: string): HubName | undefined {
  const at = text.lastIndexOf('@');
  const repo = at > 0 ? text.slice(0, at) : text;
  const revision = at > 0 ? text.slice(at + 1) : 'main';
  if (!NAME.test(repo) || repo.includes('..') || revision === '' || /[\s\\]/.test(revision) || revision.includes('..')) return undefined;
  return { repo, revision };
}

export interface HubSettings {
  readonly endpoint: string;
  readonly cacheDir: string;
  readonly token?: string;
  readonly offline: boolean;
}

const truthy = (v: string | undefined) => v !== undefined && ['1', 'true', 'yes', 'on'].includes(v.toLowerCase());

/** The settings huggingface_hub reads from the environment (HF_ENDPOINT, HF_HUB_CACHE, HF_HOME, HF_TOKEN, HF_HUB_OFFLINE). */
export function hubSettings(env: NodeJS.ProcessEnv = process.env): HubSettings {
  const home = env.HF_HOME ?? path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'huggingface');
  const token = env.HF_TOKEN ?? env.HUGGING_FACE_HUB_TOKEN;
  return {
    endpoint: (env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, ''),
    cacheDir: env.HF_HUB_CACHE ?? env.HUGGINGFACE_HUB_CACHE ?? path.join(home, 'hub'),
    ...(token ? { token } : {}),
    offline: truthy(env.HF_HUB_OFFLINE) || truthy(env.TRANSFORMERS_OFFLINE),
  };
}

/** The files loading a model needs besides its weights; the first is required. */
const CONFIG_FILES = ['config.json'];
const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json'];
/** A byte-level BPE's slow files: fetched only where the repository has no tokenizer.json (many OPT ones). */
const SLOW_TOKENIZER_FILES = ['vocab.json', 'merges.txt'];

/** The tokenizer files to fetch from what a repository holds; undefined when it has no usable tokenizer. */
function tokenizerFiles(has: (f: string) => boolean): string[] | undefined {
  if (has('tokenizer.json')) return TOKENIZER_FILES.filter(has);
  if (SLOW_TOKENIZER_FILES.every(has)) return [...TOKENIZER_FILES, ...SLOW_TOKENIZER_FILES].filter(has);
  return undefined;
}
const INDEX = 'model.safetensors.index.json';
const SINGLE = 'model.safetensors';

export interface HubProgress {
  /** A file is about to be fetched (size in bytes), or was found in the cache. */
  file(name: string, size: number, cached: boolean): void;
  /** Bytes of the current file received so far. */
  bytes(name: string, received: number, size: number): void;
}

export interface ResolvedHubModel {
  /** The snapshot directory: a model directory every loader reads. */
  readonly dir: string;
  readonly repo: string;
  readonly revision: string;
  readonly commit: string;
  /** True when nothing was fetched (offline, or everything was cached). */
  readonly fromCache: boolean;
  readonly files: readonly string[];
}

const repoFolder = (cacheDir: string, repo: string) => path.join(cacheDir, `models--${repo.split('/').join('--')}`);

/** Quiet the client's per-file `console.debug` line (it would land in our stdout). */
async function quietly<T>(fn: () => Promise<T>): Promise<T> {
  const debug = console.debug;
  console.debug = () => {};
  try {
    return await fn();
  } finally {
    console.debug = debug;
  }
}

/** Why a request failed, in words a user can act on. */
function explain(err: unknown, name: HubName, s: HubSettings): HubError {
  const what = `${name.repo}${name.revision !== 'main' ? `@${name.revision}` : ''}`;
  if (err instanceof HubError) return err;
  if (err instanceof HubApiError) {
    if (err.statusCode === 401 || err.statusCode === 403) {
      return new HubError(`${what}: the Hub refused access (HTTP ${err.statusCode}): the repository is gated or private. Accept its terms at ${s.endpoint}/${name.repo} and set HF_TOKEN to an access token${s.token ? ' (HF_TOKEN is set: check that it has access)' : ''}`);
    }
    if (err.statusCode === 404) {
      return new HubError(`${what}: no such model on ${s.endpoint} (HTTP 404)${name.revision !== 'main' ? ` or no revision "${name.revision}"` : ''}; check the name, or pass a local model directory`);
    }
    return new HubError(`${what}: the Hub answered HTTP ${err.statusCode} (${err.message.split('. URL:')[0]})`);
  }
  const msg = (err as Error)?.message ?? String(err);
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  const code = cause?.code ?? '';
  if (/ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ECONNRESET|ETIMEDOUT|UND_ERR|fetch failed|terminated|network/i.test(`${msg} ${code} ${cause?.message ?? ''}`)) {
    return new HubError(`${what}: cannot reach ${s.endpoint} (${cause?.message ?? msg}); use a local model directory, or set HF_HUB_OFFLINE=1 to use what the cache (${s.cacheDir}) already holds`);
  }
  return new HubError(`${what}: ${msg}`);
}

/** The snapshot the cache holds for a revision (a commit id, or a ref written by an earlier download). */
function cachedCommit(folder: string, revision: string): string | undefined {
  if (/^[0-9a-f]{40}$/.test(revision) && fs.existsSync(path.join(folder, 'snapshots', revision))) return revision;
  const ref = path.join(folder, 'refs', revision);
  if (!fs.existsSync(ref)) return undefined;
  const commit = fs.readFileSync(ref, 'utf8').trim();
  return /^[0-9a-f]{40}$/.test(commit) ? commit : undefined;
}

/** The files of a complete snapshot directory, or why it is not one. */
function completeSnapshot(dir: string): { files: string[] } | { missing: string } {
  const has = (f: string) => {
    try {
      return fs.statSync(path.join(dir, f)).isFile(); // follows the symlink into blobs/
    } catch {
      return false;
    }
  };
  for (const f of CONFIG_FILES) if (!has(f)) return { missing: f };
  const tokenizer = tokenizerFiles(has);
  if (!tokenizer) return { missing: 'tokenizer.json (or vocab.json and merges.txt)' };
  const files = [...CONFIG_FILES, ...tokenizer];
  if (has(INDEX)) {
    const shards = shardsOf(fs.readFileSync(path.join(dir, INDEX), 'utf8'), INDEX);
    for (const s of shards) if (!has(s)) return { missing: s };
    files.push(INDEX, ...shards);
  } else if (has(SINGLE)) {
    files.push(SINGLE);
  } else {
    return { missing: `${SINGLE} (or ${INDEX})` };
  }
  return { files };
}

function shardsOf(json: string, file: string): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (e) {
    throw new HubError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  const map = (parsed as { weight_map?: unknown })?.weight_map;
  if (!map || typeof map !== 'object') throw new HubError(`${file}: no "weight_map" object`);
  const shards = [...new Set(Object.values(map as Record<string, unknown>))];
  for (const s of shards) {
    if (typeof s !== 'string' || !s.endsWith('.safetensors') || s.includes('..') || path.isAbsolute(s)) throw new HubError(`${file}: shard name ${JSON.stringify(s)} is not a relative .safetensors path`);
  }
  return shards as string[];
}

function fromCache(name: HubName, s: HubSettings, reason: string): ResolvedHubModel {
  const folder = repoFolder(s.cacheDir, name.repo);
  const commit = cachedCommit(folder, name.revision);
  if (!commit) throw new HubError(`${name.repo}@${name.revision}: not in the Hugging Face cache (${s.cacheDir}) and ${reason}; download it once with network access, or pass a local model directory`);
  const dir = path.join(folder, 'snapshots', commit);
  const snap = completeSnapshot(dir);
  if ('missing' in snap) throw new HubError(`${name.repo}@${name.revision}: the cached snapshot ${dir} lacks ${snap.missing} and ${reason}`);
  return { dir, repo: name.repo, revision: name.revision, commit, fromCache: true, files: snap.files };
}

/**
 * A model directory for a Hub name: the cached snapshot, downloading what is missing. Throws
 * HubError with what to do (404, gated, no safetensors, no network, incomplete cache).
 */
export async function resolveHubModel(name: HubName, opts: { settings?: HubSettings; progress?: HubProgress; fetch?: typeof fetch } = {}): Promise<ResolvedHubModel> {
  const s = opts.settings ?? hubSettings();
  if (s.offline) return fromCache(name, s, 'HF_HUB_OFFLINE is set');
  const common = { hubUrl: s.endpoint, ...(s.token ? { accessToken: s.token } : {}), ...(opts.fetch ? { fetch: opts.fetch } : {}) };
  let commit: string;
  let listing: Map<string, number>;
  try {
    const info = await modelInfo({ ...common, name: name.repo, revision: name.revision, additionalFields: ['sha'] });
    commit = String((info as { sha?: unknown }).sha ?? '');
    if (!/^[0-9a-f]{40}$/.test(commit)) throw new HubError(`${name.repo}: the Hub gave no commit id for revision "${name.revision}"`);
    listing = new Map();
    for await (const entry of listFiles({ ...common, repo: { type: 'model', name: name.repo }, revision: commit, recursive: true })) {
      if (entry.type === 'file') listing.set(entry.path, entry.size);
    }
  } catch (err) {
    const e = explain(err, name, s);
    // unreachable Hub: a complete cached snapshot still serves (as huggingface_hub does)
    if (/cannot reach/.test(e.message)) {
      try {
        return fromCache(name, s, 'the Hub cannot be reached');
      } catch {
        throw e;
      }
    }
    throw e;
  }
  const folder = repoFolder(s.cacheDir, name.repo);
  const dir = path.join(folder, 'snapshots', commit);
  // what loading needs, from what the repository holds
  const needed: string[] = [];
  for (const f of CONFIG_FILES) {
    if (!listing.has(f)) throw new HubError(`${name.repo}: the repository has no ${f}; it is not a transformers model directory`);
    needed.push(f);
  }
  const tokenizer = tokenizerFiles((f) => listing.has(f));
  if (!tokenizer) throw new HubError(`${name.repo}: the repository has no tokenizer.json, nor vocab.json and merges.txt (spikelm reads tokenizers in those formats)`);
  needed.push(...tokenizer);
  let fetched = false;
  const fetchOne = async (file: string): Promise<void> => {
    const size = listing.get(file);
    if (size === undefined) throw new HubError(`${name.repo}: ${file} is listed by the weight index but not in the repository`);
    const pointer = path.join(dir, file);
    const cached = fs.existsSync(pointer) && fs.statSync(pointer).size === size;
    opts.progress?.file(file, size, cached);
    if (cached) return;
    fetched = true;
    const fetchWithProgress = progressFetch(opts.fetch ?? fetch, (received) => opts.progress?.bytes(file, received, size));
    try {
      await quietly(() => downloadFileToCacheDir({ ...common, fetch: fetchWithProgress, repo: { type: 'model', name: name.repo }, path: file, revision: commit, cacheDir: s.cacheDir }));
    } catch (err) {
      throw explain(err, name, s);
    }
    const got = fs.statSync(pointer).size;
    if (got !== size) {
      // never leave a wrong-sized file where a later run would trust it
      const blob = fs.realpathSync(pointer);
      fs.rmSync(pointer, { force: true });
      fs.rmSync(blob, { force: true });
      throw new HubError(`${name.repo}: ${file} arrived with ${got} bytes, the Hub lists ${size}; removed it (run again to fetch it anew)`);
    }
  };
  try {
    for (const f of needed) await fetchOne(f);
    if (listing.has(INDEX)) {
      await fetchOne(INDEX);
      const shards = shardsOf(fs.readFileSync(path.join(dir, INDEX), 'utf8'), `${name.repo}/${INDEX}`);
      for (const shard of shards) await fetchOne(shard);
      needed.push(INDEX, ...shards);
    } else if (listing.has(SINGLE)) {
      await fetchOne(SINGLE);
      needed.push(SINGLE);
    } else {
      const other = [...listing.keys()].filter((f) => /\.(bin|pt|pth|ckpt|onnx|gguf|h5|msgpack|safetensors)$/.test(f));
      throw new HubError(`${name.repo}: no safetensors weights (${SINGLE} or ${INDEX})${other.length ? `; the repository has ${other.slice(0, 4).join(', ')}${other.length > 4 ? ', …' : ''}` : ''}. spikelm reads safetensors only`);
    }
  } catch (err) {
    throw explain(err, name, s);
  }
  // remember which commit the revision named (huggingface_hub's refs/), for offline use
  if (name.revision !== commit) {
    fs.mkdirSync(path.join(folder, 'refs', path.dirname(name.revision)), { recursive: true });
    atomicWriteFile(path.join(folder, 'refs', name.revision), commit);
  }
  return { dir, repo: name.repo, revision: name.revision, commit, fromCache: !fetched, files: needed };
}

/** A fetch that reports the bytes of each full (non-probe) download as they arrive. */
function progressFetch(base: typeof fetch, onBytes: (received: number) => void): typeof fetch {
  return (async (input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
    const res = await base(input, init);
    const range = new Headers(init?.headers).get('range');
    if (!res.body || !res.ok || (init?.method && init.method !== 'GET') || range === 'bytes=0-0') return res;
    let received = 0;
    const counted = res.body.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctl) {
        received += chunk.byteLength;
        onBytes(received);
        ctl.enqueue(chunk);
      },
    }));
    return new Response(counted, { status: res.status, statusText: res.statusText, headers: res.headers });
  }) as typeof fetch;
}
