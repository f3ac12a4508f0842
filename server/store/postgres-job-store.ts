// The job store in a PostgreSQL database (node-postgres pool): for several servers sharing one store. Same contract
// and checks as the SQLite store (job-repository.ts); each call commits before its promise resolves. Writes that
// read before they write (appending events, moving a state, checkpointing, truncating) lock the job's row first
// (SELECT … FOR UPDATE), so two servers appending to one job cannot both pass the sequence check: the second waits,
// then sees the first one's last sequence.
// Several servers share the store: leases (owner, epoch, expiry) are timed by the database's clock, never a
// server's own (their clocks may differ); a quota is counted under a per-client advisory lock; a claim skips the rows
// another server is claiming (FOR UPDATE SKIP LOCKED); and every change is announced with NOTIFY on
// {@link noticeChannel}, which PostgreSQL delivers to every listening server when, and only if, the write commits.
import pg from 'pg';
import type { Notification, Pool, PoolClient } from 'pg';
import type {
  Admission, AdmissionResult, CheckpointRecord, ClaimedJob, EventRecord, JobRecord, JobRepository,
  JobState, Lease, ListOptions, NewJob, StoreNotice, WriteBatch,
} from './job-repository.js';
import {
  checkCheckpoint, checkEvent, checkNewJob, checkStateChange, checkTruncation, defaultListLimit, jobsOfBatch,
  JobStoreError, LeaseLostError, noticesOfBatch, requireBytes, requireId, requireInteger, requireLimit, requireState,
} from './job-repository.js';
import type { PostgresPoolOptions } from './postgres-schema.js';
import type { CheckpointRow, EventRow, JobRow } from './job-rows.js';
import {
  checkpointColumns, checkpointFromRow, eventColumns, eventFromRow, jobColumns, jobFromRow, newestFirst, oldestFirst,
  requireChanged,
} from './job-rows.js';
import { buffer, inTransaction, isUniqueViolation, openPostgresPool, redactUrl } from './postgres-schema.js';

/** Options of {@link PostgresJobStore.open}: the pool's, and how the notice listener reports a reconnection. */
export interface PostgresJobStoreOptions extends PostgresPoolOptions {
  /**
   * Called when the listener's connection (see listen) was lost and is listening again: notices sent while it was
   * down are gone, so a caller that relies on them should re-read what it follows. Called with the error that ended
   * the connection, if there was one.
   */
  onListenerReconnect?: (error: Error | undefined) => void;
}

/** The NOTIFY channel every change is announced on. */
export const noticeChannel = 'recite_jobs';
/** PostgreSQL refuses a NOTIFY payload of 8000 bytes or more. */
const maxNoticeBytes = 7999;
/** The seed of the advisory lock key taken per client while its quota is counted (any constant: "quota" in ASCII). */
const quotaLockSeed = 0x71756f7461;
/** The database's clock in epoch ms: leases are timed by it, so servers whose clocks differ agree on expiry. */
const databaseNowMs = '(extract(epoch from clock_timestamp()) * 1000)::bigint';
/** How long the listener waits before its first and its longest reconnection attempt, in ms. */
const listenerBackoff = { firstMs: 100, maxMs: 5000 };

/** Anything that runs a query: the pool (one statement, its own transaction) or a client inside a transaction. */
type Queryable = Pick<Pool | PoolClient, 'query'>;

/** Store jobs, events and checkpoints in a PostgreSQL database; see the module comment for the guarantees. */
export class PostgresJobStore implements JobRepository {
  private closed = false;
  /** Callers of listen, all fed by one listener connection, which runs while there is any. */
  private readonly subscribers = new Set<(notice: StoreNotice) => void>();
  private listener: Promise<NoticeListener> | undefined;

  private constructor(private readonly pool: Pool, private readonly url: string, readonly location: string,
    private readonly onListenerReconnect?: (error: Error | undefined) => void) {}

  /**
   * Open the store in the database at `url` (postgres:// or postgresql://), creating or upgrading its schema; the
   * database itself must exist. `location` is the URL without its password.
   */
  static async open(url: string, options?: Partial<PostgresJobStoreOptions>): Promise<PostgresJobStore> {
    return new PostgresJobStore(await openPostgresPool(url, JobStoreError, options), url, redactUrl(url),
      options?.onListenerReconnect);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.subscribers.clear();
    const listener = this.listener;
    this.listener = undefined;
    if (listener) await listener.then((l) => l.stop(), () => {});
    await this.pool.end();
  }

