// The job log: what the hub's jobs have emitted, written to the job store in batches. Events, listing summaries,
// state changes and resume marks gather in memory and go to the store in one transaction per flush, together with
// the checkpoints then due, so a checkpoint and the history it covers always describe the same moment. One flush
// runs at a time. When the store fails (disk full, a lost database) everything stays in memory, the log reports the
// fault (the hub then refuses new jobs) and tries again every `storeRetryMs`; the jobs run on. Every batch is fenced
// by the leases of the jobs it writes: when the store says a lease is lost (another server took the job over), that
// job's writes are dropped, the hub is told, and the rest of the batch is written.
import { toBinary } from '@bufbuild/protobuf';
import type { Logger } from 'pino';
import { ProgressSchema } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { Progress } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { CheckpointRecord, EventRecord, JobRepository, StateChange } from '../store/job-repository.js';
import { LeaseLostError } from '../store/job-repository.js';

/** Options of {@link JobLog}. */
export interface JobLogOptions {
  /** The lease owner this server writes as. */
  serverId: string;
  /**
   * Least time between the starts of two batches the log writes by itself, in ms (an explicit flush() does not
   * wait). 0 writes after every engine round; a shared database gets fewer, larger transactions with more.
   */
  batchEveryMs: number;
  /** Wait between two attempts to write to a store that failed, in ms. */
  storeRetryMs: number;
  /**
   * Wait between two probe writes while nothing else is written, in ms (0: none). A shared database can go away while
   * a server is idle; the probe makes readiness say so before a client's request finds out.
   */
  probeEveryMs: number;
}

/** Why the store cannot be written now, and since when. */
export interface StoreFault {
  message: string;
  sinceMs: number;
  /** Failed writes since the fault began. */
  failures: number;
}

/** What the log asks of the jobs it writes for. */
export interface JobLogClient {
  /** Take the checkpoints due now (the jobs' snapshots as of their last emitted event). */
  dueCheckpoints(): CheckpointRecord[];
  /** Say that these jobs' checkpoints were not written (the batch failed): take them again next time. */
  checkpointsLost(jobIds: readonly string[]): void;
  /** Say that these jobs' leases are lost: their writes were dropped, and they must stop here. */
  leasesLost(jobIds: readonly string[]): void;
  /** Say that the store writes again after a fault. */
  storeRecovered(): void;
}

export class JobLog {
  private pendingEvents: EventRecord[] = [];
  // The batch being written: its events are in neither `pendingEvents` nor (yet) the store.
  private inFlightEvents: EventRecord[] = [];
  private summaries = new Map<string, Progress>();
  private states = new Map<string, StateChange>();
  private marks = new Map<string, number | null>();
  // Job id → the epoch of this server's lease on it: every write for the job is fenced by it. Kept until the job's
  // FINISHED state is written (its last write), or its lease is lost.
  private readonly leases = new Map<string, number>();
  private flushing: Promise<void> | undefined;
  private flushAgain = false;
  private flushScheduled = false;
  private lastBatchAt = 0;
  private probeTimer: NodeJS.Timeout | undefined;
  private probing = false;
  private closed = false;
  private currentFault: StoreFault | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Failed store writes since the start (metrics). */
  storeWriteErrors = 0;

  constructor(private readonly store: JobRepository, private readonly options: JobLogOptions,
    private readonly client: JobLogClient, private readonly log: Logger) {
    if (options.probeEveryMs > 0) {
      this.probeTimer = setInterval(() => {
        // Only while idle and healthy: a write under way or a fault's retries already test the store.
        if (this.probing || this.flushing || this.currentFault || this.closed) return;
        if (performance.now() - this.lastBatchAt < options.probeEveryMs) return;
        this.probing = true;
        void this.probe().finally(() => { this.probing = false; });
      }, options.probeEveryMs);
      this.probeTimer.unref();
    }
  }

  /** The store's fault while it cannot be written, or undefined. */
  get fault(): StoreFault | undefined {
    return this.currentFault;
  }

  /** Write `jobId` from now on under this lease epoch. */
  hold(jobId: string, epoch: number): void {
    this.leases.set(jobId, epoch);
  }

