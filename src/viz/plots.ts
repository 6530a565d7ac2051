/**
 * The pictures of `spikelm spikes`, as standalone SVG (no dependency; text XML-escaped):
 *
 *   raster    per site kind: a sample of neurons (rows, grouped by layer) against time (token ×
 *             plane, or token × step), one mark per nonzero digit, +1 and −1 in two colours (a
 *             burst's magnitude as opacity); the title says how many neurons of how many are drawn
 *   heatmap   spikes per neuron per token of every (layer, site kind), from the tally
 *   energy    the energy of the SNN against the ANN's, stacked by part (synapses, membranes,
 *             neurons, dense operators, … and memory traffic), from the same counters as the report
 */
import { escapeXml as esc } from '../bench/svg.js';
import type { SiteSpikes, SpikeRecording } from './record.js';

const POS = '#1f5fb4', NEG = '#d62728';
const PART_COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f', '#d62728', '#aec7e8', '#98df8a'];

/** Evenly spaced channel indices: at most n of C (all when C ≤ n). */
export function sampleChannels(C: number, n: number): number[] {
  if (C <= n) return Array.from({ length: C }, (_, i) => i);
  return Array.from({ length: n }, (_, i) => Math.floor((i * C) / n));
}

export interface RasterSpec {
  readonly kind: string;
  readonly sites: readonly SiteSpikes[];
  /** Neurons drawn per site (layer). */
  readonly perSite: number;
  readonly schedule: string;
  readonly note?: string;
}

/** The marks a raster draws (for tests): one per nonzero digit of the sampled neurons. */
export function rasterMarks(spec: RasterSpec): { row: number; x: number; value: number }[] {
  const marks: { row: number; x: number; value: number }[] = [];
  // a token's slot is as wide as the most planes any site of the kind runs; a site with fewer
  // places its planes at the slot's end (their last, least significant plane aligned)
  const slot = Math.max(1, ...spec.sites.map((s) => s.steps));
  let row = 0;
  for (const s of spec.sites) {
    const chans = sampleChannels(s.channels, spec.perSite);
    for (const c of chans) {
      for (let t = 0; t < s.tokens; t++) {
        for (let p = 0; p < s.steps; p++) {
          const v = s.digits[(p * s.tokens + t) * s.channels + c]!;
          if (v !== 0) marks.push({ row, x: t * slot + slot - s.steps + p, value: v });
        }
      }
      row++;
    }
  }
  return marks;
}

