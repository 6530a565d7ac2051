/**
 * Saving and loading a converted model as a Hugging Face-style directory:
 *
 *   config.json          the ANN's config (with the activation a ReLU swap chose)
 *   model.safetensors    the ANN weights under their Hugging Face names, plus the spiking parameters
 *                        `snn.thresholds.<site>` [C] (and `snn.centers.<site>` when centred); after
 *                        fine-tuning `snn.norm_gains.<norm>` [D] and `snn.lora.<site>.a` [rank, in],
 *                        `.b` [out, rank] (src/snn/adapters.ts) — the ANN's own tensors stay the original's
 *   snn_config.json      timesteps, mode, neuron parameters, surrogate, operator forms, calibration
 *                        statistics, the source model's sha256, the spikelm version, and the
 *                        fine-tuning run (`training`) if there was one
 *   tokenizer files      copied from the source
 *
 * The directory is written next to its destination under a temporary name and renamed into place,
 * so a crash never leaves a half-written model. Any HF loader can still read the ANN part.
 */
import { type WeightTensor, weightValue } from '../tensor/half.js';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArgumentError, ModelLoadError } from '../errors.js';
import type { ModelConfig } from '../nn/config.js';
import { CausalLM, exportHfTensors, loadWeights } from '../nn/model.js';
import { type TextTokenizer, loadTokenizer } from '../nn/tokenizer.js';
import type { LMWeights } from '../nn/weights.js';
import { type CodingName, type ScheduleName, checkCombination, parseCoding, parseSchedule } from '../snn/codes.js';
import { type Execution, type OperatorForms, type SnnMode, SpikingLM } from '../snn/model.js';
import type { LoraAdapter } from '../snn/adapters.js';
import type { SiteKind } from '../snn/sites.js';
import { SURROGATE_NAMES, type SurrogateName } from '../snn/surrogate.js';
import type { Backend } from '../tensor/backend.js';
import { CpuBackend } from '../tensor/cpu-backend.js';
import { type NeuronConfig, validateNeuron } from '../tensor/kernels/neuron.js';
import { Tensor } from '../tensor/tensor.js';
import { atomicWriteFile } from '../io/atomic-write.js';
import { fileKind, openRegularFile, readJsonObject, readRegularFile } from '../io/files.js';
import { type PublishOptions, interruptedReplacement, publishDirectory } from '../io/output-dir.js';
import { SafetensorsFile, writeSafetensors } from '../io/safetensors.js';
import type { TrainingRecord } from '../train/finetune.js';
import type { SearchRecord } from './search/planes.js';
import type { ConversionRecord } from './stages.js';

export const SNN_CONFIG_FORMAT = 'spikelm-snn';

export interface SnnConfigJson {
  readonly format: typeof SNN_CONFIG_FORMAT;
  /** 1: stepwise rate only (mode "rate" meant spiking); 2: schedule, coding, density; 3: planes per site, the search; 4: the two-stage head. */
  readonly format_version: 1 | 2 | 3 | 4;
  readonly spikelm_version: string;
  readonly timesteps: number;
  readonly mode: SnnMode | 'rate';
  readonly schedule?: ScheduleName;
  readonly coding?: CodingName;
  /** Default execution of the layerwise schedule (fast | event). */
  readonly execution?: Execution;
  /** Measured fraction of nonzero spike digits per site (GPU kernels choose by it). */
  readonly density?: Record<string, number>;
  /** Layerwise: steps per site kind relative to timesteps. */
  readonly site_steps?: Partial<Record<SiteKind, number>>;
  /** Layerwise (version 3): planes per (layer, site), by site name; `timesteps` is the largest. */
  readonly planes?: Record<string, number>;
  /** Version 4: the two-stage LM head (SpikingConfig.head). */
  readonly head?: { readonly coarse_planes: number; readonly top_k: number };
  /** Version 3: the target-driven search that chose `planes` (src/convert/search/planes.ts SearchRecord). */
  readonly search?: SearchRecord;
  /** maxSpikes is written as the string "inf" when unbounded. */
  readonly neuron: Omit<NeuronConfig, 'maxSpikes'> & { readonly maxSpikes: number | 'inf' };
  readonly surrogate: { readonly name: SurrogateName; readonly alpha: number };
  readonly operators: OperatorForms;
  readonly domain: 'mean';
  readonly simplified: boolean;
  readonly calibration: {
    readonly quantile: number | null;
    readonly coding?: CodingName;
    readonly center: boolean;
    readonly source: string;
    readonly sites: Record<string, { readonly median_theta: number; readonly max_abs: number | null; readonly tokens: number; readonly channels: number }>;
  };
  readonly source_model: { readonly dir: string | null; readonly sha256: string | null };
  /** Present once the model was fine-tuned (src/train/finetune.ts TrainingRecord; the last run). */
  readonly training?: TrainingRecord;
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
    const fd = openRegularFile(path.join(dir, f), 'a model file');
    try {
      let n: number;
      while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) h.update(buf.subarray(0, n));
    } finally {
      fs.closeSync(fd);
    }
  }
  return h.digest('hex');
}

