// The job store on a real SQLite file: every field survives a round trip and a reopen, a job's history stays
// numbered 1, 2, 3, … whatever the caller sends, a throwing transaction leaves nothing, and a writer killed with
// SIGKILL leaves a file holding at least everything it had reported as committed, with no half of a batch.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CheckpointRecord, EventRecord, JobRecord, NewJob } from '../../server/store/job-store.js';
import { JobStore, JobStoreError } from '../../server/store/job-store.js';
import { schemaVersion } from '../../server/store/schema.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

let dir: string;
let file: string;
let store: JobStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'recite-store-'));
  file = join(dir, 'jobs.db');
  store = JobStore.open(file);
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

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

function sequences(jobId: string, s: JobStore = store): number[] {
  return s.events(jobId).map((e) => e.sequence);
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

function reopen(): JobStore {
  store.close();
  store = JobStore.open(file);
  return store;
}

function storeError(fn: () => unknown): JobStoreError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(JobStoreError);
    expect((error as Error).name).toBe('JobStoreError');
    return error as JobStoreError;
  }
  throw new Error('expected a JobStoreError, but the call returned');
}

describe('round trips', () => {
  it('keeps every job field, bytes intact, nulls as nulls, across a reopen', () => {
    const job = newJob('j1');
    store.insertJob(job);
    const expected: JobRecord = { ...job, lastSequence: 0, summary: null };
    expect(store.getJob('j1')).toEqual(expected);
    expect(store.getJob('missing')).toBeUndefined();

    const finished = newJob('j2', {
      state: 'FINISHED', status: 'HIT', cancelRequested: true, finishedAtMs: 1_700_000_123_456, spec: new Uint8Array(0),
      targetIds: [], targetText: '',
    });
    store.insertJob(finished);
    store.setSummary('j2', new Uint8Array([9, 8, 7]));
    reopen();
    expect(store.getJob('j1')).toEqual(expected);
    const back = store.getJob('j2')!;
    expect(back).toEqual({ ...finished, lastSequence: 0, summary: new Uint8Array([9, 8, 7]) });
    expect(back.spec).toBeInstanceOf(Uint8Array);
    expect(back.spec.length).toBe(0);
    expect(store.path).toBe(file);
  });

  it('keeps every event field, including null restart and iteration and large payloads', () => {
    store.insertJob(newJob('j'));
    const big = new Uint8Array(1 << 20).map((_, i) => (i * 7) & 0xff);
    const events: EventRecord[] = [
      { jobId: 'j', sequence: 1, timeMs: 1_700_000_000_001, kind: 'queued', restart: null, iteration: null, payload: new Uint8Array([1]) },
      { jobId: 'j', sequence: 2, timeMs: 1_700_000_000_002, kind: 'started', restart: null, iteration: null, payload: new Uint8Array(0) },
      { jobId: 'j', sequence: 3, timeMs: 1_700_000_000_003, kind: 'progress', restart: 0, iteration: 0, payload: big },
      { jobId: 'j', sequence: 4, timeMs: 1_700_000_000_004, kind: 'restart_result', restart: 2, iteration: 1999, payload: new Uint8Array([0, 255]) },
      { jobId: 'j', sequence: 5, timeMs: 1_700_000_000_005, kind: 'result', restart: null, iteration: null, payload: new Uint8Array([42]) },
    ];
    store.appendEvents(events);
    expect(store.getJob('j')!.lastSequence).toBe(5);
    expectEvents(store.events('j'), events);
    reopen();
    expectEvents(store.events('j'), events);
    expectEvents(store.events('j', 2), events.slice(2));
    expectEvents(store.events('j', 1, 2), events.slice(1, 3));
    expect(store.events('j', 5)).toEqual([]);
    expect(store.events('nobody')).toEqual([]);
  });

  it('keeps one checkpoint per job, replaced by the next', () => {
    store.insertJob(newJob('j'));
    store.appendEvents(progress('j', 1, 10));
    expect(store.latestCheckpoint('j')).toBeUndefined();
    const first: CheckpointRecord = { jobId: 'j', sequence: 4, timeMs: 1, payload: new Uint8Array([1, 2, 3]) };
    const second: CheckpointRecord = { jobId: 'j', sequence: 9, timeMs: 2, payload: new Uint8Array(5000).fill(7) };
    store.saveCheckpoint(first);
    expect(store.latestCheckpoint('j')).toEqual(first);
    store.saveCheckpoint(second);
    reopen();
    expect(store.latestCheckpoint('j')).toEqual(second);
    const raw = new Database(file, { readonly: true });
    expect(raw.prepare('SELECT count(*) FROM checkpoints').pluck().get()).toBe(1);
    raw.close();

    expect(storeError(() => store.saveCheckpoint({ ...first, sequence: 11 })).message)
      .toBe("saveCheckpoint: job 'j' checkpoint sequence 11 is outside its history 0..10");
    expect(storeError(() => store.saveCheckpoint({ ...first, jobId: 'nope' })).message).toBe("saveCheckpoint: no job 'nope'");
  });

  it('refuses a duplicate id and bad values, naming the operation and the value', () => {
    store.insertJob(newJob('j'));
    expect(storeError(() => store.insertJob(newJob('j'))).message).toBe("insertJob: job 'j' already exists");
    expect(storeError(() => store.insertJob(newJob(''))).message).toBe('insertJob: id "" must be a non-empty string');
    expect(storeError(() => store.insertJob(newJob('k', { targetIds: [1, -2] }))).message)
      .toBe('insertJob: targetIds must be an array of integer token ids ≥ 0');
    expect(storeError(() => store.insertJob(newJob('k', { createdAtMs: 1.5 }))).message)
      .toBe('insertJob: createdAtMs 1.5 must be an integer');
    expect(storeError(() => store.insertJob(newJob('k', { state: 'DONE' as never }))).message)
      .toBe("insertJob: state 'DONE' must be one of QUEUED, RUNNING, FINISHED");
    expect(store.countJobs()).toBe(1);
  });
});

