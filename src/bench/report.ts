/**
 * Writing a sweep's results: results.json, results.csv, report.md (tables, the targets and whether
 * they were met, the plots) and four SVG plots. Every file carries the run's metadata. Files are
 * written atomically.
 */
import path from 'node:path';
import { atomicWriteFile } from '../io/atomic-write.js';
import type { SweepMetadata, SweepResult, SweepRow } from './sweep.js';
import { type Series, lineChart } from './svg.js';

export const PLOTS = {
  fidelity: 'fidelity-error.svg',
  top1: 'top1.svg',
  energy: 'energy.svg',
  time: 'time-per-token.svg',
} as const;

/** Issue 6's targets, checked in report.md. */
export const TARGETS = { multiAtT16: 0.5, eventAtT16: 0.25, eventSpikeRate: 0.2 } as const;

const CSV_COLUMNS: (keyof SweepRow)[] = [
  'backend', 'T', 'top1_agreement', 'kl', 'mean_abs_logit_err', 'max_abs_logit_err', 'ppl_ann', 'ppl_snn', 'distinct_predictions_ann', 'distinct_predictions_snn',
  'spike_rate', 'spike_density', 'energy_ratio_fp32', 'energy_ratio_fp16', 'energy_ratio_int8', 't_times_rate', 'break_even_fp32',
  'ms_per_token_ann', 'ms_per_token_multi', 'ms_per_token_single', 'ms_per_token_event', 'cost_multi', 'cost_single', 'cost_event',
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
  const header = [...CSV_COLUMNS, ...layers.map((l) => `spike_rate_${l}`)];
  const lines = r.rows.map((row) => [...CSV_COLUMNS.map((c) => esc(row[c])), ...layers.map((l) => esc(row.spikes_per_layer[l] ?? ''))].join(','));
  return `${[...meta, header.join(','), ...lines].join('\n')}\n`;
}

export function plots(r: SweepResult): Record<keyof typeof PLOTS, string> {
  const backends = [...new Set(r.rows.map((x) => x.backend))];
  const by = (b: string) => r.rows.filter((x) => x.backend === b);
  const note = metaLine(r.metadata);
  // θ/T reference: a slope of −1 through the middle point of the first backend's curve.
  const first = by(backends[0]!).filter((x) => x.mean_abs_logit_err > 0);
  const mid = first[Math.floor(first.length / 2)];
  const reference: Series[] = mid ? [{ name: 'θ/T slope (−1)', dashed: true, points: first.map((x) => [x.T, (mid.mean_abs_logit_err * mid.T) / x.T] as const) }] : [];
  const Ts = r.rows.map((x) => x.T);
  return {
    fidelity: lineChart({
      title: 'Fidelity error vs T (log–log)', xLabel: 'time steps T', yLabel: 'mean |Δlogit| vs the ANN', xLog: true, yLog: true, note,
      series: [...backends.map((b) => ({ name: `${b}`, points: by(b).map((x) => [x.T, x.mean_abs_logit_err] as const) })), ...reference],
    }),
    top1: lineChart({
      title: 'Top-1 agreement with the ANN vs T', xLabel: 'time steps T', yLabel: 'top-1 agreement', xLog: Math.min(...Ts) > 0, note,
      series: backends.map((b) => ({ name: b, points: by(b).map((x) => [x.T, x.top1_agreement] as const) })),
    }),
    energy: lineChart({
      title: 'Energy of the SNN relative to the ANN vs T', xLabel: 'time steps T', yLabel: 'E_SNN / E_ANN (compute only)', xLog: true, yLog: true, note,
      series: (['fp32', 'fp16', 'int8'] as const).map((p) => ({ name: p, points: by(backends[0]!).map((x) => [x.T, x[`energy_ratio_${p}`]] as const) })),
      hlines: [{ y: 1, label: 'break-even (E_SNN = E_ANN)' }],
    }),
    time: lineChart({
      title: 'Time per token vs T', xLabel: 'time steps T', yLabel: 'ms per token', xLog: true, yLog: true, note,
      series: backends.flatMap((b) => [
        { name: `${b} multi-step`, points: by(b).map((x) => [x.T, x.ms_per_token_multi] as const) },
        { name: `${b} single-step`, points: by(b).map((x) => [x.T, x.ms_per_token_single] as const) },
        { name: `${b} event-driven`, points: by(b).map((x) => [x.T, x.ms_per_token_event] as const) },
        { name: `${b} ANN × T`, dashed: true, points: by(b).map((x) => [x.T, x.T * x.ms_per_token_ann] as const) },
      ]),
    }),
  };
}

const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
const num = (v: number, d = 3) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');

