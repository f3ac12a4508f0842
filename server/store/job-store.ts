// The durable record of jobs, their event history and their latest checkpoint, in one SQLite file. Every call is
// synchronous and commits before it returns (WAL, synchronous=NORMAL): a server killed outright and restarted on
// the same file finds every write it had acknowledged. Payloads are opaque bytes; the store knows nothing of
// protobuf or the engine, only the invariants that make replay and resume safe: a job's events are numbered
// 1, 2, 3, … without gaps, and its checkpoint never points past its last event.
import Database from 'better-sqlite3';
import { openDatabase } from './schema.js';

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

/** Options of {@link JobStore.open}. */
export interface JobStoreOptions {
  /** How long a write waits for another connection's lock before failing with SQLITE_BUSY, in ms. */
  busyTimeoutMs: number;
}

/** Defaults of {@link JobStoreOptions}. */
export const jobStoreDefaults: Readonly<JobStoreOptions> = Object.freeze({
  busyTimeoutMs: 5000, // ms
});

/** Merge partial options over {@link jobStoreDefaults}. */
export function makeJobStoreOptions(options?: Partial<JobStoreOptions>): JobStoreOptions {
  return { ...jobStoreDefaults, ...options };
}

/** Signal a call the store refuses: an unknown job, a broken sequence, a bad value or a forbidden transition. */
export class JobStoreError extends Error {
  override name = 'JobStoreError';
}

const defaultListLimit = 100; // jobs per page when the caller names none
const eventKinds: ReadonlySet<string> = new Set<EventKind>(['queued', 'started', 'progress', 'restart_result', 'result']);
const jobStates: ReadonlySet<string> = new Set<JobState>(['QUEUED', 'RUNNING', 'FINISHED']);

interface JobRow {
  id: string;
  client_id: string;
  model: string;
  label: string;
  spec: Buffer;
  target_ids: string;
  target_text: string;
  state: JobState;
  status: string | null;
  cancel_requested: number;
  created_at: number;
  finished_at: number | null;
  last_sequence: number;
  summary: Buffer | null;
}

interface EventRow {
  job_id: string;
  sequence: number;
  time_ms: number;
  kind: EventKind;
  restart: number | null;
  iteration: number | null;
  payload: Buffer;
}

interface CheckpointRow {
  job_id: string;
  sequence: number;
  time_ms: number;
  payload: Buffer;
}

const jobColumns = `id, client_id, model, label, spec, target_ids, target_text, state, status, cancel_requested,
  created_at, finished_at, last_sequence, summary`;
const eventColumns = 'job_id, sequence, time_ms, kind, restart, iteration, payload';
const newestFirst = 'ORDER BY created_at DESC, row DESC';
const oldestFirst = 'ORDER BY created_at ASC, row ASC';

/** Store jobs, events and checkpoints in one SQLite file; see the module comment for the guarantees. */
export class JobStore {
  private readonly db: Database.Database;
  private readonly file: string;
  private readonly statements: ReturnType<typeof prepareStatements>;
  private readonly appendTransaction: (events: readonly EventRecord[]) => void;
  private readonly truncateTransaction: (jobId: string, sequence: number) => number;

  private constructor(db: Database.Database, file: string) {
    this.db = db;
    this.file = file;
    this.statements = prepareStatements(db);
    this.appendTransaction = db.transaction((events: readonly EventRecord[]) => this.appendInTransaction(events)).immediate;
    this.truncateTransaction = db.transaction((jobId: string, sequence: number) =>
      this.truncateInTransaction(jobId, sequence)).immediate;
  }

