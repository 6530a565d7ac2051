/**
 * Choosing a backend by name: `cpu`, `gpu`, or `auto` (the GPU when an adapter exists, else the CPU).
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
  try {
    return { backend: await GpuBackend.create(), reason: 'auto: a WebGPU adapter is available' };
  } catch (err) {
    return { backend: new CpuBackend(), reason: `auto: no GPU (${(err as Error).message.split('.')[0]})` };
  }
}
