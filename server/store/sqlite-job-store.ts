// The job store in one SQLite file (better-sqlite3): the default for one machine. Every call runs synchronously
// under its promise and commits before it resolves (WAL, synchronous=NORMAL): a server killed outright and restarted
// on the same file finds every write it had acknowledged. The contract and its checks are in job-repository.ts.
// One server uses a file, so its notices (listen) are this process's own, and leases only guard against a
// previous run of it.
import { EventEmitter } from 'node:events';
import Database from 'better-sqlite3';
import { openDatabase } from './sqlite-schema.js';
import type {
  Admission, AdmissionResult, CheckpointRecord, ClaimedJob, EventRecord, JobRecord, JobRepository, JobState,
  Lease, ListOptions, NewJob, StoreNotice, WriteBatch,
} from './job-repository.js';
import {
  checkCheckpoint, checkEvent, checkNewJob, checkStateChange, checkTruncation, defaultListLimit, jobsOfBatch,
  JobStoreError, LeaseLostError, noticesOfBatch, requireBytes, requireId, requireInteger, requireLimit, requireState,
} from './job-repository.js';
import type { CheckpointRow, EventRow, JobRow } from './job-rows.js';
import {
  checkpointColumns, checkpointFromRow, eventColumns, eventFromRow, jobColumns, jobFromRow, newestFirst, oldestFirst,
  requireChanged,
} from './job-rows.js';

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

/** Store jobs, events and checkpoints in one SQLite file; see the module comment for the guarantees. */
export class SqliteJobStore implements JobRepository {
  private readonly db: Database.Database;
  private readonly file: string;
  private readonly statements: ReturnType<typeof prepareStatements>;
  private readonly commitTransaction: (batch: WriteBatch, fence?: Fence) => void;
  private readonly notices = new EventEmitter();
  private readonly claimStatements = new Map<number, Database.Statement<unknown[], JobRow & { lease_epoch: number }>>();
  private readonly truncateTransaction: (jobId: string, sequence: number) => number;

  private constructor(db: Database.Database, file: string) {
    this.db = db;
    this.file = file;
    this.statements = prepareStatements(db);
    this.commitTransaction = db.transaction((batch: WriteBatch, fence?: Fence) => this.applyBatch(batch, fence)).immediate;
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
    this.insertNow(job);
    this.announce({ jobId: job.id, clientId: job.clientId, kind: 'created', lastSequence: 0 });
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
    requireChanged('deleteJob', jobId, this.statements.deleteJob.run(jobId).changes);
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
    requireChanged('requestCancel', jobId, this.statements.requestCancel.run(jobId).changes);
    const job = this.statements.getJob.get(jobId)!;
    this.announce({ jobId, clientId: job.client_id, kind: 'cancel', lastSequence: job.last_sequence });
  }

  async saveCheckpoint(checkpoint: CheckpointRecord): Promise<void> {
    this.saveCheckpointNow(checkpoint);
  }

