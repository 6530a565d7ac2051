// The kernels of the wasm SIMD set (one module; see ../runtime.ts).
export { matmulF32Tile4x4, matvecF32Row, matmulF64Tile4x4, matvecF64Row, matvecBf16Row, matmulBf16Tile4x4, matvecF16Row, matmulF16Tile4x4 } from './matmul';
export { eventRowsF64, planeAccumulateF64 } from './spike';
export { streamSumF32 } from './bandwidth';
export { attentionF64 } from './attention';
export { activationF64, gatedActivationF64 } from './elementwise';
export { encodeWeightedF32 } from './codes';
export { layerNormF64, rmsNormF64 } from './norm';
export { foldF32, foldBf16, foldF16 } from './fold';
export { spikeAttentionFastF64 } from './spike-attention';
