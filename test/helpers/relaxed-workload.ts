/**
 * What the relaxed-SIMD test runs in both modules (test/wasm-kernels.test.ts in-process with the
 * default module, relaxed-child.ts with the relaxed one): float32 and float64 dense products of the
 * wasm kernels on fixed operands, and the logits and spike counts of a fixed conversion.
 */
import { convertModelToSpiking, createCalibrationData } from '../../src/convert/api.js';
import { loadModel } from '../../src/nn/model.js';
import { loadTokenizer } from '../../src/nn/tokenizer.js';
import { forwardStats } from '../../src/snn/stats.js';
import { CpuBackend } from '../../src/tensor/cpu-backend.js';
import { Tensor } from '../../src/tensor/tensor.js';
import { fixtureDir } from './fixtures.js';
import { randomArray } from './tolerance.js';

export interface Operands {
  readonly M: number;
  readonly K: number;
  readonly N: number;
  readonly x: Float32Array;
  readonly w: Float32Array;
}

/** Shapes off the 4 × 4 tile (tails in every dimension), tile and matrix–vector forms. */
export function relaxedOperands(): Operands[] {
  return [[9, 45, 19], [2, 70, 33], [1, 768, 64]].map(([M, K, N], i) => ({ M: M!, K: K!, N: N!, x: randomArray(M! * K!, 40 + i), w: randomArray(N! * K!, 50 + i) }));
}

export async function relaxedWorkload(ops: readonly Operands[]): Promise<{ f32: number[][]; f64: number[][]; ann: number[]; snn: number[]; events: number[] }> {
  const cpu = new CpuBackend({ kernels: 'wasm' });
  const f32: number[][] = [], f64: number[][] = [];
  for (const o of ops) {
    const x = new Tensor([o.M, o.K], o.x), w = cpu.upload(new Tensor([o.N, o.K], o.w), 'linear');
    f32.push(Array.from(cpu.matmul(x, w).data));
    f64.push(Array.from(cpu.spikeMatmul(x, w, undefined, undefined, 'dense').data));
  }
  const dir = fixtureDir('stories260k');
  const tok = loadTokenizer(dir);
  const ann = loadModel(dir, { backend: cpu });
  const ids = Array.from(tok.encode('The little bird was sad because it could not fly.'));
  const annLogits = Array.from((ann.forward(ids, ann.newCache()) as Tensor).data);
  const { snn } = await convertModelToSpiking(ann, createCalibrationData(tok, { numSamples: 2 }), { timesteps: 9 });
  const o = snn.forward(ids, snn.newCache(), { allLogits: true });
  const snnLogits = Array.from((await cpu.read(o.logits)).data);
  const events = (await forwardStats(snn, o)).summary().perSite.map((s) => s.events);
  return { f32, f64, ann: annLogits, snn: snnLogits, events };
}
