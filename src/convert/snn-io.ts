/**
 * Saving and loading a converted model as a Hugging Face-style directory:
 *
 *   config.json          the ANN's config (with the activation a ReLU swap chose)
 *   model.safetensors    the ANN weights under their Hugging Face names, plus the spiking parameters
 *                        `snn.thresholds.<site>` [C] (and `snn.centers.<site>` when centred)
 *   snn_config.json      timesteps, mode, neuron parameters, surrogate, operator forms, calibration
 *                        statistics, the source model's sha256, the spikelm version
 *   tokenizer files      copied from the source
 *
 * The directory is written next to its destination under a temporary name and renamed into place,
 * so a crash never leaves a half-written model. Any HF loader can still read the ANN part.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ModelLoadError } from '../errors.js';
import type { ModelConfig } from '../nn/config.js';
import { CausalLM, loadWeights } from '../nn/model.js';
import { type TextTokenizer, loadTokenizer } from '../nn/tokenizer.js';
import { transpose } from '../nn/weights.js';
import type { LMWeights } from '../nn/weights.js';
import { type OperatorForms, type SnnMode, SpikingLM } from '../snn/model.js';
import { SURROGATE_NAMES, type SurrogateName } from '../snn/surrogate.js';
import type { Backend } from '../tensor/backend.js';
import { CpuBackend } from '../tensor/cpu-backend.js';
import { type NeuronConfig, validateNeuron } from '../tensor/kernels/neuron.js';
import { Tensor } from '../tensor/tensor.js';
import { atomicWriteFile } from './atomic-write.js';
import { SafetensorsFile, type TensorToWrite, writeSafetensors } from './safetensors.js';
import type { ConversionRecord } from './stages.js';

export const SNN_CONFIG_FORMAT = 'spikelm-snn';

export interface SnnConfigJson {
  readonly format: typeof SNN_CONFIG_FORMAT;
  readonly format_version: 1;
  readonly spikelm_version: string;
  readonly timesteps: number;
  readonly mode: SnnMode;
  /** maxSpikes is written as the string "inf" when unbounded. */
  readonly neuron: Omit<NeuronConfig, 'maxSpikes'> & { readonly maxSpikes: number | 'inf' };
  readonly surrogate: { readonly name: SurrogateName; readonly alpha: number };
  readonly operators: OperatorForms;
  readonly domain: 'mean';
  readonly simplified: boolean;
  readonly calibration: {
    readonly quantile: number | null;
    readonly center: boolean;
    readonly source: string;
    readonly sites: Record<string, { readonly median_theta: number; readonly max_abs: number | null; readonly tokens: number; readonly channels: number }>;
  };
  readonly source_model: { readonly dir: string | null; readonly sha256: string | null };
}

export function spikelmVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(fileURLToPath(new URL('../../package.json', import.meta.url)), 'utf8'));
    return String(pkg.version);
  } catch {
    return 'unknown';
  }
}

/** sha256 over a model directory's config.json and weight files, in name order. */
export function hashModelDir(dir: string): string {
  const files = fs.readdirSync(dir).filter((f) => f === 'config.json' || f.endsWith('.safetensors') || f === 'model.safetensors.index.json').sort();
  const h = crypto.createHash('sha256');
  const buf = Buffer.allocUnsafe(1 << 20);
  for (const f of files) {
    h.update(`${f}\0`);
    const fd = fs.openSync(path.join(dir, f), 'r');
    try {
      let n: number;
      while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) h.update(buf.subarray(0, n));
    } finally {
      fs.closeSync(fd);
    }
  }
  return h.digest('hex');
}

