// The job hub: every job goes request → validation → store → engine → events → store + subscribers.
// It numbers each job's events (1, 2, 3, … without gaps), writes them to the store in one transaction per engine
// round together with checkpoints, fans them out to live subscribers, and after a restart resumes unfinished jobs
// from their last checkpoint so that a job's history stays one contiguous sequence.
import { randomUUID } from 'node:crypto';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import type { Logger } from 'pino';
import type { InversionEvent, RunResult } from '../engine/events.js';
import type { InversionHandle } from '../engine/inversion-engine.js';
import type { RunSnapshot } from '../engine/inversion-run.js';
import type { InversionLimits } from '../engine/settings.js';
import { inversionLimits, makeInversionSettings, SettingsError } from '../engine/settings.js';
import type { EventRecord, JobRecord, JobStore } from '../store/job-store.js';
import {
  JobEventSchema, JobSchema, JobSpecSchema, JobState, ProgressSchema, ResultSchema, Status,
} from '../../sdk/gen/recite/v1/recite_pb.js';
import type { Job, JobEvent, JobSpec, Progress } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { ClientLimits } from './client-policy.js';
import type { ModelRegistry } from './model-registry.js';
import { formatBytes, jobBytes } from '../engine/run-cost.js';
import {
  decodeEvent, decodeSnapshots, encodeEvent, encodeSnapshots, eventToProto, restartResultFromProto, settingsFromProto,
  settingsToProto,
} from './proto-convert.js';
import { EventSubscriber } from './event-subscriber.js';
import { settingsFieldPath } from './validation.js';

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
}

export const jobHubDefaults: Readonly<JobHubOptions> = Object.freeze({
  maxQueue: 1000,
  maxQueuedBytes: 2 ** 30, // 1 GiB: about 220 jobs of 1 restart on gpt2 with P = 256 (4.5 MiB each)
  checkpointEvery: 50,
  subscriberBuffer: 256,
  limits: inversionLimits,
});

/** A job the engine is working on. */
interface LiveJob {
  record: JobRecord;
  /** Bytes its restarts hold while they run (jobBytes): counted against its client's queued-cost limit. */
  cost: number;
  handle?: InversionHandle;
  nextSequence: number;
  subscribers: Set<EventSubscriber>;
  iterationsSinceCheckpoint: number;
  /** Restart → iteration it resumed from (for the started event after a server restart). */
  resumedFrom: Map<number, number>;
  suppressQueued: boolean;
}

const eventKinds = { queued: 'queued', started: 'started', progress: 'progress', restartResult: 'restart_result', result: 'result' } as const;

/** A change to a job that a live job list shows: the job was created, or it emitted an event of this kind. */
export interface JobChange {
  clientId: string;
  jobId: string;
  kind: 'created' | (typeof eventKinds)[keyof typeof eventKinds];
}

export class JobHub {
  private readonly live = new Map<string, LiveJob>();
  private pendingEvents: EventRecord[] = [];
  private readonly pendingSummaries = new Map<string, Progress>();
  private readonly pendingStates = new Map<string, { state: JobRecord['state']; status?: string; finishedAtMs?: number }>();
  private readonly changeListeners = new Set<(change: JobChange) => void>();
  private flushScheduled = false;
  private accepting = true;
  private closed = false;
  readonly options: JobHubOptions;

