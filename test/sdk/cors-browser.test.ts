// A browser app on another origin calls `recite serve --cors-origin ORIGIN` through the SDK's browser bundle, in
// real headless Chromium: pages come from two small HTTP servers on other ports (other origins), one listed with
// --cors-origin and one not. The browser itself enforces CORS, so only a browser can show that it lets the listed
// origin through (preflight, bearer token, server streaming, errors readable) and refuses the other.
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code, Status } from '../../sdk/index.js';
import type { ServeProcess } from '../crash/serve-process.js';
import { serveToken, spawnServe, stopServe } from '../crash/serve-process.js';

const chromiumPath = process.env.RECITE_CHROMIUM ?? '/usr/bin/chromium';

/** Bundle sdk/index.ts for the browser, as an app's bundler would (ES module, dependencies included). */
async function sdkBundle(): Promise<string> {
  const output = await build({
    root: process.cwd(),
    configFile: false,
    logLevel: 'silent',
    build: { lib: { entry: 'sdk/index.ts', formats: ['es'], fileName: 'recite-sdk' }, write: false, minify: false },
  });
  const chunks = (Array.isArray(output) ? output : [output]).flatMap((o) => ('output' in o ? o.output : []));
  return chunks.map((c) => ('code' in c ? c.code : '')).join('\n');
}

/** Serve an app page that loads the SDK bundle as `window.recite`, on a free port: a distinct origin. */
async function startPageServer(bundle: string): Promise<{ origin: string; close(): void }> {
  const page = '<!doctype html><title>app</title><script type="module">' +
    'import * as recite from "/recite-sdk.js"; window.recite = recite;</script>';
  const server = http.createServer((req, res) => {
    if (req.url === '/recite-sdk.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle);
    } else if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html' }).end(page);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() };
}

type Recite = typeof import('../../sdk/index.js');

describe('CORS: a page on another origin calls recite serve with the SDK', () => {
  let dir: string;
  let listed: Awaited<ReturnType<typeof startPageServer>>;
  let unlisted: Awaited<ReturnType<typeof startPageServer>>;
  let serve: ServeProcess;
  let browser: Browser;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-cors-'));
    const bundle = await sdkBundle();
    listed = await startPageServer(bundle);
    unlisted = await startPageServer(bundle);
    // A second listed origin shows the flag repeats; the page on `unlisted` is on neither.
    serve = await spawnServe(path.join(dir, 'recite.db'),
      ['--cors-origin', 'https://app.example.com', '--cors-origin', listed.origin]);
    browser = await chromium.launch({
      executablePath: chromiumPath, headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
        '--disable-sync', '--no-first-run'],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await stopServe(serve, 'SIGTERM');
    listed?.close();
    unlisted?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function openApp(origin: string): Promise<{ page: Page; console: string[] }> {
    const page = await browser.newPage();
    const console: string[] = [];
    page.on('console', (message) => console.push(message.text()));
    await page.goto(`${origin}/`);
    await page.waitForFunction(() => 'recite' in window);
    return { page, console };
  }

  it('lets a listed origin call unary and streaming RPCs with its token, and read an error', async () => {
    const { page } = await openApp(listed.origin);
    const seen = await page.evaluate(async ({ url, token }) => {
      const recite = (window as unknown as { recite: Recite }).recite;
      const client = recite.createReciteClient(url, { token });
      const models = (await client.listModels()).map((m) => m.name);
      const { ids } = await client.tokenize('Hello world');
      let result: { targetIds: number[]; status: number } | undefined;
      for await (const event of client.invert('Hello world', { parameterization: 'full', maxIterations: 5 })) {
        if (event.type === 'result') result = { targetIds: [...event.targetIds], status: event.status };
      }
      const grpcWeb = recite.createReciteClient(url, { token, protocol: 'grpc-web' });
      const grpcWebModels = (await grpcWeb.listModels()).map((m) => m.name);
      const denied = await recite.createReciteClient(url, { token: 'not-a-token' }).listModels()
        .then(() => undefined, (error: unknown) => recite.ConnectError.from(error));
      return { models, ids: [...ids], result, grpcWebModels, denied: denied && { code: denied.code, message: denied.rawMessage } };
    }, { url: serve.url, token: serveToken });
    expect(seen.models).toEqual(['tiny']);
    expect(seen.grpcWebModels).toEqual(['tiny']);
    expect(seen.ids.length).toBeGreaterThan(0);
    expect(seen.result?.targetIds).toEqual(seen.ids);
    expect([Status.HIT, Status.MAX_ITERATIONS]).toContain(seen.result?.status);
    // The server's refusal reaches the page as itself, not as an opaque network error.
    expect(seen.denied).toEqual({ code: Code.Unauthenticated, message: 'the bearer token is not valid on this server' });
  });

  it('is refused by the browser for an origin not listed', async () => {
    const { page, console } = await openApp(unlisted.origin);
    const failure = await page.evaluate(async ({ url, token }) => {
      const recite = (window as unknown as { recite: Recite }).recite;
      return recite.createReciteClient(url, { token }).listModels()
        .then(() => undefined, (error: unknown) => recite.ConnectError.from(error).rawMessage);
    }, { url: serve.url, token: serveToken });
    expect(failure).toMatch(/Failed to fetch/);
    expect(console.join('\n')).toMatch(new RegExp(`from origin '${unlisted.origin}' has been blocked by CORS policy`));
  });
});
