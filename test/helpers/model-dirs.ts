/** Build model directories the loader has never seen by rewriting a fixture's tensors and config. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SafetensorsFile, type TensorToWrite, writeSafetensors } from '../../src/io/safetensors.js';

export interface RewriteOptions {
  /** New name for each tensor (undefined drops it). */
  readonly rename?: (name: string) => string | undefined;
  readonly dtype?: 'F32' | 'F16' | 'BF16';
  readonly metadata?: Record<string, string>;
  readonly config?: (cfg: Record<string, unknown>) => Record<string, unknown>;
  /** Split the tensors over this many shards with an index.json. */
  readonly shards?: number;
  /** Extra tensors to add. */
  readonly extra?: readonly TensorToWrite[];
  /** Change a tensor's data/shape. */
  readonly transform?: (name: string, shape: readonly number[], data: Float32Array) => { shape: readonly number[]; data: Float32Array };
}

export function rewriteModelDir(src: string, opts: RewriteOptions = {}): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-model-'));
  for (const f of fs.readdirSync(src)) {
    if (f !== 'model.safetensors' && f !== 'config.json' && f !== 'golden.json') fs.copyFileSync(path.join(src, f), path.join(dir, f));
  }
  const cfg = JSON.parse(fs.readFileSync(path.join(src, 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(opts.config ? opts.config(cfg) : cfg, null, 2));
  const file = SafetensorsFile.open(path.join(src, 'model.safetensors'));
  const tensors: TensorToWrite[] = [];
  for (const name of file.names) {
    const newName = opts.rename ? opts.rename(name) : name;
    if (newName === undefined) continue;
    const t = file.readF32(name);
    const { shape, data } = opts.transform ? opts.transform(name, t.shape, t.data) : { shape: t.shape, data: t.data };
    tensors.push({ name: newName, shape, data, dtype: opts.dtype ?? 'F32' });
  }
  file.close();
  tensors.push(...(opts.extra ?? []));
  const shards = opts.shards ?? 1;
  if (shards === 1) {
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors, opts.metadata);
  } else {
    const weightMap: Record<string, string> = {};
    for (let s = 0; s < shards; s++) {
      const name = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
      const part = tensors.filter((_, i) => i % shards === s);
      for (const t of part) weightMap[t.name] = name;
      writeSafetensors(path.join(dir, name), part, opts.metadata);
    }
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
  }
  return dir;
}
