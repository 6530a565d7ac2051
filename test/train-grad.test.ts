/**
 * Gradient checks of fine-tuning's backward pass (src/train): every operator's backward against
 * central finite differences of its forward, with the spike's Heaviside replaced by the surrogate's
 * smooth function (fire mode 'smooth', whose exact gradient the backward computes), property-tested
 * on random shapes and values; then the whole network's gradient (thresholds, norm gains, LoRA)
 * against finite differences of the loss on 2-layer toy models, Llama and GPT-2.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/nn/config.js';
import type { LMWeights } from '../src/nn/weights.js';
import { seededRandom } from '../src/nn/sampling.js';
import { SpikingLM } from '../src/snn/model.js';
import { encoderSites } from '../src/snn/sites.js';
import { SURROGATE_NAMES, surrogate } from '../src/snn/surrogate.js';
import { CpuBackend } from '../src/tensor/cpu-backend.js';
import { type CodeParams, STATS_WIDTH, encodeCpu } from '../src/tensor/kernels/codes.js';
import { Tensor } from '../src/tensor/tensor.js';
import { TrainNet, type TrainParams, zeroGrads } from '../src/train/network.js';
import {
  activationBackward, activationForward, klLoss, linearBackward, linearForward, normBackward, normForward, ropeInPlace,
} from '../src/train/ops.js';
import { type NeuronCode, extraPlanesOf, neuronBackward, neuronForward } from '../src/train/quantizer.js';

/** Central differences: float64 forward, step h; agreement |a − fd| ≤ 1e-6 + 1e-4·|fd|. */
const H = 1e-6;
const close = (analytic: number, fd: number, what: string) => {
  if (!(Math.abs(analytic - fd) <= 1e-6 + 1e-4 * Math.abs(fd))) throw new Error(`${what}: backward ${analytic}, finite differences ${fd}`);
};
const random = (n: number, seed: number, scale = 1) => {
  const r = seededRandom(seed);
  return Float64Array.from({ length: n }, () => (r() * 2 - 1) * scale);
};
const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, v, i) => s + v * b[i]!, 0);

/** grad[i] against central differences of loss() in arr[i], for the given indices (default all). */
function checkGradient(arr: Float64Array, grad: Float64Array, loss: () => number, what: string, indices: Iterable<number> = arr.keys(), skip?: (i: number) => boolean): void {
  for (const i of indices) {
    if (skip?.(i)) continue;
    const keep = arr[i]!;
    arr[i] = keep + H;
    const up = loss();
    arr[i] = keep - H;
    const down = loss();
    arr[i] = keep;
    close(grad[i]!, (up - down) / (2 * H), `${what}[${i}]`);
  }
}

describe('the neuron of each code: surrogate BPTT', () => {
  const codeArb = fc.oneof(
    fc.record({ kind: fc.constant('rate' as const), T: fc.integer({ min: 1, max: 12 }), maxSpikes: fc.constantFrom(1, 3, Infinity) }),
    fc.record({ kind: fc.constantFrom('binary' as const, 'ternary' as const), T: fc.integer({ min: 1, max: 12 }) }),
  );
  const surrogateArb = fc.record({ name: fc.constantFrom(...SURROGATE_NAMES), alpha: fc.double({ min: 0.5, max: 4, noNaN: true }) });

  it('smooth fire: dL/da of value and events equals finite differences', () => {
    fc.assert(fc.property(codeArb, surrogateArb, fc.double({ min: -3, max: 3, noNaN: true }), fc.boolean(), fc.double({ min: -2, max: 2, noNaN: true }), fc.double({ min: -1, max: 1, noNaN: true }),
      (code, s, a, halfStart, gValue, gEvents) => {
        const n: NeuronCode = { code, halfStart, surrogate: surrogate(s.name, s.alpha), mode: 'smooth' };
        const extra = extraPlanesOf(Math.abs(a) + 0.01, code);
        const f = (x: number) => {
          const o = { value: 0, events: 0 };
          neuronForward(x, extra, n, o);
          return gValue * o.value + gEvents * o.events;
        };
        // stbif_plus is piecewise linear: skip points within h of its kinks (its derivative jumps there)
        const fd = (f(a + H) - f(a - H)) / (2 * H);
        // binary is sign–magnitude: |a| has a kink at 0
        const kinkNear = (s.name === 'stbif_plus' && Math.abs(f(a + H) - 2 * f(a) + f(a - H)) > 1e-9) || (code.kind === 'binary' && Math.abs(a) < 1e-3);
        if (!kinkNear) close(neuronBackward(a, extra, n, gValue, gEvents), fd, `${code.kind} T=${code.T} B=${'maxSpikes' in code ? code.maxSpikes : '-'} ${s.name} a=${a}`);
      }), { numRuns: 400, seed: 11 });
  });

  it('hard fire: values and events equal the kernels (kernels/codes.ts encodeCpu)', () => {
    fc.assert(fc.property(codeArb, fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 9 }), fc.integer(), (code, R, C, seed) => {
      const x = Float32Array.from(random(R * C, seed, 3));
      const theta = Float32Array.from(random(C, seed + 1), (v) => 0.3 + Math.abs(v));
      const inv = theta.map((t) => 1 / t);
      const out = { sums: new Float32Array(R * C), rowStats: new Float32Array(R * STATS_WIDTH) };
      encodeCpu(x, R, C, theta, inv, code as CodeParams, out);
      const unit = code.kind === 'rate' ? 1 / code.T : 2 ** (1 - code.T);
      const n: NeuronCode = { code, halfStart: true, surrogate: surrogate('atan'), mode: 'hard' };
      for (let r = 0; r < R; r++) {
        const charges = Array.from({ length: C }, (_, c) => Math.fround(x[r * C + c]! * inv[c]!));
        const extra = extraPlanesOf(Math.max(...charges.map(Math.abs)), code);
        let events = 0;
        charges.forEach((a, c) => {
          const o = { value: 0, events: 0 };
          neuronForward(a, extra, n, o);
          expect(Math.abs(o.value - out.sums[r * C + c]! * unit)).toBeLessThan(1e-12);
          events += o.events;
        });
        expect(events).toBe(out.rowStats[r * STATS_WIDTH]);
      }
    }), { numRuns: 150, seed: 12 });
  });
});

