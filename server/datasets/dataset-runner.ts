// The data set runner: turns the stored rows of every active data set into jobs, a window at a time, and copies
// each job's outcome back into its row when the job finishes. It follows the hub's change feed rather than polling
// the stores: a job's 'result' finishes its row and frees room for the next rows, a data set created or cancelled
// wakes it. Its state is the stores', so a server that restarts picks up where it was: rows with a job are followed
// (the job hub resumes the job itself), rows caught while their job was being created are matched to that job by its
// label, and the rest are submitted.
//
// One runner drives a store's data sets at a time: the one whose server holds the store's lead (see
// DatasetRepository.leadRunner). Two would race: one's recovery would put the other's in-flight SUBMITTING row back
// to PENDING, and the row would be submitted twice. The others wait, trying for the lead now and then, while their
// servers still serve reads and store new data sets; the leader finds those by looking at the store every so often.
import { create, fromBinary } from '@bufbuild/protobuf';
import { Code } from '@connectrpc/connect';
import { toConnectError } from '../service/validation.js';
import type { Logger } from 'pino';
import type { ClientQuotas, JobChange, JobChanges, JobQueries, JobSubmission, ModelCatalog } from '../service/hub-ports.js';
import type { JobRepository } from '../store/job-repository.js';
import { JobSettingsSchema, JobSpecSchema, Status, TokenIdsSchema } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { Job, JobSettings, JobSpec } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { DatasetRecord, DatasetRepository, DatasetRowRecord, RowOutcome } from './dataset-repository.js';

/** Configure the runner. */
export interface DatasetRunnerOptions {
  /** Unfinished jobs one data set may have at once: enough to fill a few graph runs, few enough to share. */
  window: number;
  /** Share of the client's unfinished-jobs limit that its data sets leave to its other submissions (interactive jobs). */
  queueReserve: number;
  /**
   * Wait before another pass when no job change will come to prompt one, in ms: after a submission the hub refused
   * for now (queue full, server unavailable), a store fault, or a result announced before the job store had it.
   */
  retryWaitMs: number;
  /** Wait between tries for the lead while another server has it, and between checks that this one still has it, in ms. */
  leadRetryMs: number;
  /**
   * Wait between passes that look for data sets created or cancelled on other servers, in ms, while this server
   * leads on a shared store (a wake() from another server's service never reaches this runner).
   */
  discoverEveryMs: number;
}

export const datasetRunnerDefaults: Readonly<DatasetRunnerOptions> = Object.freeze({
  window: 128, // jobs per data set
  queueReserve: 0.1, // of the client's unfinished-jobs limit
  retryWaitMs: 500, // ms
  leadRetryMs: 2000, // ms
  discoverEveryMs: 2000, // ms
});

/** Merge partial options over {@link datasetRunnerDefaults}. */
export function makeDatasetRunnerOptions(partial?: Partial<DatasetRunnerOptions>): DatasetRunnerOptions {
  return { ...datasetRunnerDefaults, ...partial };
}

/** What the runner asks of the job hub: submit, read and cancel jobs, the client's room, and the change feed. */
export type DatasetRunnerHub = JobSubmission & JobQueries & ClientQuotas & JobChanges;

/** What the runner knows of a data set between passes. */
interface ActiveDataset {
  record: DatasetRecord;
  /** Row index → its unfinished job. */
  inFlight: Map<number, FollowedJob>;
  /** Current-restart iterations of the running jobs, as last read. */
  runningIterations: number;
  /** A job started, progressed or ended since runningIterations was read. */
  iterationsStale: boolean;
  cancelSent: boolean;
}

/** A submitted row's job, in the state its latest change put it. */
interface FollowedJob {
  jobId: string;
  index: number;
  dataset: ActiveDataset;
  state: 'QUEUED' | 'RUNNING';
}

