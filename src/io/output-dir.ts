/**
 * Publishing a directory so that a crash at any instant (SIGKILL included) leaves either the old
 * complete directory or the new complete one at the destination, never a missing or mixed one.
 *
 * Layout of a published directory DEST (a real directory that is never itself replaced):
 *
 *   DEST/.versions/<id>/…            the files of each version, written and fsynced in full first
 *   DEST/.current -> .versions/<id>  the version in force: one symbolic link, swapped by rename(2)
 *   DEST/<file> -> .current/<file>   a stable link per file, so DEST reads like a plain directory
 *
 * Replacing a version: write .versions/<new>, fsync it, add links for files the new version adds
 * (they dangle, i.e. read as absent, until the swap — as they are absent in the old version), rename
 * a fresh link over `.current` (atomic), fsync DEST, then drop links to files the new version lacks
 * and the old version. Every intermediate state reads as the old or the new version. A first
 * publication builds the whole tree next to DEST and renames it into place (atomic as well).
 *
 * What cannot be swapped atomically: an existing path in another layout (a regular file, a user's
 * directory replaced with `overwrite`, a directory written by spikelm < 0.2). It is renamed aside,
 * the new tree renamed into place, and the old one removed; a crash between the two renames leaves
 * DEST missing and the old tree at `.NAME.replaced-PID-…` beside it, which the error for a missing
 * DEST points to. The same happens where the file system refuses symbolic links.
 *
 * Leftovers of interrupted writes (`.NAME.partial-PID-…`, `.NAME.replaced-PID-…`, versions that no
 * link names) belong to a dead process once its PID is gone; the next publication removes them.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ArgumentError } from '../errors.js';
import { fsyncDir } from './atomic-write.js';
import { fileKind } from './files.js';

export const VERSIONS_DIR = '.versions';
export const CURRENT_LINK = '.current';

/** Steps of a publication, in order; `onStep` sees each just before it happens (tests crash there). */
export type PublishStep = 'write' | 'fsync' | 'link-files' | 'swap' | 'unlink-stale' | 'remove-old' | 'rename-aside' | 'rename-into-place';

export interface PublishOptions {
  /** What is being written, for messages ("spiking model"). */
  readonly what: string;
  /** Whether an existing directory holds a previous output of ours (safe to replace). */
  readonly isOurs: (dir: string) => boolean;
  /** Replace an existing path that is not ours. Never applies to `protect`. */
  readonly overwrite?: boolean;
  /** Paths that must never be replaced nor contain DEST's replacement (the source model). */
  readonly protect?: readonly string[];
  /** Test hook: called before each step. */
  readonly onStep?: (step: PublishStep) => void;
}

export interface OutputCheck {
  readonly dest: string;
  readonly state: 'missing' | 'empty' | 'ours' | 'foreign';
}

const real = (p: string): string => {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
};
const isInside = (child: string, parent: string): boolean => {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
};

/**
 * Whether DEST may be written, decided before any work: refuses the protected paths (and anything
 * containing them), the working directory and its ancestors, the home directory and the root, and —
 * without `overwrite` — anything that exists and is not a previous output (an empty directory is fine).
 */
