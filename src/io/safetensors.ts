/**
 * safetensors: reader, sharded index and writer.
 *
 * Format: u64 little-endian header length N, N bytes of UTF-8 JSON
 *   { "__metadata__"?: {string: string}, name: { dtype, shape, data_offsets: [begin, end] }, ... }
 * then the data buffer; offsets are relative to its start. Every field is validated the way the
 * reference Rust implementation does (offsets contiguous from 0 to the end of the file, no holes,
 * no overlaps, byte count = dtype size × product of the shape), and every failure is a
 * SafetensorsError naming the file and the tensor.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SpikelmError } from '../errors.js';
import { DTYPE_BYTES, type DType, fromFloat32, isDType, toFloat32 } from '../tensor/dtype.js';
import { HalfTensor, type HalfFormat, allocU16 } from '../tensor/half.js';
import { Tensor, allocF32, shapeToString } from '../tensor/tensor.js';
import { atomicWriteFile } from './atomic-write.js';
import { fileKind, openRegularFile, readJsonObject } from './files.js';

export class SafetensorsError extends SpikelmError {
  override name = 'SafetensorsError';
  constructor(readonly file: string, message: string, readonly tensor?: string) {
    super(`${file}: ${tensor !== undefined ? `tensor "${tensor}": ` : ''}${message}`);
  }
}

export interface TensorInfo {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Byte range [begin, end) relative to the start of the data buffer. */
  readonly dataOffsets: readonly [number, number];
}

/** Random-access bytes: a file on disk or a buffer in memory. */
export interface ByteSource {
  readonly size: number;
  read(offset: number, length: number): Uint8Array;
  /** Copy bytes [offset, offset + dest.length) into dest (no intermediate buffer). */
  readInto(offset: number, dest: Uint8Array): void;
  close(): void;
}

class FileSource implements ByteSource {
  readonly size: number;
  private fd: number | undefined;
  constructor(readonly file: string) {
    this.fd = openRegularFile(file, 'a safetensors file');
    this.size = fs.fstatSync(this.fd).size;
  }
  read(offset: number, length: number): Uint8Array {
    const buf = Buffer.allocUnsafe(length);
    this.readInto(offset, buf);
    return buf;
  }
  readInto(offset: number, dest: Uint8Array): void {
    if (this.fd === undefined) throw new SafetensorsError(this.file, 'file is closed');
    const length = dest.byteLength;
    let got = 0;
    while (got < length) {
      // in chunks: one readSync call is limited to 2 GiB
      const n = fs.readSync(this.fd, dest, got, Math.min(length - got, 1 << 30), offset + got);
      if (n === 0) throw new SafetensorsError(this.file, `unexpected end of file at byte ${offset + got}`);
      got += n;
    }
  }
  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

class MemorySource implements ByteSource {
  constructor(private readonly bytes: Uint8Array) {}
  get size(): number {
    return this.bytes.byteLength;
  }
  read(offset: number, length: number): Uint8Array {
    return this.bytes.subarray(offset, offset + length);
  }
  readInto(offset: number, dest: Uint8Array): void {
    dest.set(this.bytes.subarray(offset, offset + dest.byteLength));
  }
  close(): void {}
}

/** Headers larger than this are refused (the Rust reference uses the same bound). */
const MAX_HEADER_BYTES = 100_000_000;

const LITTLE_ENDIAN = os.endianness() === 'LE';
/** Bytes converted per step when a tensor is widened or transposed on load. */
const CHUNK_BYTES = 1 << 20;
let chunkBuffer: Uint8Array | undefined;
/** One reusable chunk of raw bytes (loads run one tensor at a time, synchronously). */
const chunk = (): Uint8Array => (chunkBuffer ??= new Uint8Array(CHUNK_BYTES));

export class SafetensorsFile {
  readonly metadata: Readonly<Record<string, string>> | undefined;
  private readonly infos: Map<string, TensorInfo>;
  private readonly dataStart: number;

