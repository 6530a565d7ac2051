import { cachedRandomGpt2 } from '../src/bench/random-model.js';
import { modelDir } from '../bench/model.bench.js';
console.log(cachedRandomGpt2({ layers: 8, width: 256, heads: 4, vocab: 50257, positions: 1024 }, { tokenizerFrom: modelDir('gpt2-random-f16') }));