/** Where a data set's unfinished rows are, as the runner follows them. */
export interface LiveCounts {
  queued: number;
  running: number;
  runningIterations: number;
}

// Codes that mean "not now": the row goes back to PENDING and is tried again after the retry wait.
const retryable = new Set([Code.Unavailable, Code.ResourceExhausted]);

/** Feed data set rows to the job hub and collect their outcomes; see the module comment. */
export class DatasetRunner {
  private readonly active = new Map<string, ActiveDataset>();
  /** Job id → the row it runs, for every submitted row not yet finished. */
  private readonly followed = new Map<string, FollowedJob>();
  /** Jobs whose result the feed announced and no pass has dealt with yet. */
  private readonly results = new Set<string>();
  /** Clients with an active data set as of the last pass; undefined before the first, when every result counts. */
  private activeClients: Set<string> | undefined;
  /** Clients whose data sets have rows waiting for room in the client's queue: any of their results frees some. */
  private readonly waitingForRoom = new Set<string>();
  private readonly listeners = new Map<string, Set<() => void>>();
  private readonly unsubscribe: () => void;
  private passing: 'idle' | 'scheduled' | 'running' = 'idle';
  private passAgain = false;
  private passDone: Promise<void> = Promise.resolve();
  private retryTimer: NodeJS.Timeout | undefined;
  private started = false;
  private stopped = false;
  /** Whether this runner drives the store's data sets now (it holds the lead). */
  private leading = false;
  /** Losses of the lead reported while not (yet) leading: one during a try means the try's answer is stale. */
  private losses = 0;
  /** Whether the last try for the lead failed (and was logged). */
  private leadFault = false;
  /** Whether 'run by another server' was logged since the runner last led (or started). */
  private toldFollowing = false;
  private leadTimer: NodeJS.Timeout | undefined;
  private discoverTimer: NodeJS.Timeout | undefined;
  readonly options: DatasetRunnerOptions;

  constructor(private readonly store: DatasetRepository, private readonly hub: DatasetRunnerHub,
    private readonly jobs: JobRepository, models: Pick<ModelCatalog, 'ready'>, private readonly log: Logger,
    options?: Partial<DatasetRunnerOptions>) {
    this.options = makeDatasetRunnerOptions(options);
    // Subscribed before the first pass reads anything, so no result falls between that read and the feed.
    this.unsubscribe = hub.onJobChange((change) => this.onJobChange(change));
    // The first pass runs once the models are ready: by then the hub has taken its list of jobs to resume, so rows
    // submitted here are never resumed a second time. It resumes every active data set, once this server leads.
    void models.ready().then(() => {
      this.started = true;
      void this.seekLead();
    }, (error: unknown) => this.log.error({ err: error }, 'data sets not started: the models did not load'));
  }

  /** Report whether this runner drives the store's data sets now (another server's does while it does not). */
  get leads(): boolean {
    return this.leading && !this.stopped;
  }

  /** Run a pass now (a data set was submitted or cancelled). */
  wake(): void {
    this.requestPass();
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
  async liveCounts(datasetId: string): Promise<LiveCounts> {
    const dataset = this.active.get(datasetId);
    if (!dataset) return { queued: 0, running: 0, runningIterations: 0 };
    const running = [...dataset.inFlight.values()].filter((job) => job.state === 'RUNNING');
    if (running.length === 0) {
      dataset.runningIterations = 0;
    } else if (dataset.iterationsStale) {
      // Read when asked (a watcher's message), not on every progress change: those come many times a second per job.
      dataset.iterationsStale = false;
      let iterations = 0;
      for (const job of running) {
        try {
          iterations += (await this.hub.getJob(dataset.record.clientId, job.jobId)).lastProgress?.iteration ?? 0;
        } catch {
          // Gone or finished since: its iterations are counted with its row, or not at all.
        }
      }
      dataset.runningIterations = iterations;
    }
    return { queued: dataset.inFlight.size - running.length, running: running.length, runningIterations: dataset.runningIterations };
  }

  /** Report whether the runner has stopped (the server is closing). */
  get closed(): boolean {
    return this.stopped;
  }

  /**
   * Stop: no more passes, and off the feed; a pass under way stops at its next step, and the promise resolves once
   * it has, so the store's owner may close it then.
   */
  async close(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.leadTimer);
    clearInterval(this.discoverTimer);
    this.unsubscribe();
    for (const set of this.listeners.values()) for (const listener of set) listener();
    await this.passDone;
  }

