/**
 * `spikelm chat`: an interactive REPL that streams replies (readline), or a scripted conversation
 * with --script FILE (one user turn per line; lines starting with / are commands).
 * Commands: /reset (start over), /stats (tokens/s, spikes, energy so far), /exit.
 */
import readline from 'node:readline';
import { ArgumentError } from '../errors.js';
import { nonNegativeInt, readFlagFile } from './args.js';
import { ChatSession, chatFormat } from '../conversation/chat.js';
import { TemporalSpikeProcessor } from '../conversation/processor.js';
import { formatEnergy } from '../snn/energy.js';
import { type Command, MODEL_FLAGS, describeSampling, resolveSampling, samplingFlags, samplingFromFlags } from './command.js';
import { CONVERSION_FLAGS, conversionFromFlags, loadSessionModels } from './session.js';

export const chatCommand: Command = {
  name: 'chat',
  summary: 'chat with a model (ANN, or spiking with --snn); /reset, /stats, /exit',
  flags: {
    ...MODEL_FLAGS,
    snn: { type: 'optional-string', help: 'chat with the spiking model: a converted directory, or alone to convert now' },
    timesteps: { type: 'int', help: 'time steps of the spiking model (default: the default conversion\'s, or the saved model\'s)' },
    ...CONVERSION_FLAGS,
    script: { type: 'string', help: 'run the turns of this file (one per line) instead of reading the terminal' },
    'max-new-tokens': { type: 'int', help: 'tokens per reply', default: 48 },
    ...samplingFlags(1.1),
    'max-context': { type: 'int', help: 'context kept before the window slides', default: 512 },
    plain: { type: 'boolean', help: 'use the plain User:/Assistant: format even if the model has a chat template' },
  },
  async run({ flags }, io) {
    // Every flag is checked before the model loads.
    const maxNewTokens = nonNegativeInt(flags['max-new-tokens'], '--max-new-tokens');
    const given = samplingFromFlags(flags);
    const maxContext = flags['max-context'] as number;
    if (!Number.isInteger(maxContext) || maxContext < 2) throw new ArgumentError(`--max-context must be an integer ≥ 2, got ${maxContext}`);
    conversionFromFlags(flags);
    const script = typeof flags.script === 'string' ? readFlagFile(flags.script, '--script', 'a text file of chat turns') : undefined;
    const { ann, snn, tokenizer } = await loadSessionModels(flags, io);
    const { sampling, source } = resolveSampling(given, ann.dir, 1.1);
    if (source) io.err(`sampling defaults from ${source}: ${describeSampling(sampling)}\n`);
    const processor = new TemporalSpikeProcessor(snn ?? ann, { maxContextLength: maxContext });
    const session = new ChatSession(processor, tokenizer, {
      format: chatFormat(tokenizer, { plain: flags.plain === true }),
      maxNewTokens, ...sampling,
    });
    io.err(`chatting with the ${snn ? `spiking model (T = ${processor.timesteps})` : 'ANN'} on ${ann.backend.describe()}; ${session.format.kind} format; /reset /stats /exit\n`);
    let turn: AbortController | undefined;
    const handle = async (line: string): Promise<boolean> => {
      const text = line.trim();
      if (text === '') return true;
      if (text === '/exit' || text === '/quit') return false;
      if (text === '/reset') {
        session.reset();
        io.out('(conversation reset)\n');
        return true;
      }
      if (text === '/stats') {
        io.out(`${stats(processor)}\n`);
        return true;
      }
      if (text.startsWith('/')) {
        io.out(`unknown command ${text} (commands: /reset /stats /exit)\n`);
        return true;
      }
      io.out(`User: ${text}\nAssistant: `);
      turn = new AbortController();
      const r = await session.send(text, (delta) => io.out(delta), { signal: turn.signal }).finally(() => (turn = undefined));
      io.out(`\n  [${r.tokens} tokens, ${(r.tokens / (r.ms / 1000)).toFixed(1)} tokens/s, fed ${r.promptTokensFed} prompt tokens, ${r.stoppedBy}]\n`);
      return true;
    };
    if (script !== undefined) {
      for (const line of script.split('\n')) if (!(await handle(line))) break;
      io.out(`${stats(processor)}\n`);
      return 0;
    }
    const rl = readline.createInterface({ input: process.stdin, output: process.stdout, prompt: '> ' });
    await repl(rl, handle, () => turn, io);
    return 0;
  },
};

function stats(p: TemporalSpikeProcessor): string {
  const s = p.stats;
  const lines = [`tokens fed ${s.tokens}, ${(s.tokens / Math.max(s.forwardMs / 1000, 1e-9)).toFixed(1)} tokens/s in the model, window rebuilds ${s.windowRebuilds}`];
  if (p.lm.kind === 'snn' && s.spikes) {
    const sum = s.spikes.summary();
    lines.push(`spikes ${sum.events.toExponential(3)}: ${sum.spikesPerNeuronPerToken.toFixed(2)} per neuron per token, ${sum.spikesPerNeuronPerStep.toFixed(3)} per neuron per step, at most ${sum.maxSpikesPerNeuronPerStep} per neuron per step`);
    const e = p.energy();
    if (e) lines.push(formatEnergy(e));
  }
  return lines.join('\n');
}

/**
 * Read lines and hand them to `handle` until it says stop or the input ends. Ctrl-C (readline's
 * SIGINT on a terminal, the process's SIGINT otherwise) during a reply stops that reply and keeps the
 * session; at the prompt it ends the chat.
 */
export async function repl(rl: readline.Interface, handle: (line: string) => Promise<boolean>, running: () => AbortController | undefined, io: { err(t: string): void }): Promise<void> {
  const onSigint = () => {
    const turn = running();
    if (turn) {
      io.err('\n(reply interrupted)\n');
      turn.abort();
    } else {
      rl.close();
    }
  };
  rl.on('SIGINT', onSigint);
  process.on('SIGINT', onSigint);
  try {
    rl.prompt();
    for await (const line of rl) {
      if (!(await handle(line))) break;
      rl.prompt();
    }
  } finally {
    process.off('SIGINT', onSigint);
    rl.close();
  }
}
