/** `spikelm bench`: the benchmark sweep across T and backends, written as JSON, CSV, Markdown and SVG plots. */
import fs from 'node:fs';
import { ArgumentError } from '../errors.js';
import { readFlagFile } from './args.js';
import { writeReport } from '../bench/report.js';
import { type SweepOptions } from '../bench/sweep.js';
import { mergeUnits, parseShard, runBenchUnits } from '../bench/shards.js';
import path from 'node:path';
import type { CliIO, Command } from './command.js';
import { atomicWriteFile } from '../io/atomic-write.js';
import { GpuBackend } from '../tensor/gpu/gpu-backend.js';
import { loadModel } from '../nn/model.js';
import { loadTokenizer } from '../nn/tokenizer.js';
import { formatProfile, profileDecode } from '../bench/profile.js';
import { resolveModelDir, resolveModelSource } from './model-dir.js';
import { UnitProgress } from './progress.js';
import { defaultTimesteps } from './snn.js';
import { DEFAULT_CONVERSION, convertModelToSpiking, createCalibrationData } from '../convert/api.js';
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
    out: { type: 'string', required: true, help: 'output directory (with --profile: where profile.json goes)', aliases: ['output-dir'] },
    positions: { type: 'int', help: 'evaluation positions for fidelity', default: 256 },
    'time-tokens': { type: 'int', help: 'tokens per timed forward', default: 32 },
    quantile: { type: 'number', help: 'threshold quantile when converting now (higher = fewer spikes)' },
    'time-budget': { type: 'int', help: 'ms of timing per task', default: 300 },
    text: { type: 'string', help: 'evaluation text file (default: the bundled stories)' },
    target: { type: 'string', help: 'the fidelity target report.md checks every row against, e.g. top1=0.99,kl=1e-3 (the default)' },
    profile: { type: 'boolean', help: 'instead of the sweep: GPU time per kernel kind per decoded token (timestamp queries) beside the wall time per token, for the ANN and the SNN\'s layerwise schedule (default conversion), on the GPU' },
    tokens: { type: 'int', help: 'with --profile: tokens decoded after a 32-token prompt', default: 16 },
    shard: { type: 'string', help: 'run shard I of N (1-based, I/N) of the grid: units dealt by predicted cost; results go to --out/units/, the report when every unit is there (else: bench merge)' },
  },
  subcommands: [mergeCommand()],
  async run({ flags }, io) {
    const modelDir = (await resolveModelSource(flags.model, io)).dir;
    const out = flags.out;
    if (typeof out !== 'string') throw new ArgumentError('bench: --out is required');
    if (flags.profile === true) return profileCommand(modelDir, flags.tokens as number, out, io);
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
    const shard = typeof flags.shard === 'string' ? parseShard(flags.shard) : undefined;
    fs.mkdirSync(out, { recursive: true });
    const opts: SweepOptions = {
      modelDir, timesteps: timesteps ?? defaultTimesteps, backends, configs,
      ...(typeof flags.snn === 'string' ? { snnDir: resolveModelDir(flags.snn, '--snn') } : {}),
      positions: flags.positions as number, timeTokens: flags['time-tokens'] as number, timeBudgetMs: flags['time-budget'] as number,
      ...(flags.quantile !== undefined ? { quantile: flags.quantile as number } : {}),
      ...(typeof flags.text === 'string' ? { text: readFlagFile(flags.text, '--text') } : {}),
      ...(target ? { target } : {}),
    };
    const progress = new UnitProgress(io, shard ? `bench ${shard.index}/${shard.count}` : 'bench');
    const run = await runBenchUnits(opts, out, shard, progress.events());
    const label = shard ? `shard ${shard.index}/${shard.count}` : 'bench';
    io.err(`${label}: ${run.ran.length} unit(s) run, ${run.skipped.length} already complete (${run.mine.length} in this share, ${run.units.length} in the grid)\n`);
    if (!run.complete) {
      io.err(`${label}: partial results in ${path.join(out, 'units')}; when every shard is done: spikelm bench merge ${out} --out DIR\n`);
      return 0;
    }
    const result = mergeUnits([out], run.fingerprint);
    for (const f of writeReport(out, result)) io.out(`${f}\n`);
    return 0;
  },
};

function mergeCommand(): Command {
  return {
    name: 'merge',
    summary: 'merge the units of sharded bench runs (their --out directories) into one report',
    positional: 'DIR…',
    flags: { out: { type: 'string', required: true, help: 'where to write the merged report', aliases: ['output-dir'] } },
    async run({ flags, positional }, io) {
      if (positional.length === 0) throw new ArgumentError('bench merge: name the shards\' --out directories (spikelm bench merge DIR… --out DIR)');
      const result = mergeUnits(positional);
      const out = flags.out as string;
      fs.mkdirSync(out, { recursive: true });
      for (const f of writeReport(out, result)) io.out(`${f}\n`);
      return 0;
    },
  };
}

/** `bench --profile`: the ANN and its default layerwise conversion decoding on the GPU, profiled. */
async function profileCommand(modelDir: string, tokens: number, out: string, io: CliIO): Promise<number> {
  const gpu = await GpuBackend.create();
  const ann = loadModel(modelDir, { backend: gpu });
  io.err(`bench --profile: ${gpu.describe()}\n`);
  const prompt = Array.from({ length: Math.min(32, ann.config.maxPositions - tokens - 1) }, (_, i) => (i * 37 + 11) % ann.config.vocabSize);
  if (prompt.length < 1) throw new ArgumentError(`bench --profile: --tokens ${tokens} leaves no room for a prompt in ${ann.config.maxPositions} positions`);
  const { snn } = await convertModelToSpiking(ann, createCalibrationData(loadTokenizer(modelDir)), { backend: gpu });
  const profiles = [
    await profileDecode('ANN', ann, prompt, tokens),
    await profileDecode(`SNN (layerwise ${snn.coding} T=${snn.timesteps})`, snn, prompt, tokens),
  ];
  for (const p of profiles) io.out(`${formatProfile(p)}\n`);
  fs.mkdirSync(out, { recursive: true });
  const file = path.join(out, 'profile.json');
  atomicWriteFile(file, `${JSON.stringify({ adapter: gpu.report.description, dawn_backend: gpu.report.path, prompt_tokens: prompt.length, profiles }, null, 2)}\n`);
  io.out(`${file}\n`);
  snn.dispose();
  return 0;
}
