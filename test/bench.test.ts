/** The benchmark report: the SVG writer, and `spikelm bench` end to end (issue 6's acceptance run). */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { lineChart } from '../src/bench/svg.js';
import { main } from '../src/cli/main.js';
import { checkWellFormedXml } from './helpers/xml.js';
import { fixtureDir } from './helpers/fixtures.js';
import { GPU_REQUIRED, tryGpu } from './helpers/backends.js';

describe('SVG line charts', () => {
  it('are well-formed XML for any data, escape text, and draw one polyline per series', () => {
    // text the chart prints as given (series names, the title) may not spell NaN or Infinity itself:
    // the check below is for numbers written as NaN or Infinity (a series named "NaN" failed it)
    const text = fc.string().filter((t) => !/NaN|Infinity/.test(t));
    fc.assert(
      fc.property(
        fc.array(fc.record({ name: text, points: fc.array(fc.tuple(fc.double({ min: -1e6, max: 1e6, noNaN: true }), fc.double({ noNaN: false })), { maxLength: 12 }), dashed: fc.boolean() }), { maxLength: 5 }),
        fc.boolean(), fc.boolean(), text,
        (series, xLog, yLog, title) => {
          const svg = lineChart({ title, xLabel: 'x <&>', yLabel: 'y "q"', xLog, yLog, series, hlines: [{ y: 1, label: "a'b" }], note: 'n · m' });
          const names = checkWellFormedXml(svg);
          expect(names[0]).toBe('svg');
          expect(svg).not.toMatch(/NaN|Infinity/);
          const drawable = series.filter((s) => s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!xLog || x > 0) && (!yLog || y > 0)).length > 1);
          expect(names.filter((n) => n === 'polyline')).toHaveLength(drawable.length);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('never loops on log axes whose span underflows or overflows (the two-point chart that hung the worker)', () => {
    const extremes = [Number.MIN_VALUE, 2 * Number.MIN_VALUE, 1e-320, 1e-308, Number.MAX_VALUE, 1e308];
    for (const a of extremes) {
      for (const b of extremes) {
        for (const [xLog, yLog] of [[true, true], [true, false], [false, true]] as const) {
          const svg = lineChart({ title: 't', xLabel: 'x', yLabel: 'y', xLog, yLog, series: [{ name: 's', points: [[a, b], [a, b]] }] });
          expect(checkWellFormedXml(svg)[0]).toBe('svg');
          expect(svg).not.toMatch(/NaN|Infinity/);
          expect(svg.length).toBeLessThan(20_000);
        }
      }
    }
  });

  it('places log-axis points proportionally: 1, 10, 100 are evenly spaced', () => {
    const svg = lineChart({ title: 't', xLabel: 'x', yLabel: 'y', xLog: true, yLog: true, series: [{ name: 's', points: [[1, 1], [10, 10], [100, 100]] }] });
    const xs = [...svg.matchAll(/<circle cx="([\d.]+)"/g)].map((m) => Number(m[1]));
    expect(xs).toHaveLength(3);
    expect(Math.abs(xs[1]! - xs[0]! - (xs[2]! - xs[1]!))).toBeLessThan(0.2);
  });
});

describe('spikelm bench', () => {
  it('--coding phase-ternary,rate --schedule layerwise,stepwise --timesteps 1,4,9 --backend cpu,gpu: results.json/.csv, report.md with the targets, valid SVG plots with the frontier', async () => {
    const gpu = await tryGpu();
    if (!gpu && GPU_REQUIRED) throw new Error('bench needs the GPU backend in CI');
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-bench-'));
    let stdout = '', stderr = '';
    const code = await main(['bench', '--model', fixtureDir('stories260k'), '--coding', 'phase-ternary,rate', '--schedule', 'layerwise,stepwise', '--timesteps', '1,4,9',
      '--backend', gpu ? 'cpu,gpu' : 'cpu', '--out', out, '--time-budget', '50', '--positions', '96', '--time-tokens', '8'], {
      out: (t) => void (stdout += t), err: (t) => void (stderr += t),
    });
    expect(code, stderr).toBe(0);
    const files = ['results.json', 'results.csv', 'report.md', 'frontier.svg', 'fidelity-error.svg', 'top1.svg', 'energy.svg', 'time-per-token.svg'];
    for (const f of files) expect(fs.existsSync(path.join(out, f)), f).toBe(true);
    const results = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8'));
    expect(Object.keys(results.metadata)).toEqual(expect.arrayContaining(['commit', 'node', 'cpu', 'adapter', 'date']));
    // phase codes run only layerwise: three configurations per backend, three T each
    const configs = ['layerwise phase-ternary', 'layerwise rate', 'stepwise rate'];
    const rowsOf = (backend: string) => results.rows.filter((r: { backend: string }) => r.backend === backend);
    for (const backend of gpu ? ['cpu', 'gpu'] : ['cpu']) {
      const rows = rowsOf(backend);
      expect(rows.map((r: { schedule: string; coding: string; T: number }) => `${r.schedule} ${r.coding} ${r.T}`).sort()).toEqual(configs.flatMap((c) => [1, 4, 9].map((T) => `${c} ${T}`)).sort());
      for (const r of rows) {
        for (const k of ['top1_agreement', 'kl', 'spike_rate', 'spikes_per_neuron_per_token', 'energy_ratio_fp32', 'energy_ratio_fp16', 'energy_ratio_int8', 'ms_per_token', 'ms_per_token_event', 'cost']) expect(Number.isFinite(r[k]), `${backend} ${r.schedule} ${r.coding} ${r.T} ${k}`).toBe(true);
        // weighted and single-spike codes: at most one spike per neuron per step
        if (r.coding === 'phase-ternary') expect(r.max_spikes_per_neuron_per_step).toBe(1);
      }
      // the error falls with T in every configuration
      for (const c of configs) {
        const e = rows.filter((r: { schedule: string; coding: string }) => `${r.schedule} ${r.coding}` === c).sort((a: { T: number }, b: { T: number }) => a.T - b.T).map((r: { mean_abs_logit_err: number }) => r.mean_abs_logit_err);
        expect(e[2], c).toBeLessThan(e[0]);
      }
    }
    const csv = fs.readFileSync(path.join(out, 'results.csv'), 'utf8').split('\n');
    expect(csv.filter((l) => l.startsWith('# commit'))).toHaveLength(1);
    expect(csv.find((l) => l.startsWith('backend,schedule,coding,T,'))).toBeDefined();
    const md = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(md).toMatch(/## Targets/);
    // layerwise phase-ternary at T = 9 meets the targets on stories260k (the default conversion)
    expect(md).toMatch(/- cpu: the cheapest configuration .* is layerwise phase-ternary at T = 9: .* target ≤ 0.6: \*\*met\*\*/);
    for (const svg of files.filter((f) => f.endsWith('.svg'))) {
      const text = fs.readFileSync(path.join(out, svg), 'utf8');
      const names = checkWellFormedXml(text);
      expect(names.filter((n) => n === 'polyline').length, svg).toBeGreaterThan(0);
      expect(text).toContain(results.metadata.commit);
      expect(md).toContain(`(${svg})`);
    }
    expect(fs.readFileSync(path.join(out, 'frontier.svg'), 'utf8')).toContain('break-even');
    expect(fs.readFileSync(path.join(out, 'energy.svg'), 'utf8')).toContain('break-even');
  });

  it('bad arguments are clear errors', async () => {
    let err = '';
    const io = { out: () => {}, err: (t: string) => void (err += t) };
    expect(await main(['bench', '--model', fixtureDir('stories260k'), '--out', '/tmp/x', '--backend', 'tpu'], io)).toBe(2);
    expect(err).toMatch(/--backend takes cpu and\/or gpu/);
    expect(await main(['bench', '--model', fixtureDir('stories260k')], io)).toBe(2);
    expect(err).toMatch(/--out is required/);
  });
});

describe('report.md checks the rows against the sweep\'s --target', () => {
  it('the same rows meet a looser target and not the default one', async () => {
    const { toMarkdown, cheapestMeetingTargets } = await import('../src/bench/report.js');
    const row = (T: number, top1: number, kl: number, e: number) => ({
      backend: 'cpu', schedule: 'layerwise', coding: 'phase-ternary', T, top1_agreement: top1, kl, mean_abs_logit_err: 0, max_abs_logit_err: 0, ppl_ann: 1, ppl_snn: 1,
      distinct_predictions_ann: 1, distinct_predictions_snn: 1, spike_rate: 0, spikes_per_neuron_per_token: 0, max_spikes_per_neuron_per_step: 1, spike_density: 0,
      energy_ratio_fp32: e, energy_ratio_fp16: e, energy_ratio_int8: e, ms_per_token_ann: 1, ms_per_token: 1, ms_per_token_single: NaN, ms_per_token_event: NaN, cost: 1, cost_event: NaN,
    });
    const rows = [row(6, 0.95, 2e-3, 0.4), row(8, 0.985, 6e-4, 0.5)] as never[];
    const metadata = { commit: 'c', spikelm_version: '0', node: 'v', cpu: 'x', cores: 2, adapter: 'none', date: 'd', model: 'm', snn: 's', positions: 10, time_tokens: 4 };
    expect(cheapestMeetingTargets(rows)).toBeUndefined();
    expect(cheapestMeetingTargets(rows, { top1: 0.98, kl: 1e-3 })).toMatchObject({ T: 8 });
    expect(toMarkdown({ metadata, rows })).toMatch(/no configuration in this sweep meets top-1 ≥ 99\.0%, KL ≤ 0\.001/);
    expect(toMarkdown({ metadata: { ...metadata, target: { top1: 0.9, kl: null } }, rows })).toMatch(/the cheapest configuration with top-1 ≥ 90\.0%, KL ≤ Infinity .* at T = 6/);
  });
});
