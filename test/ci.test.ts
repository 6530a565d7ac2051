/**
 * .ci/backports derives Debian's bookworm-backports entry from the machine's own apt sources (so no
 * host name is written into the repository), in both apt formats; checked on scratch apt folders.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const SCRIPT = path.resolve('.ci/backports');

function derive(files: Record<string, string>): { status: number | null; stdout: string; stderr: string } {
  const etc = fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-apt-'));
  fs.mkdirSync(path.join(etc, 'sources.list.d'));
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(etc, name), text);
  const r = spawnSync('bash', [SCRIPT, '--print'], { env: { ...process.env, SPIKELM_APT_ETC: etc }, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('.ci/backports --print', () => {
  it('deb822: one stanza per Debian stanza that has the bookworm suite, with its URIs, components and Signed-By; security and other suites left out', () => {
    const r = derive({
      'sources.list.d/debian.sources': [
        'Types: deb', '# a comment', 'URIs: http://mirror.example/debian', 'Suites: bookworm bookworm-updates', 'Components: main contrib', 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg', '',
        'Types: deb', 'URIs: http://mirror.example/debian-security', 'Suites: bookworm-security', 'Components: main', '',
        'Types: deb deb-src', 'URIs: http://other.example/debian', 'Suites: bookworm', 'Components: main', '',
      ].join('\n'),
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe([
      'Types: deb', 'URIs: http://mirror.example/debian', 'Suites: bookworm-backports', 'Components: main contrib', 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg', '',
      'Types: deb deb-src', 'URIs: http://other.example/debian', 'Suites: bookworm-backports', 'Components: main', '',
    ].join('\n'));
  });

  it('one-line sources.list: each `deb … bookworm …` line, options kept; deb-src and other suites left out', () => {
    const r = derive({
      'sources.list': ['deb http://mirror.example/debian bookworm main', 'deb [signed-by=/k.gpg arch=amd64] http://mirror.example/debian bookworm main contrib', 'deb http://mirror.example/debian-security bookworm-security main', 'deb-src http://mirror.example/debian bookworm main', ''].join('\n'),
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe('deb http://mirror.example/debian bookworm-backports main\ndeb [signed-by=/k.gpg arch=amd64] http://mirror.example/debian bookworm-backports main contrib\n');
  });

  it('no Debian bookworm entry: an error saying what it looked for, and nothing printed', () => {
    const r = derive({ 'sources.list': 'deb http://archive.ubuntu.com/ubuntu jammy main\n' });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/no Debian bookworm entry in .+ to derive a bookworm-backports one from/);
  });
});
