// A server upgraded in place keeps its jobs: the database in test/fixtures/db (made by make.mjs on 2026-11-30, before
// checkpoints carried a format version) opens with today's code, its finished job reads back, and its running job
// resumes from the stored checkpoint to the very result an uninterrupted run of the same job reaches.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient } from '@connectrpc/connect';
import type { Client } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { createReciteServer } from '../../server/app.js';
import { resolveModelDir } from '../../server/model/builtin-models.js';
import { TokenTable } from '../../server/service/auth.js';
import { decodeSnapshots, encodeSnapshots, snapshotFormatVersion } from '../../server/service/proto-convert.js';
import { JobState, ReciteService, Status } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { JobEvent, Result } from '../../sdk/gen/recite/v1/recite_pb.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixture = path.join(here, '..', 'fixtures', 'db', 'recite-2026-11-30.db');
const token = 'fixture-token-0123456789'; // the token make.mjs used: the jobs belong to its client
const headers = { authorization: `Bearer ${token}` };

describe('a database of 2026-11-30 under today\'s server', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-stored-'));
  fs.copyFileSync(fixture, path.join(dir, 'recite.db'));
  const server = createReciteServer({
    models: [{ name: 'tiny', dir: resolveModelDir('tiny') }],
    dbPath: path.join(dir, 'recite.db'),
    tokens: new TokenTable(new Map([[token, 'alice']])),
    device: 'cpu',
    dashboard: false,
    logger: pino({ level: 'silent' }),
  });
  let ready: Promise<Client<typeof ReciteService>> | undefined;
  const connect = () => (ready ??= server.listen(0).then(() => createClient(ReciteService, createGrpcTransport({ baseUrl: server.url }))));
  afterAll(async () => {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('lists both jobs and reads the finished one back whole', async () => {
    const c = await connect();
    const { jobs } = await c.listJobs({}, { headers });
    expect(jobs.map((j) => j.targetText)).toEqual(['does it make sense to compare apples and oranges?', 'Hello world']);
    const { job } = await c.getJob({ jobId: jobs[1]!.jobId }, { headers });
    expect(job!.state).toBe(JobState.FINISHED);
    expect(job!.result!.status).toBe(Status.HIT);
    expect(job!.result!.restarts[0]!.decodedText).toBe('Hello world');
  }, 60_000);

  it('resumes the running job from its checkpoint to the result of an uninterrupted run', async () => {
    const c = await connect();
    const { jobs } = await c.listJobs({}, { headers });
    const stored = jobs[0]!;
    const events: JobEvent[] = [];
    for await (const { event } of c.watchJob({ jobId: stored.jobId }, { headers })) events.push(event!);
    const started = events.filter((e) => e.kind.case === 'started').map((e) => e.kind.value as { resumedFromIteration: number });
    // make.mjs stopped the server once the job passed iteration 120; the graceful stop checkpointed it at 124.
    expect(started.at(-1)!.resumedFromIteration).toBe(124);
    const resumed = events.at(-1)!.kind.value as Result;
    expect(resumed.status).toBe(Status.MAX_ITERATIONS);
    expect(resumed.restarts[0]!.iterations).toBe(400);

    // The same job from scratch on the same server: the stored checkpoint carried every bit of the search.
    let fresh: Result | undefined;
    const spec = { target: { case: 'text' as const, value: stored.targetText }, settings: stored.settings };
    for await (const response of c.invert({ spec }, { headers })) {
      if (response.event?.kind.case === 'result') fresh = response.event.kind.value;
    }
    expect(resumed.restarts[0]!.bestNll).toBe(fresh!.restarts[0]!.bestNll);
    expect(resumed.restarts[0]!.bestIteration).toBe(fresh!.restarts[0]!.bestIteration);
    expect(resumed.restarts[0]!.embedding?.values).toEqual(fresh!.restarts[0]!.embedding?.values);
  }, 120_000);

  it('reads checkpoints of format version 1 and 2, and refuses a later one with the versions it reads', () => {
    const snapshot = {
      iteration: 3, theta: Float32Array.of(0.5, -1), optimizer: { kind: 'sgd', step: 3, momentumBuffer: Float32Array.of(0.25, 0) },
      schedule: { kind: 'constant' }, optimizedTokens: 2, sinceImprovement: 0, elapsedMs: 12,
      best: { nll: 1.5, optimizedTokens: 2, iteration: 2, theta: Float32Array.of(0.5, -0.5), hit: false },
    } as unknown as Parameters<typeof encodeSnapshots>[0] extends ReadonlyMap<number, infer S> ? S : never;
    const current = encodeSnapshots(new Map([[0, snapshot]]));
    expect(JSON.parse(new TextDecoder().decode(current)).version).toBe(snapshotFormatVersion);
    expect(decodeSnapshots(current).get(0)).toEqual(snapshot);
    const version1 = new TextEncoder().encode(JSON.stringify(JSON.parse(new TextDecoder().decode(current)).runs));
    expect(decodeSnapshots(version1).get(0)).toEqual(snapshot);
    const later = new TextEncoder().encode(JSON.stringify({ version: snapshotFormatVersion + 1, runs: [] }));
    expect(() => decodeSnapshots(later)).toThrow(`checkpoint format version ${snapshotFormatVersion + 1}: this server reads versions 1 to ${snapshotFormatVersion}`);
  });
});
