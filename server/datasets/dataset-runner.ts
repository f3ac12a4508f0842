// The data set runner: turns the stored rows of every active data set into jobs, a window at a time, and copies
// each job's outcome back into its row when the job finishes. It works from the stores alone, so a server that
// restarts picks up where it was: rows with a job are followed (the job hub resumes the job itself), rows caught
// while their job was being created are matched to that job by its label, and the rest are submitted.
import { create, fromBinary } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import type { Logger } from 'pino';
import type { ClientQuotas, JobQueries, JobSubmission, ModelCatalog } from '../service/hub-ports.js';
import type { JobStore } from '../store/job-store.js';
import { JobSettingsSchema, JobSpecSchema, Status, TokenIdsSchema } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { Job, JobSettings, JobSpec } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { DatasetRecord, DatasetRowRecord, DatasetStore, RowOutcome } from './dataset-store.js';

/** Configure the runner. */
export interface DatasetRunnerOptions {
  /** Unfinished jobs one data set may have at once: enough to fill a few graph runs, few enough to share. */
  window: number;
  /** Share of the client's unfinished-jobs limit that its data sets leave to its other submissions (interactive jobs). */
  queueReserve: number;
  /** Time between two passes over the active data sets, in ms. */
  pollIntervalMs: number;
}

export const datasetRunnerDefaults: Readonly<DatasetRunnerOptions> = Object.freeze({
  window: 128, // jobs per data set
  queueReserve: 0.1, // of the client's unfinished-jobs limit
  pollIntervalMs: 200, // ms
});

/** Merge partial options over {@link datasetRunnerDefaults}. */
export function makeDatasetRunnerOptions(partial?: Partial<DatasetRunnerOptions>): DatasetRunnerOptions {
  return { ...datasetRunnerDefaults, ...partial };
}

/** What the runner knows of a data set's submitted rows between passes. */
interface ActiveDataset {
  record: DatasetRecord;
  /** Row index → job id, for rows whose job has not finished. */
  inFlight: Map<number, string>;
  queued: number;
  running: number;
  /** Current-restart iterations of the running jobs, from their latest progress. */
  runningIterations: number;
  cancelSent: boolean;
}

/** Where a data set's unfinished rows are, as the runner saw them on its last pass. */
export interface LiveCounts {
  queued: number;
  running: number;
  runningIterations: number;
}

// Codes that mean "not now": the row goes back to PENDING and is tried again on a later pass.
const retryable = new Set([Code.Unavailable, Code.ResourceExhausted]);

/** Feed data set rows to the job hub and collect their outcomes; see the module comment. */
export class DatasetRunner {
  private readonly active = new Map<string, ActiveDataset>();
  private readonly listeners = new Map<string, Set<() => void>>();
  private timer: NodeJS.Timeout | undefined;
  private passing = false;
  private stopped = false;
  readonly options: DatasetRunnerOptions;

  constructor(private readonly store: DatasetStore, private readonly hub: JobSubmission & JobQueries & ClientQuotas, private readonly jobs: JobStore,
    private readonly models: ModelCatalog, private readonly log: Logger, options?: Partial<DatasetRunnerOptions>) {
    this.options = makeDatasetRunnerOptions(options);
    // The first pass runs on a timer after the models are ready: by then the hub has taken its list of jobs to
    // resume (in the same microtask run), so rows submitted here are never resumed a second time.
    void this.models.ready().then(() => this.schedule());
  }