export function checkOutputDir(dest: string, opts: PublishOptions): OutputCheck {
  if (dest === '') throw new ArgumentError(`output directory: an empty path`);
  const abs = path.resolve(dest);
  const parent = path.dirname(abs);
  if (fileKind(parent) !== 'directory') throw new ArgumentError(`${dest}: the parent directory ${parent} does not exist`);
  const target = real(abs);
  for (const p of opts.protect ?? []) {
    const r = real(p);
    if (isInside(r, target)) throw new ArgumentError(`${dest}: refusing to write the ${opts.what} over ${r === target ? 'the source model directory' : `a directory that contains the source model ${p}`}; choose another --output_dir`);
  }
  const cwd = real(process.cwd());
  if (isInside(cwd, target)) throw new ArgumentError(`${dest}: refusing to replace ${cwd === target ? 'the working directory' : 'a directory that contains the working directory'}; choose a new directory`);
  if (target === real(os.homedir()) || target === path.parse(target).root) throw new ArgumentError(`${dest}: refusing to replace ${target}; choose a new directory`);
  const kind = fileKind(abs);
  if (kind === 'missing') return { dest: abs, state: 'missing' };
  if (kind === 'directory') {
    if (opts.isOurs(abs)) return { dest: abs, state: 'ours' };
    if (fs.readdirSync(abs).length === 0) return { dest: abs, state: 'empty' };
  }
  if (!opts.overwrite) {
    const what = kind === 'directory' ? 'a directory that is not a previous spikelm output' : kind === 'file' ? 'a file' : 'not a directory';
    throw new ArgumentError(`${dest}: exists and is ${what}; refusing to replace it (pass --overwrite to replace it anyway)`);
  }
  return { dest: abs, state: 'foreign' };
}