describe('operators: backward equals finite differences (random shapes)', () => {
  const shape = fc.record({ R: fc.integer({ min: 1, max: 4 }), N: fc.integer({ min: 1, max: 6 }), K: fc.integer({ min: 1, max: 6 }), rank: fc.integer({ min: 1, max: 3 }), seed: fc.integer() });

  it('linear with LoRA: dx, dA, dB', () => {
    fc.assert(fc.property(shape, ({ R, N, K, rank, seed }) => {
      const x = random(R * K, seed), dy = random(R * N, seed + 1);
      const dense = { weight: Float32Array.from(random(N * K, seed + 2)), bias: Float32Array.from(random(N, seed + 3)), N, K };
      const lora = { rank, scale: 1, a: random(rank * K, seed + 4), b: random(N * rank, seed + 5) };
      const L = () => dot(linearForward(x, R, dense, lora).y, dy);
      const grad = { a: new Float64Array(rank * K), b: new Float64Array(N * rank) };
      const dx = linearBackward(dy, x, R, dense, lora, linearForward(x, R, dense, lora).xa, grad);
      for (const [arr, g, name] of [[x, dx, 'x'], [lora.a, grad.a, 'A'], [lora.b, grad.b, 'B']] as const) checkGradient(arr, g, L, `d${name}`);
    }), { numRuns: 40, seed: 21 });
  });

  it('RMSNorm and LayerNorm: dx and dγ', () => {
    fc.assert(fc.property(shape, fc.constantFrom('rms' as const, 'layer' as const), ({ R, K, seed }, kind) => {
      const C = K + 1, x = random(R * C, seed, 2), dy = random(R * C, seed + 1), gamma = random(C, seed + 2), beta = Float32Array.from(random(C, seed + 3));
      const L = () => dot(normForward(kind, x, R, C, gamma, kind === 'layer' ? beta : undefined, 1e-5).y, dy);
      const { rho } = normForward(kind, x, R, C, gamma, undefined, 1e-5);
      const dGamma = new Float64Array(C);
      const dx = normBackward(kind, dy, x, rho, R, C, gamma, dGamma);
      for (const [arr, g, name] of [[x, dx, 'x'], [gamma, dGamma, 'γ']] as const) checkGradient(arr, g, L, `${kind} d${name}`);
    }), { numRuns: 40, seed: 22 });
  });

  it('activations, plain and gated', () => {
    const kinds = ['gelu_tanh', 'gelu_erf', 'gelu_quick', 'silu', 'relu'] as const;
    fc.assert(fc.property(shape, fc.constantFrom(...kinds), fc.boolean(), ({ R, K, seed }, kind, gated) => {
      const I = K, x = random(R * I * (gated ? 2 : 1), seed, 3), dy = random(R * I, seed + 1);
      const L = () => dot(activationForward(kind, x, R, I, gated), dy);
      const dx = activationBackward(kind, dy, x, R, I, gated);
      // ReLU: skip its kink
      checkGradient(x, dx, L, `${kind}${gated ? ' gated' : ''} dx`, x.keys(), (i) => kind === 'relu' && Math.abs(x[i]!) < 1e-3);
    }), { numRuns: 60, seed: 23 });
  });

  it('RoPE: the inverse rotation is the backward (and undoes the forward)', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 4 }), fc.integer(), (S, heads, half, seed) => {
      const d = 2 * half, W = heads * d + 3, invFreq = Float64Array.from({ length: half }, (_, i) => 1 / 10000 ** ((2 * i) / d));
      const x = random(S * W, seed), dy = random(S * W, seed + 1);
      const y = Float64Array.from(x);
      ropeInPlace(y, S, W, 1, heads, d, invFreq, false);
      const dx = Float64Array.from(dy);
      ropeInPlace(dx, S, W, 1, heads, d, invFreq, true);
      // ⟨R·x, dy⟩ = ⟨x, Rᵀ·dy⟩ for any x: the transpose, checked by finite differences on a few coordinates
      for (let i = 0; i < Math.min(x.length, 8); i++) {
        const f = (v: number) => {
          const z = Float64Array.from(x);
          z[i] = v;
          ropeInPlace(z, S, W, 1, heads, d, invFreq, false);
          return dot(z, dy);
        };
        close(dx[i]!, (f(x[i]! + H) - f(x[i]! - H)) / (2 * H), `rope dx[${i}]`);
      }
      ropeInPlace(y, S, W, 1, heads, d, invFreq, true);
      y.forEach((v, i) => expect(Math.abs(v - x[i]!)).toBeLessThan(1e-12));
    }), { numRuns: 40, seed: 24 });
  });

  it('KL(p ‖ softmax(z)): gradient softmax(z) − p', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 2, max: 7 }), fc.integer(), (R, V, seed) => {
      const t = random(R * V, seed, 3), z = random(R * V, seed + 1, 3);
      const { grad, loss } = klLoss(t, z, R, V);
      expect(loss).toBeGreaterThanOrEqual(0);
      checkGradient(z, grad, () => klLoss(t, z, R, V).loss, 'dz');
      expect(klLoss(t, t, R, V).loss).toBeCloseTo(0, 12);
    }), { numRuns: 40, seed: 25 });
  });
});

