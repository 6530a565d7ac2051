/**
 * Writes models/stories260k/spikelm-target.json: the default target search of the bundled model,
 * made by the search itself on the bundled calibration text (src/convert/search/cache.ts). Run
 * `npm run target-cache` after changing the search; test/search.test.ts checks the file is current.
 */
import { BUNDLED_MODEL } from '../src/bundled.js';
import { cacheKey, writeTargetCache } from '../src/convert/search/cache.js';
import { convertToTarget } from '../src/convert/search/planes.js';
import { splitCalibration } from '../src/convert/search/split.js';
import { DEFAULT_TARGET } from '../src/convert/search/target.js';
import { bundledText } from '../src/convert/calibration-data.js';
import { loadModel } from '../src/nn/model.js';
import { loadTokenizer } from '../src/nn/tokenizer.js';

const ann = loadModel(BUNDLED_MODEL);
const tokenizer = loadTokenizer(BUNDLED_MODEL);
const { search, seconds, snn } = await convertToTarget(ann, splitCalibration(tokenizer), { target: DEFAULT_TARGET });
writeTargetCache(BUNDLED_MODEL, cacheKey(ann, bundledText('calibration-stories.txt').text, DEFAULT_TARGET, 'phase-ternary', 0, 1, 'auto'), search, snn.spiking.thresholds);
console.log(`wrote ${BUNDLED_MODEL}/spikelm-target.json: T = ${search.chosen.T}, meets ${search.chosen.meets}, ${seconds.total.toFixed(1)} s`);
