/**
 * `spikelm spikes --model DIR [--snn OUT] --prompt TEXT --out DIR`: what the spiking network fires on
 * a prompt, as pictures (src/viz): a raster per site kind, a heatmap of firing rates per layer and
 * site, and a bar chart of energy per part against the ANN's; beside them the raw events
 * (events.csv: every nonzero digit) and spikes.json (per site: events drawn from, the tally's count,
 * neurons, the sample drawn). Everything comes from one forward and its tally, the counters the
 * energy report uses.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ArgumentError } from '../errors.js';
import { atomicWriteFile } from '../io/atomic-write.js';
import { ENERGY_PRESETS, energyReport } from '../snn/energy.js';
import { DEFAULT_MEMORY_PRESET, MEMORY_PRESETS, memoryReport } from '../snn/memory.js';
import { STAT } from '../tensor/kernels/codes.js';
import { type SpikeRecording, eventsCsv, recordSpikes } from '../viz/record.js';
import { energyBarsSvg, heatmapSvg, rasterSvg, sampleChannels } from '../viz/plots.js';
import { nonNegativeInt, requireFlag } from './args.js';
import { type Command, MODEL_FLAGS } from './command.js';
import { CONVERSION_FLAGS, loadSessionModels } from './session.js';
import type { SpikingLM } from '../snn/model.js';

export const spikesCommand: Command = {
  name: 'spikes',
  summary: 'draw what the spiking model fires on a prompt: rasters per site kind, firing rates per layer × site, energy per part (SVG, with the raw events)',
  flags: {
    ...MODEL_FLAGS,
    snn: { type: 'optional-string', help: 'a converted model directory (default: convert --model now, for the target)' },
    ...CONVERSION_FLAGS,
    timesteps: { type: 'int', help: 'with --snn alone: convert at this fixed T instead of for the target' },
    prompt: { type: 'string', required: true, help: 'the text whose spikes are drawn' },
    out: { type: 'string', required: true, help: 'output directory for the SVG files, events.csv and spikes.json', aliases: ['output-dir'] },
    neurons: { type: 'int', help: 'neurons drawn per layer in each raster (evenly spaced channels)', default: 32 },
  },
  async run({ flags }, io) {
    const prompt = requireFlag<string>(flags, 'prompt', 'spikes');
    const out = requireFlag<string>(flags, 'out', 'spikes');
    const perSite = nonNegativeInt(flags.neurons, '--neurons');
    if (perSite < 1) throw new ArgumentError('--neurons must be at least 1');
    const { ann, snn, tokenizer, dir } = await loadSessionModels({ ...flags, snn: flags.snn ?? true }, io);
    const ids = tokenizer.encode(prompt);
    if (ids.length === 0) throw new ArgumentError('spikes: the prompt encodes to no tokens');
    if (ids.length > ann.config.maxPositions) throw new ArgumentError(`spikes: the prompt is ${ids.length} tokens, longer than the model's ${ann.config.maxPositions} positions`);
    const rec = await recordSpikes(snn!, ids);
    fs.mkdirSync(out, { recursive: true });
    const files = writeSpikePictures(out, snn!, rec, perSite, `${dir} · ${rec.schedule} ${rec.coding} · ${rec.execution} execution · ${ids.length} tokens of "${prompt.slice(0, 60)}${prompt.length > 60 ? '…' : ''}"`);
    for (const f of files) io.out(`${f}\n`);
    return 0;
  },
};

/** The file name of a site kind's raster. */
export const rasterFile = (kind: string) => `raster-${kind}.svg`;

/** Write the pictures, events.csv and spikes.json of a recording into `out`; returns the paths. */
export function writeSpikePictures(out: string, snn: SpikingLM, rec: SpikeRecording, perSite: number, note: string): string[] {
  const files: [string, string][] = [];
  const kinds = [...new Set(rec.sites.map((s) => s.kind))];
  for (const kind of kinds) files.push([rasterFile(kind), rasterSvg({ kind, sites: rec.sites.filter((s) => s.kind === kind), perSite, schedule: rec.schedule, note })]);
  files.push(['firing-rates.svg', heatmapSvg(rec, note)]);
  // energy by part, at FP32, from the counters of this forward (with memory traffic for the layerwise schedule)
  const input = { config: snn.config, schedule: snn.schedule, coding: snn.coding, timesteps: snn.timesteps, stepsOf: (s: { name: string }) => snn.stepsOf(s.name), maxSpikes: snn.spiking.neuron.maxSpikes, tally: rec.tally };
  const e = energyReport(input), price = ENERGY_PRESETS.fp32;
  const joules = (parts: Record<string, { acs: number; macs: number }>) => Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, v.acs * price.ac + v.macs * price.mac]));
  const ann = joules(e.ann.parts), snnParts = joules(e.snn.parts);
  const groups = [{ label: 'compute', ann, snn: snnParts }];
  if (snn.schedule === 'layerwise') {
    const m = memoryReport(input, e, 'prefill', 'fp32', MEMORY_PRESETS[DEFAULT_MEMORY_PRESET]!);
    groups.push({ label: `compute and memory traffic (${m.preset}, the prompt as one forward)`, ann: { ...ann, 'memory traffic': m.ann.memoryJoules }, snn: { ...snnParts, 'memory traffic': m.snn.memoryJoules } });
  }
  files.push(['energy.svg', energyBarsSvg({ groups, title: 'Energy per part, SNN against ANN (FP32, Horowitz 45 nm)', note })]);
  files.push(['events.csv', eventsCsv(rec)]);
  const summary = rec.tally.summary();
  const tallyEvents = new Map(rec.tally.sites.map((s, i) => [s.name, rec.tally.get(i, 'events' as keyof typeof STAT)]));
  files.push(['spikes.json', `${JSON.stringify({
    schedule: rec.schedule, coding: rec.coding, execution: rec.execution, tokens: rec.tokens, neurons_drawn_per_layer: perSite,
    note: 'events: Σ|digit| of every digit observed (events.csv lists each nonzero one); tally_events: the kernels\' count for the same site. p_in (attention probabilities) is counted by the tally but not observed (its digits stay inside the spike-attention kernel), so it has no raster.',
    sites: rec.sites.map((s) => ({
      site: s.site, kind: s.kind, layer: s.layer, channels: s.channels, steps: s.steps, events: s.events, tally_events: tallyEvents.get(s.site),
      drawn: sampleChannels(s.channels, perSite).length,
    })),
    tally: summary.perSite.map((p) => ({ site: p.site, kind: p.kind, events: p.events, neurons: p.neurons, spikes_per_neuron_per_token: p.spikesPerNeuronPerToken })),
    energy_fp32_joules: groups.at(-1),
  }, null, 2)}\n`]);
  for (const [name, text] of files) atomicWriteFile(path.join(out, name), text);
  return files.map(([name]) => path.join(out, name));
}
