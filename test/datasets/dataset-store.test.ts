// The data set store on both back ends, a real SQLite file and a real PostgreSQL database: rows move PENDING →
// SUBMITTING → SUBMITTED → FINISHED and nothing else; finish orders count 1, 2, 3, …; a data set finishes with its
// last row. Then what only one back end has: migration 2 upgrading a SQLite file the job store wrote at version 1,
// and two PostgreSQL servers finishing rows of one data set at once.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { DatasetRepository, NewDataset, RowOutcome } from '../../server/datasets/dataset-repository.js';
import { DatasetStoreError } from '../../server/datasets/dataset-repository.js';
import { SqliteDatasetStore } from '../../server/datasets/dataset-store.js';
import { openDatasetStore } from '../../server/datasets/open-dataset-store.js';
import { PostgresDatasetStore } from '../../server/datasets/postgres-dataset-store.js';
import { SqliteJobStore } from '../../server/store/sqlite-job-store.js';
import { migrations, schemaVersion } from '../../server/store/sqlite-schema.js';
import { createTestDatabase } from '../helpers/postgres.js';
import type { StoreBackend } from '../helpers/store-backends.js';
import { backendNames, createBackend } from '../helpers/store-backends.js';

function dataset(name: string, rows = 3, createdAtMs = 1000): NewDataset {
  return {
    id: `${name}-id`, clientId: 'alice', name, contentHash: `sha256:${name}`, model: 'tiny', settings: new Uint8Array([8, 1]),
    createdAtMs,
    rows: Array.from({ length: rows }, (_, i) => (i % 2 === 0 ? { rowId: `r${i}`, target: { text: `text ${i}` } } : { rowId: `r${i}`, target: { ids: [i, i + 1] } })),
  };
}

const hit: RowOutcome = { status: 'HIT', iterationsToHit: 12, bestNll: 3.5, iterations: 13, elapsedMs: 40, error: null };
const miss: RowOutcome = { status: 'MAX_ITERATIONS', iterationsToHit: null, bestNll: 9.25, iterations: 300, elapsedMs: 900, error: null };

