/**
 * Autoregressive generation with the KV cache: the prompt is fed once, then one token per step.
 */
import type { CausalLM } from './model.js';
import type { KvCache } from './kv-cache.js';
import { Sampler, type SamplingOptions } from './sampling.js';

export interface GenerateOptions extends SamplingOptions {
  readonly maxNewTokens?: number;
  /** Stop after emitting one of these (defaults to the model's EOS ids). */
  readonly stopTokenIds?: readonly number[];
  readonly cache?: KvCache;
  /** Called with each new token as soon as it is chosen. */
  readonly onToken?: (id: number) => void;
}

export interface GenerateResult {
  /** The new tokens (including a final stop token). */
  readonly ids: number[];
  /** Why generation ended: a stop token, the token budget, or the model's context limit. */
  readonly stoppedBy: 'stop_token' | 'max_new_tokens' | 'context_limit';
}

/** Generate up to maxNewTokens after `promptIds`. */
export async function generate(model: CausalLM, promptIds: readonly number[], opts: GenerateOptions = {}): Promise<GenerateResult> {
  const sampler = new Sampler(opts);
  const maxNew = opts.maxNewTokens ?? 32;
  const stop = new Set(opts.stopTokenIds ?? model.config.eosTokenIds);
  const cache = opts.cache ?? model.newCache();
  const all = [...promptIds];
  const out: number[] = [];
  let input: number[] = [...promptIds];
  for (let step = 0; step < maxNew; step++) {
    if (cache.length + input.length > cache.maxLength) return { ids: out, stoppedBy: 'context_limit' };
    const logitsT = model.forward(Int32Array.from(input), cache);
    const logits = (await model.backend.read(logitsT)).data;
    model.backend.dispose(logitsT);
    const id = sampler.next(logits, all);
    out.push(id);
    all.push(id);
    opts.onToken?.(id);
    if (stop.has(id)) return { ids: out, stoppedBy: 'stop_token' };
    input = [id];
  }
  return { ids: out, stoppedBy: 'max_new_tokens' };
}