  /** The leases this server writes under (the heartbeat renews them). */
  heldLeases(): { jobId: string; epoch: number }[] {
    return [...this.leases].map(([jobId, epoch]) => ({ jobId, epoch }));
  }

  /** Forget a job whose lease is lost: drop what it has waiting, and write nothing more for it. */
  drop(jobIds: readonly string[]): void {
    const lost = new Set(jobIds);
    for (const jobId of jobIds) {
      this.leases.delete(jobId);
      this.summaries.delete(jobId);
      this.states.delete(jobId);
      this.marks.delete(jobId);
    }
    this.pendingEvents = this.pendingEvents.filter((e) => !lost.has(e.jobId));
  }

  /** Add an event to the next batch. */
  append(event: EventRecord): void {
    this.pendingEvents.push(event);
    this.scheduleFlush();
  }

  /** Replace a job's listing summary in the next batch (only the newest is written). */
  setSummary(jobId: string, progress: Progress): void {
    this.summaries.set(jobId, progress);
  }

  /** Move a job to a state in the next batch. */
  setState(change: StateChange): void {
    this.states.set(change.jobId, change);
    this.scheduleFlush();
  }

  /** Set a job's resume mark in the next batch. */
  setResumeMark(jobId: string, sequence: number | null): void {
    this.marks.set(jobId, sequence);
    this.scheduleFlush();
  }

  /**
   * Return copies of `jobId`'s events up to `through` that the store does not hold yet (pending or being written),
   * in order. Taken together with a live reader's registration, they close the gap between the store and the feed.
   */
  unstored(jobId: string, through: number): EventRecord[] {
    return [...this.inFlightEvents, ...this.pendingEvents].filter((e) => e.jobId === jobId && e.sequence <= through);
  }

  /** Write everything gathered so far; resolves once written, or once the store has failed at it. Never rejects. */
  flush(): Promise<void> {
    this.flushScheduled = false;
    if (this.flushing) {
      this.flushAgain = true;
      return this.flushing;
    }
    this.flushing = this.drain().finally(() => { this.flushing = undefined; });
    return this.flushing;
  }

  /**
   * Write what is gathered, then stop writing with a final batch: whatever arrived meanwhile together with `final`'s
   * checkpoints (a shutdown's), cut in one synchronous step so that they describe the same moment. Later events stay
   * unwritten (the engines stop, and their jobs resume from these checkpoints). Throws if the final batch fails.
   */
  async close(final: () => { checkpoints: CheckpointRecord[]; clearResumeMarks: boolean }): Promise<void> {
    clearTimeout(this.retryTimer);
    clearInterval(this.probeTimer);
    await this.flush();
    this.closed = true;
    clearTimeout(this.retryTimer);
    let clearResumeMarks = false;
    const { batch, jobIds } = this.cut(() => {
      const last = final();
      clearResumeMarks = last.clearResumeMarks;
      return last.checkpoints;
    });
    await this.store.commit({ ...batch, clearResumeMarks }, this.fence(jobIds));
  }

  /**
   * Take everything gathered as one batch, with the checkpoints `checkpoints` gives, in one synchronous step, and
   * start gathering anew. Returns the batch, the maps it was made of (to put back should it fail) and the jobs it
   * writes.
   */
  private cut(checkpointsNow: () => CheckpointRecord[]) {
    const events = this.inFlightEvents = this.pendingEvents;
    this.pendingEvents = [];
    const summaries = this.summaries;
    const states = this.states;
    const marks = this.marks;
    this.summaries = new Map();
    this.states = new Map();
    this.marks = new Map();
    const checkpoints = checkpointsNow();
    const batch = {
      events,
      summaries: [...summaries].map(([jobId, progress]) => ({ jobId, summary: toBinary(ProgressSchema, progress) })),
      states: [...states.values()],
      resumeMarks: [...marks].map(([jobId, sequence]) => ({ jobId, sequence })),
      checkpoints,
    };
    const jobIds = [...events.map((e) => e.jobId), ...summaries.keys(), ...states.keys(), ...marks.keys(),
      ...checkpoints.map((c) => c.jobId)];
    return { batch, parts: { events, summaries, states, marks, checkpoints }, jobIds };
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    const wait = this.lastBatchAt + this.options.batchEveryMs - performance.now();
    if (wait <= 0) setImmediate(() => void this.flush());
    else setTimeout(() => void this.flush(), wait);
  }

