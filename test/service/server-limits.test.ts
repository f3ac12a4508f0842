// The server's own settings limits on real servers (the tiny model, a SQLite file in a temp folder): a server with
// looser limits than the defaults runs a job the defaults would refuse, to its result; a server restarted with
// tighter limits still lists and resumes the jobs it stored under the old ones, and refuses only new submissions
// over the new limits, naming the field, the value and the limit.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Code } from '@connectrpc/connect';
import { afterAll, describe, expect, it } from 'vitest';
import { inversionLimits } from '../../server/engine/settings.js';
import { JobState, Status } from '../../sdk/gen/recite/v1/recite_pb.js';
import { startTestServer } from '../helpers/test-server.js';
import type { ReciteClient, Spec } from './service-fixtures.js';
import { aliceToken, bearer, errorOf, networkTransport, reciteClient, waitFor } from './service-fixtures.js';

const alice = bearer(aliceToken);

/** "Hello world" optimized as one flat vector: `restarts` restarts of `maxIterations` each, never stopping early. */
function spec(restarts: number, maxIterations: number, reportEvery = 1): Spec {
  return {
    target: { case: 'text', value: 'Hello world' },
    settings: {
      parameterization: { kind: { case: 'flat', value: {} } }, restarts, maxIterations, continueAfterHit: true, reportEvery,
    },
  };
}

async function finished(c: ReciteClient, jobId: string, timeoutMs = 60_000) {
  await waitFor(async () => (await c.getJob({ jobId }, alice)).job!.state === JobState.FINISHED, timeoutMs,
    `job ${jobId} to finish`);
  return (await c.getJob({ jobId }, alice)).job!;
}

const dirs: string[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-limits-'));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

describe('a server with looser limits than the defaults', () => {
  it('accepts 65 restarts (the default limit is 64) and runs them all to the result', async () => {
    expect(inversionLimits.maxRestarts).toBe(64);
    const server = await startTestServer({ dir: tempDir(), limits: { ...inversionLimits, maxRestarts: 100 } });
    try {
      const c = reciteClient(networkTransport('connect', server.url));
      const { jobId } = await c.submitJob({ spec: spec(65, 2) }, alice);
      const job = await finished(c, jobId);
      expect(job.result!.status).not.toBe(Status.FAILED);
      expect(job.result!.restarts).toHaveLength(65);
      expect(job.result!.restarts.map((r) => r.status)).not.toContain(Status.FAILED);
      expect(job.result!.restarts.every((r) => r.iterations === 2)).toBe(true);
      expect(job.settings!.restarts).toBe(65);
    } finally {
      await server.close();
    }
  });
});

describe('a server restarted with tighter limits', () => {
  it('lists and resumes the jobs stored under the old limits and refuses a new job over the new ones', async () => {
    const dir = tempDir();
    // Under the defaults: one job finished, one still running when the server stops (3 restarts each).
    const before = await startTestServer({ dir });
    const c1 = reciteClient(networkTransport('connect', before.url));
    const done = (await c1.submitJob({ spec: spec(3, 5) }, alice)).jobId;
    await finished(c1, done);
    const long = 3000;
    const unfinished = (await c1.submitJob({ spec: spec(3, long, 100) }, alice)).jobId;
    await waitFor(async () => (await c1.getJob({ jobId: unfinished }, alice)).job!.lastProgress !== undefined, 30_000,
      'the long job to report progress');
    expect((await c1.getJob({ jobId: unfinished }, alice)).job!.state).not.toBe(JobState.FINISHED);
    await before.close();

    const after = await startTestServer({ dir, limits: { ...inversionLimits, maxRestarts: 2 } });
    try {
      const c = reciteClient(networkTransport('connect', after.url));
      const listed = (await c.listJobs({}, alice)).jobs;
      expect(listed.map((j) => j.jobId).sort()).toEqual([done, unfinished].sort());
      for (const job of listed) expect(job.settings!.restarts).toBe(3); // as applied, though over today's limit
      const stored = (await c.getJob({ jobId: done }, alice)).job!;
      expect(stored.state).toBe(JobState.FINISHED);
      expect(stored.result!.restarts).toHaveLength(3);
      // The unfinished job resumes under the new limits and ends with all three restarts run in full.
      const resumed = await finished(c, unfinished, 120_000);
      expect(resumed.result!.status).not.toBe(Status.FAILED);
      expect(resumed.result!.restarts.map((r) => r.iterations)).toEqual([long, long, long]);
      expect(resumed.settings!.restarts).toBe(3);
      // A new job asking for what the old limits allowed is refused, naming the field, the value and the limit.
      const refused = await errorOf(c.submitJob({ spec: spec(3, 5) }, alice));
      expect(refused.code).toBe(Code.InvalidArgument);
      expect(refused.rawMessage).toBe('spec.settings.restarts: 3 is not an integer in [1, 2]');
      // Within the new limits a new job still runs.
      const small = (await c.submitJob({ spec: spec(2, 5) }, alice)).jobId;
      expect((await finished(c, small)).result!.restarts).toHaveLength(2);
    } finally {
      await after.close();
    }
  });
});