  /**
   * Open (or create) the store in `file`: create or upgrade the schema, and set WAL, synchronous=NORMAL (durable
   * against a process crash; a power loss may lose the last transactions but never corrupts), a busy timeout and
   * foreign keys. `':memory:'` gives a throwaway store for tests.
   */
  static open(file: string, options?: Partial<JobStoreOptions>): JobStore {
    const { busyTimeoutMs } = makeJobStoreOptions(options);
    if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
      throw new JobStoreError(`open: busyTimeoutMs ${busyTimeoutMs} must be an integer ≥ 0`);
    }
    return new JobStore(openDatabase(file, busyTimeoutMs, JobStoreError, { checkIntegrity: true }), file);
  }

  /** Report the file this store was opened on. */
  get path(): string {
    return this.file;
  }

  /** Close the file; later calls fail. Closing twice is harmless. */
  close(): void {
    if (this.db.open) this.db.close();
  }

  /**
   * Run `fn` so that all of its writes commit together or not at all; a throw rolls them back and rethrows.
   * Nests (an inner call becomes a savepoint). `fn` must be synchronous: a transaction cannot span an await.
   */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  /** Store a new job with an empty history; a duplicate id is a JobStoreError. */
  insertJob(job: NewJob): void {
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
    try {
      this.statements.insertJob.run({
        id: job.id,
        client_id: job.clientId,
        model: job.model,
        label: job.label,
        spec: job.spec,
        target_ids: JSON.stringify(job.targetIds),
        target_text: job.targetText,
        state: job.state,
        status: job.status,
        cancel_requested: job.cancelRequested ? 1 : 0,
        created_at: job.createdAtMs,
        finished_at: job.finishedAtMs,
      });
    } catch (error) {
      if (error instanceof Database.SqliteError && error.code === 'SQLITE_CONSTRAINT_UNIQUE') {
        throw new JobStoreError(`${op}: job '${job.id}' already exists`);
      }
      throw error;
    }
  }

  /** Return the job `id`, or undefined if there is none. */
  getJob(id: string): JobRecord | undefined {
    const row = this.statements.getJob.get(id);
    return row === undefined ? undefined : jobFromRow(row);
  }

  /**
   * List `clientId`'s jobs newest first (creation time, then insertion order, so equal times page stably), at
   * most `limit` (default 100). `beforeId` continues a listing after that job, which must be one of the client's.
   */
  listJobs(clientId: string, options: { limit?: number; beforeId?: string } = {}): JobRecord[] {
    const op = 'listJobs';
    const limit = options.limit ?? defaultListLimit;
    if (!Number.isSafeInteger(limit) || limit < 1) throw new JobStoreError(`${op}: limit ${limit} must be an integer ≥ 1`);
    if (options.beforeId === undefined) {
      return this.statements.listFirst.all(clientId, limit).map(jobFromRow);
    }
    const cursor = this.statements.jobCursor.get(options.beforeId);
    // Another client's job is reported exactly like a missing one: a listing must not reveal which ids exist.
    if (cursor === undefined || cursor.client_id !== clientId) {
      throw new JobStoreError(`${op}: beforeId '${options.beforeId}' is not a job of client '${clientId}'`);
    }
    return this.statements.listBefore.all(clientId, cursor.created_at, cursor.row, limit).map(jobFromRow);
  }

  /** Return every client's jobs, newest first (an admin's listing); `beforeId` pages on from any job. */
  listAllJobs(options: { limit?: number; beforeId?: string } = {}): JobRecord[] {
    const op = 'listAllJobs';
    const limit = options.limit ?? defaultListLimit;
    if (!Number.isSafeInteger(limit) || limit < 1) throw new JobStoreError(`${op}: limit ${limit} must be an integer ≥ 1`);
    if (options.beforeId === undefined) return this.statements.listAllFirst.all(limit).map(jobFromRow);
    const cursor = this.statements.jobCursor.get(options.beforeId);
    if (cursor === undefined) throw new JobStoreError(`${op}: beforeId '${options.beforeId}' is not a job`);
    return this.statements.listAllBefore.all(cursor.created_at, cursor.row, limit).map(jobFromRow);
  }

  /**
   * Append events in one transaction, jobs interleaved freely. Each job's sequences must continue its
   * lastSequence one by one (1, 2, 3, …): a gap, a duplicate or a wrong start is a JobStoreError naming the job,
   * the sequence expected and the one given, and nothing of the batch is stored. Updates each job's lastSequence.
   */
  appendEvents(events: readonly EventRecord[]): void {
    if (events.length === 0) return;
    this.appendTransaction(events);
  }

  /** Return `jobId`'s events with sequence > `afterSequence` (default 0: all), ascending, at most `limit`. */
  events(jobId: string, afterSequence = 0, limit?: number): EventRecord[] {
    const op = 'events';
    requireInteger(op, 'afterSequence', afterSequence);
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) {
      throw new JobStoreError(`${op}: limit ${limit} must be an integer ≥ 0`);
    }
    return this.statements.events.all(jobId, afterSequence, limit ?? -1).map(eventFromRow);
  }

  /**
   * Move `jobId` to `state`. FINISHED is final: it takes `status` and `finishedAtMs` (default now), and no later
   * state change is accepted. QUEUED and RUNNING take neither and may alternate (a job re-queued after a restart).
   */
  setState(jobId: string, state: JobState, extra: { status?: string; finishedAtMs?: number } = {}): void {
    const op = 'setState';
    requireState(op, state);
    const current = this.statements.getState.get(jobId);
    if (current === undefined) throw new JobStoreError(`${op}: no job '${jobId}'`);
    if (current.state === 'FINISHED') {
      throw new JobStoreError(`${op}: job '${jobId}' is already FINISHED (status ${current.status ?? 'none'}); ` +
        `it cannot move to ${state}`);
    }
    if (state !== 'FINISHED') {
      if (extra.status !== undefined || extra.finishedAtMs !== undefined) {
        throw new JobStoreError(`${op}: status and finishedAtMs apply only to FINISHED, not to ${state} (job '${jobId}')`);
      }
      this.statements.setState.run(state, null, null, jobId);
      return;
    }
    const finishedAtMs = extra.finishedAtMs ?? Date.now();
    requireInteger(op, 'finishedAtMs', finishedAtMs);
    if (extra.status !== undefined && typeof extra.status !== 'string') {
      throw new JobStoreError(`${op}: status ${String(extra.status)} must be a string`);
    }
    this.statements.setState.run(state, extra.status ?? null, finishedAtMs, jobId);
  }

  /** Replace `jobId`'s listing snapshot. */
  setSummary(jobId: string, summary: Uint8Array): void {
    requireBytes('setSummary', 'summary', summary);
    requireChanged('setSummary', jobId, this.statements.setSummary.run(summary, jobId));
  }

  /** Mark `jobId` as asked to stop; the flag survives a restart so a resumed job stops too. Idempotent. */
  requestCancel(jobId: string): void {
    requireChanged('requestCancel', jobId, this.statements.requestCancel.run(jobId));
  }

  /**
   * Store `checkpoint` as its job's only checkpoint, replacing any older one. Its sequence must not pass the
   * job's lastSequence: a checkpoint describes state the stored history has already reached.
   */
  saveCheckpoint(checkpoint: CheckpointRecord): void {
    const op = 'saveCheckpoint';
    requireInteger(op, 'sequence', checkpoint.sequence);
    requireInteger(op, 'timeMs', checkpoint.timeMs);
    requireBytes(op, 'payload', checkpoint.payload);
    const last = this.statements.lastSequence.get(checkpoint.jobId);
    if (last === undefined) throw new JobStoreError(`${op}: no job '${checkpoint.jobId}'`);
    if (checkpoint.sequence < 0 || checkpoint.sequence > last) {
      throw new JobStoreError(`${op}: job '${checkpoint.jobId}' checkpoint sequence ${checkpoint.sequence} is ` +
        `outside its history 0..${last}`);
    }
    this.statements.saveCheckpoint.run(checkpoint.jobId, checkpoint.sequence, checkpoint.timeMs, checkpoint.payload);
  }

  /** Return `jobId`'s checkpoint, or undefined if it has none. */
  latestCheckpoint(jobId: string): CheckpointRecord | undefined {
    const row = this.statements.latestCheckpoint.get(jobId);
    return row === undefined ? undefined : {
      jobId: row.job_id,
      sequence: row.sequence,
      timeMs: row.time_ms,
      payload: bytes(row.payload),
    };
  }

  /**
   * Delete `jobId`'s events after `sequence` and set its lastSequence to `sequence`, so a job resumed from a
   * checkpoint continues its history from there. A checkpoint past `sequence` is deleted with them (it describes
   * events that no longer exist). Returns the number of events deleted.
   */
  truncateEventsAfter(jobId: string, sequence: number): number {
    return this.truncateTransaction(jobId, sequence);
  }

  /**
   * Record that a resumed job started running from its checkpoint at `sequence` (null clears the mark). A mark still
   * there at the next start, with the checkpoint unchanged, says the server stopped uncleanly during that resume.
   */
  setResumeMark(jobId: string, sequence: number | null): void {
    if (sequence !== null) requireInteger('setResumeMark', 'sequence', sequence);
    this.statements.setResumeMark.run(sequence, jobId);
  }

  /** Return a job's resume mark (see setResumeMark), or null. */
  resumeMark(jobId: string): number | null {
    return this.statements.resumeMark.get(jobId) ?? null;
  }

  /** Write something that changes nothing (the schema version, again): throws as a real write would on a full disk. */
  probeWrite(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    this.db.pragma(`user_version = ${Math.trunc(version)}`);
  }

  /** Clear every unfinished job's resume mark: a clean shutdown checkpointed them, so no resume failed. */
  clearResumeMarks(): void {
    this.statements.clearResumeMarks.run();
  }

  /** Return the QUEUED and RUNNING jobs oldest first: the work to resume after a restart, in submission order. */
  unfinishedJobs(): JobRecord[] {
    return this.statements.unfinished.all().map(jobFromRow);
  }

  /** Count jobs, optionally only those in `state` and/or of `clientId`. */
  countJobs(filter: { state?: JobState; clientId?: string } = {}): number {
    if (filter.state !== undefined) requireState('countJobs', filter.state);
    const { count } = this.statements;
    if (filter.state !== undefined && filter.clientId !== undefined) return count.byBoth.get(filter.state, filter.clientId)!;
    if (filter.state !== undefined) return count.byState.get(filter.state)!;
    if (filter.clientId !== undefined) return count.byClient.get(filter.clientId)!;
    return count.all.get()!;
  }

  /** Delete `jobId` with its events and checkpoint. */
  deleteJob(jobId: string): void {
    requireChanged('deleteJob', jobId, this.statements.deleteJob.run(jobId));
  }

  private appendInTransaction(events: readonly EventRecord[]): void {
    const op = 'appendEvents';
    const next = new Map<string, number>(); // job id → the sequence its next event must carry
    for (const event of events) {
      let expected = next.get(event.jobId);
      if (expected === undefined) {
        const last = this.statements.lastSequence.get(event.jobId);
        if (last === undefined) throw new JobStoreError(`${op}: no job '${event.jobId}'`);
        expected = last + 1;
      }
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
      this.statements.insertEvent.run(event.jobId, event.sequence, event.timeMs, event.kind, event.restart,
        event.iteration, event.payload);
      next.set(event.jobId, expected + 1);
    }
    for (const [jobId, following] of next) this.statements.setLastSequence.run(following - 1, jobId);
  }

  private truncateInTransaction(jobId: string, sequence: number): number {
    const op = 'truncateEventsAfter';
    requireInteger(op, 'sequence', sequence);
    const last = this.statements.lastSequence.get(jobId);
    if (last === undefined) throw new JobStoreError(`${op}: no job '${jobId}'`);
    if (sequence < 0 || sequence > last) {
      throw new JobStoreError(`${op}: sequence ${sequence} is outside job '${jobId}''s history 0..${last}`);
    }
    const { changes } = this.statements.truncateEvents.run(jobId, sequence);
    this.statements.setLastSequence.run(sequence, jobId);
    this.statements.truncateCheckpoint.run(jobId, sequence);
    return changes;
  }
}

