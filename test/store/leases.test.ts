// Leases, fencing, admission and notices: what lets several servers share one job store. Two store instances on
// the same data stand for two servers: a claim takes only unleased jobs and raises their epoch, a write under an
// old epoch lands nothing, quotas count every server's jobs, claims are shared out between clients, and every
// instance hears of every change.
import pg from 'pg';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { EventRecord, JobRepository, NewJob, StoreNotice } from '../../server/store/job-repository.js';
import { LeaseLostError } from '../../server/store/job-repository.js';
import { PostgresJobStore } from '../../server/store/postgres-job-store.js';
import type { BackendName } from '../helpers/store-backends.js';
import { backendNames, createBackend } from '../helpers/store-backends.js';

interface Backend {
  name: BackendName;
  /** Whether one instance hears another's notices (a shared database), or only its own (a SQLite file). */
  sharedNotices: boolean;
  /** Open `count` store instances on one fresh database (count servers). */
  open(count: number): Promise<JobRepository[]>;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Open `count` stores of back end `name` on one fresh location, closed and removed after the test. */
async function openStores(name: BackendName, count: number): Promise<JobRepository[]> {
  const backend = await createBackend(name);
  const stores: JobRepository[] = [];
  cleanups.push(async () => {
    for (const s of stores) await s.close();
    await backend.cleanup();
  });
  for (let i = 0; i < count; i++) stores.push(await backend.openJobs());
  return stores;
}

export const leaseBackends: Backend[] = backendNames.map((name) => ({
  name,
  sharedNotices: name === 'postgres',
  open: (count: number) => openStores(name, count),
}));

function newJob(id: string, clientId = 'alice', createdAtMs = 1_700_000_000_000): NewJob {
  return { id, clientId, model: 'tiny', label: '', spec: new Uint8Array([1]), targetIds: [1, 2], targetText: 'ab',
    state: 'QUEUED', status: null, cancelRequested: false, createdAtMs, finishedAtMs: null };
}

function event(jobId: string, sequence: number, kind: EventRecord['kind'] = 'progress'): EventRecord {
  return { jobId, sequence, timeMs: sequence, kind, restart: 0, iteration: sequence, payload: new Uint8Array([sequence]) };
}

const admission = { leaseMs: 60_000, costBytes: 100, maxJobs: 1000, maxQueuedBytes: 1_000_000 };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each(leaseBackends)('leases on $name', (backend) => {
  it('claims only unleased jobs, raising the epoch; an expired lease is claimed again', async () => {
    const [a, b] = await backend.open(2);
    for (let i = 0; i < 3; i++) await a!.admitJob(newJob(`job-${i}`, 'alice', 1000 + i), { ...admission, owner: null });
    const first = await a!.claimJobs('server-a', ['tiny'], 2, 150);
    expect(first.map((c) => [c.record.id, c.epoch])).toEqual([['job-0', 1], ['job-1', 1]]);
    expect((await b!.claimJobs('server-b', ['tiny'], 10, 150)).map((c) => c.record.id)).toEqual(['job-2']);
    expect(await b!.claimJobs('server-b', ['tiny'], 10, 150)).toEqual([]);
    expect(await b!.claimJobs('server-b', ['other-model'], 10, 150)).toEqual([]);
    await sleep(250);
    const again = await b!.claimJobs('server-b', ['tiny'], 10, 60_000);
    expect(again.map((c) => [c.record.id, c.epoch]).sort()).toEqual([['job-0', 2], ['job-1', 2], ['job-2', 2]]);
    expect(await a!.renewLeases('server-a', [{ jobId: 'job-0', epoch: 1 }, { jobId: 'job-1', epoch: 1 }], 60_000))
      .toEqual(['job-0', 'job-1']);
    expect(await b!.renewLeases('server-b', [{ jobId: 'job-0', epoch: 2 }], 60_000)).toEqual([]);
    // A release by another server changes nothing; the owner's own frees the job for a claim at once.
    await a!.releaseLeases('server-a', ['job-0', 'job-1']);
    expect(await a!.claimJobs('server-a', ['tiny'], 10, 60_000)).toEqual([]);
    await b!.releaseLeases('server-b', ['job-1', 'job-0']);
    expect((await a!.claimJobs('server-a', ['tiny'], 10, 60_000)).map((c) => [c.record.id, c.epoch]))
      .toEqual([['job-0', 3], ['job-1', 3]]);
  });

  it('refuses a write under a lost lease and lands nothing of its batch', async () => {
    const [a, b] = await backend.open(2);
    await a!.admitJob(newJob('job-x'), { ...admission, owner: 'server-a', leaseMs: 100 });
    await a!.admitJob(newJob('job-y', 'alice', 1_700_000_000_001), { ...admission, owner: 'server-a', leaseMs: 60_000 });
    const fenceA = { owner: 'server-a', leases: new Map([['job-x', 1], ['job-y', 1]]) };
    await a!.commit({ events: [event('job-x', 1), event('job-y', 1)] }, fenceA);
    await sleep(200);
    const [taken] = await b!.claimJobs('server-b', ['tiny'], 1, 60_000);
    expect(taken).toMatchObject({ record: { id: 'job-x', lastSequence: 1 }, epoch: 2 });
    await b!.commit({ events: [event('job-x', 2)] }, { owner: 'server-b', leases: new Map([['job-x', 2]]) });
    // The paused server wakes and writes on: refused as a whole, job-y's event included.
    const refused = await a!.commit({ events: [event('job-x', 2), event('job-y', 2)],
      states: [{ jobId: 'job-x', state: 'RUNNING' }] }, fenceA).then(() => undefined, (e: unknown) => e);
    expect(refused).toBeInstanceOf(LeaseLostError);
    expect((refused as LeaseLostError).jobIds).toEqual(['job-x']);
    expect((refused as Error).message).toContain("'job-x'");
    expect((await a!.events('job-y')).map((e) => e.sequence)).toEqual([1]);
    const x = await a!.events('job-x');
    expect(x.map((e) => e.payload[0])).toEqual([1, 2]);
    expect((await a!.getJob('job-x'))!.state).toBe('QUEUED');
  });

  it('counts a client\'s quota over every server\'s jobs', async () => {
    const [a, b] = await backend.open(2);
    const limits = { ...admission, maxJobs: 3, maxQueuedBytes: 250 };
    expect(await a!.admitJob(newJob('j1'), { ...limits, owner: 'server-a' })).toEqual({ admitted: true, epoch: 1 });
    expect(await b!.admitJob(newJob('j2'), { ...limits, owner: null })).toEqual({ admitted: true, epoch: 0 });
    expect(await a!.admitJob(newJob('j3'), { ...limits, owner: null })).toEqual(
      { admitted: false, reason: 'bytes', use: { jobs: 2, bytes: 200 } });
    expect(await b!.admitJob(newJob('j3'), { ...limits, costBytes: 10, owner: null })).toEqual({ admitted: true, epoch: 0 });
    expect(await a!.admitJob(newJob('j4'), { ...limits, costBytes: 0, owner: null })).toEqual(
      { admitted: false, reason: 'jobs', use: { jobs: 3, bytes: 210 } });
    expect(await b!.clientUse('alice')).toEqual({ jobs: 3, bytes: 210 });
    expect(await b!.admitJob(newJob('b1', 'bob'), { ...limits, owner: null })).toMatchObject({ admitted: true });
    // Submissions racing on two servers: exactly the room left is taken.
    const racing = await Promise.all(Array.from({ length: 6 }, (_, i) =>
      (i % 2 ? a! : b!).admitJob(newJob(`c${i}`, 'carol'), { ...limits, owner: null })));
    expect(racing.filter((r) => r.admitted)).toHaveLength(2);
    expect(await a!.getJob('j4')).toBeUndefined();
    // A duplicate id is refused as insertJob refuses it.
    await expect(b!.admitJob(newJob('b1', 'bob'), { ...limits, owner: null })).rejects.toThrow("job 'b1' already exists");
  });

  it('shares a claim out between clients, the one holding fewest first', async () => {
    const [a] = await backend.open(1);
    for (let i = 0; i < 6; i++) await a!.admitJob(newJob(`alice-${i}`, 'alice', 1000 + i), { ...admission, owner: null });
    for (let i = 0; i < 2; i++) await a!.admitJob(newJob(`bob-${i}`, 'bob', 2000 + i), { ...admission, owner: null });
    await a!.admitJob(newJob('carol-0', 'carol', 3000), { ...admission, owner: 'elsewhere' });
    const claimed = (await a!.claimJobs('server-a', ['tiny'], 5, 60_000)).map((c) => c.record.id);
    expect(claimed).toEqual(['alice-0', 'bob-0', 'alice-1', 'bob-1', 'alice-2']);
  });

  it('tells of jobs created, grown and cancelled, and prunes finished histories', async () => {
    const [a, b] = await backend.open(2);
    const heard: StoreNotice[] = [];
    const stop = await (backend.sharedNotices ? b! : a!).listen((n) => heard.push(n));
    await a!.admitJob(newJob('job-n'), { ...admission, owner: 'server-a' });
    await a!.commit({ events: [event('job-n', 1, 'started'), event('job-n', 2), event('job-n', 3)] },
      { owner: 'server-a', leases: new Map([['job-n', 1]]) });
    await a!.requestCancel('job-n');
    await a!.commit({ events: [event('job-n', 4, 'result')], states: [{ jobId: 'job-n', state: 'FINISHED', status: 'CANCELLED', finishedAtMs: 5000 }] },
      { owner: 'server-a', leases: new Map([['job-n', 1]]) });
    const deadline = Date.now() + 5000;
    while (heard.length < 4 && Date.now() < deadline) await sleep(20);
    await stop();
    expect(heard).toEqual([
      { jobId: 'job-n', clientId: 'alice', kind: 'created', lastSequence: 0 },
      { jobId: 'job-n', clientId: 'alice', kind: 'progress', lastSequence: 3 },
      { jobId: 'job-n', clientId: 'alice', kind: 'cancel', lastSequence: 3 },
      { jobId: 'job-n', clientId: 'alice', kind: 'result', lastSequence: 4 },
    ]);
    expect(await a!.pruneFinishedHistories(5000)).toBe(0);
    expect(await a!.pruneFinishedHistories(5001)).toBe(3);
    expect((await a!.events('job-n')).map((e) => [e.sequence, e.kind])).toEqual([[4, 'result']]);
    expect((await a!.getJob('job-n'))!.lastSequence).toBe(4);
  });
});

// What only a database shared by several servers shows: concurrent claims, the database's clock, notices between
// instances, and a listener that outlives its connection. Two PostgresJobStore instances on one database are two
// servers.
describe('leases on postgres, between servers', () => {
  async function servers(options: Parameters<typeof PostgresJobStore.open>[1] = {}) {
    const backend = await createBackend('postgres');
    const stores: PostgresJobStore[] = [];
    cleanups.push(async () => {
      for (const s of stores) await s.close();
      await backend.cleanup();
    });
    for (let i = 0; i < 2; i++) stores.push(await PostgresJobStore.open(backend.location, options));
    return { a: stores[0]!, b: stores[1]!, backend };
  }

  it('never lets two servers claiming at once take the same job, and together they take all', async () => {
    const { a, b } = await servers();
    const clients = ['alice', 'bob', 'carol'];
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 20; i++) {
        await a.admitJob(newJob(`r${round}-${i}`, clients[i % 3], 1000 * round + i), { ...admission, owner: null });
      }
      const [fromA, fromB] = await Promise.all([a.claimJobs('server-a', ['tiny'], 10, 60_000),
        b.claimJobs('server-b', ['tiny'], 10, 60_000)]);
      const ids = [...fromA, ...fromB].map((c) => c.record.id);
      expect(new Set(ids).size).toBe(ids.length);
      expect(ids.sort()).toEqual(Array.from({ length: 20 }, (_, i) => `r${round}-${i}`).sort());
      expect([...fromA, ...fromB].every((c) => c.epoch === 1)).toBe(true);
      expect(await a.claimJobs('server-a', ['tiny'], 10, 60_000)).toEqual([]);
    }
  });

