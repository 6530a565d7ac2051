/** The target-driven conversion (planes.ts), its calibration split, scoring and targets. */
export { BUDGET, type CheckRecord, convertToTarget, macsPerToken, type SearchOptions, type SearchPhase, type SearchRecord, type TargetConversion } from './planes.js';
export { type CalibrationSplit, splitCalibration, takeTokens } from './split.js';
export { annReference, halfSpread, targetMargin, type Reference, type Scored, scoreNetwork } from './selection.js';
export { DEFAULT_TARGET, type FidelityTarget, formatTarget, parseTarget, wilsonInterval } from './target.js';
