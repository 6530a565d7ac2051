/**
 * The wasm SIMD kernels: `node scripts/build-wasm.mjs` compiles src/tensor/wasm/assembly with the
 * pinned AssemblyScript into src/tensor/wasm/simd.wasm and its relaxed-SIMD build simd-relaxed.wasm
 * (both committed); `--check` compiles to temporary files and fails when a committed binary differs
 * (test/wasm-kernels.test.ts runs it); `--copy` copies both into dist/ (tsc does not), which
 * `npm run build` does.
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
export const ASC_FLAGS = ['--enable', 'simd,threads', '-O3', '--noAssert', '--runtime', 'stub', '--importMemory', '--sharedMemory', '--initialMemory', '1', '--maximumMemory', '65536', '--use', 'abort='];
/**
 * The two modules: the default, and the relaxed-SIMD build of the same source (its multiply-adds
 * fused where the machine fuses: opt-in with SPIKELM_WASM_RELAXED=1, where relaxed SIMD validates).
 */
const MODULES = [
  { file: path.join(root, 'src/tensor/wasm/simd.wasm'), flags: ASC_FLAGS },
  { file: path.join(root, 'src/tensor/wasm/simd-relaxed.wasm'), flags: ASC_FLAGS.map((f) => (f === 'simd,threads' ? 'simd,threads,relaxed-simd' : f)) },
];

function compile(out, flags) {
  const asc = path.join(root, 'node_modules/assemblyscript/bin/asc.js');
  execFileSync(process.execPath, [asc, source, '-o', out, ...flags], { stdio: ['ignore', 'inherit', 'inherit'] });
}

const mode = process.argv[2];
if (mode === '--copy') {
  for (const m of MODULES) {
    const dst = path.join(root, 'dist/tensor/wasm', path.basename(m.file));
    fs.mkdirSync(path.dirname(dst), { recursive: true });
    fs.copyFileSync(m.file, dst);
  }
} else if (mode === '--check') {
  let stale = false;
  for (const m of MODULES) {
    const tmp = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-wasm-')), 'out.wasm');
    compile(tmp, m.flags);
    const fresh = fs.readFileSync(tmp), have = fs.existsSync(m.file) ? fs.readFileSync(m.file) : Buffer.alloc(0);
    fs.rmSync(path.dirname(tmp), { recursive: true, force: true });
    if (!fresh.equals(have)) {
      console.error(`${path.relative(root, m.file)} is not what ${path.relative(root, source)} compiles to (${have.length} bytes committed, ${fresh.length} fresh): run npm run build:wasm`);
      stale = true;
    } else console.log(`${path.relative(root, m.file)} is up to date (${have.length} bytes)`);
  }
  if (stale) process.exit(1);
} else if (mode === undefined) {
  for (const m of MODULES) {
    const tmp = `${m.file}.tmp`;
    compile(tmp, m.flags);
    fs.renameSync(tmp, m.file);
    console.log(`wrote ${path.relative(root, m.file)} (${fs.statSync(m.file).size} bytes)`);
  }
} else {
  console.error(`usage: node scripts/build-wasm.mjs [--check | --copy]`);
  process.exit(2);
}
