/**
 * The GPU runtime under the backend: device buffers and their pool, WGSL templates and the pipeline
 * cache, per-dispatch uniforms, and one command encoder per batch.
 *
 * Every op is a compute dispatch appended to one open compute pass; nothing is submitted until a
 * result is read (or `flush` is called), so a whole forward pass is one submit. Buffers released
 * while the batch is open go back to the pool and may be reused by later dispatches of the same
 * pass — that is safe because dispatches in a pass execute in order. Host data that a batch needs
 * (token ids, rope tables) goes into fresh buffers, never pooled ones, because queue.writeBuffer
 * would land before the still-unsubmitted dispatches that use the old contents.
 *
 * Uniforms: each dispatch's parameters take the next slot of a uniform ring (a few persistent
 * buffers of 256 slots, bound with a dynamic offset), written with one queue.writeBuffer per used
 * buffer just before the batch is submitted. The queue runs writes and submits in order, so the
 * next batch's write lands after this batch has run. No buffer is made per dispatch, and a bind
 * group names only buffers that persist, so the decode loop finds every group it needs made.
 *
 * Errors: each batch runs inside validation and out-of-memory error scopes, checked when it is
 * submitted; device loss and uncaptured errors are recorded and raised by the next op.
 */
import { GpuError, type GpuContext } from './device.js';
import { GpuProfiler } from './profile.js';

/** A dense float32 tensor in a device buffer (row-major, like the host Tensor). */
export class GpuTensor {
  disposed = false;
  constructor(
    readonly shape: readonly number[],
    readonly buffer: GPUBuffer,
    readonly size: number,
    /** Pooled buffers go back to the pool on dispose; weights and caches are destroyed. */
    readonly pooled: boolean,
  ) {}
}

export type ParamValue = number | { readonly f32: number } | { readonly i32: number };

export interface Binding {
  readonly buffer: GPUBuffer;
}

const BUFFER_USAGE = 0x80 /* STORAGE */ | 0x4 /* COPY_SRC */ | 0x8; /* COPY_DST */

/** Fill `{{name}}` placeholders of a WGSL template (gpu.cpp style). Unknown names are an error. */
export function fillTemplate(source: string, vars: Readonly<Record<string, string | number>>): string {
  return source.replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
    if (!(name in vars)) throw new GpuError(`WGSL template: no value for {{${name}}}`);
    return String(vars[name]);
  });
}

/** Read-back buffers kept per size class, and the largest size kept. */
const STAGING_PER_SIZE = 2;
const STAGING_MAX_BYTES = 16 << 20;
/** Bind groups kept before the cache starts over. */
const BIND_GROUP_CACHE = 8192;
/** Slots per buffer of the uniform ring. */
const RING_SLOTS = 256;

/** One buffer of the uniform ring and its host copy. */
interface RingBuffer {
  readonly buffer: GPUBuffer;
  readonly host: Uint32Array;
  readonly f32: Float32Array;
  readonly i32: Int32Array;
}

export class GpuRuntime {
  readonly device: GPUDevice;
  private readonly pool = new Map<number, GPUBuffer[]>();
  private live = 0;
  private readonly destroyed = new WeakSet<GPUBuffer>();
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  /** The uniform ring (see the file comment) and the next free slot of the open batch. */
  private readonly ring: RingBuffer[] = [];
  private ringSlot = 0;
  /** Bytes per slot: 256, or the adapter's dynamic-offset alignment if that is larger. */
  private readonly slotBytes: number;
  /** Mappable read-back buffers by size class, reused across reads (a ring per size). */
  private readonly staging = new Map<number, GPUBuffer[]>();
  /** Bind groups by pipeline and resources: decode binds the same buffers every token. */
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly ids = new WeakMap<object, number>();
  /** Buffer id → the keys of the cached bind groups that bind it. */
  private readonly groupsOf = new Map<number, string[]>();
  private nextId = 1;
  /** Bind groups created and reused (for benchmarks and tests). */
  readonly bindGroupStats = { created: 0, reused: 0 };
  /** Read-back buffers created and reused (for tests). */
  readonly stagingStats = { created: 0, reused: 0 };
  private encoder: GPUCommandEncoder | undefined;
  /** Set while profiling: every dispatch in a timestamped pass of its own. */
  private profiler: GpuProfiler | undefined;
  /** The one profiler (its query set) a runtime makes, kept between profiles. */
  private profilerKept: GpuProfiler | undefined;
  private pass: GPUComputePassEncoder | undefined;
  private afterSubmit: GPUBuffer[] = [];
  private pendingErrors: Promise<GPUError | null>[] = [];
  private lostReason: string | undefined;
  private uncaptured: string | undefined;
  private scopes: Set<GpuTensor>[] = [];
  /** Dispatches issued (for benchmarks and tests). */
  dispatchCount = 0;
  /**
   * What the host asked of the device, counted since the runtime was made (the decode loop's test
   * takes differences per token): queue submits, bytes copied back to the host, buffers and bind
   * groups created, queue.writeBuffer calls.
   */
  readonly counters = { submits: 0, bytesRead: 0, buffersCreated: 0, bindGroupsCreated: 0, writeBuffers: 0 };