describe('event sequences', () => {
  beforeEach(() => {
    store.insertJob(newJob('a'));
    store.insertJob(newJob('b'));
  });

  it('accepts interleaved jobs in one batch and updates each lastSequence', () => {
    const batch = [...progress('a', 1, 3), ...progress('b', 1, 2)];
    batch.sort((x, y) => x.sequence - y.sequence); // a1 b1 a2 b2 a3
    store.appendEvents(batch);
    store.appendEvents([...progress('b', 3, 1), ...progress('a', 4, 2)]);
    expect(sequences('a')).toEqual([1, 2, 3, 4, 5]);
    expect(sequences('b')).toEqual([1, 2, 3]);
    expect(store.getJob('a')!.lastSequence).toBe(5);
    expect(store.getJob('b')!.lastSequence).toBe(3);
    store.appendEvents([]);
    expect(store.getJob('a')!.lastSequence).toBe(5);
  });

  it('refuses a wrong start, a gap and a duplicate, and stores nothing of the batch', () => {
    expect(storeError(() => store.appendEvents(progress('a', 0, 1))).message)
      .toBe("appendEvents: job 'a' expected sequence 1, got 0: already stored (a duplicate or a wrong start)");
    expect(storeError(() => store.appendEvents(progress('a', 2, 1))).message)
      .toBe("appendEvents: job 'a' expected sequence 1, got 2: a gap");

    store.appendEvents(progress('a', 1, 3));
    // The valid head of each batch (b's events, a4) must roll back with the bad tail.
    const gap = [...progress('b', 1, 2), ...progress('a', 4, 1), ...progress('a', 6, 1)];
    expect(storeError(() => store.appendEvents(gap)).message).toBe("appendEvents: job 'a' expected sequence 5, got 6: a gap");
    const duplicate = [...progress('b', 1, 1), ...progress('a', 3, 1)];
    expect(storeError(() => store.appendEvents(duplicate)).message)
      .toBe("appendEvents: job 'a' expected sequence 4, got 3: already stored (a duplicate or a wrong start)");
    const repeatedInBatch = [...progress('a', 4, 1), ...progress('a', 4, 1)];
    expect(storeError(() => store.appendEvents(repeatedInBatch)).message)
      .toBe("appendEvents: job 'a' expected sequence 5, got 4: already stored (a duplicate or a wrong start)");
    expect(storeError(() => store.appendEvents([{ ...progress('a', 4, 1)[0], sequence: 4.5 }])).message)
      .toBe("appendEvents: job 'a' expected sequence 4, got 4.5: not an integer");

    expect(sequences('a')).toEqual([1, 2, 3]);
    expect(sequences('b')).toEqual([]);
    expect(store.getJob('a')!.lastSequence).toBe(3);
    expect(store.getJob('b')!.lastSequence).toBe(0);
  });

  it('refuses events of an unknown job and malformed fields', () => {
    expect(storeError(() => store.appendEvents(progress('ghost', 1, 1))).message).toBe("appendEvents: no job 'ghost'");
    const [event] = progress('a', 1, 1);
    expect(storeError(() => store.appendEvents([{ ...event, kind: 'done' as never }])).message)
      .toBe("appendEvents: job 'a' event 1 has kind 'done'; expected one of queued, started, progress, restart_result, result");
    expect(storeError(() => store.appendEvents([{ ...event, timeMs: Number.NaN }])).message)
      .toBe('appendEvents: timeMs NaN must be an integer');
    expect(storeError(() => store.appendEvents([{ ...event, payload: 'x' as never }])).message)
      .toBe('appendEvents: payload must be a Uint8Array, got string');
    expect(store.getJob('a')!.lastSequence).toBe(0);
  });

  it('truncates after a checkpoint and continues the history from there', () => {
    store.appendEvents(progress('a', 1, 10));
    store.appendEvents(progress('b', 1, 4));
    store.saveCheckpoint({ jobId: 'a', sequence: 6, timeMs: 0, payload: new Uint8Array([6]) });
    expect(store.truncateEventsAfter('a', 6)).toBe(4);
    expect(store.getJob('a')!.lastSequence).toBe(6);
    expect(sequences('a')).toEqual([1, 2, 3, 4, 5, 6]);
    expect(sequences('b')).toEqual([1, 2, 3, 4]);
    expect(store.latestCheckpoint('a')!.sequence).toBe(6); // at the truncation point: kept

    expect(storeError(() => store.appendEvents(progress('a', 11, 1))).message)
      .toBe("appendEvents: job 'a' expected sequence 7, got 11: a gap");
    store.appendEvents(progress('a', 7, 3, 32)); // new payloads: the resumed run's events, not the old ones
    reopen();
    expectEvents(store.events('a', 6), progress('a', 7, 3, 32));
    expect(store.getJob('a')!.lastSequence).toBe(9);

    expect(store.truncateEventsAfter('a', 9)).toBe(0);
    expect(store.truncateEventsAfter('a', 2)).toBe(7);
    expect(store.latestCheckpoint('a')).toBeUndefined(); // it described events 3..6, now gone
    expect(store.truncateEventsAfter('a', 0)).toBe(2);
    expect(store.getJob('a')!.lastSequence).toBe(0);
    store.appendEvents(progress('a', 1, 1));
    expect(sequences('a')).toEqual([1]);

    expect(storeError(() => store.truncateEventsAfter('a', 5)).message)
      .toBe("truncateEventsAfter: sequence 5 is outside job 'a''s history 0..1");
    expect(storeError(() => store.truncateEventsAfter('a', -1)).message)
      .toBe("truncateEventsAfter: sequence -1 is outside job 'a''s history 0..1");
    expect(storeError(() => store.truncateEventsAfter('ghost', 0)).message).toBe("truncateEventsAfter: no job 'ghost'");
  });
});

