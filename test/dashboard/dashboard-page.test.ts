// The dashboard page in real headless Chromium against a real server on port 0 with the tiny model: start a job
// from the form and watch it converge, open a finished job and see its whole history, refuse a wrong token.
// The run also takes the screenshots of docs/dashboard.md (docs/dashboard-jobs.png, docs/dashboard-job.png).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReciteClient } from '../../sdk/index.js';
import type { ReciteClient, ResultEvent } from '../../sdk/index.js';
import { readSafetensorsHeader, readTensorFloat32 } from '../../server/model/safetensors.js';
import type { TestServer } from '../helpers/test-server.js';
import { aliceToken, startTestServer } from '../helpers/test-server.js';
import { streamUrl, upgradeStatus } from './ws-client.js';

const docs = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs');
const poll = { timeout: 30_000, interval: 50 }; // expect.poll waits 1 s by default
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

  async function openPage(hash: string, { expectErrors = false } = {}): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
    const page = await context.newPage();
    page.on('pageerror', (error) => pageErrors.push(`${error.name}: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error' && !expectErrors) pageErrors.push(message.text());
    });
    await page.goto(`${server.url}/#${hash}`);
    return page;
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

  it('takes the screenshots of the job list and of a job', async () => {
    // A few finished jobs of different kinds, then one that keeps running while the list is shown.
    await runJob([28630, 32471, 35967, 35967, 35967, 35967], { parameterization: 'flat', seed: 1, label: 'reachable-6' });
    await runJob('does it make sense to compare apples and oranges?', { parameterization: 'full', maxIterations: 300, seed: 2 });
    const cancelled = await client.submitJob('The quick brown fox', { parameterization: 'flat', maxIterations: 100000 });
    await client.cancelJob(cancelled.jobId);
    const featured = await runJob('Hello world', { parameterization: 'full', seed: 3 });
    const running = await client.submitJob('recite me, one vector at a time', {
      parameterization: 'full', maxIterations: 100000, continueAfterHit: true, reportEvery: 5,
    });

    const page = await openPage(`token=${aliceToken}`);
    await page.waitForSelector(`#jobs tr[data-job-id="${running.jobId}"] .badge.running`);
    await expect.poll(async () => Number(await page.textContent(`#jobs tr[data-job-id="${running.jobId}"] td:nth-child(4)`)), poll).toBeGreaterThan(200);
    fs.mkdirSync(docs, { recursive: true });
    const jobsBottom = await page.locator('#jobs-panel').evaluate((e) => e.getBoundingClientRect().bottom);
    await page.screenshot({ path: path.join(docs, 'dashboard-jobs.png'), clip: { x: 0, y: 0, width: 1280, height: Math.ceil(jobsBottom) + 16 } });

    await page.click(`#jobs tr[data-job-id="${featured.jobId}"]`);
    await page.waitForSelector('#jv-result-status');
    await page.waitForSelector('#chart-grad canvas');
    await page.evaluate(() => document.querySelector('#job-view')!.scrollIntoView());
    await page.locator('#job-view').screenshot({ path: path.join(docs, 'dashboard-job.png') });

    await client.cancelJob(running.jobId);
    expect(pageErrors).toEqual([]);
    await page.context().close();
  });
});