/** The ANN weights under their Hugging Face names and layouts (inverse of the loaders' name tables). */
export function exportHfTensors(cfg: ModelConfig, w: LMWeights): TensorToWrite[] {
  const out: TensorToWrite[] = [];
  const put = (name: string, t: Tensor | undefined) => {
    if (t) out.push({ name, shape: t.shape, data: t.data });
  };
  const tied = w.lmHead === w.embed;
  if (cfg.family === 'llama') {
    put('model.embed_tokens.weight', w.embed);
    w.blocks.forEach((b, i) => {
      const p = `model.layers.${i}`;
      put(`${p}.input_layernorm.weight`, b.attnNorm.weight);
      for (const [name, l] of [['q_proj', b.q], ['k_proj', b.k], ['v_proj', b.v], ['o_proj', b.o]] as const) {
        put(`${p}.self_attn.${name}.weight`, l.weight);
        put(`${p}.self_attn.${name}.bias`, l.bias);
      }
      put(`${p}.post_attention_layernorm.weight`, b.mlpNorm.weight);
      for (const [name, l] of [['gate_proj', b.gate], ['up_proj', b.up], ['down_proj', b.down]] as const) {
        put(`${p}.mlp.${name}.weight`, l?.weight);
        put(`${p}.mlp.${name}.bias`, l?.bias);
      }
    });
    put('model.norm.weight', w.finalNorm.weight);
    if (!tied) put('lm_head.weight', w.lmHead);
    return out;
  }
  const D = cfg.hiddenSize;
  put('transformer.wte.weight', w.embed);
  put('transformer.wpe.weight', w.positions);
  w.blocks.forEach((b, i) => {
    const p = `transformer.h.${i}`;
    put(`${p}.ln_1.weight`, b.attnNorm.weight);
    put(`${p}.ln_1.bias`, b.attnNorm.bias);
    const qkv = new Tensor([3 * D, D]);
    const bias = new Tensor([3 * D]);
    [b.q, b.k, b.v].forEach((l, j) => {
      qkv.data.set(l.weight.data, j * D * D);
      if (l.bias) bias.data.set(l.bias.data, j * D);
    });
    put(`${p}.attn.c_attn.weight`, transpose(qkv));
    put(`${p}.attn.c_attn.bias`, bias);
    put(`${p}.attn.c_proj.weight`, transpose(b.o.weight));
    put(`${p}.attn.c_proj.bias`, b.o.bias);
    put(`${p}.ln_2.weight`, b.mlpNorm.weight);
    put(`${p}.ln_2.bias`, b.mlpNorm.bias);
    put(`${p}.mlp.c_fc.weight`, transpose(b.up.weight));
    put(`${p}.mlp.c_fc.bias`, b.up.bias);
    put(`${p}.mlp.c_proj.weight`, transpose(b.down.weight));
    put(`${p}.mlp.c_proj.bias`, b.down.bias);
  });
  put('transformer.ln_f.weight', w.finalNorm.weight);
  put('transformer.ln_f.bias', w.finalNorm.bias);
  if (!tied) put('lm_head.weight', w.lmHead);
  return out;
}

/** config.json as the converted model's ANN sees it (a ReLU swap rewrites the activation key). */
export function configJson(cfg: ModelConfig): Record<string, unknown> {
  const key = cfg.family === 'gpt2' ? 'activation_function' : 'hidden_act';
  return { ...cfg.raw, [key]: cfg.activationName };
}

