// Crash and restart of `recite serve` in a child process: SIGKILL mid-job, then a restart on the same database,
// must leave every job's history one contiguous sequence (the iterations after the last checkpoint redone once)
// and finished jobs untouched; SIGTERM checkpoints running jobs, exits 0, and a restart resumes them where they
// stopped.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Code, ConnectError } from '@connectrpc/connect';
import type { Client } from '@connectrpc/connect';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteJobStore } from '../../server/store/sqlite-job-store.js';
import { ReciteService } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { JobEvent } from '../../sdk/gen/recite/v1/recite_pb.js';
import { authHeaders, reciteClient, spawnServe, stopServe } from './serve-process.js';
import type { ServeProcess } from './serve-process.js';

type Recite = Client<typeof ReciteService>;

const maxIterations = 600;
const checkpointEvery = 20; // iterations
// Ten tokens the tiny model does not recite quickly; a hit would not stop the job anyway.
const longSpec = {
  target: { case: 'text', value: 'does it make sense to compare apples and oranges?' },
  settings: { maxIterations, continueAfterHit: true, reportEvery: 1 },
} as const;
const shortSpec = {
  target: { case: 'text', value: 'Hello world' },
  settings: { maxIterations: 2000 },
} as const;

const servers: ServeProcess[] = [];

afterEach(async () => {
  for (const s of servers.splice(0)) await stopServe(s);
});

function tempDb(): string {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'recite-crash-')), 'recite.db');
}

async function serve(dbPath: string): Promise<ServeProcess> {
  const s = await spawnServe(dbPath, ['--checkpoint-every', String(checkpointEvery)]);
  servers.push(s);
  return s;
}

