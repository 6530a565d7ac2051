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
export const SEARCH_VERSION = 1;

export interface TargetCacheKey {
  readonly weights: string;
  readonly calibrationSha256: string;
  readonly target: { readonly top1: number; readonly kl: number | null };
  readonly coding: CodingName;
  readonly seed: number;
  readonly quantile: number;
  readonly searchVersion: number;
}

export function cacheKey(ann: CausalLM, calibrationText: string, target: FidelityTarget, coding: CodingName, seed: number, quantile: number): TargetCacheKey {
  return {
    weights: weightsFingerprint(ann.weights), calibrationSha256: crypto.createHash('sha256').update(calibrationText).digest('hex'),
    target: { top1: target.top1, kl: Number.isFinite(target.kl) ? target.kl : null }, coding, seed, quantile, searchVersion: SEARCH_VERSION,
  };
}

/** The stored record for this key, or undefined (no file, unreadable, or made for anything else). */
export function readTargetCache(dir: string, key: TargetCacheKey): SearchRecord | undefined {
  try {
    const j = JSON.parse(fs.readFileSync(path.join(dir, TARGET_CACHE_FILE), 'utf8')) as { key: TargetCacheKey; search: SearchRecord };
    return JSON.stringify(j.key) === JSON.stringify(key) ? j.search : undefined;
  } catch {
    return undefined;
  }
}

export function writeTargetCache(dir: string, key: TargetCacheKey, search: SearchRecord): void {
  atomicWriteFile(path.join(dir, TARGET_CACHE_FILE), `${JSON.stringify({ format: 'spikelm-target-cache', key, search }, null, 1)}\n`);
}
