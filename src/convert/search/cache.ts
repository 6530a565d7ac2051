/**
 * A search chosen ahead of time and stored beside a model (`spikelm-target.json`): the bundled
 * model ships one so that `spikelm demo` stays within seconds. It is used only where everything the
 * search depends on is the same — the weights (their fingerprint), the calibration text (sha256),
 * the target, code, seed and quantile, and the search's version — and it holds the search's own
 * record, made by the same code on calibration text (`npm run target-cache` writes it; a test
 * checks it equals a fresh search).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { atomicWriteFile } from '../../io/atomic-write.js';
import type { CausalLM } from '../../nn/model.js';
import type { CodingName } from '../../snn/codes.js';
import { weightsFingerprint } from '../snn-io.js';
import type { SearchRecord } from './planes.js';
import type { FidelityTarget } from './target.js';

export const TARGET_CACHE_FILE = 'spikelm-target.json';
/** Bumped whenever the search's rules change, so an old record is never taken for a new one. */
export const SEARCH_VERSION = 4;

export interface TargetCacheKey {
  readonly weights: string;
  readonly calibrationSha256: string;
  readonly target: { readonly top1: number; readonly kl: number | null };
  readonly coding: CodingName;
  readonly seed: number;
  readonly quantile: number;
  readonly finetune: number | 'auto';
  readonly searchVersion: number;
}

export function cacheKey(ann: CausalLM, calibrationText: string, target: FidelityTarget, coding: CodingName, seed: number, quantile: number, finetune: number | 'auto'): TargetCacheKey {
  return {
    weights: weightsFingerprint(ann.weights), calibrationSha256: crypto.createHash('sha256').update(calibrationText).digest('hex'),
    target: { top1: target.top1, kl: Number.isFinite(target.kl) ? target.kl : null }, coding, seed, quantile, finetune, searchVersion: SEARCH_VERSION,
  };
}

export interface StoredSearch {
  readonly search: SearchRecord;
  /** The fine-tuned thresholds, when the search kept its fine-tuning stage's network. */
  readonly thresholds?: ReadonlyMap<string, Float32Array>;
}

/** The stored record for this key, or undefined (no file, unreadable, or made for anything else). */
export function readTargetCache(dir: string, key: TargetCacheKey): StoredSearch | undefined {
  try {
    const j = JSON.parse(fs.readFileSync(path.join(dir, TARGET_CACHE_FILE), 'utf8')) as { key: TargetCacheKey; search: SearchRecord; thresholds?: Record<string, number[]> };
    if (JSON.stringify(j.key) !== JSON.stringify(key)) return undefined;
    return { search: j.search, ...(j.thresholds ? { thresholds: new Map(Object.entries(j.thresholds).map(([k, v]) => [k, Float32Array.from(v)])) } : {}) };
  } catch {
    return undefined;
  }
}

export function writeTargetCache(dir: string, key: TargetCacheKey, search: SearchRecord, thresholds?: ReadonlyMap<string, Float32Array>): void {
  const th = search.chosen.tuned && thresholds ? { thresholds: Object.fromEntries([...thresholds].map(([k, v]) => [k, Array.from(v)])) } : {};
  atomicWriteFile(path.join(dir, TARGET_CACHE_FILE), `${JSON.stringify({ format: 'spikelm-target-cache', key, search, ...th }, null, 1)}\n`);
}
