/**
 * Where a converted model may be written, and that writing it is atomic: the destination always
 * holds the old complete model or the new complete one, even when the writer is SIGKILLed at any
 * point (child processes killed at every publication step and at random instants).
 */
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../src/cli/main.js';
import { loadSnnModel, readSnnConfig } from '../src/convert/snn-io.js';
import { CURRENT_LINK, type PublishStep, VERSIONS_DIR } from '../src/io/output-dir.js';
import { fixtureDir } from './helpers/fixtures.js';

const stories = fixtureDir('stories260k');
const CHILD = path.join(path.dirname(new URL(import.meta.url).pathname), 'helpers', 'save-child.ts');
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-out-'));

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const code = await main(args, { out: (t) => void (out += t), err: (t) => void (err += t) });
  return { code, out, err };
}

const convert = (out: string, ...extra: string[]) => cli(['convert', '--model', stories, '--output_dir', out, '--timesteps', '4', '--simplified', ...extra]);

/** Every file of a directory tree, relative path → content hash (links followed). */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of fs.readdirSync(dir).filter((n) => !n.startsWith('.')).sort()) {
    out[name] = crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, name))).digest('hex');
  }
  return out;
}

describe('convert --output_dir refuses to destroy what is not its own', () => {
  it('a directory of user files, a regular file: untouched, exit 2, and --overwrite replaces them', async () => {
    const base = tmp();
    const userDir = path.join(base, 'notes');
    fs.mkdirSync(userDir);
    fs.writeFileSync(path.join(userDir, 'thesis.txt'), 'years of work');
    const file = path.join(base, 'file.txt');
    fs.writeFileSync(file, 'keep me');
    for (const target of [userDir, file]) {
      const r = await convert(target);
      expect(r.code, r.err).toBe(2);
      expect(r.err).toMatch(/exists and is (a directory that is not a previous spikelm output|a file); refusing to replace it \(pass --overwrite/);
    }
    expect(fs.readFileSync(path.join(userDir, 'thesis.txt'), 'utf8')).toBe('years of work');
    expect(fs.readFileSync(file, 'utf8')).toBe('keep me');
    const r = await convert(userDir, '--overwrite');
    expect(r.code, r.err).toBe(0);
    expect(readSnnConfig(userDir).timesteps).toBe(4);
    expect(fs.existsSync(path.join(userDir, 'thesis.txt'))).toBe(false);
    expect(fs.readdirSync(base).sort()).toEqual(['file.txt', 'notes']);
  });

  it('the source model, a directory containing it, and the working directory: refused even with --overwrite', async () => {
    const before = snapshot(stories);
    for (const target of [stories, path.dirname(stories), process.cwd(), path.dirname(process.cwd())]) {
      for (const extra of [[], ['--overwrite']]) {
        const r = await convert(target, ...extra);
        expect(r.code, `${target} ${extra}`).toBe(2);
        expect(r.err).toMatch(/refusing to (write the spiking model over (the source model directory|a directory that contains the source model)|replace (the working directory|a directory that contains the working directory))/);
      }
    }
    expect(snapshot(stories)).toEqual(before);
  });

  it('a previous spikelm output and an empty directory are replaced; a missing parent is a clear error', async () => {
    const base = tmp();
    const out = path.join(base, 'snn');
    expect((await convert(out)).code).toBe(0);
    const r = await cli(['convert', '--model', stories, '--output_dir', out, '--timesteps', '6', '--simplified']);
    expect(r.code, r.err).toBe(0);
    expect(readSnnConfig(out).timesteps).toBe(6);
    const empty = path.join(base, 'empty');
    fs.mkdirSync(empty);
    expect((await convert(empty)).code).toBe(0);
    expect(readSnnConfig(empty).timesteps).toBe(4);
    const orphan = await convert(path.join(base, 'no', 'such', 'parent'));
    expect(orphan.code).toBe(2);
    expect(orphan.err).toMatch(/the parent directory .* does not exist/);
  });

  it('bad flags fail before the model is loaded (no calibration, no output)', async () => {
    const base = tmp();
    for (const [flag, value, pattern] of [
      ['--quantile', '2', /--quantile must be in \(0, 1\]/],
      ['--timesteps', '0', /--timesteps must be an integer ≥ 1/],
      ['--calibration-length', '1', /--calibration-length must be an integer ≥ 2/],
      ['--calibration-file', base, /--calibration-file .*: is a directory/],
    ] as const) {
      const t0 = performance.now();
      const r = await cli(['convert', '--model', stories, '--output_dir', path.join(base, 'x'), flag, value]);
      expect(r.code, flag).toBe(2);
      expect(r.err).toMatch(pattern);
      expect(r.err).not.toMatch(/calibrating/);
      expect(performance.now() - t0).toBeLessThan(5000);
    }
    expect(fs.readdirSync(base)).toEqual([]);
  });
});

describe('saveSnnModel is atomic under SIGKILL', () => {
  /** The two models the child writes, saved once each as references. */
  function references(base: string): { A: Record<string, string>; B: Record<string, string> } {
    const refs = {} as { A: Record<string, string>; B: Record<string, string> };
    for (const which of ['A', 'B'] as const) {
      const dir = path.join(base, `ref-${which}`);
      const r = spawnSync(process.execPath, ['--import', 'tsx', CHILD, 'save', dir, which], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      refs[which] = snapshot(dir);
    }
    expect(refs.A).not.toEqual(refs.B);
    return refs;
  }

  function expectOldOrNew(dest: string, refs: { A: Record<string, string>; B: Record<string, string> }, allowed: readonly ('A' | 'B')[], what: string): 'A' | 'B' {
    expect(fs.existsSync(dest), `${what}: the destination is missing`).toBe(true);
    const snap = snapshot(dest);
    const which = allowed.find((w) => JSON.stringify(snap) === JSON.stringify(refs[w]));
    expect(which, `${what}: the destination is neither ${allowed.join(' nor ')}: ${JSON.stringify(snap)}`).toBeDefined();
    const loaded = loadSnnModel(dest);
    expect(loaded.snn.timesteps).toBe(which === 'A' ? 4 : 6);
    return which!;
  }

  const STEPS: PublishStep[] = ['write', 'fsync', 'link-files', 'swap', 'unlink-stale', 'remove-old'];

  it('killed before every step of a first save and of a replacement: old or new, complete; leftovers cleaned by the next save', () => {
    const base = tmp();
    const refs = references(base);
    for (const step of ['write', 'fsync', 'link-files', 'rename-into-place'] as PublishStep[]) {
      const dest = path.join(base, `fresh-${step}`);
      const r = spawnSync(process.execPath, ['--import', 'tsx', CHILD, 'crash', dest, 'A', step], { encoding: 'utf8' });
      expect(r.signal, `${step}: ${r.stderr}`).toBe('SIGKILL');
      // a first save killed before its rename leaves nothing at the destination, not a partial model
      expect(fs.existsSync(dest)).toBe(false);
    }
    const dest = path.join(base, 'snn');
    expect(spawnSync(process.execPath, ['--import', 'tsx', CHILD, 'save', dest, 'A']).status).toBe(0);
    let expected: 'A' | 'B' = 'A';
    for (const step of STEPS) {
      const next = expected === 'A' ? 'B' : 'A';
      const r = spawnSync(process.execPath, ['--import', 'tsx', CHILD, 'crash', dest, next, step], { encoding: 'utf8' });
      expect(r.signal, `${step}: ${r.stderr}`).toBe('SIGKILL');
      // before the swap the old model is in force, from the swap on the new one
      const landed = expectOldOrNew(dest, refs, STEPS.indexOf(step) <= STEPS.indexOf('swap') ? [expected] : [next], `killed before ${step}`);
      expected = landed;
    }
    // the next save to each destination removes what the dead writers left beside it
    for (const step of ['write', 'fsync', 'link-files', 'rename-into-place']) expect(spawnSync(process.execPath, ['--import', 'tsx', CHILD, 'save', path.join(base, `fresh-${step}`), 'A']).status).toBe(0);
    expect(spawnSync(process.execPath, ['--import', 'tsx', CHILD, 'save', dest, 'B']).status).toBe(0);
    expectOldOrNew(dest, refs, ['B'], 'after a clean save');
    expect(fs.readdirSync(path.join(dest, VERSIONS_DIR))).toHaveLength(1);
    expect(fs.readdirSync(dest).filter((n) => n.startsWith(`${CURRENT_LINK}.tmp`))).toEqual([]);
    expect(fs.readdirSync(base).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('killed at 24 random instants of back-to-back saves: always old or new, complete', async () => {
    const base = tmp();
    const refs = references(base);
    const dest = path.join(base, 'snn');
    let rng = 12345;
    const random = () => ((rng = (rng * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (let i = 0; i < 24; i++) {
      const child = spawn(process.execPath, ['--import', 'tsx', CHILD, 'loop', dest], { stdio: ['ignore', 'pipe', 'pipe'] });
      let saves = 0, stderr = '';
      child.stderr.on('data', (d) => void (stderr += d));
      const started = new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => {
        saves += d.toString().split('saved').length - 1;
        if (saves >= 1) resolve();
      }));
      const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
      await Promise.race([started, exited]);
      expect(saves, stderr).toBeGreaterThanOrEqual(1);
      await new Promise((r) => setTimeout(r, random() * 120));
      child.kill('SIGKILL');
      expect(await exited).toBe('SIGKILL');
      expectOldOrNew(dest, refs, ['A', 'B'], `kill ${i} after ${saves} saves`);
    }
    expect(spawnSync(process.execPath, ['--import', 'tsx', CHILD, 'save', dest, 'A']).status).toBe(0);
    expect(fs.readdirSync(path.join(dest, VERSIONS_DIR))).toHaveLength(1);
    expect(fs.readdirSync(base).filter((n) => n.startsWith('.'))).toEqual([]);
  }, 300_000);
});
