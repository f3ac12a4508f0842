// The page's files over HTTP (the routes alone, no model), and the browser's safetensors encoder against the
// server's writer: the downloaded embedding is the file `recite invert --out` writes, byte for byte.
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStaticRoutes, defaultStaticRoots } from '../../server/dashboard/static-routes.js';
import { writeSafetensors } from '../../server/model/safetensors.js';
// A plain browser module: its types are inferred from the JavaScript (allowJs).
import { encodeSafetensors, resultSafetensors } from '../../server/dashboard/static/safetensors.js';

describe('the page files', () => {
  let server: http.Server;
  let base = '';

  beforeAll(async () => {
    const routes = createStaticRoutes(defaultStaticRoots());
    server = http.createServer((req, res) => {
      if (!routes(req, res)) {
        res.writeHead(404);
        res.end('not the dashboard\n');
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('serves the page, its modules and uPlot, with types and a content security policy', async () => {
    const page = await fetch(`${base}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(await page.text()).toContain('<script type="module" src="/static/app.js">');
    for (const file of ['app.js', 'stream.js', 'job-view.js', 'job-list.js', 'charts.js', 'safetensors.js', 'style.css']) {
      const res = await fetch(`${base}/static/${file}`);
      expect(res.status, file).toBe(200);
      expect(res.headers.get('cache-control')).toBe('no-cache');
    }
    // The one safetensors layout, at the URL the page's relative import resolves to.
    const layoutUrl = new URL('../../model/safetensors-layout.js', `${base}/static/safetensors.js`);
    expect(layoutUrl.pathname).toBe('/model/safetensors-layout.js');
    const layout = await fetch(layoutUrl);
    expect(layout.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(await layout.text()).toContain('export function encodeSafetensors');
    const uplot = await fetch(`${base}/vendor/uplot/uPlot.esm.js`);
    expect(uplot.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(await uplot.text()).toContain('export { uPlot as default }');
  });

  it('answers nothing outside its folders', async () => {
    expect((await fetch(`${base}/static/..%2f..%2f..%2fpackage.json`)).status).toBe(404);
    expect((await fetch(`${base}/static/nope.js`)).status).toBe(404);
    // Only the modules written for the browser: not the server's own code beside them.
    expect(await (await fetch(`${base}/model/safetensors.ts`)).text()).toBe('not the dashboard\n');
    expect(await (await fetch(`${base}/model/checkpoint.js`)).text()).toBe('not the dashboard\n');
    const other = await fetch(`${base}/vendor/uplot/package.json`);
    expect(await other.text()).toBe('not the dashboard\n'); // left to the server's other routes
    expect(await (await fetch(`${base}/metrics`)).text()).toBe('not the dashboard\n');
    expect((await fetch(`${base}/`, { method: 'POST' })).status).toBe(404);
  });
});

describe('the browser safetensors encoder', () => {
  it('writes what the server writer writes, byte for byte', () => {
    const values = Array.from({ length: 2 * 32 }, (_, i) => Math.sin(i) * 3);
    const other = Array.from({ length: 2 * 32 }, (_, i) => Math.cos(i));
    const result = {
      status: 'STATUS_HIT', best: 1, targetText: 'Hello world', targetIds: [15496, 995], model: 'tiny',
      restarts: [
        { embedding: { shape: [2, 32], values: other } },
        { restart: 1, embedding: { shape: [2, 32], values } },
      ],
    };
    const browser: Uint8Array = resultSafetensors(result);
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'recite-st-')), 'e.safetensors');
    writeSafetensors(file, [
      { name: 'embedding', shape: [2, 32], data: Float32Array.from(values) },
      { name: 'restart.0', shape: [2, 32], data: Float32Array.from(other) },
      { name: 'restart.1', shape: [2, 32], data: Float32Array.from(values) },
    ], { target_text: 'Hello world', target_ids: '[15496,995]', status: 'HIT', best_restart: '1', model: 'tiny' });
    expect(Buffer.from(browser).equals(fs.readFileSync(file))).toBe(true);
  });

  it('refuses values that do not fill the shape', () => {
    expect(() => encodeSafetensors([{ name: 'x', shape: [2, 3], values: [1, 2] }])).toThrow('tensor x has 2 values; shape [2, 3] needs 6');
  });
});
