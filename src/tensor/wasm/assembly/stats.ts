/**
 * A row's spike statistics as the wasm encoders and spike-driven attention write them: the layout of
 * src/tensor/kernels/codes.ts STAT, STATS floats a row: events, max per step, nonzero digits,
 * neuron-steps, extra planes, synaptic operations and extra planes × fan-out (the events and 0
 * here: the TypeScript caller applies the fan-out, as after the TypeScript kernels), overflow rows,
 * clipped values, active neurons and their steps. The values arrive rounded to float32 by the
 * caller, so each keeps its own expression.
 */

export const STATS: i32 = 11;

@inline export function storeRowStats(so: usize, events: f32, maxPer: f32, nonzero: f32, neuronSteps: f32, extra: f32, clipped: f32, active: f32, activeSteps: f32): void {
  store<f32>(so, events);
  store<f32>(so, maxPer, 4);
  store<f32>(so, nonzero, 8);
  store<f32>(so, neuronSteps, 12);
  store<f32>(so, extra, 16);
  store<f32>(so, events, 20);
  store<f32>(so, extra > 0 ? 1 : 0, 24);
  store<f32>(so, clipped, 28);
  store<f32>(so, 0, 32);
  store<f32>(so, active, 36);
  store<f32>(so, activeSteps, 40);
}
