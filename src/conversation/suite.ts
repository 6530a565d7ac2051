/**
 * The seed's conversational test suite (camelCase). Every test returns `{ name, passed, metrics,
 * details }` with explicit criteria that can fail:
 *
 *   simulateConversation       a scripted multi-turn chat; passes if, after every turn, the logits
 *                              reached through the KV cache equal a full recompute of the same tokens
 *   testPositionIdBoundaries   thousands of tokens through one conversation; passes if no position id
 *                              reaches min(maxContextLength, max_position_embeddings), the window
 *                              slid, and every logit stayed finite
 *   testAttentionMaskContinuity  a left-padded batch equals its rows run unpadded (an ANN runs the
 *                                rows together, masked; a spiking model one at a time), and a growing
 *                              mask over turns equals recomputation
 *   testMultiTurnCoherence     the SNN against a separately loaded ANN over a scripted chat: top-1
 *                              agreement on the ANN's own replies (teacher-forced) ≥ 0.8, and the
 *                              SNN's replies carry at least as many of the prompt's entities as the
 *                              ANN's, less one
 *   testFidelityParity         fidelity against the separately loaded ANN on the evaluation text:
 *                              top-1 ≥ 0.9 and KL ≤ 0.05 at the SNN's T
 *   testEnergy                 the energy report of a real run: finite, positive, and consistent (layers
 *                              and parts sum to the totals)
 */
import { bundledText } from '../convert/calibration-data.js';
import type { CausalLM } from '../nn/model.js';
import { argmax } from '../nn/sampling.js';
import type { TextTokenizer } from '../nn/tokenizer.js';
import type { EnergyReport } from '../snn/energy.js';
import { measureFidelity } from '../snn/fidelity.js';
import { SpikingLM } from '../snn/model.js';
import { ChatSession } from './chat.js';
import { TemporalSpikeProcessor } from './processor.js';

export interface SuiteResult {
  readonly name: string;
  readonly passed: boolean;
  readonly metrics: Record<string, number | string | boolean>;
  readonly details?: unknown;
}

type Model = CausalLM | SpikingLM;

export const STORY_TURNS = [
  'Once upon a time, there was a little girl named Lily. She had a dog named Max.',
  'One day, Lily and Max went to the park to play with a ball.',
  'At the park, Lily saw a big tree with a red bird in it.',
  'Then it started to rain, so Lily and Max ran home.',
  'At home, Lily gave Max a warm bath and a big hug.',
];
export const STORY_ENTITIES = ['Lily', 'Max', 'park', 'ball', 'tree', 'bird'];

const maxAbsDiff = (a: Float32Array, b: Float32Array) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};
/** Cached and recomputed logits may differ by float32 summation order only. */
const CACHE_TOLERANCE = 1e-3;

export interface ConversationOptions {
  readonly turns?: number;
  readonly maxNewTokens?: number;
  readonly T?: number;
  readonly prompts?: readonly string[];
}

export async function simulateConversation(model: Model, tokenizer: TextTokenizer, opts: ConversationOptions = {}): Promise<SuiteResult> {
  const turns = opts.turns ?? 3;
  const prompts = opts.prompts ?? STORY_TURNS;
  const processor = new TemporalSpikeProcessor(model, { T: opts.T });
  const fresh = new TemporalSpikeProcessor(processor.lm);
  const chat = new ChatSession(processor, tokenizer, { maxNewTokens: opts.maxNewTokens ?? 24, conversationId: 'sim' });
  const transcript = [];
  let worst = 0;
  for (let i = 0; i < turns; i++) {
    const user = prompts[i % prompts.length]!;
    const r = await chat.send(user);
    // The conversation as the cache holds it, recomputed from scratch.
    const tokens = [...processor.cachedTokens('sim')];
    const cached = await processor.forward(tokens, { batchIds: ['sim'] });
    const full = await fresh.forward(tokens, { useCache: false });
    const diff = maxAbsDiff(cached.lastLogits[0]!, full.lastLogits[0]!);
    worst = Math.max(worst, diff);
    transcript.push({ user, reply: r.reply, tokens: r.tokens, promptTokensFed: r.promptTokensFed, ms: Math.round(r.ms), cachedVsRecompute: diff });
  }
  const tokensGenerated = transcript.reduce((a, t) => a + t.tokens, 0);
  const ms = transcript.reduce((a, t) => a + t.ms, 0);
  return {
    name: 'conversation', passed: worst <= CACHE_TOLERANCE && transcript.every((t) => t.reply.length > 0),
    metrics: { turns, tokens_generated: tokensGenerated, tokens_per_s: tokensGenerated / (ms / 1000), max_abs_cached_vs_recompute: worst, spike_rate: processor.spikeRate() },
    details: transcript,
  };
}