export function saveSnnModel(snn: SpikingLM, tokenizer: TextTokenizer, dir: string, record?: ConversionRecord): void {
  const parent = path.dirname(path.resolve(dir));
  if (!fs.existsSync(parent)) throw new ModelLoadError(`${dir}: the parent directory ${parent} does not exist`);
  const tmp = path.join(parent, `.${path.basename(dir)}.partial-${process.pid}-${Date.now().toString(36)}`);
  fs.mkdirSync(tmp);
  try {
    const tensors = exportHfTensors(snn.config, snn.weights);
    for (const [site, theta] of snn.spiking.thresholds) tensors.push({ name: `snn.thresholds.${site}`, shape: [theta.length], data: theta });
    for (const [site, mu] of snn.spiking.centers ?? []) tensors.push({ name: `snn.centers.${site}`, shape: [mu.length], data: mu });
    writeSafetensors(path.join(tmp, 'model.safetensors'), tensors, { format: 'pt', producer: `spikelm ${spikelmVersion()}` });
    atomicWriteFile(path.join(tmp, 'config.json'), `${JSON.stringify(configJson(snn.config), null, 2)}\n`);
    const sites: SnnConfigJson['calibration']['sites'] = {};
    for (const s of snn.sites) {
      const c = record?.calibration.sites.get(s.name);
      sites[s.name] = { median_theta: c?.medianTheta ?? NaN, max_abs: c && Number.isFinite(c.maxAbs) ? c.maxAbs : null, tokens: c?.tokens ?? 0, channels: s.channels };
    }
    const n = snn.spiking.neuron;
    const json: SnnConfigJson = {
      format: SNN_CONFIG_FORMAT, format_version: 1, spikelm_version: spikelmVersion(),
      timesteps: snn.timesteps, mode: snn.spiking.mode,
      neuron: { ...n, maxSpikes: Number.isFinite(n.maxSpikes) ? n.maxSpikes : 'inf' },
      surrogate: snn.spiking.surrogate, operators: snn.forms, domain: 'mean',
      simplified: record?.simplified ?? false,
      calibration: {
        quantile: record && Number.isFinite(record.calibration.quantile) ? record.calibration.quantile : null,
        center: record?.calibration.center ?? false, source: record?.calibrationSource ?? 'unknown', sites,
      },
      source_model: { dir: record?.sourceDir ?? null, sha256: record?.sourceDir ? hashModelDir(record.sourceDir) : null },
    };
    atomicWriteFile(path.join(tmp, 'snn_config.json'), `${JSON.stringify(json, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
    for (const f of tokenizer.files) fs.copyFileSync(f, path.join(tmp, path.basename(f)));
    // Swap into place: the old directory (if any) is moved aside first and removed last.
    const old = fs.existsSync(dir) ? `${tmp}.old` : undefined;
    if (old) fs.renameSync(dir, old);
    fs.renameSync(tmp, dir);
    if (old) fs.rmSync(old, { recursive: true, force: true });
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

export interface LoadedSnn {
  readonly snn: SpikingLM;
  /** The ANN stored in the same directory (the converted model's reference). */
  readonly ann: CausalLM;
  readonly tokenizer: TextTokenizer;
  readonly snnConfig: SnnConfigJson;
}

export function readSnnConfig(dir: string): SnnConfigJson {
  const file = path.join(dir, 'snn_config.json');
  if (!fs.existsSync(file)) throw new ModelLoadError(`${file}: not found (not a converted spiking model; run \`spikelm convert\` first)`);
  let j: SnnConfigJson;
  try {
    j = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ModelLoadError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  const fail = (msg: string): never => {
    throw new ModelLoadError(`${file}: ${msg}`);
  };
  if (j.format !== SNN_CONFIG_FORMAT) fail(`"format" must be "${SNN_CONFIG_FORMAT}"`);
  if (!Number.isInteger(j.timesteps) || j.timesteps < 1) fail(`"timesteps" must be a positive integer, got ${JSON.stringify(j.timesteps)}`);
  if (j.mode !== 'rate' && j.mode !== 'exact') fail(`"mode" must be rate or exact, got ${JSON.stringify(j.mode)}`);
  if (!j.surrogate || !SURROGATE_NAMES.includes(j.surrogate.name)) fail(`"surrogate.name" must be one of ${SURROGATE_NAMES.join(', ')}`);
  try {
    validateNeuron(neuronFromJson(j.neuron));
  } catch (err) {
    fail((err as Error).message);
  }
  return j;
}

function neuronFromJson(n: SnnConfigJson['neuron']): NeuronConfig {
  return { ...n, maxSpikes: n.maxSpikes === 'inf' ? Infinity : n.maxSpikes };
}

export function loadSnnModel(dir: string, opts: { backend?: Backend } = {}): LoadedSnn {
  const snnConfig = readSnnConfig(dir);
  const { config, weights } = loadWeights(dir);
  const backend = opts.backend ?? new CpuBackend();
  const ann = new CausalLM(config, weights, backend, dir);
  const file = SafetensorsFile.open(path.join(dir, 'model.safetensors'));
  const thresholds = new Map<string, Float32Array>();
  const centers = new Map<string, Float32Array>();
  try {
    for (const name of file.names) {
      if (name.startsWith('snn.thresholds.')) thresholds.set(name.slice('snn.thresholds.'.length), file.readF32(name).data);
      if (name.startsWith('snn.centers.')) centers.set(name.slice('snn.centers.'.length), file.readF32(name).data);
    }
  } finally {
    file.close();
  }
  const snn = new SpikingLM(config, weights, backend, {
    timesteps: snnConfig.timesteps, mode: snnConfig.mode, neuron: neuronFromJson(snnConfig.neuron), thresholds,
    ...(centers.size ? { centers } : {}), surrogate: snnConfig.surrogate, operators: snnConfig.operators,
  });
  return { snn, ann, tokenizer: loadTokenizer(dir, config.eosTokenIds, config.bosTokenId), snnConfig };
}
