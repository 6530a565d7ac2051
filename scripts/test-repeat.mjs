#!/usr/bin/env node
/**
 * Run the whole vitest suite N times (default 5) and report every test that failed in any run, so a
 * test that fails one run in eight shows up before CI finds it.
 *
 *   npm run test:repeat              # 5 runs
 *   npm run test:repeat -- 10        # 10 runs
 *   npm run test:repeat -- 3 test/safetensors.test.ts   # only these files
 *
 * Each run writes vitest's JSON report to a temporary file; a run that crashes (a worker dying, a
 * hang past the timeout) counts as a failure of that run. Exit status: 0 when every run passed.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const args = process.argv.slice(2);
const runs = args.length > 0 && /^\d+$/.test(args[0]) ? Number(args.shift()) : 5;
if (!(runs >= 1)) {
  console.error(`test:repeat: the number of runs must be a positive integer, got ${runs}`);
  process.exit(2);
}
const files = args;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-repeat-'));
/** test name → runs it failed in */
const failures = new Map();
const crashed = [];
const started = Date.now();
for (let i = 1; i <= runs; i++) {
  const out = path.join(dir, `run-${i}.json`);
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', '--reporter=json', `--outputFile=${out}`, ...files], {
    stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', env: process.env, timeout: 60 * 60 * 1000,
  });
  const secs = ((Date.now() - t0) / 1000).toFixed(0);
  let report;
  try {
    report = JSON.parse(fs.readFileSync(out, 'utf8'));
  } catch {
    crashed.push(i);
    console.log(`run ${i}/${runs}: no report (exit ${r.status}, signal ${r.signal ?? 'none'}) after ${secs}s`);
    if (r.stderr) console.log(r.stderr.split('\n').slice(-15).join('\n'));
    continue;
  }
  let failed = 0;
  for (const file of report.testResults ?? []) {
    const rel = path.relative(process.cwd(), file.name);
    if (file.status === 'failed' && (file.assertionResults ?? []).every((a) => a.status !== 'failed')) {
      // a file-level failure (import error, unhandled error, worker crash)
      const key = `${rel} (file: ${(file.message ?? 'failed').split('\n')[0]})`;
      failures.set(key, [...(failures.get(key) ?? []), i]);
      failed++;
    }
    for (const a of file.assertionResults ?? []) {
      if (a.status !== 'failed') continue;
      const key = `${rel} > ${a.fullName}`;
      failures.set(key, [...(failures.get(key) ?? []), i]);
      failed++;
    }
  }
  const unhandled = report.success === false && failed === 0;
  if (unhandled) {
    const key = '(unhandled errors outside any test)';
    failures.set(key, [...(failures.get(key) ?? []), i]);
  }
  console.log(`run ${i}/${runs}: ${report.numPassedTests} passed, ${report.numFailedTests} failed, ${report.numPendingTests + (report.numTodoTests ?? 0)} skipped${unhandled ? ', unhandled errors' : ''} (${secs}s)`);
}
fs.rmSync(dir, { recursive: true, force: true });
console.log(`\n${runs} runs in ${((Date.now() - started) / 60000).toFixed(1)} min`);
if (failures.size === 0 && crashed.length === 0) {
  console.log('every test passed in every run');
  process.exit(0);
}
for (const [name, which] of failures) console.log(`FAILED in run(s) ${which.join(', ')}: ${name}`);
if (crashed.length) console.log(`runs without a report (crashes): ${crashed.join(', ')}`);
process.exit(1);
