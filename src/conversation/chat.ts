/**
 * Chat: formats, and a session that keeps a conversation's messages and streams replies through a
 * TemporalSpikeProcessor (so each turn feeds only the tokens the cache does not hold yet).
 *
 * Formats: the model's own chat template (tokenizer_config.json `chat_template`, rendered with
 * @huggingface/jinja, SmolLM2-Instruct style: `<|im_start|>role\n…<|im_end|>`), or for base models
 * without one a plain transcript, `User: …\nAssistant: …`. A reply stops at EOS, at the template's
 * end-of-turn token (or its text, when it is not one token), at the plain format's next `User:`,
 * or at the token budget.
 */
import { Template } from '@huggingface/jinja';
import { ArgumentError } from '../errors.js';
import { Sampler, type SamplingOptions } from '../nn/sampling.js';
import type { TextTokenizer } from '../nn/tokenizer.js';
import type { TemporalSpikeProcessor } from './processor.js';

export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
}

export interface ChatFormat {
  readonly kind: 'template' | 'plain';
  /**
   * The prompt text for these messages, ending where the assistant's reply begins; with
   * `generationPrompt: false`, the messages alone (what precedes the next message).
   */
  render(messages: readonly ChatMessage[], generationPrompt?: boolean): string;
  /** Token ids that end a reply. */
  readonly stopTokenIds: readonly number[];
  /** Texts that end a reply (cut from it). */
  readonly stopStrings: readonly string[];
}

const TEMPLATE_END_MARKERS = ['<|im_end|>', '<|eot_id|>', '<|end|>', '</s>', '<end_of_turn>'];

export function chatFormat(tokenizer: TextTokenizer, opts: { plain?: boolean } = {}): ChatFormat {
  const source = tokenizer.config.chat_template;
  const eos = tokenizer.eosTokenIds;
  const text = (key: string): string => {
    const v = tokenizer.config[key];
    return typeof v === 'string' ? v : v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string' ? (v as { content: string }).content : '';
  };
  if (typeof source === 'string' && !opts.plain) {
    let template: Template;
    try {
      template = new Template(source);
    } catch (err) {
      throw new ArgumentError(`tokenizer_config.json chat_template does not parse: ${(err as Error).message}`);
    }
    const markers = TEMPLATE_END_MARKERS.filter((m) => source.includes(m));
    const markerIds = markers.map((m) => tokenizer.tokenToId(m)).filter((id): id is number => id !== undefined);
    return {
      kind: 'template',
      render: (messages, generationPrompt = true) => template.render({ messages, add_generation_prompt: generationPrompt, bos_token: text('bos_token'), eos_token: text('eos_token') }),
      stopTokenIds: [...new Set([...eos, ...markerIds])],
      stopStrings: markers,
    };
  }
  return {
    kind: 'plain',
    render: (messages, generationPrompt = true) => {
      let s = '';
      for (const m of messages) s += m.role === 'system' ? `${m.content}\n` : `${m.role === 'user' ? 'User' : 'Assistant'}: ${m.content}\n`;
      return generationPrompt ? `${s}Assistant:` : s;
    },
    stopTokenIds: eos,
    stopStrings: ['\nUser:', 'User:'],
  };
}

export interface TurnResult {
  readonly reply: string;
  /** Tokens generated (the stop token included). */
  readonly tokens: number;
  /** Prompt tokens the cache did not hold and had to be fed. */
  readonly promptTokensFed: number;
  readonly ms: number;
  /** 'interrupted': the caller's signal aborted the reply (Ctrl-C); what was generated is kept as the reply. */
  readonly stoppedBy: 'stop_token' | 'stop_string' | 'max_new_tokens' | 'context_limit' | 'interrupted';
}

export interface ChatSessionOptions extends SamplingOptions {
  readonly format?: ChatFormat;
  readonly maxNewTokens?: number;
  readonly conversationId?: string;
  readonly system?: string;
}

export class ChatSession {
  readonly messages: ChatMessage[] = [];
  readonly format: ChatFormat;
  readonly id: string;
  private sampler: Sampler;
  /** Token index where each user message's rendering starts (turn boundaries for the window policy). */
  private turnStarts: number[] = [];
  /** The last prompt's text and tokens: the next prompt extends it, so only new text is tokenized. */
  private prompt: { text: string; ids: number[] } | undefined;
  /** Characters tokenized so far (a turn costs its new text, not the history: a test checks it). */
  tokenizedChars = 0;

