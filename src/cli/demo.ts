/**
 * `spikelm demo`: the main job on the bundled stories260k — convert it, show the fidelity table
 * across a few T, then a short multi-turn story chat with the ANN and the SNN side by side, with
 * spike and energy figures.
 */
import fs from 'node:fs';
import { BUNDLED_MODEL } from '../bundled.js';
import { DEFAULT_CONVERSION } from '../convert/api.js';
import { formatTarget } from '../convert/search/target.js';
import { TARGET_FLAGS, convertForTarget, finetuneFromFlags, seedFromFlags, targetFromFlags } from './target.js';
import { ArgumentError } from '../errors.js';
import { bundledText } from '../convert/calibration-data.js';
import { ChatSession } from '../conversation/chat.js';
import { TemporalSpikeProcessor } from '../conversation/processor.js';
import { STORY_TURNS } from '../conversation/suite.js';
import { formatEnergy } from '../snn/energy.js';
import { measureFidelity } from '../snn/fidelity.js';
import { type Command, MODEL_FLAGS } from './command.js';
import { loadModelFromFlags } from './model-dir.js';
import { ProgressBar } from './progress.js';
import { formatFidelityTable } from './snn.js';


export const demoCommand: Command = {
  name: 'demo',
  summary: 'convert the bundled TinyStories model (default configuration) and show fidelity, spikes, energy and a side-by-side chat',
  flags: {
    ...MODEL_FLAGS,
    model: { ...MODEL_FLAGS.model, required: false, help: `a model to use instead of the bundled one (${BUNDLED_MODEL}): a directory or a Hugging Face Hub name` },
    timesteps: { type: 'int-list', help: 'T values for the fidelity table (default: the chosen network\'s T and two below it, every site moved by as many planes)' },
    ...TARGET_FLAGS,
    turns: { type: 'int', help: 'chat turns', default: 3 },
    'max-new-tokens': { type: 'int', help: 'tokens per reply', default: 32 },
  },
  async run({ flags }, io) {
    const modelDir = typeof flags.model === 'string' ? flags.model : BUNDLED_MODEL;
    if (!fs.existsSync(modelDir)) throw new Error(`bundled model ${modelDir} is missing from this checkout`);
    const { schedule, coding } = DEFAULT_CONVERSION;
    const target = targetFromFlags(flags), seed = seedFromFlags(flags);
    const turns = flags.turns as number, maxNew = flags['max-new-tokens'] as number;
    if (!Number.isInteger(turns) || turns < 0) throw new ArgumentError(`--turns must be an integer ≥ 0, got ${turns}`);
    if (!Number.isInteger(maxNew) || maxNew < 0) throw new ArgumentError(`--max-new-tokens must be an integer ≥ 0, got ${maxNew}`);
    const { model: ann, tokenizer, dir } = await loadModelFromFlags({ ...flags, model: modelDir }, io);
    io.out(`spikelm demo: ${dir} (${ann.config.family}, ${ann.config.numLayers} layers, d=${ann.config.hiddenSize}) on ${ann.backend.describe()}\n\n`);
    const { snn, record, search, cached } = await convertForTarget(ann, tokenizer, { target, coding, seed, finetune: finetuneFromFlags(flags) }, io);
    const T = snn.timesteps;
    const Ts = ((flags.timesteps as number[] | undefined) ?? [T - 2, T - 1, T]).filter((t) => t >= 1);
    const planes = Object.values(search.chosen.planes);
    io.out(`1. converted for the target ${formatTarget(target)} (the default): ${schedule} schedule, ${coding} code (weighted ±1 spikes, at most one per neuron per step), ` +
      `${Math.min(...planes)}–${Math.max(...planes)} planes per site over ${snn.sites.length} encoder sites (before every linear layer, the queries and the attention probabilities), ` +
      `chosen${cached ? ' (a stored search of this model and text)' : ''} for the least energy on the calibration text's select part (${search.calibration.select_positions} positions: top-1 ${(100 * search.chosen.top1).toFixed(2)}%, KL ${search.chosen.kl.toExponential(2)}); ` +
      `thresholds from the max of ${record.calibration.sites.get('head_in')?.tokens ?? 0} fit-part tokens\n\n`);
    const ids = tokenizer.encode(bundledText('eval-stories.txt').text.replace(/\s*\n\s*/g, ' ').trim()).slice(0, 300);
    const fbar = new ProgressBar(io, 'fidelity');
    const report = await measureFidelity(ann, snn, ids, Ts, { onProgress: (d, t) => fbar.update(d, t) });
    io.out(`2. ${formatFidelityTable(report)}\n\n`);
    io.out(`3. energy of the chosen network over the evaluation text (T = ${T}):\n${formatEnergy(report.energy.get(T) ?? report.energy.get(Ts.at(-1)!)!)}\n\n`);
    io.out(`4. a ${turns}-turn story chat, greedy; ANN and spiking model (T = ${T}) side by side\n`);
    const annChat = new ChatSession(new TemporalSpikeProcessor(ann), tokenizer, { maxNewTokens: maxNew, repetitionPenalty: 1.1 });
    const snnProcessor = new TemporalSpikeProcessor(snn);
    const snnChat = new ChatSession(snnProcessor, tokenizer, { maxNewTokens: maxNew, repetitionPenalty: 1.1 });
    for (let i = 0; i < turns; i++) {
      const user = STORY_TURNS[i % STORY_TURNS.length]!;
      const a = await annChat.send(user);
      const s = await snnChat.send(user);
      io.out(`\n  User: ${user}\n  ANN: ${a.reply}\n  SNN: ${s.reply}\n`);
    }
    const sum = snnProcessor.stats.spikes?.summary();
    if (sum && sum.tokens > 0) {
      io.out(`\n5. the chat's spikes: ${sum.spikesPerNeuronPerToken.toFixed(2)} per neuron per token, at most ${sum.maxSpikesPerNeuronPerStep} per neuron per step, over ${sum.tokens} tokens\n`);
      const energy = snnProcessor.energy();
      if (energy) io.out(`${formatEnergy(energy)}\n`);
    }
    return 0;
  },
};
