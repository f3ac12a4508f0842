// History retention: startRetention prunes, on a real SQLite store, the histories of jobs finished more than
// retentionDays ago down to their result, and leaves newer ones whole; a server started with retentionDays prunes an
// old job at start, after which GetJob and ListJobs still give it with its result and WatchJob replays the result
// alone. The PostgreSQL store does not implement pruneFinishedHistories yet, so these run on SQLite only.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeEvent } from '../../server/service/proto-convert.js';
import { parseRetentionDays, startRetention } from '../../server/service/retention.js';
import type { JobRepository } from '../../server/store/job-repository.js';
import { SqliteJobStore } from '../../server/store/sqlite-job-store.js';
import { retentionDaysOf } from '../../cli/commands/serve.js';
import {
  JobEventSchema, JobSpecSchema, JobState, ProgressSchema, QueuedSchema, RestartResultSchema, ResultSchema, StartedSchema,
  Status,
} from '../../sdk/gen/recite/v1/recite_pb.js';
import type { JobEvent } from '../../sdk/gen/recite/v1/recite_pb.js';
import { startTestServer } from '../helpers/test-server.js';
import { aliceToken, bearer, drain, helloSpec, networkTransport, reciteClient } from './service-fixtures.js';

const dayMs = 86_400_000;
const now = Date.UTC(2026, 0, 1);

/** Build a finished job's history: queued, started, three progress, the restart's result, the job's result. */
function historyOf(startMs: number): JobEvent[] {
  const events: JobEvent[] = [];
  const push = (kind: JobEvent['kind']) =>
    events.push(create(JobEventSchema, { sequence: events.length + 1, time: timestampFromMs(startMs + events.length), kind }));
  push({ case: 'queued', value: create(QueuedSchema, { position: 0 }) });
  push({ case: 'started', value: create(StartedSchema, { restart: 0, seed: 1, promptVectors: 2, parameterCount: 64 }) });
  for (let i = 0; i < 3; i++) {
    push({ case: 'progress', value: create(ProgressSchema, { restart: 0, iteration: i, nllSum: 3 - i, correctPrefix: i }) });
  }
  push({ case: 'restartResult', value: create(RestartResultSchema, { restart: 0, seed: 1, status: Status.HIT, decodedText: 'Hello world' }) });
  push({ case: 'result', value: create(ResultSchema, { status: Status.HIT, best: 0, targetText: 'Hello world', model: 'tiny',
    restarts: [{ restart: 0, status: Status.HIT, decodedText: 'Hello world' }] }) });
  return events;
}

const eventKinds = { queued: 'queued', started: 'started', progress: 'progress', restartResult: 'restart_result', result: 'result' } as const;

/** Store a job of alice's that finished at `finishedAtMs`, with its whole history and a checkpoint; returns the history. */
async function storeFinishedJob(store: JobRepository, id: string, finishedAtMs: number): Promise<JobEvent[]> {
  const startMs = finishedAtMs - 1000;
  await store.insertJob({
    id, clientId: 'alice', model: 'tiny', label: id, spec: toBinary(JobSpecSchema, create(JobSpecSchema, helloSpec)),
    targetIds: [15496, 995], targetText: 'Hello world', state: 'QUEUED', status: null, cancelRequested: false,
    createdAtMs: startMs, finishedAtMs: null,
  });
  const history = historyOf(startMs);
  await store.appendEvents(history.map((event) => ({
    jobId: id, sequence: event.sequence, timeMs: startMs + event.sequence, kind: eventKinds[event.kind.case!],
    restart: null, iteration: null, payload: encodeEvent(event),
  })));
  await store.saveCheckpoint({ jobId: id, sequence: 3, timeMs: startMs + 3, payload: new Uint8Array([1, 2, 3]) });
  await store.setState(id, 'FINISHED', { status: 'HIT', finishedAtMs });
  return history;
}