  async insertJob(job: NewJob): Promise<void> {
    checkNewJob(job);
    await inTransaction(this.pool, async (client) => {
      await insertIn(client, job);
      await notify(client, { jobId: job.id, clientId: job.clientId, kind: 'created', lastSequence: 0 });
    });
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
    requireChanged('deleteJob', jobId, (await this.pool.query('DELETE FROM jobs WHERE id = $1', [jobId])).rowCount);
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
    await inTransaction(this.pool, async (client) => {
      const { rows } = await client.query<{ client_id: string; last_sequence: number }>(
        'UPDATE jobs SET cancel_requested = true WHERE id = $1 RETURNING client_id, last_sequence', [jobId]);
      if (rows.length === 0) throw new JobStoreError(`requestCancel: no job '${jobId}'`);
      await notify(client, { jobId, clientId: rows[0].client_id, kind: 'cancel', lastSequence: rows[0].last_sequence });
    });
  }

  async saveCheckpoint(checkpoint: CheckpointRecord): Promise<void> {
    await inTransaction(this.pool, async (client) => {
      await lockJobs(client, [checkpoint.jobId]);
      await saveCheckpointIn(client, checkpoint);
    });
  }

  async latestCheckpoint(jobId: string): Promise<CheckpointRecord | undefined> {
    const { rows } = await this.pool.query<CheckpointRow>(
      `SELECT ${checkpointColumns} FROM checkpoints WHERE job_id = $1`, [jobId]);
    return rows.length === 0 ? undefined : checkpointFromRow(rows[0]);
  }