/** Prepare every statement once: preparing is the costly part of a small query. */
function prepareStatements(db: Database.Database) {
  const count = (where: string) => db.prepare(`SELECT count(*) FROM jobs ${where}`).pluck();
  return {
    insertJob: db.prepare<[Record<string, unknown>]>(`INSERT INTO jobs (id, client_id, model, label, spec, target_ids,
      target_text, state, status, cancel_requested, created_at, finished_at) VALUES (@id, @client_id, @model, @label,
      @spec, @target_ids, @target_text, @state, @status, @cancel_requested, @created_at, @finished_at)`),
    getJob: db.prepare<[string], JobRow>(`SELECT ${jobColumns} FROM jobs WHERE id = ?`),
    getState: db.prepare<[string], { state: JobState; status: string | null }>('SELECT state, status FROM jobs WHERE id = ?'),
    jobCursor: db.prepare<[string], { row: number; created_at: number; client_id: string }>(
      'SELECT row, created_at, client_id FROM jobs WHERE id = ?'),
    listFirst: db.prepare<[string, number], JobRow>(
      `SELECT ${jobColumns} FROM jobs WHERE client_id = ? ${newestFirst} LIMIT ?`),
    listBefore: db.prepare<[string, number, number, number], JobRow>(
      `SELECT ${jobColumns} FROM jobs WHERE client_id = ? AND (created_at, row) < (?, ?) ${newestFirst} LIMIT ?`),
    listAllFirst: db.prepare<[number], JobRow>(`SELECT ${jobColumns} FROM jobs ${newestFirst} LIMIT ?`),
    listAllBefore: db.prepare<[number, number, number], JobRow>(
      `SELECT ${jobColumns} FROM jobs WHERE (created_at, row) < (?, ?) ${newestFirst} LIMIT ?`),
    unfinished: db.prepare<[], JobRow>(
      `SELECT ${jobColumns} FROM jobs WHERE state IN ('QUEUED', 'RUNNING') ${oldestFirst}`),
    lastSequence: db.prepare<[string], number>('SELECT last_sequence FROM jobs WHERE id = ?').pluck(),
    setLastSequence: db.prepare<[number, string]>('UPDATE jobs SET last_sequence = ? WHERE id = ?'),
    insertEvent: db.prepare<[string, number, number, string, number | null, number | null, Uint8Array]>(
      `INSERT INTO events (${eventColumns}) VALUES (?, ?, ?, ?, ?, ?, ?)`),
    events: db.prepare<[string, number, number], EventRow>(
      `SELECT ${eventColumns} FROM events WHERE job_id = ? AND sequence > ? ORDER BY sequence LIMIT ?`),
    truncateEvents: db.prepare<[string, number]>('DELETE FROM events WHERE job_id = ? AND sequence > ?'),
    setState: db.prepare<[JobState, string | null, number | null, string]>(
      'UPDATE jobs SET state = ?, status = ?, finished_at = ? WHERE id = ?'),
    setSummary: db.prepare<[Uint8Array, string]>('UPDATE jobs SET summary = ? WHERE id = ?'),
    requestCancel: db.prepare<[string]>('UPDATE jobs SET cancel_requested = 1 WHERE id = ?'),
    saveCheckpoint: db.prepare<[string, number, number, Uint8Array]>(`INSERT INTO checkpoints (job_id, sequence,
      time_ms, payload) VALUES (?, ?, ?, ?) ON CONFLICT (job_id) DO UPDATE SET sequence = excluded.sequence,
      time_ms = excluded.time_ms, payload = excluded.payload`),
    latestCheckpoint: db.prepare<[string], CheckpointRow>(
      'SELECT job_id, sequence, time_ms, payload FROM checkpoints WHERE job_id = ?'),
    truncateCheckpoint: db.prepare<[string, number]>('DELETE FROM checkpoints WHERE job_id = ? AND sequence > ?'),
    deleteJob: db.prepare<[string]>('DELETE FROM jobs WHERE id = ?'),
    setResumeMark: db.prepare<[number | null, string]>('UPDATE jobs SET resumed_from = ? WHERE id = ?'),
    resumeMark: db.prepare<[string], number | null>('SELECT resumed_from FROM jobs WHERE id = ?').pluck(),
    clearResumeMarks: db.prepare<[]>(
      "UPDATE jobs SET resumed_from = NULL WHERE state IN ('QUEUED', 'RUNNING') AND resumed_from IS NOT NULL"),
    count: {
      all: count('') as Database.Statement<[], number>,
      byState: count('WHERE state = ?') as Database.Statement<[string], number>,
      byClient: count('WHERE client_id = ?') as Database.Statement<[string], number>,
      byBoth: count('WHERE state = ? AND client_id = ?') as Database.Statement<[string, string], number>,
    },
  };
}

