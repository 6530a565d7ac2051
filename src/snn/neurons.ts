/**
 * Spiking neurons with explicit parameters and explicit state (snnTorch / SpingJelly style):
 * `charge`, `fire` and `reset` are separate steps, `step(x, state)` advances one time step and
 * `run(xSeq)` all T steps of a time-major [T, …] input; a test proves run ≡ a loop of step.
 * Both use the same float32 kernel as the backends (src/tensor/kernels/neuron.ts).
 *
 * IFNeuron (integrate-and-fire), per neuron with threshold θ:
 *   v[t] = v[t−1] + x[t]                                      (charge)
 *   n[t] = clamp(⌊v[t]/θ⌋, −B, B)  for fire condition `>=`    (fire: a signed burst of n spikes;
 *          clamp(⌈v[t]/θ⌉ − 1, −B, B) for `>`                  unsigned neurons emit max(n, 0))
 *   v[t] ← v[t] − n[t]·θ  (subtract) | 0 if n ≠ 0 (zero) | v[t] (none)   (reset)
 *   v[0] = 0, or θ/2 with the half-threshold start
 * LIFNeuron: the same with a leak, v[t] = β·v[t−1] + x[t], β = 1 − 1/τ.
 *
 * Output: spike counts n[t]; the value a spike train carries is θ·Σn. For a signed, subtracting
 * neuron with half start and in-range input, |θ·N(T)/T − mean(x)| ≤ θ/(2T) (θ/T without the half
 * start). Input beyond B·θ per step saturates, and that clipped charge is an error that does not
 * shrink with T (`predictedClippingError`).
 */
import { ArgumentError } from '../errors.js';
import { DEFAULT_NEURON, type NeuronConfig, inverseThresholds, neuronRunCpu, validateNeuron } from '../tensor/kernels/neuron.js';

export type { NeuronConfig } from '../tensor/kernels/neuron.js';
export { DEFAULT_NEURON } from '../tensor/kernels/neuron.js';

export interface NeuronState {
  /** Membrane potential per neuron. */
  readonly v: Float32Array;
  /** Steps taken so far. */
  t: number;
}

abstract class IntegrateAndFire {
  readonly config: NeuronConfig;
  /** θ per channel (length = channels), or one value for all. */
  readonly theta: Float32Array;
  private readonly invTheta: Float32Array;

  constructor(threshold: number | Float32Array, config: Partial<NeuronConfig>) {
    this.config = { ...DEFAULT_NEURON, ...config };
    validateNeuron(this.config);
    this.theta = typeof threshold === 'number' ? Float32Array.of(threshold) : threshold;
    this.invTheta = inverseThresholds(this.theta);
  }

  get channels(): number {
    return this.theta.length;
  }

  /** A fresh state for `neurons` neurons (a multiple of the channel count). */
  initState(neurons: number): NeuronState {
    this.checkSize(neurons);
    const v = new Float32Array(neurons);
    if (this.config.initial === 'half') for (let i = 0; i < neurons; i++) v[i] = Math.fround(this.theta[i % this.channels]! / 2);
    return { v, t: 0 };
  }

  /** One step: spike counts for input currents x (one value per neuron); state is updated in place. */
  step(x: Float32Array, state: NeuronState): Float32Array {
    this.checkSize(x.length);
    if (state.v.length !== x.length) throw new ArgumentError(`neuron step: state holds ${state.v.length} neurons, input ${x.length}`);
    const out = new Float32Array(x.length);
    neuronRunCpu(x, 1, x.length / this.channels, this.channels, this.theta, this.invTheta, this.config, out, state.v, false);
    state.t++;
    return out;
  }

  /** All steps of a time-major input [T·neurons]: spike counts, same layout. */
  run(xSeq: Float32Array, T: number): Float32Array {
    if (!Number.isInteger(T) || T < 1 || xSeq.length % T !== 0) throw new ArgumentError(`neuron run: ${xSeq.length} values are not ${T} equal steps`);
    const neurons = xSeq.length / T;
    this.checkSize(neurons);
    const out = new Float32Array(xSeq.length);
    neuronRunCpu(xSeq, T, neurons / this.channels, this.channels, this.theta, this.invTheta, this.config, out);
    return out;
  }

  /**
   * Predicted decoding error for a constant input x at step T: the rounding bound θ/(2T) (θ/T
   * without the half start) while |x| ≤ B·θ, plus the clipped charge |x| − B·θ that saturation loses
   * every step (it does not shrink with T).
   */
  predictedError(x: number, T: number, channel = 0): { quantization: number; clipping: number } {
    const th = this.theta[channel % this.channels]!;
    const B = this.config.maxSpikes;
    const lower = this.config.signed ? -B * th : 0;
    const clipping = x > B * th ? x - B * th : x < lower ? lower - x : 0;
    return { quantization: (this.config.initial === 'half' ? th / 2 : th) / T, clipping };
  }

  private checkSize(neurons: number): void {
    if (neurons % this.channels !== 0) throw new ArgumentError(`neuron: ${neurons} neurons are not a multiple of ${this.channels} threshold channels`);
  }
}

/** Integrate-and-fire (no leak). */
export class IFNeuron extends IntegrateAndFire {
  constructor(threshold: number | Float32Array, config: Partial<Omit<NeuronConfig, 'leak'>> = {}) {
    super(threshold, { ...config, leak: 1 });
  }
}

/** Leaky integrate-and-fire with membrane time constant τ (β = 1 − 1/τ). */
export class LIFNeuron extends IntegrateAndFire {
  constructor(threshold: number | Float32Array, readonly tau: number, config: Partial<Omit<NeuronConfig, 'leak'>> = {}) {
    if (!(tau >= 1)) throw new ArgumentError(`LIF: τ must be ≥ 1, got ${tau}`);
    super(threshold, { ...config, leak: 1 - 1 / tau });
  }
}