  async truncateEventsAfter(jobId: string, sequence: number): Promise<number> {
    return inTransaction(this.pool, async (client) => {
      const locked = await lockJobs(client, [jobId]);
      checkTruncation(jobId, sequence, locked.get(jobId)?.last_sequence);
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

  async commit(batch: WriteBatch, fence?: Fence): Promise<void> {
    await inTransaction(this.pool, async (client) => {
      // Lock every job the batch touches up front, in one order (by id), so two servers committing batches over the
      // same jobs wait for each other instead of deadlocking; the fence is checked under those locks, so no claim can
      // slip in between the check and the writes.
      const jobIds = jobsOfBatch(batch);
      const locked = await lockJobs(client, jobIds);
      if (fence) {
        const lost = jobIds.filter((jobId) => {
          const held = locked.get(jobId);
          return held === undefined || held.owner !== fence.owner || held.lease_epoch !== fence.leases.get(jobId);
        });
        if (lost.length > 0) {
          throw new LeaseLostError(lost, `commit: ${lost.length} job(s) are no longer leased to ${fence.owner} at the ` +
            `epoch it wrote with (first: '${lost[0]}'); nothing of the batch was written`);
        }
      }
      const last = new Map([...locked].map(([jobId, row]) => [jobId, row.last_sequence]));
      // Each part in WriteBatch's order.
      if (batch.events && batch.events.length > 0) await appendIn(client, batch.events, last, fence);
      if (batch.summaries && batch.summaries.length > 0) await setSummariesIn(client, batch.summaries);
      for (const { jobId, state, ...extra } of batch.states ?? []) await setStateIn(client, jobId, state, extra);
      for (const { jobId, sequence } of batch.resumeMarks ?? []) await setResumeMarkIn(client, jobId, sequence);
      for (const checkpoint of batch.checkpoints ?? []) await saveCheckpointIn(client, checkpoint);
      if (batch.clearResumeMarks) await client.query(clearResumeMarksSql);
      // Announced in the same transaction: PostgreSQL delivers the notices at commit, and only if it commits.
      await notifyAll(client, noticesOfBatch(batch, (jobId) => locked.get(jobId)?.client_id));
    });
  }

  async admitJob(job: NewJob, admission: Admission): Promise<AdmissionResult> {
    checkNewJob(job);
    requireInteger('admitJob', 'costBytes', admission.costBytes);
    if (admission.owner !== null) requireInteger('admitJob', 'leaseMs', admission.leaseMs);
    return inTransaction(this.pool, async (client): Promise<AdmissionResult> => {
      // Held until the transaction ends: a second admission for this client (on any server) waits here, then counts
      // this one's job, so two cannot both take the last place.
      await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, $2))', [job.clientId, quotaLockSeed]);
      const use = await clientUseIn(client, job.clientId);
      if (use.jobs >= admission.maxJobs) return { admitted: false, reason: 'jobs', use };
      if (use.bytes + admission.costBytes > admission.maxQueuedBytes) return { admitted: false, reason: 'bytes', use };
      const epoch = admission.owner === null ? 0 : 1;
      await insertIn(client, job, { owner: admission.owner, epoch, leaseMs: admission.owner === null ? 0 : admission.leaseMs,
        costBytes: admission.costBytes });
      await notify(client, { jobId: job.id, clientId: job.clientId, kind: 'created', lastSequence: 0 });
      return { admitted: true, epoch };
    });
  }

  async clientUse(clientId: string): Promise<{ jobs: number; bytes: number }> {
    return clientUseIn(this.pool, clientId);
  }

  async claimJobs(owner: string, models: readonly string[], limit: number, leaseMs: number,
    options: { ignoreLeases?: boolean } = {}): Promise<ClaimedJob[]> {
    requireId('claimJobs', 'owner', owner);
    requireLimit('claimJobs', limit);
    requireInteger('claimJobs', 'leaseMs', leaseMs);
    if (models.length === 0) return [];
    return inTransaction(this.pool, async (client) => {
      const now = await databaseNow(client);
      const { rows } = await client.query<JobRow & { lease_epoch: number }>(claimCandidates,
        [[...models], options.ignoreLeases === true, now, limit]);
      if (rows.length === 0) return [];
      const { rows: epochs } = await client.query<{ id: string; lease_epoch: number }>(`UPDATE jobs
        SET owner = $1, lease_epoch = lease_epoch + 1, lease_expires_at = $2 WHERE id = ANY($3::text[])
        RETURNING id, lease_epoch`, [owner, now + leaseMs, rows.map((row) => row.id)]);
      const epochOf = new Map(epochs.map((row) => [row.id, row.lease_epoch]));
      return rows.map((row) => ({ record: jobFromRow(row), epoch: epochOf.get(row.id)! }));
    });
  }

  async renewLeases(owner: string, leases: readonly Lease[], leaseMs: number): Promise<string[]> {
    requireInteger('renewLeases', 'leaseMs', leaseMs);
    if (leases.length === 0) return [];
    return inTransaction(this.pool, async (client) => {
      // Rows locked in id order first, as commit locks them: an UPDATE over several rows takes them in no set order,
      // and could deadlock with a commit of the same server.
      await lockJobs(client, leases.map((lease) => lease.jobId));
      const { rows } = await client.query<{ id: string }>(`UPDATE jobs SET lease_expires_at = ${databaseNowMs} + $1
        FROM unnest($2::text[], $3::bigint[]) AS held (id, epoch)
        WHERE jobs.id = held.id AND jobs.owner = $4 AND jobs.lease_epoch = held.epoch AND jobs.state <> 'FINISHED'
        RETURNING jobs.id`, [leaseMs, leases.map((l) => l.jobId), leases.map((l) => l.epoch), owner]);
      const renewed = new Set(rows.map((row) => row.id));
      return leases.filter((lease) => !renewed.has(lease.jobId)).map((lease) => lease.jobId);
    });
  }

  async releaseLeases(owner: string, jobIds: readonly string[]): Promise<void> {
    if (jobIds.length === 0) return;
    await inTransaction(this.pool, async (client) => {
      await lockJobs(client, jobIds); // in id order, as in renewLeases
      await client.query('UPDATE jobs SET owner = NULL, lease_expires_at = NULL WHERE id = ANY($1::text[]) AND owner = $2',
        [[...jobIds], owner]);
    });
  }

  async listen(onNotice: (notice: StoreNotice) => void): Promise<() => Promise<void>> {
    if (this.closed) throw new JobStoreError('listen: the store is closed');
    this.subscribers.add(onNotice);
    if (this.listener === undefined) {
      const listener = new NoticeListener(this.url, (notice) => {
        for (const subscriber of [...this.subscribers]) subscriber(notice);
      }, this.onListenerReconnect);
      this.listener = listener.start().then(() => listener);
    }
    const started = this.listener;
    try {
      await started;
    } catch (error: unknown) {
      // The first connection failed: nobody is listening; the next call tries again.
      this.subscribers.delete(onNotice);
      if (this.listener === started) this.listener = undefined;
      throw error;
    }
    let stopped = false;
    return async () => {
      if (stopped) return;
      stopped = true;
      this.subscribers.delete(onNotice);
      if (this.subscribers.size === 0 && this.listener === started) {
        this.listener = undefined;
        await (await started).stop();
      }
    };
  }

  async pruneFinishedHistories(finishedBeforeMs: number): Promise<number> {
    requireInteger('pruneFinishedHistories', 'finishedBeforeMs', finishedBeforeMs);
    return inTransaction(this.pool, async (client) => {
      const { rowCount } = await client.query(`DELETE FROM events USING jobs WHERE events.job_id = jobs.id
        AND jobs.state = 'FINISHED' AND jobs.finished_at < $1 AND events.sequence < jobs.last_sequence`, [finishedBeforeMs]);
      await client.query(`DELETE FROM checkpoints USING jobs WHERE checkpoints.job_id = jobs.id
        AND jobs.state = 'FINISHED' AND jobs.finished_at < $1`, [finishedBeforeMs]);
      return rowCount ?? 0;
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

type Fence = { owner: string; leases: ReadonlyMap<string, number> };

/** A job's row as commit locks it: what the sequence check, the fence and the notices read. */
interface LockedJob {
  last_sequence: number;
  owner: string | null;
  lease_epoch: number;
  client_id: string;
}

/**
 * Insert a new job, with a lease (an epoch; from now by the database's clock, when it has an owner) and the bytes it
 * holds, or unowned and costing nothing; a duplicate id is a JobStoreError.
 */
async function insertIn(client: PoolClient, job: NewJob,
  lease: { owner: string | null; epoch: number; leaseMs: number; costBytes: number } =
  { owner: null, epoch: 0, leaseMs: 0, costBytes: 0 }): Promise<void> {
  try {
    await client.query(`INSERT INTO jobs (id, client_id, model, label, spec, target_ids, target_text, state, status,
      cancel_requested, created_at, finished_at, owner, lease_epoch, lease_expires_at, cost_bytes)
      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::text, $14,
        CASE WHEN $13::text IS NULL THEN NULL ELSE ${databaseNowMs} + $15::bigint END, $16)`, [
      job.id, job.clientId, job.model, job.label, buffer(job.spec), JSON.stringify(job.targetIds), job.targetText,
      job.state, job.status, job.cancelRequested, job.createdAtMs, job.finishedAtMs,
      lease.owner, lease.epoch, lease.leaseMs, lease.costBytes,
    ]);
  } catch (error: unknown) {
    if (isUniqueViolation(error)) throw new JobStoreError(`insertJob: job '${job.id}' already exists`);
    throw error;
  }
}

async function clientUseIn(db: Queryable, clientId: string): Promise<{ jobs: number; bytes: number }> {
  // sum() of bigint is numeric, which pg reads as a string: cast back to bigint (read as a number).
  const { rows } = await db.query<{ jobs: number; bytes: number }>(`SELECT count(*) AS jobs,
    coalesce(sum(cost_bytes), 0)::bigint AS bytes FROM jobs WHERE client_id = $1 AND state <> 'FINISHED'`, [clientId]);
  return { jobs: rows[0].jobs, bytes: rows[0].bytes };
}

async function databaseNow(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ now: number }>(`SELECT ${databaseNowMs} AS now`);
  return rows[0].now;
}

/** Announce `notice` on {@link noticeChannel}; inside a transaction it is sent when that commits. */
async function notify(db: Queryable, notice: StoreNotice): Promise<void> {
  await notifyAll(db, [notice]);
}

/** Send notices in one round trip: a batch names many jobs, and each statement costs a round trip under load. */
async function notifyAll(db: Queryable, notices: readonly StoreNotice[]): Promise<void> {
  if (notices.length === 0) return;
  const payloads = notices.map((notice) => {
    const payload = JSON.stringify(notice);
    // Ids only, so far below PostgreSQL's limit unless an id is absurdly long; refused here rather than by the server.
    if (Buffer.byteLength(payload) > maxNoticeBytes) {
      throw new JobStoreError(`notify: the notice for job '${notice.jobId.slice(0, 100)}' is ` +
        `${Buffer.byteLength(payload)} bytes; PostgreSQL takes at most ${maxNoticeBytes}`);
    }
    return payload;
  });
  await db.query('SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload', [noticeChannel, payloads]);
}

/** Read a notice's payload back; undefined for anything that is not one (another sender on the channel). */
function parseNotice(payload: string): StoreNotice | undefined {
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return undefined;
  }
  const n = value as Partial<StoreNotice> | null;
  if (n === null || typeof n !== 'object' || typeof n.jobId !== 'string' || typeof n.clientId !== 'string' ||
    typeof n.kind !== 'string' || !Number.isSafeInteger(n.lastSequence)) return undefined;
  return { jobId: n.jobId, clientId: n.clientId, kind: n.kind, lastSequence: n.lastSequence! };
}

/**
 * One connection of its own (not the pool's: LISTEN belongs to a session, and a pooled connection is handed to other
 * queries) listening on {@link noticeChannel}. When the connection ends or fails it reconnects, waiting longer after
 * each failed attempt (up to {@link listenerBackoff}.maxMs), and listens again; `onReconnect` hears of each success.
 */
class NoticeListener {
  private client: pg.Client | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private lastError: Error | undefined;

  constructor(private readonly url: string, private readonly onNotice: (notice: StoreNotice) => void,
    private readonly onReconnect?: (error: Error | undefined) => void) {}

  /** Connect and LISTEN; rejects if the first connection fails (no retry then: the caller hears of it). */
  async start(): Promise<void> {
    await this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    const client = this.client;
    this.client = undefined;
    if (client) await client.end().catch(() => {});
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url, application_name: 'recite-listener', keepAlive: true });
    // Until LISTEN succeeds, a failure is the rejection below; after, it is a lost connection to replace.
    let live = false;
    const lost = (error?: Error) => {
      if (live) {
        live = false;
        this.lost(client, error);
      }
    };
    client.on('error', lost);
    client.on('end', () => lost());
    client.on('notification', (message: Notification) => {
      if (message.channel !== noticeChannel || message.payload === undefined) return;
      const notice = parseNotice(message.payload);
      if (notice !== undefined) this.onNotice(notice);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${noticeChannel}`);
    } catch (error: unknown) {
      await client.end().catch(() => {});
      throw error;
    }
    if (this.stopped) {
      await client.end().catch(() => {});
      return;
    }
    live = true;
    this.client = client;
  }

  private lost(client: pg.Client, error: Error | undefined): void {
    if (this.client === client) this.client = undefined;
    client.end().catch(() => {});
    this.lastError = error;
    this.failures = 0;
    this.retry();
  }

  private retry(): void {
    if (this.stopped || this.timer !== undefined) return;
    const delay = Math.min(listenerBackoff.maxMs, listenerBackoff.firstMs * 2 ** Math.min(this.failures, 16));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.stopped) return;
      this.connect().then(() => {
        if (this.stopped) return;
        const error = this.lastError;
        this.lastError = undefined;
        this.failures = 0;
        this.onReconnect?.(error);
      }, (error: unknown) => {
        this.failures++;
        this.lastError ??= error instanceof Error ? error : new Error(String(error));
        this.retry();
      });
    }, delay);
  }
}

/**
 * The jobs a claim takes, in the order it takes them (the SQLite store's order): each client's jobs oldest first,
 * interleaved so the client with the fewest jobs held now goes first. The window function ranks every candidate in a
 * CTE (FOR UPDATE takes no window function); the outer query then locks them in that order, skipping rows another
 * claim holds, until it has `limit`: so two servers claiming at once never wait on each other nor take the same job.
 * The outer query repeats the lease condition on the row it locks: a row claimed by a transaction that committed
 * after this statement's snapshot is re-read under the lock and dropped. Parameters: models, ignoreLeases, now, limit.
 */
const claimCandidates = `WITH open AS (
    SELECT id, client_id, created_at, row,
      row_number() OVER (PARTITION BY client_id ORDER BY created_at, row) AS turn
    FROM jobs
    WHERE state <> 'FINISHED' AND model = ANY($1::text[]) AND ($2::boolean OR owner IS NULL OR lease_expires_at < $3)
  ), held AS (
    SELECT client_id, count(*) AS jobs FROM jobs
    WHERE state <> 'FINISHED' AND owner IS NOT NULL AND lease_expires_at >= $3 GROUP BY client_id
  ), ranked AS (
    SELECT open.id, coalesce(held.jobs, 0) + open.turn AS rank, open.created_at, open.row
    FROM open LEFT JOIN held USING (client_id)
  )
  SELECT ${jobColumns.split(',').map((c) => `jobs.${c.trim()}`).join(', ')}, jobs.lease_epoch
  FROM jobs JOIN ranked ON ranked.id = jobs.id
  WHERE jobs.state <> 'FINISHED' AND jobs.model = ANY($1::text[])
    AND ($2::boolean OR jobs.owner IS NULL OR jobs.lease_expires_at < $3)
  ORDER BY ranked.rank, ranked.created_at, ranked.row
  LIMIT $4
  FOR UPDATE OF jobs SKIP LOCKED`;

const clearResumeMarksSql =
  "UPDATE jobs SET resumed_from = NULL WHERE state IN ('QUEUED', 'RUNNING') AND resumed_from IS NOT NULL";

/**
 * Lock the rows of the jobs `ids` until the transaction ends, in id order; returns each existing job's last
 * sequence, lease and client as of the lock (a missing job is absent from the map).
 */
async function lockJobs(client: PoolClient, ids: readonly string[]): Promise<Map<string, LockedJob>> {
  if (ids.length === 0) return new Map();
  const { rows } = await client.query<LockedJob & { id: string }>(`SELECT id, last_sequence, owner, lease_epoch, client_id
    FROM jobs WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE`, [[...new Set(ids)]]);
  return new Map(rows.map(({ id, ...row }) => [id, row]));
}

/**
 * Check `events` against their jobs' last sequences in `last` (locked by the caller) and insert them in one
 * statement; then advance each job's last sequence.
 */
async function appendIn(client: PoolClient, events: readonly EventRecord[], last: Map<string, number>,
  fence?: Fence): Promise<void> {
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
  // Each event carries the epoch it was written under (null without a fence).
  await client.query(`INSERT INTO events (${eventColumns}, lease_epoch)
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[], $7::bytea[],
      $8::bigint[])`, [
    events.map((e) => e.jobId), events.map((e) => e.sequence), events.map((e) => e.timeMs), events.map((e) => e.kind),
    events.map((e) => e.restart), events.map((e) => e.iteration), events.map((e) => buffer(e.payload)),
    events.map((e) => fence?.leases.get(e.jobId) ?? null),
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

/** Replace many jobs' summaries in one statement (one engine round's worth). */
async function setSummariesIn(db: Queryable, summaries: readonly { jobId: string; summary: Uint8Array }[]): Promise<void> {
  for (const { summary } of summaries) requireBytes('setSummary', 'summary', summary);
  const { rowCount } = await db.query(`UPDATE jobs SET summary = v.summary
    FROM unnest($1::text[], $2::bytea[]) AS v(id, summary) WHERE jobs.id = v.id`,
  [summaries.map((s) => s.jobId), summaries.map((s) => buffer(s.summary))]);
  if (rowCount !== new Set(summaries.map((s) => s.jobId)).size) {
    const ids = summaries.map((s) => s.jobId);
    const { rows } = await db.query<{ id: string }>('SELECT id FROM jobs WHERE id = ANY($1::text[])', [ids]);
    const found = new Set(rows.map((r) => r.id));
    throw new JobStoreError(`setSummary: no job '${ids.find((id) => !found.has(id))}'`);
  }
}

async function setSummaryIn(db: Queryable, jobId: string, summary: Uint8Array): Promise<void> {
  requireBytes('setSummary', 'summary', summary);
  const { rowCount } = await db.query('UPDATE jobs SET summary = $1 WHERE id = $2', [buffer(summary), jobId]);
  requireChanged('setSummary', jobId, rowCount);
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