describe('listings', () => {
  it('pages newest first with a stable order for equal times, one client at a time', () => {
    // Times: j0 oldest … with j3..j6 sharing one time, where insertion order decides.
    const times = [100, 200, 300, 400, 400, 400, 400, 500, 600];
    times.forEach((t, i) => store.insertJob(newJob(`j${i}`, { createdAtMs: t })));
    store.insertJob(newJob('bob-1', { clientId: 'bob', createdAtMs: 450 }));
    store.insertJob(newJob('bob-2', { clientId: 'bob', createdAtMs: 50 }));
    const newestFirst = ['j8', 'j7', 'j6', 'j5', 'j4', 'j3', 'j2', 'j1', 'j0'];

    expect(store.listJobs('alice').map((j) => j.id)).toEqual(newestFirst);
    const pages: string[][] = [];
    let beforeId: string | undefined;
    for (;;) {
      const page = store.listJobs('alice', { limit: 2, beforeId });
      if (page.length === 0) break;
      pages.push(page.map((j) => j.id));
      beforeId = page.at(-1)!.id;
    }
    expect(pages).toEqual([['j8', 'j7'], ['j6', 'j5'], ['j4', 'j3'], ['j2', 'j1'], ['j0']]);
    expect(store.listJobs('alice', { beforeId: 'j5', limit: 100 }).map((j) => j.id)).toEqual(newestFirst.slice(4));

    expect(store.listJobs('bob').map((j) => j.id)).toEqual(['bob-1', 'bob-2']);
    expect(store.listJobs('carol')).toEqual([]);
    // Another client's id as a cursor reads exactly like a missing one.
    expect(storeError(() => store.listJobs('bob', { beforeId: 'j3' })).message)
      .toBe("listJobs: beforeId 'j3' is not a job of client 'bob'");
    expect(storeError(() => store.listJobs('bob', { beforeId: 'nope' })).message)
      .toBe("listJobs: beforeId 'nope' is not a job of client 'bob'");
    expect(storeError(() => store.listJobs('bob', { limit: 0 })).message).toBe('listJobs: limit 0 must be an integer ≥ 1');
  });

  it('lists unfinished jobs oldest first and counts by state and client', () => {
    store.insertJob(newJob('late', { createdAtMs: 300 }));
    store.insertJob(newJob('early', { createdAtMs: 100 }));
    store.insertJob(newJob('tie-1', { createdAtMs: 200, clientId: 'bob' }));
    store.insertJob(newJob('tie-2', { createdAtMs: 200 }));
    store.insertJob(newJob('done', { createdAtMs: 50 }));
    store.setState('tie-2', 'RUNNING');
    store.setState('done', 'RUNNING');
    store.setState('done', 'FINISHED', { status: 'HIT', finishedAtMs: 999 });

    reopen();
    const unfinished = store.unfinishedJobs();
    expect(unfinished.map((j) => [j.id, j.state])).toEqual([
      ['early', 'QUEUED'], ['tie-1', 'QUEUED'], ['tie-2', 'RUNNING'], ['late', 'QUEUED'],
    ]);
    expect(store.countJobs()).toBe(5);
    expect(store.countJobs({ state: 'QUEUED' })).toBe(3);
    expect(store.countJobs({ state: 'RUNNING' })).toBe(1);
    expect(store.countJobs({ state: 'FINISHED' })).toBe(1);
    expect(store.countJobs({ clientId: 'bob' })).toBe(1);
    expect(store.countJobs({ clientId: 'alice', state: 'QUEUED' })).toBe(2);
  });
});

