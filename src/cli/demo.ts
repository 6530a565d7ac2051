/**
 * `spikelm demo`: the main job on the bundled stories260k — convert it, show the fidelity table
 * across a few T, then a short multi-turn story chat with the ANN and the SNN side by side, with
 * spike and energy figures.
 */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { convertModelToSpiking, createCalibrationData } from '../convert/api.js';
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

export const BUNDLED_MODEL = fileURLToPath(new URL('../../test/fixtures/stories260k', import.meta.url));

export const demoCommand: Command = {
  name: 'demo',
  summary: 'convert the bundled TinyStories model and show fidelity, a side-by-side chat, spikes and energy',
  flags: {
    ...MODEL_FLAGS,
    timesteps: { type: 'int-list', help: 'T values for the fidelity table', default: [4, 16, 64] },
    'chat-timesteps': { type: 'int', help: 'T of the spiking model in the chat', default: 16 },
    turns: { type: 'int', help: 'chat turns', default: 3 },
    'max-new-tokens': { type: 'int', help: 'tokens per reply', default: 32 },
  },
  async run({ flags }, io) {
    const modelDir = typeof flags.model === 'string' ? flags.model : BUNDLED_MODEL;
    if (!fs.existsSync(modelDir)) throw new Error(`bundled model ${modelDir} is missing from this checkout`);
    const { model: ann, tokenizer, dir } = await loadModelFromFlags({ ...flags, model: modelDir }, io);
    const Ts = (flags.timesteps as number[]).filter((t) => t >= 1);
    const chatT = flags['chat-timesteps'] as number;
    io.out(`spikelm demo: ${dir} (${ann.config.family}, ${ann.config.numLayers} layers, d=${ann.config.hiddenSize}) on ${ann.backend.describe()}\n\n`);
    const bar = new ProgressBar(io, 'calibrating');
    const data = createCalibrationData(tokenizer);
    const { snn, record } = convertModelToSpiking(ann, data, { timesteps: Math.max(...Ts, chatT), onProgress: (d, t) => bar.update(d, t) });
    io.out(`1. converted: ${snn.sites.length} encoder sites (a neuron before every linear layer), per-channel thresholds from the ${record.calibration.quantile} quantile of ${data.tokens} calibration tokens; sigma-delta IF neurons; compensated norms, SwiGLU and attention\n\n`);
    const ids = tokenizer.encode(bundledText('eval-stories.txt').text.replace(/\s*\n\s*/g, ' ').trim()).slice(0, 300);
    const fbar = new ProgressBar(io, 'fidelity');
    const report = await measureFidelity(ann, snn, ids, Ts, { onProgress: (d, t) => fbar.update(d, t) });
    io.out(`2. ${formatFidelityTable(report)}\n\n`);
    io.out(`3. a ${flags.turns}-turn story chat, greedy; ANN and spiking model (T = ${chatT}) side by side\n`);
    const annChat = new ChatSession(new TemporalSpikeProcessor(ann), tokenizer, { maxNewTokens: flags['max-new-tokens'] as number, repetitionPenalty: 1.1 });
    const snnProcessor = new TemporalSpikeProcessor(snn, { T: chatT });
    const snnChat = new ChatSession(snnProcessor, tokenizer, { maxNewTokens: flags['max-new-tokens'] as number, repetitionPenalty: 1.1 });
    for (let i = 0; i < (flags.turns as number); i++) {
      const user = STORY_TURNS[i % STORY_TURNS.length]!;
      const a = await annChat.send(user);
      const s = await snnChat.send(user);
      io.out(`\n  User: ${user}\n  ANN: ${a.reply}\n  SNN: ${s.reply}\n`);
    }
    io.out(`\n4. spikes: ${snnProcessor.spikeRate().toFixed(3)} per neuron per step over ${snnProcessor.stats.tokens} tokens of chat\n`);
    const energy = snnProcessor.energy();
    if (energy) io.out(`${formatEnergy(energy)}\n`);
    return 0;
  },
};