describe('parseRetentionDays', () => {
  it('takes a number of days ≥ 0, fractions included', () => {
    expect(parseRetentionDays('0')).toBe(0);
    expect(parseRetentionDays('30')).toBe(30);
    expect(parseRetentionDays('0.5')).toBe(0.5);
  });

  it.each(['-1', 'abc', '', 'Infinity', '1e999'])('refuses %j, naming the flag, the value and the range', (value) => {
    expect(() => parseRetentionDays(value)).toThrow(
      `--retention-days ${value}: expected a number of days ≥ 0 (0 keeps every job's history forever)`);
  });

  it('reads --retention-days first, then RECITE_RETENTION_DAYS, else keeps forever', () => {
    expect(retentionDaysOf('7', '30')).toBe(7);
    expect(retentionDaysOf(undefined, '30')).toBe(30);
    expect(retentionDaysOf(undefined, undefined)).toBe(0);
    expect(() => retentionDaysOf(undefined, '-2')).toThrow('RECITE_RETENTION_DAYS -2: expected a number of days ≥ 0');
  });
});

describe('startRetention on a SQLite store', () => {
  let dir: string;
  let store: SqliteJobStore;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-retention-'));
    store = SqliteJobStore.open(path.join(dir, 'recite.db'));
  });
  afterEach(async () => {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('prunes a job finished before the retention to its result and leaves a recent one whole', async () => {
    const old = await storeFinishedJob(store, 'old', now - 40 * dayMs);
    const recent = await storeFinishedJob(store, 'recent', now - 10 * dayMs);
    const retention = startRetention(store, pino({ level: 'silent' }), { retentionDays: 30, now: () => now });
    try {
      expect(await retention.firstRun).toBe(old.length - 1);
    } finally {
      await retention.stop();
    }
    const kept = await store.events('old');
    expect(kept.map((e) => [e.sequence, e.kind])).toEqual([[old.length, 'result']]);
    expect(await store.latestCheckpoint('old')).toBeUndefined();
    expect(await store.getJob('old')).toMatchObject({ state: 'FINISHED', status: 'HIT', lastSequence: old.length });
    expect((await store.events('recent')).map((e) => e.sequence)).toEqual(recent.map((e) => e.sequence));
    expect(await store.latestCheckpoint('recent')).toMatchObject({ sequence: 3 });
  });

  it('prunes nothing with retentionDays 0, and stops its timer', async () => {
    await storeFinishedJob(store, 'old', now - 400 * dayMs);
    const retention = startRetention(store, pino({ level: 'silent' }), { retentionDays: 0, now: () => now });
    expect(await retention.firstRun).toBe(0);
    expect(await retention.runOnce()).toBe(0);
    await retention.stop();
    expect(await store.events('old')).toHaveLength(historyOf(0).length);
  });

  it('logs a failed run and carries on, never throwing', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => lines.push(line) });
    await store.close(); // every store call fails from here on
    const retention = startRetention(store, log, { retentionDays: 1, now: () => now });
    expect(await retention.firstRun).toBe(0);
    await retention.stop();
    expect(lines.map((line) => (JSON.parse(line) as { msg: string }).msg)).toEqual(['pruning finished job histories failed']);
    store = SqliteJobStore.open(path.join(dir, 'recite.db')); // for afterEach
  });
});

describe('a server started with retentionDays', () => {
  it('prunes an old finished job at start: GetJob and ListJobs still give its result, WatchJob replays just that', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-retention-server-'));
    const store = SqliteJobStore.open(path.join(dir, 'recite.db'));
    const history = await storeFinishedJob(store, 'old-job', Date.now() - 365 * dayMs);
    await store.close();
    const server = await startTestServer({ dir, retentionDays: 30 });
    try {
      expect(await server.server.retention.firstRun).toBe(history.length - 1);
      const client = reciteClient(networkTransport('connect', server.url));
      const alice = bearer(aliceToken);
      const { job } = await client.getJob({ jobId: 'old-job' }, alice);
      expect(job).toMatchObject({ state: JobState.FINISHED, result: { status: Status.HIT, targetText: 'Hello world' } });
      expect((await client.listJobs({}, alice)).jobs.map((j) => j.jobId)).toEqual(['old-job']);
      const { events } = await drain(client.watchJob({ jobId: 'old-job' }, alice));
      expect(events).toEqual([history.at(-1)]);
    } finally {
      await server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