  /** Wake the runner now (a data set was submitted or cancelled). */
  wake(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.pass(), 0);
    this.timer.unref();
  }

  /** Call `listener` after every pass that changed data set `datasetId`; returns the function that removes it. */
  onChange(datasetId: string, listener: () => void): () => void {
    let set = this.listeners.get(datasetId);
    if (!set) this.listeners.set(datasetId, set = new Set());
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(datasetId);
    };
  }

  /** Return where a data set's unfinished rows are (zeros for a data set the runner is not following). */
  liveCounts(datasetId: string): LiveCounts {
    const a = this.active.get(datasetId);
    return a ? { queued: a.queued, running: a.running, runningIterations: a.runningIterations } : { queued: 0, running: 0, runningIterations: 0 };
  }

  /** Report whether the runner has stopped (the server is closing). */
  get closed(): boolean {
    return this.stopped;
  }

  /** Stop: no more passes; a pass under way stops at its next step. The stores are closed by their owner. */
  close(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const set of this.listeners.values()) for (const listener of set) listener();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.pass(), this.options.pollIntervalMs);
    this.timer.unref();
  }

  /** One pass over every active data set: collect finished jobs, cancel or submit rows, tell the watchers. */
  private async pass(): Promise<void> {
    if (this.passing || this.stopped) return;
    this.passing = true;
    try {
      const records = this.store.activeDatasets();
      const seen = new Set(records.map((r) => r.id));
      for (const id of this.active.keys()) if (!seen.has(id)) this.active.delete(id);
      for (const record of records) {
        if (this.stopped) return;
        // One data set's trouble (a store error, say) must not hold up the others: log it and try again next pass.
        try {
          let dataset = this.active.get(record.id);
          if (!dataset) {
            dataset = this.load(record);
            this.active.set(record.id, dataset);
          }
          dataset.record = record;
          const changed = await this.advance(dataset);
          if (changed) this.notify(record.id);
        } catch (error: unknown) {
          if (!this.stopped) this.log.error({ err: error, dataset: record.name }, 'data set pass failed');
        }
      }
    } catch (error: unknown) {
      if (!this.stopped) this.log.error({ err: error }, 'data set pass failed');
    } finally {
      this.passing = false;
      this.schedule();
    }
  }

  /** Start following a data set: its submitted rows, and the rows caught while their job was being created. */
  private load(record: DatasetRecord): ActiveDataset {
    const dataset: ActiveDataset = { record, inFlight: new Map(), queued: 0, running: 0, runningIterations: 0, cancelSent: false };
    for (const row of this.store.rowsInState(record.id, 'SUBMITTED')) dataset.inFlight.set(row.index, row.jobId!);
    for (const row of this.store.rowsInState(record.id, 'SUBMITTING')) {
      const jobId = this.findJob(record, row);
      if (jobId) {
        this.store.markSubmitted(record.id, row.index, jobId);
        dataset.inFlight.set(row.index, jobId);
      } else {
        this.store.markPending(record.id, row.index);
      }
      this.log.info({ dataset: record.name, row: row.rowId, jobId }, 'data set row recovered after a restart');
    }
    return dataset;
  }

  /** Find the job created for a row whose creation a crash interrupted: the client's job with the row's label. */
  private findJob(record: DatasetRecord, row: DatasetRowRecord): string | undefined {
    const label = jobLabel(record, row);
    const since = (row.submittingAtMs ?? 0) - 1000; // ms of slack for clock steps
    let before = '';
    for (;;) {
      const page = this.hub.listJobs(record.clientId, 100, before);
      for (const job of page) {
        if (job.label === label) return job.jobId;
      }
      const last = page.at(-1);
      if (!last || Number(last.createdAt?.seconds ?? 0n) * 1000 < since) return undefined;
      before = last.jobId;
    }
  }

  private async advance(dataset: ActiveDataset): Promise<boolean> {
    let changed = this.collect(dataset);
    if (dataset.record.state === 'CANCELLED') return this.drainCancelled(dataset) || changed;
    // The data set's client's own job limit, less a reserve for the jobs it submits by hand meanwhile.
    const clientId = dataset.record.clientId;
    const queueRoom = Math.floor(this.hub.limitsOf(clientId).maxJobs * (1 - this.options.queueReserve)) -
      this.hub.clientUse(clientId).jobs;
    const room = Math.min(this.options.window - dataset.inFlight.size, queueRoom);
    if (room <= 0) return changed;
    const settings = fromBinary(JobSettingsSchema, dataset.record.settings);
    for (const row of this.store.rowsInState(dataset.record.id, 'PENDING', room)) {
      if (this.stopped) return changed;
      const outcome = await this.submit(dataset, row, jobSpec(dataset.record, row, settings));
      if (outcome === 'retry') break;
      changed = true;
    }
    return changed;
  }

  /** Copy the outcome of every finished job into its row; count the others by state. */
  private collect(dataset: ActiveDataset): boolean {
    let changed = false;
    let queued = 0;
    let running = 0;
    let runningIterations = 0;
    const { record } = dataset;
    for (const [index, jobId] of dataset.inFlight) {
      const job = this.jobs.getJob(jobId);
      if (job === undefined) {
        this.finish(dataset, index, failedOutcome(`its job ${jobId} no longer exists`));
        changed = true;
      } else if (job.state === 'FINISHED') {
        let outcome: RowOutcome;
        try {
          outcome = outcomeOf(this.hub.getJob(record.clientId, jobId), job.status);
        } catch (error: unknown) {
          // A job whose record cannot be read back (settings this build refuses, say) still ends its row.
          outcome = { ...failedOutcome(`its job ${jobId} could not be read: ${error instanceof Error ? error.message : String(error)}`),
            status: job.status ?? 'FAILED' };
        }
        this.finish(dataset, index, outcome);
        changed = true;
      } else if (job.state === 'RUNNING') {
        running++;
        runningIterations += this.hub.getJob(record.clientId, jobId).lastProgress?.iteration ?? 0;
      } else {
        queued++;
      }
    }
    if (running > 0 || runningIterations !== dataset.runningIterations) changed = true;
    Object.assign(dataset, { queued, running, runningIterations });
    return changed;
  }

  /** Finish the rows of a cancelled data set that have no job, and cancel the jobs of the others (once). */
  private drainCancelled(dataset: ActiveDataset): boolean {
    let changed = false;
    for (const state of ['PENDING', 'SUBMITTING'] as const) {
      for (const row of this.store.rowsInState(dataset.record.id, state)) {
        this.finish(dataset, row.index, { ...failedOutcome('the data set was cancelled'), status: 'CANCELLED' });
        changed = true;
      }
    }
    if (!dataset.cancelSent) {
      dataset.cancelSent = true;
      for (const jobId of dataset.inFlight.values()) this.hub.cancel(dataset.record.clientId, jobId);
    }
    return changed;
  }

  private async submit(dataset: ActiveDataset, row: DatasetRowRecord, spec: JobSpec): Promise<'submitted' | 'refused' | 'retry'> {
    const { record } = dataset;
    this.store.markSubmitting(record.id, row.index, Date.now());
    try {
      const { jobId } = await this.hub.submit(record.clientId, spec);
      if (this.stopped) return 'retry'; // the store may be closed; the row is found by its label after a restart
      this.store.markSubmitted(record.id, row.index, jobId);
      dataset.inFlight.set(row.index, jobId);
      return 'submitted';
    } catch (error: unknown) {
      if (this.stopped) return 'retry';
      const e = ConnectError.from(error);
      if (retryable.has(e.code)) {
        this.store.markPending(record.id, row.index);
        return 'retry';
      }
      this.log.info({ dataset: record.name, row: row.rowId, error: e.rawMessage }, 'data set row refused');
      this.finish(dataset, row.index, failedOutcome(e.rawMessage));
      return 'refused';
    }
  }

  private finish(dataset: ActiveDataset, index: number, outcome: RowOutcome): void {
    this.store.finishRow(dataset.record.id, index, outcome, Date.now());
    dataset.inFlight.delete(index);
  }

  private notify(datasetId: string): void {
    for (const listener of this.listeners.get(datasetId) ?? []) listener();
  }
}

