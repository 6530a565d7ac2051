/**
 * report.html: the benchmark report as one self-contained page — the metadata, a table per backend
 * with every row of results.json, the targets, and every plot inline as SVG. No scripts, no fonts,
 * no links to fetch: it opens offline, from a file, in any browser.
 */
import type { SweepResult, SweepRow } from './sweep.js';
import { PLOTS, TARGETS, cheapestMeetingTargets, plots, targetOf } from './report.js';

const esc = (s: unknown) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
const num = (v: number, d = 3) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');

/** The table's columns: header and cell of a row. */
const COLUMNS: [string, (x: SweepRow) => string][] = [
  ['unit', (x) => x.unit], ['schedule', (x) => x.schedule], ['code', (x) => x.coding], ['T', (x) => String(x.T)],
  ['top-1', (x) => pct(x.top1_agreement)], ['KL', (x) => x.kl.toExponential(2)], ['mean |Δlogit|', (x) => num(x.mean_abs_logit_err, 4)],
  ['ppl SNN/ANN', (x) => num(x.ppl_snn / x.ppl_ann)], ['spikes/neuron/token', (x) => num(x.spikes_per_neuron_per_token, 2)],
  ['max/neuron/step', (x) => String(x.max_spikes_per_neuron_per_step)], ['nonzero digits', (x) => pct(x.spike_density)],
  ['E/E_ANN fp32', (x) => num(x.energy_ratio_fp32)], ['fp16', (x) => num(x.energy_ratio_fp16)], ['int8', (x) => num(x.energy_ratio_int8)],
  ['ms/token', (x) => num(x.ms_per_token)], ['event', (x) => num(x.ms_per_token_event)], ['cost', (x) => num(x.cost, 2)],
];

const CAPTIONS: Record<keyof typeof PLOTS, string> = {
  frontier: 'Top-1 agreement against E_SNN/E_ANN, one curve per conversion, a point per T; the target is above the 99% line and left of the dashed 0.6 line.',
  fidelity: 'Mean |Δlogit| against T, log–log: rate codes fall as 1/T, weighted codes as 2^(−T).',
  top1: 'Top-1 agreement with the ANN against T.',
  energy: 'E_SNN/E_ANN (FP32, compute only) against T, with the break-even and target lines.',
  time: 'Time per token of each execution against one forward of the ANN (dashed).',
};

const STYLE = `
body { font: 14px/1.45 Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1200px; color: #222; padding: 0 16px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 12px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; white-space: nowrap; }
table.meta td { text-align: left; }
figure.plot { margin: 16px 0; } figure.plot svg { display: block; max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 12px; max-width: 760px; }
.met { color: #1a7f37; font-weight: bold; } .missed { color: #b42318; font-weight: bold; }`;

export function toHtml(r: SweepResult): string {
  const m = r.metadata;
  const out: string[] = [
    '<!doctype html>', '<html lang="en"><head><meta charset="utf-8">', '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>spikelm benchmark report — ${esc(m.model)}</title>`, `<style>${STYLE}</style>`, '</head><body>',
    '<h1>spikelm benchmark report</h1>', `<p>Model <code>${esc(m.model)}</code>; spiking model: ${esc(m.snn)}.</p>`,
    '<table class="meta"><tbody>', ...Object.entries(m).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(typeof v === 'object' ? JSON.stringify(v) : v)}</td></tr>`), '</tbody></table>',
  ];
  const target = targetOf(m);
  for (const b of [...new Set(r.rows.map((x) => x.backend))]) {
    const rows = r.rows.filter((x) => x.backend === b);
    out.push(`<h2>${esc(b)}</h2>`, `<p>Fidelity over ${m.positions} positions; speed over ${m.time_tokens} tokens; cost = SNN time / ANN time for one forward.</p>`);
    out.push(`<table class="results" data-backend="${esc(b)}"><thead><tr>${COLUMNS.map(([h]) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>`);
    for (const x of rows) out.push(`<tr>${COLUMNS.map(([, cell]) => `<td>${esc(cell(x))}</td>`).join('')}</tr>`);
    out.push('</tbody></table>');
    const best = cheapestMeetingTargets(rows, target);
    out.push(best
      ? `<p>The cheapest configuration with top-1 ≥ ${pct(target.top1)}, KL ≤ ${target.kl} and at most one spike per neuron per step: ${esc(best.schedule)} ${esc(best.coding)} at T = ${best.T}, E_SNN/E_ANN ${num(best.energy_ratio_fp32)} at FP32 — target ≤ ${TARGETS.energyFp32}: <span class="${best.energy_ratio_fp32 <= TARGETS.energyFp32 ? 'met">met' : 'missed">not met'}</span>.</p>`
      : `<p>No configuration meets top-1 ≥ ${pct(target.top1)}, KL ≤ ${target.kl} with at most one spike per neuron per step.</p>`);
  }
  out.push('<h2>Plots</h2>', '<p>Energy counts compute only (Horowitz, 45 nm) with every operation of the schedule and code that ran; memory traffic is reported by <code>spikelm fidelity</code>.</p>');
  for (const [key, svg] of Object.entries(plots(r)) as [keyof typeof PLOTS, string][]) {
    out.push(`<figure class="plot" id="${key}">`, svg.replace(/^<\?xml[^>]*>\s*/, ''), `<figcaption>${esc(PLOTS[key])}: ${esc(CAPTIONS[key])}</figcaption>`, '</figure>');
  }
  out.push('</body></html>');
  return `${out.join('\n')}\n`;
}
