// The job store on both back ends, a real SQLite file and a real PostgreSQL database, through one suite: every field
// survives a round trip and a reopen, a job's history stays numbered 1, 2, 3, … whatever the caller sends, a refused
// batch leaves nothing, and listings page the same way. Then what only one back end has: the SQLite file's schema
// version, WAL and damage checks and a writer killed with SIGKILL; PostgreSQL's migrations under an advisory lock and
// two servers appending to one job at once.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { CheckpointRecord, EventRecord, JobRecord, JobRepository, NewJob } from '../../server/store/job-repository.js';
import { isStoreFault, JobStoreError } from '../../server/store/job-repository.js';
import { isPostgresUrl, openJobStore } from '../../server/store/open-job-store.js';
import { PostgresJobStore } from '../../server/store/postgres-job-store.js';
import { migrations as postgresMigrations, redactUrl, schemaVersion as postgresSchemaVersion } from '../../server/store/postgres-schema.js';
import { SqliteJobStore } from '../../server/store/sqlite-job-store.js';
import { schemaVersion } from '../../server/store/sqlite-schema.js';
import type { TestDatabase } from '../helpers/postgres.js';
import { createTestDatabase } from '../helpers/postgres.js';
import type { StoreBackend } from '../helpers/store-backends.js';
import { backendNames, createBackend } from '../helpers/store-backends.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Build a job with distinct values in every field, overridable per test. */
function newJob(id: string, overrides: Partial<NewJob> = {}): NewJob {
  return {
    id,
    clientId: 'alice',
    model: 'gpt2',
    label: `label of ${id}`,
    spec: new Uint8Array([0, 1, 2, 253, 254, 255, 0]),
    targetIds: [22437, 340, 787, 0, 50256],
    targetText: 'does it make sense — ünïcode ✓',
    state: 'QUEUED',
    status: null,
    cancelRequested: false,
    createdAtMs: 1_700_000_000_000,
    finishedAtMs: null,
    ...overrides,
  };
}

/** Build `count` progress events of `jobId` numbered from `first`, each payload `size` bytes derived from its sequence. */
function progress(jobId: string, first: number, count: number, size = 16): EventRecord[] {
  return Array.from({ length: count }, (_, i) => {
    const sequence = first + i;
    const payload = new Uint8Array(size);
    for (let b = 0; b < size; b++) payload[b] = (sequence * 31 + b) & 0xff;
    return { jobId, sequence, timeMs: 1_700_000_000_000 + sequence, kind: 'progress', restart: 0, iteration: sequence, payload };
  });
}

async function sequences(store: JobRepository, jobId: string): Promise<number[]> {
  return (await store.events(jobId)).map((e) => e.sequence);
}

/**
 * Compare events field by field, payloads as whole buffers: vitest's deep equality walks a typed array element by
 * element, which takes seconds on a megabyte.
 */
function expectEvents(actual: readonly EventRecord[], expected: readonly EventRecord[]): void {
  const withoutPayload = (events: readonly EventRecord[]) => events.map(({ payload: _, ...rest }) => rest);
  expect(withoutPayload(actual)).toEqual(withoutPayload(expected));
  actual.forEach((event, i) => {
    expect(event.payload).toBeInstanceOf(Uint8Array);
    expect(Buffer.compare(event.payload, expected[i].payload), `payload of event ${event.sequence}`).toBe(0);
  });
}

/** Run `call` and return the JobStoreError it throws or rejects with; fail if it succeeds or throws something else. */
async function storeError(call: () => unknown): Promise<JobStoreError> {
  try {
    await call();
  } catch (error) {
    expect(error).toBeInstanceOf(JobStoreError);
    expect((error as Error).name).toBe('JobStoreError');
    return error as JobStoreError;
  }
  throw new Error('expected a JobStoreError, but the call returned');
}

