/**
 * The npm package as a user gets it: `npm pack` ships what runs and nothing else (no tests, no
 * sources, no fixtures), the bundled model included; unpacked into a fresh project (dependencies
 * linked from this checkout: no network), `npx spikelm demo` runs, an ESM script imports the library
 * by its name and generates the golden story, and TypeScript resolves the package's types.
 * Every bare import in the shipped code must be a declared runtime dependency.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { name: string; dependencies: Record<string, string> };
let work: string;
let files: string[];
let project: string;

beforeAll(() => {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'index.js'))) throw new Error('dist/ is missing: run `npm run build` first (npm test does)');
  work = fs.mkdtempSync(path.join(fs.realpathSync('/tmp'), 'spikelm-pack-'));
  // --ignore-scripts: dist/ is already built (npm test builds first); prepare would rebuild it
  const out = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: ROOT, encoding: 'utf8' });
  const info = JSON.parse(out)[0] as { filename: string; files: { path: string }[] };
  files = info.files.map((f) => f.path).sort();
  // a fresh project with the tarball unpacked where npm would put it, and the dependencies linked
  project = path.join(work, 'project');
  const modules = path.join(project, 'node_modules');
  fs.mkdirSync(path.join(modules, '.bin'), { recursive: true });
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'try-spikelm', private: true, type: 'module' }));
  execFileSync('tar', ['-xzf', path.join(work, info.filename), '-C', modules]);
  fs.renameSync(path.join(modules, 'package'), path.join(modules, 'spikelm'));
  const linked = new Set<string>();
  const link = (dep: string) => {
    if (linked.has(dep)) return;
    linked.add(dep);
    const from = path.join(ROOT, 'node_modules', dep);
    fs.mkdirSync(path.dirname(path.join(modules, dep)), { recursive: true });
    fs.symlinkSync(from, path.join(modules, dep));
    // the dependency's own dependencies, as hoisted in this checkout
    const own = JSON.parse(fs.readFileSync(path.join(from, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    for (const d of Object.keys(own.dependencies ?? {})) if (!fs.existsSync(path.join(from, 'node_modules', d))) link(d);
  };
  for (const dep of Object.keys(pkg.dependencies)) link(dep);
  fs.symlinkSync('../spikelm/bin/spikelm.js', path.join(modules, '.bin', 'spikelm'));
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe('the npm package', () => {
  it('ships dist, bin, the bundled model and texts, and nothing from test/ or src/', () => {
    for (const f of ['bin/spikelm.js', 'dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'dist/tensor/wasm/simd.wasm', 'dist/tensor/wasm/simd-relaxed.wasm', 'models/stories260k/model.safetensors', 'models/stories260k/tokenizer.json', 'models/stories260k/config.json', 'models/README.md', 'data/calibration-stories.txt', 'data/eval-stories.txt', 'README.md', 'package.json']) {
      expect(files, f).toContain(f);
    }
    const strays = files.filter((f) => /^(test|src|bench|scripts|docs|node_modules)\//.test(f) || f.endsWith('.ts') && !f.endsWith('.d.ts'));
    expect(strays).toEqual([]);
  });

  it('every bare import in the shipped code is a declared dependency', () => {
    const builtins = new Set(builtinModules);
    const missing = new Set<string>();
    for (const f of files.filter((x) => x.endsWith('.js'))) {
      // comments out (doc examples import 'spikelm'); the code's imports stay
      const src = fs.readFileSync(path.join(project, 'node_modules', 'spikelm', f), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
      for (const m of src.matchAll(/(?:^|[;\s])(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm)) {
        const spec = (m[1] ?? m[2])!;
        if (spec.startsWith('.') || spec.startsWith('node:') || builtins.has(spec)) continue;
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
        if (!(name in pkg.dependencies)) missing.add(`${f}: ${spec}`);
      }
    }
    expect([...missing]).toEqual([]);
  });

  it('npx spikelm demo runs from the installed package', () => {
    const r = spawnSync('npx', ['--no-install', 'spikelm', 'demo', '--turns', '1', '--max-new-tokens', '12'], { cwd: project, encoding: 'utf8', env: { ...process.env, SPIKELM_DEBUG: '1' } });
    expect(r.stderr + r.stdout).not.toMatch(/error/i);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/top-1/);
    expect(r.stdout).toMatch(/E_SNN\/E_ANN|energy/i);
  });

  it('the installed package runs the wasm SIMD kernel set (its simd.wasm shipped)', () => {
    const r = spawnSync('npx', ['--no-install', 'spikelm', 'info', '--json'], { cwd: project, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).cpu_kernels).toMatchObject({ set: 'wasm', wasm_simd: true });
  });

  it('an ESM script imports spikelm by name, generates the golden story and converts', () => {
    fs.writeFileSync(path.join(project, 'use.mjs'), `
import { BUNDLED_MODEL, DEFAULT_CONVERSION, convertModelToSpiking, createCalibrationData, generate, loadModel, loadTokenizer } from 'spikelm';
const model = loadModel(BUNDLED_MODEL);
const tok = loadTokenizer(BUNDLED_MODEL);
const { ids } = await generate(model, tok.encode('Once upon a time'), { maxNewTokens: 40 });
const { snn } = await convertModelToSpiking(model, createCalibrationData(tok, { numSamples: 4 }));
console.log(JSON.stringify({ text: tok.decode(ids), T: snn.timesteps, defaultT: DEFAULT_CONVERSION.timesteps, coding: snn.coding }));
`);
    const out = execFileSync('node', ['use.mjs'], { cwd: project, encoding: 'utf8' });
    const j = JSON.parse(out.trim().split('\n').at(-1)!);
    expect(j.text).toMatch(/^, there was a little girl named Lily\. She loved to play outside in the park\./);
    expect(j.T).toBe(j.defaultT);
    expect(j.coding).toBe('phase-ternary');
  });

  it('TypeScript resolves the package types through its exports', () => {
    fs.writeFileSync(path.join(project, 'typed.ts'), `
import { type CausalLM, type FidelityReport, loadModel, parseHubName } from 'spikelm';
const m: CausalLM = loadModel('x');
const n: string | undefined = parseHubName('org/name')?.repo;
const r: FidelityReport | undefined = undefined;
// @ts-expect-error: not part of the public API
import { matmulBlocked } from 'spikelm';
export { m, n, r, matmulBlocked };
`);
    fs.writeFileSync(path.join(project, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, skipLibCheck: true, types: [] }, files: ['typed.ts'] }));
    const r = spawnSync('node', [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', project], { cwd: project, encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
