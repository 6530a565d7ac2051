/**
 * Writing a sweep's results: results.json, results.csv, report.md (tables, the targets and whether
 * they were met, the plots), report.html (the same, self-contained, plots inline) and the SVG plots. Every file carries the run's metadata. Files are
 * written atomically.
 */
import path from 'node:path';
import { atomicWriteFile } from '../io/atomic-write.js';
import type { SweepMetadata, SweepResult, SweepRow } from './sweep.js';
import { toHtml } from './html.js';
import { lineChart } from './svg.js';

export const PLOTS = {
  frontier: 'frontier.svg',
  fidelity: 'fidelity-error.svg',
  top1: 'top1.svg',
  energy: 'energy.svg',
  time: 'time-per-token.svg',
} as const;

/** The targets checked in report.md (issue 9: a faithful network cheaper than its ANN). */
export const TARGETS = { top1: 0.99, kl: 1e-3, energyFp32: 0.6, spikesPerStep: 1 } as const;

const CSV_COLUMNS: (keyof SweepRow)[] = [
  'backend', 'schedule', 'coding', 'T', 'top1_agreement', 'kl', 'mean_abs_logit_err', 'max_abs_logit_err', 'ppl_ann', 'ppl_snn', 'distinct_predictions_ann', 'distinct_predictions_snn',
  'spike_rate', 'spikes_per_neuron_per_token', 'max_spikes_per_neuron_per_step', 'spike_density', 'energy_ratio_fp32', 'energy_ratio_fp16', 'energy_ratio_int8',
  'ms_per_token_ann', 'ms_per_token', 'ms_per_token_single', 'ms_per_token_event', 'cost', 'cost_event',
];

function metaLine(m: SweepMetadata): string {
  return `spikelm ${m.spikelm_version} @ ${m.commit} · Node ${m.node} · ${m.cpu} (${m.cores} cores) · GPU: ${m.adapter} · ${m.date}`;
}

