// The dashboard page in real headless Chromium against a real server on port 0 with the tiny model: start a job
// from the form and watch it converge, open a finished job and see its whole history, refuse a wrong token and take
// a `#token=` link in that tab, bring the opened job into sight below a long list, label a data set's jobs briefly,
// and fit a 420 px wide phone.
//
// The last test shows the page at 1400 and 420 px wide and takes screenshots of it; they go to a temporary folder,
// or to the folder in RECITE_SCREENSHOTS: `npm run screenshots` writes docs/dashboard.md's (docs/dashboard-*.png).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReciteClient } from '../../sdk/index.js';
import type { ReciteClient, ResultEvent } from '../../sdk/index.js';
import { DatasetService } from '../../sdk/gen/recite/v1/dataset_pb.js';
import { readSafetensorsHeader, readTensorFloat32 } from '../../server/model/safetensors.js';
import { optimizerKinds } from '../../server/engine/optimizers.js';
import { inversionDefaults } from '../../server/engine/settings.js';
import { TokenTable } from '../../server/service/auth.js';
import type { TestServer } from '../helpers/test-server.js';
import { aliceToken, startTestServer } from '../helpers/test-server.js';
import { streamUrl, upgradeStatus } from './ws-client.js';

const screenshots = process.env.RECITE_SCREENSHOTS
  ? path.resolve(process.env.RECITE_SCREENSHOTS) : fs.mkdtempSync(path.join(os.tmpdir(), 'recite-screenshots-'));
const poll = { timeout: 30_000, interval: 50 }; // expect.poll waits 1 s by default
const soon = { timeout: 5_000, interval: 50 }; // for what the page does at once, without the server
const wide = { width: 1400, height: 900 };
const narrow = { width: 420, height: 860 };
const chromiumPath = process.env.RECITE_CHROMIUM ?? '/usr/bin/chromium';