  /**
   * Try for the lead, and again every leadRetryMs for as long as the runner runs; while leading, check the lead at
   * that pace. The first pass runs once the lead is taken, after any pass of an earlier lead has stopped, on a clean
   * slate: it loads every active data set afresh, recovering the rows the last leader left SUBMITTING.
   */
  private async seekLead(): Promise<void> {
    this.leadTimer = undefined;
    if (this.stopped) return;
    const wasLeading = this.leading;
    const losses = this.losses;
    let leads: boolean;
    let failed = false;
    try {
      leads = await this.store.leadRunner(() => this.loseLead());
      this.leadFault = false;
    } catch (error: unknown) {
      // Once per outage: the tries go on every leadRetryMs, and the store's other users report the fault too.
      if (!this.stopped && !this.leadFault) this.log.warn({ err: error }, 'data sets: the lead could not be checked or taken');
      this.leadFault = true;
      leads = false;
      failed = true;
    }
    if (this.stopped) return;
    if (!leads) {
      if (wasLeading) this.loseLead();
      if (!failed && !this.toldFollowing) {
        this.toldFollowing = true;
        this.log.info('data sets are run by another server');
      }
    } else if (!this.leading) {
      await this.passDone;
      if (this.stopped) return;
    }
    if (leads && !this.leading && this.losses === losses) {
      this.forget();
      this.leading = true;
      this.toldFollowing = false;
      this.log.info('data sets are run by this server');
      // A SQLite store has one server, whose own service wakes the runner for every data set it creates or cancels;
      // on a shared store they come from other servers too, unannounced.
      if (this.store.shared) {
        this.discoverTimer = setInterval(() => this.requestPass(), this.options.discoverEveryMs);
        this.discoverTimer.unref();
      }
      this.requestPass();
    }
    this.leadTimer = setTimeout(() => void this.seekLead(), this.options.leadRetryMs);
    this.leadTimer.unref();
  }

  /** Stop driving: another server may lead from now on. A pass under way stops at its next step. */
  private loseLead(): void {
    if (!this.leading) {
      this.losses++;
      return;
    }
    this.leading = false;
    clearInterval(this.discoverTimer);
    this.discoverTimer = undefined;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.forget();
    this.log.warn('data sets: this server lost the lead; another server may run them now');
    for (const set of this.listeners.values()) for (const listener of set) listener();
  }

  /** Drop what the runner follows: the next leader (this one later, or another) finds it all in the stores. */
  private forget(): void {
    this.active.clear();
    this.followed.clear();
    this.results.clear();
    this.waitingForRoom.clear();
    this.activeClients = undefined;
  }

  /** Report whether the runner must not touch the stores: closing, or not leading. */
  private get halted(): boolean {
    return this.stopped || !this.leading;
  }

  private onJobChange(change: JobChange): void {
    if (this.halted) return;
    const job = this.followed.get(change.jobId);
    if (change.kind === 'result') {
      // One of ours, perhaps submitted a moment ago and not followed yet, or a job whose end frees queue room.
      if (!job && this.activeClients !== undefined && !this.activeClients.has(change.clientId)) return;
      this.results.add(change.jobId);
      if (job) job.dataset.iterationsStale = true;
      if (job || this.passing !== 'idle' || this.waitingForRoom.has(change.clientId)) this.requestPass();
    } else if (job && change.kind === 'started') {
      job.state = 'RUNNING';
      job.dataset.iterationsStale = true;
      this.notify(job.dataset.record.id);
    } else if (job && change.kind === 'queued') {
      job.state = 'QUEUED';
    } else if (job && change.kind === 'progress') {
      job.dataset.iterationsStale = true;
    }
  }

