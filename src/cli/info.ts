/** `spikelm info`: versions, CPU, threads and the backends this machine can run. */
import { isHalf } from '../tensor/half.js';
import os from 'node:os';
import { describeFeatures } from '../nn/config.js';
import { CpuBackend } from '../tensor/cpu-backend.js';
import { acquireGpu } from '../tensor/gpu/device.js';
import { cpuKernelSet, relaxedRequested, relaxedSimdSupported, simdSupported } from '../tensor/wasm/runtime.js';
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
      cpu_kernels: { set: cpuKernelSet(), wasm_simd: simdSupported(), wasm_relaxed_simd: relaxedSimdSupported(), wasm_relaxed_in_use: cpuKernelSet() === 'wasm' && relaxedRequested(), requested: process.env.SPIKELM_CPU_KERNELS || 'default' },
    };
    if (typeof flags.model === 'string') {
      const { model, tokenizer, dir, source } = await loadModelFromFlags(flags, io);
      const c = model.config;
      info.model = {
        dir, ...(source.hub ? { source: { hub: source.hub, revision: source.revision, commit: source.commit, offline: source.offline, cache: source.cache } } : {}), family: c.family, model_type: c.modelType, layers: c.numLayers, hidden: c.hiddenSize, heads: c.numHeads,
        kv_heads: c.numKvHeads, head_dim: c.headDim, intermediate: c.intermediateSize, vocab: c.vocabSize,
        max_positions: c.maxPositions, activation: c.activationName, tokenizer_vocab: tokenizer.vocabSize, features: describeFeatures(c),
        ...(() => {
          const h = hostWeights(model.weights);
          return { parameters: h.parameters, host_weight_bytes: h.bytes, host_weight_formats: h.halfFormats.length ? [...h.halfFormats, 'f32'] : ['f32'] };
        })(),
      };
    }
    io.out(flags.json ? `${JSON.stringify(info, null, 2)}\n` : formatInfo(info));
    return 0;
  },
};

const MiB = 2 ** 20;
const human = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)}B` : n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}K` : String(n));

/** The report as text for people (--json gives every field). */
export function formatInfo(info: Record<string, unknown>): string {
  const lines: string[] = [];
  lines.push(`spikelm on Node ${info.node}, ${info.platform}, ${info.cpu} (${info.cores} cores)`);
  const backends = info.backends as { cpu: string; gpu: Record<string, unknown> };
  lines.push('', 'backends', `  cpu  ${backends.cpu}`);
  const k = info.cpu_kernels as { set: string; wasm_simd: boolean; wasm_relaxed_simd: boolean; wasm_relaxed_in_use: boolean; requested: string };
  lines.push(`       kernel set ${k.set} (${k.requested === 'default' ? 'the default' : `SPIKELM_CPU_KERNELS=${k.requested}`}; wasm|ts); WebAssembly SIMD ${k.wasm_simd ? 'yes' : 'no'}, relaxed SIMD ${k.wasm_relaxed_simd ? (k.wasm_relaxed_in_use ? 'yes, in use (SPIKELM_WASM_RELAXED=1: fused multiply-adds)' : 'yes (off; SPIKELM_WASM_RELAXED=1 fuses the multiply-adds)') : 'no'}`);
  const g = backends.gpu;
  if (g.available) {
    const limits = g.limits as Record<string, number>;
    lines.push(`  gpu  ${g.description}${g.device ? ` (${g.device})` : ''} through Dawn ${g.dawn_backend === 'opengles' ? 'OpenGL ES (compatibility mode)' : g.dawn_backend === 'vulkan' ? 'Vulkan' : 'native'}${g.fallback ? ` (fallback: ${g.fallback})` : ''}`);
    if (g.software) lines.push('       a software rasterizer: correct but slower than the cpu backend (--backend auto uses the cpu)');
    const features = g.features as string[];
    const subgroups = features.includes('subgroups') ? (g.subgroup_reductions ? 'yes (reductions use them)' : `yes, not used: ${g.subgroup_note}`) : 'no';
    lines.push(`       shader-f16 ${features.includes('shader-f16') ? `yes (f16 arithmetic: SPIKELM_GPU_ARITH=f16, opt-in; now ${g.arithmetic})` : 'no'}, subgroups ${subgroups}; largest binding ${Math.round(limits.maxStorageBufferBindingSize! / MiB)} MiB, workgroup memory ${Math.round(limits.maxComputeWorkgroupStorageSize! / 1024)} KiB`);
  } else {
    lines.push(`  gpu  none: ${g.reason}`);
  }
  const m = info.model as Record<string, unknown> | undefined;
  if (m) {
    lines.push('', `model ${m.dir}`);
    const src = m.source as Record<string, unknown> | undefined;
    if (src) lines.push(`  from the Hugging Face Hub: ${src.hub}@${src.revision}, commit ${src.commit}${src.offline ? ' (offline, from the cache)' : ''}; cache ${src.cache}`);
    lines.push(`  ${m.model_type} (${m.family} family), ${human(m.parameters as number)} parameters: ${m.layers} layers, width ${m.hidden}, ${m.heads} heads of ${m.head_dim}${m.kv_heads !== m.heads ? ` over ${m.kv_heads} KV heads` : ''}, MLP ${m.intermediate} (${m.activation})`);
    lines.push(`  ${(m.features as string[]).join('; ')}`);
    lines.push(`  vocabulary ${m.vocab} (tokenizer ${m.tokenizer_vocab}), context ${m.max_positions} positions; host weights ${Math.round((m.host_weight_bytes as number) / MiB)} MiB (${(m.host_weight_formats as string[]).length > 1 ? `matrices ${(m.host_weight_formats as string[])[0]}, the rest float32` : 'float32'})`);
  }
  return `${lines.join('\n')}\n`;
}

