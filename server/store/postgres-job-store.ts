// The job store in a PostgreSQL database (node-postgres pool): for several servers sharing one store. Same contract
// and checks as the SQLite store (job-repository.ts); each call commits before its promise resolves. Writes that
// read before they write (appending events, moving a state, checkpointing, truncating) lock the job's row first
// (SELECT … FOR UPDATE), so two servers appending to one job cannot both pass the sequence check: the second waits,
// then sees the first one's last sequence.
import type { Pool, PoolClient } from 'pg';
import type {
  CheckpointRecord, EventKind, EventRecord, JobRecord, JobRepository, JobState, ListOptions, NewJob, WriteBatch,
} from './job-repository.js';
import {
  checkCheckpoint, checkEvent, checkNewJob, checkStateChange, checkTruncation, defaultListLimit, JobStoreError,
  requireBytes, requireInteger, requireLimit, requireState,
} from './job-repository.js';
import type { PostgresPoolOptions } from './postgres-schema.js';
import { buffer, bytes, inTransaction, isUniqueViolation, openPostgresPool, redactUrl } from './postgres-schema.js';

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
  cancel_requested: boolean;
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

/** Anything that runs a query: the pool (one statement, its own transaction) or a client inside a transaction. */
type Queryable = Pick<Pool | PoolClient, 'query'>;

const jobColumns = `id, client_id, model, label, spec, target_ids, target_text, state, status, cancel_requested,
  created_at, finished_at, last_sequence, summary`;
const eventColumns = 'job_id, sequence, time_ms, kind, restart, iteration, payload';
const newestFirst = 'ORDER BY created_at DESC, row DESC';
const oldestFirst = 'ORDER BY created_at ASC, row ASC';

/** Store jobs, events and checkpoints in a PostgreSQL database; see the module comment for the guarantees. */
export class PostgresJobStore implements JobRepository {
  private closed = false;

  private constructor(private readonly pool: Pool, readonly location: string) {}

