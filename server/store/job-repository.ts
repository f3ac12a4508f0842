// The job store's contract: jobs, their event history, their latest checkpoint, behind an asynchronous interface
// that two back ends implement: SQLite in one file (sqlite-job-store.ts, the default for one machine) and
// PostgreSQL (postgres-job-store.ts, shared by several servers). Payloads are opaque bytes; a store knows nothing of
// protobuf or the engine, only the invariants that make replay and resume safe: a job's events are numbered
// 1, 2, 3, … without gaps, its checkpoint never points past its last event, and FINISHED is final. Every call
// commits before its promise resolves: a server killed outright finds every write it had acknowledged.
// The same suite (test/store/job-store.test.ts) runs against both back ends.

export type JobState = 'QUEUED' | 'RUNNING' | 'FINISHED';
export type EventKind = 'queued' | 'started' | 'progress' | 'restart_result' | 'result';

/** Describe one job as stored. */
export interface JobRecord {
  id: string;
  clientId: string;
  model: string;
  label: string;
  /** The request as submitted (opaque). */
  spec: Uint8Array;
  targetIds: number[];
  targetText: string;
  state: JobState;
  /** How it ended, once FINISHED (e.g. 'HIT'); null before. */
  status: string | null;
  cancelRequested: boolean;
  createdAtMs: number;
  finishedAtMs: number | null;
  /** Highest stored event sequence (0: none). */
  lastSequence: number;
  /** Latest progress or result snapshot for listings (opaque). */
  summary: Uint8Array | null;
}

/** Describe one stored event of a job's history. */
export interface EventRecord {
  jobId: string;
  /** Position in the job's history: 1 for its first event, then each next integer. */
  sequence: number;
  timeMs: number;
  kind: EventKind;
  restart: number | null;
  iteration: number | null;
  payload: Uint8Array;
}

/** Describe a job's resumable state as of its event `sequence`. */
export interface CheckpointRecord {
  jobId: string;
  /** The last event the state includes; resuming truncates the history after it. */
  sequence: number;
  timeMs: number;
  payload: Uint8Array;
}

/** Fields a new job is stored with; the store starts its history empty and its summary null. */
export type NewJob = Omit<JobRecord, 'lastSequence' | 'summary'>;

/** A move of one job to a state (see {@link JobRepository.setState}). */
export interface StateChange {
  jobId: string;
  state: JobState;
  status?: string;
  finishedAtMs?: number;
}

/**
 * Writes that commit together or not at all: one engine round's events with the summaries, state changes, resume
 * marks and checkpoints that go with them. Applied in that order, so a checkpoint may point at events of the same
 * batch. `clearResumeMarks` (a clean shutdown) runs last.
 */
export interface WriteBatch {
  events?: readonly EventRecord[];
  summaries?: readonly { jobId: string; summary: Uint8Array }[];
  states?: readonly StateChange[];
  resumeMarks?: readonly { jobId: string; sequence: number | null }[];
  checkpoints?: readonly CheckpointRecord[];
  clearResumeMarks?: boolean;
}

/** Page through a listing of jobs: at most `limit` (default 100), continuing after job `beforeId`. */
export interface ListOptions {
  limit?: number;
  beforeId?: string;
}

/**
 * A server's hold on a job: while its lease runs, only `owner` may write the job's history, and every write it makes
 * carries `epoch`, which each new claim of the job raises; a write with an older epoch is refused (fencing), so a
 * server that was paused past its lease cannot write over its successor.
 */
export interface Lease {
  jobId: string;
  epoch: number;
}

/** A job a server has just claimed, and the epoch of its lease. */
export interface ClaimedJob {
  record: JobRecord;
  epoch: number;
}

/** How a new job is admitted: within its client's quota, and held by `owner` at once or left for a claim. */
export interface Admission {
  /** The server that will run it now (its lease starts at epoch 1), or null: queued for any worker to claim. */
  owner: string | null;
  leaseMs: number;
  /** Bytes it holds while it runs (counted against its client's maxQueuedBytes). */
  costBytes: number;
  /** The client's limits, counted over its unfinished jobs on every server that shares the store. */
  maxJobs: number;
  maxQueuedBytes: number;
}