describe.each(backendNames)('job store on %s', (backendName) => {
  let backend: StoreBackend;
  let store: JobRepository;

  beforeAll(async () => {
    backend = await createBackend(backendName);
  });
  afterAll(async () => {
    await backend?.cleanup();
  });
  beforeEach(async () => {
    await backend.reset();
    store = await backend.openJobs();
  });
  afterEach(async () => {
    await store.close();
  });

  async function reopen(): Promise<JobRepository> {
    await store.close();
    store = await backend.openJobs();
    return store;
  }

  describe('round trips', () => {
    it('keeps every job field, bytes intact, nulls as nulls, across a reopen', async () => {
      const job = newJob('j1');
      await store.insertJob(job);
      const expected: JobRecord = { ...job, lastSequence: 0, summary: null };
      expect(await store.getJob('j1')).toEqual(expected);
      expect(await store.getJob('missing')).toBeUndefined();

      const finished = newJob('j2', {
        state: 'FINISHED', status: 'HIT', cancelRequested: true, finishedAtMs: 1_700_000_123_456, spec: new Uint8Array(0),
        targetIds: [], targetText: '',
      });
      await store.insertJob(finished);
      await store.setSummary('j2', new Uint8Array([9, 8, 7]));
      await reopen();
      expect(await store.getJob('j1')).toEqual(expected);
      const back = (await store.getJob('j2'))!;
      expect(back).toEqual({ ...finished, lastSequence: 0, summary: new Uint8Array([9, 8, 7]) });
      expect(back.spec).toBeInstanceOf(Uint8Array);
      expect(back.spec.length).toBe(0);
      expect(store.location).toBe(backendName === 'sqlite' ? backend.location : redactUrl(backend.location));
    });

    it('keeps epoch ms past 2^31 and 2^32 as exact numbers, and every byte value of a payload', async () => {
      const times = [2 ** 31 + 1, 2 ** 32 + 3, 4_102_444_800_123, Number.MAX_SAFE_INTEGER];
      const everyByte = new Uint8Array(256).map((_, i) => i);
      await store.insertJob(newJob('t', { createdAtMs: times[3], finishedAtMs: times[2], spec: everyByte }));
      await store.appendEvents(times.map((timeMs, i) => ({
        jobId: 't', sequence: i + 1, timeMs, kind: 'progress', restart: 2 ** 33, iteration: times[i], payload: everyByte.slice(i),
      })));
      await store.saveCheckpoint({ jobId: 't', sequence: 4, timeMs: times[1], payload: everyByte });
      await reopen();
      const job = (await store.getJob('t'))!;
      expect(job.createdAtMs).toBe(Number.MAX_SAFE_INTEGER);
      expect(job.finishedAtMs).toBe(4_102_444_800_123);
      expect(Buffer.compare(job.spec, everyByte)).toBe(0);
      const events = await store.events('t');
      expect(events.map((e) => [typeof e.timeMs, e.timeMs, e.restart, e.iteration])).toEqual(
        times.map((t) => ['number', t, 2 ** 33, t]));
      events.forEach((e, i) => expect(Buffer.compare(e.payload, everyByte.slice(i))).toBe(0));
      const checkpoint = (await store.latestCheckpoint('t'))!;
      expect(checkpoint.timeMs).toBe(2 ** 32 + 3);
      expect(Buffer.compare(checkpoint.payload, everyByte)).toBe(0);
    });

    it('keeps every event field, including null restart and iteration and large payloads', async () => {
      await store.insertJob(newJob('j'));
      const big = new Uint8Array(1 << 20).map((_, i) => (i * 7) & 0xff);
      const events: EventRecord[] = [
        { jobId: 'j', sequence: 1, timeMs: 1_700_000_000_001, kind: 'queued', restart: null, iteration: null, payload: new Uint8Array([1]) },
        { jobId: 'j', sequence: 2, timeMs: 1_700_000_000_002, kind: 'started', restart: null, iteration: null, payload: new Uint8Array(0) },
        { jobId: 'j', sequence: 3, timeMs: 1_700_000_000_003, kind: 'progress', restart: 0, iteration: 0, payload: big },
        { jobId: 'j', sequence: 4, timeMs: 1_700_000_000_004, kind: 'restart_result', restart: 2, iteration: 1999, payload: new Uint8Array([0, 255]) },
        { jobId: 'j', sequence: 5, timeMs: 1_700_000_000_005, kind: 'result', restart: null, iteration: null, payload: new Uint8Array([42]) },
      ];
      await store.appendEvents(events);
      expect((await store.getJob('j'))!.lastSequence).toBe(5);
      expectEvents(await store.events('j'), events);
      await reopen();
      expectEvents(await store.events('j'), events);
      expectEvents(await store.events('j', 2), events.slice(2));
      expectEvents(await store.events('j', 1, 2), events.slice(1, 3));
      expect(await store.events('j', 1, 0)).toEqual([]);
      expect(await store.events('j', 5)).toEqual([]);
      expect(await store.events('nobody')).toEqual([]);
      expect((await storeError(() => store.events('j', 0, -1))).message).toBe('events: limit -1 must be an integer ≥ 0');
    });

    it('keeps one checkpoint per job, replaced by the next', async () => {
      await store.insertJob(newJob('j'));
      await store.appendEvents(progress('j', 1, 10));
      expect(await store.latestCheckpoint('j')).toBeUndefined();
      const first: CheckpointRecord = { jobId: 'j', sequence: 4, timeMs: 1, payload: new Uint8Array([1, 2, 3]) };
      const second: CheckpointRecord = { jobId: 'j', sequence: 9, timeMs: 2, payload: new Uint8Array(5000).fill(7) };
      await store.saveCheckpoint(first);
      expect(await store.latestCheckpoint('j')).toEqual(first);
      await store.saveCheckpoint(second);
      await reopen();
      expect(await store.latestCheckpoint('j')).toEqual(second);
      await store.close(); // SQLite: let the raw reader see the file as the store left it
      expect(await backend.scalar('SELECT count(*) FROM checkpoints')).toBe(1);
      await reopen();

      expect((await storeError(() => store.saveCheckpoint({ ...first, sequence: 11 }))).message)
        .toBe("saveCheckpoint: job 'j' checkpoint sequence 11 is outside its history 0..10");
      expect((await storeError(() => store.saveCheckpoint({ ...first, jobId: 'nope' }))).message)
        .toBe("saveCheckpoint: no job 'nope'");
    });

    it('refuses a duplicate id and bad values, naming the operation and the value', async () => {
      await store.insertJob(newJob('j'));
      const duplicate = await storeError(() => store.insertJob(newJob('j')));
      expect(duplicate.message).toBe("insertJob: job 'j' already exists");
      expect(isStoreFault(duplicate)).toBe(false);
      expect((await storeError(() => store.insertJob(newJob('')))).message).toBe('insertJob: id "" must be a non-empty string');
      expect((await storeError(() => store.insertJob(newJob('k', { targetIds: [1, -2] })))).message)
        .toBe('insertJob: targetIds must be an array of integer token ids ≥ 0');
      expect((await storeError(() => store.insertJob(newJob('k', { createdAtMs: 1.5 })))).message)
        .toBe('insertJob: createdAtMs 1.5 must be an integer');
      expect((await storeError(() => store.insertJob(newJob('k', { state: 'DONE' as never })))).message)
        .toBe("insertJob: state 'DONE' must be one of QUEUED, RUNNING, FINISHED");
      expect(await store.countJobs()).toBe(1);
    });
  });

  describe('event sequences', () => {
    beforeEach(async () => {
      await store.insertJob(newJob('a'));
      await store.insertJob(newJob('b'));
    });

    it('accepts interleaved jobs in one batch and updates each lastSequence', async () => {
      const batch = [...progress('a', 1, 3), ...progress('b', 1, 2)];
      batch.sort((x, y) => x.sequence - y.sequence); // a1 b1 a2 b2 a3
      await store.appendEvents(batch);
      await store.appendEvents([...progress('b', 3, 1), ...progress('a', 4, 2)]);
      expect(await sequences(store, 'a')).toEqual([1, 2, 3, 4, 5]);
      expect(await sequences(store, 'b')).toEqual([1, 2, 3]);
      expect((await store.getJob('a'))!.lastSequence).toBe(5);
      expect((await store.getJob('b'))!.lastSequence).toBe(3);
      await store.appendEvents([]);
      expect((await store.getJob('a'))!.lastSequence).toBe(5);
    });

    it('refuses a wrong start, a gap and a duplicate, and stores nothing of the batch', async () => {
      expect((await storeError(() => store.appendEvents(progress('a', 0, 1)))).message)
        .toBe("appendEvents: job 'a' expected sequence 1, got 0: already stored (a duplicate or a wrong start)");
      expect((await storeError(() => store.appendEvents(progress('a', 2, 1)))).message)
        .toBe("appendEvents: job 'a' expected sequence 1, got 2: a gap");

      await store.appendEvents(progress('a', 1, 3));
      // The valid head of each batch (b's events, a4) must roll back with the bad tail.
      const gap = [...progress('b', 1, 2), ...progress('a', 4, 1), ...progress('a', 6, 1)];
      expect((await storeError(() => store.appendEvents(gap))).message)
        .toBe("appendEvents: job 'a' expected sequence 5, got 6: a gap");
      const duplicate = [...progress('b', 1, 1), ...progress('a', 3, 1)];
      expect((await storeError(() => store.appendEvents(duplicate))).message)
        .toBe("appendEvents: job 'a' expected sequence 4, got 3: already stored (a duplicate or a wrong start)");
      const repeatedInBatch = [...progress('a', 4, 1), ...progress('a', 4, 1)];
      expect((await storeError(() => store.appendEvents(repeatedInBatch))).message)
        .toBe("appendEvents: job 'a' expected sequence 5, got 4: already stored (a duplicate or a wrong start)");
      expect((await storeError(() => store.appendEvents([{ ...progress('a', 4, 1)[0], sequence: 4.5 }]))).message)
        .toBe("appendEvents: job 'a' expected sequence 4, got 4.5: not an integer");

      expect(await sequences(store, 'a')).toEqual([1, 2, 3]);
      expect(await sequences(store, 'b')).toEqual([]);
      expect((await store.getJob('a'))!.lastSequence).toBe(3);
      expect((await store.getJob('b'))!.lastSequence).toBe(0);
    });

    it('refuses events of an unknown job and malformed fields', async () => {
      expect((await storeError(() => store.appendEvents(progress('ghost', 1, 1)))).message)
        .toBe("appendEvents: no job 'ghost'");
      const [event] = progress('a', 1, 1);
      expect((await storeError(() => store.appendEvents([{ ...event, kind: 'done' as never }]))).message)
        .toBe("appendEvents: job 'a' event 1 has kind 'done'; expected one of queued, started, progress, restart_result, result");
      expect((await storeError(() => store.appendEvents([{ ...event, timeMs: Number.NaN }]))).message)
        .toBe('appendEvents: timeMs NaN must be an integer');
      expect((await storeError(() => store.appendEvents([{ ...event, payload: 'x' as never }]))).message)
        .toBe('appendEvents: payload must be a Uint8Array, got string');
      expect((await store.getJob('a'))!.lastSequence).toBe(0);
    });

    it('truncates after a checkpoint and continues the history from there', async () => {
      await store.appendEvents(progress('a', 1, 10));
      await store.appendEvents(progress('b', 1, 4));
      await store.saveCheckpoint({ jobId: 'a', sequence: 6, timeMs: 0, payload: new Uint8Array([6]) });
      expect(await store.truncateEventsAfter('a', 6)).toBe(4);
      expect((await store.getJob('a'))!.lastSequence).toBe(6);
      expect(await sequences(store, 'a')).toEqual([1, 2, 3, 4, 5, 6]);
      expect(await sequences(store, 'b')).toEqual([1, 2, 3, 4]);
      expect((await store.latestCheckpoint('a'))!.sequence).toBe(6); // at the truncation point: kept

      expect((await storeError(() => store.appendEvents(progress('a', 11, 1)))).message)
        .toBe("appendEvents: job 'a' expected sequence 7, got 11: a gap");
      await store.appendEvents(progress('a', 7, 3, 32)); // new payloads: the resumed run's events, not the old ones
      await reopen();
      expectEvents(await store.events('a', 6), progress('a', 7, 3, 32));
      expect((await store.getJob('a'))!.lastSequence).toBe(9);

      expect(await store.truncateEventsAfter('a', 9)).toBe(0);
      expect(await store.truncateEventsAfter('a', 2)).toBe(7);
      expect(await store.latestCheckpoint('a')).toBeUndefined(); // it described events 3..6, now gone
      expect(await store.truncateEventsAfter('a', 0)).toBe(2);
      expect((await store.getJob('a'))!.lastSequence).toBe(0);
      await store.appendEvents(progress('a', 1, 1));
      expect(await sequences(store, 'a')).toEqual([1]);

      expect((await storeError(() => store.truncateEventsAfter('a', 5))).message)
        .toBe("truncateEventsAfter: sequence 5 is outside job 'a''s history 0..1");
      expect((await storeError(() => store.truncateEventsAfter('a', -1))).message)
        .toBe("truncateEventsAfter: sequence -1 is outside job 'a''s history 0..1");
      expect((await storeError(() => store.truncateEventsAfter('ghost', 0))).message)
        .toBe("truncateEventsAfter: no job 'ghost'");
    });
  });

  describe('listings', () => {
    it('pages newest first with a stable order for equal times, one client at a time', async () => {
      // Times: j0 oldest … with j3..j6 sharing one time, where insertion order decides.
      const times = [100, 200, 300, 400, 400, 400, 400, 500, 600];
      for (const [i, t] of times.entries()) await store.insertJob(newJob(`j${i}`, { createdAtMs: t }));
      await store.insertJob(newJob('bob-1', { clientId: 'bob', createdAtMs: 450 }));
      await store.insertJob(newJob('bob-2', { clientId: 'bob', createdAtMs: 50 }));
      const newestFirst = ['j8', 'j7', 'j6', 'j5', 'j4', 'j3', 'j2', 'j1', 'j0'];

      expect((await store.listJobs('alice')).map((j) => j.id)).toEqual(newestFirst);
      const pages: string[][] = [];
      let beforeId: string | undefined;
      for (;;) {
        const page = await store.listJobs('alice', { limit: 2, beforeId });
        if (page.length === 0) break;
        pages.push(page.map((j) => j.id));
        beforeId = page.at(-1)!.id;
      }
      expect(pages).toEqual([['j8', 'j7'], ['j6', 'j5'], ['j4', 'j3'], ['j2', 'j1'], ['j0']]);
      expect((await store.listJobs('alice', { beforeId: 'j5', limit: 100 })).map((j) => j.id)).toEqual(newestFirst.slice(4));

      expect((await store.listJobs('bob')).map((j) => j.id)).toEqual(['bob-1', 'bob-2']);
      expect(await store.listJobs('carol')).toEqual([]);
      // Another client's id as a cursor reads exactly like a missing one.
      expect((await storeError(() => store.listJobs('bob', { beforeId: 'j3' }))).message)
        .toBe("listJobs: beforeId 'j3' is not a job of client 'bob'");
      expect((await storeError(() => store.listJobs('bob', { beforeId: 'nope' }))).message)
        .toBe("listJobs: beforeId 'nope' is not a job of client 'bob'");
      expect((await storeError(() => store.listJobs('bob', { limit: 0 }))).message).toBe('listJobs: limit 0 must be an integer ≥ 1');

      // The admin's listing interleaves the clients by time and pages from any job.
      const all = ['j8', 'j7', 'bob-1', 'j6', 'j5', 'j4', 'j3', 'j2', 'j1', 'j0', 'bob-2'];
      expect((await store.listAllJobs()).map((j) => j.id)).toEqual(all);
      expect((await store.listAllJobs({ beforeId: 'bob-1', limit: 3 })).map((j) => j.id)).toEqual(['j6', 'j5', 'j4']);
      expect((await storeError(() => store.listAllJobs({ beforeId: 'nope' }))).message)
        .toBe("listAllJobs: beforeId 'nope' is not a job");
      expect((await storeError(() => store.listAllJobs({ limit: 1.5 }))).message)
        .toBe('listAllJobs: limit 1.5 must be an integer ≥ 1');
    });

    it('lists unfinished jobs oldest first and counts by state and client', async () => {
      await store.insertJob(newJob('late', { createdAtMs: 300 }));
      await store.insertJob(newJob('early', { createdAtMs: 100 }));
      await store.insertJob(newJob('tie-1', { createdAtMs: 200, clientId: 'bob' }));
      await store.insertJob(newJob('tie-2', { createdAtMs: 200 }));
      await store.insertJob(newJob('done', { createdAtMs: 50 }));
      await store.setState('tie-2', 'RUNNING');
      await store.setState('done', 'RUNNING');
      await store.setState('done', 'FINISHED', { status: 'HIT', finishedAtMs: 999 });

      await reopen();
      const unfinished = await store.unfinishedJobs();
      expect(unfinished.map((j) => [j.id, j.state])).toEqual([
        ['early', 'QUEUED'], ['tie-1', 'QUEUED'], ['tie-2', 'RUNNING'], ['late', 'QUEUED'],
      ]);
      expect(await store.countJobs()).toBe(5);
      expect(await store.countJobs({ state: 'QUEUED' })).toBe(3);
      expect(await store.countJobs({ state: 'RUNNING' })).toBe(1);
      expect(await store.countJobs({ state: 'FINISHED' })).toBe(1);
      expect(await store.countJobs({ clientId: 'bob' })).toBe(1);
      expect(await store.countJobs({ clientId: 'alice', state: 'QUEUED' })).toBe(2);
      expect(await store.countJobs({ clientId: 'carol' })).toBe(0);
      expect((await storeError(() => store.countJobs({ state: 'DONE' as never }))).message)
        .toBe("countJobs: state 'DONE' must be one of QUEUED, RUNNING, FINISHED");
    });
  });

  describe('job lifecycle', () => {
    beforeEach(() => store.insertJob(newJob('j')));

    it('moves through states; FINISHED is final and carries status and time', async () => {
      await store.setState('j', 'RUNNING');
      await store.setState('j', 'QUEUED'); // re-queued after a restart
      await store.setState('j', 'RUNNING');
      expect((await storeError(() => store.setState('j', 'RUNNING', { status: 'HIT' }))).message)
        .toBe("setState: status and finishedAtMs apply only to FINISHED, not to RUNNING (job 'j')");
      await store.setState('j', 'FINISHED', { status: 'MISS', finishedAtMs: 1_700_000_999_000 });
      expect(await store.getJob('j')).toMatchObject({ state: 'FINISHED', status: 'MISS', finishedAtMs: 1_700_000_999_000 });
      expect((await storeError(() => store.setState('j', 'RUNNING'))).message)
        .toBe("setState: job 'j' is already FINISHED (status MISS); it cannot move to RUNNING");
      expect((await storeError(() => store.setState('j', 'FINISHED', { status: 'HIT' }))).message)
        .toBe("setState: job 'j' is already FINISHED (status MISS); it cannot move to FINISHED");
      expect((await storeError(() => store.setState('ghost', 'RUNNING'))).message).toBe("setState: no job 'ghost'");
      await reopen();
      expect(await store.getJob('j')).toMatchObject({ state: 'FINISHED', status: 'MISS', finishedAtMs: 1_700_000_999_000 });

      await store.insertJob(newJob('k'));
      const before = Date.now();
      await store.setState('k', 'FINISHED');
      const k = (await store.getJob('k'))!;
      expect(k.status).toBeNull();
      expect(k.finishedAtMs).toBeGreaterThanOrEqual(before);
    });

    it('records a cancel request durably and idempotently', async () => {
      await store.requestCancel('j');
      await store.requestCancel('j');
      expect((await (await reopen()).getJob('j'))!.cancelRequested).toBe(true);
      expect((await storeError(() => store.requestCancel('ghost'))).message).toBe("requestCancel: no job 'ghost'");
      expect((await storeError(() => store.setSummary('ghost', new Uint8Array(1)))).message).toBe("setSummary: no job 'ghost'");
    });

    it('keeps resume marks until cleared, and clears only unfinished jobs', async () => {
      await store.insertJob(newJob('done'));
      expect(await store.resumeMark('j')).toBeNull();
      await store.setResumeMark('j', 7);
      await store.setResumeMark('done', 3);
      await store.setState('done', 'FINISHED', { status: 'HIT' });
      await reopen();
      expect(await store.resumeMark('j')).toBe(7);
      expect(await store.resumeMark('ghost')).toBeNull();
      await store.clearResumeMarks();
      expect(await store.resumeMark('j')).toBeNull();
      expect(await store.resumeMark('done')).toBe(3);
      await store.setResumeMark('j', 2);
      await store.setResumeMark('j', null);
      expect(await store.resumeMark('j')).toBeNull();
      expect((await storeError(() => store.setResumeMark('j', 1.5))).message).toBe('setResumeMark: sequence 1.5 must be an integer');
    });

    it('deletes a job with its events and checkpoint', async () => {
      await store.insertJob(newJob('keep'));
      await store.appendEvents([...progress('j', 1, 5), ...progress('keep', 1, 2)]);
      await store.saveCheckpoint({ jobId: 'j', sequence: 5, timeMs: 0, payload: new Uint8Array([1]) });
      await store.deleteJob('j');
      expect(await store.getJob('j')).toBeUndefined();
      expect(await store.events('j')).toEqual([]);
      expect(await store.latestCheckpoint('j')).toBeUndefined();
      expect(await sequences(store, 'keep')).toEqual([1, 2]);
      await store.close();
      expect(await backend.scalar("SELECT count(*) FROM events WHERE job_id = 'j'")).toBe(0);
      await reopen();
      expect((await storeError(() => store.deleteJob('j'))).message).toBe("deleteJob: no job 'j'");
      // The id is free again, with a fresh history.
      await store.insertJob(newJob('j'));
      expect((await store.getJob('j'))!.lastSequence).toBe(0);
      await store.appendEvents(progress('j', 1, 1));
    });

    it('probes a write without changing anything, and closing twice is harmless', async () => {
      await store.probeWrite();
      expect(await store.getJob('j')).toEqual({ ...newJob('j'), lastSequence: 0, summary: null });
      await store.close();
      await store.close();
      await expect(store.getJob('j')).rejects.toThrow();
      store = await backend.openJobs();
    });
  });

  describe('write batches', () => {
    beforeEach(async () => {
      await store.insertJob(newJob('a'));
      await store.insertJob(newJob('b'));
    });

    it('applies events, summaries, states, resume marks and checkpoints together, in that order', async () => {
      await store.setResumeMark('b', 4);
      await store.commit({
        events: [...progress('a', 1, 3), ...progress('b', 1, 2)],
        summaries: [{ jobId: 'a', summary: new Uint8Array([3]) }],
        states: [{ jobId: 'a', state: 'RUNNING' }, { jobId: 'b', state: 'FINISHED', status: 'HIT', finishedAtMs: 5 }],
        resumeMarks: [{ jobId: 'a', sequence: 3 }],
        // Points at events of this same batch: they are stored first.
        checkpoints: [{ jobId: 'a', sequence: 3, timeMs: 9, payload: new Uint8Array([3, 3]) }],
        clearResumeMarks: true,
      });
      await reopen();
      expect(await store.getJob('a')).toMatchObject({ lastSequence: 3, state: 'RUNNING', summary: new Uint8Array([3]) });
      expect(await store.getJob('b')).toMatchObject({ lastSequence: 2, state: 'FINISHED', status: 'HIT', finishedAtMs: 5 });
      expect(await store.latestCheckpoint('a')).toEqual({ jobId: 'a', sequence: 3, timeMs: 9, payload: new Uint8Array([3, 3]) });
      expect(await store.resumeMark('a')).toBeNull(); // clearResumeMarks runs last
      expect(await store.resumeMark('b')).toBe(4); // FINISHED: not cleared
      await store.commit({});
    });

    it('rolls back every part of a batch when any part is refused', async () => {
      await store.setState('b', 'FINISHED', { status: 'MISS', finishedAtMs: 1 });
      const refusals: [Parameters<JobRepository['commit']>[0], string][] = [
        [{ events: progress('a', 1, 2), states: [{ jobId: 'b', state: 'RUNNING' }] },
          "setState: job 'b' is already FINISHED (status MISS); it cannot move to RUNNING"],
        [{ events: progress('a', 1, 2), summaries: [{ jobId: 'a', summary: new Uint8Array([1]) }],
          checkpoints: [{ jobId: 'a', sequence: 3, timeMs: 0, payload: new Uint8Array(1) }] },
        "saveCheckpoint: job 'a' checkpoint sequence 3 is outside its history 0..2"],
        [{ events: progress('a', 1, 2), resumeMarks: [{ jobId: 'a', sequence: 1 }], summaries: [{ jobId: 'ghost', summary: new Uint8Array(1) }] },
          "setSummary: no job 'ghost'"],
        [{ summaries: [{ jobId: 'a', summary: new Uint8Array([1]) }], events: progress('a', 2, 1) },
          "appendEvents: job 'a' expected sequence 1, got 2: a gap"],
      ];
      for (const [batch, message] of refusals) {
        expect((await storeError(() => store.commit(batch))).message).toBe(message);
      }
      await reopen();
      expect(await store.getJob('a')).toEqual({ ...newJob('a'), lastSequence: 0, summary: null });
      expect(await store.events('a')).toEqual([]);
      expect(await store.latestCheckpoint('a')).toBeUndefined();
      expect(await store.resumeMark('a')).toBeNull();
    });
  });

  describe('throughput', () => {
    it('appends 10,000 progress events of 400 bytes in batches of 64', async () => {
      const jobs = 8; // interleaved, as from a batched graph run
      const total = 10_000;
      const batchSize = 64;
      for (let j = 0; j < jobs; j++) await store.insertJob(newJob(`t${j}`));
      const all: EventRecord[] = [];
      const next = new Array<number>(jobs).fill(1);
      for (let i = 0; i < total; i++) {
        const j = i % jobs;
        all.push(progress(`t${j}`, next[j]++, 1, 400)[0]);
      }
      const start = performance.now();
      for (let i = 0; i < total; i += batchSize) await store.appendEvents(all.slice(i, i + batchSize));
      const seconds = (performance.now() - start) / 1000;
      console.log(`job store (${backendName}): ${total} events of 400 B in batches of ${batchSize}: ` +
        `${Math.round(total / seconds)} events/s (${(seconds * 1000).toFixed(0)} ms)`);

      for (let j = 0; j < jobs; j++) {
        expect((await store.getJob(`t${j}`))!.lastSequence).toBe(total / jobs);
        expectEvents(await store.events(`t${j}`), all.filter((e) => e.jobId === `t${j}`));
      }
    });
  });
});

