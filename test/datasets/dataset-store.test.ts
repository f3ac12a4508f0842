// The data set store: migration 2 upgrades a file the job store wrote at version 1 without touching its jobs; rows
// move PENDING → SUBMITTING → SUBMITTED → FINISHED and nothing else; finish orders count 1, 2, 3, …; a data set
// finishes with its last row.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { DatasetStore, DatasetStoreError } from '../../server/datasets/dataset-store.js';
import type { NewDataset, RowOutcome } from '../../server/datasets/dataset-store.js';
import { JobStore } from '../../server/store/job-store.js';
import { migrations, schemaVersion } from '../../server/store/schema.js';

const stores: { close(): void }[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

function open(file = ':memory:'): DatasetStore {
  const store = DatasetStore.open(file);
  stores.push(store);
  return store;
}

function dataset(name: string, rows = 3, createdAtMs = 1000): NewDataset {
  return {
    id: `${name}-id`, clientId: 'alice', name, contentHash: `sha256:${name}`, model: 'tiny', settings: new Uint8Array([8, 1]),
    createdAtMs,
    rows: Array.from({ length: rows }, (_, i) => (i % 2 === 0 ? { rowId: `r${i}`, target: { text: `text ${i}` } } : { rowId: `r${i}`, target: { ids: [i, i + 1] } })),
  };
}

const hit: RowOutcome = { status: 'HIT', iterationsToHit: 12, bestNll: 3.5, iterations: 13, elapsedMs: 40, error: null };
const miss: RowOutcome = { status: 'MAX_ITERATIONS', iterationsToHit: null, bestNll: 9.25, iterations: 300, elapsedMs: 900, error: null };

describe('DatasetStore', () => {
  it('upgrades a version-1 job store file in place and leaves its jobs alone', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'recite-dsstore-')), 'v1.db');
    const raw = new Database(file);
    raw.exec(migrations[0]!);
    raw.pragma('user_version = 1');
    raw.prepare(`INSERT INTO jobs (id, client_id, model, label, spec, target_ids, target_text, state, created_at)
      VALUES ('job-1', 'alice', 'tiny', '', x'00', '[1]', 'x', 'QUEUED', 1)`).run();
    raw.close();
    const store = open(file);
    store.createDataset(dataset('after-upgrade'));
    const jobs = JobStore.open(file);
    stores.push(jobs);
    expect(jobs.getJob('job-1')?.state).toBe('QUEUED');
    const check = new Database(file, { readonly: true });
    expect(check.pragma('user_version', { simple: true })).toBe(schemaVersion);
    expect(schemaVersion).toBeGreaterThanOrEqual(2);
    check.close();
  });

  it('moves rows through their states, numbers the finish order and finishes the data set with its last row', () => {
    const store = open();
    store.createDataset(dataset('a'));
    const id = 'a-id';
    expect(store.rowsInState(id, 'PENDING').map((r) => r.rowId)).toEqual(['r0', 'r1', 'r2']);
    expect(store.rowsInState(id, 'PENDING')[1]!.target).toEqual({ ids: [1, 2] });
    expect(store.rowsInState(id, 'PENDING')[0]!.target).toEqual({ text: 'text 0' });
    expect(() => store.markSubmitted(id, 0, 'job-0')).toThrow(new DatasetStoreError("row 0 of data set 'a-id' is PENDING; the move needs SUBMITTING"));
    store.markSubmitting(id, 0, 5000);
    store.markSubmitted(id, 0, 'job-0');
    store.markSubmitting(id, 1, 5001);
    store.markPending(id, 1); // the queue was full: try again later
    expect(store.counts(id)).toMatchObject({ rows: 3, pending: 2, submitted: 1, finished: 0 });
    expect(store.finishRow(id, 2, { ...miss, status: 'FAILED', error: 'too long', iterations: 0, bestNll: null }, 6000)).toBe(1);
    expect(store.finishRow(id, 0, hit, 6001)).toBe(2);
    expect(() => store.finishRow(id, 0, hit, 6002)).toThrow(/has already finished/);
    expect(store.getDataset('alice', 'a')!.state).toBe('RUNNING');
    expect(store.finishRow(id, 1, miss, 6003)).toBe(3);
    const done = store.getDataset('alice', 'a')!;
    expect(done).toMatchObject({ state: 'FINISHED', finishedAtMs: 6003, finishedRows: 3, rowCount: 3 });
    expect(store.counts(id)).toEqual({ rows: 3, pending: 0, submitted: 0, finished: 3, hits: 1, misses: 1, failed: 1, finishedIterations: 313 });
    expect(store.finishedRows(id, 1, 10).map((r) => [r.rowId, r.finishOrder, r.jobId])).toEqual([['r0', 2, 'job-0'], ['r1', 3, null]]);
    expect(store.finishedRows(id, 0, 10)[1]!.outcome).toEqual(hit);
    expect(store.activeDatasets()).toEqual([]);
  });

  it('keeps one data set per client and name, unique row ids, and lists newest first', () => {
    const store = open();
    store.createDataset(dataset('first', 2, 1000));
    store.createDataset(dataset('second', 2, 2000));
    store.createDataset({ ...dataset('other', 1, 3000), clientId: 'bob' });
    expect(() => store.createDataset({ ...dataset('first'), id: 'x' })).toThrow("createDataset: client 'alice' already has a data set 'first'");
    const repeated = { ...dataset('rep'), rows: [{ rowId: 'r', target: { text: 'a' } }, { rowId: 'r', target: { text: 'b' } }] };
    expect(() => store.createDataset(repeated)).toThrow("createDataset: row 1 repeats the id 'r'");
    expect(store.getDataset('alice', 'rep')).toBeUndefined(); // nothing of a refused data set is stored
    expect(store.listDatasets('alice', 10).map((d) => d.name)).toEqual(['second', 'first']);
    expect(store.listDatasets('alice', 10, 'second').map((d) => d.name)).toEqual(['first']);
    expect(store.getDataset('bob', 'first')).toBeUndefined();
    expect(store.cancelDataset('first-id')).toBe(true);
    expect(store.cancelDataset('first-id')).toBe(false);
    expect(store.activeDatasets().map((d) => d.name)).toEqual(['first', 'second', 'other']);
  });
});
