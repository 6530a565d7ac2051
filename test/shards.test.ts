/**
 * Sweeps that split, resume and merge (src/bench/shards.ts): shards dealt by predicted cost, three
 * shards merged equal to one run, a run killed with SIGKILL resumes with only the missing units,
 * merges that do not belong together are refused, and the README's GNU parallel recipe runs as written.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { assignShards, parseShard } from '../src/bench/shards.js';
import { predictedCost } from '../src/bench/sweep.js';
import type { SweepUnit } from '../src/bench/sweep.js';
import { main } from '../src/cli/main.js';
import { UnitProgress } from '../src/cli/progress.js';
import { fixtureDir } from './helpers/fixtures.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin', 'spikelm.js');
const stories = fixtureDir('stories260k');
/** A small grid: four units (layerwise phase-ternary and rate, stepwise rate, layerwise phase) of the bundled model. */
const GRID = ['--coding', 'phase-ternary,rate,phase', '--schedule', 'layerwise,stepwise', '--timesteps', '2,5', '--positions', '48', '--time-tokens', '4', '--time-budget', '10'];
const UNITS = ['cpu.layerwise.phase-ternary', 'cpu.layerwise.rate', 'cpu.layerwise.phase', 'cpu.stepwise.rate'];
const tmp = (label: string) => fs.mkdtempSync(path.join(os.tmpdir(), `spikelm-${label}-`));

async function bench(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const code = await main(['bench', '--model', stories, ...GRID, ...args], { out: (t) => void (out += t), err: (t) => void (err += t) });
  return { code, out, err };
}

/** results.json with the timing fields (and the run's date) left out: what must agree across runs. */
function results(dir: string) {
  const r = JSON.parse(fs.readFileSync(path.join(dir, 'results.json'), 'utf8'));
  const timing = /^(ms_per_token|cost)/;
  return {
    metadata: Object.fromEntries(Object.entries(r.metadata).filter(([k]) => k !== 'date')),
    rows: r.rows.map((row: Record<string, unknown>) => Object.fromEntries(Object.entries(row).filter(([k]) => !timing.test(k)))),
  };
}

describe('dealing units to shards', () => {
  it('every unit to exactly one shard, the same way every time, balanced by predicted cost (LPT: no shard more than one unit over the lightest)', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: 500 }), { minLength: 1, maxLength: 30 }), fc.integer({ min: 1, max: 8 }), (costs, n) => {
      const units = costs.map((cost, i) => ({ id: `u${i}`, backend: 'cpu', timesteps: [1], cost }) as SweepUnit);
      const shards = assignShards(units, n);
      expect(shards).toHaveLength(n);
      expect(shards.flat().map((u) => u.id).sort()).toEqual(units.map((u) => u.id).sort());
      expect(assignShards(units, n)).toEqual(shards);
      const loads = shards.map((s) => s.reduce((a, u) => a + u.cost, 0));
      expect(Math.max(...loads) - Math.min(...loads)).toBeLessThanOrEqual(Math.max(...costs));
    }), { numRuns: 200, seed: 21 });
  });

  it('the cost model: stepwise at T = 128 far above layerwise at T = 4; the GPU unit twice the CPU one', () => {
    expect(predictedCost('stepwise', [128], 'cpu')).toBeGreaterThan(100 * predictedCost('layerwise', [4], 'cpu'));
    expect(predictedCost('layerwise', [4, 8], 'gpu')).toBe(2 * predictedCost('layerwise', [4, 8], 'cpu'));
  });

  it('--shard takes I/N, 1-based', () => {
    expect(parseShard('2/3')).toEqual({ index: 2, count: 3 });
    for (const bad of ['0/3', '4/3', '3', 'a/b', '1/0']) expect(() => parseShard(bad), bad).toThrow(/--shard/);
  });
});

