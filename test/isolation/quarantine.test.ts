// A job whose resume fails again is quarantined: when the server stops uncleanly while a resumed job runs from its
// checkpoint, and the next start finds no newer checkpoint, the job ends FAILED with the reason instead of being
// resumed again (a job that kills the server would otherwise kill every restart). A clean stop (SIGTERM) is not a
// failure: its jobs resume as often as the server restarts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { JobState, Status } from '../../sdk/gen/recite/v1/recite_pb.js';
import { authHeaders, reciteClient, spawnServe, stopServe } from '../crash/serve-process.js';
import type { ServeProcess } from '../crash/serve-process.js';

const servers: ServeProcess[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await stopServe(s);
});

const longSpec = {
  target: { case: 'text', value: 'does it make sense to compare apples and oranges?' },
  settings: { maxIterations: 100_000, continueAfterHit: true, reportEvery: 1 },
} as const;

async function serve(dbPath: string, checkpointEvery: number): Promise<ServeProcess> {
  const s = await spawnServe(dbPath, ['--checkpoint-every', String(checkpointEvery)]);
  servers.push(s);
  return s;
}

/**
 * Wait until this process runs the job past `iteration`: WatchJob answers Unavailable until the job has resumed, and
 * then streams its history as resumed (the summary GetJob shows could be the last process's).
 */
async function waitRunning(url: string, jobId: string, iteration = 0): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const abort = new AbortController();
    try {
      for await (const r of reciteClient(url).watchJob({ jobId }, { headers: authHeaders, signal: abort.signal })) {
        if (r.event?.kind.case === 'progress' && r.event.kind.value.iteration > iteration) {
          abort.abort();
          return;
        }
      }
    } catch {
      // not resumed yet
    }
    if (Date.now() > deadline) throw new Error(`job ${jobId} did not run past iteration ${iteration}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('resume of a job that failed again', () => {
  it('is quarantined after an unclean stop during its resume with no newer checkpoint', async () => {
    const dbPath = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'recite-quarantine-')), 'recite.db');
    // no checkpoint within the test: every resume starts from the job's beginning
    let s = await serve(dbPath, 1_000_000);
    const { jobId } = await reciteClient(s.url).submitJob({ spec: longSpec }, { headers: authHeaders });
    await waitRunning(s.url, jobId);
    await stopServe(s, 'SIGKILL'); // the first failure
    s = await serve(dbPath, 1_000_000);
    await waitRunning(s.url, jobId, 5); // resumed, and running from its checkpoint
    await stopServe(s, 'SIGKILL'); // the resume failed too
    s = await serve(dbPath, 1_000_000);
    const events = [];
    for await (const r of reciteClient(s.url).watchJob({ jobId }, { headers: authHeaders, timeoutMs: 20_000 })) events.push(r.event!);
    const last = events.at(-1)!;
    expect(last.kind.case).toBe('result');
    if (last.kind.case !== 'result') return;
    expect(last.kind.value.status).toBe(Status.FAILED);
    expect(last.kind.value.restarts[0]!.error).toMatch(/^quarantined: /);
    expect(s.stderr()).toMatch(new RegExp(`"jobId":"${jobId}".*"msg":"job quarantined"`));
  }, 90_000);

  it('is not quarantined after clean stops', async () => {
    const dbPath = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'recite-quarantine-')), 'recite.db');
    let s = await serve(dbPath, 1_000_000);
    const { jobId } = await reciteClient(s.url).submitJob({ spec: longSpec }, { headers: authHeaders });
    await waitRunning(s.url, jobId);
    for (let restart = 0; restart < 2; restart++) {
      await stopServe(s, 'SIGTERM');
      s = await serve(dbPath, 1_000_000);
      await waitRunning(s.url, jobId, 5);
    }
    const { job } = await reciteClient(s.url).getJob({ jobId }, { headers: authHeaders });
    expect(job?.state).toBe(JobState.RUNNING);
  }, 90_000);
});
