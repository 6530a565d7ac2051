/**
 * TemporalSpikeProcessor: runs a spiking (or plain) model over conversations, one KV cache per
 * conversation, feeding only what is not cached yet.
 *
 * forward(inputIds, { attentionMask, useCache, batchIds }) takes, per row, a conversation's whole
 * token sequence so far (left- or right-padded; the mask marks the real tokens). With useCache the
 * processor finds the longest prefix its cache for that conversation already holds, drops what
 * differs after it, and feeds only the rest; it returns logits for the fed positions. A batch of
 * new conversations on an ANN runs as one left-padded forward pass (CausalLM.forwardBatch: the rows'
 * matmuls together, attention masked so that no query sees padding); other rows (continuations,
 * spiking models, all-position logits) run one at a time. Either way a padded batch gives the logits
 * of its unpadded rows.
 *
 * Context limit L = min(maxContextLength, max_position_embeddings). Policy when a conversation
 * outgrows it: a sliding window. The oldest tokens are dropped — at the start of the oldest turn
 * that leaves the window at most `keepFraction`·L long (at a token boundary when no turn starts
 * are known) — and the cache is rebuilt from the kept tokens, with positions starting again at 0.
 * Position ids therefore never reach L; the rebuild costs one prefill of the window, and the
 * headroom (1 − keepFraction)·L is how many tokens can follow before the next rebuild.
 *
 * A stepwise spiking model's cache keeps each token's decoded key and value at every time step (the
 * per-step state past tokens contribute); a layerwise one keeps them once. Either way incremental
 * decoding equals a full recompute.
 */
import { ArgumentError } from '../errors.js';
import { keysAttended } from '../nn/config.js';
import type { KvCache } from '../nn/kv-cache.js';
import { CausalLM } from '../nn/model.js';
import { type EnergyReport, energyReport } from '../snn/energy.js';
import { SpikeTally } from '../snn/stats.js';
import { SpikingLM } from '../snn/model.js';
import { Tensor } from '../tensor/tensor.js';
import { type LanguageModel, asLanguageModel } from './language-model.js';

export interface ProcessorOptions {
  /** Time steps for a spiking model (default: the model's own); ignored for an ANN. */
  readonly T?: number;
  /** Longest context to keep (default 512), capped by the model's max_position_embeddings. */
  readonly maxContextLength?: number;
  /** Fraction of the context kept when the window slides (default 0.75). */
  readonly keepFraction?: number;
}

export interface ForwardOptions {
  /** 1 for real tokens, 0 for padding; same shape as inputIds. */
  readonly attentionMask?: readonly (readonly number[])[] | readonly number[];
  readonly useCache?: boolean;
  /** The conversation of each row (default: the row index). */
  readonly batchIds?: readonly string[];
  /** Token indices (into each row's real tokens) where turns start, for the window policy. */
  readonly turnStarts?: readonly (readonly number[])[];
  /**
   * Logits for every fed position. Default false: only the last position's are computed and read
   * back (the LM head on one row, not all: for GPT-2 ~45% of a prompt's FLOPs, and ~100 MB of
   * read-back per 500-token prompt).
   */
  readonly allLogits?: boolean;
}

export interface ProcessorOutput {
  /** Per row: logits of the fed positions, [n, V] with allLogits, else of the last one, [1, V]. */
  readonly logits: Tensor[];
  /** Per row: logits of the last position. */
  readonly lastLogits: Float32Array[];
  /** Per conversation touched: what its cache holds now. */
  readonly pastKeyValues: Record<string, { readonly length: number; readonly capacity: number; readonly steps: number; readonly windowStart: number }>;
  /** Per row: the position ids the fed tokens used. */
  readonly positionIds: number[][];
}

export interface PositionReport {
  readonly positionIds: readonly number[];
  readonly cacheLength: number;
  readonly maxContextLength: number;
  readonly maxPositionEmbeddings: number;
  /** Tokens of the conversation dropped by the sliding window so far. */
  readonly windowStart: number;
}

