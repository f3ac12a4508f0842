// The data set runner with injected hub ports (a small in-test hub over a real SQLite job store) and a real SQLite
// data set store: the hub's change feed drives it, not a timer. A job finished in the store but not announced stays
// unseen; its 'result' change finishes the row at once and fills the freed room; a restart collects jobs that
// finished unannounced; a refused submission is retried after the retry wait.
import { create, toBinary } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DatasetRunner } from '../../server/datasets/dataset-runner.js';
import type { DatasetRunnerHub, DatasetRunnerOptions } from '../../server/datasets/dataset-runner.js';
import { SqliteDatasetStore } from '../../server/datasets/dataset-store.js';
import type { DatasetRepository } from '../../server/datasets/dataset-repository.js';
import type { ClientLimits } from '../../server/service/client-policy.js';
import type { JobChange } from '../../server/service/hub-ports.js';
import { SqliteJobStore } from '../../server/store/sqlite-job-store.js';
import { JobSchema, JobSettingsSchema, JobSpecSchema, JobState, ResultSchema, Status } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { Job, JobSpec } from '../../sdk/gen/recite/v1/recite_pb.js';

const never = 1_000_000_000; // ms: a retry wait no test outlasts, so nothing but the feed can move a row

/** The hub's narrow ports over a real job store: jobs are stored when submitted, finished by the test. */
class FeedHub implements DatasetRunnerHub {
  readonly submitted: { jobId: string; spec: JobSpec }[] = [];
  readonly cancelled: string[] = [];
  /** Refuse submissions with this code while set. */
  refuse: Code | undefined;
  private readonly results = new Map<string, Job>();
  private readonly listeners = new Set<(change: JobChange) => void>();

  constructor(private readonly jobs: SqliteJobStore) {}

  async submit(clientId: string, spec: JobSpec): Promise<{ jobId: string; queuePosition: number }> {
    if (this.refuse !== undefined) throw new ConnectError('submit: the queue is full', this.refuse);
    const jobId = `job-${this.submitted.length}`;
    await this.jobs.insertJob({ id: jobId, clientId, model: spec.model, label: spec.label, spec: toBinary(JobSpecSchema, spec),
      targetIds: [], targetText: '', state: 'QUEUED', status: null, cancelRequested: false, createdAtMs: Date.now(), finishedAtMs: null });
    this.submitted.push({ jobId, spec });
    this.emit({ clientId, jobId, kind: 'created' });
    return { jobId, queuePosition: 0 };
  }

  async cancel(_clientId: string, jobId: string): Promise<JobState> {
    this.cancelled.push(jobId);
    return JobState.QUEUED;
  }

  async getJob(_clientId: string, jobId: string): Promise<Job> {
    return this.results.get(jobId) ?? create(JobSchema, { jobId, state: JobState.QUEUED });
  }

  async listJobs(): Promise<Job[]> {
    return [];
  }

  limitsOf(): ClientLimits {
    return { maxJobs: 100, maxQueuedBytes: 1 << 30 };
  }

  async clientUse(clientId: string): Promise<{ jobs: number; bytes: number }> {
    const unfinished = await this.jobs.countJobs({ clientId, state: 'QUEUED' }) + await this.jobs.countJobs({ clientId, state: 'RUNNING' });
    return { jobs: unfinished, bytes: 0 };
  }

