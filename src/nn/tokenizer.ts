/**
 * Tokenizer: tokenizer.json (+ tokenizer_config.json, special_tokens_map.json) through
 * @huggingface/tokenizers. No hand-written BPE here.
 *
 * Repositories that ship only the slow GPT-2-style files (vocab.json + merges.txt: many OPT ones)
 * get the tokenizer.json transformers' converter would write for them: byte-level BPE over those
 * files, the special tokens the configs name as added tokens, and — where tokenizer_config.json
 * says add_bos_token (OPT's does) — the BOS token prepended, as HF's OPT tokenizer prepends `</s>`.
 */
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { ModelLoadError } from '../errors.js';
import { fileKind, readJsonObject, readRegularFile } from '../io/files.js';

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

export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.json', 'merges.txt'] as const;

export function loadTokenizer(dir: string, modelEosIds: readonly number[] = [], modelBosId?: number): TextTokenizer {
  const tokFile = path.join(dir, 'tokenizer.json');
  const cfgFile = path.join(dir, 'tokenizer_config.json');
  const config = present(cfgFile) ? readJson(cfgFile) : {};
  const mapFile = path.join(dir, 'special_tokens_map.json');
  const specialMap = present(mapFile) ? readJson(mapFile) : {};
  const vocabFile = path.join(dir, 'vocab.json'), mergesFile = path.join(dir, 'merges.txt');
  let tokJson: Record<string, unknown>;
  if (present(tokFile)) tokJson = readJson(tokFile);
  else if (present(vocabFile) && present(mergesFile)) tokJson = byteLevelBpeJson(readJson(vocabFile), readMerges(mergesFile), config, specialMap, vocabFile);
  else {
    const have = [vocabFile, mergesFile].filter(present).map((f) => path.basename(f));
    throw new ModelLoadError(`${tokFile}: not found (spikelm needs a tokenizer.json, or vocab.json and merges.txt for a byte-level BPE tokenizer${have.length ? `; this directory has only ${have.join(', ')}` : ''}; SentencePiece .model files alone are not supported)`);
  }
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

function readMerges(file: string): string[] {
  let text: string;
  try {
    text = readRegularFile(file).toString('utf8');
  } catch (err) {
    throw new ModelLoadError((err as Error).message);
  }
  const merges: string[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    // the first line of a GPT-2 merges file is a version comment
    if (line === '' || (i === 0 && line.startsWith('#version'))) return;
    if (line.split(' ').length !== 2) throw new ModelLoadError(`${file}: line ${i + 1}: a merge is two tokens separated by one space, got ${JSON.stringify(line)}`);
    merges.push(line);
  });
  return merges;
}

/**
 * The tokenizer.json of a byte-level BPE (GPT-2, OPT) from its slow files, as transformers'
 * GPT2 converter writes it: ByteLevel pre-tokenizer (add_prefix_space from tokenizer_config.json,
 * default false) and decoder, the special tokens named by the configs as added tokens, and a
 * template that prepends the BOS token when tokenizer_config.json says add_bos_token.
 */
export function byteLevelBpeJson(vocab: Record<string, unknown>, merges: readonly string[], config: Record<string, unknown>, specialMap: Record<string, unknown>, vocabFile = 'vocab.json'): Record<string, unknown> {
  for (const [tok, id] of Object.entries(vocab)) {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) throw new ModelLoadError(`${vocabFile}: token ${JSON.stringify(tok)} maps to ${JSON.stringify(id)}, expected a token id`);
  }
  const ids = vocab as Record<string, number>;
  const addPrefixSpace = config.add_prefix_space === true;
  const specials = new Map<string, number>();
  const named = (key: string) => tokenContent(config[key]) ?? tokenContent(specialMap[key]);
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token']) {
    const content = named(key);
    if (content !== undefined && Object.hasOwn(ids, content)) specials.set(content, ids[content]!);
  }
  const additional = config.additional_special_tokens ?? specialMap.additional_special_tokens;
  if (Array.isArray(additional)) for (const t of additional) {
    const content = tokenContent(t);
    if (content !== undefined && Object.hasOwn(ids, content)) specials.set(content, ids[content]!);
  }
  const bos = named('bos_token');
  const prependBos = config.add_bos_token === true && bos !== undefined && Object.hasOwn(ids, bos);
  const byteLevel = { add_prefix_space: addPrefixSpace, trim_offsets: true, use_regex: true };
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [...specials].sort((a, b) => a[1] - b[1]).map(([content, id]) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', ...byteLevel },
    post_processor: prependBos
      ? {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
        special_tokens: { [bos]: { id: bos, ids: [ids[bos]!], tokens: [bos] } },
      }
      : { type: 'ByteLevel', ...byteLevel, trim_offsets: false },
    decoder: { type: 'ByteLevel', ...byteLevel },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false,
      vocab: ids, merges,
    },
  };
}