describe('openJobStore', () => {
  it('opens PostgreSQL for a postgres:// or postgresql:// URL and SQLite for anything else', async () => {
    expect(isPostgresUrl('postgres://u:p@h/db')).toBe(true);
    expect(isPostgresUrl('postgresql://h/db')).toBe(true);
    expect(isPostgresUrl('POSTGRES://h/db')).toBe(true);
    expect(isPostgresUrl('/var/lib/recite/recite.db')).toBe(false);
    expect(isPostgresUrl('postgres.db')).toBe(false);

    const dir = mkdtempSync(join(tmpdir(), 'recite-open-'));
    const database = await createTestDatabase();
    try {
      const sqlite = await openJobStore(join(dir, 'jobs.db'));
      expect(sqlite).toBeInstanceOf(SqliteJobStore);
      expect(sqlite.location).toBe(join(dir, 'jobs.db'));
      await sqlite.close();
      const postgres = await openJobStore(database.url.replace(/^postgres:/, 'postgresql:'));
      expect(postgres).toBeInstanceOf(PostgresJobStore);
      expect(postgres.location).not.toContain(':recite@');
      expect(postgres.location).toContain(':***@');
      await postgres.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await database.drop();
    }
  });

  it('hides the password of a URL it reports', () => {
    expect(redactUrl('postgres://recite:s3cret@db.example:5432/recite')).toBe('postgres://recite:***@db.example:5432/recite');
    expect(redactUrl('postgresql://db.example/recite?password=s3cret&sslmode=require'))
      .toBe('postgresql://db.example/recite?password=***&sslmode=require');
    expect(redactUrl('postgres://recite@db.example/recite')).toBe('postgres://recite@db.example/recite');
  });
});

