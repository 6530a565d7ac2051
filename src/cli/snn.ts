/** `spikelm convert` and `spikelm fidelity`. */
import fs from 'node:fs';
import { ArgumentError } from '../errors.js';
import { DEFAULT_CONVERSION, convertModelToSpiking, createCalibrationData, saveSnnModel, simplifiedConversion } from '../convert/api.js';
import { bundledText } from '../convert/calibration-data.js';
import { assertSameModel, loadSnnModel, snnOutputRules } from '../convert/snn-io.js';
import type { ConversionRecord } from '../convert/stages.js';
import { checkOutputDir } from '../io/output-dir.js';
import { type FidelityReport, measureFidelity } from '../snn/fidelity.js';
import type { Execution, SpikingLM } from '../snn/model.js';
import { CODINGS, SCHEDULES, type ScheduleName, checkCombination, parseCoding, parseSchedule } from '../snn/codes.js';
import { SURROGATE_NAMES, type SurrogateName, surrogate } from '../snn/surrogate.js';
import type { CausalLM } from '../nn/model.js';
import type { TextTokenizer } from '../nn/tokenizer.js';
import { readFlagFile, requireFlag } from './args.js';
import { MEMORY_PRESETS, type MemoryPreset, parseMemoryPreset } from '../snn/memory.js';
import { type CliIO, type Command, MODEL_FLAGS } from './command.js';
import { loadModelFromFlags, resolveModelDir, resolveModelSource } from './model-dir.js';
import { ProgressBar } from './progress.js';
import { TARGET_FLAGS, convertForTarget, finetuneFromFlags, missExit, readNamedText, seedFromFlags, targetFromFlags } from './target.js';
import type { TargetConversion } from '../convert/search/planes.js';
import { wilsonInterval } from '../convert/search/target.js';
import { isWeighted } from '../snn/codes.js';

export function parseSurrogate(name: unknown, alpha: unknown): { name: SurrogateName; alpha: number } {
  if (typeof name !== 'string' || !SURROGATE_NAMES.includes(name as SurrogateName)) {
    throw new ArgumentError(`--surrogate_function must be one of ${SURROGATE_NAMES.join(', ')}, got "${String(name)}"`);
  }
  const s = surrogate(name as SurrogateName, alpha === undefined ? undefined : Number(alpha));
  return { name: s.name, alpha: s.alpha };
}

export function positiveInt(v: unknown, flag: string): number {
  return atLeast(v, 1, flag);
}

function atLeast(v: unknown, min: number, flag: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new ArgumentError(`${flag} must be an integer ≥ ${min}, got ${String(v)}`);
  return v;
}

function quantileFlag(v: unknown): number {
  if (typeof v !== 'number' || !(v > 0 && v <= 1)) throw new ArgumentError(`--quantile must be in (0, 1], got ${String(v)}`);
  return v;
}

