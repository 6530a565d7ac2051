/**
 * Run in a child process with SPIKELM_WASM_RELAXED=1 (and, on Node 20, --experimental-wasm-relaxed-simd)
 * by test/wasm-kernels.test.ts: the relaxed-SIMD module's products on fixed operands and a fixed
 * conversion of stories260k, printed as JSON for the parent to compare with the default module's.
 */
import { relaxedOperands, relaxedWorkload } from './relaxed-workload.js';
import { wasmRuntime } from '../../src/tensor/wasm/runtime.js';

const rt = wasmRuntime();
const out = await relaxedWorkload(relaxedOperands());
process.stdout.write(JSON.stringify({ relaxed: rt?.relaxed ?? false, ...out }));
