// One data set runner at a time per database. The store's lead: SQLite always leads; on PostgreSQL one store of
// two leads, the other takes over once the first closes or its lock connection is killed. Then two runners on one
// PostgreSQL database, each with its own small hub over one shared job store (a fleet in miniature): only the leader
// submits, it finds a data set stored through the other server, and when the leader goes mid-run (closed, or its
// lock connection killed) the other completes the data set with no row submitted twice.
import { create, toBinary } from '@bufbuild/protobuf';
import pg from 'pg';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { DatasetRunner } from '../../server/datasets/dataset-runner.js';
import type { DatasetRunnerHub, DatasetRunnerOptions } from '../../server/datasets/dataset-runner.js';
import { SqliteDatasetStore } from '../../server/datasets/dataset-store.js';
import type { DatasetRepository } from '../../server/datasets/dataset-repository.js';
import { leadApplicationName, PostgresDatasetStore } from '../../server/datasets/postgres-dataset-store.js';
import type { ClientLimits } from '../../server/service/client-policy.js';
import type { JobChange } from '../../server/service/hub-ports.js';
import { SqliteJobStore } from '../../server/store/sqlite-job-store.js';
import { JobSchema, JobSettingsSchema, JobSpecSchema, JobState, ResultSchema, Status } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { Job, JobSpec } from '../../sdk/gen/recite/v1/recite_pb.js';
import { createTestDatabase } from '../helpers/postgres.js';
import type { TestDatabase } from '../helpers/postgres.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const quick = { interval: 10, timeout: 5000 }; // ms: vi.waitFor for what a few retries settle

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.drop();
});

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function openStore(url = database.url): Promise<PostgresDatasetStore> {
  const store = await PostgresDatasetStore.open(url);
  closers.push(() => store.close());
  return store;
}

/** Kill the lead connection that holds the lock, as a dropped connection or a restarted proxy would. */
async function killLeadConnection(url = database.url): Promise<number> {
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ killed: boolean }>(`SELECT pg_terminate_backend(a.pid) AS killed
      FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
      WHERE a.application_name = $1 AND a.datname = current_database() AND l.locktype = 'advisory' AND l.granted`,
    [leadApplicationName]);
    return rows.filter((r) => r.killed).length;
  } finally {
    await admin.end();
  }
}

describe('the data set lead', () => {
  it('is always this server\'s on SQLite, whose store is not shared', async () => {
    const store = SqliteDatasetStore.open(':memory:');
    expect(store.shared).toBe(false);
    expect(await store.leadRunner()).toBe(true);
    await store.close();
    expect(await store.leadRunner()).toBe(false);
  });

  it('goes to one PostgreSQL store of two, and to the other once the first closes', async () => {
    const first = await openStore();
    const second = await openStore();
    expect(first.shared).toBe(true);
    expect(await first.leadRunner()).toBe(true);
    expect(await second.leadRunner()).toBe(false);
    expect(await first.leadRunner()).toBe(true); // asking again while leading checks the lead, and keeps it
    expect(await second.leadRunner()).toBe(false);
    await first.close();
    expect(await first.leadRunner()).toBe(false);
    // The lock goes with the session; the server frees it as it sees the connection end.
    await vi.waitFor(async () => expect(await second.leadRunner()).toBe(true), quick);
  });

  it('is reported lost when the lock connection is killed, and lets the other store lead', async () => {
    const first = await openStore();
    const second = await openStore();
    const lost = vi.fn();
    expect(await first.leadRunner(lost)).toBe(true);
    expect(await second.leadRunner()).toBe(false);
    expect(await killLeadConnection()).toBe(1);
    await vi.waitFor(() => expect(lost).toHaveBeenCalledTimes(1), quick);
    await vi.waitFor(async () => expect(await second.leadRunner()).toBe(true), quick);
    // The first opens a new connection for its next try, and finds the lead taken.
    expect(await first.leadRunner()).toBe(false);
    expect(lost).toHaveBeenCalledTimes(1);
  });
});

