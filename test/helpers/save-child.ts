/**
 * A child process for the crash tests of saveSnnModel (run with `node --import tsx`):
 *
 *   save-child.ts loop DEST              save model A (T=4) and B (T=6) to DEST alternately, forever,
 *                                        printing "saved" after each save; the parent kills it
 *   save-child.ts crash DEST WHICH STEP  save model WHICH (A or B) to DEST and SIGKILL itself just
 *                                        before publication step STEP
 *   save-child.ts save DEST WHICH        save model WHICH to DEST and exit
 */
import { saveSnnModel } from '../../src/convert/snn-io.js';
import { simplifiedConversion } from '../../src/convert/api.js';
import type { PublishStep } from '../../src/io/output-dir.js';
import { loadModel } from '../../src/nn/model.js';
import { loadTokenizer } from '../../src/nn/tokenizer.js';
import { fixtureDir } from './fixtures.js';

const [mode, dest, which, step] = process.argv.slice(2);
const dir = fixtureDir('stories260k');
const ann = loadModel(dir);
const tok = loadTokenizer(dir, ann.config.eosTokenIds, ann.config.bosTokenId);
const models = { A: simplifiedConversion(ann, { timesteps: 4 }), B: simplifiedConversion(ann, { timesteps: 6 }) };
const save = (m: 'A' | 'B', onStep?: (s: PublishStep) => void) => saveSnnModel(models[m].snn, tok, dest!, models[m].record, { onStep });

if (mode === 'loop') {
  for (let i = 0; ; i++) {
    save(i % 2 === 0 ? 'A' : 'B');
    process.stdout.write('saved\n');
  }
} else if (mode === 'crash') {
  save(which as 'A' | 'B', (s) => {
    if (s === step) process.kill(process.pid, 'SIGKILL');
  });
  process.stdout.write('finished without crashing\n');
} else if (mode === 'save') {
  save(which as 'A' | 'B');
} else {
  throw new Error(`save-child: unknown mode ${mode}`);
}
