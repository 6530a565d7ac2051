/**
 * The target-driven conversion from the command line: `--target`, `--allow-miss`, `--seed`, the
 * bundled texts by name, progress while the search runs, and its summary.
 */
import { ArgumentError } from '../errors.js';
import { bundledText } from '../convert/calibration-data.js';
import { type FidelityTarget, DEFAULT_TARGET, formatTarget, parseTarget } from '../convert/search/target.js';
import { FINETUNE, type SearchPhase, type SearchRecord, type TargetConversion, convertToTarget, networkFromRecord } from '../convert/search/planes.js';
import { cacheKey, readTargetCache } from '../convert/search/cache.js';
import { splitCalibration } from '../convert/search/split.js';
import type { CausalLM } from '../nn/model.js';
import type { TextTokenizer } from '../nn/tokenizer.js';
import type { CodingName } from '../snn/codes.js';
import { readFlagFile } from './args.js';
import type { FlagSpec, FlagValues } from './args.js';
import type { CliIO } from './command.js';
import { ProgressBar } from './progress.js';

export const TARGET_FLAGS = {
  target: { type: 'string', help: `fidelity target the conversion must meet on the calibration text's select part, e.g. top1=0.99,kl=1e-3 (the default; a key left out is no constraint)` },
  'allow-miss': { type: 'boolean', help: 'exit 0 even when no network found meets --target (the best one found is used)' },
  seed: { type: 'int', help: 'seed of the search (the random subsets its margins come from, and the fine-tuning batches)', default: 0 },
  finetune: { type: 'optional-string', help: `the search's fine-tuning stage: --finetune alone runs ${FINETUNE.steps} steps, --finetune N runs N, 0 none; default: on where its predicted cost is at most ${FINETUNE.maxPredictedSeconds} s` },
} as const satisfies Record<string, FlagSpec>;

/** The bundled texts by name: `stories` and `english` (data/), or a file. */
export function readNamedText(arg: string, use: 'calibration' | 'eval', flag: string): { text: string; source: string } {
  const named = { stories: `${use}-stories.txt`, english: `${use}-english.txt` } as const;
  if (arg in named) {
    const b = bundledText(named[arg as keyof typeof named]); // named by its place in the package
    return { text: b.text, source: `data/${named[arg as keyof typeof named]}` };
  }
  return { text: readFlagFile(arg, flag), source: arg };
}

export function targetFromFlags(flags: FlagValues): FidelityTarget {
  return typeof flags.target === 'string' ? parseTarget(flags.target) : DEFAULT_TARGET;
}

export function finetuneFromFlags(flags: FlagValues): number | 'auto' {
  const v = flags.finetune;
  if (v === undefined) return 'auto';
  if (v === true) return FINETUNE.steps;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new ArgumentError(`--finetune takes a number of steps ≥ 0 (or nothing: ${FINETUNE.steps}), got "${String(v)}"`);
  return n;
}

export function seedFromFlags(flags: FlagValues): number {
  const s = flags.seed ?? 0;
  if (typeof s !== 'number' || !Number.isInteger(s) || s < 0) throw new ArgumentError(`--seed must be an integer ≥ 0, got ${String(s)}`);
  return s;
}

const PHASE_LABEL: Record<SearchPhase, string> = {
  fit: 'fitting thresholds', reference: 'ANN on the select part', baseline: 'baseline network', probe: 'probing sites', check: 'checking networks', finetune: 'fine-tuning thresholds', head: 'scoring two-stage heads',
};

export interface TargetRun {
  readonly target: FidelityTarget;
  readonly coding: CodingName;
  readonly seed: number;
  readonly quantile?: number;
  /** --calibration-file's value (a file, or stories / english); default the bundled stories. */
  readonly calibration?: string;
  /** The fine-tuning stage (default 'auto'). */
  readonly finetune?: number | 'auto';
}