describe('SQLite file', () => {
  let dir: string;
  let file: string;
  let store: JobRepository | undefined;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'recite-store-'));
    file = join(dir, 'jobs.db');
  });
  afterEach(async () => {
    await store?.close();
    store = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('is in WAL mode at the current schema version, and refuses a newer schema', async () => {
    await SqliteJobStore.open(file).close();
    const raw = new Database(file);
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(raw.pragma('user_version', { simple: true })).toBe(schemaVersion);
    raw.pragma(`user_version = ${schemaVersion + 1}`);
    raw.close();
    expect((await storeError(() => SqliteJobStore.open(file))).message)
      .toBe(`open: ${file} has schema version ${schemaVersion + 1}; this build knows versions up to ${schemaVersion}`);
    store = SqliteJobStore.open(join(dir, 'nested', 'deeper', 'other.db')); // creates missing folders
    await store.insertJob(newJob('x'));
    expect(await store.countJobs()).toBe(1);
  });

  it('refuses a damaged file at open, naming it', async () => {
    writeFileSync(file, Buffer.alloc(8192, 'not a database '));
    const message = (await storeError(() => SqliteJobStore.open(file))).message;
    expect(message).toContain(`open: ${file} is damaged`);
    expect(message).toContain('restore it from a backup');
  });

  it('keeps every batch the writer reported committed when it is killed with SIGKILL, and no half batch', async () => {
    const built = join(root, 'dist/server/store/sqlite-job-store.js');
    const sources = ['server/store/sqlite-job-store.ts', 'server/store/sqlite-schema.ts', 'server/store/job-repository.ts',
      'server/store/job-rows.ts']
      .map((p) => join(root, p));
    if (!existsSync(built)) throw new Error(`crash test: ${built} is missing; run \`npx tsc -p tsconfig.json\` first`);
    const stale = sources.filter((p) => statSync(p).mtimeMs > statSync(built).mtimeMs + 1000);
    if (stale.length > 0) {
      throw new Error(`crash test: ${built} is older than ${stale.join(', ')}; run \`npx tsc -p tsconfig.json\` first`);
    }
    const script = join(dir, 'writer.mjs');
    // Each event's payload holds its own sequence and the last sequence of its batch; each batch also sets the
    // summary to that last sequence: a surviving half batch or a summary out of step with the events shows.
    writeFileSync(script, `
      import { SqliteJobStore } from ${JSON.stringify(pathToFileURL(built).href)};
      const store = SqliteJobStore.open(process.argv[2]);
      await store.insertJob({ id: 'crash', clientId: 'c', model: 'gpt2', label: '', spec: new Uint8Array(0), targetIds: [1],
        targetText: 'x', state: 'RUNNING', status: null, cancelRequested: false, createdAtMs: Date.now(), finishedAtMs: null });
      const word = (n) => { const b = new Uint8Array(8); new DataView(b.buffer).setFloat64(0, n); return b; };
      let sequence = 0;
      for (let batch = 0; ; batch++) {
        const size = 1 + (batch % 61);
        const end = sequence + size;
        const events = [];
        for (let i = 0; i < size; i++) {
          const payload = new Uint8Array(400);
          sequence++;
          payload.set(word(sequence), 0);
          payload.set(word(end), 8);
          events.push({ jobId: 'crash', sequence, timeMs: Date.now(), kind: 'progress', restart: 0, iteration: sequence, payload });
        }
        await store.commit({
          events,
          summaries: [{ jobId: 'crash', summary: word(end) }],
          checkpoints: batch % 10 === 0 ? [{ jobId: 'crash', sequence: end, timeMs: Date.now(), payload: word(end) }] : [],
        });
        process.stdout.write('committed ' + end + '\\n');
      }
    `);
    const child = spawn(process.execPath, [script, file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let reported = 0;
    let stderr = '';
    let pending = '';
    const exited = new Promise<NodeJS.Signals | null>((done) => child.on('exit', (_code, signal) => done(signal)));
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    child.stdout.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) reported = Math.max(reported, Number(line.slice('committed '.length)));
      // Kill at an arbitrary point well into the run: the writer is inside a transaction most of the time.
      if (reported >= 20_000 && child.exitCode === null && !child.killed) child.kill('SIGKILL');
    });
    const signal = await exited;
    expect(stderr).toBe('');
    expect(signal).toBe('SIGKILL');
    expect(reported).toBeGreaterThanOrEqual(20_000);

    store = SqliteJobStore.open(file);
    const job = (await store.getJob('crash'))!;
    const events = await store.events('crash');
    const word = (bytes: Uint8Array, offset: number) => new DataView(bytes.buffer, bytes.byteOffset).getFloat64(offset);
    console.log(`crash test: writer reported ${reported} events committed; the file holds ${job.lastSequence}`);
    expect(job.lastSequence).toBeGreaterThanOrEqual(reported);
    expect(events.length).toBe(job.lastSequence);
    events.forEach((event, i) => {
      expect(event.sequence).toBe(i + 1);
      expect(word(event.payload, 0)).toBe(i + 1);
    });
    expect(word(events.at(-1)!.payload, 8)).toBe(job.lastSequence); // the last batch is whole
    expect(word(job.summary!, 0)).toBe(job.lastSequence);
    const checkpoint = (await store.latestCheckpoint('crash'))!;
    expect(checkpoint.sequence).toBeLessThanOrEqual(job.lastSequence);
    // The reopened file takes up where the writer stopped.
    await store.appendEvents(progress('crash', job.lastSequence + 1, 1));
  });
});

