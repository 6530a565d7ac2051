/**
 * WebGPU in headless Chromium, for the kernel paths Dawn's Node bindings cannot reach here: its
 * SwiftShader (Vulkan on the CPU) offers the `subgroups` feature that llvmpipe through GLES lacks.
 * test/browser/entry.ts — the engine's runtime and kernels — is bundled with esbuild (Node built-ins
 * stubbed: the GPU kernels do not call them), served from localhost (WebGPU needs a secure
 * context) and driven with playwright-core. Chromium comes from the system (`apt-get install
 * chromium`; .ci/run installs it); CHROMIUM_PATH overrides where it is looked for.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { type Browser, type Page, chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CANDIDATES = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].filter((p): p is string => Boolean(p));
/** Chromium flags: WebGPU on SwiftShader's Vulkan, headless, in a container. */
const FLAGS = ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-webgpu-adapter=swiftshader', '--enable-unsafe-swiftshader', '--use-angle=swiftshader', '--no-sandbox', '--disable-gpu-sandbox'];

export function chromiumPath(): string | undefined {
  return CANDIDATES.find((p) => fs.existsSync(p));
}

export interface BrowserGpu {
  readonly page: Page;
  close(): Promise<void>;
}

async function bundle(): Promise<string> {
  const result = await build({
    entryPoints: [path.join(ROOT, 'test/browser/entry.ts')],
    bundle: true, format: 'esm', platform: 'browser', write: false, logLevel: 'silent',
    // the kernels' modules import Node built-ins for their CPU halves; nothing on the GPU path calls them
    plugins: [{
      name: 'stub-node',
      setup(b) {
        b.onResolve({ filter: /^(node:.*|webgpu)$/ }, (a) => ({ path: a.path, namespace: 'stub' }));
        b.onLoad({ filter: /.*/, namespace: 'stub' }, () => ({ contents: 'module.exports = {};', loader: 'js' }));
      },
    }],
    banner: { js: 'globalThis.process ??= { env: {}, platform: "browser" };' },
  });
  return result.outputFiles[0]!.text;
}

/** Open a page with the bundled kernels loaded; the caller closes it. */
export async function openBrowserGpu(executablePath: string): Promise<BrowserGpu> {
  const script = await bundle();
  const server = http.createServer((req, res) => {
    // cross-origin isolated, so the page has SharedArrayBuffer (the CPU tensors are allocated in one)
    res.setHeader('cross-origin-opener-policy', 'same-origin');
    res.setHeader('cross-origin-embedder-policy', 'require-corp');
    if (req.url === '/entry.js') {
      res.setHeader('content-type', 'text/javascript');
      res.end(script);
    } else {
      res.setHeader('content-type', 'text/html');
      res.end('<!doctype html><script type="module" src="/entry.js"></script>');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  let browser: Browser | undefined;
  try {
    browser = await chromium.launch({ executablePath, headless: true, args: FLAGS });
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://localhost:${port}/`);
    await page.waitForFunction(() => 'spikelm' in globalThis, undefined, { timeout: 20_000 }).catch(() => {
      throw new Error(`the kernels did not load in Chromium: ${errors.join('; ') || 'no error reported'}`);
    });
    const b = browser;
    return {
      page,
      async close() {
        await b.close();
        server.close();
      },
    };
  } catch (err) {
    await browser?.close();
    server.close();
    throw err;
  }
}
