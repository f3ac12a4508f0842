// The job hub: every job goes request → admission → store → engine → events → job log + job feed. The hub admits
// jobs (a client's quotas, counted in the store over every server sharing it), owns them (another client's job is
// reported missing), runs the jobs this server holds a lease on and numbers their events (1, 2, 3, … without gaps).
// Claiming is the scheduler's (job-scheduler.ts), writing the job log's (job-log.ts), fan-out the feed's (job-feed.ts).
//
// A job that moves (after a restart, or to another server when its holder died) continues from its last checkpoint
// and recomputes the iterations after it without showing them again: events the store already holds are not
// re-emitted, and the history goes on from its last stored event. The engine is deterministic for a given
// checkpoint (a run's values do not depend on the jobs batched with it), so the recomputed iterations are the ones
// already stored, and the history reads as one uninterrupted run.
import { randomUUID } from 'node:crypto';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import type { Logger } from 'pino';
import type { InversionEvent, RunResult } from '../engine/events.js';
import type { InversionHandle } from '../engine/inversion-engine.js';
import { checkJobFitsModel, inversionEngineDefaults } from '../engine/inversion-engine.js';
import type { RunSnapshot } from '../engine/inversion-run.js';
import type { InversionLimits } from '../engine/settings.js';
import { inversionLimits, makeInversionSettings, storedInversionSettings } from '../engine/settings.js';
import type {
  CheckpointRecord, ClaimedJob, EventRecord, JobRecord, JobRepository, StoreNotice,
} from '../store/job-repository.js';
import { isStoreFault, JobStoreError } from '../store/job-repository.js';
import { JobEventSchema, JobSchema, JobSpecSchema, JobState, ProgressSchema, ResultSchema, Status } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { Job, JobEvent, JobSpec } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { ClientLimits } from './client-policy.js';
import type { ModelRegistry } from './model-registry.js';
import { formatBytes, jobBytes } from '../engine/run-cost.js';
import {
  decodeEvent, decodeSnapshots, encodeEvent, encodeSnapshots, eventToProto, restartResultFromProto, settingsFromProto,
  settingsToProto,
} from './proto-convert.js';
import { JobError } from './job-errors.js';
import type {
  ClientQuotas, JobChange, JobChanges, JobQueries, JobStreams, JobSubmission, SettingsLimits,
} from './hub-ports.js';
import { JobFeed } from './job-feed.js';
import { JobLog } from './job-log.js';
import type { StoreFault } from './job-log.js';
import { JobScheduler } from './job-scheduler.js';

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
  /**
   * The engines' memory budget (InversionEngineOptions.memoryBudgetBytes): a job with one restart larger than it is
   * refused when submitted, here as on the server that would run it (a fleet's servers share one setting).
   */
  memoryBudgetBytes: number;
  /** Told of every finished job (metrics). */
  onJobFinished?: (model: string, status: string) => void;
  /** Wait between two attempts to write to a store that failed (disk full, I/O error), in ms. */
  storeRetryMs: number;
  /** This server's name as a lease owner: unique among the servers sharing the store. */
  serverId: string;
  /** Whether this server runs jobs ('worker', 'all') or only accepts and serves them ('api'). */
  runsJobs: boolean;
  /** See JobSchedulerOptions.exclusive: true for a SQLite file. */
  exclusiveStore: boolean;
  /** How long a lease holds a job without renewal, in ms. */
  leaseMs: number;
  /** Wait between two claims when nothing wakes the scheduler, in ms. */
  claimEveryMs: number;
  /** Jobs this server runs at once at most (claimed or submitted here); more wait in the store for any server. */
  maxHeldJobs: number;
  /** See JobLogOptions.batchEveryMs. */
  writeEveryMs: number;
  /** See JobLogOptions.probeEveryMs. */
  probeEveryMs: number;
}

export const jobHubDefaults: Readonly<JobHubOptions> = Object.freeze({
  maxQueue: 1000,
  maxQueuedBytes: 2 ** 30, // 1 GiB: about 220 jobs of 1 restart on gpt2 with P = 256 (4.5 MiB each)
  checkpointEvery: 50,
  subscriberBuffer: 256,
  limits: inversionLimits,
  memoryBudgetBytes: inversionEngineDefaults.memoryBudgetBytes,
  storeRetryMs: 1000, // ms
  serverId: 'recite',
  runsJobs: true,
  exclusiveStore: true,
  leaseMs: 10_000, // ms: a dead server's jobs move after at most this long
  claimEveryMs: 1000, // ms
  maxHeldJobs: Number.POSITIVE_INFINITY,
  writeEveryMs: 0, // ms
  probeEveryMs: 0, // ms
});

