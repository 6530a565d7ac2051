/**
 * Autoregressive generation with the KV cache: the prompt is fed once, then one token per step.
 *
 * Two loops choose the tokens the same way (kernels/sampling.ts's algorithm, seeded draws in the same
 * order), and differ in what crosses between host and device:
 *   device (the default)  the backend chooses the token (sampleToken) into a one-element tensor the
 *                         next forward's embedding reads; only that id is read back (4 bytes), for
 *                         the stop test and the caller's stream. The next token's forward is
 *                         submitted before this token's id is back (it needs no host id), so the
 *                         device works while the host waits; when this token ends the generation,
 *                         that step's cache row is dropped. The turn's cache rows are reserved
 *                         before its first token, so from the third token on a GPU step is one
 *                         submit, one 4-byte read-back, one uniform write and no new buffer or bind
 *                         group (test/decode-loop.test.ts counts them).
 *   host                  the logits are read back and the token chosen on the host (the loop
 *                         before; the bench compares both in one run).
 * SPIKELM_DECODE_LOOP=device|host sets the default. A spiking model decodes on the device loop in
 * its layerwise schedule; the stepwise schedule feeds its ids from the host (one small upload a token).
 */
import { ArgumentError } from '../errors.js';
import type { SpikingLM } from '../snn/model.js';
import type { BTensor } from '../tensor/backend.js';
import { STATS_WIDTH } from '../tensor/kernels/codes.js';
import { Tensor } from '../tensor/tensor.js';
import type { CausalLM } from './model.js';
import type { KvCache } from './kv-cache.js';
import { Sampler, type SamplingOptions } from './sampling.js';

export const DECODE_LOOPS = ['device', 'host'] as const;
export type DecodeLoop = (typeof DECODE_LOOPS)[number];

export interface GenerateOptions extends SamplingOptions {
  readonly maxNewTokens?: number;
  /** Stop after emitting one of these (defaults to the model's EOS ids). */
  readonly stopTokenIds?: readonly number[];
  readonly cache?: KvCache;
  /** Called with each new token as soon as it is chosen. */
  readonly onToken?: (id: number) => void;
  /** Where tokens are chosen (see the file comment); SPIKELM_DECODE_LOOP, else 'device'. */
  readonly loop?: DecodeLoop;
}

export interface GenerateResult {
  /** The new tokens (including a final stop token). */
  readonly ids: number[];
  /** Why generation ended: a stop token, the token budget, or the model's context limit. */
  readonly stoppedBy: 'stop_token' | 'max_new_tokens' | 'context_limit';
}

/** The loop SPIKELM_DECODE_LOOP names, or 'device'; anything else is an error naming the variable. */
export function decodeLoopFromEnv(env: NodeJS.ProcessEnv = process.env): DecodeLoop {
  const v = env.SPIKELM_DECODE_LOOP;
  if (v === undefined || v === '') return 'device';
  if (!(DECODE_LOOPS as readonly string[]).includes(v)) throw new ArgumentError(`SPIKELM_DECODE_LOOP must be one of ${DECODE_LOOPS.join(', ')}, got '${v}'`);
  return v as DecodeLoop;
}

