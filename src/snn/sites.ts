/**
 * Encoder sites: where a converted network turns values into spikes. There is one before every
 * linear layer (the synapses see spikes); everything else is a compensated operator.
 *
 *   layers.{l}.attn_in   input of the fused q|k|v projection (after the attention norm)   [D]
 *   layers.{l}.o_in      input of the output projection (the attention result)            [H·d]
 *   layers.{l}.mlp_in    input of up (and gate) (after the MLP norm)                      [D]
 *   layers.{l}.down_in   input of the down projection (the activation output)             [I]
 *   head_in              input of the LM head (after the final norm)                      [D]
 */
import type { ModelConfig } from '../nn/config.js';

export interface EncoderSite {
  readonly name: string;
  readonly channels: number;
  /** The linear layer(s) this site feeds, for reports. */
  readonly feeds: string;
}

export function encoderSites(cfg: ModelConfig): EncoderSite[] {
  const sites: EncoderSite[] = [];
  const qWidth = cfg.numHeads * cfg.headDim;
  for (let l = 0; l < cfg.numLayers; l++) {
    sites.push({ name: `layers.${l}.attn_in`, channels: cfg.hiddenSize, feeds: 'q, k, v' });
    sites.push({ name: `layers.${l}.o_in`, channels: qWidth, feeds: 'o' });
    sites.push({ name: `layers.${l}.mlp_in`, channels: cfg.hiddenSize, feeds: cfg.family === 'llama' ? 'gate, up' : 'up' });
    sites.push({ name: `layers.${l}.down_in`, channels: cfg.intermediateSize, feeds: 'down' });
  }
  sites.push({ name: 'head_in', channels: cfg.hiddenSize, feeds: 'lm_head' });
  return sites;
}
