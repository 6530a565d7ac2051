/** `spikelm bench`: the benchmark sweep across T and backends, written as JSON, CSV, Markdown and SVG plots. */
import fs from 'node:fs';
import { ArgumentError } from '../errors.js';
import { readFlagFile } from './args.js';
import { writeReport } from '../bench/report.js';
import { runSweep } from '../bench/sweep.js';
import type { Command } from './command.js';
import { resolveModelDir, resolveModelSource } from './model-dir.js';
import { ProgressBar } from './progress.js';
import { defaultTimesteps } from './snn.js';
import { DEFAULT_CONVERSION } from '../convert/api.js';
import { parseTarget } from '../convert/search/target.js';
import { CODINGS, SCHEDULES, parseCoding, parseSchedule } from '../snn/codes.js';

export const benchCommand: Command = {
  name: 'bench',
  summary: 'sweep codes, schedules, T and backends: fidelity, spikes, energy and speed → results.json/.csv, report.md, SVG plots (with the fidelity–energy frontier)',
  flags: {
    model: { type: 'string', required: true, help: 'model directory or Hugging Face Hub name', aliases: ['model-name'] },
    snn: { type: 'string', help: 'a converted spiking model directory (default: convert --model now)' },
    timesteps: { type: 'int-list', help: 'T values (default per schedule: as spikelm fidelity)' },
    coding: { type: 'string-list', help: `codes to compare: ${CODINGS.join(', ')}`, default: [...CODINGS] },
    schedule: { type: 'string-list', help: `schedules: ${SCHEDULES.join(', ')}`, default: [DEFAULT_CONVERSION.schedule] },
    backend: { type: 'string-list', help: 'backends to run: cpu,gpu', default: ['cpu'] },
    out: { type: 'string', required: true, help: 'output directory', aliases: ['output-dir'] },
    positions: { type: 'int', help: 'evaluation positions for fidelity', default: 256 },
    'time-tokens': { type: 'int', help: 'tokens per timed forward', default: 32 },
    quantile: { type: 'number', help: 'threshold quantile when converting now (higher = fewer spikes)' },
    'time-budget': { type: 'int', help: 'ms of timing per task', default: 300 },
    text: { type: 'string', help: 'evaluation text file (default: the bundled stories)' },
    target: { type: 'string', help: 'the fidelity target report.md checks every row against, e.g. top1=0.99,kl=1e-3 (the default)' },
  },
  async run({ flags }, io) {
    const modelDir = (await resolveModelSource(flags.model, io)).dir;
    const out = flags.out;
    if (typeof out !== 'string') throw new ArgumentError('bench: --out is required');
    const backends = (flags.backend as string[]).map((b) => {
      if (b !== 'cpu' && b !== 'gpu') throw new ArgumentError(`bench: --backend takes cpu and/or gpu, got "${b}"`);
      return b;
    });
    const target = typeof flags.target === 'string' ? parseTarget(flags.target) : undefined;
    const timesteps = flags.timesteps as number[] | undefined;
    for (const t of timesteps ?? []) if (!Number.isInteger(t) || t < 1) throw new ArgumentError(`bench: --timesteps must be positive integers, got ${t}`);
    const codings = (flags.coding as string[]).map((c) => parseCoding(c));
    const schedules = (flags.schedule as string[]).map((c) => parseSchedule(c));
    const configs = schedules.flatMap((schedule) => codings.map((coding) => ({ schedule, coding }))).filter(({ schedule, coding }) => schedule === 'layerwise' || coding === 'rate' || coding === 'rate-single');
    if (configs.length === 0) throw new ArgumentError('bench: no valid --schedule/--coding combination (phase codes need the layerwise schedule)');
    fs.mkdirSync(out, { recursive: true });
    const bar = new ProgressBar(io, 'bench');
    const result = await runSweep({
      modelDir, timesteps: timesteps ?? defaultTimesteps, backends, configs,
      ...(typeof flags.snn === 'string' ? { snnDir: resolveModelDir(flags.snn, '--snn') } : {}),
      positions: flags.positions as number, timeTokens: flags['time-tokens'] as number, timeBudgetMs: flags['time-budget'] as number,
      ...(flags.quantile !== undefined ? { quantile: flags.quantile as number } : {}),
      ...(typeof flags.text === 'string' ? { text: readFlagFile(flags.text, '--text') } : {}),
      ...(target ? { target } : {}),
      onProgress: (d, t) => bar.update(d, t),
    });
    for (const f of writeReport(out, result)) io.out(`${f}\n`);
    return 0;
  },
};
