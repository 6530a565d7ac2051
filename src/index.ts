/**
 * spikelm as a library: `import { loadModel, generate, convertModelToSpiking } from 'spikelm'`.
 *
 *   import { BUNDLED_MODEL, convertToTarget, generate, loadModel, loadTokenizer, splitCalibration } from 'spikelm';
 *   const model = loadModel(BUNDLED_MODEL);      // a directory; a Hub name: (await resolveHubModel(parseHubName('org/name')!)).dir
 *   const tok = loadTokenizer(BUNDLED_MODEL);
 *   const { ids } = await generate(model, tok.encode('Once upon a time'), { maxNewTokens: 40 });
 *   console.log(tok.decode(ids));
 *   const { snn } = await convertToTarget(model, splitCalibration(tok));   // the default: planes per site for top-1 ≥ 99%, KL ≤ 1e-3
 *   const reply = await new ChatSession(new TemporalSpikeProcessor(snn), tok).send('Tell me a story');
 *
 * Everything here is public and follows semver; deeper paths (kernels, stages) are not exported.
 */

// models and text
export { CausalLM, loadModel, loadWeights, type LoadOptions, type ForwardOptions, type WeightsOptions } from './nn/model.js';
export { loadGenerationDefaults, parseGenerationConfig } from './nn/generation-config.js';
export { type ModelConfig, type ModelFamily, type NormKind, type ProjectionBias, SUPPORTED_MODEL_TYPES, hasProjections, keysAttended, loadConfig, parseConfig } from './nn/config.js';
export { type TextTokenizer, loadTokenizer } from './nn/tokenizer.js';
export { generate, type GenerateOptions, type GenerateResult } from './nn/generate.js';
export { Sampler, type SamplingOptions, argmax, seededRandom, validateSampling } from './nn/sampling.js';

// backends
export type { Backend, BackendName } from './tensor/backend.js';
export { CpuBackend } from './tensor/cpu-backend.js';
export { GpuBackend, type GpuBackendOptions } from './tensor/gpu/gpu-backend.js';
export { GpuError, acquireGpu, gpuAvailable, type GpuAdapterReport } from './tensor/gpu/device.js';
export { type BackendChoice, type SelectedBackend, parseBackendChoice, selectBackend } from './tensor/select.js';
export { Tensor, type Shape } from './tensor/tensor.js';

// conversion to spiking networks
export {
  DEFAULT_CONVERSION, type ConvertOptions, convertModelToSpiking, createCalibrationData, simplifiedConversion, type SimplifiedOptions,
  replaceGeluWithRelu, replaceLayernormWithSpikeLayernorm, replaceAttentionWithSpikeAttention, replaceActivationWithSpikeActivation,
  applySurrogateGradients, calibrateTimesteps, type TimestepCalibrationReport,
} from './convert/api.js';
export { type LoadedSnn, type SaveOptions, type SnnConfigJson, isSnnModelDir, loadSnnModel, readSnnConfig, saveSnnModel } from './convert/snn-io.js';
export { SpikingLM, type SpikingConfig, type SnnOutput, type SnnForwardOptions, type Execution, type SnnMode } from './snn/model.js';
export { CODINGS, SCHEDULES, type CodingName, type ScheduleName, errorBound } from './snn/codes.js';
export { SURROGATE_NAMES, type SurrogateName, surrogate } from './snn/surrogate.js';
export { type Adapters, type LoraAdapter, applyAdapters } from './snn/adapters.js';
export { type FineTuneOptions, type FineTuneResult, type StepReport, type TrainingRecord, fineTune } from './train/finetune.js';
export { type FidelityOptions, type FidelityReport, type FidelityRow, measureFidelity } from './snn/fidelity.js';
export { ENERGY_PRESETS, type EnergyReport, energyReport, formatEnergy, siteOps } from './snn/energy.js';
export { DEFAULT_MEMORY_PRESET, MEMORY_PRESETS, type MemoryPreset, type MemoryReport, memoryReport, memorySummary, parseMemoryPreset } from './snn/memory.js';
export {
  BUDGET, FINETUNE, type SearchOptions, type SearchRecord, type TargetConversion, convertToTarget, networkFromRecord, predictFineTuneSeconds,
} from './convert/search/planes.js';
export { type CalibrationSplit, splitCalibration } from './convert/search/split.js';
export { DEFAULT_TARGET, type FidelityTarget, parseTarget, wilsonInterval } from './convert/search/target.js';

// conversations
export { TemporalSpikeProcessor, type ProcessorOptions, type ProcessorOutput, type ProcessorStats } from './conversation/processor.js';
export { ChatSession, type ChatMessage, type ChatSessionOptions, type TurnResult, chatFormat } from './conversation/chat.js';
export { type LanguageModel, asLanguageModel } from './conversation/language-model.js';
export {
  type SuiteResult, simulateConversation, testAttentionMaskContinuity, testEnergy, testFidelityParity, testMultiTurnCoherence, testPositionIdBoundaries,
} from './conversation/suite.js';

// files and the Hub
export { type HubName, type HubSettings, type ResolvedHubModel, HubError, hubSettings, parseHubName, resolveHubModel } from './hub/index.js';
export { SafetensorsError, SafetensorsFile, writeSafetensors } from './io/safetensors.js';
export { ArgumentError, FileError, ModelLoadError, ShapeError, SpikelmError } from './errors.js';
export { BUNDLED_MODEL } from './bundled.js';