describe('sharded, resumed and merged sweeps equal one run', () => {
  let whole: string;
  beforeAll(async () => {
    whole = tmp('bench-whole');
    const r = await bench(['--out', whole]);
    expect(r.code, r.err).toBe(0);
  }, 600_000);

  it('progress: one plain line per unit (no redrawn bar off a terminal) with what is done, what remains and an ETA; redrawn in place on a terminal', async () => {
    const lines: string[] = [];
    const events = new UnitProgress({ out: () => {}, err: (t) => void lines.push(t) }, 'bench', false).events();
    const u = (id: string, cost: number) => ({ id, backend: 'cpu', timesteps: [2, 5], cost }) as SweepUnit;
    events.onUnitStart!(u('a', 3), 0, 3, NaN);
    events.onUnitDone!(u('a', 3), 1.5, 1, 3);
    events.onUnitStart!(u('b', 3), 1, 3, 3.2);
    expect(lines).toEqual([
      'bench: unit 1/3 a (T 2,5): 0 done, 3 remaining\n',
      'bench: unit 1/3 a done in 1.5 s; 2 remaining\n',
      'bench: unit 2/3 b (T 2,5): 1 done, 2 remaining, ETA 3.2 s\n',
    ]);
    const tty: string[] = [];
    const t = new UnitProgress({ out: () => {}, err: (x) => void tty.push(x) }, 'bench', true).events();
    t.onUnitStart!(u('a', 3), 0, 1, NaN);
    t.onUnitDone!(u('a', 3), 1, 1, 1);
    expect(tty[0]).toMatch(/^\rbench: unit 1\/1 a .*\x1b\[K$/);
    expect(tty[1]).toMatch(/\n$/);
  });

  it('a real run\'s log: a line per unit with an ETA once one is done, and the summary', async () => {
    const dir = tmp('bench-log');
    const r = await bench(['--out', dir, '--shard', '2/3']);
    expect(r.code).toBe(0);
    expect(r.err).not.toContain('\r');
    expect(r.err).toMatch(/bench 2\/3: unit 1\/2 \S+ \(T 2,5\): 0 done, 2 remaining\n/);
    expect(r.err).toMatch(/bench 2\/3: unit 2\/2 \S+ \(T 2,5\): 1 done, 1 remaining, ETA [\d.]+ s\n/);
    expect(r.err).toMatch(/shard 2\/3: 2 unit\(s\) run, 0 already complete \(2 in this share, 4 in the grid\)/);
  }, 600_000);

  it('an unsharded run writes every unit and the report; its rows name their unit', () => {
    expect(fs.readdirSync(path.join(whole, 'units')).sort()).toEqual(UNITS.map((u) => `${u}.json`).sort());
    const rows = results(whole).rows;
    expect(rows).toHaveLength(8);
    expect(new Set(rows.map((r: { unit: string }) => r.unit))).toEqual(new Set(UNITS));
  });

  it('three shards into three directories, merged, equal the unsharded run (fidelity and energy fields identical)', async () => {
    const dirs = [1, 2, 3].map((i) => tmp(`bench-shard${i}`));
    const counts: number[] = [];
    for (const [i, dir] of dirs.entries()) {
      const r = await bench(['--out', dir, '--shard', `${i + 1}/3`]);
      expect(r.code, r.err).toBe(0);
      expect(r.err).toMatch(new RegExp(`shard ${i + 1}/3: partial results in `));
      counts.push(fs.readdirSync(path.join(dir, 'units')).length);
      expect(fs.existsSync(path.join(dir, 'results.json'))).toBe(false);
    }
    expect(counts.reduce((a, b) => a + b, 0)).toBe(UNITS.length);
    expect(Math.min(...counts)).toBeGreaterThan(0);
    const merged = tmp('bench-merged');
    let err = '';
    // a merge of two of the three lists what is missing
    expect(await main(['bench', 'merge', dirs[0]!, dirs[1]!, '--out', merged], { out: () => {}, err: (t) => void (err += t) })).toBe(2);
    expect(err).toMatch(/units missing: /);
    expect(await main(['bench', 'merge', ...dirs, '--out', merged], { out: () => {}, err: (t) => void (err += t) })).toBe(0);
    expect(results(merged)).toEqual(results(whole));
    for (const f of ['report.md', 'results.csv', 'frontier.svg']) expect(fs.existsSync(path.join(merged, f)), f).toBe(true);
  }, 600_000);

  it('shards sharing one --out: the last to finish writes the report', async () => {
    const shared = tmp('bench-shared');
    for (const i of [1, 2]) expect((await bench(['--out', shared, '--shard', `${i}/2`])).code).toBe(0);
    expect(results(shared)).toEqual(results(whole));
  }, 600_000);

  it('a run killed with SIGKILL after a unit resumes with only the missing units, and its results equal an uninterrupted run\'s', async () => {
    const dir = tmp('bench-killed');
    const child = spawn(process.execPath, [BIN, 'bench', '--model', stories, ...GRID, '--out', dir], { stdio: 'ignore' });
    const unitsDir = path.join(dir, 'units');
    const count = () => (fs.existsSync(unitsDir) ? fs.readdirSync(unitsDir).filter((f) => f.endsWith('.json')).length : 0);
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        if (count() >= 1) {
          clearInterval(timer);
          child.kill('SIGKILL');
          resolve();
        }
      }, 20);
      child.on('exit', () => {
        clearInterval(timer);
        reject(new Error('the bench run ended before it could be killed'));
      });
    });
    await new Promise((r) => child.once('exit', r));
    const k = count();
    expect(k).toBeGreaterThanOrEqual(1);
    expect(k).toBeLessThan(UNITS.length);
    // no half-written unit: every file there parses
    for (const f of fs.readdirSync(unitsDir)) if (f.endsWith('.json')) JSON.parse(fs.readFileSync(path.join(unitsDir, f), 'utf8'));
    const r = await bench(['--out', dir]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(new RegExp(`bench: ${UNITS.length - k} unit\\(s\\) run, ${k} already complete`));
    expect(results(dir)).toEqual(results(whole));
  }, 600_000);

  it('a unit of another fingerprint (another option) is not mixed in: the rerun recomputes it, a merge refuses it', async () => {
    const dir = tmp('bench-stale');
    expect((await bench(['--out', dir, '--shard', '1/2'])).code).toBe(0);
    const other = tmp('bench-other');
    let err = '';
    expect(await main(['bench', '--model', stories, ...GRID.map((a) => (a === '48' ? '40' : a)), '--out', other, '--shard', '2/2'], { out: () => {}, err: (t) => void (err += t) })).toBe(0);
    expect(await main(['bench', 'merge', dir, other, '--out', tmp('bench-bad')], { out: () => {}, err: (t) => void (err += t) })).toBe(2);
    expect(err).toMatch(/has fingerprint \w+, .* a different model, option, commit or kernel set/);
    // the same directory rerun with the other option: nothing is skipped
    const r = await main(['bench', '--model', stories, ...GRID.map((a) => (a === '48' ? '40' : a)), '--out', dir, '--shard', '1/2'], { out: () => {}, err: (t) => void (err += t) });
    expect(r).toBe(0);
    expect(err).toMatch(/shard 1\/2: \d unit\(s\) run, 0 already complete/);
  }, 600_000);

  it('the README\'s GNU parallel recipe, run as written, gives the unsharded results', () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const m = /<!-- recipe: gnu-parallel -->\s*```sh\n([\s\S]*?)```/.exec(readme);
    expect(m, 'the README has the GNU parallel recipe').not.toBeNull();
    const bin = tmp('bench-bin');
    fs.symlinkSync(BIN, path.join(bin, 'spikelm'));
    const out = tmp('bench-parallel');
    const r = spawnSync('bash', ['-euo', 'pipefail', '-c', m![1]!], {
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, MODEL: stories, OUT: out, FLAGS: GRID.join(' ') }, encoding: 'utf8', timeout: 600_000,
    });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(results(out)).toEqual(results(whole));
  }, 600_000);
});
