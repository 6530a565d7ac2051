/** The ANN on the CPU against the independent float64 reference (golden.json) of every fixture. */
import { describe, expect, it } from 'vitest';
import { generate } from '../src/nn/generate.js';
import { loadModel } from '../src/nn/model.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';
import { argmax } from '../src/nn/sampling.js';
import { FIXTURE_NAMES, fixtureDir, golden } from './helpers/fixtures.js';
import { TOL, expectClose } from './helpers/tolerance.js';

describe.each(FIXTURE_NAMES)('golden: %s', (name) => {
  const model = loadModel(fixtureDir(name));
  const tokenizer = loadTokenizer(fixtureDir(name), model.config.eosTokenIds);
  const prompts = Object.entries(golden(name));

  it.each(prompts)('%s: tokenizer ids, last logits, per-position argmax and greedy continuation', async (prompt, g) => {
    expect(tokenizer.encode(prompt)).toEqual(g.input_ids);
    const V = model.config.vocabSize, S = g.input_ids.length;
    const all = await model.backend.read(model.forward(g.input_ids, model.newCache(), { allLogits: true }));
    expectClose(all.data.subarray((S - 1) * V), g.last_logits, TOL.golden, `${name} last logits`);
    const argmaxes = Array.from({ length: S }, (_, s) => argmax(all.data.subarray(s * V, (s + 1) * V)));
    expect(argmaxes).toEqual(g.all_positions_argmax);
    const { ids } = await generate(model, g.input_ids, { maxNewTokens: g.greedy_continuation.length });
    expect(ids).toEqual(g.greedy_continuation);
  });
});
