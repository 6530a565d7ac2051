/**
 * A small SVG line-chart writer (no browser, no dependency): linear or log axes with ticks, one
 * polyline per series with point markers, dashed reference lines, a legend. Output is standalone
 * SVG 1.1 that browsers and GitHub render; text is XML-escaped.
 */

export interface Series {
  readonly name: string;
  readonly points: readonly (readonly [number, number])[];
  readonly dashed?: boolean;
}

export interface ChartSpec {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly xLog?: boolean;
  readonly yLog?: boolean;
  readonly series: readonly Series[];
  /** Horizontal reference lines. */
  readonly hlines?: readonly { readonly y: number; readonly label: string }[];
  readonly width?: number;
  readonly height?: number;
  /** Footnote (e.g. the run's metadata). */
  readonly note?: string;
  /** Only points with y in [min, max] are drawn (the axis spans that window); say so in the title. */
  readonly yWindow?: readonly [number, number];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#17becf', '#7f7f7f'];

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

function niceTicks(lo: number, hi: number, log: boolean): number[] {
  if (log) {
    // A range whose ends underflow to 0 (or overflow) has no decades to walk: just its ends.
    const eLo = Math.floor(Math.log10(lo)), eHi = Math.ceil(Math.log10(hi));
    if (!Number.isFinite(eLo) || !Number.isFinite(eHi)) return [lo, hi].filter((v) => Number.isFinite(v) && v > 0);
    // At most ~12 labelled decades; wider ranges label every k-th decade (1 only).
    const stride = Math.max(1, Math.ceil((eHi - eLo + 1) / 12));
    const mantissas = stride === 1 ? [1, 2, 5] : [1];
    const ticks: number[] = [];
    for (let e = eLo; e <= eHi; e += stride) {
      for (const m of mantissas) {
        const v = m * 10 ** e;
        if (v >= lo * 0.999 && v <= hi * 1.001) ticks.push(v);
      }
    }
    return ticks.length >= 2 ? ticks : [lo, hi];
  }
  const span = hi - lo || Math.abs(hi) || 1;
  const step = 10 ** Math.floor(Math.log10(span / 5));
  // Spans that underflow or overflow float64 steps get just their ends (and never an endless loop).
  if (!(step > 0) || !Number.isFinite(step) || !Number.isFinite(span)) return [lo, hi].filter(Number.isFinite);
  const mult = [1, 2, 5, 10].find((m) => span / (m * step) <= 6) ?? 10;
  const s = mult * step;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / s) * s, n = 0; v <= hi + s * 1e-9 && n < 24; v += s, n++) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function fmt(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-3 ? v.toExponential(0) : Number(v.toPrecision(3)).toString();
}

