// Storage faults are transient until proven otherwise. `recite serve` keeps its SQLite file on a small tmpfs made
// for the test; filling it up (SQLITE_FULL inside the hub's flush) once ended the process, and the restart that
// followed marked every resumable job FAILED for good. Now the server refuses new jobs (Unavailable), reports
// NOT_SERVING on health and recite_store_ready 0 in its metrics, retries, and when space returns every job
// finishes with one contiguous history, none lost and none FAILED, also across a restart while the disk was full.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from '../../sdk/gen/health/v1/health_pb.js';
import { DatasetService } from '../../sdk/gen/recite/v1/dataset_pb.js';
import { Status } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { JobEvent } from '../../sdk/gen/recite/v1/recite_pb.js';
import { authHeaders, reciteClient, spawnServe, stopServe } from '../crash/serve-process.js';
import type { ServeProcess } from '../crash/serve-process.js';

const tmpfsSize = '24m';
let mountDir = '';
let skipReason = '';

beforeAll(() => {
  mountDir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${tmpfsSize}`, 'tmpfs', mountDir], { stdio: 'pipe' });
  } catch (error: unknown) {
    skipReason = `cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): ${String((error as { stderr?: Buffer }).stderr ?? error).trim()}`;
  }
});

afterAll(() => {
  if (!skipReason) execFileSync('umount', ['-l', mountDir]);
});

const spec = {
  target: { case: 'text', value: 'does it make sense to compare apples and oranges?' },
  settings: { maxIterations: 1000, continueAfterHit: true, reportEvery: 1 },
} as const;

/** Write zeros into `file` until the file system is full; returns the bytes written. */
function fillUp(file: string): number {
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(64 * 1024);
  let written = 0;
  try {
    for (;;) written += fs.writeSync(fd, chunk);
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  } finally {
    fs.closeSync(fd);
  }
  return written;
}

async function healthOf(url: string): Promise<ServingStatus> {
  const health = createClient(Health, createGrpcTransport({ baseUrl: url }));
  return (await health.check({ service: '' })).status;
}

async function storeReadyMetric(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const match = /^recite_store_ready (\d+)$/m.exec(text);
  if (!match) throw new Error('no recite_store_ready in /metrics');
  return Number(match[1]);
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function history(url: string, jobId: string): Promise<JobEvent[]> {
  for (let attempt = 0; ; attempt++) {
    const events: JobEvent[] = [];
    try {
      for await (const r of reciteClient(url).watchJob({ jobId }, { headers: authHeaders, timeoutMs: 60_000 })) events.push(r.event!);
      return events;
    } catch (error: unknown) {
      // Unavailable until the job has resumed
      if (ConnectError.from(error).code !== Code.Unavailable || attempt > 300) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

describe('a full disk', () => {
  it('stops admissions, reports not-ready, and loses no job once space returns, across a restart', async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    const dbPath = path.join(mountDir, 'recite.db');
    const filler = path.join(mountDir, 'filler');
    let s: ServeProcess | undefined = await spawnServe(dbPath, ['--checkpoint-every', '20']);
    try {
      const client = reciteClient(s.url);
      const jobIds: string[] = [];
      for (let i = 0; i < 4; i++) jobIds.push((await client.submitJob({ spec }, { headers: authHeaders })).jobId);
      expect(await healthOf(s.url)).toBe(ServingStatus.SERVING);
      await waitFor('the jobs to run', async () =>
        ((await client.getJob({ jobId: jobIds[0]! }, { headers: authHeaders })).job?.lastProgress?.iteration ?? 0) > 10);

      // Full: the process stays, refuses new jobs and says so on health and in its metrics.
      const pid = s.pid;
      expect(fillUp(filler)).toBeGreaterThan(0);
      await waitFor('health NOT_SERVING', async () => (await healthOf(s!.url)) === ServingStatus.NOT_SERVING);
      expect(await storeReadyMetric(s.url)).toBe(0);
      const refused = ConnectError.from(await client.submitJob({ spec }, { headers: authHeaders }).catch((e: unknown) => e));
      expect(refused.code).toBe(Code.Unavailable);
      expect(refused.rawMessage).toMatch(/job store cannot be written .*SQLITE_FULL/);
      expect(s.stderr()).toContain('the job store cannot be written');
      // The data set store shares the file: its failed write is Unavailable too (transient), not Internal.
      const datasets = createClient(DatasetService, createGrpcTransport({ baseUrl: s.url }));
      const dataset = ConnectError.from(await datasets.submitDataset({ name: 'full', rows: [{ id: 'r0',
        target: { case: 'text', value: 'Hello world' } }] }, { headers: authHeaders }).catch((e: unknown) => e));
      expect(dataset.code).toBe(Code.Unavailable);

      // Killed while the disk is full, restarted on it: the resumes fail to write, and no job is marked FAILED.
      await stopServe(s, 'SIGKILL');
      s = await spawnServe(dbPath, ['--checkpoint-every', '20']);
      await waitFor('health NOT_SERVING after the restart', async () => (await healthOf(s!.url)) === ServingStatus.NOT_SERVING);
      for (const jobId of jobIds) {
        const { job } = await reciteClient(s.url).getJob({ jobId }, { headers: authHeaders });
        expect(job?.result?.status ?? Status.UNSPECIFIED).not.toBe(Status.FAILED);
      }

      // Space again: the same process writes again, resumes the jobs, and every one finishes.
      const restartedPid = s.pid;
      fs.rmSync(filler);
      await waitFor('health SERVING', async () => (await healthOf(s!.url)) === ServingStatus.SERVING);
      expect(await storeReadyMetric(s.url)).toBe(1);
      for (const jobId of jobIds) {
        const events = await history(s.url, jobId);
        expect(events.map((e) => e.sequence)).toEqual(events.map((_, i) => i + 1));
        const last = events.at(-1)!;
        expect(last.kind.case).toBe('result');
        if (last.kind.case === 'result') expect(last.kind.value.status).toBe(Status.MAX_ITERATIONS);
      }
      expect(s.child.exitCode).toBeNull();
      expect(s.pid).toBe(restartedPid);
      expect(pid).not.toBe(restartedPid);
      await reciteClient(s.url).submitJob({ spec: { target: { case: 'text', value: 'Hello world' } } }, { headers: authHeaders });
    } finally {
      await stopServe(s);
    }
  }, 180_000);
});
