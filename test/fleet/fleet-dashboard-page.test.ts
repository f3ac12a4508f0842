// The dashboard page of one server of a fleet, in real headless Chromium: a job submitted on another server (a
// worker; the page's server, `--role api`, runs no job) shows up in the page's job list, its view follows the run live
// (the NLL and gradient charts grow while the job still runs), and it ends on the page as a HIT with its target text.
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { authHeaders, reciteClient, serveToken } from '../crash/serve-process.js';
import { startFrontAndWorker } from './front-and-worker.js';
import { JobState } from '../../sdk/gen/recite/v1/recite_pb.js';

const chromiumPath = process.env.RECITE_CHROMIUM ?? '/usr/bin/chromium';
const poll = { timeout: 30_000, interval: 50 }; // expect.poll waits 1 s by default
const target = 'Hello world';
const iterations = 3000; // each one reported (continueAfterHit): some 7 s on two cores, long enough to watch it run

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** What the page showed of one job each time it changed: the row's badge and iteration, the view's chart and status. */
interface Seen { row?: string; rowIteration?: string; points?: number; status?: string }

describe('the dashboard page of one server of a fleet, in Chromium', () => {
  it('lists, follows live and finishes a job that another server accepted and runs', async () => {
    const { front, worker, close } = await startFrontAndWorker();
    cleanups.push(close);
    const browser: Browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
        '--disable-sync', '--no-first-run'],
    });
    cleanups.push(() => browser.close());
    const pageErrors: string[] = [];
    const page: Page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    page.on('pageerror', (error) => pageErrors.push(`${error.name}: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') pageErrors.push(message.text());
    });
    await page.goto(`${front.url}/#token=${serveToken}`);
    await expect.poll(() => page.textContent('#who'), poll).toBe('signed in as crash-client');
    await page.waitForSelector('#jobs-empty:not([hidden])'); // the stream's first job list came: empty

    // Record what the page shows of every job as it changes, from before the job exists.
    await page.evaluate(() => {
      const seen: Record<string, Seen[]> = {};
      (window as unknown as { seen: typeof seen }).seen = seen;
      const record = () => {
        const view = document.querySelector<HTMLElement>('#job-view')!;
        const viewed = view.hidden ? undefined : new URLSearchParams(location.hash.slice(1)).get('job');
        for (const row of Array.from(document.querySelectorAll<HTMLTableRowElement>('#jobs tbody tr'))) {
          const id = row.dataset.jobId!;
          const entry: Seen = { row: row.querySelector('.badge')!.textContent!,
            rowIteration: row.cells[3]!.textContent! };
          if (id === viewed) {
            entry.points = Number(document.querySelector<HTMLElement>('#chart-nll')!.dataset.points);
            entry.status = document.querySelector('#jv-status')!.textContent!;
          }
          const list = (seen[id] ??= []);
          const last = list.at(-1);
          if (!last || last.row !== entry.row || last.rowIteration !== entry.rowIteration || last.points !== entry.points ||
            last.status !== entry.status) list.push(entry);
        }
      };
      new MutationObserver(record).observe(document.querySelector('#app')!,
        { subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ['data-points', 'hidden'] });
    });

    // Submitted on the worker, which runs it: the page's server only reads it from the shared database.
    const workerClient = reciteClient(worker.url);
    const { jobId } = await workerClient.submitJob({ spec: {
      model: 'tiny', target: { case: 'text', value: target },
      settings: { parameterization: { kind: { case: 'full', value: {} } }, maxIterations: iterations, continueAfterHit: true },
    } }, { headers: authHeaders });

    const row = `#jobs tr[data-job-id="${jobId}"]`;
    await page.waitForSelector(row, { timeout: 20_000 });
    expect(await page.textContent(`${row} td.target`)).toBe(target);
    expect(await page.textContent(`${row} td.model`)).toBe('tiny');
    expect(await page.textContent('#jobs-count')).toBe('(1)');

    // Open it from the list: the view subscribes to its events on the page's server.
    await page.click(row);
    await expect.poll(() => new URL(page.url()).hash, poll).toBe(`#job=${jobId}`);
    await page.waitForSelector('#job-view:not([hidden])');
    await expect.poll(async () => Number(await page.getAttribute('#chart-nll', 'data-points')), poll).toBeGreaterThan(0);
    const pointsWhileRunning = Number(await page.getAttribute('#chart-nll', 'data-points'));
    // The job had not finished after the page drew part of its curve: the rest reached the page live.
    const { job: afterFirstPoints } = await workerClient.getJob({ jobId }, { headers: authHeaders });
    expect(afterFirstPoints!.state).toBe(JobState.RUNNING);
    expect(pointsWhileRunning).toBeLessThan(iterations);

    await page.waitForSelector('#jv-result-status', { timeout: 60_000 });
    // The page shows the result the worker stored, read back through the page's server.
    const { job: finished } = await reciteClient(front.url).getJob({ jobId }, { headers: authHeaders });
    expect(finished!.state).toBe(JobState.FINISHED);
    const best = finished!.result!.restarts[finished!.result!.best]!;
    expect(best.iterationsToHit).toBeGreaterThan(0);
    expect(best.iterations).toBe(iterations);
    expect(await page.textContent('#jv-result-status')).toBe('HIT');
    expect(await page.textContent('#jv-status')).toBe('HIT');
    expect(await page.textContent('#jv-result .result-head')).toContain(`hit at iteration ${best.iterationsToHit}`);
    const resultRows = await page.$$eval('#jv-result dl.kv dt', (dts) => Object.fromEntries(
      dts.map((dt) => [dt.textContent, dt.nextElementSibling!.textContent])));
    expect(resultRows.iterations).toBe(String(iterations));
    expect(resultRows.decoded).toContain(target);
    // Every progress report of the run is plotted, once.
    expect(Number(await page.getAttribute('#chart-nll', 'data-points'))).toBe(iterations);
    expect(Number(await page.getAttribute('#chart-grad', 'data-points'))).toBe(iterations);
    expect(await page.textContent('#jv-title')).toContain(target);
    expect(await page.textContent('#jv-now .ok')).toBe(target);
    expect(await page.locator('#jv-tokens .tok.right').count()).toBe(2);
    // The list's row ends on the same result: HIT, the iteration of the hit, every token right.
    await expect.poll(() => page.textContent(`${row} .badge`), poll).toBe('HIT');
    expect(await page.textContent(`${row} td.target`)).toBe(target);
    expect(await page.textContent(`${row} td:nth-child(4)`)).toBe(String(best.iterationsToHit));
    expect(await page.textContent(`${row} td:nth-child(6)`)).toBe('2/2');

    const seen = await page.evaluate((id) => (window as unknown as { seen: Record<string, Seen[]> }).seen[id] ?? [], jobId);
    // The list followed the run: the row said running, its iteration rising, before it said HIT. (The list re-reads a
    // job run on another server about once a second, at every tenth batch the worker writes.)
    const badges = [...new Set(seen.map((s) => s.row))];
    expect(badges.at(-1)).toBe('HIT');
    expect(badges).toContain('running');
    const rowIterations = seen.filter((s) => s.row === 'running').map((s) => Number(s.rowIteration)).filter(Number.isFinite);
    expect(new Set(rowIterations).size).toBeGreaterThanOrEqual(2);
    expect(rowIterations.every((v, i) => v > 0 && v < iterations && (i === 0 || v >= rowIterations[i - 1]!))).toBe(true);
    // The view's curve grew over several redraws while its status said running.
    const running = seen.filter((s) => s.status === 'running' && s.points! > 0).map((s) => s.points!);
    expect(new Set(running).size).toBeGreaterThanOrEqual(3);
    expect(running.every((v, i) => v <= iterations && (i === 0 || v >= running[i - 1]!))).toBe(true);
    expect(pageErrors).toEqual([]);
  }, 90_000);
});
