/** Resolving the --model argument into a loaded model, tokenizer and backend, with clear errors. */
import fs from 'node:fs';
import { ArgumentError, ModelLoadError } from '../errors.js';
import { type CausalLM, loadModel } from '../nn/model.js';
import { type TextTokenizer, loadTokenizer } from '../nn/tokenizer.js';
import { parseBackendChoice, selectBackend } from '../tensor/select.js';
import type { FlagValues } from './args.js';
import type { CliIO } from './command.js';

/** A directory path, or a clear error; a hub-style name gets told that downloading is unavailable. */
export function resolveModelDir(value: unknown, flag = '--model'): string {
  if (typeof value !== 'string' || value === '') throw new ArgumentError(`${flag} is required (a local Hugging Face model directory)`);
  if (!fs.existsSync(value)) {
    if (/^[\w.-]+\/[\w.-]+$/.test(value) || /^[A-Za-z0-9][\w.-]*$/.test(value)) {
      throw new ModelLoadError(`${flag} ${value}: no such directory. It looks like a Hugging Face Hub name, but spikelm cannot download models; download it yourself (config.json, model.safetensors, tokenizer.json) and pass the local directory`);
    }
    throw new ModelLoadError(`${flag} ${value}: no such directory`);
  }
  return value;
}

export interface LoadedModel {
  readonly model: CausalLM;
  readonly tokenizer: TextTokenizer;
  readonly dir: string;
}

export async function loadModelFromFlags(flags: FlagValues, io: CliIO): Promise<LoadedModel> {
  const dir = resolveModelDir(flags.model);
  const choice = parseBackendChoice(String(flags.backend ?? 'cpu'));
  const { backend, reason } = await selectBackend(choice);
  if (choice === 'auto') io.err(`backend: ${backend.describe()} (${reason})\n`);
  const model = loadModel(dir, { backend, allowUnused: flags['allow-unused'] === true });
  const tokenizer = loadTokenizer(dir, model.config.eosTokenIds, model.config.bosTokenId);
  return { model, tokenizer, dir };
}
