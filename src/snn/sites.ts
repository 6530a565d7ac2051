/**
 * Encoder sites: where a converted network turns values into spikes. There is one before every
 * linear layer (the synapses see spikes), and in the layerwise schedule one before each product of
 * an activation with cached values (attention is spike-driven there):
 *
 *   layers.{l}.attn_in   input of the fused q|k|v projection (after the attention norm)   [D]
 *   layers.{l}.q_in      the rotated queries, before they meet the cached keys (layerwise)  [H·d]
 *   layers.{l}.p_in      the attention probabilities, before they meet the cached values;
 *                        one neuron per (head, key), θ per head (layerwise)                  [H]
 *   layers.{l}.o_in      input of the output projection (the attention result)            [H·d]
 *   layers.{l}.mlp_in    input of up (and gate) (after the MLP norm)                      [D]
 *   layers.{l}.down_in   input of the down projection (the activation output)             [I]
 *   head_in              input of the LM head (after the final norm, or project_out)      [E]
 *   proj_in              OPT's project_in input: the token embedding (when E ≠ D)         [E]
 *   proj_out             OPT's project_out input: the last hidden state (when E ≠ D)      [D]
 *
 * Each site's fan-out (the outputs one spike reaches) is what a synaptic event costs.
 */
import type { ModelConfig } from '../nn/config.js';
import type { ScheduleName } from './codes.js';

export type SiteKind = 'attn_in' | 'q_in' | 'p_in' | 'o_in' | 'mlp_in' | 'down_in' | 'head_in' | 'proj_in' | 'proj_out';

export interface EncoderSite {
  readonly name: string;
  readonly kind: SiteKind;
  /** The layer it belongs to (-1 for the head and the projections around the blocks). */
  readonly layer: number;
  /** Threshold channels (neurons per token, except p_in: per (token, key) there are H). */
  readonly channels: number;
  /** Outputs one spike reaches: a weight row's length; for q_in the keys attended (per token: see fanoutPerKey). */
  readonly fanout: number;
  /** q_in: its fan-out is one per key attended, not a fixed number. */
  readonly fanoutPerKey?: boolean;
  /** The linear layer(s) or product this site feeds, for reports. */
  readonly feeds: string;
}

export function encoderSites(cfg: ModelConfig, schedule: ScheduleName = 'stepwise'): EncoderSite[] {
  const sites: EncoderSite[] = [];
  const D = cfg.hiddenSize, I = cfg.intermediateSize, qWidth = cfg.numHeads * cfg.headDim, kvWidth = cfg.numKvHeads * cfg.headDim;
  const gated = cfg.gatedMlp, E = cfg.embedDim, projections = E !== D;
  if (projections) sites.push({ name: 'proj_in', kind: 'proj_in', layer: -1, channels: E, fanout: D, feeds: 'project_in' });
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `layers.${l}`;
    sites.push({ name: `${p}.attn_in`, kind: 'attn_in', layer: l, channels: D, fanout: qWidth + 2 * kvWidth, feeds: 'q, k, v' });
    if (schedule === 'layerwise') {
      sites.push({ name: `${p}.q_in`, kind: 'q_in', layer: l, channels: qWidth, fanout: 1, fanoutPerKey: true, feeds: 'q·Kᵀ (cached keys)' });
      sites.push({ name: `${p}.p_in`, kind: 'p_in', layer: l, channels: cfg.numHeads, fanout: cfg.headDim, feeds: 'P·V (cached values)' });
    }
    sites.push({ name: `${p}.o_in`, kind: 'o_in', layer: l, channels: qWidth, fanout: D, feeds: 'o' });
    sites.push({ name: `${p}.mlp_in`, kind: 'mlp_in', layer: l, channels: D, fanout: gated ? 2 * I : I, feeds: gated ? 'gate, up' : 'up' });
    sites.push({ name: `${p}.down_in`, kind: 'down_in', layer: l, channels: I, fanout: D, feeds: 'down' });
  }
  if (projections) sites.push({ name: 'proj_out', kind: 'proj_out', layer: -1, channels: D, fanout: E, feeds: 'project_out' });
  sites.push({ name: 'head_in', kind: 'head_in', layer: -1, channels: E, fanout: cfg.vocabSize, feeds: 'lm_head' });
  return sites;
}

/** A layerwise site's steps at T: T plus its offset (SpikingConfig.siteSteps), never below one step. */
export function siteStepsAt(T: number, siteSteps: Readonly<Partial<Record<SiteKind, number>>> | undefined, kind: SiteKind): number {
  return Math.max(1, T + (siteSteps?.[kind] ?? 0));
}

/**
 * Planes per (layer, site): absolute steps by site name (`layers.3.mlp_in`, `head_in`), what the
 * target-driven conversion chooses (src/convert/search). A site not named runs T + its kind's offset.
 */
export type SitePlanes = Readonly<Record<string, number>>;

/** The most planes a layerwise site may run (the kernels add up to EXTRA_PLANES more within 24). */
export const MAX_SITE_PLANES = 16;

/** A site's steps: its own planes if named, else T + its kind's offset (at least one). */
export function stepsOfSite(T: number, siteSteps: Readonly<Partial<Record<SiteKind, number>>> | undefined, planes: SitePlanes | undefined, site: EncoderSite): number {
  return planes?.[site.name] ?? siteStepsAt(T, siteSteps, site.kind);
}

/** Planes moved by `delta` steps each (never below one): a planes model run at another T. */
export function shiftPlanes(planes: SitePlanes, delta: number): SitePlanes {
  return Object.fromEntries(Object.entries(planes).map(([k, v]) => [k, Math.min(MAX_SITE_PLANES, Math.max(1, v + delta))]));
}

/** The site kind a site name ends in (`layers.3.mlp_in` → `mlp_in`). */
export function kindOfSiteName(name: string): SiteKind | undefined {
  const kind = name.slice(name.lastIndexOf('.') + 1);
  return (SITE_KINDS as readonly string[]).includes(kind) ? (kind as SiteKind) : undefined;
}

export const SITE_KINDS: readonly SiteKind[] = ['attn_in', 'q_in', 'p_in', 'o_in', 'mlp_in', 'down_in', 'head_in', 'proj_in', 'proj_out'];
