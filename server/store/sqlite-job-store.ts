// The job store in one SQLite file (better-sqlite3): the default for one machine. Every call runs synchronously
// under its promise and commits before it resolves (WAL, synchronous=NORMAL): a server killed outright and restarted
// on the same file finds every write it had acknowledged. The contract and its checks are in job-repository.ts.
import Database from 'better-sqlite3';
import { openDatabase } from './sqlite-schema.js';
import type {
  CheckpointRecord, EventKind, EventRecord, JobRecord, JobRepository, JobState, ListOptions, NewJob, WriteBatch,
} from './job-repository.js';
import {
  checkCheckpoint, checkEvent, checkNewJob, checkStateChange, checkTruncation, defaultListLimit, JobStoreError,
  requireBytes, requireInteger, requireLimit, requireState,
} from './job-repository.js';

/** Options of {@link SqliteJobStore.open}. */
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
export class SqliteJobStore implements JobRepository {
  private readonly db: Database.Database;
  private readonly file: string;
  private readonly statements: ReturnType<typeof prepareStatements>;
  private readonly commitTransaction: (batch: WriteBatch) => void;
  private readonly truncateTransaction: (jobId: string, sequence: number) => number;

  private constructor(db: Database.Database, file: string) {
    this.db = db;
    this.file = file;
    this.statements = prepareStatements(db);
    this.commitTransaction = db.transaction((batch: WriteBatch) => this.applyBatch(batch)).immediate;
    this.truncateTransaction = db.transaction((jobId: string, sequence: number) =>
      this.truncateInTransaction(jobId, sequence)).immediate;
  }

