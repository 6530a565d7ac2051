/**
 * The calibration text, split in two: one part fits thresholds (the observe and calibrate stages),
 * the other selects planes (the search checks networks on it). Neither is the evaluation text.
 *
 * Every paragraph is encoded (with the tokenizer's special tokens) and cut into windows of at most
 * `maxLength` tokens; windows alternate between the parts in text order (even: fit, odd: select),
 * so both parts sample the whole text. Deterministic: the same tokenizer and text give the same split.
 */
import { ArgumentError } from '../../errors.js';
import type { TextTokenizer } from '../../nn/tokenizer.js';
import { type CalibrationData, bundledText } from '../calibration-data.js';

export interface CalibrationSplit {
  /** Fits thresholds. */
  readonly fit: CalibrationData;
  /** Selects planes. */
  readonly select: CalibrationData;
  /** The text's source (a bundled file's path or the user's). */
  readonly source: string;
}

export interface SplitOptions {
  readonly text?: string;
  readonly source?: string;
  /** Tokens per window (default 64). */
  readonly maxLength?: number;
}

export function splitCalibration(tokenizer: TextTokenizer, opts: SplitOptions = {}): CalibrationSplit {
  const maxLength = opts.maxLength ?? 64;
  if (!Number.isInteger(maxLength) || maxLength < 2) throw new ArgumentError(`calibration: maxLength must be an integer ≥ 2, got ${maxLength}`);
  const { text, source } = opts.text !== undefined ? { text: opts.text, source: opts.source ?? 'the given text' } : (() => {
    const b = bundledText('calibration-stories.txt'); // named by its place in the package, not this machine's path
    return { text: b.text, source: 'data/calibration-stories.txt' };
  })();
  const windows: number[][] = [];
  for (const p of text.split(/\n\s*\n|\n/).map((x) => x.trim()).filter((x) => x.length > 0)) {
    const ids = tokenizer.encode(p);
    for (let i = 0; i < ids.length; i += maxLength) {
      const w = ids.slice(i, i + maxLength);
      if (w.length >= 2) windows.push(w);
    }
  }
  if (windows.length < 2) throw new ArgumentError(`calibration text ${source}: ${windows.length} window(s) of 2+ tokens; the search needs at least 2 (one to fit thresholds, one to select planes)`);
  const part = (parity: number, name: string): CalibrationData => {
    const samples = windows.filter((_, i) => i % 2 === parity);
    return { samples, source: `${source} (${name} part: windows ${parity === 0 ? 'even' : 'odd'})`, tokens: samples.reduce((a, s) => a + s.length, 0) };
  };
  return { fit: part(0, 'fit'), select: part(1, 'select'), source };
}

/** The first windows of a part, up to `maxTokens` tokens (at least one window). */
export function takeTokens(data: CalibrationData, maxTokens: number): CalibrationData {
  const samples: (readonly number[])[] = [];
  let tokens = 0;
  for (const s of data.samples) {
    if (samples.length > 0 && tokens + s.length > maxTokens) break;
    samples.push(s);
    tokens += s.length;
  }
  return { samples, source: samples.length < data.samples.length ? `${data.source}, first ${samples.length} of ${data.samples.length}` : data.source, tokens };
}