export function toCsv(r: SweepResult): string {
  const meta = Object.entries(r.metadata).map(([k, v]) => `# ${k}: ${String(v)}`);
  const esc = (v: unknown) => {
    const s = typeof v === 'number' ? String(Number(v.toPrecision(6))) : String(v);
    return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const layers = [...new Set(r.rows.flatMap((row) => Object.keys(row.spikes_per_layer)))];
  const header = [...CSV_COLUMNS, ...layers.map((l) => `spikes_per_neuron_per_token_${l}`)];
  const lines = r.rows.map((row) => [...CSV_COLUMNS.map((c) => esc(row[c])), ...layers.map((l) => esc(row.spikes_per_layer[l] ?? ''))].join(','));
  return `${[...meta, header.join(','), ...lines].join('\n')}\n`;
}

const configKey = (x: SweepRow) => `${x.schedule} ${x.coding}`;

export function plots(r: SweepResult): Record<keyof typeof PLOTS, string> {
  const backend = r.rows[0]?.backend ?? 'cpu';
  const rows = r.rows.filter((x) => x.backend === backend);
  const configs = [...new Set(rows.map(configKey))];
  const by = (c: string) => rows.filter((x) => configKey(x) === c);
  const note = metaLine(r.metadata);
  const Ts = rows.map((x) => x.T);
  return {
    frontier: lineChart({
      title: 'Fidelity against energy (points: T; top-1 ≥ 80% shown)', xLabel: 'E_SNN / E_ANN (FP32, compute only, log scale)', yLabel: 'top-1 agreement with the ANN', note,
      xLog: true, yWindow: [0.8, 1], width: 760, height: 460,
      series: [
        ...configs.map((c) => ({ name: c, points: by(c).map((x) => [x.energy_ratio_fp32, x.top1_agreement] as const) })),
        { name: `E = ${TARGETS.energyFp32}·E_ANN (target)`, dashed: true, points: [[TARGETS.energyFp32, 0.8], [TARGETS.energyFp32, 1]] as const },
        { name: 'E = E_ANN (break-even)', dashed: true, points: [[1, 0.8], [1, 1]] as const },
      ],
      hlines: [{ y: TARGETS.top1, label: `top-1 ${TARGETS.top1 * 100}%` }],
    }),
    fidelity: lineChart({
      title: 'Fidelity error vs T (log–log)', xLabel: 'time steps T', yLabel: 'mean |Δlogit| vs the ANN', xLog: true, yLog: true, note,
      series: configs.map((c) => ({ name: c, points: by(c).map((x) => [x.T, x.mean_abs_logit_err] as const) })),
    }),
    top1: lineChart({
      title: 'Top-1 agreement with the ANN vs T', xLabel: 'time steps T', yLabel: 'top-1 agreement', xLog: Math.min(...Ts) > 0, note,
      series: configs.map((c) => ({ name: c, points: by(c).map((x) => [x.T, x.top1_agreement] as const) })),
      hlines: [{ y: TARGETS.top1, label: `${TARGETS.top1 * 100}%` }],
    }),
    energy: lineChart({
      title: 'Energy of the SNN relative to the ANN vs T (FP32)', xLabel: 'time steps T', yLabel: 'E_SNN / E_ANN (compute only)', xLog: true, yLog: true, note,
      series: configs.map((c) => ({ name: c, points: by(c).map((x) => [x.T, x.energy_ratio_fp32] as const) })),
      hlines: [{ y: 1, label: 'break-even (E_SNN = E_ANN)' }, { y: TARGETS.energyFp32, label: `target ${TARGETS.energyFp32}` }],
    }),
    time: lineChart({
      title: `Time per token vs T (${backend})`, xLabel: 'time steps T', yLabel: 'ms per token', xLog: true, yLog: true, note,
      series: [
        ...configs.flatMap((c) => [
          { name: `${c}`, points: by(c).map((x) => [x.T, x.ms_per_token] as const) },
          { name: `${c} event`, points: by(c).map((x) => [x.T, x.ms_per_token_event] as const) },
        ]),
        { name: 'ANN', dashed: true, points: rows.map((x) => [x.T, x.ms_per_token_ann] as const) },
      ],
    }),
  };
}

const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
const num = (v: number, d = 3) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');

/** The fidelity target of a sweep: its `--target`, else TARGETS'. */
export function targetOf(m: SweepMetadata): { top1: number; kl: number } {
  return m.target ? { top1: m.target.top1, kl: m.target.kl ?? Infinity } : { top1: TARGETS.top1, kl: TARGETS.kl };
}

/** The cheapest row (FP32 energy) meeting the fidelity target with at most one spike per neuron per step. */
export function cheapestMeetingTargets(rows: readonly SweepRow[], target: { top1: number; kl: number } = TARGETS): SweepRow | undefined {
  return rows
    .filter((x) => x.top1_agreement >= target.top1 && x.kl <= target.kl && x.max_spikes_per_neuron_per_step <= TARGETS.spikesPerStep)
    .sort((a, b) => a.energy_ratio_fp32 - b.energy_ratio_fp32)[0];
}

export function toMarkdown(r: SweepResult): string {
  const m = r.metadata;
  const lines: string[] = ['# spikelm benchmark report', '', `Model \`${m.model}\`; spiking model: ${m.snn}.`, '', '| metadata | |', '|---|---|'];
  for (const [k, v] of Object.entries(m)) lines.push(`| ${k} | ${String(v)} |`);
  const backends = [...new Set(r.rows.map((x) => x.backend))];
  for (const b of backends) {
    const rows = r.rows.filter((x) => x.backend === b);
    lines.push('', `## ${b}`, '', `Fidelity over ${m.positions} positions; speed over ${m.time_tokens} tokens; cost = SNN time / ANN time for one forward (the stepwise schedule runs T steps, the layerwise one T planes per layer).`, '');
    lines.push('| schedule | code | T | top-1 | KL | mean \\|Δlogit\\| | ppl SNN/ANN | distinct SNN/ANN | spikes/neuron/token | max/neuron/step | nonzero digits | E/E_ANN fp32 | fp16 | int8 | ms/token | event | single | cost | cost event |');
    lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const x of rows) {
      lines.push(`| ${x.schedule} | ${x.coding} | ${x.T} | ${pct(x.top1_agreement)} | ${x.kl.toExponential(2)} | ${num(x.mean_abs_logit_err, 4)} | ${num(x.ppl_snn / x.ppl_ann)} | ${x.distinct_predictions_snn}/${x.distinct_predictions_ann} | ${num(x.spikes_per_neuron_per_token, 2)} | ${x.max_spikes_per_neuron_per_step} | ${pct(x.spike_density)} | ${num(x.energy_ratio_fp32, 3)} | ${num(x.energy_ratio_fp16, 3)} | ${num(x.energy_ratio_int8, 3)} | ${num(x.ms_per_token)} | ${num(x.ms_per_token_event)} | ${num(x.ms_per_token_single)} | ${num(x.cost, 2)} | ${num(x.cost_event, 2)} |`);
    }
  }
  lines.push('', '## Targets', '');
  const target = targetOf(m);
  for (const b of backends) {
    const best = cheapestMeetingTargets(r.rows.filter((x) => x.backend === b), target);
    lines.push(best
      ? `- ${b}: the cheapest configuration with top-1 ≥ ${pct(target.top1)}, KL ≤ ${target.kl} and at most one spike per neuron per step is ${best.schedule} ${best.coding} at T = ${best.T}: top-1 ${pct(best.top1_agreement)}, KL ${best.kl.toExponential(2)}, E_SNN/E_ANN ${num(best.energy_ratio_fp32, 3)} at FP32 — target ≤ ${TARGETS.energyFp32}: **${best.energy_ratio_fp32 <= TARGETS.energyFp32 ? 'met' : 'not met'}**.`
      : `- ${b}: no configuration in this sweep meets top-1 ≥ ${pct(target.top1)}, KL ≤ ${target.kl} with at most one spike per neuron per step.`);
  }
  lines.push('', 'Energy counts compute only (Horowitz, 45 nm) with every operation of the schedule and code that ran (src/snn/energy.ts); memory and data movement are excluded.', '', '## Plots', '');
  for (const [, file] of Object.entries(PLOTS)) lines.push(`![${file}](${file})`, '');
  lines.push('How to read them: the frontier plots top-1 agreement against E_SNN/E_ANN, one curve per conversion, a point per T (more planes: up and to the right); the target is the top-left corner above the 99% line and left of the dashed 0.6 line. The fidelity plot is log–log: rate codes fall as 1/T, weighted codes as 2^(−T). The time plot compares each execution with one forward of the ANN (dashed).');
  return `${lines.join('\n')}\n`;
}

export function writeReport(dir: string, r: SweepResult): string[] {
  const files: [string, string][] = [
    ['results.json', `${JSON.stringify(r, null, 2)}\n`],
    ['results.csv', toCsv(r)],
    ['report.md', toMarkdown(r)],
    ['report.html', toHtml(r)],
    ...Object.entries(plots(r)).map(([k, svg]) => [PLOTS[k as keyof typeof PLOTS], svg] as [string, string]),
  ];
  for (const [name, text] of files) atomicWriteFile(path.join(dir, name), text);
  return files.map(([name]) => path.join(dir, name));
}
