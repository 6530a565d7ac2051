import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  SafetensorsError, SafetensorsFile, WeightFiles, concatBytes, findDuplicateTopLevelKey, serializeSafetensors, writeSafetensors,
} from '../src/io/safetensors.js';
import { f16BitsToNumber, numberToBf16Bits, numberToF16Bits, toFloat32 } from '../src/tensor/dtype.js';
import { fixtureDir } from './helpers/fixtures.js';

function fileFromHeader(header: unknown, dataBytes: number, rawHeader?: string): Uint8Array {
  const json = Buffer.from(rawHeader ?? JSON.stringify(header), 'utf8');
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  return concatBytes([len, json, new Uint8Array(dataBytes)]);
}

const expectSafetensorsError = (fn: () => unknown, pattern: RegExp) => {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(SafetensorsError);
  expect((caught as Error).message).toMatch(pattern);
};

/** Keys that a plain JS object treats specially. */
const OBJECT_KEYS = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf'] as const;

describe('safetensors reader', () => {
  it('reads the fixtures: names, dtypes, shapes and metadata', () => {
    const f = SafetensorsFile.open(path.join(fixtureDir('gpt2-random-f16'), 'model.safetensors'));
    expect(f.info('transformer.wte.weight')).toMatchObject({ dtype: 'F16', shape: [50257, 32] });
    expect(f.metadata).toEqual({ format: 'pt' });
    const t = f.readF32('transformer.h.0.ln_1.weight');
    expect(t.shape).toEqual([32]);
    expect(t.data.every(Number.isFinite)).toBe(true);
    f.close();
  });

  it('names are data: tensors and metadata keys named __proto__, constructor, toString round-trip', () => {
    const tensors = OBJECT_KEYS.map((name, i) => ({ name, shape: [2], data: Float32Array.of(i, -i) }));
    const meta: Record<string, string> = Object.create(null);
    for (const k of OBJECT_KEYS) meta[k] = `m-${k}`;
    const f = SafetensorsFile.fromBytes(concatBytes(serializeSafetensors(tensors, meta)));
    expect(f.names.sort()).toEqual([...OBJECT_KEYS].sort());
    for (const t of tensors) expect(Array.from(f.readF32(t.name).data)).toEqual(Array.from(t.data));
    for (const k of OBJECT_KEYS) expect(Object.hasOwn(f.metadata!, k) && f.metadata![k]).toBe(`m-${k}`);
    // A duplicate of such a name is still refused by the writer.
    expect(() => serializeSafetensors([tensors[0]!, tensors[0]!])).toThrow(/duplicate or reserved tensor name/);
  });

  it('round-trips random tensors of every float dtype (write → read)', () => {
    const dtypeArb = fc.constantFrom('F32' as const, 'F16' as const, 'BF16' as const);
    const tensorArb = fc.record({
      shape: fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 0, maxLength: 3 }),
      dtype: dtypeArb,
      seed: fc.integer(),
    });
    fc.assert(
      fc.property(fc.uniqueArray(fc.oneof(fc.string({ minLength: 1, maxLength: 12 }), fc.constantFrom(...OBJECT_KEYS)).filter((s) => s !== '__metadata__'), { minLength: 1, maxLength: 5 }), fc.array(tensorArb, { minLength: 5, maxLength: 5 }), fc.dictionary(fc.string(), fc.string(), { maxKeys: 3 }), (names, specs, metadata) => {
        const tensors = names.map((name, i) => {
          const { shape, dtype, seed } = specs[i]!;
          const n = shape.reduce((a, b) => a * b, 1);
          const data = Float32Array.from({ length: n }, (_, j) => Math.fround(Math.sin(seed + j) * 100));
          return { name, shape, dtype, data };
        });
        const meta = Object.keys(metadata).length ? metadata : undefined;
        const f = SafetensorsFile.fromBytes(concatBytes(serializeSafetensors(tensors, meta)));
        expect(f.metadata).toEqual(meta);
        for (const t of tensors) {
          const back = f.readF32(t.name);
          expect(back.shape).toEqual(t.shape);
          // F16/BF16 store a rounded value: reading back gives exactly that rounding.
          const expected = t.data.map((v) => (t.dtype === 'F32' ? v : t.dtype === 'F16' ? f16BitsToNumber(numberToF16Bits(v)) : toFloat32(new Uint8Array(new Uint16Array([numberToBf16Bits(v)]).buffer), 'BF16', 1)[0]!));
          expect(Array.from(back.data)).toEqual(Array.from(expected));
        }
      }),
      { numRuns: 60 },
    );
  });

  it('reads tensors larger than its conversion chunk (1 MiB): whole, into a given array, and transposed, from a file and from memory', () => {
    const R = 700, C = 531; // 1.4 MiB as F32: several chunks, rows not aligned to them
    /** The first index where two long arrays differ (-1: none), so a failure prints one line, not a 370k-element diff. */
    const firstDiff = (a: Float32Array, b: Float32Array) => (a.length !== b.length ? -2 : a.findIndex((v, i) => !Object.is(v, b[i])));
    const data = Float32Array.from({ length: R * C }, (_, i) => Math.fround(Math.sin(i * 0.37) * 3));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-st-'));
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      const file = path.join(dir, `${dtype}.safetensors`);
      writeSafetensors(file, [{ name: 'pad', shape: [3], data: new Float32Array(3), dtype }, { name: 'w', shape: [R, C], data, dtype }]);
      const stored = SafetensorsFile.fromBytes(fs.readFileSync(file)).readF32('w').data; // the stored (rounded) values
      expect(stored.length).toBe(R * C);
      const expectedT = new Float32Array(R * C);
      for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) expectedT[c * R + r] = stored[r * C + c]!;
      for (const f of [SafetensorsFile.open(file), SafetensorsFile.fromBytes(fs.readFileSync(file))]) {
        expect(firstDiff(f.readF32('w').data, stored), dtype).toBe(-1);
        const into = new Float32Array(R * C + 10).subarray(5, 5 + R * C);
        f.readF32('w', into);
        expect(firstDiff(into, stored), `${dtype} into`).toBe(-1);
        const t = f.readF32Transposed('w');
        expect(t.shape).toEqual([C, R]);
        expect(firstDiff(t.data, expectedT), `${dtype} transposed`).toBe(-1);
        expectSafetensorsError(() => f.readF32('w', new Float32Array(7)), /destination holds 7 values/);
        expectSafetensorsError(() => f.readF32Transposed('pad'), /needs a 2-D tensor/);
        f.close();
      }
      if (dtype === 'F32') expect(firstDiff(stored, data)).toBe(-1);
    }
  });

  it('random corruption of a valid file never crashes or hangs: it reads or throws SafetensorsError', () => {
    const valid = concatBytes(serializeSafetensors([
      { name: 'a', shape: [2, 3], data: new Float32Array(6).fill(1.5) },
      { name: 'b', shape: [4], dtype: 'F16', data: new Float32Array([1, 2, 3, 4]) },
    ], { format: 'pt' }));
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), fc.option(fc.nat()), (edits, cut) => {
        let bytes = valid.slice();
        for (const [pos, value] of edits) bytes[pos % bytes.length] = value;
        if (cut !== null) bytes = bytes.slice(0, cut % (bytes.length + 1));
        try {
          const f = SafetensorsFile.fromBytes(bytes, 'corrupt.safetensors');
          for (const n of f.names) f.readF32(n);
        } catch (err) {
          if (!(err instanceof SafetensorsError)) throw err;
          expect((err as Error).message).toContain('corrupt.safetensors');
        }
      }),
      { numRuns: 2000 },
    );
  });

  const one = (extra: Record<string, unknown> = {}) => ({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, ...extra });

  it.each([
    ['header length beyond the file', () => { const b = fileFromHeader(one(), 8); new DataView(b.buffer).setBigUint64(0, 1n << 40n, true); return b; }, /header length .* beyond the end/],
    ['file shorter than 8 bytes', () => new Uint8Array(5), /too short/],
    ['invalid JSON', () => fileFromHeader(null, 0, '{"t": [1, 2'), /not valid JSON/],
    ['a header that is not an object', () => fileFromHeader(null, 0, '[1,2,3]'), /does not start with a JSON object/],
    ['unknown dtype', () => fileFromHeader({ t: { dtype: 'Q4', shape: [2], data_offsets: [0, 8] } }, 8), /tensor "t": unknown dtype "Q4"/],
    ['offsets out of range', () => fileFromHeader({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, 4), /tensor "t": data_offsets \[0, 8\] run beyond/],
    ['overlapping offsets', () => fileFromHeader({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12), /tensor "b": .*overlap/],
    ['a hole between tensors', () => fileFromHeader({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, 12), /tensor "b": .*hole/],
    ['bytes ≠ dtype size × shape', () => fileFromHeader({ t: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8), /tensor "t": .*hold 8 bytes, but F32 × \[3\] needs 12/],
    ['duplicate names', () => fileFromHeader(null, 8, '{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'), /tensor "t": duplicate/],
    ['non-finite numbers', () => fileFromHeader(null, 8, '{"t":{"dtype":"F32","shape":[1e999],"data_offsets":[0,8]}}'), /tensor "t": shape contains a non-finite/],
    ['negative shape', () => fileFromHeader({ t: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, 8), /tensor "t": shape .* non-negative/],
    ['fractional offsets', () => fileFromHeader({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 8.5] } }, 8), /tensor "t": data_offsets .* non-negative integers/],
    ['non-string metadata', () => fileFromHeader(one({ __metadata__: { a: 1 } }), 8), /__metadata__\["a"\] must be a string/],
    ['trailing bytes not covered by any tensor', () => fileFromHeader(one(), 12), /cover 8 bytes of a 12-byte/],
  ])('rejects %s with a SafetensorsError naming the file and tensor', (_what, make, pattern) => {
    expectSafetensorsError(() => SafetensorsFile.fromBytes(make(), 'bad.safetensors'), pattern);
    expectSafetensorsError(() => SafetensorsFile.fromBytes(make(), 'bad.safetensors'), /^bad\.safetensors: /);
  });

  it('finds duplicate top-level keys but not nested repeats', () => {
    expect(findDuplicateTopLevelKey('{"a":{"x":1},"b":{"x":2}}')).toBeUndefined();
    expect(findDuplicateTopLevelKey('{"a":1,"b":"a:","a":2}')).toBe('a');
    expect(findDuplicateTopLevelKey('{"a\\"q":1,"a\\"q":2}')).toBe('a"q');
  });

  it('decodes integer and F64 dtypes', () => {
    const i64 = new BigInt64Array([-3n, 7n]);
    const f = SafetensorsFile.fromBytes(concatBytes(serializeSafetensors([
      { name: 'i64', shape: [2], dtype: 'I64', data: new Uint8Array(i64.buffer) },
      { name: 'u8', shape: [3], dtype: 'U8', data: new Uint8Array([0, 128, 255]) },
      { name: 'f64', shape: [1], dtype: 'F64', data: new Uint8Array(new Float64Array([0.25]).buffer) },
    ])));
    expect(Array.from(f.readF32('i64').data)).toEqual([-3, 7]);
    expect(Array.from(f.readF32('u8').data)).toEqual([0, 128, 255]);
    expect(Array.from(f.readF32('f64').data)).toEqual([0.25]);
  });
});

describe('float16 / bfloat16 conversion', () => {
  it('every F16 bit pattern survives number → F16 unchanged (NaNs stay NaN)', () => {
    for (let h = 0; h < 65536; h++) {
      const v = f16BitsToNumber(h);
      if (Number.isNaN(v)) expect(Number.isNaN(f16BitsToNumber(numberToF16Bits(v)))).toBe(true);
      else expect(numberToF16Bits(v)).toBe(h);
    }
  });

  it('rounds to nearest even and widens bf16 exactly', () => {
    expect(f16BitsToNumber(numberToF16Bits(1 + 2 ** -11))).toBe(1); // tie → even
    expect(f16BitsToNumber(numberToF16Bits(1 + 3 * 2 ** -11))).toBe(1 + 2 ** -9);
    expect(f16BitsToNumber(numberToF16Bits(70000))).toBe(Infinity);
    const bf = toFloat32(new Uint8Array(new Uint16Array([0x3f80, 0xc040, 0x0001]).buffer), 'BF16', 3);
    expect(Array.from(bf.subarray(0, 2))).toEqual([1, -3]);
    expect(bf[2]).toBeGreaterThan(0);
  });
});

describe('writer and sharded weights', () => {
  it('writes atomically (no temporary file left) and reads back through WeightFiles', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-st-'));
    writeSafetensors(path.join(dir, 'model.safetensors'), [{ name: 'w', shape: [2], data: new Float32Array([1, 2]) }], { k: 'v' });
    expect(fs.readdirSync(dir)).toEqual(['model.safetensors']);
    const w = WeightFiles.open(dir);
    expect(Array.from(w.readF32('w').data)).toEqual([1, 2]);
    expect(w.metadata).toEqual({ k: 'v' });
    w.close();
  });

  it('opens sharded models through model.safetensors.index.json and names a missing shard', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-shard-'));
    writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), [{ name: 'a', shape: [1], data: new Float32Array([1]) }]);
    writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), [{ name: 'b', shape: [1], data: new Float32Array([2]) }]);
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } }));
    const w = WeightFiles.open(dir);
    expect(w.names.sort()).toEqual(['a', 'b']);
    expect(w.readF32('b').data[0]).toBe(2);
    w.close();
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors', c: 'missing.safetensors' } }));
    expectSafetensorsError(() => WeightFiles.open(dir), /tensor "c": shard missing\.safetensors is listed but missing/);
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { z: 'model-00001-of-00002.safetensors' } }));
    expectSafetensorsError(() => WeightFiles.open(dir), /tensor "z": listed in the index but not in this shard/);
  });

  it('a directory without weights is a clear error', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-empty-'));
    expectSafetensorsError(() => WeightFiles.open(dir), /no model\.safetensors or model\.safetensors\.index\.json/);
  });
});
