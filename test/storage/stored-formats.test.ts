// A server upgraded in place keeps its jobs: each database in test/fixtures/db (made by make.mjs: on 2026-11-30 before
// checkpoints carried a format version, so of version 1, and again once they were of version 3) opens with today's
// code, its finished job reads back, and its running job (Adam, a cosine schedule) resumes from the stored checkpoint
// to the very result an uninterrupted run of the same job reaches. Checkpoints of every version read back as today's
// snapshots.
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
import type { RunSnapshot } from '../../server/engine/inversion-run.js';
import { decodeSnapshots, encodeSnapshots, snapshotFormatVersion } from '../../server/service/proto-convert.js';
import { JobState, ReciteService, Status } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { JobEvent, Result } from '../../sdk/gen/recite/v1/recite_pb.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = [
  { file: 'recite-2026-11-30.db', what: 'a database of 2026-11-30 (checkpoints of format 1)' },
  { file: 'recite-2026-11-30-v3.db', what: 'a database of checkpoints of format 3' },
];
const token = 'fixture-token-0123456789'; // the token make.mjs used: the jobs belong to its client
const headers = { authorization: `Bearer ${token}` };

describe.each(fixtures)('$what under today\'s server', ({ file }) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-stored-'));
  fs.copyFileSync(path.join(here, '..', 'fixtures', 'db', file), path.join(dir, 'recite.db'));
  const opening = createReciteServer({
    models: [{ name: 'tiny', dir: resolveModelDir('tiny') }],
    db: path.join(dir, 'recite.db'),
    tokens: new TokenTable(new Map([[token, 'alice']])),
    device: 'cpu',
    dashboard: false,
    logger: pino({ level: 'silent' }),
  });
  let ready: Promise<Client<typeof ReciteService>> | undefined;
  const connect = () => (ready ??= opening.then(async (server) => {
    await server.listen(0);
    return createClient(ReciteService, createGrpcTransport({ baseUrl: server.url }));
  }));
  afterAll(async () => {
    await (await opening).close();
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

  it('reads the settings of jobs stored before repetition_penalty existed as 1, the penalty off', async () => {
    const c = await connect();
    const { jobs } = await c.listJobs({}, { headers });
    for (const { jobId } of jobs) {
      const { job } = await c.getJob({ jobId }, { headers });
      expect(job!.settings!.repetitionPenalty).toBe(1);
    }
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
});

describe('checkpoint formats', () => {
  const snapshot = {
    iteration: 3, theta: Float32Array.of(0.5, -1), optimizedTokens: 2, sinceImprovement: 0, elapsedMs: 12,
    optimizer: { kind: 'sgd', state: { step: 3, momentumBuffer: Float32Array.of(0.25, 0) } },
    schedule: { kind: 'plateau', iteration: 3, state: { lr: 0.1, best: 1.5, numBadEpochs: 1 } },
    best: { nll: 1.5, optimizedTokens: 2, iteration: 2, theta: Float32Array.of(0.5, -0.5), hit: false },
  } satisfies RunSnapshot;
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  const bytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

  it('reads checkpoints of the current format version, and refuses a later one with the versions it reads', () => {
    const current = encodeSnapshots(new Map([[0, snapshot]]));
    expect(JSON.parse(text(current)).version).toBe(snapshotFormatVersion);
    expect(snapshotFormatVersion).toBe(3);
    expect(decodeSnapshots(current).get(0)).toEqual(snapshot);
    const later = bytes({ version: snapshotFormatVersion + 1, runs: [] });
    expect(() => decodeSnapshots(later)).toThrow(`checkpoint format version ${snapshotFormatVersion + 1}: this server reads versions 1 to ${snapshotFormatVersion}`);
  });

  it('reads versions 1 and 2, whose optimizer and schedule spelt their fields out beside the kind', () => {
    const f32 = (...values: number[]) => `f32:${Buffer.from(Float32Array.of(...values).buffer).toString('base64')}`;
    // As a server of version 2 wrote them (version 1: the same list, bare).
    const run = (optimizer: object, schedule: object) => [0, {
      iteration: 3, theta: f32(0.5, -1).slice(4), optimizedTokens: 2, sinceImprovement: 0, elapsedMs: 12, optimizer, schedule,
      best: { nll: 1.5, optimizedTokens: 2, iteration: 2, theta: f32(0.5, -0.5).slice(4), hit: false },
    }];
    const cases: [object, object, RunSnapshot['optimizer'], RunSnapshot['schedule']][] = [
      [{ kind: 'sgd', step: 3, momentumBuffer: f32(0.25, 0) }, { kind: 'plateau', iteration: 3, lr: 0.1, best: 1.5, numBadEpochs: 1, cooldownCounter: 0 },
        snapshot.optimizer, snapshot.schedule],
      // SGD's momentum buffer before the first step was null; it is zeros now
      [{ kind: 'sgd', step: 0, momentumBuffer: null }, { kind: 'plateau', iteration: 0, lr: 0.1, best: 'Infinity', numBadEpochs: 0, cooldownCounter: 0 },
        { kind: 'sgd', state: { step: 0, momentumBuffer: Float32Array.of(0, 0) } },
        { kind: 'plateau', iteration: 0, state: { lr: 0.1, best: 'Infinity', numBadEpochs: 0 } }],
      [{ kind: 'rmsprop', step: 3, squareAvg: f32(1, 2), gradAvg: null, momentumBuffer: null }, { kind: 'constant', iteration: 3 },
        { kind: 'rmsprop', state: { step: 3, squareAvg: Float32Array.of(1, 2) } }, { kind: 'constant', iteration: 3, state: {} }],
      [{ kind: 'adam', step: 3, expAvg: f32(1, 2), expAvgSq: f32(3, 4), maxExpAvgSq: null }, { kind: 'cosine', iteration: 3 },
        { kind: 'adam', state: { step: 3, expAvg: Float32Array.of(1, 2), expAvgSq: Float32Array.of(3, 4) } },
        { kind: 'cosine', iteration: 3, state: {} }],
    ];
    for (const [optimizer, schedule, expectedOptimizer, expectedSchedule] of cases) {
      const expected = { ...snapshot, optimizer: expectedOptimizer, schedule: expectedSchedule };
      expect(decodeSnapshots(bytes({ version: 2, runs: [run(optimizer, schedule)] })).get(0)).toEqual(expected);
      expect(decodeSnapshots(bytes([run(optimizer, schedule)])).get(0)).toEqual(expected);
    }
  });
});