  constructor(readonly processor: TemporalSpikeProcessor, readonly tokenizer: TextTokenizer, readonly options: ChatSessionOptions = {}) {
    const maxNew = options.maxNewTokens ?? 64;
    if (!Number.isInteger(maxNew) || maxNew < 0) throw new ArgumentError(`chat: maxNewTokens (--max-new-tokens) must be an integer ≥ 0, got ${options.maxNewTokens}`);
    this.format = options.format ?? chatFormat(tokenizer);
    this.id = options.conversationId ?? 'chat';
    this.sampler = new Sampler(options);
    if (options.system) this.messages.push({ role: 'system', content: options.system });
  }

  /** Start over: no messages, the conversation's cache cleared, the sampler reseeded. */
  reset(): void {
    this.messages.length = this.options.system ? 1 : 0;
    this.turnStarts = [];
    this.prompt = undefined;
    this.processor.resetCache(this.id);
    this.sampler = new Sampler(this.options);
  }

  /**
   * The prompt tokens for the messages so far (the last one the new user message). The rendering of
   * a conversation only grows at its end, so the previous prompt's tokens are kept and only the text
   * after it — the reply, the end-of-turn markers, the new message — is tokenized: a turn costs its
   * own length, not the history's. If a template rewrites earlier text, everything is re-tokenized.
   */
  private promptTokens(): number[] {
    const text = this.format.render(this.messages);
    const before = this.format.render(this.messages.slice(0, -1), false); // where the new message begins
    const encode = (t: string, special: boolean) => {
      this.tokenizedChars += t.length;
      return t === '' ? [] : this.tokenizer.encode(t, { addSpecialTokens: special });
    };
    const prev = this.prompt;
    let ids: number[], turnStart: number;
    if (prev && before.startsWith(prev.text) && text.startsWith(before)) {
      const mid = encode(before.slice(prev.text.length), false);
      turnStart = prev.ids.length + mid.length;
      ids = prev.ids.concat(mid, encode(text.slice(before.length), false));
    } else {
      ids = encode(text, true);
      turnStart = before === '' ? 0 : encode(before, true).length;
      this.turnStarts = [];
    }
    this.turnStarts.push(turnStart);
    this.prompt = { text, ids };
    return ids;
  }

  /**
   * One turn: the reply to `userText`, streamed through `onText`. With `signal`, the loop yields to
   * the event loop after every token (so a SIGINT handler can run) and stops when it is aborted; the
   * reply so far becomes the turn's reply and the session goes on.
   */
  async send(userText: string, onText?: (delta: string) => void, opts: { signal?: AbortSignal } = {}): Promise<TurnResult> {
    if (userText.trim() === '') throw new ArgumentError('chat: empty message');
    const t0 = performance.now();
    this.messages.push({ role: 'user', content: userText });
    const prompt = this.promptTokens();
    let out = await this.processor.forward(prompt, { batchIds: [this.id], turnStarts: [this.turnStarts] });
    const promptTokensFed = out.positionIds[0]!.length;
    const maxNew = this.options.maxNewTokens ?? 64;
    const stopIds = new Set(this.format.stopTokenIds);
    const generated: number[] = [];
    const all = [...prompt];
    let printed = 0, reply = '', stoppedBy: TurnResult['stoppedBy'] = 'max_new_tokens';
    for (let i = 0; i < maxNew; i++) {
      const id = this.sampler.next(out.lastLogits[0]!, all);
      generated.push(id);
      all.push(id);
      if (stopIds.has(id)) {
        stoppedBy = 'stop_token';
        break;
      }
      reply = this.tokenizer.decode(generated, { skipSpecialTokens: true });
      const cut = firstStop(reply, this.format.stopStrings);
      if (cut !== undefined) {
        reply = reply.slice(0, cut);
        stoppedBy = 'stop_string';
        break;
      }
      if (onText && !reply.endsWith('\uFFFD') && reply.length > printed) {
        onText(reply.slice(printed));
        printed = reply.length;
      }
      if (opts.signal) {
        await new Promise((r) => setImmediate(r));
        if (opts.signal.aborted) {
          stoppedBy = 'interrupted';
          break;
        }
      }
      if (i + 1 < maxNew) out = await this.processor.forward(all, { batchIds: [this.id], turnStarts: [this.turnStarts] });
    }
    if (stoppedBy !== 'stop_string') reply = this.tokenizer.decode(generated.filter((t) => !stopIds.has(t)), { skipSpecialTokens: true });
    reply = reply.replace(/\s+$/, '');
    if (onText && reply.length > printed) onText(reply.slice(printed));
    this.messages.push({ role: 'assistant', content: reply.trim() });
    return { reply: reply.trim(), tokens: generated.length, promptTokensFed, ms: performance.now() - t0, stoppedBy };
  }
}

function firstStop(text: string, stops: readonly string[]): number | undefined {
  let best: number | undefined;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i !== -1 && (best === undefined || i < best)) best = i;
  }
  return best;
}
