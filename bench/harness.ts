/**
 * Benchmark harness: a registry of suites, each a sweep over its parameters, timed with tinybench.
 * Every result row carries the numbers it claims (GFLOP/s, tokens/s, …); the run prints them with
 * the machine's metadata (commit, Node, CPU, date) and can write them as JSON.
 */
import { execSync } from 'node:child_process';
import os from 'node:os';
import { Bench } from 'tinybench';
import { cpuKernelSet, relaxedRequested } from '../src/tensor/wasm/runtime.js';

export interface BenchRow {
  readonly suite: string;
  readonly name: string;
  /** Mean time per operation, milliseconds. */
  readonly meanMs: number;
  readonly samples: number;
  /** Derived figures: GFLOP/s, tokens/s, ratios, … */
  readonly metrics: Readonly<Record<string, number | string>>;
}

export interface Suite {
  readonly name: string;
  readonly description: string;
  run(ctx: BenchContext): Promise<BenchRow[]>;
}

export interface BenchContext {
  /** Time budget per task, ms (tinybench `time`). */
  readonly timeMs: number;
  readonly quick: boolean;
  log(line: string): void;
}

export function machineMetadata(): Record<string, string> {
  let commit = 'unknown';
  try {
    commit = execSync('git rev-parse --short HEAD', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    // not a git checkout
  }
  return {
    commit,
    node: process.version,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: String(os.availableParallelism?.() ?? os.cpus().length),
    // the CPU backend's default kernel set in this run (suites that compare sets name each row's)
    cpu_kernels: cpuKernelSet() === 'wasm' && relaxedRequested() ? 'wasm (relaxed SIMD)' : cpuKernelSet(),
    date: new Date().toISOString(),
  };
}

/**
 * Time `fn` (sync or async) with tinybench and return the mean latency in ms and the sample count.
 * For GPU work `fn` must await the queue (read back or onSubmittedWorkDone) before returning.
 */
export async function timeIt(name: string, fn: () => unknown, ctx: BenchContext, opts: { iterations?: number } = {}): Promise<{ meanMs: number; samples: number }> {
  const bench = new Bench({ time: ctx.timeMs, iterations: opts.iterations ?? 3, warmupIterations: 1, warmupTime: 0 });
  bench.add(name, fn as () => void);
  await bench.run();
  const r = bench.tasks[0]!.result;
  if (r.state === 'errored') throw r.error;
  if (r.state !== 'completed' && r.state !== 'aborted-with-statistics') throw new Error(`benchmark ${name}: ${r.state}`);
  return { meanMs: r.latency.mean, samples: r.latency.samplesCount };
}

export function formatRows(rows: readonly BenchRow[]): string {
  const metricKeys = [...new Set(rows.flatMap((r) => Object.keys(r.metrics)))];
  const header = ['suite', 'name', 'mean ms', 'samples', ...metricKeys];
  const body = rows.map((r) => [
    r.suite, r.name, r.meanMs.toFixed(3), String(r.samples),
    ...metricKeys.map((k) => {
      const v = r.metrics[k];
      return v === undefined ? '' : typeof v === 'number' ? (Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(3)) : v;
    }),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}