// Jobs one claim asks for at most (a store's claim is one statement: keep it bounded).
const maxClaim = 1000;

export type { StoreFault } from './job-log.js';

/** A job the engine is working on. */
interface LiveJob {
  record: JobRecord;
  /** Bytes its restarts hold while they run (jobBytes): counted against its client's queued-cost limit. */
  cost: number;
  handle?: InversionHandle;
  /** Its lease's epoch: every write for it is fenced by it. */
  epoch: number;
  nextSequence: number;
  iterationsSinceCheckpoint: number;
  /** What the store held when it started here: events it emits again are not shown twice. */
  stored: StoredProgress;
  /**
   * Restarts that started before this server took the job: their `started` event is shown again once, just before
   * the first iteration the history did not have, saying where the history continues (resumed_from_iteration).
   */
  resumedRestarts: Map<number, Extract<InversionEvent, { type: 'started' }>>;
  /** For a resumed job: the checkpoint sequence it resumed from (its resume mark once it starts running). */
  resumedAtCheckpoint?: number;
}

/** What a job's stored history already holds, per restart. */
interface StoredProgress {
  queued: boolean;
  started: Set<number>;
  /** Restart → the last iteration with a stored progress event. */
  progressThrough: Map<number, number>;
  restartResults: Set<number>;
}

const eventKinds = { queued: 'queued', started: 'started', progress: 'progress', restartResult: 'restart_result', result: 'result' } as const;

export type { JobChange } from './hub-ports.js';

export class JobHub implements JobSubmission, JobQueries, JobStreams, JobChanges, ClientQuotas, SettingsLimits {
  private readonly live = new Map<string, LiveJob>();
  private readonly jobLog: JobLog;
  private readonly feed: JobFeed;
  private readonly scheduler: JobScheduler | undefined;
  // Job id → wakers of the readers tailing its stored history (jobs this server does not run).
  private readonly tails = new Map<string, Set<() => void>>();
  private unlisten: (() => Promise<void>) | undefined;
  // Models of unfinished jobs in a store of this server's own that it may not serve (see claimableModels).
  private readonly orphanModels = new Set<string>();
  private accepting = true;
  private closed = false;
  private leasesLostCount = 0;
  readonly options: JobHubOptions;

  constructor(private readonly store: JobRepository, private readonly registry: ModelRegistry, options: Partial<JobHubOptions>,
    private readonly log: Logger) {
    this.options = { ...jobHubDefaults, ...options };
    this.feed = new JobFeed(this.options.subscriberBuffer,
      (error, change) => this.log.error({ err: error, jobId: change.jobId }, 'job change listener failed'));
    this.jobLog = new JobLog(store, {
      storeRetryMs: this.options.storeRetryMs, serverId: this.options.serverId, batchEveryMs: this.options.writeEveryMs,
      probeEveryMs: this.options.probeEveryMs,
    }, {
      dueCheckpoints: () => this.dueCheckpoints(),
      checkpointsLost: (jobIds) => {
        for (const jobId of jobIds) {
          const live = this.live.get(jobId);
          if (live) live.iterationsSinceCheckpoint = this.options.checkpointEvery;
        }
      },
      leasesLost: (jobIds) => this.leasesLost(jobIds),
      storeRecovered: () => this.scheduler?.wake(),
    }, log);
    if (this.options.runsJobs) {
      this.scheduler = new JobScheduler(store, {
        serverId: this.options.serverId, leaseMs: this.options.leaseMs, claimEveryMs: this.options.claimEveryMs,
        exclusive: this.options.exclusiveStore,
      }, {
        readyModels: () => this.claimableModels(),
        room: () => Math.min(maxClaim, this.options.maxHeldJobs - this.live.size),
        start: (claimed) => this.startClaimed(claimed),
        leases: () => this.jobLog.heldLeases(),
        storeFailed: (error, what) => this.jobLog.failed(error, what),
        leasesLost: (jobIds) => {
          this.jobLog.drop(jobIds);
          this.leasesLost(jobIds);
        },
      }, log);
    }
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
    return this.store.clientUse(clientId);
  }