type ToyFamily = 'llama' | 'gpt2' | 'qwen3' | 'mistral' | 'opt-post';

/**
 * A random 2-layer model of the family, in memory (config via the real parser): qwen3 with q/k norms
 * and head_dim 6 ≠ D/H, mistral with a window of 3 keys, OPT post-LN with project_in/out (E = 6).
 */
function toyModel(family: ToyFamily, seed: number): { config: ReturnType<typeof parseConfig>; weights: LMWeights } {
  const D = 8, I = 12, V = 11, L = 2, E = family === 'opt-post' ? 6 : D;
  const llamaLike = { vocab_size: V, hidden_size: D, num_hidden_layers: L, num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: I, max_position_embeddings: 16, rms_norm_eps: 1e-5, hidden_act: 'silu', tie_word_embeddings: false };
  const config = parseConfig(
    family === 'llama' ? { model_type: 'llama', ...llamaLike }
      : family === 'qwen3' ? { model_type: 'qwen3', ...llamaLike, head_dim: 6 }
        : family === 'mistral' ? { model_type: 'mistral', ...llamaLike, sliding_window: 3 }
          : family === 'opt-post' ? { model_type: 'opt', vocab_size: V, hidden_size: D, num_hidden_layers: L, num_attention_heads: 2, ffn_dim: I, max_position_embeddings: 16, word_embed_proj_dim: E, do_layer_norm_before: false, tie_word_embeddings: false }
            : { model_type: 'gpt2', vocab_size: V, n_embd: D, n_layer: L, n_head: 2, n_positions: 16, n_inner: I, layer_norm_epsilon: 1e-5, activation_function: 'gelu_new' });
  const r = seededRandom(seed);
  const t = (shape: number[], scale = 0.5, offset = 0) => new Tensor(shape, Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => offset + (r() * 2 - 1) * scale));
  const lin = (n: number, k: number, bias: boolean) => ({ weight: t([n, k], 1 / Math.sqrt(k)), ...(bias ? { bias: t([n], 0.1) } : {}) });
  const layer = config.norm === 'layer';
  const norm = (n = D) => ({ weight: t([n], 0.2, 1), ...(layer ? { bias: t([n], 0.1) } : {}) });
  const hd = config.headDim, kv = config.numKvHeads, bias = layer;
  const blocks = Array.from({ length: L }, () => ({
    attnNorm: norm(), q: lin(2 * hd, D, bias), k: lin(kv * hd, D, bias), v: lin(kv * hd, D, bias),
    ...(config.qkNorm ? { qNorm: { weight: t([hd], 0.2, 1) }, kNorm: { weight: t([hd], 0.2, 1) } } : {}),
    o: lin(D, 2 * hd, bias), mlpNorm: norm(),
    ...(config.gatedMlp ? { gate: lin(I, D, false) } : {}), up: lin(I, D, bias), down: lin(D, I, bias),
  }));
  return {
    config,
    weights: {
      embed: t([V, E], 1), ...(config.rotary ? {} : { positions: t([16 + config.positionOffset, D], 0.3) }),
      ...(E !== D ? { projectIn: lin(D, E, false), projectOut: lin(E, D, false) } : {}),
      blocks, ...(config.finalNorm ? { finalNorm: norm() } : {}), lmHead: t([V, E], 1),
    },
  };
}