interface Conversation {
  cache: KvCache;
  /** Tokens the cache holds (window-relative: position i holds tokens[i]). */
  tokens: number[];
  /** Index, in the conversation's full sequence, of the first token in the window. */
  windowStart: number;
  lastPositions: number[];
}

export interface ProcessorStats {
  /** Tokens fed to the model. */
  tokens: number;
  forwardMs: number;
  /** Spike statistics of every forward (spiking models): events, synaptic operations, … per site. */
  readonly spikes?: SpikeTally;
  /** Windows slid (cache rebuilds). */
  windowRebuilds: number;
  /** Σ over fed tokens of the keys each attended to. */
  attendedKeys: number;
  /** Batches whose rows ran together in one left-padded forward pass. */
  batchedForwards: number;
}

export class TemporalSpikeProcessor {
  readonly lm: LanguageModel;
  readonly maxContextLength: number;
  readonly keepFraction: number;
  readonly stats: ProcessorStats;
  private readonly conversations = new Map<string, Conversation>();
  private lastBatch: string[] = [];

  constructor(model: CausalLM | SpikingLM | LanguageModel, opts: ProcessorOptions = {}) {
    const base = model instanceof SpikingLM && opts.T !== undefined && opts.T !== model.timesteps ? model.withTimesteps(opts.T) : model;
    this.lm = asLanguageModel(base);
    const requested = opts.maxContextLength ?? 512;
    if (!Number.isInteger(requested) || requested < 2) throw new ArgumentError(`maxContextLength must be an integer ≥ 2, got ${requested}`);
    this.maxContextLength = Math.min(requested, this.lm.config.maxPositions);
    this.keepFraction = opts.keepFraction ?? 0.75;
    if (!(this.keepFraction > 0 && this.keepFraction < 1)) throw new ArgumentError(`keepFraction must be in (0, 1), got ${this.keepFraction}`);
    this.stats = { tokens: 0, forwardMs: 0, ...(this.lm.model instanceof SpikingLM ? { spikes: new SpikeTally(this.lm.model.sites) } : {}), windowRebuilds: 0, attendedKeys: 0, batchedForwards: 0 };
  }

  get timesteps(): number {
    return this.lm.timesteps;
  }

  /** Energy of everything run so far (spiking models), counted as src/snn/energy.ts says. */
  energy(): EnergyReport | undefined {
    const m = this.lm.model;
    if (!(m instanceof SpikingLM) || !this.stats.spikes || this.stats.tokens === 0) return undefined;
    return energyReport({ config: m.config, schedule: m.schedule, coding: m.coding, timesteps: m.timesteps, stepsOf: (s) => m.stepsOf(s.name), maxSpikes: m.spiking.neuron.maxSpikes, tally: this.stats.spikes });
  }

  /** Spikes per neuron per step, and per token, over everything run so far. */
  spikeRate(): number {
    return this.stats.spikes?.summary().spikesPerNeuronPerStep ?? 0;
  }

  spikesPerNeuronPerToken(): number {
    return this.stats.spikes?.summary().spikesPerNeuronPerToken ?? 0;
  }