function jobFromRow(row: JobRow): JobRecord {
  return {
    id: row.id,
    clientId: row.client_id,
    model: row.model,
    label: row.label,
    spec: bytes(row.spec),
    targetIds: JSON.parse(row.target_ids) as number[],
    targetText: row.target_text,
    state: row.state,
    status: row.status,
    cancelRequested: row.cancel_requested === 1,
    createdAtMs: row.created_at,
    finishedAtMs: row.finished_at,
    lastSequence: row.last_sequence,
    summary: row.summary === null ? null : bytes(row.summary),
  };
}

function eventFromRow(row: EventRow): EventRecord {
  return {
    jobId: row.job_id,
    sequence: row.sequence,
    timeMs: row.time_ms,
    kind: row.kind,
    restart: row.restart,
    iteration: row.iteration,
    payload: bytes(row.payload),
  };
}

/** Hand out a blob as a plain Uint8Array (no copy): callers see the declared type, not Buffer's other methods. */
function bytes(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

function requireChanged(op: string, jobId: string, result: Database.RunResult): void {
  if (result.changes === 0) throw new JobStoreError(`${op}: no job '${jobId}'`);
}

function requireId(op: string, field: string, value: unknown): void {
  if (typeof value !== 'string' || value.length === 0) {
    throw new JobStoreError(`${op}: ${field} ${JSON.stringify(value)} must be a non-empty string`);
  }
}

function requireText(op: string, field: string, value: unknown): void {
  if (typeof value !== 'string') throw new JobStoreError(`${op}: ${field} ${String(value)} must be a string`);
}

function requireBytes(op: string, field: string, value: unknown): void {
  if (!(value instanceof Uint8Array)) {
    throw new JobStoreError(`${op}: ${field} must be a Uint8Array, got ${value === null ? 'null' : typeof value}`);
  }
}

function requireInteger(op: string, field: string, value: unknown): void {
  if (!Number.isSafeInteger(value)) throw new JobStoreError(`${op}: ${field} ${String(value)} must be an integer`);
}

function requireNullableInteger(op: string, field: string, value: unknown): void {
  if (value !== null) requireInteger(op, field, value);
}

function requireState(op: string, state: unknown): void {
  if (typeof state !== 'string' || !jobStates.has(state)) {
    throw new JobStoreError(`${op}: state '${String(state)}' must be one of ${[...jobStates].join(', ')}`);
  }
}