/** Run the search with a progress bar per phase, and print one line of what it chose. */
export async function convertForTarget(ann: CausalLM, tokenizer: TextTokenizer, run: TargetRun, io: CliIO): Promise<TargetConversion> {
  const text = run.calibration === undefined ? undefined : readNamedText(run.calibration, 'calibration', '--calibration-file');
  const split = splitCalibration(tokenizer, text ?? {});
  // a search stored beside the model for exactly these inputs (the bundled model ships one)
  const key = cacheKey(ann, text?.text ?? bundledText('calibration-stories.txt').text, run.target, run.coding, run.seed, run.quantile ?? 1, run.finetune ?? 'auto');
  const stored = ann.dir ? readTargetCache(ann.dir, key) : undefined;
  if (stored) {
    const t0 = performance.now();
    const rebuilt = networkFromRecord(ann, split, stored.search, ann.backend, stored.thresholds);
    const total = (performance.now() - t0) / 1000;
    io.err(`${formatSearch(stored.search)} (stored search, ${total.toFixed(1)} s to rebuild)\n`);
    return { ...rebuilt, search: stored.search, seconds: { fit: total, reference: 0, baseline: 0, probe: 0, check: 0, finetune: 0, head: 0, total }, cached: true };
  }
  const bars = new Map<SearchPhase, ProgressBar>();
  const converted = await convertToTarget(ann, split, {
    target: run.target, coding: run.coding, seed: run.seed, ...(run.quantile !== undefined ? { quantile: run.quantile } : {}), finetune: run.finetune ?? 'auto',
    onNote: (m) => io.err(`note: ${m}\n`),
    onProgress: (phase, done, total) => {
      let bar = bars.get(phase);
      if (!bar) bars.set(phase, (bar = new ProgressBar(io, PHASE_LABEL[phase])));
      bar.update(done, total);
    },
  });
  io.err(`${formatSearch(converted.search)} (${converted.seconds.total.toFixed(1)} s)\n`);
  return converted;
}

export function formatSearch(s: SearchRecord): string {
  const c = s.chosen, planes = Object.values(c.planes);
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  const verdict = c.meets ? 'meets' : `MISSES (${[c.miss?.top1 ? `top-1 short by ${pct(c.miss.top1)}` : '', c.miss?.kl ? `KL over by ${c.miss.kl.toExponential(2)}` : ''].filter(Boolean).join(', ')})`;
  return `target ${formatTarget({ top1: s.target.top1, kl: s.target.kl ?? Infinity })}: planes ${Math.min(...planes)}–${Math.max(...planes)} over ${planes.length} sites (T = ${c.T}); ` +
    `on the select part (${s.calibration.select_positions} positions) top-1 ${pct(c.top1)} ± ${pct(c.top1_margin)}, KL ${c.kl.toExponential(2)} ± ${c.kl_margin.toExponential(1)}, ` +
    `E/E_ANN ${c.energy_fp32.toFixed(3)} (FP32, compute only): ${verdict}` +
    (c.head ? `; two-stage head: ${c.head.coarse_planes} of ${c.planes.head_in} planes to every output, the rest to the top ${c.head.top_k}` : '') +
    (s.finetune.check ? `; fine-tuning ${s.finetune.accepted ? 'kept' : 'not kept'} (tuned network: top-1 ${pct(s.finetune.check.top1)}, E/E_ANN ${s.finetune.check.energy_fp32.toFixed(3)}${s.finetune.check.meets ? '' : ', misses'})` : '');
}

/** What a command does when the search missed: exit 1 unless --allow-miss (the message says so). */
export function missExit(s: SearchRecord, flags: FlagValues, io: CliIO): number {
  if (s.chosen.meets) return 0;
  if (flags['allow-miss'] === true) {
    io.err('note: the target was not met; --allow-miss: exiting 0 with the best network found\n');
    return 0;
  }
  io.err('spikelm: the target was not met on the calibration text (the best network found is reported); pass --allow-miss to exit 0, or ask for less\n');
  return 1;
}