  private constructor(readonly label: string, private readonly source: ByteSource) {
    const { metadata, infos, dataStart } = parseHeader(label, source);
    this.metadata = metadata;
    this.infos = infos;
    this.dataStart = dataStart;
  }

  static open(file: string): SafetensorsFile {
    let source: ByteSource;
    try {
      source = new FileSource(file);
    } catch (err) {
      // FileError messages already start with the path.
      throw new SafetensorsError(file, (err as Error).message.startsWith(`${file}: `) ? (err as Error).message.slice(file.length + 2) : `cannot open: ${(err as Error).message}`);
    }
    try {
      return new SafetensorsFile(file, source);
    } catch (err) {
      source.close();
      throw err;
    }
  }

  static fromBytes(bytes: Uint8Array, label = '<memory>'): SafetensorsFile {
    return new SafetensorsFile(label, new MemorySource(bytes));
  }

  get names(): string[] {
    return [...this.infos.keys()];
  }

  has(name: string): boolean {
    return this.infos.has(name);
  }

  info(name: string): TensorInfo {
    const info = this.infos.get(name);
    if (!info) throw new SafetensorsError(this.label, 'no such tensor in this file', name);
    return info;
  }

  /** The tensor's raw little-endian bytes. */
  readRaw(name: string): Uint8Array {
    const info = this.info(name);
    const [begin, end] = info.dataOffsets;
    return this.source.read(this.dataStart + begin, end - begin);
  }

  /**
   * The tensor converted to float32 (F16/BF16/F8/integers are widened), in shared memory when large
   * (the CPU backend's workers then read it in place), or into `into` (exactly its element count).
   * F32 bytes are read straight into place; other dtypes are converted in chunks of CHUNK_BYTES:
   * loading never holds a second copy of a tensor, even briefly (freed large buffers would stay in
   * the allocator's heap and count towards the process's memory).
   */
  readF32(name: string, into?: Float32Array): Tensor {
    const info = this.info(name);
    const count = info.shape.reduce((a, b) => a * b, 1);
    if (into && into.length !== count) throw new SafetensorsError(this.label, `destination holds ${into.length} values, the tensor ${count}`, name);
    const out = into ?? allocF32(count);
    const start = this.dataStart + info.dataOffsets[0];
    if (info.dtype === 'F32' && LITTLE_ENDIAN) {
      this.source.readInto(start, new Uint8Array(out.buffer, out.byteOffset, count * 4));
    } else {
      const width = DTYPE_BYTES[info.dtype], per = Math.max(1, Math.floor(CHUNK_BYTES / width));
      for (let e = 0; e < count; e += per) {
        const n = Math.min(per, count - e), bytes = chunk().subarray(0, n * width);
        this.source.readInto(start + e * width, bytes);
        toFloat32(bytes, info.dtype, n, out.subarray(e, e + n));
      }
    }
    return new Tensor(info.shape, out);
  }

  /**
   * A 2-D tensor [R, C] converted to float32 and transposed to [C, R] (GPT-2's Conv1D weights), read
   * in chunks of rows into place: no untransposed copy is ever held.
   */
  readF32Transposed(name: string, into?: Float32Array): Tensor {
    const info = this.info(name);
    if (info.shape.length !== 2) throw new SafetensorsError(this.label, `a transposed read needs a 2-D tensor, the shape is ${shapeToString(info.shape)}`, name);
    const [R, C] = info.shape as [number, number];
    if (into && into.length !== R * C) throw new SafetensorsError(this.label, `destination holds ${into.length} values, the tensor ${R * C}`, name);
    const out = into ?? allocF32(R * C);
    const width = DTYPE_BYTES[info.dtype], rowsPer = Math.max(1, Math.floor(CHUNK_BYTES / (C * 4)));
    const values = new Float32Array(rowsPer * C);
    for (let r0 = 0; r0 < R; r0 += rowsPer) {
      const rows = Math.min(rowsPer, R - r0), n = rows * C;
      const bytes = chunk().subarray(0, n * width);
      this.source.readInto(this.dataStart + info.dataOffsets[0] + r0 * C * width, bytes);
      toFloat32(bytes, info.dtype, n, values.subarray(0, n));
      for (let r = 0; r < rows; r++) for (let c = 0; c < C; c++) out[c * R + r0 + r] = values[r * C + c]!;
    }
    return new Tensor([C, R], out);
  }