/** SPIKELM_GPU_ARITH as a GPU backend would take it: 'f32' unless f16 is asked for ('auto' is f32). */
function arithmeticSetting(): string {
  const v = process.env.SPIKELM_GPU_ARITH;
  return v === 'f16' ? 'f16' : v === undefined || v === '' || v === 'auto' || v === 'f32' ? 'f32' : `invalid (${v})`;
}

async function gpuReport(): Promise<Record<string, unknown>> {
  try {
    const { report } = await acquireGpu();
    return {
      available: true, dawn_backend: report.path, choice: report.choice, ...(report.fallback ? { fallback: report.fallback } : {}), description: report.description, vendor: report.vendor,
      architecture: report.architecture, device: report.device, software: report.software,
      features: report.features, limits: report.limits,
      shader_f16: report.shaderF16, arithmetic: arithmeticSetting(),
      subgroup_reductions: report.subgroupReductions, ...(report.subgroupNote ? { subgroup_note: report.subgroupNote } : {}),
    };
  } catch (err) {
    return { available: false, reason: (err as Error).message };
  }
}

/** Parameters, and the bytes the host holds them in (16-bit matrices at 2 bytes, the rest at 4). */
function hostWeights(w: import('../nn/weights.js').LMWeights): { parameters: number; bytes: number; halfFormats: string[] } {
  const seen = new Set<unknown>();
  const formats = new Set<string>();
  let n = 0, bytes = 0;
  const add = (t: { size: number; format?: string } | undefined) => {
    if (t && !seen.has(t)) {
      seen.add(t);
      n += t.size;
      bytes += t.size * (isHalf(t) ? 2 : 4);
      if (isHalf(t)) formats.add(t.format);
    }
  };
  add(w.embed); add(w.positions); add(w.lmHead); add(w.finalNorm?.weight); add(w.finalNorm?.bias);
  for (const l of [w.projectIn, w.projectOut]) { add(l?.weight); add(l?.bias); }
  for (const b of w.blocks) {
    for (const l of [b.q, b.k, b.v, b.o, b.gate, b.up, b.down]) { add(l?.weight); add(l?.bias); }
    for (const nrm of [b.attnNorm, b.mlpNorm, b.qNorm, b.kNorm]) { add(nrm?.weight); add(nrm?.bias); }
  }
  return { parameters: n, bytes, halfFormats: [...formats] };
}
