/**
 * report.html in headless Chromium (playwright-core and the system Chromium, as the subgroup tests):
 * opened from the file with the network refused, it logs no error, requests nothing, has one table
 * row per row of results.json and one rendered SVG of non-zero size per plot. A screenshot is
 * written beside it for a reviewer.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { PLOTS } from '../src/bench/report.js';
import { main } from '../src/cli/main.js';
import { GPU_REQUIRED } from './helpers/backends.js';
import { chromiumPath } from './helpers/browser-gpu.js';
import { fixtureDir } from './helpers/fixtures.js';

describe('report.html', () => {
  it('renders offline in headless Chromium: no console errors, no requests, every row and plot', async (ctx) => {
    const exe = chromiumPath();
    if (!exe) {
      if (GPU_REQUIRED) throw new Error('CI runs the browser tests: no Chromium found (apt-get install chromium, or set CHROMIUM_PATH)');
      console.warn('report.html test skipped: no Chromium (apt-get install chromium, or set CHROMIUM_PATH)');
      ctx.skip();
    }
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'spikelm-html-'));
    let err = '';
    const code = await main(['bench', '--model', fixtureDir('stories260k'), '--coding', 'phase-ternary,rate', '--schedule', 'layerwise,stepwise', '--timesteps', '2,6',
      '--positions', '48', '--time-tokens', '4', '--time-budget', '10', '--out', out], { out: () => {}, err: (t) => void (err += t) });
    expect(code, err).toBe(0);
    const file = path.join(out, 'report.html');
    const html = fs.readFileSync(file, 'utf8');
    expect(html).not.toMatch(/<script|<link|@import|url\(|src=/i);
    const results = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8'));

    const browser = await chromium.launch({ executablePath: exe, args: ['--no-sandbox'] });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const errors: string[] = [], requests: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(m.text());
      });
      page.on('pageerror', (e) => errors.push(e.message));
      const url = pathToFileURL(file).href;
      await page.route('**/*', (route) => {
        if (route.request().url() !== url) requests.push(route.request().url());
        return route.request().url() === url ? route.continue() : route.abort();
      });
      await page.goto(url, { waitUntil: 'load' });
      expect(errors).toEqual([]);
      expect(requests).toEqual([]);
      const rows = await page.locator('table.results tbody tr').count();
      expect(rows).toBe(results.rows.length);
      const sizes = await page.locator('figure.plot > svg').evaluateAll((svgs) => svgs.map((s) => s.getBoundingClientRect()).map((r) => [r.width, r.height]));
      expect(sizes).toHaveLength(Object.keys(PLOTS).length);
      for (const [w, h] of sizes) {
        expect(w).toBeGreaterThan(100);
        expect(h).toBeGreaterThan(100);
      }
      // every plot draws its curves
      expect(await page.locator('figure.plot polyline').count()).toBeGreaterThan(Object.keys(PLOTS).length);
      const shot = path.join(out, 'report.png');
      await page.screenshot({ path: shot, fullPage: true });
      expect(fs.statSync(shot).size).toBeGreaterThan(10_000);
    } finally {
      await browser.close();
    }
  }, 600_000);
});