  constructor(private readonly store: JobStore, private readonly registry: ModelRegistry, options: Partial<JobHubOptions>,
    private readonly log: Logger) {
    this.options = { ...jobHubDefaults, ...options };
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
  clientUse(clientId: string): { jobs: number; bytes: number } {
    let jobs = 0;
    let bytes = 0;
    for (const live of this.live.values()) {
      if (live.record.clientId !== clientId) continue;
      jobs++;
      bytes += live.cost;
    }
    return { jobs, bytes };
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
    const limits = this.limitsOf(clientId);
    const use = this.clientUse(clientId);
    if (use.jobs >= limits.maxJobs) {
      throw new ConnectError(`queue is full for client "${clientId}": ${use.jobs} jobs are queued or running; the ` +
        `limit is ${limits.maxJobs}`, Code.ResourceExhausted);
    }
    const entry = this.registry.require(spec.model, 'spec.model');
    const targetIds = this.targetIdsOf(spec, entry.model.tokenizer.encode, entry.model.checkpoint.config.vocabSize);
    const settings = this.checkSettings(spec);
    const cost = jobBytes(settings, targetIds.length, entry.model.checkpoint.config);
    if (use.bytes + cost > limits.maxQueuedBytes) {
      throw new ConnectError(`queued cost over the limit for client "${clientId}": its unfinished jobs hold ` +
        `${formatBytes(use.bytes)} and this job would add ${formatBytes(cost)} (${settings.restarts} restarts); the ` +
        `limit is ${formatBytes(limits.maxQueuedBytes)}`, Code.ResourceExhausted);
    }
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
    const { lastSequence: _l, summary: _s, ...insertable } = record;
    this.store.insertJob(insertable);
    const live = this.addLive(record, 1, new Map(), false, cost);
    const queuePosition = entry.engine.queued;
    try {
      live.handle = await entry.engine.submit({ targetIds, settings, client: clientId,
        onEvent: (event) => this.onEvent(live, event) });
    } catch (error: unknown) {
      this.live.delete(record.id);
      this.store.deleteJob(record.id);
      throw toConnectError(error);
    }
    this.log.info({ jobId: record.id, clientId, model: entry.name, tokens: targetIds.length }, 'job submitted');
    this.notifyChange({ clientId, jobId: record.id, kind: 'created' });
    return { jobId: record.id, queuePosition };
  }

  /**
   * Stream a job's events after `afterSequence`: the stored history first, then live events until the result.
   * A slow reader gets coalesced progress (see EventSubscriber); the result always arrives.
   */
  async *watch(clientId: string, jobId: string, afterSequence: number, signal: AbortSignal): AsyncGenerator<JobEvent> {
    this.ownedJob(clientId, jobId);
    this.flush(); // events emitted but not yet stored are in neither the store nor a new subscriber's queue
    const live = this.live.get(jobId);
    // Unfinished but not live: stored before a restart and not resumed yet. Its events after the last checkpoint
    // are about to be replaced, so replaying them now would hand out a history that will not exist.
    if (!live && this.store.getJob(jobId)?.state !== 'FINISHED') throw notResumedYet(jobId);
    const subscriber = new EventSubscriber(this.options.subscriberBuffer);
    live?.subscribers.add(subscriber);
    // The store holds everything before the subscriber's first event: replay only that much, so no event reaches
    // the reader twice and a coalesced count never includes a report the replay already delivered.
    const storedThrough = live ? live.nextSequence - 1 : Infinity;
    const onAbort = () => subscriber.close();
    signal.addEventListener('abort', onAbort);
    try {
      let last = afterSequence;
      const pageSize = 500;
      while (last < storedThrough) {
        const limit = Math.min(pageSize, storedThrough - last);
        const page = this.store.events(jobId, last, limit);
        for (const stored of page) {
          const event = decodeEvent(stored.payload);
          last = event.sequence;
          yield event;
          if (event.kind.case === 'result') return;
          if (signal.aborted) return;
        }
        if (page.length < limit) break;
      }
      if (!live) return; // a finished job: its history is complete
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
      live?.subscribers.delete(subscriber);
    }
  }

  /** Return a job's summary: state, latest progress and, once finished, its result. */
  getJob(clientId: string, jobId: string, admin = false): Job {
    this.flush();
    return this.toJob(this.ownedJob(clientId, jobId, admin));
  }

  /** List a client's jobs, newest first; every client's with `allClients`, which only an admin may ask. */
  listJobs(clientId: string, pageSize: number, beforeJobId: string, options: { allClients?: boolean; admin?: boolean } = {}): Job[] {
    this.flush();
    const limit = pageSize || 50;
    if (options.allClients) {
      if (!options.admin) {
        throw new ConnectError(`all_clients: client "${clientId}" is not an admin; only clients marked admin in the ` +
          'tokens file may list every client\'s jobs', Code.PermissionDenied);
      }
      if (beforeJobId && !this.store.getJob(beforeJobId)) {
        throw new ConnectError(`before_job_id: no job "${beforeJobId}"`, Code.NotFound);
      }
      return this.store.listAllJobs({ limit, ...(beforeJobId ? { beforeId: beforeJobId } : {}) }).map((r) => this.toJob(r));
    }
    if (beforeJobId) {
      const cursor = this.store.getJob(beforeJobId);
      // The store refuses a cursor that is not the client's; say so as for any job the client cannot see.
      if (!cursor || cursor.clientId !== clientId) {
        throw new ConnectError(`before_job_id: no job "${beforeJobId}" for this client`, Code.NotFound);
      }
    }
    return this.store.listJobs(clientId, { limit, ...(beforeJobId ? { beforeId: beforeJobId } : {}) }).map((r) => this.toJob(r));
  }

  /**
   * Call `listener` for every job created and every event a job emits (the dashboard's live job list); returns
   * the function that removes it.
   */
  onJobChange(listener: (change: JobChange) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /** Ask a job to stop (an admin: any client's job); returns its state now. */
  cancel(clientId: string, jobId: string, admin = false): JobState {
    const record = this.ownedJob(clientId, jobId, admin);
    const live = this.live.get(jobId);
    if (!live) {
      this.flush();
      const stored = this.store.getJob(jobId)!;
      if (stored.state === 'FINISHED') return JobState.FINISHED;
      // Not resumed yet after a restart: the stored flag makes the resume stop it.
      this.store.requestCancel(jobId);
      this.log.info({ jobId, clientId }, 'job cancel requested before its resume');
      return stored.state === 'RUNNING' ? JobState.RUNNING : JobState.QUEUED;
    }
    this.store.requestCancel(jobId);
    live.handle?.cancel();
    this.log.info({ jobId, clientId }, 'job cancel requested');
    return record.state === 'RUNNING' ? JobState.RUNNING : JobState.QUEUED;
  }

  /**
   * Resume every job the store holds as unfinished (after a crash or a restart): from its latest checkpoint, with
   * the events stored after that checkpoint removed, so the history continues without gap or duplicate.
   */
  async resumeUnfinished(): Promise<number> {
    await this.registry.ready();
    let resumed = 0;
    for (const record of this.store.unfinishedJobs()) {
      try {
        await this.resume(record);
        resumed++;
      } catch (error: unknown) {
        this.log.error({ jobId: record.id, err: error }, 'job could not be resumed');
        this.failStored(record, error instanceof Error ? error.message : String(error));
      }
    }
    return resumed;
  }

  /** Stop accepting jobs and checkpoint every running one, so a restart resumes them. */
  shutdown(): void {
    this.accepting = false;
    this.flush();
    this.store.transaction(() => {
      for (const live of this.live.values()) this.checkpoint(live);
    });
    // From here on the store is left as it is: the engines stop, and their last events are not written.
    this.closed = true;
    for (const live of this.live.values()) {
      for (const s of live.subscribers) s.close();
      live.handle?.cancel();
    }
    this.log.info({ jobs: this.live.size }, 'jobs checkpointed for shutdown');
  }

  private async resume(record: JobRecord): Promise<void> {
    const entry = this.registry.require(record.model);
    const spec = fromBinary(JobSpecSchema, record.spec);
    const settings = this.checkSettings(spec);
    const checkpoint = this.store.latestCheckpoint(record.id);
    const keep = checkpoint?.sequence ?? 0;
    this.store.truncateEventsAfter(record.id, keep);
    const snapshots: Map<number, RunSnapshot> = checkpoint ? decodeSnapshots(checkpoint.payload) : new Map();
    const completed = new Map<number, RunResult>();
    for (const stored of this.store.events(record.id, 0)) {
      const event = decodeEvent(stored.payload);
      if (event.kind.case === 'restartResult') completed.set(event.kind.value.restart, restartResultFromProto(event.kind.value));
    }
    const resumedFrom = new Map([...snapshots].map(([restart, s]) => [restart, s.iteration]));
    const cost = jobBytes(settings, record.targetIds.length, entry.model.checkpoint.config);
    const live = this.addLive({ ...record, lastSequence: keep }, keep + 1, resumedFrom, keep > 0, cost);
    live.handle = await entry.engine.submit({
      targetIds: record.targetIds, settings, resumeFrom: snapshots, completed, client: record.clientId,
      onEvent: (event) => this.onEvent(live, event),
    });
    // Read the flag now: a cancel may have arrived while the engine was setting the job up.
    if (this.store.getJob(record.id)?.cancelRequested) live.handle.cancel();
    this.log.info({ jobId: record.id, fromSequence: keep, restarts: [...resumedFrom] }, 'job resumed');
  }

  private addLive(record: JobRecord, nextSequence: number, resumedFrom: Map<number, number>, suppressQueued: boolean,
    cost: number): LiveJob {
    const live: LiveJob = {
      record, cost, nextSequence, subscribers: new Set(), iterationsSinceCheckpoint: 0, resumedFrom, suppressQueued,
    };
    this.live.set(record.id, live);
    return live;
  }

  private onEvent(live: LiveJob, event: InversionEvent): void {
    if (this.closed || (event.type === 'queued' && live.suppressQueued)) return;
    const now = Date.now();
    const resumedFrom = event.type === 'started' ? live.resumedFrom.get(event.restart) ?? 0 : 0;
    const proto = eventToProto(event, live.nextSequence++, now, resumedFrom);
    const kind = proto.kind.case!;
    const payload = encodeEvent(proto);
    this.pendingEvents.push({
      jobId: live.record.id,
      sequence: proto.sequence,
      timeMs: now,
      kind: eventKinds[kind],
      restart: event.type === 'progress' ? event.progress.restart : event.type === 'started' ? event.restart
        : event.type === 'restart_result' ? event.result.restart : null,
      iteration: event.type === 'progress' ? event.progress.iteration : null,
      payload,
    });
    if (event.type === 'started' && live.record.state === 'QUEUED') {
      live.record.state = 'RUNNING';
      this.pendingStates.set(live.record.id, { state: 'RUNNING' });
    } else if (event.type === 'progress') {
      live.iterationsSinceCheckpoint++;
      if (proto.kind.case === 'progress') this.pendingSummaries.set(live.record.id, proto.kind.value);
    } else if (event.type === 'result') {
      live.record.state = 'FINISHED';
      live.record.status = event.result.status;
      live.record.finishedAtMs = now;
      this.pendingStates.set(live.record.id, { state: 'FINISHED', status: event.result.status, finishedAtMs: now });
      this.live.delete(live.record.id);
      this.options.onJobFinished?.(live.record.model, event.result.status);
      this.log.info({ jobId: live.record.id, status: event.result.status, ms: Math.round(event.result.elapsedMs) }, 'job finished');
    }
    // Live readers get the event as the store keeps it (float fields rounded to float32), so a replayed history
    // and a live one are the same bytes.
    if (live.subscribers.size > 0) {
      const stored = decodeEvent(payload);
      for (const subscriber of live.subscribers) subscriber.push(stored);
    }
    this.scheduleFlush();
    this.notifyChange({ clientId: live.record.clientId, jobId: live.record.id, kind: eventKinds[kind] });
  }

  private notifyChange(change: JobChange): void {
    for (const listener of this.changeListeners) {
      try {
        listener(change);
      } catch (error: unknown) {
        // A listener's bug must not stop the job that reported the change.
        this.log.error({ err: error, jobId: change.jobId }, 'job change listener failed');
      }
    }
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  /** Write the events, states, summaries and due checkpoints gathered since the last flush, atomically. */
  private flush(): void {
    this.flushScheduled = false;
    if (this.pendingEvents.length === 0 && this.pendingStates.size === 0) return;
    const events = this.pendingEvents;
    this.pendingEvents = [];
    this.store.transaction(() => {
      this.store.appendEvents(events);
      for (const [jobId, progress] of this.pendingSummaries) this.store.setSummary(jobId, toBinary(ProgressSchema, progress));
      for (const [jobId, s] of this.pendingStates) this.store.setState(jobId, s.state, s);
      for (const live of this.live.values()) {
        if (live.iterationsSinceCheckpoint >= this.options.checkpointEvery) this.checkpoint(live);
      }
    });
    this.pendingSummaries.clear();
    this.pendingStates.clear();
  }

  // Called inside a store transaction, after the job's emitted events are written: the snapshot and the event
  // history describe the same moment.
  private checkpoint(live: LiveJob): void {
    if (!live.handle) return;
    live.iterationsSinceCheckpoint = 0;
    this.store.saveCheckpoint({
      jobId: live.record.id,
      sequence: live.nextSequence - 1,
      timeMs: Date.now(),
      payload: encodeSnapshots(live.handle.snapshots()),
    });
  }

  // A job that cannot be resumed still ends its history with a result, so WatchJob and GetJob say why.
  private failStored(record: JobRecord, reason: string): void {
    const now = Date.now();
    this.store.transaction(() => {
      const stored = this.store.getJob(record.id) ?? record;
      const result = create(ResultSchema, {
        status: Status.FAILED,
        restarts: [{ status: Status.FAILED, error: `the job could not be resumed: ${reason}` }],
        targetIds: stored.targetIds,
        targetText: stored.targetText,
        model: stored.model,
      });
      const event = create(JobEventSchema, {
        sequence: stored.lastSequence + 1, time: timestampFromMs(now), kind: { case: 'result', value: result },
      });
      this.store.appendEvents([{ jobId: record.id, sequence: event.sequence, timeMs: now, kind: 'result', restart: null,
        iteration: null, payload: encodeEvent(event) }]);
      this.store.setState(record.id, 'FINISHED', { status: 'FAILED', finishedAtMs: now });
    });
    this.log.warn({ jobId: record.id, reason }, 'job marked FAILED');
  }

  private ownedJob(clientId: string, jobId: string, admin = false): JobRecord {
    const record = this.live.get(jobId)?.record ?? this.store.getJob(jobId);
    // Another client's job is reported as missing: its existence is not this client's business (an admin's it is).
    if (!record || (record.clientId !== clientId && !admin)) throw new ConnectError(`job_id: no job "${jobId}" for this client`, Code.NotFound);
    return record;
  }

  private toJob(record: JobRecord): Job {
    const stored = this.store.getJob(record.id) ?? record;
    const spec = fromBinary(JobSpecSchema, stored.spec);
    let result;
    if (stored.state === 'FINISHED' && stored.lastSequence > 0) {
      const last = this.store.events(stored.id, stored.lastSequence - 1, 1)[0];
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
      settings: settingsToProto(this.checkSettings(spec)),
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
      if (id >= vocabSize) {
        throw new ConnectError(`spec.target_ids.ids[${i}]: ${id} is outside the vocabulary 0..${vocabSize - 1}`,
          Code.InvalidArgument);
      }
    });
    return [...ids];
  }

  private checkSettings(spec: JobSpec) {
    try {
      return makeInversionSettings(settingsFromProto(spec.settings), this.options.limits);
    } catch (error: unknown) {
      throw toConnectError(error);
    }
  }
}

function notResumedYet(jobId: string): ConnectError {
  return new ConnectError(`job_id: job "${jobId}" has not resumed yet after a server restart (its model may be ` +
    'loading); retry shortly', Code.Unavailable);
}

/** Map engine errors onto API errors: settings out of range are the caller's to fix. */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof SettingsError) {
    return new ConnectError(`${settingsFieldPath(error.field)}: ${error.message.slice(error.field.length + 2)}`,
      Code.InvalidArgument);
  }
  return new ConnectError(error instanceof Error ? error.message : String(error), Code.Internal);
}