/** Return the label a row's job carries: the data set's name and the row's id, which find it again after a crash. */
export function jobLabel(record: Pick<DatasetRecord, 'name'>, row: Pick<DatasetRowRecord, 'rowId'>): string {
  return `${record.name}/${row.rowId}`;
}

function jobSpec(record: DatasetRecord, row: DatasetRowRecord, settings: JobSettings): JobSpec {
  return create(JobSpecSchema, {
    model: record.model,
    settings,
    label: jobLabel(record, row),
    target: 'ids' in row.target
      ? { case: 'targetIds', value: create(TokenIdsSchema, { ids: row.target.ids }) }
      : { case: 'text', value: row.target.text },
  });
}

function failedOutcome(error: string): RowOutcome {
  return { status: 'FAILED', iterationsToHit: null, bestNll: null, iterations: 0, elapsedMs: 0, error };
}

/** Copy a finished job's result into a row outcome: the best restart's numbers, iterations over all restarts. */
function outcomeOf(job: Job, storedStatus: string | null): RowOutcome {
  const result = job.result;
  if (!result) return { ...failedOutcome('the job ended without a result (it could not be resumed)'), status: storedStatus ?? 'FAILED' };
  const best = result.restarts[result.best];
  return {
    status: Status[result.status] ?? 'FAILED',
    iterationsToHit: best?.iterationsToHit ?? null,
    bestNll: best && Number.isFinite(best.bestNll) ? best.bestNll : null,
    iterations: result.restarts.reduce((sum, r) => sum + r.iterations, 0),
    elapsedMs: result.elapsedMs,
    error: best?.error ? best.error : null,
  };
}