describe('job lifecycle', () => {
  beforeEach(() => store.insertJob(newJob('j')));

  it('moves through states; FINISHED is final and carries status and time', () => {
    store.setState('j', 'RUNNING');
    store.setState('j', 'QUEUED'); // re-queued after a restart
    store.setState('j', 'RUNNING');
    expect(storeError(() => store.setState('j', 'RUNNING', { status: 'HIT' })).message)
      .toBe("setState: status and finishedAtMs apply only to FINISHED, not to RUNNING (job 'j')");
    store.setState('j', 'FINISHED', { status: 'MISS', finishedAtMs: 1_700_000_999_000 });
    expect(store.getJob('j')).toMatchObject({ state: 'FINISHED', status: 'MISS', finishedAtMs: 1_700_000_999_000 });
    expect(storeError(() => store.setState('j', 'RUNNING')).message)
      .toBe("setState: job 'j' is already FINISHED (status MISS); it cannot move to RUNNING");
    expect(storeError(() => store.setState('ghost', 'RUNNING')).message).toBe("setState: no job 'ghost'");

    store.insertJob(newJob('k'));
    const before = Date.now();
    store.setState('k', 'FINISHED');
    const k = store.getJob('k')!;
    expect(k.status).toBeNull();
    expect(k.finishedAtMs).toBeGreaterThanOrEqual(before);
  });

  it('records a cancel request durably and idempotently', () => {
    store.requestCancel('j');
    store.requestCancel('j');
    expect(reopen().getJob('j')!.cancelRequested).toBe(true);
    expect(storeError(() => store.requestCancel('ghost')).message).toBe("requestCancel: no job 'ghost'");
    expect(storeError(() => store.setSummary('ghost', new Uint8Array(1))).message).toBe("setSummary: no job 'ghost'");
  });

  it('deletes a job with its events and checkpoint', () => {
    store.insertJob(newJob('keep'));
    store.appendEvents([...progress('j', 1, 5), ...progress('keep', 1, 2)]);
    store.saveCheckpoint({ jobId: 'j', sequence: 5, timeMs: 0, payload: new Uint8Array([1]) });
    store.deleteJob('j');
    expect(store.getJob('j')).toBeUndefined();
    expect(store.events('j')).toEqual([]);
    expect(store.latestCheckpoint('j')).toBeUndefined();
    expect(sequences('keep')).toEqual([1, 2]);
    const raw = new Database(file, { readonly: true });
    expect(raw.prepare("SELECT count(*) FROM events WHERE job_id = 'j'").pluck().get()).toBe(0);
    raw.close();
    expect(storeError(() => store.deleteJob('j')).message).toBe("deleteJob: no job 'j'");
    // The id is free again, with a fresh history.
    store.insertJob(newJob('j'));
    expect(store.getJob('j')!.lastSequence).toBe(0);
    store.appendEvents(progress('j', 1, 1));
  });
});

