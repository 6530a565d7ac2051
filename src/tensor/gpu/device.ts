/**
 * Acquiring a WebGPU device through Dawn's Node bindings (the `webgpu` package).
 *
 * The path is chosen deliberately and reported (GpuAdapterReport.path, `spikelm info`):
 *   SPIKELM_GPU=default (or unset)  the native backend first — Vulkan on Linux (what NVIDIA, AMD and
 *                 Intel GPUs use there; Mesa's lavapipe in CI), Metal or D3D12 elsewhere — and, on
 *                 Linux, OpenGL ES if no native adapter opens: a fallback announced on stderr once
 *                 and recorded in the report, never silent
 *   SPIKELM_GPU=vulkan   Dawn's Vulkan backend only (no fallback: an error if it cannot open)
 *   SPIKELM_GPU=opengles EGL + OpenGL ES only (Mesa's llvmpipe): EGL_PLATFORM=surfaceless, Dawn
 *                 created with `backend=opengles`, the adapter requested at the `compatibility`
 *                 feature level
 * The adapter's real limits are requested (compatibility defaults are far lower, e.g. 128
 * invocations per workgroup instead of 1024).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { SpikelmError } from '../../errors.js';
import { probeSubgroupLayout } from './subgroups.js';

export class GpuError extends SpikelmError {
  override name = 'GpuError';
}

export const GPU_INSTALL_HINT =
  'no WebGPU adapter found. On a machine without a GPU install Mesa\'s software renderer: `apt-get install -y libegl1 libegl-mesa0 libgles2` (as root, after apt-get update)';

/** SPIKELM_GPU's values. */
export type GpuChoice = 'default' | 'vulkan' | 'opengles';
/** The Dawn backend a device runs on: Vulkan (Linux's native path), OpenGL ES, or another native one (Metal, D3D12). */
export type GpuPath = 'vulkan' | 'opengles' | 'native';

export const VULKAN_HINT = 'Dawn\'s Vulkan backend needs a Vulkan driver: a GPU\'s, or Mesa\'s lavapipe ≥ 25 (Debian bookworm: `apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1`; .ci/backports enables the suite)';

export function gpuChoice(env: string | undefined = process.env.SPIKELM_GPU): GpuChoice {
  if (env === undefined || env === '') return 'default';
  if (env === 'default' || env === 'vulkan' || env === 'opengles') return env;
  throw new GpuError(`SPIKELM_GPU must be default, vulkan or opengles, got "${env}"`);
}

/**
 * SPIKELM_GPU_ADAPTER: a substring of the adapter's device name (`spikelm info` prints it in
 * parentheses after the description), for machines with several; unset or empty: the first. Dawn's Node bindings choose by name
 * only (they enumerate adapters but offer no list to JavaScript), so a number is refused.
 */
export function gpuAdapterName(env: string | undefined = process.env.SPIKELM_GPU_ADAPTER): string | undefined {
  if (env === undefined || env.trim() === '') return undefined;
  if (/^\d+$/.test(env.trim())) throw new GpuError(`SPIKELM_GPU_ADAPTER=${env}: give a substring of the adapter's device name (spikelm info prints it in parentheses); Dawn's Node bindings choose adapters by name, not by index`);
  return env.trim();
}

export interface GpuAdapterReport {
  readonly path: GpuPath;
  /** What SPIKELM_GPU asked for. */
  readonly choice: GpuChoice;
  /** Why the native path was not taken, when `default` fell back to OpenGL ES. */
  readonly fallback?: string;
  readonly vendor: string;
  readonly architecture: string;
  readonly device: string;
  readonly description: string;
  /** A CPU rasterizer (llvmpipe, SwiftShader, lavapipe, WARP): kernels are chosen accordingly. */
  readonly software: boolean;
  readonly limits: Readonly<Record<string, number>>;
  readonly features: readonly string[];
  /**
   * Whether the workgroup reductions may use subgroup operations: the adapter offers `subgroups`,
   * the device was created with it and the layout probe passed (subgroups.ts). `subgroupNote` says
   * why not, when not.
   */
  readonly subgroupReductions: boolean;
  readonly subgroupNote: string;
  /** The device was created with shader-f16 (f16 arithmetic possible: SPIKELM_GPU_ARITH=f16). */
  readonly shaderF16: boolean;
}

export interface GpuContext {
  /**
   * The Dawn instance (`create()`'s GPU object). It must stay strongly reachable for as long as the
   * device is used: if V8 collects it, Dawn destroys the instance under the live device and the
   * process aborts later from a native thread ("The futex facility returned an unexpected error
   * code", `pthread_mutex_lock` assertions, `std::system_error: Invalid argument`), typically after
   * a few hundred objects have been created and a GC has run.
   */
  readonly instance: GPU;
  readonly device: GPUDevice;
  readonly report: GpuAdapterReport;
}

/** The limits worth raising above the compatibility defaults. */
const REQUESTED_LIMITS = [
  'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY', 'maxComputeWorkgroupSizeZ', 'maxComputeWorkgroupStorageSize', 'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage', 'maxBindGroups', 'maxUniformBufferBindingSize',
] as const;

function hasVulkanLoader(): boolean {
  if (process.platform !== 'linux') return true;
  try {
    return execFileSync('ldconfig', ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).includes('libvulkan.so');
  } catch {
    return ['/usr/lib/x86_64-linux-gnu/libvulkan.so.1', '/usr/lib/libvulkan.so.1'].some((p) => fs.existsSync(p));
  }
}

let cached: Promise<GpuContext> | undefined;
/** Every Dawn instance that produced a device, kept reachable for the life of the process. */
const liveInstances: GPU[] = [];

