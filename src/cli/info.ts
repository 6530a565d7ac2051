/** `spikelm info`: versions, CPU, threads and the backends this machine can run. */
import os from 'node:os';
import { CpuBackend } from '../tensor/cpu-backend.js';
import { acquireGpu } from '../tensor/gpu/device.js';
import type { Command } from './command.js';
import { loadModelFromFlags } from './model-dir.js';

export const infoCommand: Command = {
  name: 'info',
  summary: 'describe this machine, the available backends and (with --model) a model',
  flags: {
    model: { type: 'string', help: 'optional model to describe: a directory or a Hugging Face Hub name (org/name[@revision])', aliases: ['model-name'] },
    backend: { type: 'string', help: 'cpu | gpu | auto', default: 'cpu' },
    json: { type: 'boolean', help: 'print JSON' },
  },
  async run({ flags }, io) {
    const info: Record<string, unknown> = {
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.availableParallelism?.() ?? os.cpus().length,
      backends: { cpu: new CpuBackend().describe(), gpu: await gpuReport() },
    };
    if (typeof flags.model === 'string') {
      const { model, tokenizer, dir, source } = await loadModelFromFlags(flags, io);
      const c = model.config;
      info.model = {
        dir, ...(source.hub ? { source: { hub: source.hub, revision: source.revision, commit: source.commit, offline: source.offline, cache: source.cache } } : {}), family: c.family, model_type: c.modelType, layers: c.numLayers, hidden: c.hiddenSize, heads: c.numHeads,
        kv_heads: c.numKvHeads, head_dim: c.headDim, intermediate: c.intermediateSize, vocab: c.vocabSize,
        max_positions: c.maxPositions, activation: c.activationName, tokenizer_vocab: tokenizer.vocabSize,
        parameters: countParameters(model.weights),
      };
    }
    if (flags.json) io.out(`${JSON.stringify(info, null, 2)}\n`);
    else for (const [k, v] of Object.entries(info)) io.out(`${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}\n`);
    return 0;
  },
};

async function gpuReport(): Promise<Record<string, unknown>> {
  try {
    const { report } = await acquireGpu();
    return {
      available: true, dawn_backend: report.path, description: report.description, vendor: report.vendor,
      architecture: report.architecture, device: report.device, software: report.software,
      features: report.features, limits: report.limits,
    };
  } catch (err) {
    return { available: false, reason: (err as Error).message };
  }
}

function countParameters(w: import('../nn/weights.js').LMWeights): number {
  const seen = new Set<unknown>();
  let n = 0;
  const add = (t: { size: number } | undefined) => {
    if (t && !seen.has(t)) {
      seen.add(t);
      n += t.size;
    }
  };
  add(w.embed); add(w.positions); add(w.lmHead); add(w.finalNorm.weight); add(w.finalNorm.bias);
  for (const b of w.blocks) {
    for (const l of [b.q, b.k, b.v, b.o, b.gate, b.up, b.down]) { add(l?.weight); add(l?.bias); }
    for (const nrm of [b.attnNorm, b.mlpNorm]) { add(nrm.weight); add(nrm.bias); }
  }
  return n;
}