describe('transactions', () => {
  it('rolls back every write of a transaction that throws, and commits one that returns', () => {
    store.insertJob(newJob('a'));
    expect(() => store.transaction(() => {
      store.insertJob(newJob('b'));
      store.appendEvents(progress('a', 1, 3));
      store.setSummary('a', new Uint8Array([1]));
      store.setState('a', 'RUNNING');
      store.requestCancel('a');
      store.saveCheckpoint({ jobId: 'a', sequence: 3, timeMs: 0, payload: new Uint8Array([3]) });
      throw new Error('engine failed mid-update');
    })).toThrow('engine failed mid-update');
    reopen();
    expect(store.getJob('b')).toBeUndefined();
    expect(store.getJob('a')).toEqual({ ...newJob('a'), lastSequence: 0, summary: null });
    expect(store.events('a')).toEqual([]);
    expect(store.latestCheckpoint('a')).toBeUndefined();

    const result = store.transaction(() => {
      store.appendEvents(progress('a', 1, 2));
      store.setSummary('a', new Uint8Array([2]));
      // A refused inner call rolls back only itself when the caller catches it.
      expect(() => store.appendEvents(progress('a', 5, 1))).toThrow(JobStoreError);
      return 'done';
    });
    expect(result).toBe('done');
    expect(sequences('a')).toEqual([1, 2]);
    expect(store.getJob('a')!.summary).toEqual(new Uint8Array([2]));
  });
});