export async function testPositionIdBoundaries(model: Model, tokenizer: TextTokenizer, opts: { totalTokens?: number; chunk?: number; T?: number; maxContextLength?: number; onProgress?: (tokens: number, total: number) => void } = {}): Promise<SuiteResult> {
  const processor = new TemporalSpikeProcessor(model, { T: opts.T, maxContextLength: opts.maxContextLength ?? 512 });
  const limit = processor.maxContextLength, maxPos = processor.lm.config.maxPositions;
  const total = opts.totalTokens ?? Math.max(2000, 3 * limit);
  const chunk = opts.chunk ?? 48;
  const textIds = tokenizer.encode(bundledText('eval-stories.txt').text.replace(/\s*\n\s*/g, ' '));
  const seq: number[] = [];
  let maxPosition = -1, finite = true, error = '';
  try {
    while (seq.length < total) {
      for (let i = 0; i < chunk && seq.length < total; i++) seq.push(textIds[seq.length % textIds.length]!);
      const out = await processor.forward(seq, { batchIds: ['long'] });
      for (const p of out.positionIds[0]!) maxPosition = Math.max(maxPosition, p); // a loop: a long context outgrows a call's arguments
      if (!out.lastLogits[0]!.every(Number.isFinite)) finite = false;
      opts.onProgress?.(seq.length, total);
    }
  } catch (err) {
    error = (err as Error).message;
  }
  const report = processor.getPositionIds('long');
  const passed = !error && finite && maxPosition < limit && maxPosition < maxPos && processor.stats.windowRebuilds > 0;
  return {
    name: 'position_boundaries', passed,
    metrics: { tokens: seq.length, max_position_id: maxPosition, max_context_length: limit, max_position_embeddings: maxPos, window_rebuilds: processor.stats.windowRebuilds, window_start: report.windowStart, finite_logits: finite, ...(error ? { error } : {}) },
  };
}

export async function testAttentionMaskContinuity(model: Model, tokenizer: TextTokenizer, opts: { T?: number } = {}): Promise<SuiteResult> {
  const rows = STORY_TURNS.slice(0, 3).map((t) => tokenizer.encode(t));
  const width = Math.max(...rows.map((r) => r.length));
  const pad = tokenizer.eosTokenIds[0] ?? 0;
  const padded = rows.map((r) => [...new Array(width - r.length).fill(pad), ...r]);
  const mask = rows.map((r) => [...new Array(width - r.length).fill(0), ...new Array(r.length).fill(1)]);
  const batch = new TemporalSpikeProcessor(model, { T: opts.T });
  const single = new TemporalSpikeProcessor(batch.lm);
  // last-position logits: an ANN runs the padded rows together (one masked forward pass)
  const out = await batch.forward(padded, { attentionMask: mask, useCache: false });
  let paddedDiff = 0, finite = true;
  for (let i = 0; i < rows.length; i++) {
    const alone = await single.forward(rows[i]!, { useCache: false });
    paddedDiff = Math.max(paddedDiff, maxAbsDiff(out.lastLogits[i]!, alone.lastLogits[0]!));
    if (!out.lastLogits[i]!.every(Number.isFinite)) finite = false;
  }
  const together = batch.stats.batchedForwards > 0;
  // A mask growing over turns (left padding shrinking as the conversation lengthens), cached,
  // against the same tokens recomputed.
  const conv = new TemporalSpikeProcessor(batch.lm);
  let growingDiff = 0;
  let tokens: number[] = [];
  for (const r of rows) {
    tokens = [...tokens, ...r];
    const w = tokens.length + 3;
    const cached = await conv.forward([...new Array(w - tokens.length).fill(pad), ...tokens], { attentionMask: [...new Array(w - tokens.length).fill(0), ...new Array(tokens.length).fill(1)], batchIds: ['grow'] });
    const full = await single.forward(tokens, { useCache: false });
    growingDiff = Math.max(growingDiff, maxAbsDiff(cached.lastLogits[0]!, full.lastLogits[0]!));
  }
  return {
    name: 'attention_mask', passed: finite && paddedDiff <= CACHE_TOLERANCE && growingDiff <= CACHE_TOLERANCE,
    metrics: { rows: rows.length, rows_run_together: together, max_abs_padded_vs_unpadded: paddedDiff, max_abs_growing_mask_vs_recompute: growingDiff, finite_logits: finite },
  };
}