  constructor(readonly ctx: GpuContext) {
    this.device = ctx.device;
    this.slotBytes = Math.max(256, this.device.limits.minUniformBufferOffsetAlignment ?? 256);
    void this.device.lost.then((info) => {
      this.lostReason = `${info.reason}: ${info.message}`;
    });
    this.device.addEventListener('uncapturederror', (ev) => {
      this.uncaptured ??= (ev as GPUUncapturedErrorEvent).error.message;
    });
  }

  get maxBindingBytes(): number {
    return Math.min(this.ctx.report.limits.maxStorageBufferBindingSize ?? 134217728, this.ctx.report.limits.maxBufferSize ?? 268435456);
  }

  checkHealthy(): void {
    if (this.lostReason) throw new GpuError(`GPU device lost (${this.lostReason})`);
    if (this.uncaptured) {
      const msg = this.uncaptured;
      this.uncaptured = undefined;
      throw new GpuError(`GPU error: ${msg}`);
    }
  }

  // ---- buffers ------------------------------------------------------------------------------

  private sizeClass(bytes: number): number {
    let c = 256;
    while (c < bytes) c *= 2;
    return c;
  }

  /** An uninitialised float32 tensor from the pool (contents are whatever was there). */
  alloc(shape: readonly number[]): GpuTensor {
    const size = shape.reduce((a, b) => a * b, 1);
    const bytes = this.sizeClass(Math.max(4, size * 4));
    if (bytes > this.maxBindingBytes) throw new GpuError(`activation of shape [${shape.join(', ')}] (${size * 4} bytes) exceeds the adapter's binding limit of ${this.maxBindingBytes} bytes`);
    // the free buffer made first (each size's list is kept in decreasing order of making): a call
    // that repeats the previous one's allocations and releases (a decode step) gets every buffer back
    // in the role it had, whatever order the buffers were released in, and finds its bind groups made
    const free = this.pool.get(bytes);
    const buffer = free?.pop() ?? this.createBuffer({ size: bytes, usage: BUFFER_USAGE });
    this.idOf(buffer);
    const t = new GpuTensor(shape, buffer, size, true);
    this.scopes.at(-1)?.add(t);
    return t;
  }

  /** A tensor initialised from host data (a fresh, non-pooled buffer). */
  fromHost(shape: readonly number[], data: Float32Array | Uint32Array | Int32Array, label?: string): GpuTensor {
    const size = data.length;
    const bytes = Math.max(16, Math.ceil((size * 4) / 16) * 16);
    const buffer = this.createBuffer({ size: bytes, usage: BUFFER_USAGE, mappedAtCreation: true, ...(label ? { label } : {}) });
    new Uint8Array(buffer.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    buffer.unmap();
    return new GpuTensor(shape, buffer, size, false);
  }

  /** A zero-filled tensor (fresh buffers are zero-initialised by WebGPU). */
  zeros(shape: readonly number[]): GpuTensor {
    const size = shape.reduce((a, b) => a * b, 1);
    const bytes = Math.max(16, Math.ceil((size * 4) / 16) * 16);
    if (bytes > this.maxBindingBytes) throw new GpuError(`tensor of shape [${shape.join(', ')}] exceeds the adapter's binding limit of ${this.maxBindingBytes} bytes`);
    const t = new GpuTensor(shape, this.createBuffer({ size: bytes, usage: BUFFER_USAGE }), size, false);
    return t;
  }

  /** Host data needed by the current batch only (ids, tables): destroyed after the batch is submitted. */
  transient(data: Float32Array | Uint32Array | Int32Array): GPUBuffer {
    const t = this.fromHost([data.length], data);
    this.afterSubmit.push(t.buffer);
    return t.buffer;
  }

  release(t: GpuTensor): void {
    if (t.disposed) return;
    t.disposed = true;
    for (const s of this.scopes) s.delete(t);
    if (!t.pooled) {
      // It may still be used by the open batch: destroy it once that batch is submitted.
      if (this.encoder) this.afterSubmit.push(t.buffer);
      else this.destroyBuffer(t.buffer);
      return;
    }
    const list = this.pool.get(t.buffer.size) ?? [];
    const id = this.idOf(t.buffer);
    let at = list.length;
    while (at > 0 && this.idOf(list[at - 1]!) < id) at--;
    list.splice(at, 0, t.buffer);
    this.pool.set(t.buffer.size, list);
  }

  tidy<T>(fn: () => T): T {
    const scope = new Set<GpuTensor>();
    this.scopes.push(scope);
    let result: T;
    try {
      result = fn();
    } finally {
      this.scopes.pop();
    }
    const keep = new Set<unknown>();
    const visit = (v: unknown) => {
      if (v instanceof GpuTensor) keep.add(v);
      else if (Array.isArray(v)) v.forEach(visit);
      else if (v instanceof Map) v.forEach(visit);
      else if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) Object.values(v).forEach(visit);
    };
    visit(result);
    for (const t of scope) if (!keep.has(t)) this.release(t);
    for (const t of keep) this.scopes.at(-1)?.add(t as GpuTensor);
    return result;
  }

