// The job hub: every job goes request → admission → store → engine → events → job log + job feed. The hub admits
// jobs (a client's quotas), owns them (another client's job is reported missing), numbers each job's events (1, 2,
// 3, … without gaps), and after a restart resumes unfinished jobs from their last checkpoint so a job's history
// stays one contiguous sequence. Writing is the job log's (job-log.ts), fan-out the job feed's (job-feed.ts).
import { randomUUID } from 'node:crypto';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import type { Logger } from 'pino';
import type { InversionEvent, RunResult } from '../engine/events.js';
import type { InversionHandle } from '../engine/inversion-engine.js';
import type { RunSnapshot } from '../engine/inversion-run.js';
import type { InversionLimits } from '../engine/settings.js';
import { inversionLimits, makeInversionSettings, storedInversionSettings } from '../engine/settings.js';
import type { CheckpointRecord, JobRecord, JobRepository } from '../store/job-repository.js';
import { isStoreFault } from '../store/job-repository.js';
import { JobEventSchema, JobSchema, JobSpecSchema, JobState, ProgressSchema, ResultSchema, Status } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { Job, JobEvent, JobSpec } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { ClientLimits } from './client-policy.js';
import type { ModelRegistry } from './model-registry.js';
import { formatBytes, jobBytes } from '../engine/run-cost.js';
import {
  decodeEvent, decodeSnapshots, encodeEvent, encodeSnapshots, eventToProto, restartResultFromProto, settingsFromProto,
  settingsToProto,
} from './proto-convert.js';
import { toConnectError } from './validation.js';
import type {
  ClientQuotas, JobChange, JobChanges, JobQueries, JobStreams, JobSubmission, SettingsLimits,
} from './hub-ports.js';
import { JobFeed } from './job-feed.js';
import { JobLog } from './job-log.js';
import type { StoreFault } from './job-log.js';
import { tokenIdProblem } from '../util/numbers.js';

export interface JobHubOptions {
  /**
   * Unfinished jobs (queued or running) per client beyond which its submissions are refused, unless its own limit
   * says otherwise.
   */
  maxQueue: number;
  /** Bytes a client's unfinished jobs may hold (see jobBytes), unless its own limit says otherwise. */
  maxQueuedBytes: number;
  /** A client's own limits (from the tokens file); the defaults above fill in what it does not set. */
  limitsOf?: (clientId: string) => Partial<ClientLimits>;
  /** Iterations (summed over a job's restarts) between two checkpoints of a running job. */
  checkpointEvery: number;
  /** Progress events a subscriber may have waiting before older ones are coalesced. */
  subscriberBuffer: number;
  limits: InversionLimits;
  /** Told of every finished job (metrics). */
  onJobFinished?: (model: string, status: string) => void;
  /** Wait between two attempts to write to a store that failed (disk full, I/O error), in ms. */
  storeRetryMs: number;
}

export const jobHubDefaults: Readonly<JobHubOptions> = Object.freeze({
  maxQueue: 1000,
  maxQueuedBytes: 2 ** 30, // 1 GiB: about 220 jobs of 1 restart on gpt2 with P = 256 (4.5 MiB each)
  checkpointEvery: 50,
  subscriberBuffer: 256,
  limits: inversionLimits,
  storeRetryMs: 1000, // ms
});

export type { StoreFault } from './job-log.js';

/** A job the engine is working on. */
interface LiveJob {
  record: JobRecord;
  /** Bytes its restarts hold while they run (jobBytes): counted against its client's queued-cost limit. */
  cost: number;
  handle?: InversionHandle;
  nextSequence: number;
  iterationsSinceCheckpoint: number;
  /** Restart → iteration it resumed from (for the started event after a server restart). */
  resumedFrom: Map<number, number>;
  suppressQueued: boolean;
  /** For a resumed job: the checkpoint sequence it resumed from (its resume mark once it starts running). */
  resumedAtCheckpoint?: number;
}

