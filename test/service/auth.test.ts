// Bearer-token auth on a real server: no token, a wrong token and a malformed header are refused for every
// ReciteService RPC before it does anything; another client's token finds none of alice's jobs (NotFound, the same
// answer as for a job that does not exist); the health service needs no token.
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthCheckResponse_ServingStatus as ServingStatus } from '../../sdk/gen/health/v1/health_pb.js';
import { JobState, Status } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { TestServer } from '../helpers/test-server.js';
import { startTestServer } from '../helpers/test-server.js';
import type { Protocol, ReciteClient } from './service-fixtures.js';
import {
  aliceToken, bearer, bobToken, drain, endlessSpec, errorOf, healthClient, helloSpec, networkTransport,
  reciteClient,
} from './service-fixtures.js';

const missingMessage = 'missing bearer token: send "authorization: Bearer <token>"';
const invalidMessage = 'the bearer token is not valid on this server';

let server: TestServer;
let client: ReciteClient;
const alice = bearer(aliceToken);
const bob = bearer(bobToken);

beforeAll(async () => {
  server = await startTestServer();
  client = reciteClient(networkTransport('connect', server.url));
});

afterAll(async () => {
  await server.close();
});

type CallOptions = { headers?: Record<string, string> };

// One call per ReciteService RPC, each a request that would succeed with alice's token.
const calls: [string, (c: ReciteClient, o: CallOptions) => Promise<unknown>][] = [
  ['Invert', (c, o) => drain(c.invert({ spec: helloSpec }, o))],
  ['SubmitJob', (c, o) => c.submitJob({ spec: helloSpec }, o)],
  ['WatchJob', (c, o) => drain(c.watchJob({ jobId: 'any' }, o))],
  ['GetJob', (c, o) => c.getJob({ jobId: 'any' }, o)],
  ['ListJobs', (c, o) => c.listJobs({}, o)],
  ['CancelJob', (c, o) => c.cancelJob({ jobId: 'any' }, o)],
  ['DeleteJob', (c, o) => c.deleteJob({ jobId: 'any' }, o)],
  ['Decode', (c, o) => c.decode({ embedding: { shape: [1, 32], values: new Array<number>(32).fill(0) }, maxTokens: 1 }, o)],
  ['Tokenize', (c, o) => c.tokenize({ text: 'Hello' }, o)],
  ['ListModels', (c, o) => c.listModels({}, o)],
];

const refusals: [string, CallOptions, string][] = [
  ['no authorization header', {}, missingMessage],
  ['an empty bearer', { headers: { authorization: 'Bearer ' } }, missingMessage],
  ['another scheme', { headers: { authorization: `Basic ${aliceToken}` } }, missingMessage],
  ['two words after Bearer', { headers: { authorization: `Bearer ${aliceToken} extra` } }, missingMessage],
  ['an unknown token', bearer('mallory-token-0123456789abcdef'), invalidMessage],
  ['a prefix of a real token', bearer(aliceToken.slice(0, -1)), invalidMessage],
  ['a real token with one character changed', bearer(`${aliceToken.slice(0, -1)}X`), invalidMessage],
];

describe('a request without a valid token', () => {
  describe.each(refusals)('with %s', (_what, options, message) => {
    it.each(calls)('%s is Unauthenticated and does nothing', async (_rpc, call) => {
      const jobsBefore = (await server.server.store.listJobs('alice', { limit: 1000 })).length + server.server.hub.liveJobs;
      const error = await errorOf(call(client, options));
      expect(error.code).toBe(Code.Unauthenticated);
      expect(error.rawMessage).toBe(message);
      expect((await server.server.store.listJobs('alice', { limit: 1000 })).length + server.server.hub.liveJobs).toBe(jobsBefore);
    });
  });

  it.each(['grpc', 'grpc-web'] as Protocol[])('is refused the same way over %s', async (protocol) => {
    const other = reciteClient(networkTransport(protocol, server.url));
    const missing = await errorOf(other.submitJob({ spec: helloSpec }));
    expect(missing.code).toBe(Code.Unauthenticated);
    expect(missing.rawMessage).toBe(missingMessage);
    const wrong = await errorOf(drain(other.invert({ spec: helloSpec }, bearer('wrong-token-0123456789abcdef'))));
    expect(wrong.code).toBe(Code.Unauthenticated);
    expect(wrong.rawMessage).toBe(invalidMessage);
  });

  it('accepts the scheme in any case', async () => {
    const { ids } = await client.tokenize({ text: 'Hello world' }, { headers: { authorization: `bearer ${aliceToken}` } });
    expect(ids).toEqual([15496, 995]);
  });
});

