/**
 * One side of the relaxed-SIMD suite (relaxed.bench.ts), in its own process because a process runs
 * one wasm module: the GPT-2-small-shaped random model's prefill of 128 tokens and decode after a
 * 32-token prompt under whichever module SPIKELM_WASM_RELAXED selects, printed as JSON.
 */
import path from 'node:path';
import { GPT2_SMALL, cachedRandomGpt2 } from '../src/bench/random-model.js';
import { loadModel } from '../src/nn/model.js';
import { wasmRuntime } from '../src/tensor/wasm/runtime.js';
import { decodeSeconds } from './decode.bench.js';
import { FIXTURES } from './model.bench.js';

const quick = process.argv.includes('--quick');
const ann = loadModel(cachedRandomGpt2(GPT2_SMALL, { tokenizerFrom: path.join(FIXTURES, 'gpt2-random-f16') }));
const V = ann.config.vocabSize;
const prompt = Array.from({ length: 32 }, (_, i) => (i * 37 + 11) % V);
const prefillIds = Array.from({ length: quick ? 16 : 128 }, (_, i) => (i * 53 + 7) % V);
await decodeSeconds(ann, prompt, 1); // warm-up (JIT, pool)
const cache = ann.newCache(prefillIds.length);
const t0 = performance.now();
ann.backend.dispose(ann.forward(prefillIds, cache));
const prefill = prefillIds.length / ((performance.now() - t0) / 1000);
cache.dispose();
const n = quick ? 2 : 8;
const decode = n / (await decodeSeconds(ann, prompt, n));
process.stdout.write(JSON.stringify({ relaxed: wasmRuntime()?.relaxed ?? false, prefill, decode }));
process.exit(0);