/** config.json as the converted model's ANN sees it (a ReLU swap rewrites the activation key). */
export function configJson(cfg: ModelConfig): Record<string, unknown> {
  return { ...cfg.raw, [cfg.activationKey]: cfg.activationName };
}

/** Whether `dir` holds a converted model written by spikelm (its snn_config.json says so). */
export function isSnnModelDir(dir: string): boolean {
  try {
    return readJsonObject(path.join(dir, 'snn_config.json')).format === SNN_CONFIG_FORMAT;
  } catch {
    return false;
  }
}

export interface SaveOptions {
  /** The search that chose the model's planes (written as `search`). */
  readonly search?: SearchRecord;
  /** Replace an existing path that is not a previous spikelm output (never the source model). */
  readonly overwrite?: boolean;
  /**
   * The snn_config.json of the directory the model was loaded from: its calibration record and
   * source are kept when no ConversionRecord is given (a fine-tuned model saved anew).
   */
  readonly previous?: SnnConfigJson;
  /** The fine-tuning run that produced this model (saved as "training"). */
  readonly training?: TrainingRecord;
  /** Test hook: see publishDirectory. */
  readonly onStep?: PublishOptions['onStep'];
}

/** The rules saveSnnModel applies to its destination, for callers that check before any work. */
export function snnOutputRules(record: ConversionRecord | undefined, opts: SaveOptions = {}): PublishOptions {
  return { what: 'spiking model', isOurs: isSnnModelDir, overwrite: opts.overwrite, protect: record?.sourceDir ? [record.sourceDir] : [], onStep: opts.onStep };
}

/**
 * Write a converted model directory. An existing destination is replaced only if it is a previous
 * spikelm output (or `overwrite`), never if it is or contains the source model; the replacement is
 * atomic (publishDirectory): a crash leaves the old model or the new one, complete.
 */
