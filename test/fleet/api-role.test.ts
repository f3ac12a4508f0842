// A front server (role api) holds no model: it never loads a model's graphs or weights (its loader throws here), yet
// accepts, checks, costs and describes jobs from the model's config and tokenizer alone, and serves them while a
// worker on the same database runs them. The RPCs that run the model itself are refused, naming the role.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Code, createClient } from '@connectrpc/connect';
import { DatasetService } from '../../sdk/gen/recite/v1/dataset_pb.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobState, ModelState } from '../../sdk/gen/recite/v1/recite_pb.js';
import { HealthCheckResponse_ServingStatus as ServingStatus } from '../../sdk/gen/health/v1/health_pb.js';
import type { TestDatabase } from '../helpers/postgres.js';
import { createTestDatabase } from '../helpers/postgres.js';
import type { TestServer } from '../helpers/test-server.js';
import { startTestServer } from '../helpers/test-server.js';
import type { ReciteClient } from '../service/service-fixtures.js';
import {
  aliceToken, bearer, drain, errorOf, healthClient, helloSpec, networkTransport, reciteClient, waitFor,
} from '../service/service-fixtures.js';

const alice = bearer(aliceToken);
const loads: string[] = [];

let db: TestDatabase;
let front: TestServer;
let c: ReciteClient;

beforeAll(async () => {
  db = await createTestDatabase();
  front = await startTestServer({
    db: db.url, role: 'api', serverId: 'front',
    loadModel: async (name) => {
      loads.push(name);
      throw new Error('a front server must not load a model');
    },
  });
  c = reciteClient(networkTransport('connect', front.url));
}, 30_000);

afterAll(async () => {
  await front?.close();
  await db?.drop();
});

describe('a front server (role api)', () => {
  it('is ready and describes its model from the config alone, with no graphs, weights or engine', async () => {
    expect(loads).toEqual([]);
    const [entry] = front.server.models.list();
    expect(entry).toMatchObject({ name: 'tiny', state: 'READY', runner: undefined });
    expect(front.server.models.runners()).toEqual([]);
    const { models } = await c.listModels({}, alice);
    expect(models).toHaveLength(1);
    expect(models[0]).toMatchObject({ name: 'tiny', state: ModelState.READY, provider: 'none', error: '' });
    // The tiny checkpoint's shapes, read from its config.json.
    expect(models[0]!.nEmbd).toBeGreaterThan(0);
    expect(models[0]!.nPositions).toBeGreaterThan(0);
    expect(models[0]!.vocabSize).toBe(50257);
    const health = await healthClient(networkTransport('connect', front.url)).check({ service: '' });
    expect(health.status).toBe(ServingStatus.SERVING);
    const metrics = await (await fetch(`${front.url}/metrics`)).text();
    expect(metrics).toContain('recite_model_info{model="tiny",state="READY",provider="none"} 1');
    expect(metrics).toContain('recite_server_info{server="front",role="api"} 1');
  });

  it('tokenizes, and checks a job against the model\'s context before storing it', async () => {
    const { ids, tokens } = await c.tokenize({ text: 'Hello world' }, alice);
    expect(ids).toEqual([15496, 995]);
    expect(tokens).toEqual(['Hello', ' world']);
    const { models } = await c.listModels({}, alice);
    // One token more than the context takes with P = T prompt vectors (2T - 1 positions).
    const n = models[0]!.nPositions;
    const T = Math.floor((n + 1) / 2) + 1;
    const before = (await c.listJobs({ pageSize: 1000 }, alice)).jobs.length;
    const refused = await errorOf(c.submitJob({ spec: { settings: helloSpec.settings,
      target: { case: 'targetIds', value: { ids: new Array<number>(T).fill(15496) } } } }, alice));
    expect(refused.code).toBe(Code.InvalidArgument);
    expect(refused.rawMessage).toBe(`spec.target: ${T} tokens with P = ${T} prompt vectors need ${2 * T - 1} positions; ` +
      `the model's context allows ${n}, so at most ${T - 1} tokens (full: P = T)`);
    // Refused before it was stored: no worker will ever see it.
    expect((await c.listJobs({ pageSize: 1000 }, alice)).jobs).toHaveLength(before);
  });

  it('still refuses a folder that is no GPT-2 checkpoint, at start', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-not-a-model-'));
    const other = await startTestServer({ db: db.url, role: 'api', serverId: 'front-2', models: [{ name: 'broken', dir }] });
    try {
      const [entry] = other.server.models.list();
      expect(entry?.state).toBe('FAILED');
      expect(entry?.state === 'FAILED' && entry.error).toContain('config.json');
    } finally {
      await other.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is refused on a SQLite file, which no worker shares', async () => {
    await expect(startTestServer({ role: 'api' })).rejects.toThrow(/^role api runs no jobs, and the SQLite file \S+ is not shared/);
  });

  it('refuses Decode, Score and SampleReachableTargets, which run the model, with FailedPrecondition naming the role', async () => {
    const { models } = await c.listModels({}, alice);
    const nEmbd = models[0]!.nEmbd;
    const decode = await errorOf(c.decode({ embedding: { shape: [1, nEmbd], values: new Array<number>(nEmbd).fill(0) },
      maxTokens: 2 }, alice));
    expect(decode.code).toBe(Code.FailedPrecondition);
    expect(decode.rawMessage).toBe('model: "tiny" runs on no device here: this server accepts jobs for others to run ' +
      '(serve --role api) and holds no model weights; send Decode to a server started with --role all or --role worker');
    const score = await errorOf(c.score({ texts: ['Hello world'] }, alice));
    expect(score.code).toBe(Code.FailedPrecondition);
    expect(score.rawMessage).toContain('send Score to a server started with --role all or --role worker');
    const datasets = createClient(DatasetService, networkTransport('connect', front.url));
    const sample = await errorOf(datasets.sampleReachableTargets({ count: 2, tokens: 3 }, alice));
    expect(sample.code).toBe(Code.FailedPrecondition);
    expect(sample.rawMessage).toContain('send SampleReachableTargets to a server started with --role all or --role worker');
  });

  it('accepts a job that waits for a worker, and streams it to its result once a worker on the database runs it', async () => {
    const { jobId, queuePosition } = await c.submitJob({ spec: helloSpec }, alice);
    expect(queuePosition).toBe(0);
    expect((await c.getJob({ jobId }, alice)).job?.state).toBe(JobState.QUEUED);
    const worker = await startTestServer({ db: db.url, role: 'worker', serverId: 'worker', dashboard: false });
    try {
      // Invert on the front server: it submits and tails the store while the worker runs the job.
      const [watched, invert] = await Promise.all([
        drain(c.watchJob({ jobId }, alice)),
        drain(c.invert({ spec: helloSpec }, alice)),
      ]);
      for (const { events } of [watched, invert]) {
        expect(events.map((e) => e.sequence)).toEqual(events.map((_, i) => i + 1));
        const result = events.at(-1)!.kind;
        expect(result.case).toBe('result');
        expect(result.case === 'result' && result.value.targetText).toBe('Hello world');
        // Run on the worker's device; the front server has none.
        expect(result.case === 'result' && result.value.provider).toBe('cpu');
      }
      await waitFor(async () => (await c.getJob({ jobId }, alice)).job?.state === JobState.FINISHED, 10_000, 'finished');
      expect(loads).toEqual([]);
      expect(front.server.hub.liveJobs).toBe(0);
    } finally {
      await worker.close();
    }
  }, 60_000);
});