  async forward(inputIds: readonly number[] | readonly (readonly number[])[], opts: ForwardOptions = {}): Promise<ProcessorOutput> {
    const rows = (inputIds.length > 0 && Array.isArray(inputIds[0]) ? inputIds : [inputIds]) as readonly (readonly number[])[];
    if (rows.length === 0) throw new ArgumentError('forward: empty input (no rows)');
    const masks = opts.attentionMask === undefined ? undefined : ((opts.attentionMask.length > 0 && Array.isArray(opts.attentionMask[0]) ? opts.attentionMask : [opts.attentionMask]) as readonly (readonly number[])[]);
    if (masks && masks.length !== rows.length) throw new ArgumentError(`forward: attentionMask has ${masks.length} rows, inputIds ${rows.length}`);
    if (opts.batchIds && opts.batchIds.length !== rows.length) throw new ArgumentError(`forward: ${opts.batchIds.length} batchIds for ${rows.length} rows`);
    const useCache = opts.useCache ?? true;
    const out: ProcessorOutput = { logits: [], lastLogits: [], pastKeyValues: {}, positionIds: [] };
    this.lastBatch = [];
    const ids = rows.map((_, r) => opts.batchIds?.[r] ?? String(r));
    const seqs = rows.map((row, r) => realTokens(row, masks?.[r], r));
    const batched = await this.runBatch(ids, seqs, useCache, opts.allLogits ?? false);
    for (let r = 0; r < rows.length; r++) {
      const id = ids[r]!;
      const seq = seqs[r]!;
      const { logits, positions, conv } = batched?.[r] ?? await this.run(id, seq, useCache, opts.turnStarts?.[r], opts.allLogits ?? false);
      const V = this.lm.config.vocabSize;
      out.logits.push(logits);
      out.lastLogits.push(logits.data.slice(logits.data.length - V));
      out.positionIds.push(positions);
      out.pastKeyValues[id] = { length: conv.cache.length, capacity: conv.cache.capacity, steps: conv.cache.steps, windowStart: conv.windowStart };
      if (!useCache) conv.cache.dispose();
      this.lastBatch.push(id);
    }
    return out;
  }

  /** Forget one conversation's cache, or all of them. */
  resetCache(batchId?: string): void {
    if (batchId === undefined) {
      for (const c of this.conversations.values()) c.cache.dispose();
      this.conversations.clear();
      return;
    }
    this.conversations.get(batchId)?.cache.dispose();
    this.conversations.delete(batchId);
  }

  /** What the model really used in the last forward of a conversation (default: the last row fed). */
  getPositionIds(batchId?: string): PositionReport {
    const id = batchId ?? this.lastBatch.at(-1);
    const conv = id === undefined ? undefined : this.conversations.get(id);
    return {
      positionIds: conv?.lastPositions ?? [],
      cacheLength: conv?.cache.length ?? 0,
      maxContextLength: this.maxContextLength,
      maxPositionEmbeddings: this.lm.config.maxPositions,
      windowStart: conv?.windowStart ?? 0,
    };
  }

  cachedTokens(batchId: string): readonly number[] {
    return this.conversations.get(batchId)?.tokens ?? [];
  }

  private conversation(id: string): Conversation {
    let c = this.conversations.get(id);
    if (!c) {
      c = { cache: this.lm.newCache(64), tokens: [], windowStart: 0, lastPositions: [] };
      this.conversations.set(id, c);
    }
    return c;
  }

  /**
   * New conversations on an ANN, two or more, last-position logits: one left-padded forward pass.
   * Undefined when the batch does not qualify (then each row runs alone).
   */
  private async runBatch(ids: readonly string[], seqs: readonly (readonly number[])[], useCache: boolean, allLogits: boolean): Promise<{ logits: Tensor; positions: number[]; conv: Conversation }[] | undefined> {
    const model = this.lm.model;
    if (this.lm.kind !== 'ann' || !(model instanceof CausalLM) || seqs.length < 2 || allLogits || new Set(ids).size !== ids.length) return undefined;
    if (seqs.some((q) => q.length > this.maxContextLength)) return undefined;
    if (useCache && ids.some((id) => (this.conversations.get(id)?.tokens.length ?? 0) > 0)) return undefined;
    const t0 = performance.now();
    const { logits, caches } = model.forwardBatch(seqs);
    const data = (await this.lm.backend.read(logits)).data;
    this.lm.backend.dispose(logits);
    this.stats.forwardMs += performance.now() - t0;
    this.stats.batchedForwards++;
    const V = this.lm.config.vocabSize;
    return seqs.map((seq, r) => {
      const positions = Array.from({ length: seq.length }, (_, i) => i);
      this.stats.tokens += seq.length;
      this.stats.attendedKeys += keysAttended(this.lm.config, 0, seq.length);
      const conv: Conversation = { cache: caches[r]!, tokens: [...seq], windowStart: 0, lastPositions: positions };
      if (useCache) {
        this.conversations.get(ids[r]!)?.cache.dispose();
        this.conversations.set(ids[r]!, conv);
      }
      return { logits: new Tensor([1, V], data.slice(r * V, (r + 1) * V)), positions, conv };
    });
  }

