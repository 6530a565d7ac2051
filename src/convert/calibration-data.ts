/**
 * Calibration data: token sequences the observe stage runs the ANN on. Deterministic — the same
 * tokenizer and options give the same samples — and drawn from a bundled text (data/README.md gives
 * its provenance) or from a user's file.
 */
import { fileURLToPath } from 'node:url';
import { ArgumentError } from '../errors.js';
import { readRegularFile } from '../io/files.js';
import type { TextTokenizer } from '../nn/tokenizer.js';

/** Bundled texts live in data/ at the package root (reachable from src/ and dist/ alike). */
export function bundledText(name: 'calibration-stories.txt' | 'eval-stories.txt' | 'calibration-english.txt' | 'eval-english.txt'): { text: string; path: string } {
  const path = fileURLToPath(new URL(`../../data/${name}`, import.meta.url));
  return { text: readRegularFile(path, 'a bundled text', 'utf8'), path };
}

export interface CalibrationData {
  readonly samples: readonly (readonly number[])[];
  /** Where the text came from. */
  readonly source: string;
  readonly tokens: number;
}

export interface CalibrationOptions {
  readonly numSamples?: number;
  readonly maxLength?: number;
  /** A text file to use instead of the bundled calibration text. */
  readonly file?: string;
  /** Or the text itself (with `source` naming where it came from). */
  readonly text?: string;
  readonly source?: string;
}

/**
 * Up to `numSamples` sequences of at most `maxLength` tokens: each paragraph of the text is encoded
 * (with the tokenizer's special tokens, e.g. BOS) and cut into consecutive windows; the first
 * `numSamples` windows in text order are kept.
 */
export function createCalibrationData(tokenizer: TextTokenizer, opts: CalibrationOptions = {}): CalibrationData {
  const numSamples = opts.numSamples ?? 16;
  const maxLength = opts.maxLength ?? 64;
  if (!Number.isInteger(numSamples) || numSamples < 1) throw new ArgumentError(`calibration: numSamples must be a positive integer, got ${numSamples}`);
  if (!Number.isInteger(maxLength) || maxLength < 2) throw new ArgumentError(`calibration: maxLength must be an integer ≥ 2, got ${maxLength}`);
  let text: string, source: string;
  if (opts.text !== undefined) {
    text = opts.text;
    source = opts.source ?? 'the given text';
  } else if (opts.file) {
    try {
      text = readRegularFile(opts.file, 'a calibration text file', 'utf8');
    } catch (err) {
      throw new ArgumentError(`calibration file ${(err as Error).message}`);
    }
    source = opts.file;
  } else {
    ({ text, path: source } = bundledText('calibration-stories.txt'));
  }
  const paragraphs = text.split(/\n\s*\n|\n/).map((p) => p.trim()).filter((p) => p.length > 0);
  const samples: number[][] = [];
  for (const p of paragraphs) {
    const ids = tokenizer.encode(p);
    for (let i = 0; i < ids.length && samples.length < numSamples; i += maxLength) {
      const window = ids.slice(i, i + maxLength);
      if (window.length >= 2) samples.push(window);
    }
    if (samples.length >= numSamples) break;
  }
  if (samples.length === 0) throw new ArgumentError(`calibration text ${source}: no usable text (need at least one paragraph of 2+ tokens)`);
  return { samples, source, tokens: samples.reduce((a, s) => a + s.length, 0) };
}