/** Watch a job from the start on a server just restarted: until it has resumed the job, the server says Unavailable. */
async function watchResumed(client: Recite, jobId: string): Promise<{ events: JobEvent[]; error?: unknown }> {
  for (let attempt = 0; ; attempt++) {
    const r = await watch(client, jobId);
    if (r.events.length > 0 || !r.error || ConnectError.from(r.error).code !== Code.Unavailable || attempt === 200) return r;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Read a job's events from `after` until the stream ends (at the result, or when the server goes away). */
async function watch(client: Recite, jobId: string,
  options: { after?: number; until?: (e: JobEvent) => boolean; onEvent?: (e: JobEvent) => void } = {}):
  Promise<{ events: JobEvent[]; error?: unknown }> {
  const events: JobEvent[] = [];
  const abort = new AbortController();
  try {
    for await (const r of client.watchJob({ jobId, afterSequence: options.after ?? 0 }, { headers: authHeaders, signal: abort.signal })) {
      events.push(r.event!);
      options.onEvent?.(r.event!);
      if (options.until?.(r.event!)) {
        abort.abort();
        break;
      }
    }
  } catch (error) {
    return { events, error };
  }
  return { events };
}

function progressAt(e: JobEvent, iteration: number): boolean {
  return e.kind.case === 'progress' && e.kind.value.iteration >= iteration;
}

/**
 * Check the history the way a reader relies on it: sequences 1..n, progress iterations 0, 1, 2, … once each, a
 * `started` after the restart that resumes right after the last progress before it, and a result after all
 * `maxIterations` iterations. Returns the resumed iteration.
 */
function checkResumedHistory(events: JobEvent[]): number {
  expect(events.map((e) => e.sequence)).toEqual(events.map((_, i) => i + 1));
  const iterations = events.flatMap((e) => (e.kind.case === 'progress' ? [e.kind.value.iteration] : []));
  expect(iterations).toEqual(Array.from({ length: maxIterations }, (_, i) => i));
  expect(events.filter((e) => e.kind.case === 'queued')).toHaveLength(1);
  const started = events.flatMap((e, i) => (e.kind.case === 'started' ? [{ i, resumed: e.kind.value.resumedFromIteration }] : []));
  expect(started.map((s) => s.resumed > 0)).toEqual([false, true]);
  const { i, resumed } = started[1]!;
  const before = events[i - 1]!;
  expect(before.kind.case).toBe('progress');
  expect(resumed).toBe((before.kind.value as { iteration: number }).iteration + 1);
  const last = events.at(-1)!;
  expect(last.kind.case).toBe('result');
  const result = last.kind.value as { restarts: { iterations: number }[] };
  expect(result.restarts[0]!.iterations).toBe(maxIterations);
  return resumed;
}

describe('recite serve killed and restarted on the same database', () => {
  it('SIGKILL mid-job: one contiguous history after the restart, finished jobs intact', async () => {
    const dbPath = tempDb();
    const first = await serve(dbPath);
    let client = reciteClient(first.url);

    // A job that finishes before the kill.
    let finishedId = '';
    for await (const r of client.invert({ spec: shortSpec }, { headers: authHeaders })) finishedId = r.jobId;
    const finishedBefore = await client.getJob({ jobId: finishedId }, { headers: authHeaders });
    expect(finishedBefore.job!.result?.restarts).toHaveLength(1);

    // A job killed mid-run.
    const { jobId } = await client.submitJob({ spec: longSpec }, { headers: authHeaders });
    // Kill between two checkpoints (every 20 iterations), so that some stored iterations must be redone.
    const live = await watch(client, jobId, { until: (e) => progressAt(e, 110) });
    const seenBeforeKill = (live.events.at(-1)!.kind.value as { iteration: number }).iteration;
    first.child.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');

    // What the killed server left: a history past its last checkpoint.
    const store = SqliteJobStore.open(dbPath);
    const stored = (await store.events(jobId)).map((e) => e.iteration ?? -1);
    const checkpoint = (await store.latestCheckpoint(jobId))!;
    await store.close();
    const storedLast = Math.max(...stored);
    const checkpointIteration = stored[checkpoint.sequence - 1]! + 1;
    // Events reach live readers before the store (at the next flush): the last one a reader saw may be lost.
    expect(storedLast).toBeGreaterThanOrEqual(100);
    expect(checkpointIteration).toBeGreaterThan(0);

    const second = await serve(dbPath);
    client = reciteClient(second.url);
    const { events, error } = await watchResumed(client, jobId);
    expect(error).toBeUndefined();
    const resumed = checkResumedHistory(events);
    // Resumed from the checkpoint: the iterations stored after it were recomputed without being shown again, and the
    // history continues right after the last stored one (each iteration once: checked above).
    expect(resumed).toBe(storedLast + 1);
    expect(checkpointIteration).toBeLessThanOrEqual(storedLast + 1);

    const finishedAfter = await client.getJob({ jobId: finishedId }, { headers: authHeaders });
    expect(finishedAfter).toEqual(finishedBefore);
    const job = await client.getJob({ jobId }, { headers: authHeaders });
    expect(job.job!.result!.restarts[0]!.iterations).toBe(maxIterations);
    console.log(`SIGKILL at iteration ${seenBeforeKill} (client's view), ${storedLast} (stored); resumed from the ` +
      `checkpoint at iteration ${checkpointIteration}: ${storedLast + 1 - checkpointIteration} iterations recomputed, ` +
      `not shown again; history ${events.length} events`);
  });

  it('SIGTERM mid-job: exits 0 promptly, and the restart resumes from the shutdown checkpoint', async () => {
    const dbPath = tempDb();
    const first = await serve(dbPath);
    let client = reciteClient(first.url);
    const { jobId } = await client.submitJob({ spec: longSpec }, { headers: authHeaders });
    let t0 = 0;
    const cut = await watch(client, jobId, {
      onEvent: (e) => {
        if (t0 === 0 && progressAt(e, 100)) {
          t0 = performance.now();
          first.child.kill('SIGTERM');
        }
      },
    });
    // The server ends the stream before it goes: come back later, after the last sequence received.
    expect(ConnectError.from(cut.error).code).toBe(Code.Unavailable);
    const seen = cut.events;
    const exit = await first.exited;
    const exitMs = performance.now() - t0;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(exitMs).toBeLessThan(5000);
    const lastSeen = seen.filter((e) => e.kind.case === 'progress').at(-1)!.kind.value as { iteration: number };
    expect(lastSeen.iteration).toBeLessThan(maxIterations - 1);

    const second = await serve(dbPath);
    client = reciteClient(second.url);
    const { events, error } = await watchResumed(client, jobId);
    expect(error).toBeUndefined();
    const resumed = checkResumedHistory(events);
    // The shutdown checkpoint covers every event the server had sent: nothing is redone.
    expect(resumed).toBeGreaterThanOrEqual(lastSeen.iteration + 1);
    expect(events.slice(0, seen.length)).toEqual(seen);
    console.log(`SIGTERM exit in ${exitMs.toFixed(0)} ms; last iteration streamed before shutdown ${lastSeen.iteration}; ` +
      `resumed from iteration ${resumed}`);

    const stopped = performance.now();
    second.child.kill('SIGTERM');
    expect(await second.exited).toEqual({ code: 0, signal: null });
    expect(performance.now() - stopped).toBeLessThan(5000);
  });
});
