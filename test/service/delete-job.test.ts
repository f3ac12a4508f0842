// DeleteJob on a real server: a finished job goes with its events and checkpoint (GetJob and WatchJob then say
// NOT_FOUND, ListJobs leaves it out); a running one is refused with FAILED_PRECONDITION and runs on; another
// client's job is NOT_FOUND, as for GetJob; an admin deletes any client's finished job.
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenTable } from '../../server/service/auth.js';
import { JobState } from '../../sdk/gen/recite/v1/recite_pb.js';
import { createReciteClient } from '../../sdk/node.js';
import type { TestServer } from '../helpers/test-server.js';
import { startTestServer } from '../helpers/test-server.js';
import type { ReciteClient } from './service-fixtures.js';
import {
  aliceToken, bearer, bobToken, drain, endlessSpec, errorOf, helloSpec, networkTransport, reciteClient, waitFor,
} from './service-fixtures.js';

const carolToken = 'carol-token-0123456789abcdef';
const alice = bearer(aliceToken);
const bob = bearer(bobToken);
const carol = bearer(carolToken);

let server: TestServer;
let c: ReciteClient;

beforeAll(async () => {
  const tokens = new TokenTable(new Map([[aliceToken, 'alice'], [bobToken, 'bob'], [carolToken, 'carol']]),
    new Map([['carol', { admin: true }]]));
  server = await startTestServer({ tokens });
  c = reciteClient(networkTransport('connect', server.url));
});

afterAll(async () => {
  await server.close();
});

/** Run "Hello world" to its result for `who`; returns the job's id. */
async function finishedJob(who: { headers: Record<string, string> }): Promise<string> {
  const { jobIds } = await drain(c.invert({ spec: helloSpec }, who));
  return [...jobIds][0]!;
}

describe('DeleteJob', () => {
  it('deletes a finished job with its events: GetJob and WatchJob say NOT_FOUND, ListJobs leaves it out', async () => {
    const jobId = await finishedJob(alice);
    expect((await server.server.store.events(jobId)).length).toBeGreaterThan(1);
    expect(await c.deleteJob({ jobId }, alice)).toMatchObject({});

    const missing = await errorOf(c.getJob({ jobId }, alice));
    expect(missing.code).toBe(Code.NotFound);
    expect(missing.rawMessage).toBe(`job_id: no job "${jobId}" for this client`);
    expect((await errorOf(drain(c.watchJob({ jobId }, alice)))).code).toBe(Code.NotFound);
    expect((await c.listJobs({ pageSize: 1000 }, alice)).jobs.map((j) => j.jobId)).not.toContain(jobId);
    expect(await server.server.store.getJob(jobId)).toBeUndefined();
    expect(await server.server.store.events(jobId)).toEqual([]);
    expect(await server.server.store.latestCheckpoint(jobId)).toBeUndefined();

    const again = await errorOf(c.deleteJob({ jobId }, alice));
    expect(again.code).toBe(Code.NotFound);
    expect(again.rawMessage).toBe(`job_id: no job "${jobId}" for this client`);
  });

  it('refuses a running job with FAILED_PRECONDITION, naming it and its state, and the job runs on', async () => {
    const { jobId } = await c.submitJob({ spec: endlessSpec }, alice);
    await waitFor(async () => (await c.getJob({ jobId }, alice)).job!.state === JobState.RUNNING, 20_000, 'the job to start');
    const refused = await errorOf(c.deleteJob({ jobId }, alice));
    expect(refused.code).toBe(Code.FailedPrecondition);
    expect(refused.rawMessage).toBe(`job_id: job "${jobId}" is RUNNING; only a finished job can be deleted: cancel it ` +
      'first (CancelJob), then delete it once it has finished');
    const before = (await c.getJob({ jobId }, alice)).job!.lastProgress?.iteration ?? 0;
    await waitFor(async () => ((await c.getJob({ jobId }, alice)).job!.lastProgress?.iteration ?? 0) > before, 20_000,
      'the job to report progress after the refused delete');
    expect((await c.getJob({ jobId }, alice)).job!.state).toBe(JobState.RUNNING);

    await c.cancelJob({ jobId }, alice);
    await waitFor(async () => (await c.getJob({ jobId }, alice)).job!.state === JobState.FINISHED, 20_000, 'the cancel');
    await c.deleteJob({ jobId }, alice);
    expect((await errorOf(c.getJob({ jobId }, alice))).code).toBe(Code.NotFound);
  });

  it('reports another client\'s job as NOT_FOUND, exactly as GetJob does, and leaves it', async () => {
    const bobs = await finishedJob(bob);
    const asGet = await errorOf(c.getJob({ jobId: bobs }, alice));
    const asDelete = await errorOf(c.deleteJob({ jobId: bobs }, alice));
    expect(asDelete.code).toBe(Code.NotFound);
    expect(asDelete.rawMessage).toBe(asGet.rawMessage);
    const absent = await errorOf(c.deleteJob({ jobId: '00000000-0000-0000-0000-000000000000' }, alice));
    expect(absent.rawMessage).toBe('job_id: no job "00000000-0000-0000-0000-000000000000" for this client');
    expect((await c.getJob({ jobId: bobs }, bob)).job!.state).toBe(JobState.FINISHED);
  });

  it('lets an admin delete another client\'s finished job', async () => {
    const bobs = await finishedJob(bob);
    await c.deleteJob({ jobId: bobs }, carol);
    expect((await errorOf(c.getJob({ jobId: bobs }, bob))).code).toBe(Code.NotFound);
    expect(await server.server.store.getJob(bobs)).toBeUndefined();
  });

  it('checks job_id as CancelJob does', async () => {
    const empty = await errorOf(c.deleteJob({ jobId: '' }, alice));
    expect(empty.code).toBe(Code.InvalidArgument);
    expect((await errorOf(c.deleteJob({ jobId: 'x'.repeat(101) }, alice))).code).toBe(Code.InvalidArgument);
  });

  it('is deleteJob in the SDK', async () => {
    const jobId = await finishedJob(alice);
    const sdk = createReciteClient(server.url, { token: aliceToken });
    await sdk.deleteJob(jobId);
    expect((await errorOf(sdk.getJob(jobId))).code).toBe(Code.NotFound);
  });
});