export function toMarkdown(r: SweepResult): string {
  const m = r.metadata;
  const lines: string[] = ['# spikelm benchmark report', '', `Model \`${m.model}\`; spiking model: ${m.snn}.`, '', '| metadata | |', '|---|---|'];
  for (const [k, v] of Object.entries(m)) lines.push(`| ${k} | ${String(v)} |`);
  const backends = [...new Set(r.rows.map((x) => x.backend))];
  for (const b of backends) {
    const rows = r.rows.filter((x) => x.backend === b);
    lines.push('', `## ${b}`, '', `Fidelity over ${m.positions} positions; speed over ${m.time_tokens} tokens; cost = SNN time / (T × ANN time).`, '');
    lines.push('| T | top-1 | KL | mean \\|Δlogit\\| | ppl SNN/ANN | distinct SNN/ANN | spikes/neuron/step | nonzero spikes | E_SNN/E_ANN fp32 | T×rate (break-even 5.1) | ms/token multi | single | event | cost multi | cost event |');
    lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const x of rows) {
      lines.push(`| ${x.T} | ${pct(x.top1_agreement)} | ${x.kl.toExponential(2)} | ${num(x.mean_abs_logit_err, 4)} | ${num(x.ppl_snn / x.ppl_ann)} | ${x.distinct_predictions_snn}/${x.distinct_predictions_ann} | ${num(x.spike_rate)} | ${Number.isFinite(x.spike_density) ? pct(x.spike_density) : 'n/a'} | ${num(x.energy_ratio_fp32, 2)} | ${num(x.t_times_rate, 2)} | ${num(x.ms_per_token_multi)} | ${num(x.ms_per_token_single)} | ${num(x.ms_per_token_event)} | ${num(x.cost_multi, 2)}·T | ${num(x.cost_event, 2)}·T |`);
    }
    const layers = Object.keys(rows[0]?.spikes_per_layer ?? {});
    lines.push('', 'Spikes per neuron per step, by layer:', '', `| T | ${layers.join(' | ')} |`, `|---|${layers.map(() => '---').join('|')}|`);
    for (const x of rows) lines.push(`| ${x.T} | ${layers.map((l) => num(x.spikes_per_layer[l] ?? NaN)).join(' | ')} |`);
  }
  lines.push('', '## Targets', '');
  for (const b of backends) {
    const t16 = r.rows.find((x) => x.backend === b && x.T === 16);
    if (!t16) {
      lines.push(`- ${b}: T = 16 was not in the sweep; the cost targets are checked there.`);
      continue;
    }
    const multiOk = t16.cost_multi <= TARGETS.multiAtT16;
    lines.push(`- ${b}, multi-step at T = 16: ${num(t16.cost_multi, 2)}·T × ANN — target ≤ ${TARGETS.multiAtT16}·T: **${multiOk ? 'met' : 'not met'}**.`);
    const sparse = t16.spike_rate <= TARGETS.eventSpikeRate;
    const eventOk = t16.cost_event <= TARGETS.eventAtT16;
    lines.push(`- ${b}, event-driven at T = 16: ${num(t16.cost_event, 2)}·T × ANN at ${num(t16.spike_rate)} spikes/neuron/step — target ≤ ${TARGETS.eventAtT16}·T where the spike rate ≤ ${TARGETS.eventSpikeRate}: **${sparse ? (eventOk ? 'met' : 'not met') : `not applicable (spike rate ${num(t16.spike_rate)} > ${TARGETS.eventSpikeRate})`}**.`);
  }
  const fid = r.rows.filter((x) => x.backend === backends[0]);
  const at = (T: number) => fid.find((x) => x.T === T);
  if (at(32)) lines.push(`- Fidelity at T = 32 (issue 4: top-1 ≥ 95%, KL ≤ 0.01): ${pct(at(32)!.top1_agreement)}, KL ${at(32)!.kl.toExponential(2)}.`);
  if (at(128)) lines.push(`- Fidelity at T = 128 (issue 4: top-1 ≥ 98%): ${pct(at(128)!.top1_agreement)}.`);
  lines.push('', 'Energy counts compute only (Horowitz, 45 nm); memory and data movement are excluded.', '', '## Plots', '');
  for (const [, file] of Object.entries(PLOTS)) lines.push(`![${file}](${file})`, '');
  lines.push('How to read them: the fidelity plot is log–log; a curve parallel to the dashed θ/T line is converging at 1/T, as the quantization argument predicts (each doubling of T halves the error). The energy plot shows where the SNN would pay off: below the break-even line. The time plot compares each execution mode with T forward passes of the ANN (dashed).');
  return `${lines.join('\n')}\n`;
}

export function writeReport(dir: string, r: SweepResult): string[] {
  const files: [string, string][] = [
    ['results.json', `${JSON.stringify(r, null, 2)}\n`],
    ['results.csv', toCsv(r)],
    ['report.md', toMarkdown(r)],
    ...Object.entries(plots(r)).map(([k, svg]) => [PLOTS[k as keyof typeof PLOTS], svg] as [string, string]),
  ];
  for (const [name, text] of files) atomicWriteFile(path.join(dir, name), text);
  return files.map(([name]) => path.join(dir, name));
}