/** The jobs of a fleet: one job store, and a change feed every server hears (as the fleet's notices give). */
class Fleet {
  readonly submitted: { server: string; jobId: string; label: string }[] = [];
  nextJob = 0;
  private readonly results = new Map<string, Job>();
  private readonly listeners = new Set<(change: JobChange) => void>();

  constructor(readonly jobs: SqliteJobStore) {}

  emit(change: JobChange): void {
    for (const listener of this.listeners) listener(change);
  }

  onJobChange(listener: (change: JobChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  result(jobId: string): Job | undefined {
    return this.results.get(jobId);
  }

  /** Finish every submitted job not finished yet as a HIT, and announce it. */
  async finishAll(): Promise<number> {
    let finished = 0;
    for (const { jobId } of [...this.submitted]) {
      if (this.results.has(jobId)) continue;
      this.results.set(jobId, create(JobSchema, {
        jobId, state: JobState.FINISHED,
        result: create(ResultSchema, { status: Status.HIT, best: 0, elapsedMs: 5, restarts: [{ iterations: 3, iterationsToHit: 3, bestNll: 0.5 }] }),
      }));
      await this.jobs.setState(jobId, 'FINISHED', { status: 'HIT' });
      this.emit({ clientId: 'alice', jobId, kind: 'result' });
      finished++;
    }
    return finished;
  }
}

/** One server's hub ports over the fleet: its submissions are its own, the jobs and the feed are everyone's. */
class ServerHub implements DatasetRunnerHub {
  constructor(private readonly server: string, private readonly fleet: Fleet) {}

  async submit(clientId: string, spec: JobSpec): Promise<{ jobId: string; queuePosition: number }> {
    await sleep(1); // a submission takes a moment, so a leader that goes mid-run may go with one under way
    const jobId = `job-${this.fleet.nextJob++}`;
    // Stored before it is listed: the test's finisher finishes what is listed.
    await this.fleet.jobs.insertJob({ id: jobId, clientId, model: spec.model, label: spec.label, spec: toBinary(JobSpecSchema, spec),
      targetIds: [], targetText: '', state: 'QUEUED', status: null, cancelRequested: false, createdAtMs: Date.now(), finishedAtMs: null });
    this.fleet.submitted.push({ server: this.server, jobId, label: spec.label });
    this.fleet.emit({ clientId, jobId, kind: 'created' });
    return { jobId, queuePosition: 0 };
  }

  async cancel(): Promise<JobState> {
    return JobState.QUEUED;
  }

  async getJob(_clientId: string, jobId: string): Promise<Job> {
    return this.fleet.result(jobId) ?? create(JobSchema, { jobId, state: JobState.QUEUED });
  }

  /** Every job of the client, newest first, on one page (the runner looks here for a row's job by its label). */
  async listJobs(clientId: string, _pageSize: number, beforeJobId: string): Promise<Job[]> {
    if (beforeJobId !== '' || clientId !== 'alice') return [];
    return [...this.fleet.submitted].reverse().map(({ jobId, label }) => create(JobSchema, { jobId, label }));
  }

  limitsOf(): ClientLimits {
    return { maxJobs: 100, maxQueuedBytes: 1 << 30 };
  }

  async clientUse(clientId: string): Promise<{ jobs: number; bytes: number }> {
    const { jobs } = this.fleet;
    return { jobs: await jobs.countJobs({ clientId, state: 'QUEUED' }) + await jobs.countJobs({ clientId, state: 'RUNNING' }), bytes: 0 };
  }

  onJobChange(listener: (change: JobChange) => void): () => void {
    return this.fleet.onJobChange(listener);
  }
}

describe.each(['is closed', 'loses its lock connection'] as const)('two data set runners on one PostgreSQL database', (how) => {
  it(`complete a data set once each row when the leader ${how} mid-run`, async () => {
    const rows = 24;
    const own = await createTestDatabase();
    closers.push(() => own.drop());
    const jobs = SqliteJobStore.open(':memory:');
    closers.push(() => jobs.close());
    const fleet = new Fleet(jobs);
    const log = pino({ level: 'silent' });
    const start = (server: string, store: DatasetRepository, options: Partial<DatasetRunnerOptions>): DatasetRunner => {
      const runner = new DatasetRunner(store, new ServerHub(server, fleet), jobs, { ready: async () => {} }, log,
        { window: 4, retryWaitMs: 20, discoverEveryMs: 20, ...options });
      closers.push(() => runner.close());
      return runner;
    };
    const storeA = await openStore(own.url);
    // A leads first; after a lost connection it would try again only in a minute, so that B is the one that takes over.
    const a = start('a', storeA, { leadRetryMs: 60_000 });
    await vi.waitFor(() => expect(a.leads).toBe(true), quick);
    const storeB = await openStore(own.url);
    const b = start('b', storeB, { leadRetryMs: 20 });
    await sleep(100);
    expect(b.leads).toBe(false);

    // Stored through B's service, which wakes B (a follower, so nothing happens): A finds it on its own.
    await storeB.createDataset({
      id: 'ds-1', clientId: 'alice', name: 'fleet', contentHash: 'sha256:fleet', model: 'tiny',
      settings: toBinary(JobSettingsSchema, create(JobSettingsSchema, { maxIterations: 50 })), createdAtMs: Date.now(),
      rows: Array.from({ length: rows }, (_, i) => ({ rowId: `r${i}`, target: { ids: [i + 1] } })),
    });
    b.wake();
    await vi.waitFor(() => expect(fleet.submitted.length).toBeGreaterThan(0), quick);

    // The jobs finish as they come; A goes once a third of the rows have.
    const finishing = { on: true };
    const finisher = (async () => {
      while (finishing.on) {
        await fleet.finishAll();
        await sleep(5);
      }
    })();
    closers.push(async () => {
      finishing.on = false;
      await finisher;
    });
    await vi.waitFor(async () => expect((await storeA.getDatasetById('ds-1'))!.finishedRows).toBeGreaterThanOrEqual(rows / 3), quick);
    expect(fleet.submitted.every((s) => s.server === 'a')).toBe(true);
    if (how === 'is closed') {
      await a.close();
      await storeA.close();
    } else {
      expect(await killLeadConnection(own.url)).toBe(1);
      await vi.waitFor(() => expect(a.leads).toBe(false), quick);
    }
    expect(fleet.submitted.length).toBeLessThan(rows);

    await vi.waitFor(async () => expect((await storeB.getDatasetById('ds-1'))!.state).toBe('FINISHED'), { interval: 10, timeout: 10_000 });
    expect(b.leads).toBe(true);
    expect(a.leads).toBe(false);
    // Every row's job once: A's up to the hand-over, B's after, none twice.
    const labels = fleet.submitted.map((s) => s.label);
    expect(new Set(labels).size).toBe(labels.length);
    expect(labels.sort()).toEqual(Array.from({ length: rows }, (_, i) => `fleet/r${i}`).sort());
    const handOver = fleet.submitted.findIndex((s) => s.server === 'b');
    expect(handOver).toBeGreaterThan(0);
    expect(fleet.submitted.slice(0, handOver).every((s) => s.server === 'a')).toBe(true);
    expect(fleet.submitted.slice(handOver).every((s) => s.server === 'b')).toBe(true);
    const finished = await storeB.finishedRows('ds-1', 0, rows + 1);
    expect(finished.map((r) => r.finishOrder)).toEqual(Array.from({ length: rows }, (_, i) => i + 1));
    expect(finished.every((r) => r.outcome?.status === 'HIT' && r.jobId !== null)).toBe(true);
  });
});