  it('times leases by the database\'s clock, not the server\'s', async () => {
    const { a, b, backend } = await servers();
    await a.admitJob(newJob('job-t'), { ...admission, owner: null });
    // Server a's clock runs an hour fast: a lease it takes must still expire 300 ms from now by the database.
    const realNow = Date.now.bind(Date);
    const skewed = vi.spyOn(Date, 'now').mockImplementation(() => realNow() + 3_600_000);
    try {
      expect((await a.claimJobs('server-a', ['tiny'], 1, 300)).map((c) => c.epoch)).toEqual([1]);
    } finally {
      skewed.mockRestore();
    }
    const left = Number(await backend.scalar(
      "SELECT lease_expires_at - (extract(epoch from clock_timestamp()) * 1000)::bigint FROM jobs WHERE id = 'job-t'"));
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThanOrEqual(300);
    expect(await b.claimJobs('server-b', ['tiny'], 1, 60_000)).toEqual([]);
    await sleep(400);
    expect((await b.claimJobs('server-b', ['tiny'], 1, 60_000)).map((c) => [c.record.id, c.epoch])).toEqual([['job-t', 2]]);
    // Each event records the epoch it was written under.
    await b.commit({ events: [event('job-t', 1)] }, { owner: 'server-b', leases: new Map([['job-t', 2]]) });
    expect(await backend.scalar("SELECT lease_epoch FROM events WHERE job_id = 'job-t'")).toBe(2);
  });

