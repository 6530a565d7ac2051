/**
 * Kernel variants chosen per adapter. Every kernel family with more than one GPU shape keeps the
 * llvmpipe-friendly one (barrier-free, one invocation per output) beside the one shaped for real
 * GPUs (a workgroup per row with a tree reduction in workgroup memory, split-K), and picks by the
 * adapter: a software rasterizer gets the first, hardware the second. An environment variable forces
 * a variant everywhere (for tests and for measuring one against the other on a device):
 *
 *   SPIKELM_MATMUL = blocked4 | blocked1 | tiled | splitk      (kernels/matmul.ts)
 *   SPIKELM_ROWS   = row | workgroup                           norms and softmax (kernels/norm.ts, softmax.ts)
 *   SPIKELM_ATTENTION = scalar | vec4 | splitk | tiled         dense attention (kernels/attention.ts)
 *   SPIKELM_REDUCE = workgroup | subgroup                      how the workgroup-shaped kernels reduce (subgroups.ts)
 *   SPIKELM_GPU_WEIGHTS = auto | f32 | f16                     how linear weights are stored (kernels/matmul.ts)
 */
import { GpuError } from './device.js';
import type { GpuRuntime } from './runtime.js';
import { SUBGROUP_ENABLE, SUBGROUP_ENTRY_INIT, SUBGROUP_ENTRY_PARAMS, subgroupReduceWgsl } from './subgroups.js';

export type RowVariant = 'row' | 'workgroup';
export const ROW_VARIANTS: readonly RowVariant[] = ['row', 'workgroup'];

/** A forced variant from the environment, or undefined; a value that is not a variant is an error naming both. */
export function forcedVariant<V extends string>(name: string, allowed: readonly V[]): V | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  if (!(allowed as readonly string[]).includes(v)) throw new GpuError(`${name}=${v} is not a variant (one of ${allowed.join(', ')})`);
  return v as V;
}

/**
 * Row reductions (norms, softmax): one invocation per row on a software adapter (barriers are
 * emulated there), one workgroup of 256 per row with a tree reduction on hardware (at decode a
 * single row would otherwise run on one thread of the chip).
 */
export function chooseRowVariant(rt: GpuRuntime): RowVariant {
  return forcedVariant('SPIKELM_ROWS', ROW_VARIANTS) ?? (rt.ctx.report.software ? 'row' : 'workgroup');
}

/** Workgroups for one-workgroup-per-row kernels: [x, y] with r = y·x_max + x (rows may exceed one dimension). */
export function rowGroups(rt: GpuRuntime, R: number): [number, number] {
  const maxX = rt.ctx.report.limits.maxComputeWorkgroupsPerDimension ?? 65535;
  return [Math.min(R, maxX), Math.ceil(R / maxX)];
}

/**
 * WGSL: sum and max over a workgroup of `size` invocations (a power of two), in workgroup memory;
 * call in uniform control flow. Each reduction has its own scratch array (`wgSum`/`wgMax` use `red`,
 * `wgSum2` uses `red2`): a kernel that reduces twice in a row, the second reduction depending on
 * the first (layerNorm's variance after its mean, softmax's sum after its max), uses one of each.
 * Reusing one array gave wrong results on llvmpipe — invocations still reading the first total
 * while others had begun writing the second, as if the final barrier did not hold there.
 */
export function workgroupReduceWgsl(size: number): string {
  const reduce = (name: string, arr: string, op: (a: string, b: string) => string) => `
fn ${name}(lid: u32, v: f32) -> f32 {
  ${arr}[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { ${arr}[lid] = ${op(`${arr}[lid]`, `${arr}[lid + s]`)}; }
    workgroupBarrier();
  }
  let total = ${arr}[0];
  workgroupBarrier();
  return total;
}`;
  return `
const WG: u32 = ${size}u;
var<workgroup> red: array<f32, ${size}>;
var<workgroup> red2: array<f32, ${size}>;
${reduce('wgSum', 'red', (a, b) => `${a} + ${b}`)}
${reduce('wgMax', 'red', (a, b) => `max(${a}, ${b})`)}
${reduce('wgSum2', 'red2', (a, b) => `${a} + ${b}`)}`;
}

/**
 * WGSL: the row a one-workgroup-per-row kernel works on (`rowGroups` lays them out; params
 * `R, C, rowsPerY`). No early return: barriers follow, and GLSL ES forbids them after a return; a
 * workgroup past the last row sees C = 0 columns.
 */
export const WORKGROUP_ROW_WGSL = `
  let r = wid.y * p.rowsPerY + wid.x;
  let C = select(0u, p.C, r < p.R);
  let o = r * p.C;`;

/** How the workgroup-shaped kernels reduce (subgroups.ts). */
export type Reduction = 'workgroup' | 'subgroup';
export const REDUCTIONS: readonly Reduction[] = ['workgroup', 'subgroup'];

/**
 * Subgroup operations where the device has them and their layout probe passed, workgroup memory
 * otherwise; SPIKELM_REDUCE forces one (forcing `subgroup` where it cannot run is an error saying why).
 */
export function chooseReduction(rt: GpuRuntime): Reduction {
  const forced = forcedVariant('SPIKELM_REDUCE', REDUCTIONS);
  if (forced === 'subgroup' && !rt.ctx.report.subgroupReductions) throw new GpuError(`SPIKELM_REDUCE=subgroup: not on this adapter (${rt.ctx.report.subgroupNote})`);
  return forced ?? (rt.ctx.report.subgroupReductions ? 'subgroup' : 'workgroup');
}

/**
 * The template values of a kernel that reduces over a workgroup of `size`: `{{enable}}` (its first
 * line), `{{reduce}}` (wgSum, wgMax, wgSum2 at module scope), `{{sgParams}}` (appended to the entry
 * point's parameters) and `{{sgInit}}` (the entry point's first statements).
 */
export function reductionParts(reduction: Reduction, size: number): Record<'enable' | 'reduce' | 'sgParams' | 'sgInit', string> {
  return reduction === 'subgroup'
    ? { enable: SUBGROUP_ENABLE, reduce: subgroupReduceWgsl(size), sgParams: SUBGROUP_ENTRY_PARAMS, sgInit: SUBGROUP_ENTRY_INIT }
    : { enable: '', reduce: workgroupReduceWgsl(size), sgParams: '', sgInit: '' };
}