/** What admitJob answers: the job is stored (with its lease epoch; 0 when unowned), or refused and why. */
export type AdmissionResult =
  | { admitted: true; epoch: number }
  | { admitted: false; reason: 'jobs' | 'bytes'; use: { jobs: number; bytes: number } };

/**
 * Something that happened to a job, as every server sharing the store hears of it: the job was created, its
 * history grew to `lastSequence` (with an event of `kind`), or a cancel was asked. Carries ids only.
 */
export interface StoreNotice {
  jobId: string;
  clientId: string;
  kind: 'created' | 'cancel' | EventKind;
  lastSequence: number;
}

/** Signal a call the store refuses: an unknown job, a broken sequence, a bad value or a forbidden transition. */
export class JobStoreError extends Error {
  override name = 'JobStoreError';
}

/** Signal a fenced write: these jobs' leases are no longer the writer's (expired and claimed by another server). */
export class LeaseLostError extends JobStoreError {
  override name = 'LeaseLostError';
  constructor(readonly jobIds: readonly string[], message: string) {
    super(message);
  }
}

/** The job store; see the module comment for its guarantees. */
export interface JobRepository {
  /** Where it keeps its data, for logs and errors: a file path, or a database URL without its password. */
  readonly location: string;
  /** Close it; later calls fail. Closing twice is harmless. */
  close(): Promise<void>;

  /** Store a new job with an empty history; a duplicate id is a JobStoreError. */
  insertJob(job: NewJob): Promise<void>;
  /** Return the job `id`, or undefined if there is none. */
  getJob(id: string): Promise<JobRecord | undefined>;
  /**
   * List `clientId`'s jobs newest first (creation time, then insertion order, so equal times page stably).
   * `beforeId` must be one of the client's jobs: another's is refused exactly like a missing one.
   */
  listJobs(clientId: string, options?: ListOptions): Promise<JobRecord[]>;
  /** Return every client's jobs, newest first (an admin's listing); `beforeId` pages on from any job. */
  listAllJobs(options?: ListOptions): Promise<JobRecord[]>;
  /** Return the QUEUED and RUNNING jobs oldest first: the work to resume after a restart, in submission order. */
  unfinishedJobs(): Promise<JobRecord[]>;
  /** Count jobs, optionally only those in `state` and/or of `clientId`. */
  countJobs(filter?: { state?: JobState; clientId?: string }): Promise<number>;
  /** Delete `jobId` with its events and checkpoint. */
  deleteJob(jobId: string): Promise<void>;

  /**
   * Append events atomically, jobs interleaved freely. Each job's sequences must continue its lastSequence one by
   * one (1, 2, 3, …): a gap, a duplicate or a wrong start is a JobStoreError naming the job, the sequence expected
   * and the one given, and nothing of the batch is stored. Updates each job's lastSequence.
   */
  appendEvents(events: readonly EventRecord[]): Promise<void>;
  /** Return `jobId`'s events with sequence > `afterSequence` (default 0: all), ascending, at most `limit`. */
  events(jobId: string, afterSequence?: number, limit?: number): Promise<EventRecord[]>;
  /**
   * Move `jobId` to `state`. FINISHED is final: it takes `status` and `finishedAtMs` (default now), and no later
   * state change is accepted. QUEUED and RUNNING take neither and may alternate (a job re-queued after a restart).
   */
  setState(jobId: string, state: JobState, extra?: { status?: string; finishedAtMs?: number }): Promise<void>;
  /** Replace `jobId`'s listing snapshot. */
  setSummary(jobId: string, summary: Uint8Array): Promise<void>;
  /** Mark `jobId` as asked to stop; the flag survives a restart so a resumed job stops too. Idempotent. */
  requestCancel(jobId: string): Promise<void>;
  /**
   * Store `checkpoint` as its job's only checkpoint, replacing any older one. Its sequence must not pass the job's
   * lastSequence: a checkpoint describes state the stored history has already reached.
   */
  saveCheckpoint(checkpoint: CheckpointRecord): Promise<void>;
  /** Return `jobId`'s checkpoint, or undefined if it has none. */
  latestCheckpoint(jobId: string): Promise<CheckpointRecord | undefined>;
  /**
   * Delete `jobId`'s events after `sequence` and set its lastSequence to `sequence`, so a job resumed from a
   * checkpoint continues its history from there. A checkpoint past `sequence` is deleted with them. Returns the
   * number of events deleted.
   */
  truncateEventsAfter(jobId: string, sequence: number): Promise<number>;
  /**
   * Record that a resumed job started running from its checkpoint at `sequence` (null clears the mark). A mark still
   * there at the next start, with the checkpoint unchanged, says the server stopped uncleanly during that resume.
   */
  setResumeMark(jobId: string, sequence: number | null): Promise<void>;
  /** Return a job's resume mark (see setResumeMark), or null. */
  resumeMark(jobId: string): Promise<number | null>;
  /** Clear every unfinished job's resume mark: a clean shutdown checkpointed them, so no resume failed. */
  clearResumeMarks(): Promise<void>;

