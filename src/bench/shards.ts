/**
 * Sweeps that split, resume and merge. The grid of a `spikelm bench` run is a list of units (one
 * conversion on one backend, measured at every T: sweep.ts). Then:
 *
 *   --shard I/N  runs shard I (1-based) of N: the units are dealt to shards balanced by predicted
 *                cost (longest first, each to the shard with the least so far; ties to the lower
 *                shard), the same on every machine
 *   units/       each finished unit is written atomically to DIR/units/<unit>.json with the grid's
 *                fingerprint: shards may share one --out, and a killed run loses only the unit in
 *                flight
 *   resume       a rerun skips every unit whose file is present with the same fingerprint; a
 *                different model, option, commit or kernel set gives a different fingerprint, and
 *                those units run again rather than mixing stale results in
 *   merge        `spikelm bench merge DIR… --out DIR` reads the units of every DIR, refuses files of
 *                another grid or fingerprint, lists the units still missing, and writes the report
 *
 * The fingerprint hashes the model's files (config, tokenizer, weights; and the --snn directory's),
 * the options that change results (timesteps, codes, schedules, backends, positions, time tokens,
 * quantile, text, target), the commit and the kernel set (the CPU's kernels and the GPU adapter).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ArgumentError } from '../errors.js';
import { atomicWriteFile } from '../io/atomic-write.js';
import { readSnnConfig } from '../convert/snn-io.js';
import { acquireGpu } from '../tensor/gpu/device.js';
import {
  type SweepMetadata, type SweepOptions, type SweepResult, type SweepRow, type SweepUnit, gitCommit, runUnit, sweepInputs, sweepMetadata, sweepUnits,
} from './sweep.js';

export const UNIT_FORMAT = 1;
export const UNITS_DIR = 'units';

/** The CPU kernel set results were measured with (issue 18 adds wasm; recorded so reruns notice). */
export const CPU_KERNELS = 'ts';

export interface ShardSpec {
  /** 1-based. */
  readonly index: number;
  readonly count: number;
}

export function parseShard(s: string): ShardSpec {
  const m = /^(\d+)\/(\d+)$/.exec(s.trim());
  if (!m) throw new ArgumentError(`--shard takes I/N (1-based, e.g. 2/3), got "${s}"`);
  const index = Number(m[1]), count = Number(m[2]);
  if (count < 1 || index < 1 || index > count) throw new ArgumentError(`--shard ${s}: I must be between 1 and N (N ≥ 1)`);
  return { index, count };
}

/** Units dealt to `count` shards by predicted cost (longest first, to the least loaded; ties to the lower shard). */
export function assignShards(units: readonly SweepUnit[], count: number): SweepUnit[][] {
  const shards: SweepUnit[][] = Array.from({ length: count }, () => []);
  const load = new Array<number>(count).fill(0);
  const order = units.map((u, i) => [u, i] as const).sort((a, b) => b[0].cost - a[0].cost || a[1] - b[1]);
  for (const [u] of order) {
    let best = 0;
    for (let s = 1; s < count; s++) if (load[s]! < load[best]!) best = s;
    shards[best]!.push(u);
    load[best]! += u.cost;
  }
  // each shard runs its units in grid order
  const rank = new Map(units.map((u, i) => [u.id, i]));
  for (const s of shards) s.sort((a, b) => rank.get(a.id)! - rank.get(b.id)!);
  return shards;
}

/** One finished unit, as written to DIR/units/<id>.json. */
export interface UnitFile {
  readonly format: number;
  readonly fingerprint: string;
  /** Every unit id of the grid, in order. */
  readonly grid: readonly string[];
  readonly unit: SweepUnit;
  readonly rows: readonly SweepRow[];
  /** The machine and run that measured it. */
  readonly metadata: SweepMetadata;
}

function hashFile(h: crypto.Hash, file: string): void {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
}

/** sha256 over a directory's regular files (name and content), sorted by name; subdirectories skipped. */
function hashDir(h: crypto.Hash, dir: string): void {
  for (const f of fs.readdirSync(dir).sort()) {
    const p = path.join(dir, f);
    if (!fs.statSync(p).isFile()) continue;
    h.update(`${f}\0`);
    hashFile(h, p);
  }
}

/** The grid's fingerprint (module header). */
export async function gridFingerprint(opts: SweepOptions, units: readonly SweepUnit[]): Promise<string> {
  const h = crypto.createHash('sha256');
  hashDir(h, opts.modelDir);
  if (opts.snnDir) hashDir(h, opts.snnDir);
  let gpu = 'none';
  if (opts.backends.includes('gpu')) {
    try {
      gpu = (await acquireGpu()).report.description;
    } catch (err) {
      gpu = `unavailable: ${(err as Error).message}`;
    }
  }
  h.update(JSON.stringify({
    units: units.map((u) => [u.id, u.timesteps]), positions: opts.positions ?? 256, timeTokens: opts.timeTokens ?? 32, quantile: opts.quantile ?? null,
    timeBudgetMs: opts.timeBudgetMs ?? 300, text: opts.text ?? null, target: opts.target ?? null, commit: gitCommit(), kernels: { cpu: CPU_KERNELS, gpu },
  }));
  return h.digest('hex').slice(0, 32);
}

const unitPath = (dir: string, id: string) => path.join(dir, UNITS_DIR, `${id}.json`);

function readUnit(file: string): UnitFile | undefined {
  try {
    const u = JSON.parse(fs.readFileSync(file, 'utf8')) as UnitFile;
    return u.format === UNIT_FORMAT && typeof u.fingerprint === 'string' && Array.isArray(u.rows) ? u : undefined;
  } catch {
    return undefined;
  }
}