const eventKinds = { queued: 'queued', started: 'started', progress: 'progress', restartResult: 'restart_result', result: 'result' } as const;

export type { JobChange } from './hub-ports.js';

export class JobHub implements JobSubmission, JobQueries, JobStreams, JobChanges, ClientQuotas, SettingsLimits {
  private readonly live = new Map<string, LiveJob>();
  private readonly jobLog: JobLog;
  private readonly feed: JobFeed;
  private accepting = true;
  private closed = false;
  // Jobs left unresumed because the store failed while resuming them: retried once it writes again.
  private resumeLater: JobRecord[] = [];
  // The unfinished jobs could not even be listed: list and resume them once the store works again.
  private resumeAllLater = false;
  readonly options: JobHubOptions;

  constructor(private readonly store: JobRepository, private readonly registry: ModelRegistry, options: Partial<JobHubOptions>,
    private readonly log: Logger) {
    this.options = { ...jobHubDefaults, ...options };
    this.feed = new JobFeed(this.options.subscriberBuffer,
      (error, change) => this.log.error({ err: error, jobId: change.jobId }, 'job change listener failed'));
    this.jobLog = new JobLog(store, { storeRetryMs: this.options.storeRetryMs }, {
      dueCheckpoints: () => this.dueCheckpoints(),
      checkpointsLost: (jobIds) => {
        for (const jobId of jobIds) {
          const live = this.live.get(jobId);
          if (live) live.iterationsSinceCheckpoint = this.options.checkpointEvery;
        }
      },
    }, log, () => this.storeRecovered());
  }

  /** The store's fault while it cannot be written (the server is then not ready), or undefined. */
  get storeFault(): StoreFault | undefined {
    return this.jobLog.fault;
  }

  /** Failed store writes since the start (metrics). */
  get storeWriteErrors(): number {
    return this.jobLog.storeWriteErrors;
  }

  /** Jobs the engine is working on (queued or running). */
  get liveJobs(): number {
    return this.live.size;
  }

  /** A client's limits in force: its own (tokens file) over the server's defaults. */
  limitsOf(clientId: string): ClientLimits {
    const own = this.options.limitsOf?.(clientId) ?? {};
    return { maxJobs: own.maxJobs ?? this.options.maxQueue, maxQueuedBytes: own.maxQueuedBytes ?? this.options.maxQueuedBytes };
  }

  /** What a client's unfinished jobs hold: their count and their cost in bytes (jobBytes). */
  async clientUse(clientId: string): Promise<{ jobs: number; bytes: number }> {
    return this.useOf(clientId);
  }

  /** Every client with unfinished jobs, and what they hold (metrics). */
  useByClient(): Map<string, { jobs: number; bytes: number }> {
    const out = new Map<string, { jobs: number; bytes: number }>();
    for (const live of this.live.values()) {
      const use = out.get(live.record.clientId) ?? { jobs: 0, bytes: 0 };
      use.jobs++;
      use.bytes += live.cost;
      out.set(live.record.clientId, use);
    }
    return out;
  }