describe.each(backendNames)('data set store on %s', (backendName) => {
  let backend: StoreBackend;
  let store: DatasetRepository;

  beforeAll(async () => {
    backend = await createBackend(backendName);
  });
  afterAll(async () => {
    await backend?.cleanup();
  });
  beforeEach(async () => {
    await backend.reset();
    store = await backend.openDatasets();
  });
  afterEach(async () => {
    await store.close();
  });

  it('moves rows through their states, numbers the finish order and finishes the data set with its last row', async () => {
    await store.createDataset(dataset('a'));
    const id = 'a-id';
    expect((await store.rowsInState(id, 'PENDING')).map((r) => r.rowId)).toEqual(['r0', 'r1', 'r2']);
    expect((await store.rowsInState(id, 'PENDING'))[1]!.target).toEqual({ ids: [1, 2] });
    expect((await store.rowsInState(id, 'PENDING'))[0]!.target).toEqual({ text: 'text 0' });
    expect((await store.rowsInState(id, 'PENDING', 2)).map((r) => r.index)).toEqual([0, 1]);
    await expect(store.markSubmitted(id, 0, 'job-0'))
      .rejects.toThrow(new DatasetStoreError("row 0 of data set 'a-id' is PENDING; the move needs SUBMITTING"));
    await expect(store.markSubmitting(id, 7, 1)).rejects.toThrow(new DatasetStoreError("data set 'a-id' has no row 7"));
    await store.markSubmitting(id, 0, 5000);
    await store.markSubmitted(id, 0, 'job-0');
    await store.markSubmitting(id, 1, 5001);
    expect((await store.rows(id, 1, 1))[0]).toMatchObject({ state: 'SUBMITTING', submittingAtMs: 5001, jobId: null });
    await store.markPending(id, 1); // the queue was full: try again later
    expect((await store.rows(id, 1, 1))[0]).toMatchObject({ state: 'PENDING', submittingAtMs: null });
    expect(await store.counts(id)).toMatchObject({ rows: 3, pending: 2, submitted: 1, finished: 0 });
    expect(await store.finishRow(id, 2, { ...miss, status: 'FAILED', error: 'too long', iterations: 0, bestNll: null }, 6000)).toBe(1);
    expect(await store.finishRow(id, 0, hit, 6001)).toBe(2);
    await expect(store.finishRow(id, 0, hit, 6002)).rejects.toThrow(/has already finished/);
    await expect(store.finishRow(id, 9, hit, 6002)).rejects.toThrow(new DatasetStoreError("finishRow: data set 'a-id' has no row 9"));
    expect((await store.getDataset('alice', 'a'))!.state).toBe('RUNNING');
    expect(await store.finishRow(id, 1, miss, 6003)).toBe(3);
    const done = (await store.getDataset('alice', 'a'))!;
    expect(done).toMatchObject({ state: 'FINISHED', finishedAtMs: 6003, finishedRows: 3, rowCount: 3 });
    expect(await store.counts(id)).toEqual({ rows: 3, pending: 0, submitted: 0, finished: 3, hits: 1, misses: 1, failed: 1, finishedIterations: 313 });
    expect((await store.finishedRows(id, 1, 10)).map((r) => [r.rowId, r.finishOrder, r.jobId])).toEqual([['r0', 2, 'job-0'], ['r1', 3, null]]);
    expect((await store.finishedRows(id, 0, 10))[1]!.outcome).toEqual(hit);
    expect((await store.finishedRows(id, 0, 10))[0]!.outcome)
      .toEqual({ ...miss, status: 'FAILED', error: 'too long', iterations: 0, bestNll: null });
    expect(await store.activeDatasets()).toEqual([]);
  });

  it('keeps a CANCELLED data set active until its rows drain, then gives it its finish time', async () => {
    await store.createDataset(dataset('c', 2));
    expect(await store.cancelDataset('c-id')).toBe(true);
    expect((await store.activeDatasets()).map((d) => d.name)).toEqual(['c']);
    await store.finishRow('c-id', 0, { ...hit, status: 'CANCELLED' }, 7000);
    await store.finishRow('c-id', 1, hit, 7001);
    expect(await store.getDatasetById('c-id')).toMatchObject({ state: 'CANCELLED', finishedAtMs: 7001, finishedRows: 2 });
    expect(await store.activeDatasets()).toEqual([]);
    expect(await store.cancelDataset('c-id')).toBe(false);
    expect(await store.counts('c-id')).toMatchObject({ finished: 2, hits: 1, misses: 0, failed: 1 });
  });

  it('keeps every field of a data set, settings bytes and epoch ms past 2^32 included, across a reopen', async () => {
    const settings = new Uint8Array(256).map((_, i) => 255 - i);
    await store.createDataset({ ...dataset('kept', 1, 2 ** 42 + 5), settings });
    await store.finishRow('kept-id', 0, { ...hit, bestNll: 0.1 + 0.2, elapsedMs: 1234.5678 }, 2 ** 43 + 1);
    await store.close();
    store = await backend.openDatasets();
    expect(store.open).toBe(true);
    const back = (await store.getDatasetById('kept-id'))!;
    expect(back).toEqual({
      id: 'kept-id', clientId: 'alice', name: 'kept', contentHash: 'sha256:kept', model: 'tiny', settings, state: 'FINISHED',
      createdAtMs: 2 ** 42 + 5, finishedAtMs: 2 ** 43 + 1, rowCount: 1, finishedRows: 1,
    });
    expect((await store.rows('kept-id', 0, 5))[0]!.outcome).toEqual({ ...hit, bestNll: 0.1 + 0.2, elapsedMs: 1234.5678 });
    expect(await store.getDatasetById('nope')).toBeUndefined();
    await store.close();
    await store.close();
    expect(store.open).toBe(false);
    store = await backend.openDatasets();
  });

  it('keeps one data set per client and name, unique row ids, and lists newest first', async () => {
    await store.createDataset(dataset('first', 2, 1000));
    await store.createDataset(dataset('second', 2, 2000));
    await store.createDataset({ ...dataset('other', 1, 3000), clientId: 'bob' });
    await expect(store.createDataset({ ...dataset('first'), id: 'x' }))
      .rejects.toThrow(new DatasetStoreError("createDataset: client 'alice' already has a data set 'first'"));
    const repeated = { ...dataset('rep'), rows: [{ rowId: 'r', target: { text: 'a' } }, { rowId: 'r', target: { text: 'b' } }] };
    await expect(store.createDataset(repeated)).rejects.toThrow(new DatasetStoreError("createDataset: row 1 repeats the id 'r'"));
    await expect(store.createDataset({ ...dataset('empty'), rows: [] }))
      .rejects.toThrow(new DatasetStoreError("createDataset: data set 'empty' has no rows"));
    expect(await store.getDataset('alice', 'rep')).toBeUndefined(); // nothing of a refused data set is stored
    expect(await store.getDatasetById('rep-id')).toBeUndefined();
    expect((await store.listDatasets('alice', 10)).map((d) => d.name)).toEqual(['second', 'first']);
    expect((await store.listDatasets('alice', 10, 'second')).map((d) => d.name)).toEqual(['first']);
    expect((await store.listDatasets('alice', 1)).map((d) => d.name)).toEqual(['second']);
    await expect(store.listDatasets('bob', 10, 'first'))
      .rejects.toThrow(new DatasetStoreError("listDatasets: client 'bob' has no data set 'first'"));
    expect(await store.getDataset('bob', 'first')).toBeUndefined();
    expect(await store.cancelDataset('first-id')).toBe(true);
    expect(await store.cancelDataset('first-id')).toBe(false);
    expect((await store.activeDatasets()).map((d) => d.name)).toEqual(['first', 'second', 'other']);
  });

  it('breaks equal creation times by insertion order when listing', async () => {
    for (const name of ['t0', 't1', 't2', 't3']) await store.createDataset(dataset(name, 1, 500));
    expect((await store.listDatasets('alice', 10)).map((d) => d.name)).toEqual(['t3', 't2', 't1', 't0']);
    expect((await store.listDatasets('alice', 2, 't2')).map((d) => d.name)).toEqual(['t1', 't0']);
    expect((await store.activeDatasets()).map((d) => d.name)).toEqual(['t0', 't1', 't2', 't3']);
  });
});

