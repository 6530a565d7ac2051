/**
 * `spikelm spikes` and the pictures of src/viz: the raster's events are the tally's (full, unsampled
 * counts; and what the SVG draws is the sampled marks, one rect each), the heatmap shows the tally's
 * firing rates, the energy chart the energy report's totals; stepwise bursts too.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../src/cli/main.js';
import { convertModelToSpiking, createCalibrationData } from '../src/convert/api.js';
import { loadModel } from '../src/nn/model.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';
import { energyReport } from '../src/snn/energy.js';
import { firingRates, heatmapSvg, rasterMarks, rasterSvg, sampleChannels } from '../src/viz/plots.js';
import { eventsCsv, recordSpikes } from '../src/viz/record.js';
import { fixtureDir } from './helpers/fixtures.js';
import { checkWellFormedXml } from './helpers/xml.js';

const stories = fixtureDir('stories260k');
const tok = loadTokenizer(stories);
const ids = tok.encode('Once upon a time, there was a little girl named Lily.');

describe('recording spikes', () => {
  it.for(['layerwise', 'stepwise'] as const)('%s: the recorded events of every observed site equal the tally\'s, and the raster of all neurons draws exactly them', async (schedule) => {
    const ann = loadModel(stories);
    const { snn } = await convertModelToSpiking(ann, createCalibrationData(tok, { numSamples: 4 }), schedule === 'stepwise' ? { schedule, coding: 'rate', timesteps: 6 } : {});
    const rec = await recordSpikes(snn, ids);
    expect(rec.execution).toBe(schedule === 'layerwise' ? 'event' : 'multi');
    const tallyEvents = new Map(rec.tally.summary().perSite.map((p) => [p.site, p.events]));
    // every site but the attention probabilities (inside the spike-attention kernel) is observed
    expect(rec.sites.map((s) => s.site).sort()).toEqual(snn.sites.filter((s) => s.kind !== 'p_in').map((s) => s.name).sort());
    for (const s of rec.sites) {
      expect(s.events, s.site).toBeGreaterThan(0);
      expect(s.events, s.site).toBe(tallyEvents.get(s.site));
    }
    if (schedule === 'stepwise') expect(rec.sites.some((s) => s.digits.some((d) => Math.abs(d) > 1))).toBe(true); // bursts
    // the raster, every neuron drawn: its marks carry every event
    for (const kind of new Set(rec.sites.map((s) => s.kind))) {
      const sites = rec.sites.filter((s) => s.kind === kind);
      const all = { kind, sites, perSite: Math.max(...sites.map((s) => s.channels)), schedule };
      const marks = rasterMarks(all);
      expect(marks.reduce((a, m) => a + Math.abs(m.value), 0), kind).toBe(sites.reduce((a, s) => a + (tallyEvents.get(s.site) ?? 0), 0));
      // and the SVG has one rect per mark, beyond the background and the frame
      const svg = rasterSvg({ ...all, perSite: 8 });
      checkWellFormedXml(svg);
      expect(svg.match(/<rect /g)!.length - 2, kind).toBe(rasterMarks({ ...all, perSite: 8 }).length);
      expect(svg).toContain(`${sites.reduce((a, s) => a + Math.min(8, s.channels), 0)} of ${sites.reduce((a, s) => a + s.channels, 0)} neurons`);
    }
    // events.csv lists every nonzero digit with its value
    const csv = eventsCsv(rec).trim().split('\n').slice(1);
    const perSite = new Map<string, number>();
    for (const line of csv) {
      const [site, , , , , value] = line.split(',');
      perSite.set(site!, (perSite.get(site!) ?? 0) + Math.abs(Number(value)));
    }
    for (const s of rec.sites) expect(perSite.get(s.site), s.site).toBe(s.events);
    // the heatmap shows the tally's rates
    const rates = firingRates(rec);
    for (const p of rec.tally.summary().perSite) {
      const layer = p.site.startsWith('layers.') ? p.site.split('.').slice(0, 2).join('.') : 'head';
      expect(rates.value(layer, p.kind)).toBe(p.spikesPerNeuronPerToken);
      expect(heatmapSvg(rec)).toContain(`>${p.spikesPerNeuronPerToken.toFixed(2)}<`);
    }
  });

  it('samples evenly spaced channels', () => {
    expect(sampleChannels(5, 8)).toEqual([0, 1, 2, 3, 4]);
    expect(sampleChannels(10, 4)).toEqual([0, 2, 5, 7]);
  });
});

describe('spikelm spikes', () => {
  it('writes a raster per site kind, the heatmap, the energy chart, events.csv and spikes.json; the counts are the tally\'s', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-spikes-'));
    let stdout = '', stderr = '';
    const code = await main(['spikes', '--model', stories, '--prompt', 'Once upon a time, there was a little girl named Lily.', '--out', out, '--neurons', '16'], {
      out: (t) => void (stdout += t), err: (t) => void (stderr += t),
    });
    expect(code, stderr).toBe(0);
    const kinds = ['attn_in', 'q_in', 'o_in', 'mlp_in', 'down_in', 'head_in'];
    for (const f of [...kinds.map((k) => `raster-${k}.svg`), 'firing-rates.svg', 'energy.svg', 'events.csv', 'spikes.json']) {
      expect(fs.existsSync(path.join(out, f)), f).toBe(true);
      expect(stdout).toContain(path.join(out, f));
      if (f.endsWith('.svg')) checkWellFormedXml(fs.readFileSync(path.join(out, f), 'utf8'));
    }
    const j = JSON.parse(fs.readFileSync(path.join(out, 'spikes.json'), 'utf8'));
    expect(j.execution).toBe('event');
    for (const s of j.sites) {
      expect(s.events, s.site).toBe(s.tally_events);
      expect(s.drawn).toBe(Math.min(16, s.channels));
    }
    // the energy chart's ratio is the energy report's (the bundled model's stored search: about 0.59 at FP32)
    const svg = fs.readFileSync(path.join(out, 'energy.svg'), 'utf8');
    const ratio = Number(/compute \(SNN\/ANN ([\d.]+)×\)/.exec(svg)![1]);
    const e = j.energy_fp32_joules;
    const sum = (r: Record<string, number>) => Object.entries(r).filter(([k]) => k !== 'memory traffic').reduce((a, [, v]) => a + v, 0);
    expect(ratio).toBeCloseTo(sum(e.snn) / sum(e.ann), 2);
    expect(svg).toMatch(/compute and memory traffic \(horowitz-45nm/);
    expect(await main(['spikes', '--model', stories, '--prompt', '', '--out', out], { out: () => {}, err: () => {} })).toBe(2);
  });

  it('the energy chart\'s parts are the energy report\'s', async () => {
    const ann = loadModel(stories);
    const { snn } = await convertModelToSpiking(ann, createCalibrationData(tok, { numSamples: 4 }));
    const rec = await recordSpikes(snn, ids);
    const e = energyReport({ config: snn.config, schedule: snn.schedule, coding: snn.coding, timesteps: snn.timesteps, stepsOf: (s) => snn.stepsOf(s.name), maxSpikes: snn.spiking.neuron.maxSpikes, tally: rec.tally });
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-spikes-parts-'));
    const { writeSpikePictures } = await import('../src/cli/spikes.js');
    writeSpikePictures(out, snn, rec, 8, 'test');
    const j = JSON.parse(fs.readFileSync(path.join(out, 'spikes.json'), 'utf8'));
    for (const [part, ops] of Object.entries(e.snn.parts)) expect(j.energy_fp32_joules.snn[part], part).toBeCloseTo(ops.acs * 0.9e-12 + ops.macs * 4.6e-12, 20);
    for (const [part, ops] of Object.entries(e.ann.parts)) expect(j.energy_fp32_joules.ann[part], part).toBeCloseTo(ops.acs * 0.9e-12 + ops.macs * 4.6e-12, 20);
  });
});

describe('raster geometry', () => {
  it('every mark inside its token\'s slot, with sites of fewer planes aligned at the slot\'s end', () => {
    const digits = (steps: number, tokens: number, C: number) => Float32Array.from({ length: steps * tokens * C }, (_, i) => (i % 3 === 0 ? 1 : i % 3 === 1 ? -1 : 0));
    const sites = [
      { site: 'layers.0.mlp_in', layer: 0, kind: 'mlp_in', channels: 2, steps: 7, tokens: 3, digits: digits(7, 3, 2), events: 0 },
      { site: 'layers.1.mlp_in', layer: 1, kind: 'mlp_in', channels: 2, steps: 5, tokens: 3, digits: digits(5, 3, 2), events: 0 },
    ];
    const marks = rasterMarks({ kind: 'mlp_in', sites, perSite: 2, schedule: 'layerwise' });
    for (const m of marks) {
      const s = sites[m.row < 2 ? 0 : 1]!;
      const t = Math.floor(m.x / 7), p = (m.x % 7) - (7 - s.steps);
      expect(p).toBeGreaterThanOrEqual(0);
      expect(s.digits[(p * s.tokens + t) * s.channels + (m.row % 2)]).toBe(m.value);
    }
    expect(marks.length).toBe([...sites[0]!.digits, ...sites[1]!.digits].filter((d) => d !== 0).length);
  });

  it('draws a long prompt\'s raster (more marks than a call takes arguments: `spikelm spikes` on 480 tokens overflowed the stack)', () => {
    const tokens = 512, steps = 11, C = 64;
    const digits = Float32Array.from({ length: steps * tokens * C }, (_, i) => (i % 2 === 0 ? (i % 4 === 0 ? 1 : -2) : 0));
    const spec = { kind: 'mlp_in', sites: [{ site: 'layers.0.mlp_in', layer: 0, kind: 'mlp_in', channels: C, steps, tokens, digits, events: 0 }], perSite: C, schedule: 'stepwise' as const };
    expect(rasterMarks(spec).length).toBeGreaterThan(150_000);
    const svg = rasterSvg(spec);
    // marks of |value| 2 (the largest) fully opaque, of 1 at 0.35 + 0.65/2
    expect(svg).toContain('fill-opacity="1.00"');
    expect(svg).toContain('fill-opacity="0.68"');
  });
});