export async function testMultiTurnCoherence(snn: Model, ann: CausalLM, tokenizer: TextTokenizer, opts: ConversationOptions = {}): Promise<SuiteResult> {
  const turns = opts.turns ?? 3;
  const prompts = opts.prompts ?? STORY_TURNS;
  const maxNewTokens = opts.maxNewTokens ?? 24;
  const annChat = new ChatSession(new TemporalSpikeProcessor(ann), tokenizer, { maxNewTokens, conversationId: 'ann' });
  const snnProcessor = new TemporalSpikeProcessor(snn, { T: opts.T });
  const snnChat = new ChatSession(snnProcessor, tokenizer, { maxNewTokens, conversationId: 'snn' });
  const entities = STORY_ENTITIES.filter((e) => prompts.slice(0, turns).join(' ').includes(e));
  const carried = (replies: string[]) => entities.filter((e) => replies.some((r) => r.includes(e))).length;
  const annReplies: string[] = [], snnReplies: string[] = [];
  for (let i = 0; i < turns; i++) {
    annReplies.push((await annChat.send(prompts[i % prompts.length]!)).reply);
    snnReplies.push((await snnChat.send(prompts[i % prompts.length]!)).reply);
  }
  // Teacher-forced: the SNN reads the ANN's transcript; how often is its next-token argmax the ANN's?
  const ids = tokenizer.encode(annChat.format.render(annChat.messages).replace(/Assistant:$/, '').trimEnd());
  const annOut = await new TemporalSpikeProcessor(ann).forward(ids, { useCache: false, allLogits: true });
  const snnOut = await new TemporalSpikeProcessor(snnProcessor.lm).forward(ids, { useCache: false, allLogits: true });
  const V = ann.config.vocabSize;
  let agree = 0;
  for (let p = 0; p < ids.length; p++) {
    if (argmax(annOut.logits[0]!.data.subarray(p * V, (p + 1) * V)) === argmax(snnOut.logits[0]!.data.subarray(p * V, (p + 1) * V))) agree++;
  }
  const agreement = agree / ids.length;
  const annCarried = carried(annReplies), snnCarried = carried(snnReplies);
  return {
    name: 'multi_turn_coherence', passed: agreement >= 0.8 && snnCarried >= annCarried - 1,
    metrics: { turns, teacher_forced_top1_agreement: agreement, entities: entities.length, entities_carried_ann: annCarried, entities_carried_snn: snnCarried },
    details: { ann: annReplies, snn: snnReplies },
  };
}

export async function testFidelityParity(snn: SpikingLM, ann: CausalLM, tokenizer: TextTokenizer, opts: { positions?: number } = {}): Promise<SuiteResult> {
  const ids = tokenizer.encode(bundledText('eval-stories.txt').text.replace(/\s*\n\s*/g, ' ').trim()).slice(0, opts.positions ?? 300);
  const r = (await measureFidelity(ann, snn, ids, [snn.timesteps])).results[0]!;
  return {
    name: 'fidelity', passed: r.top1_agreement >= 0.9 && r.kl <= 0.05,
    metrics: { T: r.T, positions: ids.length, top1_agreement: r.top1_agreement, kl: r.kl, max_abs_logit_err: r.max_abs_logit_err, ppl_ann: r.ppl_ann, ppl_snn: r.ppl_snn, distinct_predictions_ann: r.distinct_predictions_ann, distinct_predictions_snn: r.distinct_predictions_snn, spike_rate: r.spike_rate },
  };
}

export async function testEnergy(snn: SpikingLM, tokenizer: TextTokenizer, opts: { positions?: number } = {}): Promise<SuiteResult & { report: EnergyReport }> {
  const ids = tokenizer.encode(bundledText('eval-stories.txt').text.replace(/\s*\n\s*/g, ' ').trim()).slice(0, opts.positions ?? 128);
  const p = new TemporalSpikeProcessor(snn);
  await p.forward(ids, { useCache: false });
  const report = p.energy()!;
  const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b), 1);
  const sums = (['ann', 'snn'] as const).every((k) => {
    const fromLayers = report.layers.reduce((a, l) => ({ acs: a.acs + l[k].acs, macs: a.macs + l[k].macs }), { acs: 0, macs: 0 });
    const fromParts = Object.values(report[k].parts).reduce((a, x) => ({ acs: a.acs + x.acs, macs: a.macs + x.macs }), { acs: 0, macs: 0 });
    return close(fromLayers.acs, report[k].total.acs) && close(fromLayers.macs, report[k].total.macs) && close(fromParts.acs, report[k].total.acs) && close(fromParts.macs, report[k].total.macs);
  });
  const fp32 = report.presets.fp32;
  const finite = [report.ann.total.macs, report.snn.total.acs, fp32.annJoules, fp32.snnJoules].every((v) => Number.isFinite(v) && v > 0);
  return {
    name: 'energy', passed: finite && sums && close(fp32.ratio, fp32.snnJoules / fp32.annJoules),
    metrics: {
      T: snn.timesteps, schedule: snn.schedule, coding: snn.coding, tokens: ids.length,
      spikes_per_neuron_per_token: report.spikesPerNeuronPerToken, max_spikes_per_neuron_per_step: report.maxSpikesPerNeuronPerStep,
      ann_macs: report.ann.total.macs, ann_acs: report.ann.total.acs, snn_acs: report.snn.total.acs, snn_macs: report.snn.total.macs,
      e_ann_fp32_uJ: fp32.annJoules * 1e6, e_snn_fp32_uJ: fp32.snnJoules * 1e6, e_snn_over_e_ann_fp32: fp32.ratio,
      e_snn_over_e_ann_fp16: report.presets.fp16.ratio, e_snn_over_e_ann_int8: report.presets.int8.ratio,
    },
    report,
  };
}
