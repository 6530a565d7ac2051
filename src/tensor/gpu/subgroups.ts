/**
 * Workgroup reductions with subgroup operations (WGSL's `subgroups` feature), for adapters that
 * offer it. The workgroup-shaped kernels (norms and softmax per row, split-K attention) reduce with
 * `wgSum`/`wgMax`/`wgSum2`; this file gives those three functions a second body, the same names and
 * results, chosen per adapter (`chooseReduction` in variants.ts; SPIKELM_REDUCE forces one):
 *
 *   workgroup  a tree in workgroup memory: log2(WG) barrier steps (every adapter)
 *   subgroup   subgroupAdd / subgroupMax within each subgroup, the subgroups' results written to
 *              workgroup memory, and again over those: ⌈log_4(WG)⌉ steps (4 for WG = 256, instead
 *              of 8), enough for the smallest subgroups; with subgroups of s only ⌈log_s(WG)⌉ of
 *              them do work (2 with s = 32), the rest pass the total along
 *
 * The subgroup body writes subgroup k's result to slot k = lid / subgroup_size: it assumes subgroups
 * are consecutive runs of local_invocation_index, each starting at a multiple of the subgroup size —
 * what every implementation does for one-dimensional workgroups, but WGSL does not promise it. So the
 * device is probed when it is opened (`probeSubgroupLayout`: each invocation reports its lane, the
 * subgroup size and its subgroup's first index) and the subgroup body is used only where the layout
 * holds. Subgroup sizes from 4 to 128 are handled (a fixed number of steps, enough for size 4).
 */

/** The smallest subgroup size WebGPU allows; the number of steps is chosen for it. */
const MIN_SUBGROUP = 4;

/** First line of a module that uses subgroup operations. */
export const SUBGROUP_ENABLE = 'enable subgroups;';
/** Entry-point parameters the subgroup reductions read (appended to the parameter list). */
export const SUBGROUP_ENTRY_PARAMS = ', @builtin(subgroup_invocation_id) sgLaneIn: u32, @builtin(subgroup_size) sgSizeIn: u32';
/** First statements of such an entry point: the builtins into module-scope variables the functions read. */
export const SUBGROUP_ENTRY_INIT = `
  sgLane = sgLaneIn;
  sgSize = sgSizeIn;`;

/**
 * WGSL: wgSum / wgMax / wgSum2 over a workgroup of `size` invocations (a power of two) by subgroup
 * operations; call in uniform control flow, as the workgroup versions. Each step: every subgroup
 * reduces its values, its first lane writes the result to slot lid / subgroup_size, and the first
 * ⌈n / s⌉ invocations take those slots as their values for the next step. After the last step slot
 * 0 holds the total, which every invocation reads. Two scratch arrays, as the workgroup versions
 * (a reduction that depends on the one before it uses the other array).
 */
export function subgroupReduceWgsl(size: number): string {
  const steps = Math.max(1, Math.ceil(Math.log(size) / Math.log(MIN_SUBGROUP)));
  const reduce = (name: string, arr: string, op: string, identity: string) => `
fn ${name}(lid: u32, v: f32) -> f32 {
  var x = v;
  var n = WG;
  for (var step = 0u; step < ${steps}u; step++) {
    let r = ${op}(x);
    if (sgLane == 0u && lid < n) { ${arr}[lid / sgSize] = r; }
    n = (n + sgSize - 1u) / sgSize;
    workgroupBarrier();
    x = select(${identity}, ${arr}[lid], lid < n);
    workgroupBarrier();
  }
  let total = ${arr}[0];
  workgroupBarrier();
  return total;
}`;
  return `
const WG: u32 = ${size}u;
var<private> sgLane: u32;
var<private> sgSize: u32;
var<workgroup> red: array<f32, ${size}>;
var<workgroup> red2: array<f32, ${size}>;
${reduce('wgSum', 'red', 'subgroupAdd', '0.0')}
${reduce('wgMax', 'red', 'subgroupMax', '-3.4e38')}
${reduce('wgSum2', 'red2', 'subgroupAdd', '0.0')}`;
}

/** Workgroup sizes the reductions run at (the row kernels' 256, split-K attention's 64). */
export const PROBED_SIZES = [256, 64] as const;

/** The probe: per invocation, its lane, the subgroup size and the first local index of its subgroup. */
export function subgroupProbeWgsl(size: number): string {
  return `${SUBGROUP_ENABLE}
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(${size})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32${SUBGROUP_ENTRY_PARAMS}) {
  let o = (wid.x * ${size}u + lid) * 3u;
  out[o] = sgLaneIn;
  out[o + 1u] = sgSizeIn;
  out[o + 2u] = subgroupBroadcastFirst(lid);
}`;
}

/**
 * Why the probe's output (lane, size, first per invocation, `groups` workgroups of `size`) does not
 * have the layout the subgroup reductions assume, or undefined when it does.
 */
export function subgroupLayoutProblem(out: Uint32Array, size: number, groups: number): string | undefined {
  for (let i = 0; i < size * groups; i++) {
    const lid = i % size, lane = out[3 * i]!, s = out[3 * i + 1]!, first = out[3 * i + 2]!;
    if (s < MIN_SUBGROUP || s > 128 || (s & (s - 1)) !== 0) return `subgroup size ${s} at invocation ${lid}`;
    if (lane !== lid % s || first !== lid - (lid % s)) return `invocation ${lid} of ${size} is lane ${lane} of a subgroup of ${s} starting at ${first} (expected lane ${lid % s}, start ${lid - (lid % s)})`;
  }
  return undefined;
}

/**
 * Run the probe on a device created with the `subgroups` feature, at every workgroup size the
 * reductions use. Resolves to undefined when the subgroup reductions can be used, else the reason.
 */
export async function probeSubgroupLayout(device: GPUDevice): Promise<string | undefined> {
  const groups = 2;
  for (const size of PROBED_SIZES) {
    device.pushErrorScope('validation');
    const module = device.createShaderModule({ code: subgroupProbeWgsl(size) });
    const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
    const bytes = size * groups * 3 * 4;
    const out = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const read = device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: out } }] }));
    pass.dispatchWorkgroups(groups);
    pass.end();
    encoder.copyBufferToBuffer(out, 0, read, 0, bytes);
    device.queue.submit([encoder.finish()]);
    const error = await device.popErrorScope();
    let values: Uint32Array | undefined;
    if (!error) {
      await read.mapAsync(GPUMapMode.READ);
      values = new Uint32Array(read.getMappedRange().slice(0));
      read.unmap();
    }
    out.destroy();
    read.destroy();
    if (!values) return `the probe did not compile: ${error!.message}`;
    const problem = subgroupLayoutProblem(values, size, groups);
    if (problem) return `workgroups of ${size}: ${problem}`;
  }
  return undefined;
}
