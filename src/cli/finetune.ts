/**
 * `spikelm finetune`: surrogate-gradient fine-tuning of a converted model directory (src/train),
 * written to a new directory that loadSnnModel reads (the run recorded in snn_config.json).
 */
import { createCalibrationData } from '../convert/calibration-data.js';
import { loadSnnModel, saveSnnModel, snnOutputRules } from '../convert/snn-io.js';
import type { ConversionRecord } from '../convert/stages.js';
import { ArgumentError } from '../errors.js';
import { checkOutputDir } from '../io/output-dir.js';
import { fineTune, parseTrainTargets } from '../train/finetune.js';
import { SURROGATE_NAMES } from '../snn/surrogate.js';
import { readFlagFile, requireFlag } from './args.js';
import type { Command } from './command.js';
import { resolveModelDir } from './model-dir.js';
import { ProgressBar } from './progress.js';
import { formatFidelityTable, parseSurrogate, positiveInt, runFidelity } from './snn.js';

export const finetuneCommand: Command = {
  name: 'finetune',
  summary: 'fine-tune a converted model through its spikes (surrogate gradients; distils the ANN on calibration text)',
  flags: {
    snn: { type: 'string', required: true, help: 'the converted spiking model directory to start from' },
    'output-dir': { type: 'string', required: true, help: 'where to write the fine-tuned model (written atomically)' },
    steps: { type: 'int', help: 'Adam steps', default: 150 },
    lr: { type: 'number', help: 'learning rate of log θ (norm gains and LoRA: lr × 0.25)', default: 0.05 },
    'lambda-spikes': { type: 'number', help: 'weight of the spike penalty (spikes per neuron per token) in the loss', default: 0 },
    train: { type: 'string-list', help: 'what to train: thresholds, normGains, lora:RANK (comma-separated; default thresholds)' },
    'batch-size': { type: 'int', help: 'calibration sequences per step', default: 4 },
    seed: { type: 'int', help: 'seed of the batch order and LoRA initialisation', default: 0 },
    'surrogate-function': { type: 'string', help: `surrogate gradient: ${SURROGATE_NAMES.join(' | ')} (default: the one saved with the model)` },
    'surrogate-alpha': { type: 'number', aliases: ['alpha'], help: 'surrogate sharpness α (default per function)' },
    'calibration-samples': { type: 'int', help: 'training sequences drawn from the calibration text', default: 64 },
    'calibration-length': { type: 'int', help: 'tokens per training sequence', default: 64 },
    'calibration-file': { type: 'string', help: 'text file to train on instead of the bundled calibration stories (never the evaluation text)' },
    verify: { type: 'boolean', help: 'print the fidelity table on the evaluation text before and after' },
    text: { type: 'string', help: 'text file for --verify (default: the bundled evaluation stories)' },
    overwrite: { type: 'boolean', help: 'replace --output_dir even if it is not a previous spikelm output' },
  },
  async run({ flags }, io) {
    const out = requireFlag<string>(flags, 'output-dir', 'finetune');
    const snnDir = resolveModelDir(requireFlag<string>(flags, 'snn', 'finetune'), '--snn');
    const train = (flags.train as string[] | undefined) ?? ['thresholds'];
    parseTrainTargets(train);
    const steps = positiveInt(flags.steps, '--steps');
    const batchSize = positiveInt(flags['batch-size'], '--batch-size');
    const lr = Number(flags.lr), lambdaSpikes = Number(flags['lambda-spikes']), seed = Number(flags.seed);
    if (!(lr > 0 && Number.isFinite(lr))) throw new ArgumentError(`--lr must be a positive number, got ${flags.lr}`);
    if (!(lambdaSpikes >= 0 && Number.isFinite(lambdaSpikes))) throw new ArgumentError(`--lambda-spikes must be a number ≥ 0, got ${flags['lambda-spikes']}`);
    const numSamples = positiveInt(flags['calibration-samples'], '--calibration-samples');
    const maxLength = positiveInt(flags['calibration-length'], '--calibration-length');
    if (maxLength < 2) throw new ArgumentError(`--calibration-length must be at least 2, got ${maxLength}`);
    const file = typeof flags['calibration-file'] === 'string' ? { text: readFlagFile(flags['calibration-file'], '--calibration-file'), source: flags['calibration-file'] } : {};
    const verifyText = typeof flags.text === 'string' ? readFlagFile(flags.text, '--text') : undefined;
    const loaded = loadSnnModel(snnDir);
    const saveOpts = { overwrite: flags.overwrite === true, previous: loaded.snnConfig };
    checkOutputDir(out, snnOutputRules({ sourceDir: loaded.snnConfig.source_model.dir ?? undefined } as ConversionRecord, saveOpts));
    let snn = loaded.snn;
    if (flags['surrogate-function'] !== undefined || flags['surrogate-alpha'] !== undefined) {
      snn = snn.withSurrogate(parseSurrogate(flags['surrogate-function'] ?? snn.spiking.surrogate.name, flags['surrogate-alpha']));
    }
    const data = createCalibrationData(loaded.tokenizer, { numSamples, maxLength, ...file });
    io.err(`fine-tuning ${snnDir} (${snn.schedule} ${snn.coding}, T = ${snn.timesteps}): ${train.join(', ')}; surrogate ${snn.spiking.surrogate.name} α = ${snn.spiking.surrogate.alpha}; ${data.samples.length} sequences, ${data.tokens} tokens of ${data.source}\n`);
    const before = flags.verify ? await runFidelity(loaded.ann(), snn, loaded.tokenizer, [snn.timesteps], verifyText, io) : undefined;
    const bar = new ProgressBar(io, 'fine-tuning');
    const abort = new AbortController();
    const onSigint = () => abort.abort();
    process.once('SIGINT', onSigint);
    let result;
    try {
      result = fineTune(snn, data, {
        steps, lr, lambdaSpikes, train, batchSize, seed, signal: abort.signal,
        onStep: (s) => bar.update(s.step, s.steps, `loss ${s.loss.toExponential(3)}  KL ${s.kl.toExponential(3)}  spikes/neuron/token ${s.spikesPerNeuronPerToken.toFixed(3)}${s.step < s.steps ? `  ~${etaText(s)} left` : ''}`),
      });
    } finally {
      process.removeListener('SIGINT', onSigint);
    }
    const r = result.record;
    saveSnnModel(result.snn, loaded.tokenizer, out, undefined, { ...saveOpts, training: r });
    io.err(`${r.stopped ? `stopped after ${r.steps} steps; ` : ''}KL on the training text ${r.before.kl.toExponential(3)} → ${r.after.kl.toExponential(3)}, spikes per neuron per token ${r.before.spikesPerNeuronPerToken.toFixed(3)} → ${r.after.spikesPerNeuronPerToken.toFixed(3)} (${r.seconds.toFixed(1)}s); wrote ${out}\n`);
    if (before) {
      const after = await runFidelity(loaded.ann(), result.snn, loaded.tokenizer, [snn.timesteps], verifyText, io);
      io.out(`before fine-tuning\n${formatFidelityTable(before)}\nafter fine-tuning\n${formatFidelityTable(after)}\n`);
    }
    return 0;
  },
};

/** Time left at the mean pace of the steps so far (the first step also computes the ANN's targets). */
export function etaText(s: { step: number; steps: number; elapsedMs: number }): string {
  const secs = Math.round(((s.elapsedMs / s.step) * (s.steps - s.step)) / 1000);
  return secs < 120 ? `${secs}s` : secs < 7200 ? `${Math.round(secs / 60)} min` : `${(secs / 3600).toFixed(1)} h`;
}