  onJobChange(listener: (change: JobChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(change: JobChange): void {
    for (const listener of this.listeners) listener(change);
  }

  /** Store `jobId` as a HIT after `iterations` (the result, then the state), and announce it unless told not to. */
  async finish(jobId: string, iterations: number, announce = true): Promise<void> {
    this.results.set(jobId, create(JobSchema, {
      jobId, state: JobState.FINISHED,
      result: create(ResultSchema, { status: Status.HIT, best: 0, elapsedMs: 5, restarts: [{ iterations, iterationsToHit: iterations, bestNll: 0.5 }] }),
    }));
    await this.jobs.setState(jobId, 'FINISHED', { status: 'HIT' });
    if (announce) this.emit({ clientId: 'alice', jobId, kind: 'result' });
  }
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

function open(): { store: SqliteDatasetStore; jobs: SqliteJobStore; hub: FeedHub } {
  const store = SqliteDatasetStore.open(':memory:');
  const jobs = SqliteJobStore.open(':memory:');
  closers.push(() => jobs.close(), () => store.close());
  return { store, jobs, hub: new FeedHub(jobs) };
}

function start(store: DatasetRepository, hub: FeedHub, jobs: SqliteJobStore, options: Partial<DatasetRunnerOptions>): DatasetRunner {
  const runner = new DatasetRunner(store, hub, jobs, { ready: async () => {} }, pino({ level: 'silent' }), options);
  closers.push(() => runner.close());
  return runner;
}

async function createDataset(store: DatasetRepository, rows: number): Promise<void> {
  await store.createDataset({
    id: 'ds-1', clientId: 'alice', name: 'feed', contentHash: 'sha256:feed', model: 'tiny',
    settings: toBinary(JobSettingsSchema, create(JobSettingsSchema, { maxIterations: 50 })), createdAtMs: Date.now(),
    rows: Array.from({ length: rows }, (_, i) => ({ rowId: `r${i}`, target: { ids: [i + 1, i + 2] } })),
  });
}

async function stateOf(store: DatasetRepository, index: number): Promise<string> {
  return (await store.rows('ds-1', index, 1))[0]!.state;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('DatasetRunner', () => {
  it('finishes a row as soon as its job\'s result is announced, and only then, filling the freed room', async () => {
    const { store, jobs, hub } = open();
    await createDataset(store, 3);
    const runner = start(store, hub, jobs, { window: 2, retryWaitMs: never });
    await vi.waitFor(() => expect(hub.submitted).toHaveLength(2), { interval: 5 });
    expect(hub.submitted.map((s) => s.spec.label)).toEqual(['feed/r0', 'feed/r1']);
    expect(await stateOf(store, 0)).toBe('SUBMITTED');

    // Finished in the job store, but not announced: a runner that polled the store would finish the row within the
    // old 200 ms poll; this one waits for the feed.
    await hub.finish('job-0', 42, false);
    await sleep(300);
    expect(await stateOf(store, 0)).toBe('SUBMITTED');
    expect(hub.submitted).toHaveLength(2);

    const changes: number[] = [];
    runner.onChange('ds-1', () => changes.push(performance.now()));
    const announced = performance.now();
    hub.emit({ clientId: 'alice', jobId: 'job-0', kind: 'result' });
    await vi.waitFor(async () => expect(await stateOf(store, 0)).toBe('FINISHED'), { interval: 1, timeout: 1000 });
    await vi.waitFor(() => expect(hub.submitted).toHaveLength(3), { interval: 1, timeout: 1000 });
    expect(performance.now() - announced).toBeLessThan(100); // ms: one deferred pass, no timer
    expect(changes.length).toBeGreaterThan(0);
    const [row0] = await store.rows('ds-1', 0, 1);
    expect(row0!.outcome).toEqual({ status: 'HIT', iterationsToHit: 42, bestNll: 0.5, iterations: 42, elapsedMs: 5, error: null });
    expect(row0!.finishOrder).toBe(1);

    // A started job counts as running; the rest finish through the feed, and the data set with them.
    hub.emit({ clientId: 'alice', jobId: 'job-1', kind: 'started' });
    expect(await runner.liveCounts('ds-1')).toEqual({ queued: 1, running: 1, runningIterations: 0 });
    await hub.finish('job-2', 7);
    await vi.waitFor(async () => expect(await stateOf(store, 2)).toBe('FINISHED'), { interval: 1, timeout: 1000 });
    await hub.finish('job-1', 9);
    await vi.waitFor(async () => expect((await store.getDatasetById('ds-1'))!.state).toBe('FINISHED'), { interval: 1, timeout: 1000 });
    const finished = await store.finishedRows('ds-1', 0, 10);
    expect(finished.map((r) => [r.rowId, r.finishOrder])).toEqual([['r0', 1], ['r2', 2], ['r1', 3]]);
    expect((await store.counts('ds-1')).finishedIterations).toBe(42 + 7 + 9);
  });

  it('after a restart, collects a job that finished unannounced and follows the others', async () => {
    const { store, jobs, hub } = open();
    await createDataset(store, 2);
    const first = start(store, hub, jobs, { retryWaitMs: never });
    await vi.waitFor(() => expect(hub.submitted).toHaveLength(2), { interval: 5 });
    await first.close();
    // The server went away; job-0 finished before the result reached any runner.
    await hub.finish('job-0', 11, false);

    start(store, hub, jobs, { retryWaitMs: never });
    await vi.waitFor(async () => expect(await stateOf(store, 0)).toBe('FINISHED'), { interval: 1, timeout: 1000 });
    expect(await stateOf(store, 1)).toBe('SUBMITTED');
    expect(hub.submitted).toHaveLength(2);
    await hub.finish('job-1', 12);
    await vi.waitFor(async () => expect((await store.getDatasetById('ds-1'))!.state).toBe('FINISHED'), { interval: 1, timeout: 1000 });
  });

  it('retries a refused submission after the retry wait, and drains a cancelled data set when woken', async () => {
    const { store, jobs, hub } = open();
    hub.refuse = Code.ResourceExhausted;
    await createDataset(store, 3);
    const runner = start(store, hub, jobs, { window: 1, retryWaitMs: 50 });
    await sleep(20);
    expect(await stateOf(store, 0)).toBe('PENDING');
    hub.refuse = undefined;
    await vi.waitFor(() => expect(hub.submitted).toHaveLength(1), { interval: 5, timeout: 1000 });
    expect(await stateOf(store, 0)).toBe('SUBMITTED');

    expect(await store.cancelDataset('ds-1')).toBe(true);
    runner.wake();
    await vi.waitFor(() => expect(hub.cancelled).toEqual(['job-0']), { interval: 1, timeout: 1000 });
    expect((await store.rowsInState('ds-1', 'FINISHED')).map((r) => [r.rowId, r.outcome!.status])).toEqual([['r1', 'CANCELLED'], ['r2', 'CANCELLED']]);
    // The cancelled job's result ends the last row; the data set stays CANCELLED.
    await hub.finish('job-0', 3);
    await vi.waitFor(async () => expect((await store.getDatasetById('ds-1'))!.finishedRows).toBe(3), { interval: 1, timeout: 1000 });
    expect((await store.getDatasetById('ds-1'))!.state).toBe('CANCELLED');
  });
});