describe('file', () => {
  it('is in WAL mode at the current schema version, and refuses a newer schema', () => {
    store.close();
    const raw = new Database(file);
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(raw.pragma('user_version', { simple: true })).toBe(schemaVersion);
    raw.pragma(`user_version = ${schemaVersion + 1}`);
    raw.close();
    expect(storeError(() => JobStore.open(file)).message)
      .toBe(`open: ${file} has schema version ${schemaVersion + 1}; this build knows versions up to ${schemaVersion}`);
    store = JobStore.open(join(dir, 'nested', 'deeper', 'other.db')); // creates missing folders
    store.insertJob(newJob('x'));
    expect(store.countJobs()).toBe(1);
  });
});

describe('crash safety', () => {
  const built = join(root, 'dist/server/store/job-store.js');

  it('keeps every batch the writer reported committed when it is killed with SIGKILL, and no half batch', async () => {
    const sources = ['server/store/job-store.ts', 'server/store/schema.ts'].map((p) => join(root, p));
    if (!existsSync(built)) throw new Error(`crash test: ${built} is missing; run \`npx tsc -p tsconfig.json\` first`);
    const stale = sources.filter((p) => statSync(p).mtimeMs > statSync(built).mtimeMs + 1000);
    if (stale.length > 0) {
      throw new Error(`crash test: ${built} is older than ${stale.join(', ')}; run \`npx tsc -p tsconfig.json\` first`);
    }
    store.close();
    const script = join(dir, 'writer.mjs');
    // Each event's payload holds its own sequence and the last sequence of its batch; each batch also sets the
    // summary to that last sequence: a surviving half batch or a summary out of step with the events shows.
    writeFileSync(script, `
      import { JobStore } from ${JSON.stringify(pathToFileURL(built).href)};
      const store = JobStore.open(process.argv[2]);
      store.insertJob({ id: 'crash', clientId: 'c', model: 'gpt2', label: '', spec: new Uint8Array(0), targetIds: [1],
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
        store.transaction(() => {
          store.appendEvents(events);
          store.setSummary('crash', word(end));
          if (batch % 10 === 0) store.saveCheckpoint({ jobId: 'crash', sequence: end, timeMs: Date.now(), payload: word(end) });
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

    store = JobStore.open(file);
    const job = store.getJob('crash')!;
    const events = store.events('crash');
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
    const checkpoint = store.latestCheckpoint('crash')!;
    expect(checkpoint.sequence).toBeLessThanOrEqual(job.lastSequence);
    // The reopened file takes up where the writer stopped.
    store.appendEvents(progress('crash', job.lastSequence + 1, 1));
  });
});

describe('throughput', () => {
  it('appends 10,000 progress events of 400 bytes in batches of 64', () => {
    const jobs = 8; // interleaved, as from a batched graph run
    const total = 10_000;
    const batchSize = 64;
    for (let j = 0; j < jobs; j++) store.insertJob(newJob(`t${j}`));
    const all: EventRecord[] = [];
    const next = new Array<number>(jobs).fill(1);
    for (let i = 0; i < total; i++) {
      const j = i % jobs;
      all.push(progress(`t${j}`, next[j]++, 1, 400)[0]);
    }
    const start = performance.now();
    for (let i = 0; i < total; i += batchSize) store.appendEvents(all.slice(i, i + batchSize));
    const seconds = (performance.now() - start) / 1000;
    console.log(`job store: ${total} events of 400 B in batches of ${batchSize}: ${Math.round(total / seconds)} events/s ` +
      `(${(seconds * 1000).toFixed(0)} ms)`);

    for (let j = 0; j < jobs; j++) {
      expect(store.getJob(`t${j}`)!.lastSequence).toBe(total / jobs);
      expectEvents(store.events(`t${j}`), all.filter((e) => e.jobId === `t${j}`));
    }
  });
});