describe('PostgreSQL database', () => {
  let database: TestDatabase;
  const opened: { close(): Promise<void> }[] = [];

  beforeEach(async () => {
    database = await createTestDatabase();
  });
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    await database.drop();
  });

  async function open(): Promise<PostgresJobStore> {
    const store = await PostgresJobStore.open(database.url);
    opened.push(store);
    return store;
  }

  async function sql<T>(text: string, values: unknown[] = []): Promise<T[]> {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      return (await client.query(text, values)).rows as T[];
    } finally {
      await client.end();
    }
  }

  it('migrates a fresh database to the current version, and an older one in place keeping its jobs', async () => {
    await open();
    expect(await sql('SELECT version FROM recite_schema_version')).toEqual([{ version: postgresSchemaVersion }]);
    const tables = await sql<{ table_name: string }>(`SELECT table_name FROM information_schema.tables
      WHERE table_schema = 'public' ORDER BY table_name`);
    expect(tables.map((t) => t.table_name))
      .toEqual(['checkpoints', 'dataset_rows', 'datasets', 'events', 'jobs', 'recite_schema_version']);
    const columns = await sql<{ column_name: string; data_type: string }>(`SELECT column_name, data_type
      FROM information_schema.columns WHERE table_name = 'jobs' AND column_name IN ('spec', 'created_at', 'resumed_from')
      ORDER BY column_name`);
    expect(columns).toEqual([
      { column_name: 'created_at', data_type: 'bigint' },
      { column_name: 'resumed_from', data_type: 'bigint' },
      { column_name: 'spec', data_type: 'bytea' },
    ]);
    expect(postgresSchemaVersion).toBe(schemaVersion); // one version, one set of tables, in either back end

    // A database left at version 1 by an older build: jobs only.
    const older = await createTestDatabase();
    try {
      const client = new pg.Client({ connectionString: older.url });
      await client.connect();
      await client.query(postgresMigrations[0]);
      await client.query('CREATE TABLE recite_schema_version (one boolean PRIMARY KEY DEFAULT true CHECK (one), version integer NOT NULL)');
      await client.query('INSERT INTO recite_schema_version (version) VALUES (1)');
      await client.query(`INSERT INTO jobs (id, client_id, model, label, spec, target_ids, target_text, state, created_at)
        VALUES ('old', 'alice', 'gpt2', '', '\\x00ff', '[1]', 'x', 'QUEUED', 5000000000000)`);
      await client.end();
      const store = await PostgresJobStore.open(older.url);
      try {
        expect(await store.getJob('old')).toMatchObject({ state: 'QUEUED', createdAtMs: 5_000_000_000_000, spec: new Uint8Array([0, 255]) });
        expect(await store.resumeMark('old')).toBeNull();
        await store.setResumeMark('old', 0);
        expect(await store.resumeMark('old')).toBe(0);
      } finally {
        await store.close();
      }
    } finally {
      await older.drop();
    }
  });

  it('refuses a database with a newer schema, naming it without its password', async () => {
    await (await open()).close();
    await sql('UPDATE recite_schema_version SET version = $1', [postgresSchemaVersion + 1]);
    const message = (await storeError(() => PostgresJobStore.open(database.url))).message;
    expect(message).toBe(`open: ${redactUrl(database.url)} has schema version ${postgresSchemaVersion + 1}; ` +
      `this build knows versions up to ${postgresSchemaVersion}`);
    expect(message).not.toContain(':recite@');
  });

  it('reports a server it cannot reach as a JobStoreError naming the URL without its password', async () => {
    const url = 'postgres://recite:s3cret@127.0.0.1:1/nowhere';
    const message = (await storeError(() => PostgresJobStore.open(url))).message;
    expect(message).toMatch(/^open: cannot connect to postgres:\/\/recite:\*\*\*@127\.0\.0\.1:1\/nowhere: /);
    expect(message).not.toContain('s3cret');
  });

  it('lets servers starting at once on a fresh database all open it (the migrations run once, under a lock)', async () => {
    const stores = await Promise.all(Array.from({ length: 4 }, () => open()));
    expect(await sql('SELECT version FROM recite_schema_version')).toEqual([{ version: postgresSchemaVersion }]);
    await stores[0].insertJob(newJob('shared'));
    for (const store of stores) expect((await store.getJob('shared'))?.id).toBe('shared');
  });

  it('lets exactly one of two servers appending the same sequence to one job win; the history stays contiguous', async () => {
    const [first, second] = [await open(), await open()];
    await first.insertJob(newJob('c'));
    const rounds = 40;
    const winners: number[] = [];
    for (let sequence = 1; sequence <= rounds; sequence++) {
      // The same sequence from both, each with its own payload: the row lock lets one in; the other then sees it.
      const attempt = (store: PostgresJobStore, who: number) => store.appendEvents([{
        jobId: 'c', sequence, timeMs: 1_700_000_000_000 + sequence, kind: 'progress', restart: 0, iteration: sequence,
        payload: new Uint8Array([who, sequence]),
      }]);
      const outcomes = await Promise.allSettled([attempt(first, 1), attempt(second, 2)]);
      const won = outcomes.flatMap((o, i) => (o.status === 'fulfilled' ? [i + 1] : []));
      expect(won, `winners of sequence ${sequence}`).toHaveLength(1);
      const lost = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected')!;
      expect(lost.reason).toBeInstanceOf(JobStoreError);
      expect((lost.reason as Error).message)
        .toBe(`appendEvents: job 'c' expected sequence ${sequence + 1}, got ${sequence}: already stored (a duplicate or a wrong start)`);
      winners.push(won[0]);
    }
    const events = await second.events('c');
    expect(events.map((e) => e.sequence)).toEqual(Array.from({ length: rounds }, (_, i) => i + 1));
    expect(events.map((e) => e.payload[0])).toEqual(winners);
    expect((await first.getJob('c'))!.lastSequence).toBe(rounds);

    // Free-running: each server reads the last sequence and appends three after it, retrying when the other got
    // there first. Every batch lands whole or not at all.
    const worker = async (store: PostgresJobStore, who: number) => {
      let landed = 0;
      let refused = 0;
      while (landed < 25) {
        const last = (await store.getJob('c'))!.lastSequence;
        const batch = progress('c', last + 1, 3).map((e) => ({ ...e, payload: new Uint8Array([who, e.sequence & 0xff]) }));
        try {
          await store.appendEvents(batch);
          landed++;
        } catch (error) {
          if (!(error instanceof JobStoreError)) throw error;
          refused++;
        }
      }
      return refused;
    };
    const refusals = await Promise.all([worker(first, 1), worker(second, 2)]);
    console.log(`concurrent appenders: ${refusals.join(' and ')} batches refused and retried`);
    const all = await first.events('c');
    expect(all.map((e) => e.sequence)).toEqual(Array.from({ length: rounds + 150 }, (_, i) => i + 1));
    // Each batch of three after the lockstep rounds came from one server.
    for (let i = rounds; i < all.length; i += 3) {
      expect(new Set(all.slice(i, i + 3).map((e) => e.payload[0])).size, `batch at ${i + 1}`).toBe(1);
    }
    expect((await second.getJob('c'))!.lastSequence).toBe(rounds + 150);
  });
});
