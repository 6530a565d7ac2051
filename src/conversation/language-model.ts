/**
 * What the conversation layer needs of a model, for an ANN (CausalLM) and a spiking model
 * (SpikingLM) alike: a KV cache and a forward over new tokens.
 */
import type { ModelConfig } from '../nn/config.js';
import type { KvCache } from '../nn/kv-cache.js';
import { CausalLM } from '../nn/model.js';
import { type SnnOutput, SpikingLM } from '../snn/model.js';
import type { Backend, BTensor } from '../tensor/backend.js';

export interface StepResult {
  /** Logits for the new positions, [S, V] (or [1, V] with lastOnly). */
  readonly logits: BTensor;
  /** A spiking model's whole output (statistics per site, neurons, …). */
  readonly snn?: SnnOutput;
}

export interface LanguageModel {
  readonly kind: 'ann' | 'snn';
  readonly config: ModelConfig;
  readonly backend: Backend;
  /** Time steps per token (1 for an ANN). */
  readonly timesteps: number;
  newCache(initialCapacity?: number): KvCache;
  step(ids: readonly number[], cache: KvCache, lastOnly: boolean): StepResult;
  /** The underlying model. */
  readonly model: CausalLM | SpikingLM;
}

export function asLanguageModel(model: CausalLM | SpikingLM | LanguageModel): LanguageModel {
  if (model instanceof CausalLM) {
    return {
      kind: 'ann', config: model.config, backend: model.backend, timesteps: 1, model,
      newCache: (c) => model.newCache(c),
      step: (ids, cache, lastOnly) => ({ logits: model.forward(ids, cache, { allLogits: !lastOnly }) }),
    };
  }
  if (model instanceof SpikingLM) {
    return {
      kind: 'snn', config: model.config, backend: model.backend, timesteps: model.timesteps, model,
      newCache: (c) => model.newCache(c),
      step: (ids, cache, lastOnly) => {
        const out = model.forward(ids, cache, { allLogits: !lastOnly });
        return { logits: out.logits, snn: out };
      },
    };
  }
  return model;
}