  it('tells the other server of a change within a second, and only once it commits', async () => {
    const { a, b } = await servers();
    const heard: { notice: StoreNotice; at: number }[] = [];
    const stop = await b.listen((notice) => heard.push({ notice, at: Date.now() }));
    const sent = Date.now();
    await a.admitJob(newJob('job-n'), { ...admission, owner: 'server-a' });
    // A refused batch (a lost lease) announces nothing.
    await expect(a.commit({ events: [event('job-n', 1)] }, { owner: 'server-a', leases: new Map([['job-n', 7]]) }))
      .rejects.toBeInstanceOf(LeaseLostError);
    while (heard.length < 1 && Date.now() < sent + 1000) await sleep(10);
    await sleep(100);
    await stop();
    expect(heard.map((h) => h.notice)).toEqual([{ jobId: 'job-n', clientId: 'alice', kind: 'created', lastSequence: 0 }]);
    expect(heard[0]!.at - sent).toBeLessThan(1000);
  });

  it('keeps listening after the listener\'s connection is killed', async () => {
    const reconnected: (Error | undefined)[] = [];
    const { a, b, backend } = await servers({ onListenerReconnect: (error) => reconnected.push(error) });
    const heard: StoreNotice[] = [];
    const stop = await b.listen((notice) => heard.push(notice));
    const killer = new pg.Client({ connectionString: backend.location });
    await killer.connect();
    try {
      const { rowCount } = await killer.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE application_name = 'recite-listener' AND datname = current_database()`);
      expect(rowCount).toBe(1);
    } finally {
      await killer.end();
    }
    const deadline = Date.now() + 5000;
    while (reconnected.length === 0 && Date.now() < deadline) await sleep(20);
    expect(reconnected).toHaveLength(1);
    await a.admitJob(newJob('job-after'), { ...admission, owner: null });
    const heardBy = Date.now() + 1000;
    while (heard.length === 0 && Date.now() < heardBy) await sleep(10);
    await stop();
    expect(heard).toEqual([{ jobId: 'job-after', clientId: 'alice', kind: 'created', lastSequence: 0 }]);
    expect(Number(await backend.scalar(
      "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'recite-listener' AND datname = current_database()"))).toBe(0);
  });
});