  /**
   * Open the store in the database at `url` (postgres:// or postgresql://), creating or upgrading its schema; the
   * database itself must exist. `location` is the URL without its password.
   */
  static async open(url: string, options?: Partial<PostgresPoolOptions>): Promise<PostgresJobStore> {
    return new PostgresJobStore(await openPostgresPool(url, JobStoreError, options), redactUrl(url));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  async insertJob(job: NewJob): Promise<void> {
    checkNewJob(job);
    try {
      await this.pool.query(`INSERT INTO jobs (id, client_id, model, label, spec, target_ids, target_text, state, status,
        cancel_requested, created_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`, [
        job.id, job.clientId, job.model, job.label, buffer(job.spec), JSON.stringify(job.targetIds), job.targetText,
        job.state, job.status, job.cancelRequested, job.createdAtMs, job.finishedAtMs,
      ]);
    } catch (error: unknown) {
      if (isUniqueViolation(error)) throw new JobStoreError(`insertJob: job '${job.id}' already exists`);
      throw error;
    }
  }

  async getJob(id: string): Promise<JobRecord | undefined> {
    const { rows } = await this.pool.query<JobRow>(`SELECT ${jobColumns} FROM jobs WHERE id = $1`, [id]);
    return rows.length === 0 ? undefined : jobFromRow(rows[0]);
  }

  async listJobs(clientId: string, options: ListOptions = {}): Promise<JobRecord[]> {
    const op = 'listJobs';
    const limit = options.limit ?? defaultListLimit;
    requireLimit(op, limit);
    if (options.beforeId === undefined) {
      return this.jobs(`SELECT ${jobColumns} FROM jobs WHERE client_id = $1 ${newestFirst} LIMIT $2`, [clientId, limit]);
    }
    const cursor = await this.cursor(options.beforeId);
    // Another client's job is reported exactly like a missing one: a listing must not reveal which ids exist.
    if (cursor === undefined || cursor.client_id !== clientId) {
      throw new JobStoreError(`${op}: beforeId '${options.beforeId}' is not a job of client '${clientId}'`);
    }
    return this.jobs(`SELECT ${jobColumns} FROM jobs WHERE client_id = $1 AND (created_at, row) < ($2, $3)
      ${newestFirst} LIMIT $4`, [clientId, cursor.created_at, cursor.row, limit]);
  }

  async listAllJobs(options: ListOptions = {}): Promise<JobRecord[]> {
    const op = 'listAllJobs';
    const limit = options.limit ?? defaultListLimit;
    requireLimit(op, limit);
    if (options.beforeId === undefined) return this.jobs(`SELECT ${jobColumns} FROM jobs ${newestFirst} LIMIT $1`, [limit]);
    const cursor = await this.cursor(options.beforeId);
    if (cursor === undefined) throw new JobStoreError(`${op}: beforeId '${options.beforeId}' is not a job`);
    return this.jobs(`SELECT ${jobColumns} FROM jobs WHERE (created_at, row) < ($1, $2) ${newestFirst} LIMIT $3`,
      [cursor.created_at, cursor.row, limit]);
  }

  async unfinishedJobs(): Promise<JobRecord[]> {
    return this.jobs(`SELECT ${jobColumns} FROM jobs WHERE state IN ('QUEUED', 'RUNNING') ${oldestFirst}`, []);
  }

  async countJobs(filter: { state?: JobState; clientId?: string } = {}): Promise<number> {
    if (filter.state !== undefined) requireState('countJobs', filter.state);
    // A null parameter matches everything, so one statement serves every combination of filters.
    const { rows } = await this.pool.query<{ count: number }>(`SELECT count(*) AS count FROM jobs
      WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR client_id = $2)`,
    [filter.state ?? null, filter.clientId ?? null]);
    return rows[0].count;
  }

  async deleteJob(jobId: string): Promise<void> {
    // Events and the checkpoint go with it (ON DELETE CASCADE).
    requireChanged('deleteJob', jobId, await this.pool.query('DELETE FROM jobs WHERE id = $1', [jobId]));
  }

  async appendEvents(events: readonly EventRecord[]): Promise<void> {
    if (events.length === 0) return;
    await this.commit({ events });
  }

  async events(jobId: string, afterSequence = 0, limit?: number): Promise<EventRecord[]> {
    const op = 'events';
    requireInteger(op, 'afterSequence', afterSequence);
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) {
      throw new JobStoreError(`${op}: limit ${limit} must be an integer ≥ 0`);
    }
    // LIMIT NULL is no limit.
    const { rows } = await this.pool.query<EventRow>(`SELECT ${eventColumns} FROM events WHERE job_id = $1 AND sequence > $2
      ORDER BY sequence LIMIT $3`, [jobId, afterSequence, limit ?? null]);
    return rows.map(eventFromRow);
  }

  async setState(jobId: string, state: JobState, extra: { status?: string; finishedAtMs?: number } = {}): Promise<void> {
    requireState('setState', state);
    await inTransaction(this.pool, async (client) => {
      await lockJobs(client, [jobId]);
      await setStateIn(client, jobId, state, extra);
    });
  }

  async setSummary(jobId: string, summary: Uint8Array): Promise<void> {
    await setSummaryIn(this.pool, jobId, summary);
  }

  async requestCancel(jobId: string): Promise<void> {
    requireChanged('requestCancel', jobId,
      await this.pool.query('UPDATE jobs SET cancel_requested = true WHERE id = $1', [jobId]));
  }

  async saveCheckpoint(checkpoint: CheckpointRecord): Promise<void> {
    await inTransaction(this.pool, async (client) => {
      await lockJobs(client, [checkpoint.jobId]);
      await saveCheckpointIn(client, checkpoint);
    });
  }