export function saveSnnModel(snn: SpikingLM, tokenizer: TextTokenizer, dir: string, record?: ConversionRecord, opts: SaveOptions = {}): void {
  publishDirectory(dir, (tmp) => {
    const tensors = exportHfTensors(snn.config, snn.weights);
    for (const [site, theta] of snn.spiking.thresholds) tensors.push({ name: `snn.thresholds.${site}`, shape: [theta.length], data: theta });
    for (const [site, mu] of snn.spiking.centers ?? []) tensors.push({ name: `snn.centers.${site}`, shape: [mu.length], data: mu });
    for (const [norm, g] of snn.spiking.adapters?.normGains ?? []) tensors.push({ name: `snn.norm_gains.${norm}`, shape: [g.length], data: g });
    for (const [site, l] of snn.spiking.adapters?.lora ?? []) {
      tensors.push({ name: `snn.lora.${site}.a`, shape: [l.rank, l.a.length / l.rank], data: l.a });
      tensors.push({ name: `snn.lora.${site}.b`, shape: [l.b.length / l.rank, l.rank], data: l.b });
    }
    writeSafetensors(path.join(tmp, 'model.safetensors'), tensors, { format: 'pt', producer: `spikelm ${spikelmVersion()}` });
    atomicWriteFile(path.join(tmp, 'config.json'), `${JSON.stringify(configJson(snn.config), null, 2)}\n`);
    const sites: SnnConfigJson['calibration']['sites'] = {};
    for (const s of snn.sites) {
      const c = record?.calibration.sites.get(s.name);
      sites[s.name] = { median_theta: c?.medianTheta ?? NaN, max_abs: c && Number.isFinite(c.maxAbs) ? c.maxAbs : null, tokens: c?.tokens ?? 0, channels: s.channels };
    }
    const n = snn.spiking.neuron;
    const json: SnnConfigJson = {
      // version 4 only where its field is used, so that what a version-3 reader can load stays version 3
      format: SNN_CONFIG_FORMAT, format_version: snn.spiking.head ? 4 : 3, spikelm_version: spikelmVersion(),
      timesteps: snn.timesteps, mode: snn.spiking.mode, schedule: snn.schedule, coding: snn.coding,
      ...(snn.spiking.execution ? { execution: snn.spiking.execution } : {}),
      ...(snn.spiking.densityHints ? { density: Object.fromEntries(snn.spiking.densityHints) } : {}),
      ...(snn.spiking.siteSteps && Object.keys(snn.spiking.siteSteps).length ? { site_steps: { ...snn.spiking.siteSteps } } : {}),
      ...(snn.spiking.planes ? { planes: { ...snn.spiking.planes } } : {}),
      ...(snn.spiking.head ? { head: { coarse_planes: snn.spiking.head.coarsePlanes, top_k: snn.spiking.head.topK } } : {}),
      ...(opts.search ?? opts.previous?.search ? { search: opts.search ?? opts.previous!.search! } : {}),
      neuron: { ...n, maxSpikes: Number.isFinite(n.maxSpikes) ? n.maxSpikes : 'inf' },
      surrogate: snn.spiking.surrogate, operators: snn.forms, domain: 'mean',
      simplified: record?.simplified ?? opts.previous?.simplified ?? false,
      calibration: !record && opts.previous ? opts.previous.calibration : {
        quantile: record && Number.isFinite(record.calibration.quantile) ? record.calibration.quantile : null,
        coding: record?.calibration.coding ?? snn.coding,
        center: record?.calibration.center ?? false, source: record?.calibrationSource ?? 'unknown', sites,
      },
      source_model: !record && opts.previous ? opts.previous.source_model : { dir: record?.sourceDir ?? null, sha256: record?.sourceDir ? hashModelDir(record.sourceDir) : null },
      ...(opts.training ?? opts.previous?.training ? { training: opts.training ?? opts.previous!.training! } : {}),
    };
    atomicWriteFile(path.join(tmp, 'snn_config.json'), `${JSON.stringify(json, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
    for (const f of tokenizer.files) fs.writeFileSync(path.join(tmp, path.basename(f)), readRegularFile(f, 'a tokenizer file'));
  }, snnOutputRules(record, opts));
}

/**
 * A fingerprint of a model's weights: every tensor's shape and up to 4096 evenly spaced values,
 * hashed. Two different checkpoints of one architecture differ in it; the cost stays small at any size.
 */
export function weightsFingerprint(w: LMWeights): string {
  const h = crypto.createHash('sha256');
  // values, not bytes: the same weights held in float32 or in their 16 bits give the same print
  const add = (name: string, t: WeightTensor | undefined) => {
    if (!t) return;
    h.update(`${name}:${t.shape.join('x')};`);
    const n = t.size, stride = Math.max(1, Math.floor(n / 4096));
    const sample = new Float32Array(Math.ceil(n / stride));
    for (let i = 0, j = 0; i < n; i += stride, j++) sample[j] = weightValue(t, i);
    h.update(new Uint8Array(sample.buffer));
  };
  add('embed', w.embed);
  add('positions', w.positions);
  w.blocks.forEach((b, i) => {
    for (const [k, l] of Object.entries({ q: b.q, k: b.k, v: b.v, o: b.o, gate: b.gate, up: b.up, down: b.down })) {
      add(`${i}.${k}.w`, l?.weight);
      add(`${i}.${k}.b`, l?.bias);
    }
    add(`${i}.n1`, b.attnNorm.weight);
    add(`${i}.n1b`, b.attnNorm.bias);
    add(`${i}.n2`, b.mlpNorm.weight);
    add(`${i}.n2b`, b.mlpNorm.bias);
    add(`${i}.qn`, b.qNorm?.weight);
    add(`${i}.kn`, b.kNorm?.weight);
  });
  add('final', w.finalNorm?.weight);
  add('finalb', w.finalNorm?.bias);
  add('proj_in', w.projectIn?.weight);
  add('proj_out', w.projectOut?.weight);
  add('head', w.lmHead);
  return h.digest('hex');
}

/**
 * `--model A --snn B` must name the same network: B stores the ANN it was converted from; its shape
 * and weights must be A's (the activation may differ: a ReLU swap changes only that).
 */
export function assertSameModel(ann: { config: ModelConfig; weights: LMWeights }, snnAnn: { config: ModelConfig; weights: LMWeights }, modelDir: string, snnDir: string): void {
  const a = ann.config, b = snnAnn.config;
  const keys = ['family', 'vocabSize', 'hiddenSize', 'numLayers', 'numHeads', 'numKvHeads', 'headDim', 'intermediateSize'] as const;
  const diff = keys.filter((k) => a[k] !== b[k]);
  if (diff.length > 0) {
    throw new ArgumentError(`--snn ${snnDir} was not converted from --model ${modelDir}: ${diff.map((k) => `${k} ${String(b[k])} vs ${String(a[k])}`).join(', ')}`);
  }
  if (weightsFingerprint(ann.weights) !== weightsFingerprint(snnAnn.weights)) {
    throw new ArgumentError(`--snn ${snnDir} was not converted from --model ${modelDir}: same shape, different weights`);
  }
}

export interface LoadedSnn {
  readonly snn: SpikingLM;
  /** The ANN stored in the same directory: its config and host weights (shared with the SNN). */
  readonly config: ModelConfig;
  readonly weights: LMWeights;
  /** The ANN as a runnable model (uploads its weights when first asked for). */
  ann(): CausalLM;
  readonly tokenizer: TextTokenizer;
  readonly snnConfig: SnnConfigJson;
}

export function readSnnConfig(dir: string): SnnConfigJson {
  const file = path.join(dir, 'snn_config.json');
  if (fileKind(dir) === 'missing') {
    const aside = interruptedReplacement(dir);
    throw new ModelLoadError(`${dir}: no such directory${aside ? ` (a replacement was interrupted; the previous model is at ${aside})` : ''}`);
  }
  if (fileKind(file) === 'missing') throw new ModelLoadError(`${file}: not found (not a converted spiking model; run \`spikelm convert\` first)`);
  let j: SnnConfigJson;
  try {
    j = readJsonObject(file, 'snn_config.json, a JSON object') as unknown as SnnConfigJson;
  } catch (err) {
    throw new ModelLoadError((err as Error).message);
  }
  const fail = (msg: string): never => {
    throw new ModelLoadError(`${file}: ${msg}`);
  };
  if (j.format !== SNN_CONFIG_FORMAT) fail(`"format" must be "${SNN_CONFIG_FORMAT}"`);
  if (!Number.isInteger(j.timesteps) || j.timesteps < 1) fail(`"timesteps" must be a positive integer, got ${JSON.stringify(j.timesteps)}`);
  if (j.mode !== 'spiking' && j.mode !== 'rate' && j.mode !== 'exact') fail(`"mode" must be spiking or exact, got ${JSON.stringify(j.mode)}`);
  if (![1, 2, 3, 4].includes(j.format_version)) fail(`"format_version" ${JSON.stringify(j.format_version)} is not one this spikelm reads (1 to 4)`);
  if (j.head !== undefined) {
    if (j.format_version < 4) fail('"head" needs format_version 4');
    const h = j.head as unknown as Record<string, unknown>;
    if (typeof h !== 'object' || h === null || !Number.isInteger(h.coarse_planes) || !Number.isInteger(h.top_k)) fail(`"head" must be {"coarse_planes": integer, "top_k": integer}, got ${JSON.stringify(j.head)}`);
  }
  if (j.planes !== undefined) {
    if (j.format_version < 3) fail('"planes" needs format_version 3');
    if (typeof j.planes !== 'object' || j.planes === null || Array.isArray(j.planes)) fail('"planes" must be an object of site name → planes');
    for (const [k, v] of Object.entries(j.planes)) if (!Number.isInteger(v) || (v as number) < 1) fail(`"planes": ${JSON.stringify(k)}: ${JSON.stringify(v)} is not a positive integer number of planes`);
  }
  try {
    if (j.schedule !== undefined) parseSchedule(j.schedule, '"schedule"');
    if (j.coding !== undefined) parseCoding(j.coding, '"coding"');
    if (j.schedule && j.coding) checkCombination(j.coding, j.schedule);
  } catch (err) {
    fail((err as Error).message);
  }
  if (j.execution !== undefined && !['multi', 'single', 'fast', 'event'].includes(j.execution)) fail(`"execution" must be multi, single, fast or event, got ${JSON.stringify(j.execution)}`);
  for (const [k, v] of Object.entries(j.site_steps ?? {})) {
    if (!['attn_in', 'q_in', 'p_in', 'o_in', 'mlp_in', 'down_in', 'head_in'].includes(k) || !Number.isInteger(v)) fail(`"site_steps": ${JSON.stringify(k)}: ${JSON.stringify(v)} is not a site kind with an integer offset`);
  }
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
  const backend = opts.backend ?? new CpuBackend();
  // on the CPU backend the matrices go straight into the memory its kernels read (one copy)
  const allocator = backend instanceof CpuBackend ? backend.hostAllocator() : undefined;
  const { config, weights } = loadWeights(dir, allocator ? { allocator } : {});
  let ann: CausalLM | undefined;
  const file = SafetensorsFile.open(path.join(dir, 'model.safetensors'));
  const thresholds = new Map<string, Float32Array>();
  const centers = new Map<string, Float32Array>();
  const normGains = new Map<string, Float32Array>();
  const lora = new Map<string, { a?: Tensor; b?: Tensor }>();
  try {
    for (const name of file.names) {
      if (name.startsWith('snn.thresholds.')) thresholds.set(name.slice('snn.thresholds.'.length), file.readF32(name).data);
      if (name.startsWith('snn.centers.')) centers.set(name.slice('snn.centers.'.length), file.readF32(name).data);
      if (name.startsWith('snn.norm_gains.')) normGains.set(name.slice('snn.norm_gains.'.length), file.readF32(name).data);
      const m = /^snn\.lora\.(.+)\.(a|b)$/.exec(name);
      if (m) {
        const entry = lora.get(m[1]!) ?? {};
        entry[m[2] as 'a' | 'b'] = file.readF32(name);
        lora.set(m[1]!, entry);
      }
    }
  } finally {
    file.close();
  }
  const adapters = loraAdapters(lora, dir);
  const build = (spiking: ConstructorParameters<typeof SpikingLM>[3]): SpikingLM => {
    try {
      return new SpikingLM(config, weights, backend, spiking);
    } catch (err) {
      // what the files say does not make a network of this model: name the file
      if (err instanceof ArgumentError) throw new ModelLoadError(`${path.join(dir, 'snn_config.json')}: ${err.message}`);
      throw err;
    }
  };
  const snn = build({
    timesteps: snnConfig.timesteps, mode: snnConfig.mode === 'exact' ? 'exact' : 'spiking',
    schedule: snnConfig.schedule ?? 'stepwise', coding: snnConfig.coding ?? 'rate',
    ...(snnConfig.execution ? { execution: snnConfig.execution } : {}),
    ...(snnConfig.density ? { densityHints: new Map(Object.entries(snnConfig.density)) } : {}),
    ...(snnConfig.site_steps ? { siteSteps: snnConfig.site_steps } : {}),
    ...(snnConfig.planes ? { planes: snnConfig.planes } : {}),
    ...(snnConfig.head ? { head: { coarsePlanes: snnConfig.head.coarse_planes, topK: snnConfig.head.top_k } } : {}),
    neuron: neuronFromJson(snnConfig.neuron), thresholds,
    ...(centers.size ? { centers } : {}), surrogate: snnConfig.surrogate, operators: snnConfig.operators,
    ...(normGains.size || adapters.size ? { adapters: { ...(normGains.size ? { normGains } : {}), ...(adapters.size ? { lora: adapters } : {}) } } : {}),
  });;
  return { snn, config, weights, ann: () => (ann ??= new CausalLM(config, weights, backend, dir)), tokenizer: loadTokenizer(dir, config.eosTokenIds, config.bosTokenId), snnConfig };
}

/** LoRA pairs read from snn.lora.<site>.a [rank, in] and .b [out, rank], checked for shape. */
function loraAdapters(found: Map<string, { a?: Tensor; b?: Tensor }>, dir: string): Map<string, LoraAdapter> {
  const out = new Map<string, LoraAdapter>();
  for (const [site, { a, b }] of found) {
    const where = `${path.join(dir, 'model.safetensors')}: LoRA "${site}"`;
    if (!a || !b) throw new ModelLoadError(`${where}: has ${a ? 'snn.lora.' + site + '.a' : 'snn.lora.' + site + '.b'} but not its partner (both A and B are needed)`);
    if (a.shape.length !== 2 || b.shape.length !== 2 || a.shape[0] !== b.shape[1]) {
      throw new ModelLoadError(`${where}: A is [${a.shape.join(', ')}] and B [${b.shape.join(', ')}]; expected A [rank, in] and B [out, rank] with one rank`);
    }
    out.set(site, { rank: a.shape[0]!, a: a.data, b: b.data });
  }
  return out;
}
