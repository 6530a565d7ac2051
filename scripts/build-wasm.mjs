/**
 * The wasm SIMD kernels: `node scripts/build-wasm.mjs` compiles src/tensor/wasm/assembly with the
 * pinned AssemblyScript into src/tensor/wasm/simd.wasm (committed); `--check` compiles to a temporary
 * file and fails when the committed binary differs (test/wasm-kernels.test.ts runs it); `--copy`
 * copies the binary into dist/ (tsc does not), which `npm run build` does.
 *
 * Why the binary is committed: the package, its tarball and the tests load the same file with no
 * compiler present, and the --check keeps it honest (asc's output is deterministic for one version).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const source = path.join(root, 'src/tensor/wasm/assembly/index.ts');
const committed = path.join(root, 'src/tensor/wasm/simd.wasm');
export const ASC_FLAGS = ['--enable', 'simd,threads', '-O3', '--noAssert', '--runtime', 'stub', '--importMemory', '--sharedMemory', '--initialMemory', '1', '--maximumMemory', '65536', '--use', 'abort='];

function compile(out) {
  const asc = path.join(root, 'node_modules/assemblyscript/bin/asc.js');
  execFileSync(process.execPath, [asc, source, '-o', out, ...ASC_FLAGS], { stdio: ['ignore', 'inherit', 'inherit'] });
}

const mode = process.argv[2];
if (mode === '--copy') {
  const dst = path.join(root, 'dist/tensor/wasm/simd.wasm');
  fs.mkdirSync(path.dirname(dst), { recursive: true });
  fs.copyFileSync(committed, dst);
} else if (mode === '--check') {
  const tmp = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-wasm-')), 'simd.wasm');
  compile(tmp);
  const fresh = fs.readFileSync(tmp), have = fs.readFileSync(committed);
  fs.rmSync(path.dirname(tmp), { recursive: true, force: true });
  if (!fresh.equals(have)) {
    console.error(`${path.relative(root, committed)} is not what ${path.relative(root, source)} compiles to (${have.length} bytes committed, ${fresh.length} fresh): run npm run build:wasm`);
    process.exit(1);
  }
  console.log(`${path.relative(root, committed)} is up to date (${have.length} bytes)`);
} else if (mode === undefined) {
  const tmp = `${committed}.tmp`;
  compile(tmp);
  fs.renameSync(tmp, committed);
  console.log(`wrote ${path.relative(root, committed)} (${fs.statSync(committed).size} bytes)`);
} else {
  console.error(`usage: node scripts/build-wasm.mjs [--check | --copy]`);
  process.exit(2);
}