/** The process's GPU device (one per process; Dawn instances are expensive). Throws GpuError if none. */
export function acquireGpu(): Promise<GpuContext> {
  cached ??= openGpu().catch((err) => {
    cached = undefined;
    throw err;
  });
  return cached;
}

/** True when an adapter can be opened (and opens it). */
export async function gpuAvailable(): Promise<boolean> {
  try {
    await acquireGpu();
    return true;
  } catch {
    return false;
  }
}

async function openGpu(): Promise<GpuContext> {
  let webgpu: typeof import('webgpu');
  try {
    webgpu = await import('webgpu');
  } catch (err) {
    throw new GpuError(`cannot load the webgpu package (${(err as Error).message})`);
  }
  Object.assign(globalThis, webgpu.globals);
  const choice = gpuChoice();
  const linux = process.platform === 'linux';
  // Dawn's Node bindings take the first adapter whose device name contains this (their `adapter` flag)
  const named = gpuAdapterName();
  // timestamps unrounded (only `spikelm bench --profile` reads them: gpu/profile.ts)
  // SPIKELM_DAWN_ENABLE: Dawn toggles to enable (comma-separated), e.g. vulkan_enable_f16_on_nvidia
  // (Dawn hides shader-f16 on NVIDIA without it; bench/device-check.sh sets it to test f16 arithmetic)
  const enable = (process.env.SPIKELM_DAWN_ENABLE ?? '').split(',').map((t) => t.trim()).filter(Boolean);
  const pick = [...(named ? [`adapter=${named}`] : []), 'disable-dawn-features=timestamp_quantization', ...(enable.length ? [`enable-dawn-features=${enable.join(',')}`] : [])];
  const unmatched = named ? `: no adapter whose device name contains "${named}" (SPIKELM_GPU_ADAPTER)` : '';
  let adapter: GPUAdapter | null = null;
  let instance: GPU | undefined;
  let path: GpuPath = linux ? 'vulkan' : 'native';
  let fallback: string | undefined;
  if (choice !== 'opengles') {
    if (choice === 'vulkan' || !linux || hasVulkanLoader()) {
      instance = webgpu.create([...(choice === 'vulkan' || linux ? ['backend=vulkan'] : []), ...pick]);
      adapter = await instance.requestAdapter({ powerPreference: 'high-performance' }).catch(() => null);
      if (!adapter) fallback = `no ${linux ? 'Vulkan' : 'native'} adapter opened${unmatched}`;
    } else {
      fallback = 'no Vulkan loader (libvulkan.so.1)';
    }
    if (!adapter && choice === 'vulkan') throw new GpuError(`SPIKELM_GPU=vulkan: ${fallback}. ${VULKAN_HINT}`);
  }
  if (!adapter && linux) {
    process.env.EGL_PLATFORM ??= 'surfaceless';
    path = 'opengles';
    instance = webgpu.create(['backend=opengles', ...pick]);
    adapter = await instance.requestAdapter({ featureLevel: 'compatibility' } as GPURequestAdapterOptions).catch(() => null);
    if (adapter && choice === 'default') process.stderr.write(`spikelm: GPU through OpenGL ES: ${fallback} (SPIKELM_GPU=opengles chooses it without this note; vulkan refuses to fall back)\n`);
  }
  if ((!adapter || !instance) && named) throw new GpuError(`SPIKELM_GPU_ADAPTER=${named}: no ${choice === 'default' ? '' : `${choice} `}adapter's device name contains it (spikelm info without it prints the device name in parentheses)`);
  if (!adapter || !instance) throw new GpuError(choice === 'opengles' ? `SPIKELM_GPU=opengles: ${GPU_INSTALL_HINT}` : GPU_INSTALL_HINT);
  liveInstances.push(instance);

  const requiredLimits: Record<string, number> = {};
  for (const name of REQUESTED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof v === 'number') requiredLimits[name] = v;
  }
  const wantSubgroups = adapter.features.has('subgroups');
  // subgroups for the reductions, timestamps for --profile, shader-f16 for SPIKELM_GPU_ARITH=f16
  const features = [...(wantSubgroups ? ['subgroups'] : []), ...['timestamp-query', 'shader-f16'].filter((f) => adapter.features.has(f))] as GPUFeatureName[];
  const device = await adapter.requestDevice({ requiredLimits, ...(features.length ? { requiredFeatures: features } : {}) });
  let subgroupNote = 'the adapter does not offer the subgroups feature';
  if (wantSubgroups) {
    try {
      subgroupNote = (await probeSubgroupLayout(device)) ?? '';
    } catch (err) {
      subgroupNote = `the layout probe failed: ${(err as Error).message}`;
    }
  }
  const info = adapter.info;
  const description = info.description || info.device || 'unknown adapter';
  const limits: Record<string, number> = {};
  for (const name of REQUESTED_LIMITS) limits[name] = (device.limits as unknown as Record<string, number>)[name]!;
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`.toLowerCase();
  return {
    instance,
    device,
    report: {
      path, choice, ...(fallback && path === 'opengles' ? { fallback } : {}), vendor: info.vendor, architecture: info.architecture, device: info.device, description,
      software: /llvmpipe|softpipe|swiftshader|lavapipe|warp|microsoft basic/.test(text) || Boolean((info as { isFallbackAdapter?: boolean }).isFallbackAdapter),
      limits,
      features: [...adapter.features],
      subgroupReductions: subgroupNote === '',
      subgroupNote,
      shaderF16: device.features.has('shader-f16'),
    },
  };
}