describe('the whole network: gradients of the loss against finite differences (2-layer toy models, smooth fire)', () => {
  const cases = [
    { family: 'llama', schedule: 'layerwise', coding: 'phase-ternary', T: 4 },
    { family: 'llama', schedule: 'layerwise', coding: 'phase', T: 3 },
    { family: 'gpt2', schedule: 'layerwise', coding: 'rate-single', T: 3 },
    { family: 'gpt2', schedule: 'stepwise', coding: 'rate', T: 3 },
    { family: 'qwen3', schedule: 'layerwise', coding: 'phase-ternary', T: 4 },
    { family: 'mistral', schedule: 'layerwise', coding: 'phase', T: 3 },
    { family: 'opt-post', schedule: 'layerwise', coding: 'phase-ternary', T: 4 },
    { family: 'qwen3', schedule: 'stepwise', coding: 'rate', T: 3 },
  ] as const;
  for (const c of cases) {
    it(`${c.family} ${c.schedule} ${c.coding} T=${c.T}: log θ of every site, norm gains, LoRA`, () => {
      const { config, weights } = toyModel(c.family, 7);
      const sites = encoderSites(config, c.schedule);
      const r = seededRandom(3);
      // thresholds about twice the values' scale keep every charge inside the range (no extra planes to cross)
      const scaleOf = (kind: string) => (kind === 'p_in' ? 1.2 : kind === 'down_in' ? 1.5 : 3);
      const thresholds = new Map(sites.map((s) => [s.name, Float32Array.from({ length: s.channels }, () => scaleOf(s.kind) * (0.8 + 0.4 * r()))]));
      const snn = new SpikingLM(config, weights, new CpuBackend(), {
        timesteps: c.T, mode: 'spiking', schedule: c.schedule, coding: c.coding, thresholds,
        neuron: { maxSpikes: Infinity, signed: true, reset: 'subtract', fire: '>=', initial: 'half', leak: 1 }, surrogate: { name: 'atan', alpha: 2 },
      });
      const net = new TrainNet(snn, 'smooth');
      const p: TrainParams = net.initialParams(snn);
      for (const name of net.normNames()) p.gains.set(name, random(config.hiddenSize, name.length, 0.2).map((v) => 1 + v));
      for (const site of ['layers.0.attn_in', 'layers.1.mlp_in', 'head_in']) {
        const [N, K] = net.linearShape(site);
        p.lora.set(site, { rank: 2, scale: 1, a: random(2 * K, N, 0.3), b: random(N * 2, K, 0.3) });
      }
      const ids = Int32Array.from([1, 5, 2, 9, 4]);
      const teacher = net.forward(ids, p, 'exact').logits;
      const lambda = 0.05;
      const loss = () => {
        const res = net.forward(ids, p);
        return klLoss(teacher, res.logits, ids.length, config.vocabSize).loss + lambda * res.events / res.neurons;
      };
      const res = net.forward(ids, p);
      const g = zeroGrads(p);
      net.backward(res, klLoss(teacher, res.logits, ids.length, config.vocabSize).grad, p, g, lambda / res.neurons);
      const check = (arr: Float64Array, grad: Float64Array, name: string, picks: number[]) => checkGradient(arr, grad, loss, name, picks);
      let checked = 0, nonzero = 0;
      for (const [name, phi] of p.logTheta) {
        const picks = [0, phi.length - 1, Math.floor(phi.length / 2)];
        check(phi, g.logTheta.get(name)!, `log θ ${name}`, picks);
        checked += picks.length;
        nonzero += picks.filter((i) => g.logTheta.get(name)![i] !== 0).length;
      }
      for (const [name, gamma] of p.gains) check(gamma, g.gains.get(name)!, `γ ${name}`, [0, 3]);
      for (const [name, l] of p.lora) {
        check(l.a, g.lora.get(name)!.a, `LoRA A ${name}`, [0, l.a.length - 1]);
        check(l.b, g.lora.get(name)!.b, `LoRA B ${name}`, [0, l.b.length - 1]);
      }
      // the check is not vacuous: most threshold gradients are nonzero
      expect(nonzero).toBeGreaterThan(checked * 0.8);
    });
  }
});