/** Generate up to maxNewTokens after `promptIds`, with an ANN or a spiking model. */
export async function generate(model: CausalLM | SpikingLM, promptIds: readonly number[], opts: GenerateOptions = {}): Promise<GenerateResult> {
  const sampler = new Sampler(opts);
  const maxNew = opts.maxNewTokens ?? 32;
  if (!Number.isInteger(maxNew) || maxNew < 0) throw new ArgumentError(`generate: maxNewTokens (--max-new-tokens) must be an integer ≥ 0, got ${opts.maxNewTokens}`);
  if (promptIds.length === 0) throw new ArgumentError('generate: empty prompt (no input tokens)');
  const stop = new Set(opts.stopTokenIds ?? model.config.eosTokenIds);
  const cache = opts.cache ?? model.newCache();
  const b = model.backend;
  const note = b.deviceSamplingNote();
  const loop = note ? 'host' : (opts.loop ?? decodeLoopFromEnv());
  if (note && opts.loop === 'device') throw new ArgumentError(`generate: the device loop cannot run here: ${note}`);
  if (note) announce(note);
  const spiking = 'schedule' in model ? model : undefined;
  // the turn's rows before its first token: no step grows the cache
  cache.reserve(Math.min(promptIds.length + maxNew, cache.maxLength - cache.length));
  // a spiking model's statistics, one tensor for the whole generation (the encoders add into it)
  const stats = spiking ? b.zeros([spiking.statsRows(), STATS_WIDTH]) : undefined;
  const logitsOf = (ids: Int32Array | BTensor): BTensor => {
    if (!spiking) return (model as CausalLM).forward(ids, cache);
    const out = spiking.forward(ids, cache, { stats: stats! });
    for (const t of [...(out.spikes ? [out.spikes] : []), ...out.decoded.values()]) b.dispose(t);
    return out.logits;
  };
  const V = model.config.vocabSize;
  const id = loop === 'device' ? b.zeros([1]) : undefined;
  const seen = loop === 'device' && sampler.choice.repetitionPenalty !== 1 ? b.upload(Tensor.from([V], seenFlags(V, promptIds))) : undefined;
  const feedDevice = !spiking || spiking.schedule === 'layerwise';
  const all = [...promptIds];
  const out: number[] = [];
  /** Feed `ids`, choose the next token on the device; the returned promise is its id (the batch is submitted now). */
  const stepOnDevice = (ids: Int32Array | BTensor): Promise<number> => {
    const logits = logitsOf(ids);
    b.sampleToken(logits, 0, sampler.choice, sampler.draw(), id!, seen);
    b.dispose(logits);
    return b.read(id!).then((t) => t.data[0]!);
  };
  /** The step submitted ahead of the token being read (pipelined loop), if any. */
  let ahead: Promise<number> | undefined;
  try {
    if (cache.length + promptIds.length > cache.maxLength || maxNew === 0) return { ids: out, stoppedBy: maxNew === 0 ? 'max_new_tokens' : 'context_limit' };
    // (on the CPU nothing runs while the host waits, and its read is the live tensor: not pipelined)
    if (id && feedDevice && b.name === 'gpu') {
      // pipelined: the next token's forward is submitted (it reads the id on the device) before this
      // token's id is back; if this token ends the generation, that step is undone (its cache row)
      let pending = stepOnDevice(Int32Array.from(promptIds));
      for (let step = 0; step < maxNew; step++) {
        ahead = step + 1 < maxNew && cache.length + 1 <= cache.maxLength ? stepOnDevice(id) : undefined;
        const next = await pending;
        out.push(next);
        opts.onToken?.(next);
        if (stop.has(next) || !ahead) {
          if (ahead) {
            await ahead;
            ahead = undefined;
            cache.truncate(cache.length - 1);
          }
          return { ids: out, stoppedBy: stop.has(next) ? 'stop_token' : step + 1 < maxNew ? 'context_limit' : 'max_new_tokens' };
        }
        pending = ahead;
      }
      return { ids: out, stoppedBy: 'max_new_tokens' };
    }
    let input: Int32Array | BTensor = Int32Array.from(promptIds);
    for (let step = 0; step < maxNew; step++) {
      if (step > 0 && cache.length + 1 > cache.maxLength) return { ids: out, stoppedBy: 'context_limit' };
      let next: number;
      if (id) next = await stepOnDevice(id && feedDevice && step > 0 ? id : input);
      else {
        const logits = logitsOf(input);
        const host = (await b.read(logits)).data;
        b.dispose(logits);
        next = sampler.next(host, all);
      }
      out.push(next);
      all.push(next);
      opts.onToken?.(next);
      if (stop.has(next)) return { ids: out, stoppedBy: 'stop_token' };
      input = Int32Array.of(next);
    }
    return { ids: out, stoppedBy: 'max_new_tokens' };
  } finally {
    // a caller's onToken that threw leaves a step in flight: nothing waits for it
    void ahead?.catch(() => undefined);
    for (const t of [id, seen, stats]) if (t) b.dispose(t);
  }
}

const announced = new Set<string>();
/** A note on stderr, once per process. */
function announce(note: string): void {
  if (announced.has(note)) return;
  announced.add(note);
  process.stderr.write(`spikelm: ${note}\n`);
}

/** [V] flags: 1 where a token of `ids` is. */
function seenFlags(V: number, ids: readonly number[]): Float32Array {
  const flags = new Float32Array(V);
  for (const i of ids) if (i >= 0 && i < V) flags[i] = 1;
  return flags;
}
