/** `spikelm convert` and `spikelm fidelity`. */
import { ArgumentError } from '../errors.js';
import { convertModelToSpiking, createCalibrationData, saveSnnModel, simplifiedConversion } from '../convert/api.js';
import { bundledText } from '../convert/calibration-data.js';
import { assertSameModel, loadSnnModel, snnOutputRules } from '../convert/snn-io.js';
import type { ConversionRecord } from '../convert/stages.js';
import { checkOutputDir } from '../io/output-dir.js';
import { type FidelityReport, measureFidelity } from '../snn/fidelity.js';
import type { SpikingLM } from '../snn/model.js';
import { SURROGATE_NAMES, type SurrogateName, surrogate } from '../snn/surrogate.js';
import type { CausalLM } from '../nn/model.js';
import type { TextTokenizer } from '../nn/tokenizer.js';
import { readFlagFile, requireFlag } from './args.js';
import { type CliIO, type Command, MODEL_FLAGS } from './command.js';
import { loadModelFromFlags, resolveModelDir } from './model-dir.js';
import { ProgressBar } from './progress.js';

function parseSurrogate(name: unknown, alpha: unknown): { name: SurrogateName; alpha: number } {
  if (typeof name !== 'string' || !SURROGATE_NAMES.includes(name as SurrogateName)) {
    throw new ArgumentError(`--surrogate_function must be one of ${SURROGATE_NAMES.join(', ')}, got "${String(name)}"`);
  }
  const s = surrogate(name as SurrogateName, alpha === undefined ? undefined : Number(alpha));
  return { name: s.name, alpha: s.alpha };
}

