/** Resolving --model (a directory or a Hugging Face Hub name) into a loaded model, tokenizer and backend, with clear errors. */
import fs from 'node:fs';
import { ArgumentError, ModelLoadError } from '../errors.js';
import { type HubProgress, hubSettings, parseHubName, resolveHubModel } from '../hub/index.js';
import { type CausalLM, loadModel } from '../nn/model.js';
import { type TextTokenizer, loadTokenizer } from '../nn/tokenizer.js';
import { parseBackendChoice, selectBackend } from '../tensor/select.js';
import type { FlagValues } from './args.js';
import type { CliIO } from './command.js';
import { ProgressBar } from './progress.js';

/** Weights at least this large get a loading bar. */
const LOAD_BAR_MIN_BYTES = 64 * 2 ** 20;

/** Where a model came from: a local directory, or a Hub snapshot in the shared cache. */
export interface ModelSource {
  readonly dir: string;
  readonly hub?: string;
  readonly revision?: string;
  readonly commit?: string;
  /** Served from the cache alone (HF_HUB_OFFLINE, or nothing was missing). */
  readonly offline?: boolean;
  readonly cache?: string;
}

/** An existing local directory, or a clear error (no downloads: for paths that must be local, e.g. --snn). */
export function resolveModelDir(value: unknown, flag = '--model'): string {
  if (typeof value !== 'string' || value === '') throw new ArgumentError(`${flag} is required (a local model directory)`);
  if (!fs.existsSync(value)) throw new ModelLoadError(`${flag} ${value}: no such directory`);
  return value;
}

/**
 * A local directory as given, or a Hub name (`org/name`, `name`, `name@revision`) downloaded into
 * the huggingface_hub cache (progress on stderr) and served from there. A path that exists always
 * wins over a Hub name of the same spelling.
 */
export async function resolveModelSource(value: unknown, io: CliIO, flag = '--model'): Promise<ModelSource> {
  if (typeof value !== 'string' || value === '') throw new ArgumentError(`${flag} is required (a model directory or a Hugging Face Hub name such as HuggingFaceTB/SmolLM2-135M-Instruct)`);
  if (fs.existsSync(value)) return { dir: value };
  const name = parseHubName(value);
  if (!name || value.startsWith('.') || value.includes('\\')) throw new ModelLoadError(`${flag} ${value}: no such directory`);
  const settings = hubSettings();
  let bar: ProgressBar | undefined;
  const progress: HubProgress = {
    file: (f, size, cached) => {
      bar = cached ? undefined : new ProgressBar(io, `downloading ${f} (${(size / 2 ** 20).toFixed(1)} MiB)`);
      if (!cached && size === 0) bar?.update(0, 0);
    },
    bytes: (_f, n, size) => bar?.update(n, size),
  };
  const r = await resolveHubModel(name, { settings, progress });
  io.err(`model: ${name.repo}@${name.revision} (commit ${r.commit.slice(0, 10)}) ${r.fromCache ? 'from the cache' : 'downloaded to'} ${r.dir}\n`);
  return { dir: r.dir, hub: name.repo, revision: name.revision, commit: r.commit, offline: r.fromCache, cache: r.dir };
}

export interface LoadedModel {
  readonly model: CausalLM;
  readonly tokenizer: TextTokenizer;
  readonly dir: string;
  readonly source: ModelSource;
}

/** The model --model names (resolved now, or `resolved` when the caller already did). */
export async function loadModelFromFlags(flags: FlagValues, io: CliIO, resolved?: ModelSource): Promise<LoadedModel> {
  const choice = parseBackendChoice(String(flags.backend ?? 'cpu'));
  const source = resolved ?? await resolveModelSource(flags.model, io);
  const dir = source.dir;
  const { backend, reason } = await selectBackend(choice);
  if (choice === 'auto') io.err(`backend: ${backend.describe()} (${reason})\n`);
  // a bar for weights worth waiting for (GPT-2-small: 2–3 s); small models load silently
  let bar: ProgressBar | undefined;
  const MiB = 2 ** 20;
  const t0 = performance.now();
  const model = loadModel(dir, {
    backend, allowUnused: flags['allow-unused'] === true,
    onProgress: (read, total) => {
      if (total < LOAD_BAR_MIN_BYTES) return;
      bar ??= new ProgressBar(io, `loading ${(total / MiB).toFixed(0)} MiB of weights`);
      bar.update(Math.round(read / MiB), Math.round(total / MiB));
    },
  });
  if (bar) io.err(`loaded ${model.config.modelType} in ${((performance.now() - t0) / 1000).toFixed(1)} s on ${backend.name}\n`);
  const tokenizer = loadTokenizer(dir, model.config.eosTokenIds, model.config.bosTokenId);
  return { model, tokenizer, dir, source };
}