  /**
   * Open (or create) the store in `file`: create or upgrade the schema, and set WAL, synchronous=NORMAL (durable
   * against a process crash; a power loss may lose the last transactions but never corrupts), a busy timeout and
   * foreign keys. `':memory:'` gives a throwaway store for tests.
   */
  static open(file: string, options?: Partial<JobStoreOptions>): SqliteJobStore {
    const { busyTimeoutMs } = makeJobStoreOptions(options);
    if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
      throw new JobStoreError(`open: busyTimeoutMs ${busyTimeoutMs} must be an integer ≥ 0`);
    }
    return new SqliteJobStore(openDatabase(file, busyTimeoutMs, JobStoreError, { checkIntegrity: true }), file);
  }

  get location(): string {
    return this.file;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  async insertJob(job: NewJob): Promise<void> {
    checkNewJob(job);
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
        throw new JobStoreError(`insertJob: job '${job.id}' already exists`);
      }
      throw error;
    }
  }

  async getJob(id: string): Promise<JobRecord | undefined> {
    const row = this.statements.getJob.get(id);
    return row === undefined ? undefined : jobFromRow(row);
  }

  async listJobs(clientId: string, options: ListOptions = {}): Promise<JobRecord[]> {
    const op = 'listJobs';
    const limit = options.limit ?? defaultListLimit;
    requireLimit(op, limit);
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

  async listAllJobs(options: ListOptions = {}): Promise<JobRecord[]> {
    const op = 'listAllJobs';
    const limit = options.limit ?? defaultListLimit;
    requireLimit(op, limit);
    if (options.beforeId === undefined) return this.statements.listAllFirst.all(limit).map(jobFromRow);
    const cursor = this.statements.jobCursor.get(options.beforeId);
    if (cursor === undefined) throw new JobStoreError(`${op}: beforeId '${options.beforeId}' is not a job`);
    return this.statements.listAllBefore.all(cursor.created_at, cursor.row, limit).map(jobFromRow);
  }

  async unfinishedJobs(): Promise<JobRecord[]> {
    return this.statements.unfinished.all().map(jobFromRow);
  }

  async countJobs(filter: { state?: JobState; clientId?: string } = {}): Promise<number> {
    if (filter.state !== undefined) requireState('countJobs', filter.state);
    const { count } = this.statements;
    if (filter.state !== undefined && filter.clientId !== undefined) return count.byBoth.get(filter.state, filter.clientId)!;
    if (filter.state !== undefined) return count.byState.get(filter.state)!;
    if (filter.clientId !== undefined) return count.byClient.get(filter.clientId)!;
    return count.all.get()!;
  }

  async deleteJob(jobId: string): Promise<void> {
    requireChanged('deleteJob', jobId, this.statements.deleteJob.run(jobId));
  }

  async appendEvents(events: readonly EventRecord[]): Promise<void> {
    if (events.length === 0) return;
    this.commitTransaction({ events });
  }

  async events(jobId: string, afterSequence = 0, limit?: number): Promise<EventRecord[]> {
    const op = 'events';
    requireInteger(op, 'afterSequence', afterSequence);
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) {
      throw new JobStoreError(`${op}: limit ${limit} must be an integer ≥ 0`);
    }
    return this.statements.events.all(jobId, afterSequence, limit ?? -1).map(eventFromRow);
  }

  async setState(jobId: string, state: JobState, extra: { status?: string; finishedAtMs?: number } = {}): Promise<void> {
    this.setStateNow(jobId, state, extra);
  }

  async setSummary(jobId: string, summary: Uint8Array): Promise<void> {
    this.setSummaryNow(jobId, summary);
  }

  async requestCancel(jobId: string): Promise<void> {
    requireChanged('requestCancel', jobId, this.statements.requestCancel.run(jobId));
  }

  async saveCheckpoint(checkpoint: CheckpointRecord): Promise<void> {
    this.saveCheckpointNow(checkpoint);
  }

  async latestCheckpoint(jobId: string): Promise<CheckpointRecord | undefined> {
    const row = this.statements.latestCheckpoint.get(jobId);
    return row === undefined ? undefined : {
      jobId: row.job_id,
      sequence: row.sequence,
      timeMs: row.time_ms,
      payload: bytes(row.payload),
    };
  }

  async truncateEventsAfter(jobId: string, sequence: number): Promise<number> {
    return this.truncateTransaction(jobId, sequence);
  }

  async setResumeMark(jobId: string, sequence: number | null): Promise<void> {
    this.setResumeMarkNow(jobId, sequence);
  }

  async resumeMark(jobId: string): Promise<number | null> {
    return this.statements.resumeMark.get(jobId) ?? null;
  }

  async clearResumeMarks(): Promise<void> {
    this.statements.clearResumeMarks.run();
  }

  async commit(batch: WriteBatch): Promise<void> {
    this.commitTransaction(batch);
  }

  /** Write the schema version again: throws as a real write would on a full disk. */
  async probeWrite(): Promise<void> {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    this.db.pragma(`user_version = ${Math.trunc(version)}`);
  }

  // Runs inside commitTransaction: each part in WriteBatch's order.
  private applyBatch(batch: WriteBatch): void {
    if (batch.events && batch.events.length > 0) this.appendNow(batch.events);
    for (const { jobId, summary } of batch.summaries ?? []) this.setSummaryNow(jobId, summary);
    for (const { jobId, state, ...extra } of batch.states ?? []) this.setStateNow(jobId, state, extra);
    for (const { jobId, sequence } of batch.resumeMarks ?? []) this.setResumeMarkNow(jobId, sequence);
    for (const checkpoint of batch.checkpoints ?? []) this.saveCheckpointNow(checkpoint);
    if (batch.clearResumeMarks) this.statements.clearResumeMarks.run();
  }

  private appendNow(events: readonly EventRecord[]): void {
    const next = new Map<string, number>(); // job id → the sequence its next event must carry
    for (const event of events) {
      let expected = next.get(event.jobId);
      if (expected === undefined) {
        const last = this.statements.lastSequence.get(event.jobId);
        if (last === undefined) throw new JobStoreError(`appendEvents: no job '${event.jobId}'`);
        expected = last + 1;
      }
      checkEvent(event, expected);
      this.statements.insertEvent.run(event.jobId, event.sequence, event.timeMs, event.kind, event.restart,
        event.iteration, event.payload);
      next.set(event.jobId, expected + 1);
    }
    for (const [jobId, following] of next) this.statements.setLastSequence.run(following - 1, jobId);
  }

  private setStateNow(jobId: string, state: JobState, extra: { status?: string; finishedAtMs?: number }): void {
    const finishedAtMs = checkStateChange(jobId, this.statements.getState.get(jobId), state, extra);
    this.statements.setState.run(state, finishedAtMs === null ? null : extra.status ?? null, finishedAtMs, jobId);
  }

  private setSummaryNow(jobId: string, summary: Uint8Array): void {
    requireBytes('setSummary', 'summary', summary);
    requireChanged('setSummary', jobId, this.statements.setSummary.run(summary, jobId));
  }

  private saveCheckpointNow(checkpoint: CheckpointRecord): void {
    checkCheckpoint(checkpoint, this.statements.lastSequence.get(checkpoint.jobId));
    this.statements.saveCheckpoint.run(checkpoint.jobId, checkpoint.sequence, checkpoint.timeMs, checkpoint.payload);
  }

  private setResumeMarkNow(jobId: string, sequence: number | null): void {
    if (sequence !== null) requireInteger('setResumeMark', 'sequence', sequence);
    this.statements.setResumeMark.run(sequence, jobId);
  }

  private truncateInTransaction(jobId: string, sequence: number): number {
    checkTruncation(jobId, sequence, this.statements.lastSequence.get(jobId));
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