function positiveInt(v: unknown, flag: string): number {
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
  const header = ['T', 'top-1', 'KL', 'max|Δlogit|', 'mean|Δlogit|', 'ppl ANN', 'ppl SNN', 'distinct ANN', 'distinct SNN', 'spikes/neuron/step'];
  const rows = report.results.map((r) => [
    String(r.T), `${(r.top1_agreement * 100).toFixed(1)}%`, r.kl.toExponential(2), r.max_abs_logit_err.toFixed(3), r.mean_abs_logit_err.toFixed(4),
    r.ppl_ann.toFixed(2), r.ppl_snn.toFixed(2), String(r.distinct_predictions_ann), String(r.distinct_predictions_snn), r.spike_rate.toFixed(3),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
  return [`fidelity over ${report.positions} positions`, line(header), ...rows.map(line)].join('\n');
}

async function runFidelity(ann: CausalLM, snn: SpikingLM, tokenizer: TextTokenizer, timesteps: number[], textArg: string | undefined, io: CliIO): Promise<FidelityReport> {
  const text = textArg ?? bundledText('eval-stories.txt').text;
  const ids = tokenizer.encode(text.replace(/\s*\n\s*/g, ' ').trim());
  if (ids.length < 256) io.err(`note: the text gives ${ids.length} positions (fewer than 256)\n`);
  const maxT = Math.max(...timesteps);
  const model = maxT === snn.timesteps ? snn : snn.withTimesteps(maxT);
  const bar = new ProgressBar(io, `fidelity (T up to ${maxT})`);
  return measureFidelity(ann, model, ids, timesteps, { onProgress: (d, t) => bar.update(d, t) });
}

function readText(file: string): string {
  return readFlagFile(file, '--text');
}

export const convertCommand: Command = {
  name: 'convert',
  summary: 'convert a model directory into a spiking model directory',
  flags: {
    ...MODEL_FLAGS,
    'output-dir': { type: 'string', help: 'where to write the spiking model (written atomically)' },
    timesteps: { type: 'int', help: 'time steps T', default: 32 },
    simplified: { type: 'boolean', help: 'skip calibration and operator compensation (unit thresholds, naive operators): the textbook converter, for comparison' },
    verify: { type: 'boolean', help: 'print the fidelity table at this T (and a few below) after converting' },
    'surrogate-function': { type: 'string', help: `surrogate gradient: ${SURROGATE_NAMES.join(' | ')}`, default: 'atan' },
    'surrogate-alpha': { type: 'number', help: 'surrogate sharpness (default per function)' },
    'calibration-samples': { type: 'int', help: 'calibration sequences', default: 16 },
    'calibration-length': { type: 'int', help: 'tokens per calibration sequence', default: 64 },
    'calibration-file': { type: 'string', help: 'text file to calibrate on instead of the bundled stories' },
    quantile: { type: 'number', help: 'per-channel threshold quantile of |activation|', default: 0.9 },
    'max-spikes': { type: 'int', help: 'spikes per neuron per step (default unbounded: sigma-delta bursts)' },
    text: { type: 'string', help: 'text file for --verify (default: the bundled evaluation stories)' },
    overwrite: { type: 'boolean', help: 'replace --output_dir even if it is not a previous spikelm output (never the source model)' },
  },
  async run({ flags }, io) {
    // Every flag is checked before any work: a bad value fails in milliseconds, not after calibration.
    const out = requireFlag<string>(flags, 'output-dir', 'convert');
    const modelDir = resolveModelDir(flags.model);
    const saveOpts = { overwrite: flags.overwrite === true };
    checkOutputDir(out, snnOutputRules({ sourceDir: modelDir } as ConversionRecord, saveOpts));
    const timesteps = positiveInt(flags.timesteps, '--timesteps');
    const sur = parseSurrogate(flags['surrogate-function'], flags['surrogate-alpha']);
    const neuron = flags['max-spikes'] !== undefined ? { maxSpikes: positiveInt(flags['max-spikes'], '--max-spikes') } : {};
    const quantile = quantileFlag(flags.quantile);
    const calibration = {
      numSamples: positiveInt(flags['calibration-samples'], '--calibration-samples'),
      maxLength: atLeast(flags['calibration-length'], 2, '--calibration-length'),
      ...(typeof flags['calibration-file'] === 'string' ? { text: readFlagFile(flags['calibration-file'], '--calibration-file'), source: flags['calibration-file'] } : {}),
    };
    const verifyText = typeof flags.text === 'string' ? readText(flags.text) : undefined;
    const { model, tokenizer, dir } = await loadModelFromFlags(flags, io);
    let converted;
    const t0 = performance.now();
    if (flags.simplified) {
      io.err('simplified conversion: no calibration (θ = 1 everywhere) and naive operators\n');
      converted = simplifiedConversion(model, { timesteps, neuron });
    } else {
      const data = createCalibrationData(tokenizer, calibration);
      const bar = new ProgressBar(io, 'calibrating');
      converted = convertModelToSpiking(model, data, { timesteps, quantile, neuron, onProgress: (d, t) => bar.update(d, t) });
    }
    const snn = converted.snn.withSurrogate(sur);
    saveSnnModel(snn, tokenizer, out, { ...converted.record, sourceDir: dir }, saveOpts);
    io.err(`converted ${dir} → ${out} in ${((performance.now() - t0) / 1000).toFixed(1)}s (T = ${timesteps}, ${snn.sites.length} encoder sites)\n`);
    if (flags.verify) {
      const ts = [...new Set([Math.max(1, timesteps >> 2), Math.max(1, timesteps >> 1), timesteps])];
      io.out(`${formatFidelityTable(await runFidelity(model, snn, tokenizer, ts, verifyText, io))}\n`);
    }
    return 0;
  },
};

export const fidelityCommand: Command = {
  name: 'fidelity',
  summary: 'compare a spiking model with its ANN across time step counts',
  flags: {
    ...MODEL_FLAGS,
    snn: { type: 'string', help: 'a converted spiking model directory (default: convert --model now, calibrated)' },
    timesteps: { type: 'int-list', help: 'comma-separated T values', default: [1, 2, 4, 8, 16, 32, 64, 128] },
    text: { type: 'string', help: 'text file to evaluate on (default: the bundled evaluation stories, >256 positions)' },
    json: { type: 'boolean', help: 'print JSON' },
  },
  async run({ flags }, io) {
    const timesteps = (flags.timesteps as number[]).map((t) => positiveInt(t, '--timesteps'));
    const text = typeof flags.text === 'string' ? readText(flags.text) : undefined;
    const snnDir = typeof flags.snn === 'string' ? resolveModelDir(flags.snn, '--snn') : undefined;
    const { model: ann, tokenizer, dir } = await loadModelFromFlags(flags, io);
    let snn: SpikingLM;
    let mode: string;
    if (snnDir) {
      const loaded = loadSnnModel(snnDir, { backend: ann.backend });
      assertSameModel(ann, loaded.ann, dir, snnDir);
      snn = loaded.snn;
      mode = `${loaded.snnConfig.mode}${loaded.snnConfig.simplified ? ' (simplified)' : ''}`;
    } else {
      const bar = new ProgressBar(io, 'calibrating');
      snn = convertModelToSpiking(ann, createCalibrationData(tokenizer), { timesteps: Math.max(...timesteps), onProgress: (d, t) => bar.update(d, t) }).snn;
      mode = 'rate';
    }
    const report = await runFidelity(ann, snn, tokenizer, timesteps, text, io);
    if (flags.json) io.out(`${JSON.stringify({ model: dir, mode, positions: report.positions, results: report.results }, null, 2)}\n`);
    else io.out(`${formatFidelityTable(report)}\n`);
    return 0;
  },
};