  /** Every client with jobs running on this server, and what they hold (metrics). */
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
    if (!this.accepting) throw new JobError('unavailable', 'the server is shutting down; retry on another server or later');
    if (this.jobLog.fault) throw storeUnavailable(this.jobLog.fault);
    const limits = this.limitsOf(clientId);
    const entry = this.registry.require(spec.model, 'spec.model');
    const targetIds = spec.target.case === 'text' ? entry.tokenizer.encode(spec.target.value) : [...spec.target.value?.ids ?? []];
    const settings = this.checkSettings(spec);
    // Checked here as well as by the engine: the job may be stored for another server to run. (Token ids outside the
    // vocabulary are among what it refuses.)
    checkJobFitsModel(targetIds, settings, entry.config, this.options.memoryBudgetBytes);
    const cost = jobBytes(settings, targetIds.length, entry.config);
    const record: JobRecord = {
      id: randomUUID(),
      clientId,
      model: entry.name,
      label: spec.label,
      spec: toBinary(JobSpecSchema, spec),
      targetIds,
      targetText: entry.tokenizer.decode(targetIds),
      state: 'QUEUED',
      status: null,
      cancelRequested: false,
      createdAtMs: Date.now(),
      finishedAtMs: null,
      lastSequence: 0,
      summary: null,
    };
    // Run it here if this server runs jobs and has room; otherwise it waits in the store for any server's claim.
    const owner = this.options.runsJobs && this.live.size < this.options.maxHeldJobs ? this.options.serverId : null;
    const { lastSequence: _l, summary: _s, ...insertable } = record;
    let admitted;
    try {
      admitted = await this.store.admitJob(insertable, {
        owner, leaseMs: this.options.leaseMs, costBytes: cost, maxJobs: limits.maxJobs,
        maxQueuedBytes: limits.maxQueuedBytes,
      });
    } catch (error: unknown) {
      if (!isStoreFault(error)) throw error;
      this.jobLog.failed(error, 'insert a job');
      throw storeUnavailable(this.jobLog.fault!);
    }
    if (!admitted.admitted) {
      const { use } = admitted;
      if (admitted.reason === 'jobs') {
        throw new JobError('exhausted', `queue is full for client "${clientId}": ${use.jobs} jobs are queued or running; the ` +
          `limit is ${limits.maxJobs}`);
      }
      throw new JobError('exhausted', `queued cost over the limit for client "${clientId}": its unfinished jobs hold ` +
        `${formatBytes(use.bytes)} and this job would add ${formatBytes(cost)} (${settings.restarts} restarts); the ` +
        `limit is ${formatBytes(limits.maxQueuedBytes)}`);
    }
    if (owner === null) {
      this.log.info({ jobId: record.id, clientId, model: entry.name, tokens: targetIds.length }, 'job queued for any server');
      return { jobId: record.id, queuePosition: 0 };
    }
    const { engine } = this.registry.requireRunner(entry.name, 'spec.model');
    const live = this.addLive(record, admitted.epoch, emptyStoredProgress(), cost);
    const queuePosition = engine.queued;
    try {
      live.handle = await engine.submit({ targetIds, settings, client: clientId,
        onEvent: (event) => this.onEvent(live, event) });
    } catch (error: unknown) {
      this.forget(record.id);
      await this.store.deleteJob(record.id);
      throw error; // the engine's refusal (a SettingsError, say): mapped at the edge
    }
    this.log.info({ jobId: record.id, clientId, model: entry.name, tokens: targetIds.length }, 'job submitted');
    return { jobId: record.id, queuePosition };
  }

  /**
   * Stream a job's events after `afterSequence`: the stored history first, then live events until the result.
   * A slow reader gets coalesced progress (see EventSubscriber); the result always arrives.
   */
  async *watch(clientId: string, jobId: string, afterSequence: number, signal: AbortSignal): AsyncGenerator<JobEvent> {
    await this.ownedJob(clientId, jobId);
    const live = this.live.get(jobId);
    // A job this server does not run (queued for a claim, running on another server, or finished): its history is
    // the store's, followed through the store's notices.
    if (!live) {
      yield* this.tailStored(jobId, afterSequence, signal);
      return;
    }
    // In one synchronous step: the reader joins the feed, and the events emitted before it joined are noted as
    // through `emittedThrough`; those the log has not written yet are copied now, the rest are in the store.
    const subscriber = this.feed.subscribe(jobId);
    const emittedThrough = live.nextSequence - 1;
    const unstored = this.jobLog.unstored(jobId, emittedThrough);
    const storedThrough = unstored.length > 0 ? unstored[0]!.sequence - 1 : emittedThrough;
    const onAbort = () => subscriber.close();
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
      for await (const event of subscriber) {
        if (event.sequence <= last) continue;
        last = event.sequence;
        yield event;
        if (event.kind.case === 'result') return;
      }
      // The subscriber closed without the result: the server is shutting down, or the job moved to another server
      // (it continues there): either way its history goes on, in the store.
      if (signal.aborted) return;
      if (!this.closed) {
        yield* this.tailStored(jobId, last, signal);
        return;
      }
      throw new JobError('unavailable', `the server is shutting down; watch job "${jobId}" again after sequence ${last}`);
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.feed.unsubscribe(jobId, subscriber);
    }
  }

  /**
   * Stream a job's stored events after `afterSequence`, then each new one as the store announces it, until the
   * result. Reads at the reader's pace, so a slow reader holds no memory here.
   */
  private async *tailStored(jobId: string, afterSequence: number, signal: AbortSignal): AsyncGenerator<JobEvent> {
    let wake: (() => void) | undefined;
    let woken = false;
    const waker = () => {
      woken = true;
      wake?.();
    };
    // Joined before the first read: a notice that arrives between a read and the wait is not missed.
    let wakers = this.tails.get(jobId);
    if (!wakers) this.tails.set(jobId, wakers = new Set());
    wakers.add(waker);
    signal.addEventListener('abort', waker);
    try {
      let last = afterSequence;
      const pageSize = 500;
      for (;;) {
        woken = false;
        const page = await this.store.events(jobId, last, pageSize);
        for (const stored of page) {
          const event = decodeEvent(stored.payload);
          last = event.sequence;
          yield event;
          if (event.kind.case === 'result' || signal.aborted) return;
        }
        if (page.length === pageSize || woken) continue;
        if (signal.aborted) return;
        if (this.closed) {
          throw new JobError('unavailable', `the server is shutting down; watch job "${jobId}" again after sequence ${last}`);
        }
        // A notice normally wakes the reader; the timeout only bounds the wait should one be lost, or the job be
        // deleted meanwhile (which no notice announces): only then is the job looked up.
        await new Promise<void>((resolve) => {
          wake = resolve;
          if (woken) resolve();
          setTimeout(resolve, tailRecheckMs).unref();
        });
        wake = undefined;
        if (!woken && !await this.store.getJob(jobId)) {
          throw new JobError('not_found', `job_id: job "${jobId}" was deleted`);
        }
      }
    } finally {
      signal.removeEventListener('abort', waker);
      wakers.delete(waker);
      if (wakers.size === 0) this.tails.delete(jobId);
    }
  }

  /** Return a job's summary: state, latest progress and, once finished, its result. */
  async getJob(clientId: string, jobId: string, admin = false): Promise<Job> {
    await this.jobLog.flush();
    const owned = await this.ownedJob(clientId, jobId, admin);
    // A job running here is owned through its live record, whose listing summary is the store's to give.
    return this.toJob(this.live.has(jobId) ? await this.store.getJob(jobId) ?? owned : owned);
  }

  /** List a client's jobs, newest first; every client's with `allClients`, which only an admin may ask. */
  async listJobs(clientId: string, pageSize: number, beforeJobId: string,
    options: { allClients?: boolean; admin?: boolean } = {}): Promise<Job[]> {
    await this.jobLog.flush();
    const limit = pageSize || 50;
    const page = beforeJobId ? { limit, beforeId: beforeJobId } : { limit };
    if (options.allClients) {
      if (!options.admin) {
        throw new JobError('forbidden', `all_clients: client "${clientId}" is not an admin; only clients marked admin in the ` +
          'tokens file may list every client\'s jobs');
      }
      if (beforeJobId && !await this.store.getJob(beforeJobId)) {
        throw new JobError('not_found', `before_job_id: no job "${beforeJobId}"`);
      }
      return Promise.all((await this.store.listAllJobs(page)).map((r) => this.toJob(r)));
    }
    if (beforeJobId) {
      const cursor = await this.store.getJob(beforeJobId);
      // The store refuses a cursor that is not the client's; say so as for any job the client cannot see.
      if (!cursor || cursor.clientId !== clientId) {
        throw new JobError('not_found', `before_job_id: no job "${beforeJobId}" for this client`);
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
    if (record.state === 'FINISHED') return JobState.FINISHED;
    // The job stops at once if it runs here; the stored flag stops it on whichever server runs it (that server
    // hears the store's notice) and on any server that claims it later.
    this.live.get(jobId)?.handle?.cancel();
    try {
      await this.store.requestCancel(jobId);
    } catch (error: unknown) {
      if (!isStoreFault(error)) throw error;
      this.jobLog.failed(error, 'record a cancel');
      if (!this.live.has(jobId)) throw storeUnavailable(this.jobLog.fault!);
    }
    this.log.info({ jobId, clientId }, 'job cancel requested');
    return record.state === 'RUNNING' ? JobState.RUNNING : JobState.QUEUED;
  }

  /**
   * Delete a finished job with its events and checkpoint (an admin: any client's job). A queued or running job is
   * refused: its engine and its readers still hold it, so it is cancelled first.
   */
  async deleteJob(clientId: string, jobId: string, admin = false): Promise<void> {
    // A job that has just finished may have its result still waiting in the job log: write that first, so the
    // state checked is the stored one and no write of it follows the delete.
    await this.jobLog.flush();
    const record = await this.ownedJob(clientId, jobId, admin);
    if (record.state !== 'FINISHED' || this.live.has(jobId)) {
      throw new JobError('precondition', `job_id: job "${jobId}" is ${record.state}; only a finished job can be deleted: cancel ` +
        `it first (CancelJob), then delete it once it has finished`);
    }
    try {
      await this.store.deleteJob(jobId);
    } catch (error: unknown) {
      // Deleted by a call that raced this one: missing now, as GetJob would say.
      if (error instanceof JobStoreError) throw new JobError('not_found', `job_id: no job "${jobId}" for this client`);
      if (!isStoreFault(error)) throw error;
      this.jobLog.failed(error, 'delete a job');
      throw storeUnavailable(this.jobLog.fault!);
    }
    this.log.info({ jobId, clientId, owner: record.clientId }, 'job deleted');
  }

  /**
   * Start serving: hear the store's notices (jobs created, grown, cancelled on any server), then, on a server that
   * runs jobs, claim the unfinished jobs nobody holds (after a restart: this server's own, from their last
   * checkpoint) and keep claiming. Resolves with the number of jobs the first claim started.
   */
  async start(): Promise<number> {
    this.unlisten = await this.store.listen((notice) => this.onNotice(notice));
    if (!this.scheduler) return 0;
    await this.registry.ready();
    if (this.options.exclusiveStore) {
      try {
        for (const job of await this.store.unfinishedJobs()) this.orphanModels.add(job.model);
      } catch (error: unknown) {
        if (!isStoreFault(error)) throw error;
        this.jobLog.failed(error, 'list unfinished jobs');
      }
    }
    return this.scheduler.start();
  }

  /**
   * The models whose jobs this server claims: those it has ready. With a store of its own (a SQLite file) also those
   * that failed to load and those it no longer serves, whose unfinished jobs nobody else will run: claimed, they end
   * FAILED with the reason. On a shared store another server may run them, so they wait.
   */
  private claimableModels(): string[] {
    const entries = this.registry.list();
    const ready = entries.filter((m) => m.state === 'READY').map((m) => m.name);
    if (!this.options.exclusiveStore) return ready;
    return [...new Set([...ready, ...entries.filter((m) => m.state === 'FAILED').map((m) => m.name), ...this.orphanModels])];
  }

  /**
   * Stop accepting jobs and checkpoint every running one, then give up their leases, so a restart (or another
   * server) resumes them at once. Queued jobs need no checkpoint: they start afresh from their seed. The engines are
   * stopped by the model registry's close, which skips the result summaries of the jobs it stops.
   */
  async shutdown(): Promise<void> {
    this.accepting = false;
    this.scheduler?.stop();
    let checkpointed = 0;
    try {
      await this.jobLog.close(() => {
        const checkpoints = [...this.live.values()].filter((live) => live.record.state === 'RUNNING')
          .map((live) => this.checkpointOf(live)).filter((c) => c !== undefined);
        checkpointed = checkpoints.length;
        return { checkpoints, clearResumeMarks: true };
      });
    } catch (error: unknown) {
      // The jobs resume from their last stored checkpoint instead.
      checkpointed = 0;
      this.log.error({ err: error }, 'jobs could not be checkpointed for shutdown');
    }
    try {
      // Checkpointed or not, another server (or this one restarted) may take them at once.
      await this.store.releaseLeases(this.options.serverId, [...this.live.keys()]);
    } catch (error: unknown) {
      this.log.error({ err: error }, 'job leases could not be released: they run out instead');
    }
    // From here on the store is left as it is: the engines stop, and their last events are not written.
    this.closed = true;
    this.feed.closeAll();
    for (const wakers of this.tails.values()) for (const wake of wakers) wake();
    await this.unlisten?.();
    this.log.info({ jobs: this.live.size, checkpointed }, 'jobs checkpointed for shutdown');
  }

  /** Jobs this server lost to another since the start (metrics). */
  get lostJobs(): number {
    return this.leasesLostCount;
  }

  /** This server's name as a lease owner (metrics). */
  get serverId(): string {
    return this.options.serverId;
  }

  /** Jobs claimed since the start, and the time the last claim took, in ms (metrics). */
  get claims(): { claimed: number; lastClaimMs: number } {
    return { claimed: this.scheduler?.claimed ?? 0, lastClaimMs: this.scheduler?.lastClaimMs ?? 0 };
  }

  /**
   * Start a job this server has just claimed: from its last checkpoint if it has one, with what its stored history
   * already holds noted so that it is not shown again. A job that cannot start here ends FAILED with the reason;
   * a store fault leaves it to the next claim (its lease runs out).
   */
  private async startClaimed({ record, epoch }: ClaimedJob): Promise<void> {
    if (this.closed || this.live.has(record.id)) return;
    try {
      await this.resume(record, epoch);
    } catch (error: unknown) {
      this.forget(record.id);
      if (isStoreFault(error)) {
        this.jobLog.failed(error, 'resume a job');
        return;
      }
      const reason = error instanceof Error ? error.message : String(error);
      this.log.error({ jobId: record.id, err: error }, 'job could not be resumed');
      try {
        await this.failStored(record, epoch, `the job could not be resumed: ${reason}`);
      } catch (storeError: unknown) {
        this.log.error({ jobId: record.id, err: storeError }, 'job could not be marked FAILED');
      }
    }
  }

  private async resume(record: JobRecord, epoch: number): Promise<void> {
    // A job that never started has no checkpoint and no history to read: the common case of a claim.
    const fresh = record.lastSequence === 0;
    const checkpoint = fresh ? undefined : await this.store.latestCheckpoint(record.id);
    const keep = checkpoint?.sequence ?? 0;
    // It ran from this same checkpoint after the last restart, and its server stopped before a new one or a clean
    // shutdown: whatever stops servers may be this job. Resuming it again could loop forever.
    if (record.lastSequence > 0 && await this.store.resumeMark(record.id) === keep) {
      const reason = `quarantined: the server stopped while this job was running from its checkpoint at event ${keep} ` +
        'after a restart, and again with no newer checkpoint; it is not resumed again';
      this.log.error({ jobId: record.id, clientId: record.clientId, checkpoint: keep }, 'job quarantined');
      await this.failStored(record, epoch, reason);
      return;
    }
    const { model, engine } = this.registry.requireRunner(record.model);
    const spec = fromBinary(JobSpecSchema, record.spec);
    const settings = this.storedSettings(spec);
    const snapshots: Map<number, RunSnapshot> = checkpoint ? decodeSnapshots(checkpoint.payload) : new Map();
    const completed = new Map<number, RunResult>();
    const stored = emptyStoredProgress();
    for (const event of fresh ? [] : await this.store.events(record.id, 0)) noteStored(stored, event, completed);
    const resumedFrom = new Map([...snapshots].map(([restart, s]) => [restart, s.iteration]));
    const cost = jobBytes(settings, record.targetIds.length, model.checkpoint.config);
    const live = this.addLive(record, epoch, stored, cost);
    if (record.lastSequence > 0) live.resumedAtCheckpoint = keep;
    live.handle = await engine.submit({
      targetIds: record.targetIds, settings, resumeFrom: snapshots, completed, client: record.clientId,
      onEvent: (event) => this.onEvent(live, event),
    });
    // Read the flag now: a cancel may have arrived while the engine was setting the job up.
    if (record.cancelRequested || (await this.store.getJob(record.id))?.cancelRequested) live.handle.cancel();
    if (record.lastSequence > 0) {
      this.log.info({ jobId: record.id, epoch, fromSequence: record.lastSequence, checkpoint: keep,
        restarts: [...resumedFrom] }, 'job resumed');
    }
  }

  private addLive(record: JobRecord, epoch: number, stored: StoredProgress, cost: number): LiveJob {
    const live: LiveJob = {
      record, cost, epoch, nextSequence: record.lastSequence + 1, iterationsSinceCheckpoint: 0, stored,
      resumedRestarts: new Map(),
    };
    this.live.set(record.id, live);
    this.jobLog.hold(record.id, epoch);
    return live;
  }

  /** Stop tracking a job here, without writing anything more for it. */
  private forget(jobId: string): void {
    this.live.delete(jobId);
  }

  // Another server holds these jobs now: stop them here without a word to the store (their writes would be refused),
  // and hand their live readers over to the store, where the new holder's events appear.
  private leasesLost(jobIds: readonly string[]): void {
    for (const jobId of jobIds) {
      const live = this.live.get(jobId);
      if (!live) continue;
      this.live.delete(jobId);
      this.leasesLostCount++;
      live.handle?.cancel();
      this.feed.closeJob(jobId);
      this.log.warn({ jobId, epoch: live.epoch }, 'job lease lost: it runs on another server now');
    }
    this.scheduler?.wake();
  }

  // What every server sharing the store hears: wake the readers tailing that job, stop a job cancelled elsewhere,
  // claim a job created elsewhere, and tell the change listeners (the job lists, the data sets). A result elsewhere
  // frees no room here: this server's own results wake its scheduler.
  private onNotice(notice: StoreNotice): void {
    for (const wake of this.tails.get(notice.jobId) ?? []) wake();
    if (notice.kind === 'cancel') this.live.get(notice.jobId)?.handle?.cancel();
    if (notice.kind === 'created' && !this.live.has(notice.jobId)) this.scheduler?.wake();
    if (notice.kind !== 'cancel') this.feed.announce({ clientId: notice.clientId, jobId: notice.jobId, kind: notice.kind });
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
    // Closed, or no longer this server's job (its lease was lost): nothing it emits is written or shown.
    if (this.closed || this.live.get(live.record.id) !== live) return;
    const jobId = live.record.id;
    if (event.type === 'started' && live.resumedAtCheckpoint !== undefined) {
      this.jobLog.setResumeMark(jobId, live.resumedAtCheckpoint);
      live.resumedAtCheckpoint = undefined;
    }
    if (event.type === 'started' && live.record.state === 'QUEUED') {
      live.record.state = 'RUNNING';
      this.jobLog.setState({ jobId, state: 'RUNNING' });
    }
    if (alreadyStored(live.stored, event)) {
      if (event.type === 'started') live.resumedRestarts.set(event.restart, event);
      return;
    }
    // The first new event of a restart that ran before the move: say first where its history continues.
    const restart = event.type === 'progress' ? event.progress.restart : event.type === 'restart_result' ? event.result.restart : -1;
    const started = live.resumedRestarts.get(restart);
    if (started) {
      live.resumedRestarts.delete(restart);
      const continuesAt = event.type === 'progress' ? event.progress.iteration
        : (live.stored.progressThrough.get(restart) ?? -1) + 1;
      this.append(live, started, continuesAt);
    }
    this.append(live, event, 0);
  }

  // Number, encode and hand an event to the job log and its live readers, and apply what it changes.
  private append(live: LiveJob, event: InversionEvent, resumedFrom: number): void {
    const jobId = live.record.id;
    const now = Date.now();
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
    if (event.type === 'progress') {
      live.iterationsSinceCheckpoint++;
      if (proto.kind.case === 'progress') this.jobLog.setSummary(jobId, proto.kind.value);
    } else if (event.type === 'result') {
      live.record.state = 'FINISHED';
      live.record.status = event.result.status;
      live.record.finishedAtMs = now;
      this.jobLog.setState({ jobId, state: 'FINISHED', status: event.result.status, finishedAtMs: now });
      this.live.delete(jobId);
      this.scheduler?.wake(); // room for another job
      this.options.onJobFinished?.(live.record.model, event.result.status);
      this.log.info({ jobId, status: event.result.status, ms: Math.round(event.result.elapsedMs) }, 'job finished');
      const errors = event.result.restarts.flatMap((r) => (r.error ? [`restart ${r.restart}: ${r.error}`] : []));
      if (errors.length > 0) {
        this.log.warn({ jobId, clientId: live.record.clientId, errors }, 'job restarts failed');
      }
    }
    // Live readers get the event as the store keeps it (float fields rounded to float32), so a replayed history
    // and a live one are the same bytes. Change listeners hear of it from the store's notice, once it is written.
    if (this.feed.hasReaders(jobId)) this.feed.publish(jobId, decodeEvent(payload));
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
  private async failStored(record: JobRecord, epoch: number, reason: string): Promise<void> {
    const now = Date.now();
    this.forget(record.id);
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
    await this.store.commit({
      events: [{ jobId: record.id, sequence: event.sequence, timeMs: now, kind: 'result', restart: null, iteration: null,
        payload: encodeEvent(event) }],
      states: [{ jobId: record.id, state: 'FINISHED', status: 'FAILED', finishedAtMs: now }],
    }, { owner: this.options.serverId, leases: new Map([[record.id, epoch]]) });
    this.log.warn({ jobId: record.id, reason }, 'job marked FAILED');
  }

  private async ownedJob(clientId: string, jobId: string, admin = false): Promise<JobRecord> {
    const record = this.live.get(jobId)?.record ?? await this.store.getJob(jobId);
    // Another client's job is reported as missing: its existence is not this client's business (an admin's it is).
    if (!record || (record.clientId !== clientId && !admin)) throw new JobError('not_found', `job_id: no job "${jobId}" for this client`);
    return record;
  }

  /** Describe a job as the store holds it (a listing's record, or one just read): its result read from its history. */
  private async toJob(stored: JobRecord): Promise<Job> {
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

  /** A new job's settings, checked once, here, against the server's limits (a SettingsError names the field). */
  private checkSettings(spec: JobSpec) {
    return makeInversionSettings(settingsFromProto(spec.settings), this.options.limits);
  }

  /**
   * A stored job's settings, as they were accepted: not checked against the limits in force now, which may be
   * tighter than those it was accepted under (a restart with new limits must not fail ListJobs or the resume).
   */
  private storedSettings(spec: JobSpec) {
    return storedInversionSettings(settingsFromProto(spec.settings));
  }
}

function storeUnavailable(fault: StoreFault): JobError {
  return new JobError('unavailable', `the job store cannot be written (${fault.message}) since ` +
    `${new Date(fault.sinceMs).toISOString()}; new jobs are refused until it can; retry later`);
}

// How long a reader tailing the store waits for a notice before it reads again anyway, in ms.
const tailRecheckMs = 2000;

function emptyStoredProgress(): StoredProgress {
  return { queued: false, started: new Set(), progressThrough: new Map(), restartResults: new Set() };
}

/** Note what one stored event holds; a restart's stored result also goes to `completed` (it is not run again). */
function noteStored(stored: StoredProgress, record: EventRecord, completed: Map<number, RunResult>): void {
  if (record.kind === 'queued') stored.queued = true;
  else if (record.kind === 'started' && record.restart !== null) stored.started.add(record.restart);
  else if (record.kind === 'progress' && record.restart !== null && record.iteration !== null) {
    stored.progressThrough.set(record.restart, Math.max(stored.progressThrough.get(record.restart) ?? -1, record.iteration));
  } else if (record.kind === 'restart_result') {
    const event = decodeEvent(record.payload);
    if (event.kind.case === 'restartResult') {
      stored.restartResults.add(event.kind.value.restart);
      completed.set(event.kind.value.restart, restartResultFromProto(event.kind.value));
    }
  }
}

/** Whether the store already holds this event of a job that started again (it is recomputed, not shown twice). */
function alreadyStored(stored: StoredProgress, event: InversionEvent): boolean {
  switch (event.type) {
    case 'queued': return stored.queued;
    case 'started': return stored.started.has(event.restart);
    case 'progress': return event.progress.iteration <= (stored.progressThrough.get(event.progress.restart) ?? -1);
    case 'restart_result': return stored.restartResults.has(event.result.restart);
    case 'result': return false;
  }
}