  /** Check a job request, store it and hand it to the model's engine; returns its id and queue position. */
  async submit(clientId: string, spec: JobSpec): Promise<{ jobId: string; queuePosition: number }> {
    if (!this.accepting) throw new ConnectError('the server is shutting down; retry on another server or later', Code.Unavailable);
    if (this.jobLog.fault) throw storeUnavailable(this.jobLog.fault);
    const limits = this.limitsOf(clientId);
    const entry = this.registry.require(spec.model, 'spec.model');
    const targetIds = this.targetIdsOf(spec, entry.model.tokenizer.encode, entry.model.checkpoint.config.vocabSize);
    const settings = this.checkSettings(spec);
    const cost = jobBytes(settings, targetIds.length, entry.model.checkpoint.config);
    const record: JobRecord = {
      id: randomUUID(),
      clientId,
      model: entry.name,
      label: spec.label,
      spec: toBinary(JobSpecSchema, spec),
      targetIds,
      targetText: entry.model.tokenizer.decode(targetIds),
      state: 'QUEUED',
      status: null,
      cancelRequested: false,
      createdAtMs: Date.now(),
      finishedAtMs: null,
      lastSequence: 0,
      summary: null,
    };
    // Quotas are checked and the job counted in one synchronous step, so two submissions racing through the
    // store's await cannot both take the last place.
    const use = this.useOf(clientId);
    if (use.jobs >= limits.maxJobs) {
      throw new ConnectError(`queue is full for client "${clientId}": ${use.jobs} jobs are queued or running; the ` +
        `limit is ${limits.maxJobs}`, Code.ResourceExhausted);
    }
    if (use.bytes + cost > limits.maxQueuedBytes) {
      throw new ConnectError(`queued cost over the limit for client "${clientId}": its unfinished jobs hold ` +
        `${formatBytes(use.bytes)} and this job would add ${formatBytes(cost)} (${settings.restarts} restarts); the ` +
        `limit is ${formatBytes(limits.maxQueuedBytes)}`, Code.ResourceExhausted);
    }
    const live = this.addLive(record, 1, new Map(), false, cost);
    const { lastSequence: _l, summary: _s, ...insertable } = record;
    try {
      await this.store.insertJob(insertable);
    } catch (error: unknown) {
      this.live.delete(record.id);
      if (!isStoreFault(error)) throw error;
      this.jobLog.failed(error, 'insert a job');
      throw storeUnavailable(this.jobLog.fault!);
    }
    const queuePosition = entry.engine.queued;
    try {
      live.handle = await entry.engine.submit({ targetIds, settings, client: clientId,
        onEvent: (event) => this.onEvent(live, event) });
    } catch (error: unknown) {
      this.live.delete(record.id);
      await this.store.deleteJob(record.id);
      throw toConnectError(error);
    }
    this.log.info({ jobId: record.id, clientId, model: entry.name, tokens: targetIds.length }, 'job submitted');
    this.feed.announce({ clientId, jobId: record.id, kind: 'created' });
    return { jobId: record.id, queuePosition };
  }

