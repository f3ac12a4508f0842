// The dashboard of any server shows the whole fleet: its /ws stream (what the page draws from) lists a job submitted
// on another server as it arrives, runs and finishes, and streams that job's events, numbered 1..n, to the result.
import { describe, expect, it, afterAll } from 'vitest';
import { reciteClient, serveToken, authHeaders } from '../crash/serve-process.js';
import { startFrontAndWorker } from './front-and-worker.js';
import { openStream } from '../dashboard/ws-client.js';
import type { ServerMessage } from '../dashboard/ws-client.js';

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const isEventOf = (jobId: string, kind?: string) => (m: ServerMessage) =>
  m.type === 'event' && m.jobId === jobId && (kind === undefined || kind in m.event);

describe('the dashboard of one server of a fleet', () => {
  it('lists and streams a job that another server accepted and runs', async () => {
    const { front, worker, close } = await startFrontAndWorker();
    cleanups.push(close);
    const page = await openStream(front.url, serveToken);
    cleanups.push(() => page.close());
    page.send({ type: 'subscribe_jobs' });
    await page.next((m) => m.type === 'jobs');

    // Submitted on the worker (it runs it); the front server runs no job at all.
    const { jobId } = await reciteClient(worker.url).submitJob({ spec: {
      model: 'tiny', target: { case: 'text', value: 'Hello world' },
      settings: { parameterization: { kind: { case: 'full', value: {} } }, maxIterations: 400, continueAfterHit: true },
    } }, { headers: authHeaders });
    await page.next((m) => m.type === 'job' && m.job.jobId === jobId, { timeoutMs: 20_000 });
    page.send({ type: 'subscribe', jobId, afterSequence: 0 });
    const { index: resultAt } = await page.next(isEventOf(jobId, 'result'), { timeoutMs: 60_000 });
    const events = page.messages.slice(0, resultAt + 1).filter(isEventOf(jobId)).map((m) => m.event as { sequence: number });
    expect(events.map((e) => e.sequence)).toEqual(events.map((_, i) => i + 1));
    expect(events.filter((e) => 'progress' in e)).toHaveLength(400);
    const { message: finished } = await page.next((m) => m.type === 'job' && m.job.jobId === jobId &&
      m.job.state === 'JOB_STATE_FINISHED', { timeoutMs: 20_000 });
    expect(finished.job.targetText).toBe('Hello world');
  }, 120_000);
});