  async latestCheckpoint(jobId: string): Promise<CheckpointRecord | undefined> {
    const row = this.statements.latestCheckpoint.get(jobId);
    return row === undefined ? undefined : checkpointFromRow(row);
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

  async commit(batch: WriteBatch, fence?: Fence): Promise<void> {
    this.commitTransaction(batch, fence);
    for (const notice of noticesOfBatch(batch, (jobId) => this.statements.clientOf.get(jobId))) this.announce(notice);
  }

  async admitJob(job: NewJob, admission: Admission): Promise<AdmissionResult> {
    checkNewJob(job);
    requireInteger('admitJob', 'costBytes', admission.costBytes);
    const result = this.db.transaction((): AdmissionResult => {
      const use = this.statements.clientUse.get(job.clientId)!;
      if (use.jobs >= admission.maxJobs) return { admitted: false, reason: 'jobs', use };
      if (use.bytes + admission.costBytes > admission.maxQueuedBytes) return { admitted: false, reason: 'bytes', use };
      this.insertNow(job);
      const epoch = admission.owner === null ? 0 : 1;
      this.statements.admit.run(admission.owner, epoch,
        admission.owner === null ? null : Date.now() + admission.leaseMs, admission.costBytes, job.id);
      return { admitted: true, epoch };
    }).immediate();
    if (result.admitted) this.announce({ jobId: job.id, clientId: job.clientId, kind: 'created', lastSequence: 0 });
    return result;
  }

  async clientUse(clientId: string): Promise<{ jobs: number; bytes: number }> {
    return this.statements.clientUse.get(clientId)!;
  }

  async claimJobs(owner: string, models: readonly string[], limit: number, leaseMs: number,
    options: { ignoreLeases?: boolean } = {}): Promise<ClaimedJob[]> {
    requireId('claimJobs', 'owner', owner);
    requireLimit('claimJobs', limit);
    if (models.length === 0) return [];
    return this.db.transaction((): ClaimedJob[] => {
      const now = Date.now();
      const rows = this.claimStatement(models.length).all(...models, options.ignoreLeases ? 1 : 0, now, now, limit);
      return rows.map((row) => {
        const epoch = row.lease_epoch + 1;
        this.statements.claim.run(owner, epoch, now + leaseMs, row.id);
        return { record: jobFromRow(row), epoch };
      });
    }).immediate();
  }

  async renewLeases(owner: string, leases: readonly Lease[], leaseMs: number): Promise<string[]> {
    const until = Date.now() + leaseMs;
    return this.db.transaction(() => leases.filter((lease) =>
      this.statements.renew.run(until, lease.jobId, owner, lease.epoch).changes === 0).map((lease) => lease.jobId)).immediate();
  }

  async releaseLeases(owner: string, jobIds: readonly string[]): Promise<void> {
    this.db.transaction(() => {
      for (const jobId of jobIds) this.statements.release.run(jobId, owner);
    }).immediate();
  }

  async listen(onNotice: (notice: StoreNotice) => void): Promise<() => Promise<void>> {
    this.notices.on('notice', onNotice);
    return async () => { this.notices.off('notice', onNotice); };
  }

  async pruneFinishedHistories(finishedBeforeMs: number): Promise<number> {
    requireInteger('pruneFinishedHistories', 'finishedBeforeMs', finishedBeforeMs);
    return this.db.transaction(() => {
      const { changes } = this.statements.pruneEvents.run(finishedBeforeMs);
      this.statements.pruneCheckpoints.run(finishedBeforeMs);
      return changes;
    }).immediate();
  }

  // One prepared claim per count of models (a server serves a fixed few): claims run after every finished job.
  private claimStatement(models: number): Database.Statement<unknown[], JobRow & { lease_epoch: number }> {
    let statement = this.claimStatements.get(models);
    if (!statement) this.claimStatements.set(models, statement = this.db.prepare(claimCandidates(models)));
    return statement;
  }

  private announce(notice: StoreNotice): void {
    this.notices.emit('notice', notice);
  }

  /** Write the schema version again: throws as a real write would on a full disk. */
  async probeWrite(): Promise<void> {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    this.db.pragma(`user_version = ${Math.trunc(version)}`);
  }

  private insertNow(job: NewJob): void {
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

  // Runs inside commitTransaction: the fence first (nothing is written for a batch that holds a lost lease), then
  // each part in WriteBatch's order.
  private applyBatch(batch: WriteBatch, fence?: Fence): void {
    if (fence) {
      const lost = jobsOfBatch(batch).filter((jobId) => {
        const held = this.statements.lease.get(jobId);
        return held === undefined || held.owner !== fence.owner || held.lease_epoch !== fence.leases.get(jobId);
      });
      if (lost.length > 0) {
        throw new LeaseLostError(lost, `commit: ${lost.length} job(s) are no longer leased to ${fence.owner} at the ` +
          `epoch it wrote with (first: '${lost[0]}'); nothing of the batch was written`);
      }
    }
    if (batch.events && batch.events.length > 0) this.appendNow(batch.events, fence);
    for (const { jobId, summary } of batch.summaries ?? []) this.setSummaryNow(jobId, summary);
    for (const { jobId, state, ...extra } of batch.states ?? []) this.setStateNow(jobId, state, extra);
    for (const { jobId, sequence } of batch.resumeMarks ?? []) this.setResumeMarkNow(jobId, sequence);
    for (const checkpoint of batch.checkpoints ?? []) this.saveCheckpointNow(checkpoint);
    if (batch.clearResumeMarks) this.statements.clearResumeMarks.run();
  }

  private appendNow(events: readonly EventRecord[], fence?: Fence): void {
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
        event.iteration, event.payload, fence?.leases.get(event.jobId) ?? null);
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
    requireChanged('setSummary', jobId, this.statements.setSummary.run(summary, jobId).changes);
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
    insertEvent: db.prepare<[string, number, number, string, number | null, number | null, Uint8Array, number | null]>(
      `INSERT INTO events (${eventColumns}, lease_epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
    clientOf: db.prepare<[string], string>('SELECT client_id FROM jobs WHERE id = ?').pluck(),
    clientUse: db.prepare<[string], { jobs: number; bytes: number }>(
      "SELECT count(*) AS jobs, coalesce(sum(cost_bytes), 0) AS bytes FROM jobs WHERE client_id = ? AND state <> 'FINISHED'"),
    admit: db.prepare<[string | null, number, number | null, number, string]>(
      'UPDATE jobs SET owner = ?, lease_epoch = ?, lease_expires_at = ?, cost_bytes = ? WHERE id = ?'),
    claim: db.prepare<[string, number, number, string]>(
      'UPDATE jobs SET owner = ?, lease_epoch = ?, lease_expires_at = ? WHERE id = ?'),
    renew: db.prepare<[number, string, string, number]>(
      "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND owner = ? AND lease_epoch = ? AND state <> 'FINISHED'"),
    release: db.prepare<[string, string]>(
      'UPDATE jobs SET owner = NULL, lease_expires_at = NULL WHERE id = ? AND owner = ?'),
    lease: db.prepare<[string], { owner: string | null; lease_epoch: number }>(
      'SELECT owner, lease_epoch FROM jobs WHERE id = ?'),
    pruneEvents: db.prepare<[number]>(`DELETE FROM events WHERE job_id IN (SELECT id FROM jobs WHERE state = 'FINISHED'
      AND finished_at < ?) AND sequence < (SELECT last_sequence FROM jobs WHERE jobs.id = events.job_id)`),
    pruneCheckpoints: db.prepare<[number]>(
      "DELETE FROM checkpoints WHERE job_id IN (SELECT id FROM jobs WHERE state = 'FINISHED' AND finished_at < ?)"),
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
      `SELECT ${checkpointColumns} FROM checkpoints WHERE job_id = ?`),
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

type Fence = { owner: string; leases: ReadonlyMap<string, number> };

/**
 * The jobs a claim takes, in the order it takes them: each client's jobs oldest first, interleaved so the client
 * with the fewest jobs held now goes first (a claim of many jobs is shared out between clients, not taken from the
 * oldest one's backlog alone). Parameters: the models, then ignoreLeases (0/1), now, now, limit.
 */
function claimCandidates(models: number): string {
  return `WITH open AS (
      SELECT ${jobColumns}, row, lease_epoch,
        row_number() OVER (PARTITION BY client_id ORDER BY created_at, row) AS turn
      FROM jobs
      WHERE state <> 'FINISHED' AND model IN (${Array(models).fill('?').join(', ')})
        AND (? = 1 OR owner IS NULL OR lease_expires_at < ?)
    ), held AS (
      SELECT client_id, count(*) AS jobs FROM jobs
      WHERE state <> 'FINISHED' AND owner IS NOT NULL AND lease_expires_at >= ? GROUP BY client_id
    )
    SELECT open.* FROM open LEFT JOIN held USING (client_id)
    ORDER BY coalesce(held.jobs, 0) + open.turn, open.created_at, open.row
    LIMIT ?`;
}
