/** `spikelm generate` and `spikelm logits`. */
import { ArgumentError } from '../errors.js';
import { generate } from '../nn/generate.js';
import { nonNegativeInt, requireFlag } from './args.js';
import { type Command, MODEL_FLAGS, describeSampling, resolveSampling, samplingFlags, samplingFromFlags } from './command.js';
import { loadModelFromFlags } from './model-dir.js';

export const generateCommand: Command = {
  name: 'generate',
  summary: 'continue a prompt with the ANN (greedy unless --temperature > 0)',
  flags: {
    ...MODEL_FLAGS,
    prompt: { type: 'string', required: true, help: 'text to continue' },
    'max-new-tokens': { type: 'int', help: 'tokens to generate', default: 32 },
    ...samplingFlags(1),
    json: { type: 'boolean', help: 'print { input_ids, output_ids, text } as JSON' },
    truncate: { type: 'string', help: 'a prompt longer than the context: error (default) | left (keep the most recent tokens)', default: 'error' },
  },
  async run({ flags }, io) {
    const prompt = requireFlag<string>(flags, 'prompt', 'generate');
    const maxNewTokens = nonNegativeInt(flags['max-new-tokens'], '--max-new-tokens');
    const given = samplingFromFlags(flags);
    const truncate = flags.truncate;
    if (truncate !== 'error' && truncate !== 'left') throw new ArgumentError(`--truncate must be error or left, got "${String(truncate)}"`);
    const { model, tokenizer, dir } = await loadModelFromFlags(flags, io);
    const { sampling, source } = resolveSampling(given, dir, 1);
    if (source) io.err(`sampling defaults from ${source}: ${describeSampling(sampling)}\n`);
    let inputIds = tokenizer.encode(prompt);
    if (inputIds.length === 0) throw new ArgumentError('generate: the prompt encodes to no tokens');
    const limit = model.config.maxPositions;
    if (inputIds.length > limit) {
      if (truncate === 'error') {
        throw new ArgumentError(`generate: the prompt is ${inputIds.length} tokens, longer than the model's context of ${limit} positions (max_position_embeddings); shorten it or pass --truncate left to keep the last ${limit}`);
      }
      io.err(`note: the prompt is ${inputIds.length} tokens; keeping the last ${limit} (--truncate left)\n`);
      inputIds = inputIds.slice(inputIds.length - limit);
    }
    const promptText = tokenizer.decode(inputIds, { skipSpecialTokens: true });
    const json = flags.json === true;
    const newIds: number[] = [];
    let printed = 0;
    if (!json) io.out(prompt);
    const t0 = performance.now();
    let tFirst = NaN;
    const result = await generate(model, inputIds, {
      maxNewTokens,
      ...sampling,
      onToken: (id) => {
        if (newIds.length === 0) tFirst = performance.now();
        newIds.push(id);
        if (json) return;
        // Decode in context (SentencePiece strips a leading space of a lone piece) and print only
        // complete characters: a partial UTF-8 sequence decodes to U+FFFD until it is finished.
        const text = tokenizer.decode([...inputIds, ...newIds], { skipSpecialTokens: true }).slice(promptText.length);
        if (!text.endsWith('\uFFFD') && text.length > printed) {
          io.out(text.slice(printed));
          printed = text.length;
        }
      },
    });
    const text = tokenizer.decode([...inputIds, ...result.ids], { skipSpecialTokens: true }).slice(promptText.length);
    if (json) {
      io.out(`${JSON.stringify({ input_ids: inputIds, output_ids: result.ids, text })}\n`);
    } else {
      if (text.length > printed) io.out(text.slice(printed));
      io.out('\n');
    }
    if (result.stoppedBy === 'context_limit') io.err(`note: stopped at the model's context limit of ${model.config.maxPositions} positions\n`);
    io.err(`${timingSummary(inputIds.length, result.ids.length, t0, tFirst, performance.now(), result.stoppedBy)} (${model.backend.name})\n`);
    return 0;
  },
};

/**
 * The line llama.cpp users expect after a generation: the prompt's time (its forward pass and the
 * first token) and the rate of the tokens after it, each with tokens/s.
 */
export function timingSummary(promptTokens: number, newTokens: number, t0: number, tFirst: number, tEnd: number, stoppedBy: string): string {
  const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
  const rate = (n: number, ms: number) => (ms > 0 ? `${(n / (ms / 1000)).toFixed(1)} tokens/s` : '—');
  if (newTokens === 0) return `timing: prompt ${promptTokens} tokens, nothing generated (${stoppedBy}) in ${s(tEnd - t0)}`;
  const pre = tFirst - t0, rest = tEnd - tFirst;
  return `timing: prompt ${promptTokens} tokens + first token in ${s(pre)} (${rate(promptTokens, pre)}); ` +
    `${newTokens - 1} more tokens in ${s(rest)} (${rate(newTokens - 1, rest)}); stopped by ${stoppedBy}`;
}

export const logitsCommand: Command = {
  name: 'logits',
  summary: 'print { input_ids, last_logits } for a prompt as JSON',
  flags: {
    ...MODEL_FLAGS,
    prompt: { type: 'string', required: true, help: 'text to score' },
  },
  async run({ flags }, io) {
    const prompt = requireFlag<string>(flags, 'prompt', 'logits');
    const { model, tokenizer } = await loadModelFromFlags(flags, io);
    const inputIds = tokenizer.encode(prompt);
    if (inputIds.length === 0) throw new ArgumentError('logits: the prompt encodes to no tokens');
    const logits = await model.backend.read(model.forward(inputIds));
    io.out(`${JSON.stringify({ input_ids: inputIds, last_logits: Array.from(logits.data) })}\n`);
    return 0;
  },
};