describe("another client's token", () => {
  let finishedJob = '';
  let runningJob = '';

  beforeAll(async () => {
    const { jobIds } = await drain(client.invert({ spec: helloSpec }, alice));
    finishedJob = [...jobIds][0]!;
    runningJob = (await client.submitJob({ spec: endlessSpec }, alice)).jobId;
  });

  afterAll(async () => {
    await client.cancelJob({ jobId: runningJob }, alice);
  });

  const jobCalls: [string, (jobId: string) => Promise<unknown>][] = [
    ['WatchJob', (jobId) => drain(client.watchJob({ jobId }, bob))],
    ['GetJob', (jobId) => client.getJob({ jobId }, bob)],
    ['CancelJob', (jobId) => client.cancelJob({ jobId }, bob)],
    ['DeleteJob', (jobId) => client.deleteJob({ jobId }, bob)],
  ];

  it.each(jobCalls)("%s of alice's jobs is NotFound, worded as for a job that does not exist", async (_rpc, call) => {
    for (const jobId of [finishedJob, runningJob]) {
      const error = await errorOf(call(jobId));
      expect(error.code).toBe(Code.NotFound);
      expect(error.rawMessage).toBe(`job_id: no job "${jobId}" for this client`);
    }
    const missing = await errorOf(call('00000000-0000-4000-8000-000000000000'));
    expect(missing.code).toBe(Code.NotFound);
    expect(missing.rawMessage).toBe('job_id: no job "00000000-0000-4000-8000-000000000000" for this client');
  });

  it("leaves alice's running job running after bob's CancelJob", async () => {
    await errorOf(client.cancelJob({ jobId: runningJob }, bob));
    await new Promise((resolve) => setTimeout(resolve, 200));
    const { job } = await client.getJob({ jobId: runningJob }, alice);
    expect(job!.state).toBe(JobState.RUNNING);
    expect(job!.result).toBeUndefined();
  });

  it("does not show alice's jobs in bob's ListJobs, and shows bob's own", async () => {
    const aliceJobs = (await client.listJobs({}, alice)).jobs.map((j) => j.jobId);
    expect(aliceJobs).toEqual(expect.arrayContaining([finishedJob, runningJob]));
    expect((await client.listJobs({}, bob)).jobs).toEqual([]);

    const { jobIds } = await drain(client.invert({ spec: helloSpec }, bob));
    const bobJob = [...jobIds][0]!;
    const bobJobs = (await client.listJobs({}, bob)).jobs;
    expect(bobJobs.map((j) => j.jobId)).toEqual([bobJob]);
    expect(bobJobs[0]!.result!.status).toBe(Status.HIT);
    expect((await client.listJobs({}, alice)).jobs.map((j) => j.jobId)).not.toContain(bobJob);
    // and alice cannot reach bob's job either
    expect((await errorOf(client.getJob({ jobId: bobJob }, alice))).code).toBe(Code.NotFound);
  });

  it("does not page from alice's jobs with before_job_id: NotFound, as for an id that does not exist", async () => {
    for (const jobId of [runningJob, finishedJob, '00000000-0000-4000-8000-000000000000']) {
      const error = await errorOf(client.listJobs({ beforeJobId: jobId }, bob));
      expect(error.code).toBe(Code.NotFound);
      expect(error.rawMessage).toBe(`before_job_id: no job "${jobId}" for this client`);
    }
    // alice herself pages from her running job to the older finished one
    const { jobs } = await client.listJobs({ beforeJobId: runningJob }, alice);
    expect(jobs.map((j) => j.jobId)).toContain(finishedJob);
    expect(jobs.map((j) => j.jobId)).not.toContain(runningJob);
  });
});

describe('the health service', () => {
  it.each(['connect', 'grpc', 'grpc-web'] as Protocol[])('answers over %s without a token', async (protocol) => {
    const health = healthClient(networkTransport(protocol, server.url));
    expect((await health.check({})).status).toBe(ServingStatus.SERVING);
    expect((await health.check({ service: 'recite.v1.ReciteService' })).status).toBe(ServingStatus.SERVING);
    const list = await health.list({});
    expect(list.statuses['recite.v1.ReciteService']?.status).toBe(ServingStatus.SERVING);
  });

  it('streams Watch without a token', async () => {
    const health = healthClient(networkTransport('connect', server.url));
    const controller = new AbortController();
    const statuses: ServingStatus[] = [];
    const error = await errorOf(async () => {
      for await (const response of health.watch({}, { signal: controller.signal })) {
        statuses.push(response.status);
        controller.abort();
      }
    });
    expect(statuses).toEqual([ServingStatus.SERVING]);
    expect(error.code).toBe(Code.Canceled);
  });

  it('names an unknown service with NotFound', async () => {
    const health = healthClient(networkTransport('connect', server.url));
    const error = await errorOf(health.check({ service: 'no.such.Service' }));
    expect(error.code).toBe(Code.NotFound);
    expect(error.rawMessage).toBe('service: "no.such.Service" is not served here (served: grpc.health.v1.Health, ' +
      'grpc.reflection.v1.ServerReflection, grpc.reflection.v1alpha.ServerReflection, recite.v1.DatasetService, ' +
      'recite.v1.ReciteService)');
  });
});
