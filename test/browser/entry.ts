/**
 * Browser side of the subgroup tests (test/helpers/browser-gpu.ts bundles it): the engine's own GPU
 * runtime and kernels, run on the page's WebGPU device — Chromium's SwiftShader, which offers the
 * `subgroups` feature that Dawn's Node bindings on llvmpipe do not. Each function takes plain arrays
 * and returns the kernel's output; the Node side compares it with the CPU twin.
 */
import type { GpuAdapterReport, GpuContext } from '../../src/tensor/gpu/device.js';
import { GpuRuntime } from '../../src/tensor/gpu/runtime.js';
import { probeSubgroupLayout } from '../../src/tensor/gpu/subgroups.js';
import { type Reduction, chooseReduction } from '../../src/tensor/gpu/variants.js';
import { type AttentionParams, attentionGpu } from '../../src/tensor/kernels/attention.js';
import { layerNormGpu, rmsNormGpu } from '../../src/tensor/kernels/norm.js';
import { type CausalMask, softmaxGpu } from '../../src/tensor/kernels/softmax.js';

let rt: GpuRuntime | undefined;
/** The page's WebGPU entry point (the project's TypeScript config has no DOM types). */
const gpu = (globalThis as unknown as { navigator: { gpu: GPU } }).navigator.gpu;

async function open(): Promise<{ report: GpuAdapterReport }> {
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new Error('no WebGPU adapter in this browser');
  const hasSubgroups = adapter.features.has('subgroups');
  const device = await adapter.requestDevice(hasSubgroups ? { requiredFeatures: ['subgroups' as GPUFeatureName] } : {});
  const note = hasSubgroups ? (await probeSubgroupLayout(device)) ?? '' : 'the adapter does not offer the subgroups feature';
  const limits: Record<string, number> = {};
  for (const name of ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupsPerDimension', 'maxComputeWorkgroupStorageSize']) {
    limits[name] = (device.limits as unknown as Record<string, number>)[name]!;
  }
  const info = adapter.info;
  const report: GpuAdapterReport = {
    path: 'native', choice: 'default', vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description || info.architecture,
    software: true, limits, features: [...adapter.features], subgroupReductions: note === '', subgroupNote: note, shaderF16: false,
  };
  const ctx: GpuContext = { instance: gpu, device, report };
  rt = new GpuRuntime(ctx);
  return { report };
}

function runtime(): GpuRuntime {
  if (!rt) throw new Error('call open() first');
  return rt;
}

const up = (a: number[]) => runtime().fromHost([a.length], Float32Array.from(a));

async function norm(kind: 'layer' | 'rms', x: number[], gamma: number[], beta: number[] | null, eps: number, R: number, C: number, reduction: Reduction): Promise<number[]> {
  const r = runtime();
  const y = r.alloc([R, C]);
  if (kind === 'layer') layerNormGpu(r, up(x), up(gamma), beta ? up(beta) : undefined, eps, R, C, y, 'workgroup', reduction);
  else rmsNormGpu(r, up(x), up(gamma), eps, R, C, y, 'workgroup', reduction);
  return Array.from(await r.read(y));
}

async function softmax(x: number[], R: number, C: number, mask: CausalMask | null, reduction: Reduction): Promise<number[]> {
  const r = runtime();
  const y = r.alloc([R, C]);
  softmaxGpu(r, up(x), R, C, y, mask ?? undefined, 'workgroup', reduction);
  return Array.from(await r.read(y));
}

async function attention(q: number[], k: number[], v: number[], S: number, p: AttentionParams, reduction: Reduction): Promise<number[]> {
  const r = runtime();
  const y = r.alloc([(p.batches ?? 1) * S, p.numHeads * p.headDim]);
  attentionGpu(r, up(q), up(k), up(v), S, p, y, 'splitk', reduction);
  return Array.from(await r.read(y));
}

/** What the kernels pick when no reduction is forced. */
const chosenReduction = (): Reduction => chooseReduction(runtime());

(globalThis as unknown as { spikelm: object }).spikelm = { open, norm, softmax, attention, chosenReduction };