/** Write a new version of DEST with `write(dir)` (which fills an empty directory) and publish it. */
export function publishDirectory(dest: string, write: (dir: string) => void, opts: PublishOptions): void {
  const check = checkOutputDir(dest, opts);
  const abs = check.dest;
  const step = opts.onStep ?? (() => {});
  cleanStale(abs);
  const versioned = check.state === 'ours' && isVersioned(abs);
  if (versioned) {
    replaceVersion(abs, write, step);
    return;
  }
  // Build a complete tree beside DEST, then rename it into place.
  const parent = path.dirname(abs), base = path.basename(abs);
  const tmp = path.join(parent, `.${base}.partial-${process.pid}-${stamp()}`);
  fs.mkdirSync(tmp);
  try {
    step('write');
    if (symlinksWork(tmp)) {
      const { id, files } = writeVersion(tmp, write);
      step('link-files');
      fs.symlinkSync(path.join(VERSIONS_DIR, id), path.join(tmp, CURRENT_LINK));
      for (const f of files) fs.symlinkSync(path.join(CURRENT_LINK, f), path.join(tmp, f));
    } else {
      write(tmp);
    }
    step('fsync');
    fsyncTree(tmp);
    if (check.state === 'missing') {
      step('rename-into-place');
      fs.renameSync(tmp, abs);
      fsyncDir(parent);
      return;
    }
    // An existing path in another layout (or an empty directory): rename it aside first.
    step('rename-aside');
    const aside = path.join(parent, `.${base}.replaced-${process.pid}-${stamp()}`);
    fs.renameSync(abs, aside);
    step('rename-into-place');
    fs.renameSync(tmp, abs);
    fsyncDir(parent);
    step('remove-old');
    fs.rmSync(aside, { recursive: true, force: true });
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** A previous output whose DEST/.current is a link into DEST/.versions. */
export function isVersioned(dir: string): boolean {
  try {
    return fs.lstatSync(path.join(dir, CURRENT_LINK)).isSymbolicLink();
  } catch {
    return false;
  }
}

/** If DEST is missing because a replacement was interrupted, where the previous tree waits. */
export function interruptedReplacement(dest: string): string | undefined {
  const abs = path.resolve(dest), parent = path.dirname(abs), prefix = `.${path.basename(abs)}.replaced-`;
  try {
    const found = fs.readdirSync(parent).filter((n) => n.startsWith(prefix)).sort().at(-1);
    return found === undefined ? undefined : path.join(parent, found);
  } catch {
    return undefined;
  }
}

function replaceVersion(dest: string, write: (dir: string) => void, step: (s: PublishStep) => void): void {
  step('write');
  const oldTarget = fs.readlinkSync(path.join(dest, CURRENT_LINK));
  const oldFiles = new Set(listVersion(path.join(dest, oldTarget)));
  const { id, files } = writeVersion(dest, write);
  step('fsync');
  fsyncTree(path.join(dest, VERSIONS_DIR, id));
  fsyncDir(path.join(dest, VERSIONS_DIR));
  step('link-files');
  // Links for files only the new version has: they dangle (read as absent) until the swap.
  for (const f of files) {
    const link = path.join(dest, f);
    if (!isLinkTo(link, path.join(CURRENT_LINK, f))) {
      fs.rmSync(link, { force: true });
      fs.symlinkSync(path.join(CURRENT_LINK, f), link);
    }
  }
  fsyncDir(dest);
  step('swap');
  const tmpLink = path.join(dest, `${CURRENT_LINK}.tmp-${process.pid}-${stamp()}`);
  fs.symlinkSync(path.join(VERSIONS_DIR, id), tmpLink);
  fs.renameSync(tmpLink, path.join(dest, CURRENT_LINK));
  fsyncDir(dest);
  step('unlink-stale');
  const keep = new Set(files);
  for (const f of oldFiles) if (!keep.has(f)) fs.rmSync(path.join(dest, f), { force: true });
  step('remove-old');
  fs.rmSync(path.join(dest, oldTarget), { recursive: true, force: true });
}

/** Write a version under DIR/.versions/<id>: its id and top-level file names. */
function writeVersion(dir: string, write: (d: string) => void): { id: string; files: string[] } {
  const versions = path.join(dir, VERSIONS_DIR);
  fs.mkdirSync(versions, { recursive: true });
  const id = `${process.pid}-${stamp()}`;
  const vdir = path.join(versions, id);
  fs.mkdirSync(vdir);
  try {
    write(vdir);
  } catch (err) {
    fs.rmSync(vdir, { recursive: true, force: true });
    throw err;
  }
  return { id, files: listVersion(vdir) };
}

function listVersion(vdir: string): string[] {
  try {
    return fs.readdirSync(vdir).filter((n) => !n.startsWith('.'));
  } catch {
    return [];
  }
}

function isLinkTo(link: string, target: string): boolean {
  try {
    return fs.readlinkSync(link) === target;
  } catch {
    return false;
  }
}

/** Remove leftovers of writers that are no longer running. */
function cleanStale(dest: string): void {
  const parent = path.dirname(dest), base = path.basename(dest);
  for (const prefix of [`.${base}.partial-`, `.${base}.replaced-`]) {
    let names: string[] = [];
    try {
      names = fs.readdirSync(parent).filter((n) => n.startsWith(prefix));
    } catch {
      return;
    }
    for (const n of names) if (!pidAlive(Number(n.slice(prefix.length).split('-')[0]))) fs.rmSync(path.join(parent, n), { recursive: true, force: true });
  }
  if (!isVersioned(dest)) return;
  const current = path.basename(fs.readlinkSync(path.join(dest, CURRENT_LINK)));
  const versions = path.join(dest, VERSIONS_DIR);
  for (const n of fs.existsSync(versions) ? fs.readdirSync(versions) : []) {
    if (n !== current && !pidAlive(Number(n.split('-')[0]))) fs.rmSync(path.join(versions, n), { recursive: true, force: true });
  }
  for (const n of fs.readdirSync(dest)) {
    if (n.startsWith(`${CURRENT_LINK}.tmp-`) && !pidAlive(Number(n.slice(CURRENT_LINK.length + 5).split('-')[0]))) fs.rmSync(path.join(dest, n), { force: true });
  }
}

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return false; // our own earlier, abandoned attempts
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function symlinksWork(dir: string): boolean {
  const probe = path.join(dir, '.symlink-probe');
  try {
    fs.symlinkSync('target', probe);
    fs.unlinkSync(probe);
    return true;
  } catch {
    return false;
  }
}

let counter = 0;
function stamp(): string {
  return `${Date.now().toString(36)}${(counter++).toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}

/** fsync every regular file and directory below `dir` (links are not followed). */
function fsyncTree(dir: string): void {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) fsyncTree(p);
    else if (e.isFile()) {
      const fd = fs.openSync(p, 'r');
      try {
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
  }
  fsyncDir(dir);
}
