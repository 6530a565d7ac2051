/**
 * `spikelm test`: the seed's conversational suite against a model directory. Prints a table,
 * writes report.json (every test's numbers) into --output_dir, exits 1 if any selected test fails.
 */
import path from 'node:path';
import fs from 'node:fs';
import { atomicWriteFile } from '../io/atomic-write.js';
import { spikelmVersion } from '../convert/snn-io.js';
import {
  type SuiteResult, simulateConversation, testAttentionMaskContinuity, testEnergy, testFidelityParity, testMultiTurnCoherence, testPositionIdBoundaries,
} from '../conversation/suite.js';
import { loadModel } from '../nn/model.js';
import { formatEnergy } from '../snn/energy.js';
import { type Command, MODEL_FLAGS } from './command.js';
import { ProgressBar } from './progress.js';
import { CONVERSION_FLAGS, conversionFromFlags, loadSessionModels } from './session.js';
import { ArgumentError } from '../errors.js';

const TESTS = ['conversation', 'position_boundaries', 'attention_mask', 'multi_turn', 'energy', 'fidelity'] as const;

export const testCommand: Command = {
  name: 'test',
  summary: 'run the conversational test suite (position ids, masks, multi-turn, fidelity, energy) and write report.json',
  flags: {
    ...MODEL_FLAGS,
    snn: { type: 'string', help: 'a converted spiking model directory (default: convert --model now at --timesteps)' },
    'test-all': { type: 'boolean', help: 'every test (the default when none is selected)' },
    'test-conversation': { type: 'boolean', help: 'simulateConversation: cached == recomputed after every turn' },
    'test-position-boundaries': { type: 'boolean', help: 'thousands of tokens: position ids stay below the limit' },
    'test-attention-mask': { type: 'boolean', help: 'padded batches == unpadded rows; growing masks == recompute' },
    'test-multi-turn': { type: 'boolean', help: 'coherence against a separately loaded ANN' },
    'test-energy': { type: 'boolean', help: 'energy report of a real run' },
    'test-fidelity': { type: 'boolean', help: 'fidelity against a separately loaded ANN' },
    timesteps: { type: 'int', help: 'time steps T (when converting now; default: the default conversion\'s)' },
    ...CONVERSION_FLAGS,
    'test-turns': { type: 'int', help: 'turns of the scripted conversations', default: 3 },
    'output-dir': { type: 'string', help: 'where report.json goes', default: 'spikelm-report' },
  },
  async run({ flags }, io) {
    conversionFromFlags(flags);
    const turns = flags['test-turns'] as number;
    if (!Number.isInteger(turns) || turns < 1) throw new ArgumentError(`--test-turns must be an integer ≥ 1, got ${turns}`);
    const selected = TESTS.filter((t) => flags[`test-${t.replace(/_/g, '-')}`] === true);
    const run = flags['test-all'] === true || selected.length === 0 ? [...TESTS] : selected;
    const { snn, tokenizer, dir } = await loadSessionModels({ ...flags, snn: flags.snn ?? true }, io);
    const model = snn!;
    // The reference ANN is loaded again from disk: never the converted model compared with itself.
    const annRef = loadModel(dir, { backend: model.backend });
    const results: SuiteResult[] = [];
    const barFor = (label: string) => {
      const bar = new ProgressBar(io, `${label}: tokens`);
      return (done: number, total: number) => bar.update(done, total);
    };
    for (const t of run) {
      const t0 = performance.now();
      io.err(`running ${t}…\n`);
      const r = t === 'conversation' ? await simulateConversation(model, tokenizer, { turns })
        : t === 'position_boundaries' ? await testPositionIdBoundaries(model, tokenizer, { onProgress: barFor('position_boundaries') })
        : t === 'attention_mask' ? await testAttentionMaskContinuity(model, tokenizer)
        : t === 'multi_turn' ? await testMultiTurnCoherence(model, annRef, tokenizer, { turns })
        : t === 'fidelity' ? await testFidelityParity(model, annRef, tokenizer)
        : await testEnergy(model, tokenizer);
      results.push({ ...r, metrics: { ...r.metrics, seconds: Number(((performance.now() - t0) / 1000).toFixed(2)) } });
      if (t === 'energy' && 'report' in r) io.out(`${formatEnergy((r as Awaited<ReturnType<typeof testEnergy>>).report)}\n`);
    }
    io.out(`${table(results)}\n`);
    const out = flags['output-dir'] as string;
    fs.mkdirSync(out, { recursive: true });
    const report = {
      spikelm_version: spikelmVersion(), date: new Date().toISOString(), model: dir, snn: typeof flags.snn === 'string' ? flags.snn : '(converted now)',
      timesteps: model.timesteps, schedule: model.schedule, coding: model.coding, backend: model.backend.describe(), passed: results.every((r) => r.passed),
      tests: results.map((r) => ({ name: r.name, passed: r.passed, metrics: r.metrics, details: r.details ?? null })),
    };
    atomicWriteFile(path.join(out, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
    io.err(`report: ${path.join(out, 'report.json')}\n`);
    return report.passed ? 0 : 1;
  },
};

function table(results: readonly SuiteResult[]): string {
  const lines = ['test                  result  measured'];
  for (const r of results) {
    const metrics = Object.entries(r.metrics).map(([k, v]) => `${k}=${typeof v === 'number' ? Number(v.toPrecision(4)) : v}`).join(' ');
    lines.push(`${r.name.padEnd(22)}${(r.passed ? 'PASS' : 'FAIL').padEnd(8)}${metrics}`);
  }
  return lines.join('\n');
}