  async latestCheckpoint(jobId: string): Promise<CheckpointRecord | undefined> {
    const { rows } = await this.pool.query<{ job_id: string; sequence: number; time_ms: number; payload: Buffer }>(
      'SELECT job_id, sequence, time_ms, payload FROM checkpoints WHERE job_id = $1', [jobId]);
    if (rows.length === 0) return undefined;
    const [row] = rows;
    return { jobId: row.job_id, sequence: row.sequence, timeMs: row.time_ms, payload: bytes(row.payload) };
  }

  async truncateEventsAfter(jobId: string, sequence: number): Promise<number> {
    return inTransaction(this.pool, async (client) => {
      const last = await lockJobs(client, [jobId]);
      checkTruncation(jobId, sequence, last.get(jobId));
      const { rowCount } = await client.query('DELETE FROM events WHERE job_id = $1 AND sequence > $2', [jobId, sequence]);
      await client.query('UPDATE jobs SET last_sequence = $1 WHERE id = $2', [sequence, jobId]);
      await client.query('DELETE FROM checkpoints WHERE job_id = $1 AND sequence > $2', [jobId, sequence]);
      return rowCount ?? 0;
    });
  }

  async setResumeMark(jobId: string, sequence: number | null): Promise<void> {
    await setResumeMarkIn(this.pool, jobId, sequence);
  }

  async resumeMark(jobId: string): Promise<number | null> {
    const { rows } = await this.pool.query<{ resumed_from: number | null }>(
      'SELECT resumed_from FROM jobs WHERE id = $1', [jobId]);
    return rows[0]?.resumed_from ?? null;
  }

  async clearResumeMarks(): Promise<void> {
    await this.pool.query(clearResumeMarksSql);
  }

  async commit(batch: WriteBatch): Promise<void> {
    await inTransaction(this.pool, async (client) => {
      // Lock every job the batch touches up front, in one order (by id), so two servers committing batches over the
      // same jobs wait for each other instead of deadlocking.
      const ids = new Set<string>();
      for (const event of batch.events ?? []) ids.add(event.jobId);
      for (const part of [batch.summaries, batch.states, batch.resumeMarks, batch.checkpoints]) {
        for (const { jobId } of part ?? []) ids.add(jobId);
      }
      const last = await lockJobs(client, [...ids]);
      // Each part in WriteBatch's order.
      if (batch.events && batch.events.length > 0) await appendIn(client, batch.events, last);
      for (const { jobId, summary } of batch.summaries ?? []) await setSummaryIn(client, jobId, summary);
      for (const { jobId, state, ...extra } of batch.states ?? []) await setStateIn(client, jobId, state, extra);
      for (const { jobId, sequence } of batch.resumeMarks ?? []) await setResumeMarkIn(client, jobId, sequence);
      for (const checkpoint of batch.checkpoints ?? []) await saveCheckpointIn(client, checkpoint);
      if (batch.clearResumeMarks) await client.query(clearResumeMarksSql);
    });
  }

  /** Rewrite the schema version with itself: a real write, which fails as any would on a lost or full database. */
  async probeWrite(): Promise<void> {
    await this.pool.query('UPDATE recite_schema_version SET version = version');
  }

  private async jobs(sql: string, values: unknown[]): Promise<JobRecord[]> {
    const { rows } = await this.pool.query<JobRow>(sql, values);
    return rows.map(jobFromRow);
  }

  private async cursor(id: string): Promise<{ row: number; created_at: number; client_id: string } | undefined> {
    const { rows } = await this.pool.query<{ row: number; created_at: number; client_id: string }>(
      'SELECT row, created_at, client_id FROM jobs WHERE id = $1', [id]);
    return rows[0];
  }
}

const clearResumeMarksSql =
  "UPDATE jobs SET resumed_from = NULL WHERE state IN ('QUEUED', 'RUNNING') AND resumed_from IS NOT NULL";

/**
 * Lock the rows of the jobs `ids` until the transaction ends, in id order; returns each existing job's last
 * sequence as of the lock (a missing job is absent from the map).
 */