  /** The 16-bit format a tensor is stored in (BF16 → 'bf16', F16 → 'f16'), or undefined for any other dtype. */
  halfFormat(name: string): HalfFormat | undefined {
    const d = this.info(name).dtype;
    return d === 'BF16' ? 'bf16' : d === 'F16' ? 'f16' : undefined;
  }

  /**
   * A BF16/F16 tensor's bits as stored (no widening), in shared memory when large, or into `into`
   * (exactly its element count).
   */
  readHalf(name: string, into?: Uint16Array): HalfTensor {
    const info = this.info(name), format = this.halfFormat(name);
    if (!format) throw new SafetensorsError(this.label, `a 16-bit read needs a BF16 or F16 tensor, the dtype is ${info.dtype}`, name);
    if (!LITTLE_ENDIAN) throw new SafetensorsError(this.label, '16-bit host weights need a little-endian machine', name);
    const count = info.shape.reduce((a, b) => a * b, 1);
    if (into && into.length !== count) throw new SafetensorsError(this.label, `destination holds ${into.length} values, the tensor ${count}`, name);
    const out = into ?? allocU16(count);
    this.source.readInto(this.dataStart + info.dataOffsets[0], new Uint8Array(out.buffer, out.byteOffset, count * 2));
    return new HalfTensor(info.shape, format, out);
  }

  /** A 2-D BF16/F16 tensor [R, C] transposed to [C, R] in its own 16 bits, read in chunks of rows. */
  readHalfTransposed(name: string, into?: Uint16Array): HalfTensor {
    const info = this.info(name), format = this.halfFormat(name);
    if (!format) throw new SafetensorsError(this.label, `a 16-bit read needs a BF16 or F16 tensor, the dtype is ${info.dtype}`, name);
    if (info.shape.length !== 2) throw new SafetensorsError(this.label, `a transposed read needs a 2-D tensor, the shape is ${shapeToString(info.shape)}`, name);
    if (!LITTLE_ENDIAN) throw new SafetensorsError(this.label, '16-bit host weights need a little-endian machine', name);
    const [R, C] = info.shape as [number, number];
    if (into && into.length !== R * C) throw new SafetensorsError(this.label, `destination holds ${into.length} values, the tensor ${R * C}`, name);
    const out = into ?? allocU16(R * C);
    const rowsPer = Math.max(1, Math.floor(CHUNK_BYTES / (C * 2)));
    const values = new Uint16Array(rowsPer * C);
    for (let r0 = 0; r0 < R; r0 += rowsPer) {
      const rows = Math.min(rowsPer, R - r0), n = rows * C;
      this.source.readInto(this.dataStart + info.dataOffsets[0] + r0 * C * 2, new Uint8Array(values.buffer, 0, n * 2));
      for (let r = 0; r < rows; r++) for (let c = 0; c < C; c++) out[c * R + r0 + r] = values[r * C + c]!;
    }
    return new HalfTensor([C, R], format, out);
  }

