/**
 * `npm run bench [-- suite ...] [--quick] [--json FILE]`: run benchmark suites and print their numbers.
 */
import fs from 'node:fs';
import { type BenchRow, type Suite, formatRows, machineMetadata } from './harness.js';
import { matmulSuite } from './matmul.bench.js';
import { modelSuite } from './model.bench.js';
import { decodeSuite } from './decode.bench.js';
import { kernelsSuite } from './kernels.bench.js';
import { snnSuite } from './snn.bench.js';
import { scaleSuite } from './scale.bench.js';
import { finetuneSuite } from './finetune.bench.js';
import { targetSuite } from './target.bench.js';
import { loopSuite } from './loop.bench.js';
import { bf16Suite } from './bf16.bench.js';
import { cpuKernelsSuite } from './cpu-kernels.bench.js';
import { headSuite } from './head.bench.js';
import { relaxedSuite } from './relaxed.bench.js';

export const SUITES: readonly Suite[] = [matmulSuite, kernelsSuite, modelSuite, snnSuite, decodeSuite, scaleSuite, finetuneSuite, targetSuite, loopSuite, cpuKernelsSuite, bf16Suite, headSuite, relaxedSuite];

async function runBench(argv: string[]): Promise<void> {
  const quick = argv.includes('--quick');
  const jsonIdx = argv.indexOf('--json');
  const jsonFile = jsonIdx >= 0 ? argv[jsonIdx + 1] : undefined;
  const names = argv.filter((a, i) => !a.startsWith('--') && (jsonIdx < 0 || i !== jsonIdx + 1));
  const unknown = names.filter((n) => !SUITES.some((s) => s.name === n));
  if (unknown.length) throw new Error(`unknown suite(s) ${unknown.join(', ')}; known: ${SUITES.map((s) => s.name).join(', ')}`);
  const selected = names.length ? SUITES.filter((s) => names.includes(s.name)) : SUITES;
  const meta = machineMetadata();
  console.log(Object.entries(meta).map(([k, v]) => `${k}: ${v}`).join('\n'));
  const rows: BenchRow[] = [];
  for (const suite of selected) {
    console.log(`\n# ${suite.name}: ${suite.description}`);
    const r = await suite.run({ timeMs: quick ? 100 : 1000, quick, log: (l) => console.log(`  ${l}`) });
    rows.push(...r);
    console.log(`\n${formatRows(r)}`);
  }
  if (jsonFile) fs.writeFileSync(jsonFile, JSON.stringify({ metadata: meta, rows }, null, 2));
}

await runBench(process.argv.slice(2));