export interface BenchEvents {
  /** A unit is about to run: its index among this run's units, how many, the ETA (seconds, NaN at first). */
  readonly onUnitStart?: (unit: SweepUnit, done: number, total: number, etaSeconds: number) => void;
  readonly onUnitDone?: (unit: SweepUnit, seconds: number, done: number, total: number) => void;
  readonly onSkip?: (skipped: readonly SweepUnit[]) => void;
}

export interface BenchRun {
  readonly fingerprint: string;
  readonly units: readonly SweepUnit[];
  /** This run's share. */
  readonly mine: readonly SweepUnit[];
  readonly ran: readonly string[];
  readonly skipped: readonly string[];
  /** Every unit of the grid is in `out` (the report can be written). */
  readonly complete: boolean;
}

/** Run this shard's units into `out`/units, skipping the finished ones (module header). */
export async function runBenchUnits(opts: SweepOptions, out: string, shard: ShardSpec = { index: 1, count: 1 }, events: BenchEvents = {}): Promise<BenchRun> {
  const snnSchedule = opts.snnDir ? readSnnConfig(opts.snnDir).schedule : undefined;
  const units = sweepUnits(opts, snnSchedule);
  const fingerprint = await gridFingerprint(opts, units);
  const mine = assignShards(units, shard.count)[shard.index - 1]!;
  fs.mkdirSync(path.join(out, UNITS_DIR), { recursive: true });
  const finished = (u: SweepUnit) => readUnit(unitPath(out, u.id))?.fingerprint === fingerprint;
  const skipped = mine.filter(finished), pending = mine.filter((u) => !finished(u));
  if (skipped.length) events.onSkip?.(skipped);
  const ran: string[] = [];
  if (pending.length) {
    const inputs = sweepInputs(opts);
    const metadata = await sweepMetadata(opts, inputs);
    const totalCost = pending.reduce((a, u) => a + u.cost, 0);
    let doneCost = 0;
    const t0 = performance.now();
    for (const [i, unit] of pending.entries()) {
      const elapsed = (performance.now() - t0) / 1000;
      events.onUnitStart?.(unit, i, pending.length, doneCost > 0 ? (elapsed / doneCost) * (totalCost - doneCost) : NaN);
      const t = performance.now();
      const rows = await runUnit(opts, unit, inputs);
      const file: UnitFile = { format: UNIT_FORMAT, fingerprint, grid: units.map((u) => u.id), unit, rows, metadata: { ...metadata, date: new Date().toISOString() } };
      atomicWriteFile(unitPath(out, unit.id), `${JSON.stringify(file, null, 2)}\n`);
      doneCost += unit.cost;
      ran.push(unit.id);
      events.onUnitDone?.(unit, (performance.now() - t) / 1000, i + 1, pending.length);
    }
  }
  const complete = units.every(finished);
  return { fingerprint, units, mine, ran, skipped: skipped.map((u) => u.id), complete };
}

/**
 * The sweep result of the units in `dirs` (their units/ folders): one grid, one fingerprint, every
 * unit present; otherwise an error saying which files do not belong or which units are missing.
 * With `fingerprint`, only files of that fingerprint count (a bench run's own directory).
 */
export function mergeUnits(dirs: readonly string[], fingerprint?: string): SweepResult {
  const files: [string, UnitFile][] = [];
  for (const dir of dirs) {
    const folder = path.join(dir, UNITS_DIR);
    if (!fs.existsSync(folder)) throw new ArgumentError(`bench merge: ${dir} has no ${UNITS_DIR}/ folder (not a bench --out directory)`);
    for (const f of fs.readdirSync(folder).filter((n) => n.endsWith('.json')).sort()) {
      const u = readUnit(path.join(folder, f));
      if (!u) throw new ArgumentError(`bench merge: ${path.join(folder, f)} is not a bench unit file (format ${UNIT_FORMAT})`);
      if (fingerprint === undefined || u.fingerprint === fingerprint) files.push([path.join(folder, f), u]);
    }
  }
  if (files.length === 0) throw new ArgumentError(`bench merge: no unit files in ${dirs.join(', ')}`);
  const [firstFile, first] = files[0]!;
  for (const [file, u] of files) {
    if (JSON.stringify(u.grid) !== JSON.stringify(first.grid)) throw new ArgumentError(`bench merge: ${file} belongs to another grid (${u.grid.join(', ')}) than ${firstFile} (${first.grid.join(', ')})`);
    if (u.fingerprint !== first.fingerprint) throw new ArgumentError(`bench merge: ${file} has fingerprint ${u.fingerprint}, ${firstFile} ${first.fingerprint}: a different model, option, commit or kernel set; rerun those units`);
  }
  const byId = new Map<string, UnitFile>();
  for (const [, u] of files) byId.set(u.unit.id, u);
  const missing = first.grid.filter((id) => !byId.has(id));
  if (missing.length) throw new ArgumentError(`bench merge: ${missing.length} of ${first.grid.length} units missing: ${missing.join(', ')}`);
  const ordered = first.grid.map((id) => byId.get(id)!);
  const machines = [...new Set(ordered.map((u) => `${u.metadata.cpu} (${u.metadata.cores} cores), GPU: ${u.metadata.adapter}`))];
  const metadata: SweepMetadata = {
    ...ordered[0]!.metadata, date: ordered.map((u) => u.metadata.date).sort().at(-1)!,
    ...(machines.length > 1 ? { cpu: machines.join('; '), adapter: 'per machine (see cpu)' } : {}),
  };
  return { metadata, rows: ordered.flatMap((u) => u.rows) };
}