  // ---- pipelines and dispatch ---------------------------------------------------------------

  /**
   * The compute pipeline of a WGSL source, cached by key. The bind group layout is declared from the
   * source's own `@binding(i) var<…>` lines rather than inferred ('auto' drops bindings a variant
   * does not read, which would make one host-side binding list invalid for it).
   */
  pipeline(key: string, code: () => string): GPUComputePipeline {
    let p = this.pipelines.get(key);
    if (!p) {
      const source = code();
      const entries: GPUBindGroupLayoutEntry[] = [];
      for (const m of source.matchAll(/@binding\((\d+)\)\s*var<\s*(uniform|storage\s*,\s*read_write|storage\s*,\s*read|storage)\s*>/g)) {
        const kind = m[2]!.replace(/\s/g, '');
        const buffer: GPUBufferBindingLayout = kind === 'uniform' ? { type: 'uniform', hasDynamicOffset: true } : { type: kind === 'storage,read' ? 'read-only-storage' : 'storage' };
        entries.push({ binding: Number(m[1]), visibility: 4 /* COMPUTE */, buffer });
      }
      const layout = this.device.createPipelineLayout({ bindGroupLayouts: [this.device.createBindGroupLayout({ entries, label: key })] });
      const module = this.device.createShaderModule({ code: source, label: key });
      p = this.device.createComputePipeline({ layout, compute: { module, entryPoint: 'main' }, label: key });
      this.pipelines.set(key, p);
    }
    return p;
  }

  /** Write `values` (u32, f32 or i32 each) into the next slot of the uniform ring: its buffer and offset. */
  private uniform(values: readonly ParamValue[]): { buffer: GPUBuffer; offset: number } {
    const slotWords = this.slotBytes / 4;
    if (values.length > slotWords) throw new GpuError(`uniforms: ${values.length} values exceed a slot of ${slotWords}`);
    const r = Math.floor(this.ringSlot / RING_SLOTS), slot = this.ringSlot % RING_SLOTS;
    if (r === this.ring.length) {
      const bytes = RING_SLOTS * this.slotBytes;
      const host = new Uint32Array(bytes / 4);
      const buffer = this.createBuffer({ size: bytes, usage: 0x40 /* UNIFORM */ | 0x8 /* COPY_DST */, label: `uniform ring ${r}` });
      this.ring.push({ buffer, host, f32: new Float32Array(host.buffer), i32: new Int32Array(host.buffer) });
    }
    const { host, f32, i32 } = this.ring[r]!, base = slot * slotWords;
    values.forEach((v, i) => {
      if (typeof v === 'number') {
        if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new GpuError(`uniform ${i}: ${v} is not a u32`);
        host[base + i] = v;
      } else if ('f32' in v) f32[base + i] = v.f32;
      else i32[base + i] = v.i32;
    });
    host.fill(0, base + values.length, base + Math.ceil(values.length / 4) * 4); // the struct's padding
    this.ringSlot++;
    return { buffer: this.ring[r]!.buffer, offset: slot * this.slotBytes };
  }

  /** Before a submit: the open batch's uniforms to the device (one write per ring buffer used). */
  private writeUniforms(): void {
    const used = this.ringSlot;
    for (let r = 0; r * RING_SLOTS < used; r++) {
      const words = Math.min(RING_SLOTS, used - r * RING_SLOTS) * (this.slotBytes / 4);
      this.device.queue.writeBuffer(this.ring[r]!.buffer, 0, this.ring[r]!.host, 0, words);
      this.counters.writeBuffers++;
    }
    this.ringSlot = 0;
  }