export function formatFidelityTable(report: FidelityReport): string {
  const header = ['schedule', 'coding', 'T', 'top-1', 'KL', 'max|Δlogit|', 'mean|Δlogit|', 'ppl ANN', 'ppl SNN', 'distinct', 'spikes/neuron/token', 'max/step', 'E/E_ANN fp32', '+memory decode', '+memory prefill'];
  const rows = report.results.map((r) => [
    r.schedule, r.coding, String(r.T), `${(r.top1_agreement * 100).toFixed(1)}%`, r.kl.toExponential(2), r.max_abs_logit_err.toFixed(3), r.mean_abs_logit_err.toFixed(4),
    r.ppl_ann.toFixed(2), r.ppl_snn.toFixed(2), `${r.distinct_predictions_snn}/${r.distinct_predictions_ann}`, r.spikes_per_neuron_per_token.toFixed(2),
    String(r.max_spikes_per_neuron_per_step), r.energy_ratio.fp32.toFixed(3),
    r.energy_with_memory ? r.energy_with_memory.decode.fp32.ratio.toFixed(3) : '-', r.energy_with_memory ? r.energy_with_memory.prefill.fp32.ratio.toFixed(3) : '-',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
  const preset = report.results.find((r) => r.energy_with_memory)?.energy_with_memory?.preset;
  return [`fidelity over ${report.positions} positions (E/E_ANN: compute only, Horowitz 45 nm; +memory: with the bytes moved, ${preset ?? 'horowitz-45nm'} preset, FP32, event execution)`, line(header), ...rows.map(line)].join('\n');
}

export async function runFidelity(ann: CausalLM, snn: SpikingLM, tokenizer: TextTokenizer, timesteps: number[], textArg: string | undefined, io: CliIO, memoryPreset?: MemoryPreset): Promise<FidelityReport> {
  const text = textArg ?? bundledText('eval-stories.txt').text;
  return measureOnText(ann, snn, tokenizer, timesteps, text, io, memoryPreset);
}

/** --energy-preset: a named memory preset (src/snn/memory.ts) or a JSON file with the same fields. */
export function memoryPresetFlag(v: unknown): MemoryPreset | undefined {
  if (v === undefined) return undefined;
  const s = String(v);
  if (s in MEMORY_PRESETS) return MEMORY_PRESETS[s]!;
  const text = readFlagFile(s, '--energy-preset', `a memory preset (${Object.keys(MEMORY_PRESETS).join(', ')}) or a JSON file`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ArgumentError(`--energy-preset ${s}: not JSON (${(err as Error).message})`);
  }
  return parseMemoryPreset(json, `--energy-preset ${s}`);
}

/** The evaluation text a --text value names: stories (the default), english, or a file. */
export function evaluationText(arg: unknown): { text: string; source: string } {
  return readNamedText(typeof arg === 'string' ? arg : 'stories', 'eval', '--text');
}

async function measureOnText(ann: CausalLM, snn: SpikingLM, tokenizer: TextTokenizer, timesteps: number[], text: string, io: CliIO, memoryPreset?: MemoryPreset): Promise<FidelityReport> {
  const ids = tokenizer.encode(text.replace(/\s*\n\s*/g, ' ').trim());
  if (ids.length < 256) io.err(`note: the text gives ${ids.length} positions (fewer than 256)\n`);
  const maxT = Math.max(...timesteps);
  const model = snn.schedule === 'stepwise' && maxT !== snn.timesteps ? snn.withTimesteps(maxT) : snn;
  const bar = new ProgressBar(io, `fidelity ${snn.schedule} ${snn.coding} (T ${timesteps.join(',')})`);
  try {
    return await measureFidelity(ann, model, ids, timesteps, { onProgress: (d, t) => bar.update(d, t), ...(memoryPreset ? { memoryPreset } : {}) });
  } finally {
    if (model !== snn) model.dispose();
  }
}

function readText(file: string): string {
  return evaluationText(file).text;
}

/** The T values a fidelity sweep uses by default for a schedule (the default T included). */
export function defaultTimesteps(schedule: ScheduleName): number[] {
  return schedule === 'stepwise' ? [1, 2, 4, 8, 16, 32, 64, 128] : [4, 6, 8, DEFAULT_CONVERSION.timesteps, 12, 16].sort((a, b) => a - b).filter((t, i, a) => a.indexOf(t) === i);
}

export const convertCommand: Command = {
  name: 'convert',
  summary: 'convert a model directory into a spiking model directory',
  flags: {
    ...MODEL_FLAGS,
    'output-dir': { type: 'string', required: true, help: 'where to write the spiking model (written atomically)' },
    schedule: { type: 'string', help: `${SCHEDULES.join(' | ')} (default ${DEFAULT_CONVERSION.schedule}; stepwise with --simplified)` },
    coding: { type: 'string', help: `${CODINGS.join(' | ')} (default ${DEFAULT_CONVERSION.coding}; rate with --simplified; phase codes need the layerwise schedule)` },
    timesteps: { type: 'int', help: `a fixed T (planes of a weighted code) instead of the target-driven search (fixed conversions default to ${DEFAULT_CONVERSION.timesteps})` },
    ...TARGET_FLAGS,
    execution: { type: 'string', help: 'default execution saved with the model: fast | event (layerwise), multi | single (stepwise)' },
    simplified: { type: 'boolean', help: 'the textbook converter, for comparison: stepwise rate coding without calibration or operator compensation (unit thresholds, naive operators)' },
    verify: { type: 'boolean', help: 'print the fidelity table at this T (and a few below) after converting' },
    'surrogate-function': { type: 'string', help: `surrogate gradient: ${SURROGATE_NAMES.join(' | ')}`, default: 'atan' },
    'surrogate-alpha': { type: 'number', help: 'surrogate sharpness (default per function)' },
    'calibration-samples': { type: 'int', help: 'calibration sequences', default: 16 },
    'calibration-length': { type: 'int', help: 'tokens per calibration sequence', default: 64 },
    'calibration-file': { type: 'string', help: 'text to calibrate on: stories (the default), english (both bundled) or a file; the search splits it into a fit part and a select part' },
    quantile: { type: 'number', help: 'per-channel quantile of |activation| the code\'s range is fitted to (default: 0.9 for rate bursts, 1 = the max otherwise)' },
    'max-spikes': { type: 'int', help: 'rate codes: spikes per neuron per step (default unbounded: sigma-delta bursts)' },
    text: { type: 'string', help: 'text for --verify: stories (default), english or a file' },
    overwrite: { type: 'boolean', help: 'replace --output_dir even if it is not a previous spikelm output (never the source model)' },
  },
  async run({ flags }, io) {
    // Every flag is checked before any work: a bad value fails in milliseconds, not after calibration.
    const out = requireFlag<string>(flags, 'output-dir', 'convert');
    const saveOpts = { overwrite: flags.overwrite === true };
    // a local source is checked against --output_dir before any work; a Hub name once resolved
    if (typeof flags.model === 'string' && fs.existsSync(flags.model)) checkOutputDir(out, snnOutputRules({ sourceDir: flags.model } as ConversionRecord, saveOpts));
    const simplified = flags.simplified === true;
    const schedule = parseSchedule(String(flags.schedule ?? (simplified ? 'stepwise' : DEFAULT_CONVERSION.schedule)));
    const coding = parseCoding(String(flags.coding ?? (simplified ? 'rate' : DEFAULT_CONVERSION.coding)));
    checkCombination(coding, schedule);
    const timesteps = flags.timesteps === undefined ? undefined : positiveInt(flags.timesteps, '--timesteps');
    const searched = !simplified && schedule === 'layerwise' && isWeighted(coding) && timesteps === undefined;
    if (typeof flags.target === 'string' && timesteps !== undefined) throw new ArgumentError('--target chooses the planes of every site; --timesteps fixes them: give one or the other');
    if (flags.finetune !== undefined && !searched) throw new ArgumentError('--finetune is a stage of the target-driven conversion (no --timesteps); fine-tune a fixed conversion with spikelm finetune');
    if (typeof flags.target === 'string' && !searched) throw new ArgumentError('--target searches the planes of a weighted code (phase-ternary, phase) in the layerwise schedule; other codes and --simplified take a fixed --timesteps');
    const target = targetFromFlags(flags), seed = seedFromFlags(flags), finetune = finetuneFromFlags(flags);
    const execution = flags.execution === undefined ? undefined : parseExecution(String(flags.execution), schedule);
    if (simplified && (schedule !== 'stepwise' || coding !== 'rate')) throw new ArgumentError('--simplified is the textbook stepwise rate converter; it takes no --schedule layerwise or weighted --coding');
    const sur = parseSurrogate(flags['surrogate-function'], flags['surrogate-alpha']);
    const neuron = flags['max-spikes'] !== undefined ? { maxSpikes: positiveInt(flags['max-spikes'], '--max-spikes') } : {};
    const quantile = flags.quantile === undefined ? undefined : quantileFlag(flags.quantile);
    const calibration = {
      numSamples: positiveInt(flags['calibration-samples'], '--calibration-samples'),
      maxLength: atLeast(flags['calibration-length'], 2, '--calibration-length'),
      ...(typeof flags['calibration-file'] === 'string' ? readNamedText(flags['calibration-file'], 'calibration', '--calibration-file') : {}),
    };
    const verifyText = typeof flags.text === 'string' ? readText(flags.text) : undefined;
    const source = await resolveModelSource(flags.model, io);
    checkOutputDir(out, snnOutputRules({ sourceDir: source.dir } as ConversionRecord, saveOpts));
    const { model, tokenizer, dir } = await loadModelFromFlags(flags, io, source);
    let converted: { snn: SpikingLM; record: ConversionRecord; search?: TargetConversion['search'] };
    const t0 = performance.now();
    const T = timesteps ?? DEFAULT_CONVERSION.timesteps;
    if (searched) {
      converted = await convertForTarget(model, tokenizer, {
        target, coding, seed, finetune, ...(quantile !== undefined ? { quantile } : {}),
        ...(typeof flags['calibration-file'] === 'string' ? { calibration: flags['calibration-file'] } : {}),
      }, io);
    } else if (flags.simplified) {
      io.err('simplified conversion: no calibration (θ = 1 everywhere) and naive operators\n');
      converted = simplifiedConversion(model, { timesteps: T, neuron });
    } else {
      const data = createCalibrationData(tokenizer, calibration);
      const bar = new ProgressBar(io, 'calibrating');
      converted = await convertModelToSpiking(model, data, { timesteps: T, schedule, coding, ...(quantile !== undefined ? { quantile } : {}), neuron, onProgress: (d, t) => bar.update(d, t) });
    }
    let snn = converted.snn.withSurrogate(sur);
    converted.snn.dispose();
    if (execution) snn = snn.with({ execution });
    saveSnnModel(snn, tokenizer, out, { ...converted.record, sourceDir: dir }, { ...saveOpts, ...(converted.search ? { search: converted.search } : {}) });
    io.err(`converted ${dir} → ${out} in ${((performance.now() - t0) / 1000).toFixed(1)}s (${snn.schedule} ${snn.coding}, T = ${snn.timesteps}${converted.search ? ', planes per site chosen for the target' : ''}, ${snn.sites.length} encoder sites)\n`);
    if (flags.verify) {
      const ts = converted.search ? [snn.timesteps] : snn.schedule === 'stepwise' ? [...new Set([Math.max(1, T >> 2), Math.max(1, T >> 1), T])] : [...new Set([Math.max(1, T - 2), T])];
      io.out(`${formatFidelityTable(await runFidelity(model, snn, tokenizer, ts, verifyText, io))}\n`);
    }
    return converted.search ? missExit(converted.search, flags, io) : 0;
  },
};

export function parseExecution(s: string, schedule: ScheduleName): Execution {
  const allowed = schedule === 'stepwise' ? ['multi', 'single'] : ['fast', 'event'];
  if (!allowed.includes(s)) throw new ArgumentError(`--execution must be ${allowed.join(' or ')} for the ${schedule} schedule, got "${s}"`);
  return s as Execution;
}

export const fidelityCommand: Command = {
  name: 'fidelity',
  summary: 'compare a spiking model with its ANN across T: fidelity, spikes and energy (sweeps codes and schedules)',
  flags: {
    ...MODEL_FLAGS,
    snn: { type: 'string', help: 'a converted spiking model directory (default: convert --model now, calibrated)' },
    coding: { type: 'string-list', help: `comma-separated codes to convert and compare: ${CODINGS.join(', ')} (default ${DEFAULT_CONVERSION.coding})` },
    schedule: { type: 'string-list', help: `comma-separated schedules: ${SCHEDULES.join(', ')} (default ${DEFAULT_CONVERSION.schedule})` },
    timesteps: { type: 'int-list', help: `comma-separated T values (default: ${defaultTimesteps('layerwise').join(',')} layerwise, ${defaultTimesteps('stepwise').join(',')} stepwise)` },
    execution: { type: 'string', help: 'fast | event (layerwise), multi | single (stepwise)' },
    quantile: { type: 'number', help: 'calibration quantile (default per code)' },
    ...TARGET_FLAGS,
    'calibration-file': { type: 'string', help: 'text to calibrate (and, for the target, select planes) on: stories (default), english or a file; never the --text' },
    text: { type: 'string', help: 'text to evaluate on: stories (the default, data/eval-stories.txt), english (data/eval-english.txt) or a file' },
    'energy-preset': { type: 'string', help: `where weights, activations, the cache and state live and what an access costs, for the memory-aware energy: ${Object.keys(MEMORY_PRESETS).join(', ')} (default horowitz-45nm) or a JSON file` },
    json: { type: 'boolean', help: 'print JSON' },
  },
  async run({ flags }, io) {
    const timesteps = flags.timesteps === undefined ? undefined : (flags.timesteps as number[]).map((t) => positiveInt(t, '--timesteps'));
    const evalText = evaluationText(flags.text);
    const memoryPreset = memoryPresetFlag(flags['energy-preset']);
    const text = evalText.text;
    const snnDir = typeof flags.snn === 'string' ? resolveModelDir(flags.snn, '--snn') : undefined;
    if (snnDir && (flags.coding !== undefined || flags.schedule !== undefined || flags.quantile !== undefined)) {
      throw new ArgumentError('--coding, --schedule and --quantile choose how to convert; with --snn DIR the saved model is used as it was converted');
    }
    const codings = ((flags.coding as string[] | undefined) ?? [DEFAULT_CONVERSION.coding]).map((c) => parseCoding(c));
    const schedules = ((flags.schedule as string[] | undefined) ?? [DEFAULT_CONVERSION.schedule]).map((c) => parseSchedule(c));
    const configs = schedules.flatMap((schedule) => codings.map((coding) => ({ schedule, coding })));
    const valid = configs.filter(({ schedule, coding }) => {
      try {
        checkCombination(coding, schedule);
        return true;
      } catch {
        return false;
      }
    });
    if (!snnDir && valid.length === 0) checkCombination(configs[0]!.coding, configs[0]!.schedule);
    const quantile = flags.quantile === undefined ? undefined : quantileFlag(flags.quantile);
    const target = targetFromFlags(flags), seed = seedFromFlags(flags), finetune = finetuneFromFlags(flags);
    const searchable = (c: { schedule: ScheduleName; coding: string }) => c.schedule === 'layerwise' && isWeighted(c.coding as never);
    if (typeof flags.target === 'string' && (snnDir || timesteps !== undefined || !valid.some(searchable))) {
      throw new ArgumentError('--target chooses planes per site when converting a weighted code (layerwise) without --timesteps; it takes no --snn or --timesteps');
    }
    const calibrationArg = typeof flags['calibration-file'] === 'string' ? flags['calibration-file'] : undefined;
    if (calibrationArg) readNamedText(calibrationArg, 'calibration', '--calibration-file');
    for (const sch of new Set(valid.map((c) => c.schedule))) if (flags.execution !== undefined) parseExecution(String(flags.execution), sch);
    const { model: ann, tokenizer, dir } = await loadModelFromFlags(flags, io);
    const reports: { mode: string; report: FidelityReport; searched?: TargetConversion }[] = [];
    const execution = flags.execution === undefined ? undefined : String(flags.execution) as Execution;
    if (snnDir) {
      const loaded = loadSnnModel(snnDir, { backend: ann.backend });
      assertSameModel(ann, loaded, dir, snnDir);
      const snn = execution ? loaded.snn.with({ execution: parseExecution(execution, loaded.snn.schedule) }) : loaded.snn;
      const mode = `${loaded.snnConfig.mode === 'exact' ? 'exact' : 'spiking'}${loaded.snnConfig.simplified ? ' (simplified)' : ''}`;
      reports.push({ mode, report: await runFidelity(ann, snn, tokenizer, timesteps ?? defaultTimesteps(snn.schedule), text, io, memoryPreset) });
    } else {
      for (const c of configs.filter((x) => !valid.includes(x))) io.err(`note: skipping ${c.schedule} ${c.coding}: phase codes need the layerwise schedule\n`);
      const data = createCalibrationData(tokenizer, calibrationArg ? readNamedText(calibrationArg, 'calibration', '--calibration-file') : {});
      for (const { schedule, coding } of valid) {
        if (timesteps === undefined && searchable({ schedule, coding })) {
          // the default: the cheapest network found to meet the target on calibration text
          const searched = await convertForTarget(ann, tokenizer, { target, coding, seed, finetune, ...(quantile !== undefined ? { quantile } : {}), ...(calibrationArg ? { calibration: calibrationArg } : {}) }, io);
          const model = execution ? searched.snn.with({ execution: parseExecution(execution, schedule) }) : searched.snn;
          reports.push({ mode: 'spiking', report: await runFidelity(ann, model, tokenizer, [model.timesteps], text, io, memoryPreset), searched });
          searched.snn.dispose();
          if (model !== searched.snn) model.dispose();
          continue;
        }
        const Ts = timesteps ?? defaultTimesteps(schedule);
        const bar = new ProgressBar(io, `calibrating ${schedule} ${coding}`);
        const { snn } = await convertModelToSpiking(ann, data, { timesteps: Math.max(...Ts), schedule, coding, ...(quantile !== undefined ? { quantile } : {}), onProgress: (d, t) => bar.update(d, t) });
        const model = execution ? snn.with({ execution: parseExecution(execution, schedule) }) : snn;
        reports.push({ mode: 'spiking', report: await runFidelity(ann, model, tokenizer, Ts, text, io, memoryPreset) });
        snn.dispose();
        if (model !== snn) model.dispose();
      }
    }
    const positions = reports[0]!.report.positions;
    const results = reports.flatMap((r) => r.report.results.map((row) => {
      const [lo, hi] = wilsonInterval(Math.round(row.top1_agreement * positions), positions);
      const s = r.searched;
      return {
        ...row, top1_ci95: [lo, hi],
        ...(s ? {
          target: s.search.target, meets_target_on_select: s.search.chosen.meets, planes: s.search.chosen.planes, ...(s.search.chosen.head ? { head: s.search.chosen.head } : {}),
          selection: {
            positions: s.search.calibration.select_positions, top1: s.search.chosen.top1, kl: s.search.chosen.kl, energy_ratio_fp32: s.search.chosen.energy_fp32,
            top1_margin: s.search.chosen.top1_margin, kl_margin: s.search.chosen.kl_margin, ...(s.search.chosen.miss ? { miss: s.search.chosen.miss } : {}),
          },
          search_seconds: Number(s.seconds.total.toFixed(2)), search: s.search,
        } : {}),
      };
    }));
    const textInfo = { source: evalText.source, positions };
    if (flags.json) io.out(`${JSON.stringify({ model: dir, mode: reports[0]!.mode, text: textInfo, positions, default: { target, schedule: DEFAULT_CONVERSION.schedule, coding: DEFAULT_CONVERSION.coding }, results }, null, 2)}\n`);
    else {
      io.out(`evaluation text: ${evalText.source} (${positions} positions; top-1 with its 95% Wilson interval below)\n`);
      io.out(`${formatFidelityTable({ positions, results: reports.flatMap((r) => r.report.results), energy: new Map() })}\n`);
      for (const row of results) io.out(`  ${row.schedule} ${row.coding} T = ${row.T}: top-1 ${(100 * row.top1_agreement).toFixed(2)}% [${(100 * row.top1_ci95[0]!).toFixed(2)}, ${(100 * row.top1_ci95[1]!).toFixed(2)}]${'planes' in row ? ', planes per site chosen on calibration text' : ''}\n`);
    }
    const missed = reports.find((r) => r.searched && !r.searched.search.chosen.meets);
    return missed ? missExit(missed.searched!.search, flags, io) : 0;
  },
};