describe('openDatasetStore', () => {
  it('opens PostgreSQL for a postgres:// URL and SQLite for a file path', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-dsopen-'));
    const database = await createTestDatabase();
    try {
      const sqlite = await openDatasetStore(path.join(dir, 'recite.db'));
      expect(sqlite).toBeInstanceOf(SqliteDatasetStore);
      await sqlite.close();
      const postgres = await openDatasetStore(database.url);
      expect(postgres).toBeInstanceOf(PostgresDatasetStore);
      await postgres.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      await database.drop();
    }
  });
});

describe('SQLite file', () => {
  it('upgrades a version-1 job store file in place and leaves its jobs alone', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-dsstore-'));
    const file = path.join(dir, 'v1.db');
    const raw = new Database(file);
    raw.exec(migrations[0]!);
    raw.pragma('user_version = 1');
    raw.prepare(`INSERT INTO jobs (id, client_id, model, label, spec, target_ids, target_text, state, created_at)
      VALUES ('job-1', 'alice', 'tiny', '', x'00', '[1]', 'x', 'QUEUED', 1)`).run();
    raw.close();
    const store = SqliteDatasetStore.open(file);
    const jobs = SqliteJobStore.open(file);
    try {
      await store.createDataset(dataset('after-upgrade'));
      expect((await jobs.getJob('job-1'))?.state).toBe('QUEUED');
      const check = new Database(file, { readonly: true });
      expect(check.pragma('user_version', { simple: true })).toBe(schemaVersion);
      expect(schemaVersion).toBeGreaterThanOrEqual(2);
      check.close();
    } finally {
      await store.close();
      await jobs.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('PostgreSQL database', () => {
  it('gives rows finished by two servers at once distinct finish orders 1..n, and finishes the data set once', async () => {
    const database = await createTestDatabase();
    const [first, second] = [await PostgresDatasetStore.open(database.url), await PostgresDatasetStore.open(database.url)];
    try {
      const rows = 30;
      await first.createDataset(dataset('race', rows));
      const orders = await Promise.all(Array.from({ length: rows }, (_, index) =>
        (index % 2 === 0 ? first : second).finishRow('race-id', index, hit, 9000 + index)));
      expect([...orders].sort((a, b) => a - b)).toEqual(Array.from({ length: rows }, (_, i) => i + 1));
      const done = (await second.getDatasetById('race-id'))!;
      expect(done).toMatchObject({ state: 'FINISHED', finishedRows: rows });
      expect(await first.counts('race-id')).toMatchObject({ finished: rows, hits: rows, finishedIterations: 13 * rows });
      // Both servers asked to finish the same row: one wins, the other is told it already finished.
      await first.createDataset(dataset('twice', 2));
      const outcomes = await Promise.allSettled([first.finishRow('twice-id', 0, hit, 1), second.finishRow('twice-id', 0, miss, 2)]);
      expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
      const lost = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected')!;
      expect(lost.reason).toEqual(new DatasetStoreError("finishRow: row 0 of 'twice-id' has already finished"));
      expect((await first.getDatasetById('twice-id'))!.finishedRows).toBe(1);
    } finally {
      await first.close();
      await second.close();
      await database.drop();
    }
  });
});