  private openEncoder(): GPUCommandEncoder {
    if (!this.encoder) {
      this.device.pushErrorScope('out-of-memory');
      this.device.pushErrorScope('validation');
      this.encoder = this.device.createCommandEncoder();
    }
    return this.encoder;
  }

  private openPass(): GPUComputePassEncoder {
    this.pass ??= this.openEncoder().beginComputePass();
    return this.pass;
  }

  /** While profiling: a pass of its own for the next dispatch, timestamped at both ends (profile.ts). */
  private profiledPass(profiler: GpuProfiler, label: string): GPUComputePassEncoder {
    this.pass?.end();
    const timestampWrites = profiler.next(label);
    this.pass = this.openEncoder().beginComputePass(timestampWrites ? { timestampWrites } : {});
    return this.pass;
  }

  /**
   * Time every dispatch from now on (a pass per dispatch: a slower loop than the real one), until
   * `stopProfile`. Needs the device's timestamp-query feature.
   */
  startProfile(): GpuProfiler {
    this.flush();
    this.profiler = this.profilerKept ??= new GpuProfiler(this.device);
    this.profiler.reset();
    return this.profiler;
  }

  stopProfile(): void {
    this.flush();
    this.profiler = undefined;
  }

  /** The attached profiler, while profiling. */
  get profile(): GpuProfiler | undefined {
    return this.profiler;
  }

  /** Before a batch's encoder is finished: the open pass ended, the profile's timestamps resolved. */
  private endBatch(): GPUCommandEncoder {
    this.pass?.end();
    this.pass = undefined;
    this.profiler?.beforeSubmit(this.encoder!);
    return this.encoder!;
  }