  close(): void {
    this.source.close();
  }
}

function parseHeader(label: string, source: ByteSource): { metadata: Record<string, string> | undefined; infos: Map<string, TensorInfo>; dataStart: number } {
  const fail = (msg: string, tensor?: string): never => {
    throw new SafetensorsError(label, msg, tensor);
  };
  if (source.size < 8) fail(`file is ${source.size} bytes, too short for the 8-byte header length`);
  const lenBytes = source.read(0, 8);
  const headerLen = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLen > BigInt(source.size - 8)) fail(`header length ${headerLen} runs beyond the end of the file (${source.size} bytes)`);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) fail(`header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const n = Number(headerLen);
  if (n < 2) fail(`header length ${n} is too small for a JSON object`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(source.read(8, n));
  } catch {
    return fail('header is not valid UTF-8');
  }
  if (!text.startsWith('{')) fail('header does not start with a JSON object');
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (err) {
    return fail(`header is not valid JSON (${(err as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) fail('header is not a JSON object');
  const dup = findDuplicateTopLevelKey(text);
  if (dup !== undefined) fail('duplicate tensor name in header', dup);

  let metadata: Record<string, string> | undefined;
  const infos: TensorInfo[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('__metadata__ must be an object of strings');
      for (const [k, v] of Object.entries(raw as object)) {
        if (typeof v !== 'string') fail(`__metadata__["${k}"] must be a string, got ${JSON.stringify(v)}`);
      }
      metadata = nullProto(raw as Record<string, string>);
      continue;
    }
    infos.push(parseTensorInfo(label, name, raw));
  }

  // Offsets must tile the data buffer exactly: sorted, contiguous from 0 to the end of the file.
  const dataLen = source.size - 8 - n;
  const sorted = [...infos].sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let expected = 0;
  for (const info of sorted) {
    const [begin, end] = info.dataOffsets;
    if (end > dataLen) fail(`data_offsets [${begin}, ${end}] run beyond the data buffer (${dataLen} bytes)`, info.name);
    if (begin < expected) fail(`data_offsets [${begin}, ${end}] overlap the previous tensor (which ends at ${expected})`, info.name);
    if (begin > expected) fail(`data_offsets [${begin}, ${end}] leave a hole after byte ${expected}`, info.name);
    expected = end;
  }
  if (expected !== dataLen) fail(`tensors cover ${expected} bytes of a ${dataLen}-byte data buffer`);
  return { metadata, infos: new Map(infos.map((i) => [i.name, i])), dataStart: 8 + n };
}

function parseTensorInfo(label: string, name: string, raw: unknown): TensorInfo {
  const fail = (msg: string): never => {
    throw new SafetensorsError(label, msg, name);
  };
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('entry must be an object with dtype, shape and data_offsets');
  const entry = raw as Record<string, unknown>;
  if (!isDType(entry.dtype)) fail(`unknown dtype ${JSON.stringify(entry.dtype)} (expected one of ${Object.keys(DTYPE_BYTES).join(', ')})`);
  const dtype = entry.dtype as DType;
  const isIndex = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (!Array.isArray(entry.shape)) fail('shape must be an array of non-negative integers');
  const shape = entry.shape as unknown[];
  for (const d of shape) {
    if (typeof d === 'number' && !Number.isFinite(d)) fail(`shape contains a non-finite number`);
    if (!isIndex(d)) fail(`shape ${JSON.stringify(shape)} must hold non-negative integers`);
  }
  const offsets = entry.data_offsets;
  if (!Array.isArray(offsets) || offsets.length !== 2) fail('data_offsets must be [begin, end]');
  const [begin, end] = offsets as unknown[];
  for (const o of [begin, end]) {
    if (typeof o === 'number' && !Number.isFinite(o)) fail('data_offsets contain a non-finite number');
    if (!isIndex(o)) fail(`data_offsets ${JSON.stringify(offsets)} must be non-negative integers`);
  }
  if ((end as number) < (begin as number)) fail(`data_offsets [${begin}, ${end}] end before they begin`);
  let count = 1;
  for (const d of shape as number[]) {
    count *= d;
    if (!Number.isSafeInteger(count)) fail(`shape ${shapeToString(shape as number[])} is too large`);
  }
  const bytes = (end as number) - (begin as number);
  if (bytes !== count * DTYPE_BYTES[dtype]) {
    fail(`data_offsets [${begin}, ${end}] hold ${bytes} bytes, but ${dtype} × ${shapeToString(shape as number[])} needs ${count * DTYPE_BYTES[dtype]}`);
  }
  return { name, dtype, shape: shape as number[], dataOffsets: [begin as number, end as number] };
}

/**
 * JSON.parse keeps the last of duplicated keys silently; the format forbids duplicates, so scan the
 * (already valid) JSON text for keys repeated in the top-level object.
 */
export function findDuplicateTopLevelKey(json: string): string | undefined {
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (c === '"') {
      let j = i + 1;
      while (json[j] !== '"') j += json[j] === '\\' ? 2 : 1;
      if (depth === 1) {
        let k = j + 1;
        while (k < json.length && ' \t\r\n'.includes(json[k]!)) k++;
        if (json[k] === ':') {
          const key = JSON.parse(json.slice(i, j + 1)) as string;
          if (seen.has(key)) return key;
          seen.add(key);
        }
      }
      i = j;
    } else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Writer

export interface TensorToWrite {
  readonly name: string;
  readonly shape: readonly number[];
  /** float32 values (stored as `dtype`, default F32) or raw little-endian bytes of `dtype`. */
  readonly data: Float32Array | Uint8Array;
  readonly dtype?: DType;
}

/** Serialize tensors into the safetensors byte layout (header padded to 8 bytes with spaces). */
export function serializeSafetensors(tensors: readonly TensorToWrite[], metadata?: Record<string, string>): Uint8Array[] {
  // Tensor names are data: a plain {} would swallow a tensor named "__proto__" (its setter) while
  // its bytes stay, leaving a file that cannot be read back. A null-prototype object has no setter.
  const header: Record<string, unknown> = Object.create(null);
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = nullProto(metadata);
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const t of tensors) {
    if (t.name === '__metadata__' || Object.hasOwn(header, t.name)) {
      throw new SafetensorsError('<writer>', 'duplicate or reserved tensor name', t.name);
    }
    const dtype = t.dtype ?? 'F32';
    const count = t.shape.reduce((a, b) => a * b, 1);
    let bytes: Uint8Array;
    if (t.data instanceof Float32Array) {
      if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16') {
        throw new SafetensorsError('<writer>', `cannot encode float32 data as ${dtype}`, t.name);
      }
      if (t.data.length !== count) throw new SafetensorsError('<writer>', `${t.data.length} values for shape ${shapeToString(t.shape)}`, t.name);
      bytes = dtype === 'F32' ? new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) : fromFloat32(t.data, dtype);
    } else {
      bytes = t.data;
      if (bytes.byteLength !== count * DTYPE_BYTES[dtype]) {
        throw new SafetensorsError('<writer>', `${bytes.byteLength} bytes for ${dtype} × ${shapeToString(t.shape)}`, t.name);
      }
    }
    header[t.name] = { dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes.byteLength] };
    blobs.push(bytes);
    offset += bytes.byteLength;
  }
  let json = JSON.stringify(header);
  const pad = (8 - (Buffer.byteLength(json) % 8)) % 8;
  json += ' '.repeat(pad);
  const jsonBytes = Buffer.from(json, 'utf8');
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(jsonBytes.byteLength), true);
  return [len, jsonBytes, ...blobs];
}

