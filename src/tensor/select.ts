/**
 * Choosing a backend by name: `cpu`, `gpu`, or `auto`: the GPU when a hardware adapter exists, else
 * the CPU. A software adapter (Mesa llvmpipe, SwiftShader, WARP) is the CPU pretending to be a GPU
 * and runs spikelm 4–8× slower than the CPU backend at GPT-2-small size (bench/scale), so `auto` skips it;
 * `--backend gpu` still uses it (it is how CI checks every WGSL kernel).
 */
import { ArgumentError } from '../errors.js';
import type { Backend } from './backend.js';
import { CpuBackend } from './cpu-backend.js';
import { GpuBackend } from './gpu/gpu-backend.js';

export type BackendChoice = 'cpu' | 'gpu' | 'auto';

export function parseBackendChoice(s: string, flag = '--backend'): BackendChoice {
  if (s === 'cpu' || s === 'gpu' || s === 'auto') return s;
  throw new ArgumentError(`${flag} must be cpu, gpu or auto, got "${s}"`);
}

export interface SelectedBackend {
  readonly backend: Backend;
  /** Why this backend was chosen (printed by the CLI for `auto`). */
  readonly reason: string;
}

export async function selectBackend(choice: BackendChoice): Promise<SelectedBackend> {
  if (choice === 'cpu') return { backend: new CpuBackend(), reason: 'requested' };
  if (choice === 'gpu') return { backend: await GpuBackend.create(), reason: 'requested' };
  let gpu: GpuBackend;
  try {
    gpu = await GpuBackend.create();
  } catch (err) {
    return { backend: new CpuBackend(), reason: `auto: no GPU (${(err as Error).message.split('.')[0]})` };
  }
  const r = gpu.rt.ctx.report;
  if (r.software) {
    return { backend: new CpuBackend(), reason: `auto: the only WebGPU adapter is a software rasterizer (${r.description}), slower than the CPU backend; --backend gpu uses it anyway` };
  }
  return { backend: gpu, reason: 'auto: a hardware WebGPU adapter is available' };
}
