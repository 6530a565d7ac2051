/**
 * Tokenizer: tokenizer.json (+ tokenizer_config.json, special_tokens_map.json) through
 * @huggingface/tokenizers. No hand-written BPE here.
 */
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { ModelLoadError } from '../errors.js';
import { fileKind, readJsonObject } from '../io/files.js';

export interface TextTokenizer {
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: readonly number[], opts?: { skipSpecialTokens?: boolean }): string;
  tokenToId(token: string): number | undefined;
  readonly vocabSize: number;
  readonly bosTokenId: number | undefined;
  readonly eosTokenIds: readonly number[];
  /** tokenizer_config.json as read ({} when absent): chat_template, special tokens, … */
  readonly config: Readonly<Record<string, unknown>>;
  /** Files to copy when the model is saved elsewhere. */
  readonly files: readonly string[];
}

function readJson(file: string): Record<string, unknown> {
  try {
    return readJsonObject(file);
  } catch (err) {
    throw new ModelLoadError((err as Error).message);
  }
}

/** A tokenizer file that may be absent; present means a regular file (a directory or FIFO is an error). */
const present = (file: string): boolean => fileKind(file) !== 'missing';

/** The token string of a special-token entry, which may be a string or an AddedToken object. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'] as const;

export function loadTokenizer(dir: string, modelEosIds: readonly number[] = [], modelBosId?: number): TextTokenizer {
  const tokFile = path.join(dir, 'tokenizer.json');
  if (!present(tokFile)) throw new ModelLoadError(`${tokFile}: not found (spikelm needs a tokenizer.json; slow-tokenizer files alone are not supported)`);
  const tokJson = readJson(tokFile);
  const cfgFile = path.join(dir, 'tokenizer_config.json');
  const config = present(cfgFile) ? readJson(cfgFile) : {};
  const mapFile = path.join(dir, 'special_tokens_map.json');
  const specialMap = present(mapFile) ? readJson(mapFile) : {};
  let tok: Tokenizer;
  try {
    tok = new Tokenizer(tokJson, config);
  } catch (err) {
    throw new ModelLoadError(`${tokFile}: cannot build the tokenizer (${(err as Error).message})`);
  }
  const idOf = (key: string): number | undefined => {
    const content = tokenContent(config[key]) ?? tokenContent(specialMap[key]);
    return content === undefined ? undefined : tok.token_to_id(content);
  };
  const eos = new Set<number>(modelEosIds);
  const eosFromTokenizer = idOf('eos_token');
  if (eosFromTokenizer !== undefined) eos.add(eosFromTokenizer);
  const model = tokJson.model as { vocab?: unknown } | undefined;
  const vocab = model?.vocab;
  const baseSize = Array.isArray(vocab) ? vocab.length : vocab && typeof vocab === 'object' ? Object.keys(vocab).length : 0;
  const added = Array.isArray(tokJson.added_tokens) ? (tokJson.added_tokens as { id: number }[]) : [];
  const vocabSize = Math.max(baseSize, ...added.map((t) => t.id + 1));
  return {
    encode: (text, opts = {}) => tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids,
    // An empty reply is a valid reply: the library refuses an empty list, so answer '' ourselves.
    decode: (ids, opts = {}) => (ids.length === 0 ? '' : tok.decode([...ids], { skip_special_tokens: opts.skipSpecialTokens ?? false })),
    tokenToId: (t) => tok.token_to_id(t),
    vocabSize,
    bosTokenId: idOf('bos_token') ?? modelBosId,
    eosTokenIds: [...eos],
    config,
    files: TOKENIZER_FILES.map((f) => path.join(dir, f)).filter(present),
  };
}