  /**
   * Apply `batch` in one transaction (see {@link WriteBatch}); any refusal rolls back all of it. With `fence`, every
   * job the batch writes must still be leased to `fence.owner` at the epoch `fence.leases` gives it: if any is not,
   * nothing is written and a LeaseLostError names them all. Every server sharing the store hears one StoreNotice
   * per job whose history grew (see {@link listen}).
   */
  commit(batch: WriteBatch, fence?: { owner: string; leases: ReadonlyMap<string, number> }): Promise<void>;

  /**
   * Store a new job if its client's unfinished jobs leave room (jobs and bytes, counted under a per-client lock so
   * two servers admitting at once cannot both take the last place); owned by `admission.owner` at epoch 1, or
   * unowned. Announces it (a 'created' notice).
   */
  admitJob(job: NewJob, admission: Admission): Promise<AdmissionResult>;
  /** Count a client's unfinished jobs and the bytes they hold, on every server. */
  clientUse(clientId: string): Promise<{ jobs: number; bytes: number }>;
  /**
   * Claim up to `limit` unfinished jobs of `models` that no live lease holds (never claimed, or their lease expired),
   * for `owner`, raising each one's epoch: the clients with the fewest held jobs first, then the oldest jobs.
   * `ignoreLeases` also takes jobs whose lease still runs: for a store only this server uses (a SQLite file), where
   * any lease left is a previous run's.
   */
  claimJobs(owner: string, models: readonly string[], limit: number, leaseMs: number,
    options?: { ignoreLeases?: boolean }): Promise<ClaimedJob[]>;
  /** Extend `owner`'s leases by `leaseMs` from now; returns the ids of those it no longer holds (taken over, deleted). */
  renewLeases(owner: string, leases: readonly Lease[], leaseMs: number): Promise<string[]>;
  /** Give up `owner`'s leases on these jobs (a clean shutdown), so another server may claim them at once. */
  releaseLeases(owner: string, jobIds: readonly string[]): Promise<void>;
  /**
   * Hear of every StoreNotice from every server sharing the store (this one included), until the returned function
   * is called. With SQLite only this process's changes exist to hear.
   */
  listen(onNotice: (notice: StoreNotice) => void): Promise<() => Promise<void>>;
  /**
   * Delete the event histories of jobs finished before `finishedBeforeMs`, keeping each one's last event (its
   * result) and its row; returns the number of events deleted.
   */
  pruneFinishedHistories(finishedBeforeMs: number): Promise<number>;
  /** Write something that changes nothing: throws as a real write would on a full disk or a lost database. */
  probeWrite(): Promise<void>;
}

