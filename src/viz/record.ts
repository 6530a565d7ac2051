/**
 * Recording what a spiking network fires: one forward with an observer on every encoder that sees
 * its digits, read back to the host.
 *
 *   layerwise  the event execution (the fast one never forms the digit planes): per linear site and
 *              q_in, digits [P·S, C], plane-major (plane p of every token, then p + 1), P = the
 *              site's planes with the extra planes above them. p_in's digits live inside the
 *              spike-attention kernel and are not observed: p_in is counted (the tally) but not drawn.
 *   stepwise   per encoder, spike counts [T·S, C], step-major (bursts may exceed 1 in magnitude).
 *
 * An event is one unit of |digit| (a ±1 digit is one event, a burst of n is n), as the tally counts
 * them; `events` here are the full, unsampled counts a raster is drawn from.
 */
import type { SpikingLM } from '../snn/model.js';
import { SpikeTally } from '../snn/stats.js';
import { CpuBackend } from '../tensor/cpu-backend.js';

export interface SiteSpikes {
  readonly site: string;
  readonly layer: number;
  readonly kind: string;
  readonly channels: number;
  /** Planes (layerwise) or steps (stepwise) per token. */
  readonly steps: number;
  readonly tokens: number;
  /** digits[(p·tokens + s)·channels + c]. */
  readonly digits: Float32Array;
  /** Σ|digit|. */
  readonly events: number;
}

export interface SpikeRecording {
  readonly schedule: string;
  readonly coding: string;
  readonly execution: 'event' | 'multi';
  readonly tokens: number;
  readonly sites: readonly SiteSpikes[];
  /** The forward's tally (every site, p_in included). */
  readonly tally: SpikeTally;
}

/** One forward over `ids` (all positions' logits, so the head runs for every token) with every encoder observed. */
export async function recordSpikes(snn: SpikingLM, ids: readonly number[]): Promise<SpikeRecording> {
  const b = snn.backend;
  const execution = snn.schedule === 'layerwise' ? 'event' : 'multi';
  const seen: { site: string; digits: Promise<Float32Array>; steps: number }[] = [];
  const out = snn.forward(ids, snn.newCache(), {
    allLogits: true, execution,
    // copied now: the forward disposes its intermediate tensors when it ends (the GPU's read is
    // queued here too, before that)
    observeSpikes: (site, spikes, steps) => seen.push({
      site, steps, digits: b instanceof CpuBackend ? Promise.resolve(Float32Array.from(b.readSync(spikes).data)) : b.read(spikes).then((t) => Float32Array.from(t.data)),
    }),
  });
  const tally = new SpikeTally(snn.sites);
  await tally.addForward(snn, out);
  const byName = new Map(snn.sites.map((s) => [s.name, s]));
  const sites: SiteSpikes[] = [];
  for (const x of seen) {
    const info = byName.get(x.site)!;
    const digits = await x.digits;
    let events = 0;
    for (const d of digits) events += Math.abs(d);
    sites.push({ site: x.site, layer: info.layer, kind: info.kind, channels: digits.length / (x.steps * ids.length), steps: x.steps, tokens: ids.length, digits, events });
  }
  b.dispose(out.logits);
  return { schedule: snn.schedule, coding: snn.coding, execution, tokens: ids.length, sites, tally };
}

/** The raw events as CSV rows: site, layer, token, step (plane or time step), neuron, value. */
export function eventsCsv(rec: SpikeRecording): string {
  const lines = ['site,layer,token,step,neuron,value'];
  for (const s of rec.sites) {
    const C = s.channels, S = s.tokens;
    for (let p = 0; p < s.steps; p++) {
      for (let t = 0; t < S; t++) {
        const o = (p * S + t) * C;
        for (let c = 0; c < C; c++) {
          const v = s.digits[o + c]!;
          if (v !== 0) lines.push(`${s.site},${s.layer},${t},${p},${c},${v}`);
        }
      }
    }
  }
  return `${lines.join('\n')}\n`;
}
