/**
 * GPU time per kernel, from timestamp queries (`spikelm bench --profile`).
 *
 * Core WebGPU writes timestamps only at pass boundaries, so while a profiler is attached the runtime
 * puts every dispatch in a compute pass of its own, with a timestamp at its beginning and its end
 * (gpu/runtime.ts). Dawn rounds timestamps unless its `timestamp_quantization` toggle is off, which
 * device.ts turns off. A profiled loop is therefore slower than the real one (a pass per dispatch
 * instead of one per forward): its kernel times are what the kernels take, its wall time is not the
 * real loop's — the profile reports both beside the unprofiled wall time.
 *
 * Each submit resolves its timestamps into a buffer copied to a mappable one; `collect` maps those
 * and adds each dispatch's end − begin to its kernel kind (the pipeline's label up to the first
 * '/': matmul, attention, norm, qkv, …).
 */
import { GpuError } from './device.js';

/** Timestamp pairs per submit: dispatches beyond this many in one submit are counted, not timed. */
const PAIRS = 2048;

export interface KernelTime {
  /** Summed GPU time, milliseconds. */
  ms: number;
  dispatches: number;
}

export class GpuProfiler {
  readonly querySet: GPUQuerySet;
  private readonly resolve: GPUBuffer;
  private labels: string[] = [];
  private pending: { buffer: GPUBuffer; labels: string[] }[] = [];
  /** Kernel kind → time so far. */
  readonly totals = new Map<string, KernelTime>();
  /** Dispatches that found every pair of the submit taken. */
  untimed = 0;

  constructor(private readonly device: GPUDevice) {
    if (!device.features.has('timestamp-query')) throw new GpuError('GPU profile: the device has no timestamp-query feature');
    this.querySet = device.createQuerySet({ type: 'timestamp', count: 2 * PAIRS });
    this.resolve = device.createBuffer({ size: 2 * PAIRS * 8, usage: 0x200 /* QUERY_RESOLVE */ | 0x4 /* COPY_SRC */ });
  }

  /** The timestamp writes of the next dispatch's pass (kernel `label`), or undefined when the submit's pairs are used up. */
  next(label: string): GPUComputePassTimestampWrites | undefined {
    if (this.labels.length >= PAIRS) {
      this.untimed++;
      return undefined;
    }
    const i = this.labels.length;
    this.labels.push(label);
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** Before the encoder is finished: resolve this submit's timestamps into a mappable copy. */
  beforeSubmit(encoder: GPUCommandEncoder): void {
    const n = this.labels.length;
    if (n === 0) return;
    const copy = this.device.createBuffer({ size: 2 * n * 8, usage: 0x1 /* MAP_READ */ | 0x8 /* COPY_DST */ });
    encoder.resolveQuerySet(this.querySet, 0, 2 * n, this.resolve, 0);
    encoder.copyBufferToBuffer(this.resolve, 0, copy, 0, 2 * n * 8);
    this.pending.push({ buffer: copy, labels: this.labels });
    this.labels = [];
  }

  /** Wait for the submitted timestamps and add them to `totals` (call after the work was submitted). */
  async collect(): Promise<void> {
    const pending = this.pending;
    this.pending = [];
    for (const { buffer, labels } of pending) {
      await buffer.mapAsync(0x1 /* READ */);
      const t = new BigUint64Array(buffer.getMappedRange().slice(0));
      buffer.unmap();
      buffer.destroy();
      labels.forEach((label, i) => {
        const kind = label.split('/')[0]!;
        const ns = t[2 * i + 1]! > t[2 * i]! ? Number(t[2 * i + 1]! - t[2 * i]!) : 0;
        const k = this.totals.get(kind) ?? { ms: 0, dispatches: 0 };
        k.ms += ns / 1e6;
        k.dispatches++;
        this.totals.set(kind, k);
      });
    }
  }

  /** Forget the totals (keep the query set). */
  reset(): void {
    this.totals.clear();
    this.untimed = 0;
  }

  destroy(): void {
    for (const { buffer } of this.pending) buffer.destroy();
    this.pending = [];
    this.querySet.destroy();
    this.resolve.destroy();
  }
}