export function lineChart(spec: ChartSpec): string {
  const W = spec.width ?? 640, H = spec.height ?? 400;
  // the legend's column is as wide as its longest name (≈ 7 px per character at 12 px)
  const left = 70, right = Math.max(170, 50 + 7 * Math.max(0, ...spec.series.map((s) => s.name.length))), top = 40, bottom = 70;
  const pw = W - left - right, ph = H - top - bottom;
  const win = spec.yWindow;
  const drawable = ([x, y]: readonly [number, number]) => Number.isFinite(x) && Number.isFinite(y) && (!spec.xLog || x > 0) && (!spec.yLog || y > 0) && (!win || (y >= win[0] && y <= win[1]));
  const pts = spec.series.flatMap((s) => s.points).filter(drawable);
  const ys = [...pts.map((p) => p[1]), ...(spec.hlines ?? []).map((h) => h.y)];
  let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (!Number.isFinite(x0)) [x0, x1] = [1, 2];
  if (!Number.isFinite(y0)) [y0, y1] = [spec.yLog ? 1 : 0, spec.yLog ? 10 : 1];
  if (x0 === x1) [x0, x1] = spec.xLog ? [x0 / 2, x1 * 2] : [x0 - 1, x1 + 1];
  if (y0 === y1) [y0, y1] = spec.yLog ? [y0 / 2, y1 * 2] : [y0 - 1, y1 + 1];
  // Halving the smallest subnormal gives 0, which a log axis cannot hold: widen upwards instead.
  if (spec.xLog && !(x0 > 0)) [x0, x1] = [Number.MIN_VALUE, Math.max(x1, Number.MIN_VALUE * 4)];
  if (spec.yLog && !(y0 > 0)) [y0, y1] = [Number.MIN_VALUE, Math.max(y1, Number.MIN_VALUE * 4)];
  if (win) [y0, y1] = [Math.min(y0, win[0]), Math.max(y1, win[1])];
  if (!spec.yLog) {
    const pad = (y1 - y0) * 0.05;
    if (Number.isFinite(pad)) [y0, y1] = [y0 - pad, y1 + pad];
  } else [y0, y1] = [y0 / 1.2, y1 * 1.2];
  // Ranges beyond float64 (|y| near 1.8e308) cannot be drawn proportionally: clamp them.
  const LIM = 1e300;
  [x0, x1] = [Math.max(x0, -LIM), Math.min(x1, LIM)];
  [y0, y1] = [Math.max(y0, spec.yLog ? 1e-300 : -LIM), Math.min(y1, LIM)];
  const frac = (v: number, lo: number, hi: number, log: boolean) => {
    const f = log ? (Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)) : v / (hi - lo) - lo / (hi - lo);
    return Number.isFinite(f) ? Math.min(1.05, Math.max(-0.05, f)) : 0;
  };
  const tx = (x: number) => left + frac(x, x0, x1, spec.xLog ?? false) * pw;
  const ty = (y: number) => top + ph - frac(y, y0, y1, spec.yLog ?? false) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<title>${escapeXml(spec.title)}</title>`);
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${left + pw / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(spec.title)}</text>`);
  out.push(`<g stroke="#ddd" stroke-width="1">`);
  const xt = niceTicks(x0, x1, spec.xLog ?? false), yt = niceTicks(y0, y1, spec.yLog ?? false);
  for (const x of xt) out.push(`<line x1="${tx(x).toFixed(1)}" y1="${top}" x2="${tx(x).toFixed(1)}" y2="${top + ph}"/>`);
  for (const y of yt) out.push(`<line x1="${left}" y1="${ty(y).toFixed(1)}" x2="${left + pw}" y2="${ty(y).toFixed(1)}"/>`);
  out.push('</g>');
  out.push(`<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  for (const x of xt) out.push(`<text x="${tx(x).toFixed(1)}" y="${top + ph + 16}" text-anchor="middle">${fmt(x)}</text>`);
  for (const y of yt) out.push(`<text x="${left - 6}" y="${(ty(y) + 4).toFixed(1)}" text-anchor="end">${fmt(y)}</text>`);
  out.push(`<text x="${left + pw / 2}" y="${top + ph + 34}" text-anchor="middle">${escapeXml(spec.xLabel)}</text>`);
  out.push(`<text x="16" y="${top + ph / 2}" text-anchor="middle" transform="rotate(-90 16 ${top + ph / 2})">${escapeXml(spec.yLabel)}</text>`);
  for (const h of spec.hlines ?? []) {
    out.push(`<line x1="${left}" y1="${ty(h.y).toFixed(1)}" x2="${left + pw}" y2="${ty(h.y).toFixed(1)}" stroke="#555" stroke-dasharray="6 4"/>`);
    out.push(`<text x="${left + pw - 4}" y="${(ty(h.y) - 4).toFixed(1)}" text-anchor="end" fill="#555">${escapeXml(h.label)}</text>`);
  }
  spec.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    const valid = s.points.filter(drawable);
    const path = valid.map(([x, y]) => `${tx(x).toFixed(1)},${ty(y).toFixed(1)}`).join(' ');
    if (valid.length > 1) out.push(`<polyline points="${path}" fill="none" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 4"' : ''}/>`);
    if (!s.dashed) for (const [x, y] of valid) out.push(`<circle cx="${tx(x).toFixed(1)}" cy="${ty(y).toFixed(1)}" r="3" fill="${color}"/>`);
    const ly = top + 10 + i * 18;
    out.push(`<line x1="${left + pw + 12}" y1="${ly}" x2="${left + pw + 36}" y2="${ly}" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 4"' : ''}/>`);
    out.push(`<text x="${left + pw + 40}" y="${ly + 4}">${escapeXml(s.name)}</text>`);
  });
  if (spec.note) {
    // wrap the footnote at ' · ' separators to fit the width (≈ 5 px per character at 9 px)
    const parts = spec.note.split(' · ');
    const rows: string[] = [''];
    for (const part of parts) {
      const cur = rows[rows.length - 1]!;
      if (cur && (cur.length + part.length + 3) * 5 > W - left - 10) rows.push(part);
      else rows[rows.length - 1] = cur ? `${cur} · ${part}` : part;
    }
    rows.forEach((row, i) => out.push(`<text x="${left}" y="${H - 6 - (rows.length - 1 - i) * 11}" font-size="9" fill="#777">${escapeXml(row)}</text>`));
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