  /**
   * Append one dispatch: storage buffers bound at 0…n−1 in order, the uniforms (if any) after them.
   */
  dispatch(pipeline: GPUComputePipeline, buffers: readonly GPUBuffer[], params: readonly ParamValue[], groups: readonly [number, number?, number?]): void {
    this.checkHealthy();
    const pass = this.profiler ? this.profiledPass(this.profiler, pipeline.label) : this.openPass();
    const uniform = params.length ? this.uniform(params) : undefined;
    const bindGroup = this.bindGroup(pipeline, buffers, uniform?.buffer);
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup, uniform ? [uniform.offset] : []);
    const [x, y = 1, z = 1] = groups;
    if (x > 0 && y > 0 && z > 0) pass.dispatchWorkgroups(x, y, z);
    this.dispatchCount++;
  }

  private idOf(o: object): number {
    let id = this.ids.get(o);
    if (id === undefined) this.ids.set(o, (id = this.nextId++));
    return id;
  }

  /**
   * The bind group of `pipeline` with `buffers` at bindings 0…n−1 and, if given, a ring buffer of the
   * uniforms after them (one slot wide, its offset given at dispatch), cached by the identity of each:
   * the pool hands the same buffers back token after token and the ring persists, so the decode loop
   * finds its groups made. A destroyed buffer's groups are dropped (`destroyBuffer`).
   */
  private bindGroup(pipeline: GPUComputePipeline, buffers: readonly GPUBuffer[], uniforms?: GPUBuffer): GPUBindGroup {
    const all = uniforms ? [...buffers, uniforms] : buffers;
    const key = `${this.idOf(pipeline)}:${all.map((b) => this.idOf(b)).join(',')}`;
    let g = this.bindGroups.get(key);
    if (g) {
      this.bindGroupStats.reused++;
      return g;
    }
    const entries: GPUBindGroupEntry[] = buffers.map((buffer, binding) => ({ binding, resource: { buffer } }));
    if (uniforms) entries.push({ binding: buffers.length, resource: { buffer: uniforms, offset: 0, size: this.slotBytes } });
    g = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    this.bindGroupStats.created++;
    this.counters.bindGroupsCreated++;
    if (this.bindGroups.size >= BIND_GROUP_CACHE) {
      this.bindGroups.clear();
      this.groupsOf.clear();
    }
    this.bindGroups.set(key, g);
    for (const b of all) {
      const id = this.idOf(b);
      const keys = this.groupsOf.get(id);
      if (keys) keys.push(key);
      else this.groupsOf.set(id, [key]);
    }
    return g;
  }

  /** Workgroup counts covering `threads` invocations of `workgroupSize`, folded into y past the x limit. */
  groups1d(threads: number, workgroupSize: number): { groups: [number, number]; threadsX: number } {
    const total = Math.ceil(threads / workgroupSize);
    const maxX = this.ctx.report.limits.maxComputeWorkgroupsPerDimension ?? 65535;
    const x = Math.min(total, maxX);
    const y = Math.ceil(total / Math.max(x, 1));
    return { groups: [Math.max(x, 1), Math.max(y, 1)], threadsX: Math.max(x, 1) * workgroupSize };
  }

  /** Submit the open batch (if any). Errors from it are raised by the next `sync`/`read`. */
  flush(): void {
    if (!this.encoder) return;
    const encoder = this.endBatch();
    this.writeUniforms();
    this.device.queue.submit([encoder.finish()]);
    this.counters.submits++;
    this.pendingErrors.push(this.device.popErrorScope(), this.device.popErrorScope());
    this.encoder = undefined;
    this.pass = undefined;
    for (const b of this.afterSubmit) this.destroyBuffer(b);
    this.afterSubmit = [];
  }

  private async checkErrors(): Promise<void> {
    const pending = this.pendingErrors;
    this.pendingErrors = [];
    const errors = (await Promise.all(pending)).filter((e): e is GPUError => e !== null);
    this.checkHealthy();
    if (errors.length) throw new GpuError(`GPU error: ${errors[0]!.message.split('\n')[0]}`);
  }

  /** Submit and wait until the GPU has finished everything issued so far. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    await this.checkErrors();
  }

  /** Copy a tensor back to the host (submits the open batch first). */
  async read(t: GpuTensor): Promise<Float32Array> {
    if (t.disposed) throw new GpuError('read: tensor was disposed');
    this.checkHealthy();
    const bytes = Math.ceil(Math.max(4, t.size * 4) / 4) * 4;
    const sizeClass = this.sizeClass(bytes);
    let staging = this.staging.get(sizeClass)?.pop();
    if (staging) this.stagingStats.reused++;
    else {
      staging = this.createBuffer({ size: sizeClass, usage: 0x1 /* MAP_READ */ | 0x8 /* COPY_DST */ });
      this.stagingStats.created++;
    }
    this.openEncoder();
    const encoder = this.endBatch();
    encoder.copyBufferToBuffer(t.buffer, 0, staging, 0, bytes);
    this.writeUniforms();
    this.device.queue.submit([encoder.finish()]);
    this.counters.submits++;
    this.counters.bytesRead += bytes;
    this.pendingErrors.push(this.device.popErrorScope(), this.device.popErrorScope());
    this.encoder = undefined;
    for (const b of this.afterSubmit) this.destroyBuffer(b);
    this.afterSubmit = [];
    try {
      await staging.mapAsync(0x1 /* READ */);
    } catch (err) {
      this.destroyBuffer(staging);
      await this.checkErrors();
      throw new GpuError(`reading back a [${t.shape.join(', ')}] tensor failed: ${(err as Error).message}`);
    }
    const out = new Float32Array(t.size);
    out.set(new Float32Array(staging.getMappedRange(), 0, t.size));
    staging.unmap();
    // back to its size's ring (a few per size: reads in flight at once each take their own)
    const ring = this.staging.get(sizeClass) ?? [];
    if (ring.length < STAGING_PER_SIZE && sizeClass <= STAGING_MAX_BYTES) {
      ring.push(staging);
      this.staging.set(sizeClass, ring);
    } else {
      this.destroyBuffer(staging);
    }
    await this.checkErrors();
    return out;
  }

  /** Every device buffer goes through here, so the runtime knows the bytes it holds. */
  createBuffer(desc: GPUBufferDescriptor): GPUBuffer {
    const b = this.device.createBuffer(desc);
    this.live += b.size;
    this.counters.buffersCreated++;
    return b;
  }

  destroyBuffer(b: GPUBuffer): void {
    if (this.destroyed.has(b)) return;
    this.destroyed.add(b);
    this.live -= b.size;
    // bind groups naming it can never be used again
    const id = this.ids.get(b);
    if (id !== undefined) {
      for (const k of this.groupsOf.get(id) ?? []) this.bindGroups.delete(k);
      this.groupsOf.delete(id);
    }
    b.destroy();
  }

  /** Bytes of device memory this runtime holds: weights, caches, activations, the pool, the uniform ring. */
  liveBytes(): number {
    return this.live;
  }

  /** Bytes held in the pool (for tests). */
  pooledBytes(): number {
    let n = 0;
    for (const [size, list] of this.pool) n += size * list.length;
    return n;
  }
}