/** A transient store fault (the disk, the file system or the database connection), not a refused call. */
export function isStoreFault(error: unknown): boolean {
  if (error instanceof JobStoreError) return false;
  const code = (error as { code?: unknown } | null)?.code;
  // node-postgres reports a lost or unobtainable connection with a plain Error that has no code: the pool's wait for a
  // connection timing out, and the client's socket closing under it. Matched by their exact messages only.
  if (code === undefined && error instanceof Error) return pgConnectionFaults.has(error.message);
  if (typeof code !== 'string') return false;
  // SQLite's own codes and the file system's under it; node's socket errors and PostgreSQL's SQLSTATE classes 08
  // (connection), 40 (a transaction rolled back: deadlock, serialization failure; worth retrying), 53 (insufficient
  // resources), 57 (operator intervention: shutdown) and 58 (system error).
  return code.startsWith('SQLITE_') || ['ENOSPC', 'EIO', 'EROFS', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT']
    .includes(code) || /^(08|40|53|57|58)[0-9A-Z]{3}$/.test(code);
}

/** node-postgres's messages (pg, pg-pool) for connection faults that carry no code; see isStoreFault. */
const pgConnectionFaults: ReadonlySet<string> = new Set([
  'timeout exceeded when trying to connect',
  'Connection terminated due to connection timeout',
  'Connection terminated unexpectedly',
  'Client has encountered a connection error and is not queryable',
]);

// Checks shared by the back ends: a refused value is reported the same way whichever store holds the job.

const jobStates: ReadonlySet<string> = new Set<JobState>(['QUEUED', 'RUNNING', 'FINISHED']);
export const eventKinds: ReadonlySet<string> = new Set<EventKind>(['queued', 'started', 'progress', 'restart_result', 'result']);
export const defaultListLimit = 100; // jobs per page when the caller names none

export function requireId(op: string, field: string, value: unknown): void {
  if (typeof value !== 'string' || value.length === 0) {
    throw new JobStoreError(`${op}: ${field} ${JSON.stringify(value)} must be a non-empty string`);
  }
}

export function requireText(op: string, field: string, value: unknown): void {
  if (typeof value !== 'string') throw new JobStoreError(`${op}: ${field} ${String(value)} must be a string`);
}

export function requireBytes(op: string, field: string, value: unknown): void {
  if (!(value instanceof Uint8Array)) {
    throw new JobStoreError(`${op}: ${field} must be a Uint8Array, got ${value === null ? 'null' : typeof value}`);
  }
}

export function requireInteger(op: string, field: string, value: unknown): void {
  if (!Number.isSafeInteger(value)) throw new JobStoreError(`${op}: ${field} ${String(value)} must be an integer`);
}

export function requireNullableInteger(op: string, field: string, value: unknown): void {
  if (value !== null) requireInteger(op, field, value);
}

export function requireState(op: string, state: unknown): void {
  if (typeof state !== 'string' || !jobStates.has(state)) {
    throw new JobStoreError(`${op}: state '${String(state)}' must be one of ${[...jobStates].join(', ')}`);
  }
}

export function requireLimit(op: string, limit: number): void {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new JobStoreError(`${op}: limit ${limit} must be an integer ≥ 1`);
}

/** Check a new job's fields, as every back end does before it writes. */
export function checkNewJob(job: NewJob): void {
  const op = 'insertJob';
  requireId(op, 'id', job.id);
  requireText(op, 'clientId', job.clientId);
  requireText(op, 'model', job.model);
  requireText(op, 'label', job.label);
  requireText(op, 'targetText', job.targetText);
  requireBytes(op, 'spec', job.spec);
  requireState(op, job.state);
  requireInteger(op, 'createdAtMs', job.createdAtMs);
  requireNullableInteger(op, 'finishedAtMs', job.finishedAtMs);
  if (job.status !== null && typeof job.status !== 'string') {
    throw new JobStoreError(`${op}: status ${String(job.status)} must be a string or null`);
  }
  if (typeof job.cancelRequested !== 'boolean') {
    throw new JobStoreError(`${op}: cancelRequested ${String(job.cancelRequested)} must be a boolean`);
  }
  if (!Array.isArray(job.targetIds) || !job.targetIds.every((t) => Number.isSafeInteger(t) && t >= 0)) {
    throw new JobStoreError(`${op}: targetIds must be an array of integer token ids ≥ 0`);
  }
}

/**
 * Check one event against the sequence its job expects next, and its fields: the rule both back ends apply in
 * appendEvents.
 */
export function checkEvent(event: EventRecord, expected: number): void {
  const op = 'appendEvents';
  if (event.sequence !== expected) {
    const why = !Number.isSafeInteger(event.sequence) ? 'not an integer'
      : event.sequence < expected ? 'already stored (a duplicate or a wrong start)' : 'a gap';
    throw new JobStoreError(`${op}: job '${event.jobId}' expected sequence ${expected}, got ${event.sequence}: ${why}`);
  }
  if (!eventKinds.has(event.kind)) {
    throw new JobStoreError(`${op}: job '${event.jobId}' event ${event.sequence} has kind '${event.kind}'; ` +
      `expected one of ${[...eventKinds].join(', ')}`);
  }
  requireInteger(op, 'timeMs', event.timeMs);
  requireNullableInteger(op, 'restart', event.restart);
  requireNullableInteger(op, 'iteration', event.iteration);
  requireBytes(op, 'payload', event.payload);
}

/**
 * Check a state change against the job's current state and status; returns the finishedAtMs to store (null unless
 * FINISHED). Both back ends call it before they write.
 */
export function checkStateChange(jobId: string, current: { state: JobState; status: string | null } | undefined,
  state: JobState, extra: { status?: string; finishedAtMs?: number }): number | null {
  const op = 'setState';
  requireState(op, state);
  if (current === undefined) throw new JobStoreError(`${op}: no job '${jobId}'`);
  if (current.state === 'FINISHED') {
    throw new JobStoreError(`${op}: job '${jobId}' is already FINISHED (status ${current.status ?? 'none'}); ` +
      `it cannot move to ${state}`);
  }
  if (state !== 'FINISHED') {
    if (extra.status !== undefined || extra.finishedAtMs !== undefined) {
      throw new JobStoreError(`${op}: status and finishedAtMs apply only to FINISHED, not to ${state} (job '${jobId}')`);
    }
    return null;
  }
  const finishedAtMs = extra.finishedAtMs ?? Date.now();
  requireInteger(op, 'finishedAtMs', finishedAtMs);
  if (extra.status !== undefined && typeof extra.status !== 'string') {
    throw new JobStoreError(`${op}: status ${String(extra.status)} must be a string`);
  }
  return finishedAtMs;
}

/** Check a checkpoint against its job's last stored sequence (undefined: no such job). */
export function checkCheckpoint(checkpoint: CheckpointRecord, last: number | undefined): void {
  const op = 'saveCheckpoint';
  requireInteger(op, 'sequence', checkpoint.sequence);
  requireInteger(op, 'timeMs', checkpoint.timeMs);
  requireBytes(op, 'payload', checkpoint.payload);
  if (last === undefined) throw new JobStoreError(`${op}: no job '${checkpoint.jobId}'`);
  if (checkpoint.sequence < 0 || checkpoint.sequence > last) {
    throw new JobStoreError(`${op}: job '${checkpoint.jobId}' checkpoint sequence ${checkpoint.sequence} is ` +
      `outside its history 0..${last}`);
  }
}

/** Check a truncation point against its job's last stored sequence (undefined: no such job). */
export function checkTruncation(jobId: string, sequence: number, last: number | undefined): void {
  const op = 'truncateEventsAfter';
  requireInteger(op, 'sequence', sequence);
  if (last === undefined) throw new JobStoreError(`${op}: no job '${jobId}'`);
  if (sequence < 0 || sequence > last) {
    throw new JobStoreError(`${op}: sequence ${sequence} is outside job '${jobId}''s history 0..${last}`);
  }
}

/** Return the ids of the jobs a batch writes, each once. */
export function jobsOfBatch(batch: WriteBatch): string[] {
  const ids = new Set<string>();
  for (const event of batch.events ?? []) ids.add(event.jobId);
  for (const { jobId } of batch.summaries ?? []) ids.add(jobId);
  for (const { jobId } of batch.states ?? []) ids.add(jobId);
  for (const { jobId } of batch.resumeMarks ?? []) ids.add(jobId);
  for (const { jobId } of batch.checkpoints ?? []) ids.add(jobId);
  return [...ids];
}

/**
 * Return the notices a committed batch gives: one per job whose history grew, with its new last sequence and the
 * kind of its last event (a 'result' says the job finished). `clientOf` finds a job's client.
 */
export function noticesOfBatch(batch: WriteBatch, clientOf: (jobId: string) => string | undefined): StoreNotice[] {
  const last = new Map<string, EventRecord>();
  for (const event of batch.events ?? []) last.set(event.jobId, event);
  const notices: StoreNotice[] = [];
  for (const [jobId, event] of last) {
    const clientId = clientOf(jobId);
    if (clientId !== undefined) notices.push({ jobId, clientId, kind: event.kind, lastSequence: event.sequence });
  }
  return notices;
}
