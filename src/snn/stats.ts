/**
 * Spike statistics of spiking runs, accumulated on the host across forwards: per encoder site the
 * columns of kernels/codes.ts STAT (summed; the largest burst kept as a maximum), the neurons that
 * ran, and the tokens, attended keys and LM-head rows — everything the energy report counts from.
 *
 *   spikes per neuron per token   events / (neurons × tokens they ran for)   (what a code costs)
 *   spikes per neuron per step    events / neuron-steps
 *   max spikes per neuron per step  1 for the single-spike and weighted codes; a burst for rate
 */
import { ArgumentError } from '../errors.js';
import type { EncoderSite } from './sites.js';
import { STAT, STATS_WIDTH } from '../tensor/kernels/codes.js';
import type { HeadStages, SnnOutput, SpikingLM } from './model.js';

export class SpikeTally {
  /** [sites × STATS_WIDTH] */
  readonly stats: Float64Array;
  /** Neuron-tokens per site (p_in: neurons are (head, key) pairs). */
  readonly neurons: Float64Array;
  tokens = 0;
  attendedKeys = 0;
  headRows = 0;
  /**
   * A two-stage head's parameters (the forwards added ran one), and its coarse stage's statistics
   * row: synaptic ops of the coarse events at fan-out V − k, extra planes × (V − k).
   */
  headStages?: HeadStages;
  readonly headCoarse = new Float64Array(STATS_WIDTH);

  constructor(readonly sites: readonly EncoderSite[]) {
    this.stats = new Float64Array(sites.length * STATS_WIDTH);
    this.neurons = new Float64Array(sites.length);
  }

  /**
   * Add one forward: its stats tensor read back, and its counts. A stepwise forward has a stats row
   * per site and step: `steps` (default all) takes the first steps only — a T'-step run's numbers.
   */
  add(stats: Float32Array, out: Pick<SnnOutput, 'neurons' | 'tokens' | 'attendedKeys' | 'headRows' | 'statsSteps' | 'headStages'>, steps = out.statsSteps): void {
    const per = out.statsSteps;
    if (!(steps >= 1 && steps <= per)) throw new ArgumentError(`spike statistics: ${steps} steps asked of a ${per}-step run`);
    const h = out.headStages, rows = this.sites.length * per + (h ? 1 : 0);
    if (stats.length !== rows * STATS_WIDTH) throw new ArgumentError(`spike statistics: ${stats.length / STATS_WIDTH} rows, the forward has ${rows}`);
    if (this.tokens > 0 && (h?.coarsePlanes !== this.headStages?.coarsePlanes || h?.topK !== this.headStages?.topK)) {
      throw new ArgumentError('spike statistics: forwards of different heads (one-stage, or other two-stage parameters) cannot be added into one tally');
    }
    if (h) {
      this.headStages = h;
      const from = this.sites.length * per * STATS_WIDTH;
      for (let k = 0; k < STATS_WIDTH; k++) this.headCoarse[k] = k === STAT.maxPerStep ? Math.max(this.headCoarse[k]!, stats[from + k]!) : this.headCoarse[k]! + stats[from + k]!;
    }
    for (let site = 0; site < this.sites.length; site++) {
      for (let t = 0; t < steps; t++) {
        const from = (site * per + t) * STATS_WIDTH, to = site * STATS_WIDTH;
        for (let k = 0; k < STATS_WIDTH; k++) {
          this.stats[to + k] = k === STAT.maxPerStep ? Math.max(this.stats[to + k]!, stats[from + k]!) : this.stats[to + k]! + stats[from + k]!;
        }
      }
    }
    out.neurons.forEach((n, s) => (this.neurons[s] += n));
    this.tokens += out.tokens;
    this.attendedKeys += out.attendedKeys;
    this.headRows += out.headRows;
  }

  /** Read a forward's statistics back from the device and add them. */
  async addForward(model: SpikingLM, out: SnnOutput, steps?: number): Promise<void> {
    this.add((await model.backend.read(out.stats)).data, out, steps);
  }

  get(site: number, column: keyof typeof STAT): number {
    return this.stats[site * STATS_WIDTH + STAT[column]]!;
  }

  total(column: keyof typeof STAT): number {
    let t = 0;
    for (let s = 0; s < this.sites.length; s++) t = column === 'maxPerStep' ? Math.max(t, this.get(s, column)) : t + this.get(s, column);
    return t;
  }

  summary(): SpikeSummary {
    const events = this.total('events'), neurons = this.neurons.reduce((a, b) => a + b, 0), steps = this.total('neuronSteps');
    const perSite = this.sites.map((s, i) => ({
      site: s.name, kind: s.kind, events: this.get(i, 'events'), neurons: this.neurons[i]!,
      spikesPerNeuronPerToken: this.neurons[i] ? this.get(i, 'events') / this.neurons[i]! : 0,
      spikesPerNeuronPerStep: this.get(i, 'neuronSteps') ? this.get(i, 'events') / this.get(i, 'neuronSteps') : 0,
      maxSpikesPerNeuronPerStep: this.get(i, 'maxPerStep'),
      density: this.get(i, 'neuronSteps') ? this.get(i, 'nonzero') / this.get(i, 'neuronSteps') : 0,
      extraSteps: this.get(i, 'extraSteps'), overflowRows: this.get(i, 'overflowRows'), clipped: this.get(i, 'clipped'),
    }));
    return {
      perSite, events, tokens: this.tokens,
      spikesPerNeuronPerToken: neurons ? events / neurons : 0,
      spikesPerNeuronPerStep: steps ? events / steps : 0,
      maxSpikesPerNeuronPerStep: this.total('maxPerStep'),
      density: steps ? this.total('nonzero') / steps : 0,
      extraSteps: this.total('extraSteps'), overflowRows: this.total('overflowRows'), clipped: this.total('clipped'),
    };
  }
}

export interface SiteSummary {
  readonly site: string;
  readonly kind: EncoderSite['kind'];
  readonly events: number;
  readonly neurons: number;
  readonly spikesPerNeuronPerToken: number;
  readonly spikesPerNeuronPerStep: number;
  readonly maxSpikesPerNeuronPerStep: number;
  /** Fraction of (neuron, step) digits that are nonzero: what an event-driven product skips by. */
  readonly density: number;
  readonly extraSteps: number;
  readonly overflowRows: number;
  readonly clipped: number;
}

export interface SpikeSummary {
  readonly perSite: readonly SiteSummary[];
  readonly events: number;
  readonly tokens: number;
  readonly spikesPerNeuronPerToken: number;
  readonly spikesPerNeuronPerStep: number;
  readonly maxSpikesPerNeuronPerStep: number;
  readonly density: number;
  readonly extraSteps: number;
  readonly overflowRows: number;
  readonly clipped: number;
}

/** The statistics of one forward. */
export async function forwardStats(model: SpikingLM, out: SnnOutput): Promise<SpikeTally> {
  const t = new SpikeTally(model.sites);
  await t.addForward(model, out);
  return t;
}