  /**
   * Stream a job's events after `afterSequence`: the stored history first, then live events until the result.
   * A slow reader gets coalesced progress (see EventSubscriber); the result always arrives.
   */
  async *watch(clientId: string, jobId: string, afterSequence: number, signal: AbortSignal): AsyncGenerator<JobEvent> {
    let record = await this.ownedJob(clientId, jobId);
    let live = this.live.get(jobId);
    if (!live && record.state !== 'FINISHED') {
      // It may have just finished, its result still waiting in the job log: write that, then look again.
      await this.jobLog.flush();
      record = await this.ownedJob(clientId, jobId);
      live = this.live.get(jobId);
    }
    // Unfinished but not live: stored before a restart and not resumed yet. Its events after the last checkpoint
    // are about to be replaced, so replaying them now would hand out a history that will not exist.
    if (!live && record.state !== 'FINISHED') throw notResumedYet(jobId);
    // In one synchronous step: the reader joins the feed, and the events emitted before it joined are noted as
    // through `emittedThrough`; those the log has not written yet are copied now, the rest are in the store.
    const subscriber = live ? this.feed.subscribe(jobId) : undefined;
    const emittedThrough = live ? live.nextSequence - 1 : Infinity;
    const unstored = live ? this.jobLog.unstored(jobId, emittedThrough) : [];
    const storedThrough = unstored.length > 0 ? unstored[0]!.sequence - 1 : emittedThrough;
    const onAbort = () => subscriber?.close();
    signal.addEventListener('abort', onAbort);
    try {
      let last = afterSequence;
      const pageSize = 500;
      while (last < storedThrough) {
        const limit = Math.min(pageSize, storedThrough - last);
        const page = await this.store.events(jobId, last, limit);
        for (const stored of page) {
          const event = decodeEvent(stored.payload);
          last = event.sequence;
          yield event;
          if (event.kind.case === 'result') return;
          if (signal.aborted) return;
        }
        if (page.length < limit) break;
      }
      for (const pending of unstored) {
        if (pending.sequence <= last) continue;
        const event = decodeEvent(pending.payload);
        last = event.sequence;
        yield event;
        if (event.kind.case === 'result') return;
      }
      if (!subscriber) return; // a finished job: its history is complete
      for await (const event of subscriber) {
        if (event.sequence <= last) continue;
        last = event.sequence;
        yield event;
        if (event.kind.case === 'result') return;
      }
      // The subscriber closed without the result: the server is shutting down (the job resumes after a restart).
      if (!signal.aborted) {
        throw new ConnectError(`the server is shutting down; watch job "${jobId}" again after sequence ${last}`,
          Code.Unavailable);
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      if (subscriber) this.feed.unsubscribe(jobId, subscriber);
    }
  }

  /** Return a job's summary: state, latest progress and, once finished, its result. */
  async getJob(clientId: string, jobId: string, admin = false): Promise<Job> {
    await this.jobLog.flush();
    return this.toJob(await this.ownedJob(clientId, jobId, admin));
  }

  /** List a client's jobs, newest first; every client's with `allClients`, which only an admin may ask. */
  async listJobs(clientId: string, pageSize: number, beforeJobId: string,
    options: { allClients?: boolean; admin?: boolean } = {}): Promise<Job[]> {
    await this.jobLog.flush();
    const limit = pageSize || 50;
    const page = beforeJobId ? { limit, beforeId: beforeJobId } : { limit };
    if (options.allClients) {
      if (!options.admin) {
        throw new ConnectError(`all_clients: client "${clientId}" is not an admin; only clients marked admin in the ` +
          'tokens file may list every client\'s jobs', Code.PermissionDenied);
      }
      if (beforeJobId && !await this.store.getJob(beforeJobId)) {
        throw new ConnectError(`before_job_id: no job "${beforeJobId}"`, Code.NotFound);
      }
      return Promise.all((await this.store.listAllJobs(page)).map((r) => this.toJob(r)));
    }
    if (beforeJobId) {
      const cursor = await this.store.getJob(beforeJobId);
      // The store refuses a cursor that is not the client's; say so as for any job the client cannot see.
      if (!cursor || cursor.clientId !== clientId) {
        throw new ConnectError(`before_job_id: no job "${beforeJobId}" for this client`, Code.NotFound);
      }
    }
    return Promise.all((await this.store.listJobs(clientId, page)).map((r) => this.toJob(r)));
  }

  /**
   * Call `listener` for every job created and every event a job emits (the dashboard's live job list, the data
   * sets); returns the function that removes it.
   */
  onJobChange(listener: (change: JobChange) => void): () => void {
    return this.feed.onJobChange(listener);
  }

  /** Ask a job to stop (an admin: any client's job); returns its state now. */
  async cancel(clientId: string, jobId: string, admin = false): Promise<JobState> {
    const record = await this.ownedJob(clientId, jobId, admin);
    const live = this.live.get(jobId);
    if (!live) {
      if (record.state === 'FINISHED') return JobState.FINISHED;
      // Not resumed yet after a restart: the stored flag makes the resume stop it.
      try {
        await this.store.requestCancel(jobId);
      } catch (error: unknown) {
        if (!isStoreFault(error)) throw error;
        this.jobLog.failed(error, 'record a cancel');
        throw storeUnavailable(this.jobLog.fault!);
      }
      this.log.info({ jobId, clientId }, 'job cancel requested before its resume');
      return record.state === 'RUNNING' ? JobState.RUNNING : JobState.QUEUED;
    }
    // The live job stops at once; the flag only matters to a resume, and its result is stored later.
    live.handle?.cancel();
    try {
      await this.store.requestCancel(jobId);
    } catch (error: unknown) {
      if (!isStoreFault(error)) throw error;
      this.jobLog.failed(error, 'record a cancel');
    }
    this.log.info({ jobId, clientId }, 'job cancel requested');
    return live.record.state === 'RUNNING' ? JobState.RUNNING : JobState.QUEUED;
  }

  /**
   * Resume every job the store holds as unfinished (after a crash or a restart): from its latest checkpoint, with
   * the events stored after that checkpoint removed, so the history continues without gap or duplicate.
   */
  async resumeUnfinished(): Promise<number> {
    await this.registry.ready();
    let records: JobRecord[];
    try {
      records = await this.store.unfinishedJobs();
    } catch (error: unknown) {
      if (!isStoreFault(error)) throw error;
      this.jobLog.failed(error, 'list unfinished jobs');
      this.resumeAllLater = true;
      return 0;
    }
    return this.resumeRecords(records);
  }

  // Resume each job. A store fault is transient: the job stays unfinished and is tried again once the store
  // writes; any other failure is the job's own, and ends it FAILED with the reason.
  private async resumeRecords(records: JobRecord[]): Promise<number> {
    let resumed = 0;
    for (const [i, record] of records.entries()) {
      if (this.closed) break;
      // Submitted after the listing was taken (the model became ready first): it runs already.
      if (this.live.has(record.id)) continue;
      if (this.jobLog.fault) {
        this.resumeLater.push(...records.slice(i));
        break;
      }
      try {
        if (await this.resume(record)) resumed++;
      } catch (error: unknown) {
        this.live.delete(record.id);
        if (isStoreFault(error)) {
          this.jobLog.failed(error, 'resume a job');
          this.resumeLater.push(...records.slice(i));
          break;
        }
        const reason = error instanceof Error ? error.message : String(error);
        this.log.error({ jobId: record.id, err: error }, 'job could not be resumed');
        try {
          await this.failStored(record, `the job could not be resumed: ${reason}`);
        } catch (storeError: unknown) {
          if (!isStoreFault(storeError)) throw storeError;
          this.jobLog.failed(storeError, 'fail a job');
          this.resumeLater.push(...records.slice(i));
          break;
        }
      }
    }
    return resumed;
  }

  /**
   * Stop accepting jobs and checkpoint every running one, so a restart resumes them. Queued jobs need no checkpoint:
   * they start afresh from their seed. The engines are stopped by the model registry's close, which skips the
   * result summaries of the jobs it stops (they resume after the restart).
   */
  async shutdown(): Promise<void> {
    this.accepting = false;
    let checkpointed = 0;
    try {
      await this.jobLog.close(() => {
        const checkpoints = [...this.live.values()].filter((live) => live.record.state === 'RUNNING')
          .map((live) => this.checkpointOf(live)).filter((c) => c !== undefined);
        checkpointed = checkpoints.length;
        // A clean stop: no resume failed, whatever ran from a checkpoint since the start.
        return { checkpoints, clearResumeMarks: true };
      });
    } catch (error: unknown) {
      // The jobs resume from their last stored checkpoint instead.
      checkpointed = 0;
      this.log.error({ err: error }, 'jobs could not be checkpointed for shutdown');
    }
    // From here on the store is left as it is: the engines stop, and their last events are not written.
    this.closed = true;
    this.feed.closeAll();
    this.log.info({ jobs: this.live.size, checkpointed }, 'jobs checkpointed for shutdown');
  }

  /** Resume one job; false when it was quarantined instead. */
  private async resume(record: JobRecord): Promise<boolean> {
    const checkpoint = await this.store.latestCheckpoint(record.id);
    const keep = checkpoint?.sequence ?? 0;
    // It ran from this same checkpoint after the last restart, and the server stopped before a new one or a clean
    // shutdown: whatever stops the server may be this job. Resuming it again could loop forever.
    if (await this.store.resumeMark(record.id) === keep) {
      const reason = `quarantined: the server stopped while this job was running from its checkpoint at event ${keep} ` +
        'after a restart, and again with no newer checkpoint; it is not resumed again';
      this.log.error({ jobId: record.id, clientId: record.clientId, checkpoint: keep }, 'job quarantined');
      await this.failStored(record, reason);
      return false;
    }
    const entry = this.registry.require(record.model);
    const spec = fromBinary(JobSpecSchema, record.spec);
    const settings = this.storedSettings(spec);
    await this.store.truncateEventsAfter(record.id, keep);
    const snapshots: Map<number, RunSnapshot> = checkpoint ? decodeSnapshots(checkpoint.payload) : new Map();
    const completed = new Map<number, RunResult>();
    for (const stored of await this.store.events(record.id, 0)) {
      const event = decodeEvent(stored.payload);
      if (event.kind.case === 'restartResult') completed.set(event.kind.value.restart, restartResultFromProto(event.kind.value));
    }
    const resumedFrom = new Map([...snapshots].map(([restart, s]) => [restart, s.iteration]));
    const cost = jobBytes(settings, record.targetIds.length, entry.model.checkpoint.config);
    const live = this.addLive({ ...record, lastSequence: keep }, keep + 1, resumedFrom, keep > 0, cost);
    live.resumedAtCheckpoint = keep;
    live.handle = await entry.engine.submit({
      targetIds: record.targetIds, settings, resumeFrom: snapshots, completed, client: record.clientId,
      onEvent: (event) => this.onEvent(live, event),
    });
    // Read the flag now: a cancel may have arrived while the engine was setting the job up.
    if ((await this.store.getJob(record.id))?.cancelRequested) live.handle.cancel();
    this.log.info({ jobId: record.id, fromSequence: keep, restarts: [...resumedFrom] }, 'job resumed');
    return true;
  }

  private addLive(record: JobRecord, nextSequence: number, resumedFrom: Map<number, number>, suppressQueued: boolean,
    cost: number): LiveJob {
    const live: LiveJob = { record, cost, nextSequence, iterationsSinceCheckpoint: 0, resumedFrom, suppressQueued };
    this.live.set(record.id, live);
    return live;
  }

  private useOf(clientId: string): { jobs: number; bytes: number } {
    let jobs = 0;
    let bytes = 0;
    for (const live of this.live.values()) {
      if (live.record.clientId !== clientId) continue;
      jobs++;
      bytes += live.cost;
    }
    return { jobs, bytes };
  }

  // The boundary of one job's events: a failure to record one is logged with the job's id and, for the result,
  // still ends the job (FAILED) rather than leaving it live forever.
  private onEvent(live: LiveJob, event: InversionEvent): void {
    try {
      this.recordEvent(live, event);
    } catch (error: unknown) {
      this.log.error({ jobId: live.record.id, event: event.type, err: error }, 'job event could not be recorded');
      if (event.type === 'result' && this.live.get(live.record.id) === live) {
        const reason = `its result could not be recorded: ${error instanceof Error ? error.message : String(error)}`;
        this.recordEvent(live, { type: 'result', result: { ...event.result, status: 'FAILED',
          restarts: event.result.restarts.map((r) => ({ ...r, status: 'FAILED' as const, error: reason,
            embedding: { shape: [0, 0] as [number, number], values: new Float32Array(0) }, decodedIds: [],
            decodedText: '', nearestTokens: [] })) } });
      }
    }
  }

  private recordEvent(live: LiveJob, event: InversionEvent): void {
    if (this.closed || (event.type === 'queued' && live.suppressQueued)) return;
    const now = Date.now();
    const jobId = live.record.id;
    const resumedFrom = event.type === 'started' ? live.resumedFrom.get(event.restart) ?? 0 : 0;
    const proto = eventToProto(event, live.nextSequence++, now, resumedFrom);
    const kind = proto.kind.case!;
    const payload = encodeEvent(proto);
    this.jobLog.append({
      jobId,
      sequence: proto.sequence,
      timeMs: now,
      kind: eventKinds[kind],
      restart: event.type === 'progress' ? event.progress.restart : event.type === 'started' ? event.restart
        : event.type === 'restart_result' ? event.result.restart : null,
      iteration: event.type === 'progress' ? event.progress.iteration : null,
      payload,
    });
    if (event.type === 'started' && live.resumedAtCheckpoint !== undefined) {
      this.jobLog.setResumeMark(jobId, live.resumedAtCheckpoint);
      live.resumedAtCheckpoint = undefined;
    }
    if (event.type === 'started' && live.record.state === 'QUEUED') {
      live.record.state = 'RUNNING';
      this.jobLog.setState({ jobId, state: 'RUNNING' });
    } else if (event.type === 'progress') {
      live.iterationsSinceCheckpoint++;
      if (proto.kind.case === 'progress') this.jobLog.setSummary(jobId, proto.kind.value);
    } else if (event.type === 'result') {
      live.record.state = 'FINISHED';
      live.record.status = event.result.status;
      live.record.finishedAtMs = now;
      this.jobLog.setState({ jobId, state: 'FINISHED', status: event.result.status, finishedAtMs: now });
      this.live.delete(jobId);
      this.options.onJobFinished?.(live.record.model, event.result.status);
      this.log.info({ jobId, status: event.result.status, ms: Math.round(event.result.elapsedMs) }, 'job finished');
      const errors = event.result.restarts.flatMap((r) => (r.error ? [`restart ${r.restart}: ${r.error}`] : []));
      if (errors.length > 0) {
        this.log.warn({ jobId, clientId: live.record.clientId, errors }, 'job restarts failed');
      }
    }
    // Live readers get the event as the store keeps it (float fields rounded to float32), so a replayed history
    // and a live one are the same bytes.
    if (this.feed.hasReaders(jobId)) this.feed.publish(jobId, decodeEvent(payload));
    this.feed.announce({ clientId: live.record.clientId, jobId, kind: eventKinds[kind] });
  }

  private storeRecovered(): void {
    if (this.resumeLater.length === 0 && !this.resumeAllLater) return;
    const records = this.resumeLater;
    const all = this.resumeAllLater;
    this.resumeLater = [];
    this.resumeAllLater = false;
    void (all ? this.resumeUnfinished() : this.resumeRecords(records)).then((resumed) => {
      if (resumed > 0) this.log.info({ resumed }, 'unfinished jobs resumed');
    }, (error: unknown) => this.log.error({ err: error }, 'resuming jobs failed'));
  }

  // Called by the job log as it cuts a batch: the snapshots describe the moment of its last event.
  private dueCheckpoints(): CheckpointRecord[] {
    const due: CheckpointRecord[] = [];
    for (const live of this.live.values()) {
      if (live.iterationsSinceCheckpoint < this.options.checkpointEvery) continue;
      const checkpoint = this.checkpointOf(live);
      if (checkpoint) due.push(checkpoint);
    }
    return due;
  }

  private checkpointOf(live: LiveJob): CheckpointRecord | undefined {
    if (!live.handle) return undefined;
    live.iterationsSinceCheckpoint = 0;
    return {
      jobId: live.record.id,
      sequence: live.nextSequence - 1,
      timeMs: Date.now(),
      payload: encodeSnapshots(live.handle.snapshots()),
    };
  }

  // A job that cannot be resumed still ends its history with a result, so WatchJob and GetJob say why.
  private async failStored(record: JobRecord, reason: string): Promise<void> {
    const now = Date.now();
    this.live.delete(record.id);
    const stored = await this.store.getJob(record.id) ?? record;
    const result = create(ResultSchema, {
      status: Status.FAILED,
      restarts: [{ status: Status.FAILED, error: reason }],
      targetIds: stored.targetIds,
      targetText: stored.targetText,
      model: stored.model,
    });
    const event = create(JobEventSchema, {
      sequence: stored.lastSequence + 1, time: timestampFromMs(now), kind: { case: 'result', value: result },
    });
    // The sequence check makes this safe against a concurrent writer: one of the two is refused, not interleaved.
    await this.store.commit({
      events: [{ jobId: record.id, sequence: event.sequence, timeMs: now, kind: 'result', restart: null, iteration: null,
        payload: encodeEvent(event) }],
      states: [{ jobId: record.id, state: 'FINISHED', status: 'FAILED', finishedAtMs: now }],
    });
    this.log.warn({ jobId: record.id, reason }, 'job marked FAILED');
  }

  private async ownedJob(clientId: string, jobId: string, admin = false): Promise<JobRecord> {
    const record = this.live.get(jobId)?.record ?? await this.store.getJob(jobId);
    // Another client's job is reported as missing: its existence is not this client's business (an admin's it is).
    if (!record || (record.clientId !== clientId && !admin)) throw new ConnectError(`job_id: no job "${jobId}" for this client`, Code.NotFound);
    return record;
  }

  private async toJob(record: JobRecord): Promise<Job> {
    const stored = await this.store.getJob(record.id) ?? record;
    const spec = fromBinary(JobSpecSchema, stored.spec);
    let result;
    if (stored.state === 'FINISHED' && stored.lastSequence > 0) {
      const last = (await this.store.events(stored.id, stored.lastSequence - 1, 1))[0];
      const event = last ? decodeEvent(last.payload) : undefined;
      if (event?.kind.case === 'result') result = event.kind.value;
    }
    return create(JobSchema, {
      jobId: stored.id,
      client: stored.clientId,
      state: { QUEUED: JobState.QUEUED, RUNNING: JobState.RUNNING, FINISHED: JobState.FINISHED }[stored.state],
      model: stored.model,
      label: stored.label,
      targetText: stored.targetText,
      targetIds: stored.targetIds,
      settings: settingsToProto(this.storedSettings(spec)),
      createdAt: timestampFromMs(stored.createdAtMs),
      ...(stored.finishedAtMs !== null ? { finishedAt: timestampFromMs(stored.finishedAtMs) } : {}),
      ...(stored.summary ? { lastProgress: fromBinary(ProgressSchema, stored.summary) } : {}),
      ...(result ? { result } : {}),
    });
  }

  private targetIdsOf(spec: JobSpec, encode: (text: string) => number[], vocabSize: number): number[] {
    if (spec.target.case === 'text') return encode(spec.target.value);
    const ids = spec.target.value?.ids ?? [];
    ids.forEach((id, i) => {
      const problem = tokenIdProblem(id, vocabSize);
      if (problem) throw new ConnectError(`spec.target_ids.ids[${i}]: ${problem}`, Code.InvalidArgument);
    });
    return [...ids];
  }

  /** A new job's settings, checked once, here, against the server's limits. */
  private checkSettings(spec: JobSpec) {
    try {
      return makeInversionSettings(settingsFromProto(spec.settings), this.options.limits);
    } catch (error: unknown) {
      throw toConnectError(error);
    }
  }

  /**
   * A stored job's settings, as they were accepted: not checked against the limits in force now, which may be
   * tighter than those it was accepted under (a restart with new limits must not fail ListJobs or the resume).
   */
  private storedSettings(spec: JobSpec) {
    return storedInversionSettings(settingsFromProto(spec.settings));
  }
}

function storeUnavailable(fault: StoreFault): ConnectError {
  return new ConnectError(`the job store cannot be written (${fault.message}) since ` +
    `${new Date(fault.sinceMs).toISOString()}; new jobs are refused until it can; retry later`, Code.Unavailable);
}

function notResumedYet(jobId: string): ConnectError {
  return new ConnectError(`job_id: job "${jobId}" has not resumed yet after a server restart (its model may be ` +
    'loading); retry shortly', Code.Unavailable);
}