/** A copy of a string record on a null prototype (keys such as "__proto__" stay plain keys). */
function nullProto(r: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = Object.create(null);
  for (const [k, v] of Object.entries(r)) out[k] = v;
  return out;
}

/** Write a safetensors file atomically (temporary file + rename). */
export function writeSafetensors(file: string, tensors: readonly TensorToWrite[], metadata?: Record<string, string>): void {
  atomicWriteFile(file, serializeSafetensors(tensors, metadata));
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// A model's weights: one file or a sharded set behind model.safetensors.index.json

export class WeightFiles {
  private constructor(
    readonly dir: string,
    private readonly files: SafetensorsFile[],
    private readonly owner: Map<string, SafetensorsFile>,
    /** Merged `__metadata__` of every file (index.json metadata is not tensor metadata). */
    readonly metadata: Readonly<Record<string, string>>,
  ) {}

  /** Open `dir/model.safetensors`, or the shards listed in `dir/model.safetensors.index.json`. */
  static open(dir: string): WeightFiles {
    const single = path.join(dir, 'model.safetensors');
    const index = path.join(dir, 'model.safetensors.index.json');
    if (fileKind(single) !== 'missing') {
      const f = SafetensorsFile.open(single);
      return new WeightFiles(dir, [f], new Map(f.names.map((n) => [n, f])), nullProto(f.metadata ?? {}));
    }
    if (fileKind(index) === 'missing') {
      throw new SafetensorsError(dir, 'no model.safetensors or model.safetensors.index.json in this directory (only safetensors weights are supported)');
    }
    let parsed: unknown;
    try {
      parsed = readJsonObject(index, 'a JSON object');
    } catch (err) {
      throw new SafetensorsError(index, (err as Error).message.slice(index.length + 2));
    }
    const weightMap = (parsed as { weight_map?: unknown })?.weight_map;
    if (weightMap === null || typeof weightMap !== 'object' || Array.isArray(weightMap)) {
      throw new SafetensorsError(index, 'expected an object "weight_map" mapping tensor names to shard files');
    }
    const byName = new Map<string, SafetensorsFile>();
    const opened = new Map<string, SafetensorsFile>();
    try {
      for (const [name, shard] of Object.entries(weightMap as Record<string, unknown>)) {
        if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\')) {
          throw new SafetensorsError(index, `weight_map entry must be a file name in this directory, got ${JSON.stringify(shard)}`, name);
        }
        let f = opened.get(shard);
        if (!f) {
          const p = path.join(dir, shard);
          if (fileKind(p) === 'missing') throw new SafetensorsError(index, `shard ${shard} is listed but missing`, name);
          f = SafetensorsFile.open(p);
          opened.set(shard, f);
        }
        if (!f.has(name)) throw new SafetensorsError(f.label, `listed in the index but not in this shard`, name);
        byName.set(name, f);
      }
    } catch (err) {
      for (const f of opened.values()) f.close();
      throw err;
    }
    const metadata: Record<string, string> = Object.create(null);
    for (const f of opened.values()) for (const [k, v] of Object.entries(f.metadata ?? {})) metadata[k] = v;
    return new WeightFiles(dir, [...opened.values()], byName, metadata);
  }

  get names(): string[] {
    return [...this.owner.keys()];
  }

  has(name: string): boolean {
    return this.owner.has(name);
  }

  info(name: string): TensorInfo {
    const f = this.owner.get(name);
    if (!f) throw new SafetensorsError(this.dir, 'no such tensor', name);
    return f.info(name);
  }

  readF32(name: string, into?: Float32Array): Tensor {
    return this.fileOf(name).readF32(name, into);
  }

  readF32Transposed(name: string, into?: Float32Array): Tensor {
    return this.fileOf(name).readF32Transposed(name, into);
  }

  halfFormat(name: string): HalfFormat | undefined {
    return this.fileOf(name).halfFormat(name);
  }

  readHalf(name: string, into?: Uint16Array): HalfTensor {
    return this.fileOf(name).readHalf(name, into);
  }

  readHalfTransposed(name: string, into?: Uint16Array): HalfTensor {
    return this.fileOf(name).readHalfTransposed(name, into);
  }

  private fileOf(name: string): SafetensorsFile {
    const f = this.owner.get(name);
    if (!f) throw new SafetensorsError(this.dir, 'no such tensor', name);
    return f;
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}