export function rasterSvg(spec: RasterSpec): string {
  const sites = spec.sites;
  const tokens = sites[0]?.tokens ?? 0, steps = Math.max(1, ...sites.map((s) => s.steps));
  const rows = sites.reduce((a, s) => a + Math.min(s.channels, spec.perSite), 0);
  const total = sites.reduce((a, s) => a + s.channels, 0);
  const cellW = Math.max(1, Math.min(6, 900 / Math.max(1, tokens * steps))), cellH = Math.max(2, Math.min(6, 480 / Math.max(1, rows)));
  const left = 110, top = 56, plotW = tokens * steps * cellW, plotH = rows * cellH;
  const W = Math.max(560, left + plotW + 30), H = top + plotH + 70;
  const unit = spec.schedule === 'layerwise' ? 'plane' : 'step';
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="11">`,
    `<title>Spike raster: ${esc(spec.kind)}</title>`, `<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`,
    `<text x="${left}" y="20" font-size="14">Spikes at ${esc(spec.kind)}: ${rows} of ${total} neurons (at most ${spec.perSite} per layer, evenly spaced channels)</text>`,
    `<text x="${left}" y="38" fill="#555">time: token × ${unit} (${steps} ${unit}s per token, ${tokens} tokens); <tspan fill="${POS}">■ +1</tspan> <tspan fill="${NEG}">■ −1</tspan>${spec.schedule === 'stepwise' ? ' (bursts darker)' : ''}</text>`,
    `<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="#fafafa" stroke="#ccc"/>`,
  ];
  // token boundaries
  for (let t = 1; t < tokens; t++) out.push(`<line x1="${left + t * steps * cellW}" y1="${top}" x2="${left + t * steps * cellW}" y2="${top + plotH}" stroke="#e6e6e6"/>`);
  let row = 0;
  for (const s of sites) {
    const n = Math.min(s.channels, spec.perSite);
    out.push(`<text x="${left - 6}" y="${top + (row + n / 2) * cellH + 4}" text-anchor="end">${esc(s.layer < 0 ? s.site : `layer ${s.layer}`)}</text>`);
    if (row > 0) out.push(`<line x1="${left}" y1="${top + row * cellH}" x2="${left + plotW}" y2="${top + row * cellH}" stroke="#999"/>`);
    row += n;
  }
  // a loop, not Math.max(...marks): a long prompt's raster has more marks than a call takes arguments
  const marks = rasterMarks(spec);
  let maxAbs = 1;
  for (const m of marks) maxAbs = Math.max(maxAbs, Math.abs(m.value));
  for (const m of marks) {
    const op = maxAbs > 1 ? (0.35 + 0.65 * Math.abs(m.value) / maxAbs).toFixed(2) : '1';
    out.push(`<rect x="${(left + m.x * cellW).toFixed(1)}" y="${(top + m.row * cellH).toFixed(1)}" width="${cellW.toFixed(1)}" height="${cellH.toFixed(1)}" fill="${m.value > 0 ? POS : NEG}" fill-opacity="${op}"/>`);
  }
  out.push(`<text x="${left + plotW / 2}" y="${top + plotH + 20}" text-anchor="middle">token × ${unit}</text>`);
  if (spec.note) out.push(`<text x="${left}" y="${H - 12}" fill="#777" font-size="10">${esc(spec.note)}</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/** Firing rate (spikes per neuron per token) of every (layer, site kind) from the recording's tally. */
export function firingRates(rec: SpikeRecording): { layers: string[]; kinds: string[]; value: (layer: string, kind: string) => number | undefined } {
  const s = rec.tally.summary().perSite;
  const layerOf = (site: string) => (site.startsWith('layers.') ? site.split('.').slice(0, 2).join('.') : 'head');
  const layers = [...new Set(s.map((x) => layerOf(x.site)))];
  const kinds = [...new Set(s.map((x) => x.kind))];
  const map = new Map(s.map((x) => [`${layerOf(x.site)}|${x.kind}`, x.spikesPerNeuronPerToken]));
  return { layers, kinds, value: (l, k) => map.get(`${l}|${k}`) };
}

export function heatmapSvg(rec: SpikeRecording, note?: string): string {
  const { layers, kinds, value } = firingRates(rec);
  const cw = 86, ch = 28, left = 90, top = 64;
  const W = left + kinds.length * cw + 120, H = top + layers.length * ch + 50;
  const all = layers.flatMap((l) => kinds.map((k) => value(l, k))).filter((v): v is number => v !== undefined);
  const max = Math.max(1e-9, ...all);
  const color = (v: number) => {
    const f = Math.min(1, v / max);
    const r = Math.round(255 - f * (255 - 31)), g = Math.round(255 - f * (255 - 95)), b = Math.round(255 - f * (255 - 180));
    return `rgb(${r},${g},${b})`;
  };
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="11">`,
    '<title>Firing rate per layer and site</title>', `<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`,
    `<text x="${left}" y="20" font-size="14">Spikes per neuron per token, by layer and site (${rec.schedule} ${esc(rec.coding)}, ${rec.tokens} tokens)</text>`,
  ];
  kinds.forEach((k, j) => out.push(`<text x="${left + j * cw + cw / 2}" y="${top - 8}" text-anchor="middle">${esc(k)}</text>`));
  layers.forEach((l, i) => {
    out.push(`<text x="${left - 6}" y="${top + i * ch + ch / 2 + 4}" text-anchor="end">${esc(l)}</text>`);
    kinds.forEach((k, j) => {
      const v = value(l, k);
      const x = left + j * cw, y = top + i * ch;
      out.push(`<rect x="${x}" y="${y}" width="${cw - 2}" height="${ch - 2}" fill="${v === undefined ? '#eee' : color(v)}"/>`);
      if (v !== undefined) out.push(`<text x="${x + cw / 2 - 1}" y="${y + ch / 2 + 3}" text-anchor="middle" fill="${v / max > 0.6 ? 'white' : '#222'}">${v.toFixed(2)}</text>`);
    });
  });
  if (note) out.push(`<text x="${left}" y="${H - 12}" fill="#777" font-size="10">${esc(note)}</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

export interface EnergyBars {
  /** Groups of two bars (ANN, SNN) each on its own scale, e.g. compute only, then with memory traffic. */
  readonly groups: readonly { readonly label: string; readonly ann: Record<string, number>; readonly snn: Record<string, number> }[];
  readonly title: string;
  readonly note?: string;
}

export function energyBarsSvg(e: EnergyBars): string {
  const parts = [...new Set(e.groups.flatMap((g) => [...Object.keys(g.ann), ...Object.keys(g.snn)]))]
    .filter((p) => e.groups.some((g) => (g.ann[p] ?? 0) > 0 || (g.snn[p] ?? 0) > 0));
  const color = (p: string) => PART_COLORS[parts.indexOf(p) % PART_COLORS.length]!;
  const total = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
  const fmt = (j: number) => (j >= 1e-3 ? `${(j * 1e3).toPrecision(3)} mJ` : j >= 1e-6 ? `${(j * 1e6).toPrecision(3)} µJ` : `${(j * 1e9).toPrecision(3)} nJ`);
  const left = 60, barW = 620, barH = 26, gap = 10, groupGap = 34;
  const top = 50, groupH = 18 + 2 * barH + gap;
  const legendTop = top + e.groups.length * (groupH + groupGap);
  const W = left + barW + 150, H = legendTop + parts.length * 16 + 36;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="11">`,
    `<title>${esc(e.title)}</title>`, `<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`, `<text x="${left}" y="22" font-size="14">${esc(e.title)}</text>`,
  ];
  e.groups.forEach((g, gi) => {
    const y0 = top + gi * (groupH + groupGap);
    const scale = barW / Math.max(total(g.ann), total(g.snn), 1e-30);
    out.push(`<text x="${left}" y="${y0 + 10}" font-weight="bold">${esc(g.label)} (SNN/ANN ${(total(g.snn) / Math.max(total(g.ann), 1e-30)).toFixed(2)}×)</text>`);
    (['ann', 'snn'] as const).forEach((net, i) => {
      const y = y0 + 18 + i * (barH + gap);
      out.push(`<text x="${left - 8}" y="${y + barH / 2 + 4}" text-anchor="end">${net.toUpperCase()}</text>`);
      let x = left;
      for (const p of parts) {
        const v = g[net][p] ?? 0, w = v * scale;
        if (w <= 0) continue;
        out.push(`<rect x="${x.toFixed(2)}" y="${y}" width="${w.toFixed(2)}" height="${barH}" fill="${color(p)}"><title>${esc(p)}: ${fmt(v)}</title></rect>`);
        x += w;
      }
      out.push(`<text x="${x + 6}" y="${y + barH / 2 + 4}">${fmt(total(g[net]))}</text>`);
    });
  });
  const last = e.groups.at(-1)!;
  parts.forEach((p, j) => {
    const y = legendTop + j * 16;
    out.push(`<rect x="${left}" y="${y - 9}" width="10" height="10" fill="${color(p)}"/>`);
    out.push(`<text x="${left + 14}" y="${y}">${esc(p)}: ANN ${fmt(last.ann[p] ?? 0)}, SNN ${fmt(last.snn[p] ?? 0)}</text>`);
  });
  if (e.note) out.push(`<text x="${left}" y="${H - 12}" fill="#777" font-size="10">${esc(e.note)}</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