async function lockJobs(client: PoolClient, ids: readonly string[]): Promise<Map<string, number>> {
  if (ids.length === 0) return new Map();
  const { rows } = await client.query<{ id: string; last_sequence: number }>(
    'SELECT id, last_sequence FROM jobs WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE', [[...new Set(ids)]]);
  return new Map(rows.map((row) => [row.id, row.last_sequence]));
}

/**
 * Check `events` against their jobs' last sequences in `last` (locked by the caller) and insert them in one
 * statement; then advance each job's last sequence.
 */
async function appendIn(client: PoolClient, events: readonly EventRecord[], last: Map<string, number>): Promise<void> {
  const next = new Map<string, number>(); // job id → the sequence its next event must carry
  for (const event of events) {
    let expected = next.get(event.jobId);
    if (expected === undefined) {
      const stored = last.get(event.jobId);
      if (stored === undefined) throw new JobStoreError(`appendEvents: no job '${event.jobId}'`);
      expected = stored + 1;
    }
    checkEvent(event, expected);
    next.set(event.jobId, expected + 1);
  }
  // One round trip for the whole batch: each column as an array, zipped back into rows by unnest.
  await client.query(`INSERT INTO events (${eventColumns})
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[], $7::bytea[])`, [
    events.map((e) => e.jobId), events.map((e) => e.sequence), events.map((e) => e.timeMs), events.map((e) => e.kind),
    events.map((e) => e.restart), events.map((e) => e.iteration), events.map((e) => buffer(e.payload)),
  ]);
  const jobIds = [...next.keys()];
  await client.query(`UPDATE jobs SET last_sequence = moved.last FROM unnest($1::text[], $2::bigint[]) AS moved (id, last)
    WHERE jobs.id = moved.id`, [jobIds, jobIds.map((id) => next.get(id)! - 1)]);
  for (const [jobId, following] of next) last.set(jobId, following - 1);
}

async function setStateIn(client: PoolClient, jobId: string, state: JobState,
  extra: { status?: string; finishedAtMs?: number }): Promise<void> {
  const { rows } = await client.query<{ state: JobState; status: string | null }>(
    'SELECT state, status FROM jobs WHERE id = $1', [jobId]);
  const finishedAtMs = checkStateChange(jobId, rows[0], state, extra);
  await client.query('UPDATE jobs SET state = $1, status = $2, finished_at = $3 WHERE id = $4',
    [state, finishedAtMs === null ? null : extra.status ?? null, finishedAtMs, jobId]);
}

async function setSummaryIn(db: Queryable, jobId: string, summary: Uint8Array): Promise<void> {
  requireBytes('setSummary', 'summary', summary);
  requireChanged('setSummary', jobId, await db.query('UPDATE jobs SET summary = $1 WHERE id = $2', [buffer(summary), jobId]));
}

async function saveCheckpointIn(client: PoolClient, checkpoint: CheckpointRecord): Promise<void> {
  const { rows } = await client.query<{ last_sequence: number }>('SELECT last_sequence FROM jobs WHERE id = $1',
    [checkpoint.jobId]);
  checkCheckpoint(checkpoint, rows[0]?.last_sequence);
  await client.query(`INSERT INTO checkpoints (job_id, sequence, time_ms, payload) VALUES ($1, $2, $3, $4)
    ON CONFLICT (job_id) DO UPDATE SET sequence = excluded.sequence, time_ms = excluded.time_ms, payload = excluded.payload`,
  [checkpoint.jobId, checkpoint.sequence, checkpoint.timeMs, buffer(checkpoint.payload)]);
}

async function setResumeMarkIn(db: Queryable, jobId: string, sequence: number | null): Promise<void> {
  if (sequence !== null) requireInteger('setResumeMark', 'sequence', sequence);
  await db.query('UPDATE jobs SET resumed_from = $1 WHERE id = $2', [sequence, jobId]);
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
    cancelRequested: row.cancel_requested,
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

function requireChanged(op: string, jobId: string, result: { rowCount: number | null }): void {
  if (result.rowCount === 0) throw new JobStoreError(`${op}: no job '${jobId}'`);
}
