/**
 * Choosing a backend by name: `cpu`, `gpu`, or `auto` (the GPU when an adapter exists, else the CPU).
 */
import { ArgumentError } from '../errors.js';
import type { Backend } from './backend.js';
import { CpuBackend } from './cpu-backend.js';

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
  if (choice === 'gpu') throw new ArgumentError('--backend gpu: the GPU backend is not available in this build');
  return { backend: new CpuBackend(), reason: 'auto: no GPU backend in this build' };
}