describe('the dashboard page in Chromium', () => {
  let server: TestServer;
  let browser: Browser;
  let client: ReciteClient;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    server = await startTestServer();
    client = createReciteClient(server.url, { token: aliceToken });
    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
        '--disable-sync', '--no-first-run'],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  async function openPage(hash: string, { expectErrors = false, base = server.url, viewport = { width: 1280, height: 900 } } = {}): Promise<Page> {
    const context = await browser.newContext({ viewport, acceptDownloads: true });
    const page = await context.newPage();
    page.on('pageerror', (error) => pageErrors.push(`${error.name}: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error' && !expectErrors) pageErrors.push(message.text());
    });
    await page.goto(`${base}/#${hash}`);
    return page;
  }

  /** Whether the job view's head (title, status, close) is wholly inside the window. */
  function jobHeadInView(page: Page): Promise<boolean> {
    return page.evaluate(() => {
      const head = document.querySelector('#job-view .job-head')!.getBoundingClientRect();
      return head.height > 0 && head.top >= 0 && head.bottom <= window.innerHeight;
    });
  }

  /** Widths that overflow: the page's, each panel's, and each table's past the box it sits in. */
  function overflows(page: Page): Promise<string[]> {
    return page.evaluate(() => {
      const found: string[] = [];
      const root = document.documentElement;
      if (root.scrollWidth > root.clientWidth) found.push(`page: ${root.scrollWidth} > ${root.clientWidth}`);
      for (const panel of document.querySelectorAll<HTMLElement>('.panel:not([hidden])')) {
        if (panel.scrollWidth > panel.clientWidth) found.push(`#${panel.id}: ${panel.scrollWidth} > ${panel.clientWidth}`);
      }
      for (const table of document.querySelectorAll<HTMLTableElement>('table')) {
        if (!table.offsetParent) continue; // not shown
        const box = table.parentElement!;
        const name = table.id ? `#${table.id}` : `table.${table.className}`;
        if (table.scrollWidth > table.clientWidth) found.push(`${name}: ${table.scrollWidth} > ${table.clientWidth}`);
        if (table.offsetWidth > box.clientWidth) found.push(`${name} in its box: ${table.offsetWidth} > ${box.clientWidth}`);
      }
      return found;
    });
  }

  /** Run a job through the SDK to its result; returns its id, progress count and result. */
  async function runJob(target: string | number[], options: Parameters<ReciteClient['invert']>[1]) {
    let jobId = '';
    let progress = 0;
    let result: ResultEvent | undefined;
    for await (const event of client.invert(target, options)) {
      jobId = event.jobId;
      if (event.type === 'progress') progress++;
      if (event.type === 'result') result = event;
    }
    return { jobId, progress, result: result! };
  }

  it('starts a job from the form and shows it converging to a HIT, with the embedding to download', async () => {
    const page = await openPage(`token=${aliceToken}`);
    await expect.poll(() => page.textContent('#who'), poll).toBe('signed in as alice');
    expect(page.url()).not.toContain('token='); // taken from the URL, kept in localStorage
    expect(await page.evaluate(() => localStorage.getItem('recite.token'))).toBe(aliceToken);

    // Record every iteration the job list shows, from before the job exists.
    await page.evaluate(() => {
      const seen: Record<string, number[]> = {};
      (window as unknown as { seenIterations: typeof seen }).seenIterations = seen;
      new MutationObserver(() => {
        for (const row of document.querySelectorAll<HTMLTableRowElement>('#jobs tbody tr')) {
          const it = Number(row.cells[3]!.textContent);
          const list = (seen[row.dataset.jobId!] ??= []);
          if (Number.isFinite(it) && list.at(-1) !== it) list.push(it);
        }
      }).observe(document.querySelector('#jobs tbody')!, { subtree: true, childList: true, characterData: true });
    });

    // The form's optimizers and defaults come from the server's settings schema, not from the page.
    await expect.poll(() => page.$$eval('#f-optimizer option', (options) => options.map((o) => o.textContent)), poll)
      .toEqual([...optimizerKinds]);
    expect(await page.inputValue('#f-lr')).toBe(String(inversionDefaults.lr));
    expect(await page.inputValue('#f-max')).toBe(String(inversionDefaults.maxIterations));
    expect(await page.inputValue('#f-optimizer')).toBe(`OPTIMIZER_${inversionDefaults.optimizer.toUpperCase()}`);

    await page.fill('#f-text', 'Hello world');
    await page.selectOption('#f-param', 'full');
    await page.selectOption('#f-optimizer', 'rmsprop');
    await page.fill('#f-lr', '0.1');
    await page.fill('#f-max', '1000');
    await page.fill('#f-seed', '0');
    await page.click('#f-submit');

    await expect.poll(() => new URL(page.url()).hash, poll).toMatch(/^#job=[0-9a-f-]{36}$/);
    const jobId = new URL(page.url()).hash.slice('#job='.length);
    await page.waitForSelector('#job-view:not([hidden])');
    await page.waitForSelector('#chart-nll canvas');
    await page.waitForSelector('#chart-grad canvas');
    await page.waitForSelector('#jv-result-status', { timeout: 60_000 });
    expect(await page.textContent('#jv-result-status')).toBe('HIT');
    await expect.poll(() => page.textContent(`#jobs tr[data-job-id="${jobId}"] .badge`), poll).toBe('HIT');

    // The job list followed the run: the row's iteration went up while it ran.
    const seen = await page.evaluate((id) => (window as unknown as { seenIterations: Record<string, number[]> }).seenIterations[id] ?? [], jobId);
    expect(seen.length).toBeGreaterThanOrEqual(2);
    expect(seen.every((v, i) => i === 0 || v > seen[i - 1]!)).toBe(true);

    // The page shows what the server has: every progress report plotted, the result's nearest tokens.
    const job = await client.getJob(jobId);
    const result = job.result!;
    const best = result.restarts[result.best]!;
    expect(best.iterationsToHit).toBeGreaterThan(10);
    expect(Number(await page.getAttribute('#chart-nll', 'data-points'))).toBe(best.iterations);
    expect(await page.textContent('#jv-result')).toContain(`hit at iteration ${best.iterationsToHit}`);
    expect(await page.locator('#jv-nearest tr').count()).toBe(2);
    expect(await page.textContent('#jv-nearest')).toContain(best.nearestTokens[0]!.tokens[0]!.text.replace(/ /g, '·'));
    expect(await page.locator('#jv-tokens .tok.right').count()).toBe(2);
    expect(await page.textContent('#jv-now .ok')).toBe('Hello world');

    // The download is a safetensors file of the best embedding, (P, C) = (2, 32).
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#jv-download')]);
    const file = path.join(server.dir, download.suggestedFilename());
    await download.saveAs(file);
    const header = readSafetensorsHeader(file);
    const tensor = header.tensors.find((t) => t.name === 'embedding')!;
    expect(tensor).toMatchObject({ dtype: 'F32', shape: [2, 32] });
    expect([...readTensorFloat32(tensor)]).toEqual([...Float32Array.from(best.embedding!.values)]);
    expect(header.metadata).toMatchObject({ status: 'HIT', target_text: 'Hello world', model: 'tiny', best_restart: '0' });

    expect(pageErrors).toEqual([]);
    await page.context().close();
  });

  it('opens a finished job with its whole history, also after a reload', async () => {
    const { jobId, progress, result } = await runJob('Hello world', { parameterization: 'full', seed: 1, maxIterations: 400 });
    expect(progress).toBe(result.restarts[0]!.iterations);

    const page = await openPage(`token=${aliceToken}&job=${jobId}`);
    await page.waitForSelector('#jv-result-status');
    await page.waitForSelector('#chart-nll canvas');
    await expect.poll(async () => Number(await page.getAttribute('#chart-nll', 'data-points')), poll).toBe(progress);
    expect(Number(await page.getAttribute('#chart-grad', 'data-points'))).toBe(progress);
    expect(await page.textContent('#jv-settings')).toContain('full, P = 2 (one per token)');

    await page.reload();
    await page.waitForSelector('#jv-result-status');
    await expect.poll(async () => Number(await page.getAttribute('#chart-nll', 'data-points')), poll).toBe(progress);
    expect(await page.textContent(`#jobs tr.selected`)).toContain('Hello world');

    // Every swatch of the tokens' colour legend says what it stands for: the text up to the next swatch.
    const swatchLabels = await page.evaluate(() => [...document.querySelectorAll('#job-view .legend .swatch')].map((swatch) => {
      let text = '';
      for (let n = swatch.nextSibling; n && !(n instanceof Element && n.classList.contains('swatch')); n = n.nextSibling) {
        text += n.textContent;
      }
      return text.trim();
    }));
    expect(swatchLabels).toHaveLength(3);
    for (const label of swatchLabels) expect(label).not.toBe('');
    expect(new Set(swatchLabels).size).toBe(3);
    expect(pageErrors).toEqual([]);
    await page.context().close();
  });

  it('plots each restart of a multi-restart job as its own curve', async () => {
    const { jobId, progress, result } = await runJob('Hello world', { parameterization: 'full', restarts: 3, maxIterations: 150 });
    const page = await openPage(`token=${aliceToken}&job=${jobId}`);
    await page.waitForSelector('#jv-result-status');
    await expect.poll(async () => Number(await page.getAttribute('#chart-nll', 'data-points')), poll).toBe(progress);
    const legend = await page.textContent('#chart-nll .u-legend');
    for (const r of [0, 1, 2]) expect(legend).toContain(`restart ${r}`);
    expect(await page.locator('#jv-result table.restarts tbody tr').count()).toBe(3);
    expect(await page.textContent('#jv-result')).toContain(`best of 3 restarts: restart ${result.best}`);
    expect(pageErrors).toEqual([]);
    await page.context().close();
  });

  it('refuses a wrong token: the page says so, the raw WebSocket gets 401', async () => {
    const page = await openPage('token=not-a-token-of-this-server', { expectErrors: true });
    await page.waitForSelector('#token-error:not([hidden])');
    expect(await page.textContent('#token-error')).toMatch(/refused this token \(unauthenticated: the bearer token is not valid/);
    expect(await page.isHidden('#app')).toBe(true);
    expect(await page.evaluate(() => localStorage.getItem('recite.token'))).toBeNull();

    // A browser's WebSocket with that token never opens.
    const opened = await page.evaluate((url) => new Promise<string>((resolve) => {
      const ws = new WebSocket(url, ['bearer.not-a-token-of-this-server']);
      ws.onopen = () => resolve('open');
      ws.onclose = (e) => resolve(`closed ${e.code}`);
    }), streamUrl(server.url));
    expect(opened).toBe('closed 1006');
    expect((await upgradeStatus(streamUrl(server.url), ['bearer.not-a-token-of-this-server'])).status).toBe(401);
    await page.context().close();
  });

  it('takes a #token= link in a tab that failed sign-in, with no reload by hand', async () => {
    // A server as `recite serve --tokens-file` starts it.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-tokens-'));
    const tokensFile = path.join(dir, 'tokens.txt');
    fs.writeFileSync(tokensFile, `${aliceToken} alice\n`);
    const own = await startTestServer({ dir, tokens: TokenTable.load(tokensFile, undefined) });
    try {
      const page = await openPage('token=a-token-this-server-does-not-have', { base: own.url, expectErrors: true });
      await page.waitForSelector('#token-error:not([hidden])');
      // The link changes only the address's fragment: the browser keeps the document and fires hashchange.
      await page.goto(`${own.url}/#token=${aliceToken}`);
      await page.locator('#who', { hasText: 'signed in as alice' }).waitFor({ timeout: soon.timeout });
      expect(await page.isHidden('#token-panel')).toBe(true);
      expect(await page.isVisible('#app')).toBe(true);
      expect(page.url()).not.toContain('token=');
      expect(await page.evaluate(() => localStorage.getItem('recite.token'))).toBe(aliceToken);
      await page.context().close();
    } finally {
      await own.close();
    }
  });

  it('brings the opened job into sight below a long list: after a click on a row, after Start, from a #job= link', async () => {
    const own = await startTestServer();
    try {
      const ownClient = createReciteClient(own.url, { token: aliceToken });
      const jobs = 40;
      const ids: string[] = [];
      for (let i = 0; i < jobs; i++) {
        ids.push((await ownClient.submitJob(`job number ${i}`, { parameterization: 'flat', maxIterations: 3 })).jobId);
      }
      const page = await openPage(`token=${aliceToken}`, { base: own.url });
      await expect.poll(() => page.textContent('#jobs-count'), poll).toBe(`(${jobs})`);
      // The list alone is taller than the window: a view opened below it starts out of sight.
      expect(await page.evaluate(() => document.querySelector('#jobs-panel')!.getBoundingClientRect().bottom > window.innerHeight)).toBe(true);

      await page.click(`#jobs tr[data-job-id="${ids.at(-1)}"]`); // the newest: the list's first row
      await expect.poll(() => jobHeadInView(page), soon).toBe(true);
      expect(await page.textContent('#jv-meta')).toContain(ids.at(-1));

      await page.evaluate(() => window.scrollTo(0, 0));
      await page.fill('#f-text', 'Hello world');
      await page.fill('#f-max', '5');
      await page.click('#f-submit');
      await expect.poll(() => new URL(page.url()).hash, poll).not.toBe(`#job=${ids.at(-1)}`);
      await expect.poll(() => jobHeadInView(page), soon).toBe(true);
      // The new job's row, added at the top of the list above the view, does not push the view away.
      await expect.poll(() => page.textContent('#jobs-count'), poll).toBe(`(${jobs + 1})`);
      expect(await jobHeadInView(page)).toBe(true);
      await page.context().close();

      const linked = await openPage(`token=${aliceToken}&job=${ids[0]}`, { base: own.url });
      await expect.poll(() => linked.textContent('#jobs-count'), poll).toBe(`(${jobs + 1})`);
      await expect.poll(() => jobHeadInView(linked), soon).toBe(true);
      expect(await linked.textContent('#jv-meta')).toContain(ids[0]);
      expect(pageErrors).toEqual([]);
      await linked.context().close();
    } finally {
      await own.close();
    }
  });

  it("labels a data set's jobs briefly: the data set's hash prefix and the row id", async () => {
    const datasets = createClient(DatasetService, createGrpcTransport({ baseUrl: server.url }));
    const submitted = await datasets.submitDataset({
      settings: { parameterization: { kind: { case: 'flat', value: {} } }, maxIterations: 20 },
      rows: [{ id: 'r0', target: { case: 'text', value: 'Hello world' } }, { id: 'r1', target: { case: 'text', value: 'Good morning' } }],
    }, { headers: { authorization: `Bearer ${aliceToken}` } });
    const name = submitted.dataset!.name; // no name given: the content hash
    const digest = /^sha256:([0-9a-f]{64})$/.exec(name)![1]!;
    let jobs: { jobId: string; label: string }[] = [];
    await expect.poll(async () => {
      jobs = (await client.listJobs({ pageSize: 100 })).filter((j) => j.label.startsWith(`${name}/`));
      return jobs.length;
    }, poll).toBe(2);
    const r0 = jobs.find((j) => j.label === `${name}/r0`)!;

    const page = await openPage(`token=${aliceToken}`);
    const cell = `#jobs tr[data-job-id="${r0.jobId}"] td.target`;
    await page.waitForSelector(cell);
    const text = (await page.textContent(cell))!;
    expect(text).toContain('Hello world');
    expect(text).toContain(`data set ${digest.slice(0, 8)}`);
    expect(text).toContain('row r0');
    expect(text).not.toContain(digest);
    expect(await page.getAttribute(cell, 'title')).toContain(r0.label); // the whole label on hover

    await page.click(cell);
    await page.waitForSelector('#jv-settings dt');
    const meta = (await page.textContent('#jv-meta'))!;
    expect(meta).toContain(`data set ${digest.slice(0, 8)} · row r0`);
    expect(meta).not.toContain(digest);
    expect(await page.textContent('#jv-settings')).toContain(r0.label); // the whole label among the settings
    expect(pageErrors).toEqual([]);
    await page.context().close();
  });

  it('fits a 420 px wide screen (the page and its tables) and takes the screenshots at 1400 and 420 px', async () => {
    // A few finished jobs of different kinds, then one that keeps running while the list is shown.
    await runJob([28630, 32471, 35967, 35967, 35967, 35967], { parameterization: 'flat', seed: 1, label: 'reachable-6' });
    await runJob('does it make sense to compare apples and oranges?', { parameterization: 'full', maxIterations: 300, seed: 2 });
    const cancelled = await client.submitJob('The quick brown fox', { parameterization: 'flat', maxIterations: 100000 });
    await client.cancelJob(cancelled.jobId);
    const featured = await runJob('Hello world', { parameterization: 'full', seed: 3, restarts: 2 });
    const running = await client.submitJob('recite me, one vector at a time', {
      parameterization: 'full', maxIterations: 100000, continueAfterHit: true, reportEvery: 5,
    });
    fs.mkdirSync(screenshots, { recursive: true });

    for (const [viewport, suffix] of [[wide, ''], [narrow, '-420']] as const) {
      const page = await openPage(`token=${aliceToken}`, { viewport });
      await page.waitForSelector(`#jobs tr[data-job-id="${running.jobId}"] .badge.running`);
      await expect.poll(async () => Number(await page.textContent(`#jobs tr[data-job-id="${running.jobId}"] td:nth-child(4)`)), poll).toBeGreaterThan(200);
      expect(await overflows(page), `${viewport.width} px, the job list`).toEqual([]);
      // The form and the list at 1400 px; at 420 px the phone's first screen.
      const jobsBottom = await page.locator('#jobs-panel').evaluate((e) => e.getBoundingClientRect().bottom);
      await page.screenshot({ path: path.join(screenshots, `dashboard-jobs${suffix}.png`),
        clip: { x: 0, y: 0, width: viewport.width, height: Math.min(Math.ceil(jobsBottom) + 16, viewport.height) } });

      await page.click(`#jobs tr[data-job-id="${featured.jobId}"]`);
      await page.waitForSelector('#jv-result-status');
      await page.waitForSelector('#jv-result table.restarts');
      await page.waitForSelector('#chart-grad canvas');
      await expect.poll(() => jobHeadInView(page), soon).toBe(true);
      expect(await overflows(page), `${viewport.width} px, a job`).toEqual([]);
      // The whole view at 1400 px; at 420 px (some 2,200 px tall) what the phone shows once the job is opened.
      const file = path.join(screenshots, `dashboard-job${suffix}.png`);
      if (viewport === wide) await page.locator('#job-view').screenshot({ path: file });
      else await page.screenshot({ path: file });
      await page.context().close();
    }

    await client.cancelJob(running.jobId);
    expect(pageErrors).toEqual([]);
  });
});