  /** Run a pass soon; passes run one at a time, and a request during one runs one more after it. */
  private requestPass(): void {
    if (this.halted || !this.started) return;
    if (this.passing !== 'idle') {
      this.passAgain = true;
      return;
    }
    this.passing = 'scheduled';
    // Deferred past the caller: the hub tells of a result as it records it and writes it in its next flush, which it
    // queued (also with setImmediate) before telling.
    this.passDone = new Promise((resolve) => setImmediate(() => void this.runPasses().finally(resolve)));
  }

  private async runPasses(): Promise<void> {
    this.passing = 'running';
    try {
      do {
        this.passAgain = false;
        await this.pass();
      } while (this.passAgain && !this.halted);
    } finally {
      this.passing = 'idle';
    }
  }

  /**
   * Pass again after the retry wait: only for what no job change will report (a refused submission, a store fault,
   * a result not yet stored). Any pass clears it first, so it never repeats without a new cause.
   */
  private retryLater(): void {
    if (this.halted || this.retryTimer !== undefined) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.requestPass();
    }, this.options.retryWaitMs);
    this.retryTimer.unref();
  }

  /** One pass over every active data set: collect announced results, cancel or submit rows, tell the watchers. */
  private async pass(): Promise<void> {
    if (this.halted || !this.store.open) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    // Results announced from here on wait for the next pass (the feed asks for one), not to be pruned below unseen.
    const due = new Set(this.results);
    let records: DatasetRecord[];
    try {
      records = await this.store.activeDatasets();
    } catch (error: unknown) {
      if (!this.halted) this.log.error({ err: error }, 'data set pass failed: the active data sets could not be listed');
      this.retryLater();
      return;
    }
    this.activeClients = new Set(records.map((r) => r.clientId));
    this.waitingForRoom.clear();
    const seen = new Set(records.map((r) => r.id));
    for (const [id, dataset] of this.active) {
      if (seen.has(id)) continue;
      for (const job of dataset.inFlight.values()) this.followed.delete(job.jobId);
      this.active.delete(id);
    }
    for (const record of records) {
      if (this.halted) return;
      // One data set's trouble (a store fault, say) must not hold up the others: log it and try again later, from
      // what the store holds (a move refused because the row is no longer where this runner thought, say one a
      // server that just lost the lead finished, is put right by reading it again).
      try {
        let dataset = this.active.get(record.id);
        if (!dataset) {
          dataset = await this.load(record, due);
          this.active.set(record.id, dataset);
        }
        dataset.record = record;
        if (await this.advance(dataset, due)) this.notify(record.id);
      } catch (error: unknown) {
        if (this.halted) return;
        this.log.error({ err: error, dataset: record.name }, 'data set pass failed');
        this.unload(record.id);
        this.retryLater();
      }
    }
    // A result still followed is one not yet collected (not stored yet, or its data set failed): keep it.
    for (const jobId of due) if (!this.followed.has(jobId)) this.results.delete(jobId);
  }

  /**
   * Start following a data set: its submitted rows, and the rows caught while their job was being created. Jobs
   * that finished while no one followed them go into `due`, to be collected like an announced result.
   */
  private async load(record: DatasetRecord, due: Set<string>): Promise<ActiveDataset> {
    const dataset: ActiveDataset = { record, inFlight: new Map(), runningIterations: 0, iterationsStale: true, cancelSent: false };
    for (const row of await this.store.rowsInState(record.id, 'SUBMITTED')) this.follow(dataset, row.index, row.jobId!);
    for (const row of await this.store.rowsInState(record.id, 'SUBMITTING')) {
      // A runner that lost the lead meanwhile must not undo the new leader's submission of this row.
      if (this.halted) return dataset;
      const jobId = await this.findJob(record, row);
      if (this.halted) return dataset;
      if (jobId) {
        await this.store.markSubmitted(record.id, row.index, jobId);
        this.follow(dataset, row.index, jobId);
      } else {
        await this.store.markPending(record.id, row.index);
      }
      this.log.info({ dataset: record.name, row: row.rowId, jobId }, 'data set row recovered after a restart or a change of lead');
    }
    for (const job of dataset.inFlight.values()) {
      const stored = await this.jobs.getJob(job.jobId);
      if (stored?.state === 'RUNNING') job.state = 'RUNNING';
      else if (stored === undefined || stored.state === 'FINISHED') {
        this.results.add(job.jobId);
        due.add(job.jobId);
      }
    }
    return dataset;
  }

  /** Find the job created for a row whose creation a crash interrupted: the client's job with the row's label. */
  private async findJob(record: DatasetRecord, row: DatasetRowRecord): Promise<string | undefined> {
    const label = jobLabel(record, row);
    const since = (row.submittingAtMs ?? 0) - 1000; // ms of slack for clock steps
    let before = '';
    for (;;) {
      const page = await this.hub.listJobs(record.clientId, 100, before);
      for (const job of page) {
        if (job.label === label) return job.jobId;
      }
      const last = page.at(-1);
      if (!last || Number(last.createdAt?.seconds ?? 0n) * 1000 < since) return undefined;
      before = last.jobId;
    }
  }

  private async advance(dataset: ActiveDataset, due: ReadonlySet<string>): Promise<boolean> {
    let changed = await this.collect(dataset, due);
    if (dataset.record.state === 'CANCELLED') return (await this.drainCancelled(dataset)) || changed;
    // The data set's client's own job limit, less a reserve for the jobs it submits by hand meanwhile.
    const { record } = dataset;
    const queueRoom = Math.floor(this.hub.limitsOf(record.clientId).maxJobs * (1 - this.options.queueReserve)) -
      (await this.hub.clientUse(record.clientId)).jobs;
    const room = Math.min(this.options.window - dataset.inFlight.size, queueRoom);
    const unsubmitted = record.rowCount - record.finishedRows - dataset.inFlight.size;
    if (queueRoom <= 0 && unsubmitted > 0) this.waitingForRoom.add(record.clientId);
    if (room <= 0) return changed;
    const settings = fromBinary(JobSettingsSchema, record.settings);
    const pending = await this.store.rowsInState(record.id, 'PENDING', room);
    if (pending.length < Math.min(room, unsubmitted)) {
      // Rows neither finished, followed nor PENDING: moved by a server that led before this one and wrote after this
      // one loaded the data set (or left SUBMITTING by a store fault). Load it again, recovering them.
      this.log.info({ dataset: record.name }, 'data set reloaded: rows were moved outside this runner');
      this.unload(record.id);
      this.retryLater();
      return changed;
    }
    for (const row of pending) {
      if (this.halted) return changed;
      const outcome = await this.submit(dataset, row, jobSpec(record, row, settings));
      if (outcome === 'retry') {
        this.retryLater();
        break;
      }
      changed = true;
    }
    return changed;
  }

  /** Copy the outcome of every due job into its row. */
  private async collect(dataset: ActiveDataset, due: ReadonlySet<string>): Promise<boolean> {
    let changed = false;
    const { clientId } = dataset.record;
    for (const { jobId, index } of [...dataset.inFlight.values()].filter((job) => due.has(job.jobId))) {
      if (this.halted) return changed;
      const stored = await this.jobs.getJob(jobId);
      let outcome: RowOutcome;
      if (stored === undefined) {
        outcome = failedOutcome(`its job ${jobId} no longer exists`);
      } else if (stored.state !== 'FINISHED') {
        // Announced but not written yet: no later change will come for it, so look again after the retry wait.
        this.retryLater();
        continue;
      } else {
        try {
          outcome = outcomeOf(await this.hub.getJob(clientId, jobId), stored.status);
        } catch (error: unknown) {
          // A job whose record cannot be read back (settings this build refuses, say) still ends its row.
          outcome = { ...failedOutcome(`its job ${jobId} could not be read: ${error instanceof Error ? error.message : String(error)}`),
            status: stored.status ?? 'FAILED' };
        }
      }
      await this.finish(dataset, index, outcome);
      changed = true;
    }
    return changed;
  }

  /** Finish the rows of a cancelled data set that have no job, and cancel the jobs of the others (once). */
  private async drainCancelled(dataset: ActiveDataset): Promise<boolean> {
    let changed = false;
    for (const state of ['PENDING', 'SUBMITTING'] as const) {
      for (const row of await this.store.rowsInState(dataset.record.id, state)) {
        await this.finish(dataset, row.index, { ...failedOutcome('the data set was cancelled'), status: 'CANCELLED' });
        changed = true;
      }
    }
    if (!dataset.cancelSent) {
      dataset.cancelSent = true;
      for (const { jobId } of [...dataset.inFlight.values()]) {
        try {
          await this.hub.cancel(dataset.record.clientId, jobId);
        } catch (error: unknown) {
          // Its result still comes through the feed (a job that ended meanwhile has one already).
          this.log.warn({ dataset: dataset.record.name, jobId, err: error }, 'data set job not cancelled');
        }
      }
    }
    return changed;
  }

  private async submit(dataset: ActiveDataset, row: DatasetRowRecord, spec: JobSpec): Promise<'submitted' | 'refused' | 'retry'> {
    const { record } = dataset;
    await this.store.markSubmitting(record.id, row.index, Date.now());
    // The lead lost meanwhile: the row stays SUBMITTING, for the next leader to recover (it finds no job).
    if (this.halted) return 'retry';
    try {
      const { jobId } = await this.hub.submit(record.clientId, spec);
      if (this.halted) return 'retry'; // the store may be closing; the row is found by its label after a restart
      await this.store.markSubmitted(record.id, row.index, jobId);
      this.follow(dataset, row.index, jobId);
      return 'submitted';
    } catch (error: unknown) {
      if (this.halted) return 'retry';
      const e = toConnectError(error);
      if (retryable.has(e.code)) {
        await this.store.markPending(record.id, row.index);
        return 'retry';
      }
      this.log.info({ dataset: record.name, row: row.rowId, error: e.rawMessage }, 'data set row refused');
      await this.finish(dataset, row.index, failedOutcome(e.rawMessage));
      return 'refused';
    }
  }

  private follow(dataset: ActiveDataset, index: number, jobId: string): void {
    const job: FollowedJob = { jobId, index, dataset, state: 'QUEUED' };
    dataset.inFlight.set(index, job);
    this.followed.set(jobId, job);
  }

  private async finish(dataset: ActiveDataset, index: number, outcome: RowOutcome): Promise<void> {
    const order = await this.store.finishRow(dataset.record.id, index, outcome, Date.now());
    // The finish order is the data set's count of finished rows, as of this finish.
    dataset.record = { ...dataset.record, finishedRows: Math.max(dataset.record.finishedRows, order) };
    const job = dataset.inFlight.get(index);
    if (job) this.followed.delete(job.jobId);
    dataset.inFlight.delete(index);
    dataset.iterationsStale = true;
  }

  /** Stop following a data set; the next pass loads it afresh from the stores. */
  private unload(datasetId: string): void {
    const dataset = this.active.get(datasetId);
    if (!dataset) return;
    for (const job of dataset.inFlight.values()) this.followed.delete(job.jobId);
    this.active.delete(datasetId);
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