  private async drain(): Promise<void> {
    do {
      this.flushAgain = false;
      await this.writeBatch();
    } while (this.flushAgain && !this.currentFault);
  }

  private async writeBatch(): Promise<void> {
    if (this.closed) return;
    if (this.pendingEvents.length === 0 && this.states.size === 0 && this.marks.size === 0) {
      if (this.currentFault) await this.probe();
      return;
    }
    this.lastBatchAt = performance.now();
    // Cut the batch synchronously: the checkpoints taken now cover exactly the events cut with them.
    const { batch, parts, jobIds } = this.cut(() => this.client.dueCheckpoints());
    const { events, summaries, states, marks, checkpoints } = parts;
    try {
      await this.store.commit(batch, this.fence(jobIds));
    } catch (error: unknown) {
      // Rolled back as a whole: put it back before what arrived meanwhile, which is newer where both name a job.
      this.pendingEvents = events.concat(this.pendingEvents);
      this.summaries = underNewer(summaries, this.summaries);
      this.states = underNewer(states, this.states);
      this.marks = underNewer(marks, this.marks);
      this.client.checkpointsLost(checkpoints.map((c) => c.jobId));
      if (error instanceof LeaseLostError) {
        // Another server runs these jobs now: drop their writes, stop them here, and write the rest at once.
        this.log.warn({ jobIds: error.jobIds }, 'job leases lost: another server has taken these jobs over');
        this.drop(error.jobIds);
        this.client.leasesLost(error.jobIds);
        this.flushAgain = true;
        return;
      }
      this.failed(error, 'write job events');
      return;
    } finally {
      this.inFlightEvents = [];
    }
    // A job's last write is its FINISHED state: its lease is no longer needed.
    for (const change of batch.states) if (change.state === 'FINISHED') this.leases.delete(change.jobId);
    if (this.currentFault) this.recovered();
  }

  private fence(jobIds: Iterable<string>): { owner: string; leases: Map<string, number> } {
    const leases = new Map<string, number>();
    for (const jobId of jobIds) {
      const epoch = this.leases.get(jobId);
      if (epoch !== undefined) leases.set(jobId, epoch);
    }
    return { owner: this.options.serverId, leases };
  }

  // Nothing waits to be written, but the store failed: see whether a small write goes through now.
  private async probe(): Promise<void> {
    try {
      await this.store.probeWrite();
    } catch (error: unknown) {
      this.failed(error, 'probe the store');
      return;
    }
    if (this.currentFault) this.recovered();
  }

  /** Record that the store failed at `what`: the hub refuses new jobs until a retry succeeds. */
  failed(error: unknown, what: string): void {
    this.storeWriteErrors++;
    const code = (error as { code?: unknown }).code;
    const message = `${error instanceof Error ? error.message : String(error)}${code ? ` (${String(code)})` : ''}`;
    if (!this.currentFault) {
      this.currentFault = { message, sinceMs: Date.now(), failures: 1 };
      this.log.error({ err: error, what, pendingEvents: this.pendingEvents.length },
        'the job store cannot be written: refusing new jobs and retrying');
    } else {
      this.currentFault.failures++;
      this.currentFault.message = message;
    }
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.flush(), this.options.storeRetryMs);
  }

  private recovered(): void {
    const fault = this.currentFault!;
    this.currentFault = undefined;
    clearTimeout(this.retryTimer);
    this.log.warn({ failures: fault.failures, ms: Date.now() - fault.sinceMs }, 'the job store writes again: accepting jobs');
    this.client.storeRecovered();
  }
}

/** Merge `older` under `newer`: a key both hold keeps the newer value. */
function underNewer<V>(older: Map<string, V>, newer: Map<string, V>): Map<string, V> {
  const merged = new Map(older);
  for (const [key, value] of newer) merged.set(key, value);
  return merged;
}