  private async run(id: string, seq: readonly number[], useCache: boolean, turnStarts: readonly number[] | undefined, allLogits: boolean): Promise<{ logits: Tensor; positions: number[]; conv: Conversation }> {
    const L = this.maxContextLength;
    const conv = useCache ? this.conversation(id) : { cache: this.lm.newCache(64), tokens: [], windowStart: 0, lastPositions: [] };
    // Slide the window when the sequence no longer fits after the current window start.
    let start = conv.windowStart;
    if (start > seq.length || seq.length - start > L) {
      const minStart = seq.length - Math.floor(this.keepFraction * L);
      const turn = (turnStarts ?? []).filter((t) => t >= minStart && t < seq.length).sort((a, b) => a - b)[0];
      start = turn ?? minStart;
      if (seq.length - start > L) start = seq.length - L;
      if (start !== conv.windowStart) this.stats.windowRebuilds++;
      conv.cache.reset();
      conv.tokens = [];
      conv.windowStart = start;
    }
    const window = seq.slice(start);
    let common = 0;
    while (common < conv.tokens.length && common < window.length && conv.tokens[common] === window[common]) common++;
    // Everything cached: recompute the last token so there are logits to return.
    if (common === window.length) common = Math.max(0, window.length - 1);
    conv.cache.truncate(common);
    conv.tokens.length = common;
    const fresh = window.slice(common);
    const t0 = performance.now();
    const res = this.lm.step(fresh, conv.cache, !allLogits);
    const logits = await this.lm.backend.read(res.logits);
    this.lm.backend.dispose(res.logits);
    if (res.snn && this.stats.spikes) {
      this.stats.spikes.add((await this.lm.backend.read(res.snn.stats)).data, res.snn);
      for (const t of [res.snn.stats, ...(res.snn.spikes ? [res.snn.spikes] : [])]) this.lm.backend.dispose(t);
    }
    this.stats.forwardMs += performance.now() - t0;
    this.stats.tokens += fresh.length;
    this.stats.attendedKeys += keysAttended(this.lm.config, common, fresh.length);
    for (const t of fresh) conv.tokens.push(t); // a loop: a long pasted turn outgrows a call's arguments
    conv.lastPositions = Array.from({ length: fresh.length }, (_, i) => common + i);
    return { logits: new Tensor([allLogits ? fresh.length : 1, this.lm.config.vocabSize], logits.data), positions: conv.lastPositions, conv };
  }
}

/** The real tokens of a row: contiguous positions with mask 1 (left or right padding only). */
function realTokens(row: readonly number[], mask: readonly number[] | undefined, r: number): number[] {
  if (!mask) {
    if (row.length === 0) throw new ArgumentError(`forward: row ${r} is empty (empty input)`);
    return [...row];
  }
  if (mask.length !== row.length) throw new ArgumentError(`forward: row ${r} has ${row.length} tokens but ${mask.length} mask values`);
  const first = mask.indexOf(1), last = mask.lastIndexOf(1);
  if (first === -1) throw new ArgumentError(`forward: row ${r} has no real tokens (attention mask all 0: empty input)`);
  for (let i = 0; i < mask.length; i++) {
    const m = mask[i];
    if (m !== 0 && m !== 1) throw new ArgumentError(`forward: attention mask values must be 0 or 1, row ${r} has ${m}`);
    if ((i < first || i > last) !== (m === 0)) throw new ArgumentError(`forward: row ${r}'s mask has a hole at ${i}; only left or right padding is supported`);
  }
  return row.slice(first, last + 1);
}
