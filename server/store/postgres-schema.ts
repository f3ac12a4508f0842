// The PostgreSQL schema of the job and data set stores, as an ordered list of migrations mirroring sqlite-schema.ts
// (the same tables, columns and checks, in PostgreSQL's types): a database records how many it has applied in
// `recite_schema_version`, so a newer server upgrades an older database in place and an older server refuses a newer
// one instead of misreading it. Several servers may share one database and start at once: the migrations run under
// an advisory lock, so exactly one of them applies each.
import pg from 'pg';
import type { CustomTypesConfig, Pool, PoolClient } from 'pg';

/**
 * Migrations in order; migration i brings a database from version i to i + 1. Append, never edit: a database in the
 * field has already run the ones before. Numbered as in sqlite-schema.ts, so one version means one set of tables in
 * either back end. Every integer is bigint (SQLite's INTEGER is 64 bits too); the pool reads them as numbers.
 */
export const migrations: readonly string[] = [
  // 1: jobs, their event history, their latest checkpoint.
  `
  CREATE TABLE jobs (
    -- insertion order: the tie-break that keeps listings stable for equal creation times
    row              bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               text    NOT NULL UNIQUE,
    client_id        text    NOT NULL,
    model            text    NOT NULL,
    label            text    NOT NULL,
    spec             bytea   NOT NULL,
    target_ids       text    NOT NULL, -- JSON array of token ids, as in the SQLite file
    target_text      text    NOT NULL,
    state            text    NOT NULL CHECK (state IN ('QUEUED', 'RUNNING', 'FINISHED')),
    status           text,
    cancel_requested boolean NOT NULL DEFAULT false,
    created_at       bigint  NOT NULL, -- epoch ms
    finished_at      bigint,           -- epoch ms
    last_sequence    bigint  NOT NULL DEFAULT 0 CHECK (last_sequence >= 0),
    summary          bytea
  );
  CREATE INDEX jobs_by_client ON jobs (client_id, created_at);
  CREATE INDEX jobs_by_state ON jobs (state, created_at);

  CREATE TABLE events (
    job_id    text   NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    sequence  bigint NOT NULL CHECK (sequence >= 1),
    time_ms   bigint NOT NULL,
    kind      text   NOT NULL CHECK (kind IN ('queued', 'started', 'progress', 'restart_result', 'result')),
    restart   bigint,
    iteration bigint,
    payload   bytea  NOT NULL,
    PRIMARY KEY (job_id, sequence)
  );

  CREATE TABLE checkpoints (
    job_id   text   PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    sequence bigint NOT NULL CHECK (sequence >= 0),
    time_ms  bigint NOT NULL,
    payload  bytea  NOT NULL
  );
  `,
  // 2: data sets (server/datasets/) and their rows, each linked to the job that runs it. No foreign key to jobs, as
  // in SQLite: the data set store keeps a pool of its own.
  `
  CREATE TABLE datasets (
    row           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- insertion order: the tie-break for equal times
    id            text   NOT NULL UNIQUE,
    client_id     text   NOT NULL,
    name          text   NOT NULL,
    content_hash  text   NOT NULL,
    model         text   NOT NULL,
    settings      bytea  NOT NULL,
    state         text   NOT NULL CHECK (state IN ('RUNNING', 'FINISHED', 'CANCELLED')),
    created_at    bigint NOT NULL, -- epoch ms
    finished_at   bigint,          -- epoch ms
    row_count     bigint NOT NULL CHECK (row_count >= 1),
    finished_rows bigint NOT NULL DEFAULT 0 CHECK (finished_rows >= 0), -- also the last finish_order given
    UNIQUE (client_id, name)
  );
  CREATE INDEX datasets_by_state ON datasets (state);

  CREATE TABLE dataset_rows (
    dataset_id        text   NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    idx               bigint NOT NULL CHECK (idx >= 0),
    row_id            text   NOT NULL,
    target_text       text,             -- the row's target: text, or
    target_ids        text,             -- a JSON array of token ids
    state             text   NOT NULL CHECK (state IN ('PENDING', 'SUBMITTING', 'SUBMITTED', 'FINISHED')),
    submitting_at     bigint,           -- epoch ms: when its job was asked for (finds the job after a crash)
    job_id            text,
    status            text,
    iterations_to_hit bigint,
    best_nll          double precision,
    iterations        bigint,
    elapsed_ms        double precision,
    error             text,
    finish_order      bigint,
    PRIMARY KEY (dataset_id, idx),
    UNIQUE (dataset_id, row_id),
    CHECK ((target_text IS NULL) <> (target_ids IS NULL))
  );
  CREATE INDEX dataset_rows_by_state ON dataset_rows (dataset_id, state, idx);
  CREATE INDEX dataset_rows_by_finish ON dataset_rows (dataset_id, finish_order);
  `,
  // 3: the checkpoint a resumed job started running from in a server that then stopped without a clean shutdown.
  `
  ALTER TABLE jobs ADD COLUMN resumed_from bigint;
  `,
  // 4: leases (which server runs a job, until when, under which epoch: see job-repository.ts's Lease), the bytes a
  // job holds (quotas counted in the store, across servers), and the epoch each event was written under.
  `
  ALTER TABLE jobs ADD COLUMN owner text;
  ALTER TABLE jobs ADD COLUMN lease_epoch bigint NOT NULL DEFAULT 0 CHECK (lease_epoch >= 0);
  ALTER TABLE jobs ADD COLUMN lease_expires_at bigint; -- epoch ms, by the database's clock
  ALTER TABLE jobs ADD COLUMN cost_bytes bigint NOT NULL DEFAULT 0 CHECK (cost_bytes >= 0);
  ALTER TABLE events ADD COLUMN lease_epoch bigint;
  CREATE INDEX jobs_unfinished_by_client ON jobs (client_id) WHERE state <> 'FINISHED';
  `,
];

/** Report the schema version this build writes. */
export const schemaVersion = migrations.length;

/**
 * The advisory lock key the migrations hold (any constant; this one spells "recite" in ASCII), so servers starting
 * at once on a fresh database apply each migration once instead of racing to create the same tables.
 */
export const migrationLockKey = 0x726563697465;

/**
 * The advisory lock key held by the server whose data set runner drives the data sets, for as long as it leads (on
 * a session of its own; see server/datasets/postgres-dataset-store.ts). Not {@link migrationLockKey}: locks taken by
 * sessions and by transactions share one key space, and the lead must not hold off migrations. ASCII "rct-ds".
 */
export const datasetLeadLockKey = 0x7263742d6473;

/** Options of {@link openPostgresPool}. */
export interface PostgresPoolOptions {
  /** Connections the pool keeps at most. */
  max: number;
  /** How long a query waits for a connection (a new one, or a free one of the pool) before failing, in ms. */
  connectionTimeoutMillis: number;
  /**
   * How long the database lets a transaction wait for this process's next statement before it ends the session, in
   * ms. A server paused mid-transaction (SIGSTOP, a long GC, a frozen VM) would otherwise hold its job rows locked,
   * and no other server could take its jobs over once its leases ran out.
   */
  idleInTransactionTimeoutMs: number;
}

/** Defaults of {@link PostgresPoolOptions}. */
export const postgresPoolDefaults: Readonly<PostgresPoolOptions> = Object.freeze({
  max: 8, // connections
  connectionTimeoutMillis: 10_000, // ms
  idleInTransactionTimeoutMs: 5000, // ms: half the default lease
});

/**
 * Read int8 (bigint, and count(*)) as a JS number instead of pg's default string: every such column holds epoch ms, a
 * sequence or a count, all far below 2^53. A value past it is an error, not a silently rounded number. Per pool, not
 * through the global pg.types, so other users of pg in the process are unaffected.
 */
const int8AsNumber: CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === pg.types.builtins.INT8 && format !== 'binary') return parseInt8;
    return pg.types.getTypeParser(oid, format);
  }) as typeof pg.types.getTypeParser,
};

function parseInt8(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new RangeError(`int8 ${text} is outside JavaScript's safe integers (±2^53)`);
  return value;
}

/** Return `url` with its password (in the user info or a `password` parameter) replaced by `***`, for logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    if (parsed.searchParams.has('password')) parsed.searchParams.set('password', '***');
    return parsed.toString();
  } catch {
    // Not a URL the WHATWG parser takes: blank anything between "user:" and "@" by hand.
    return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@]*@/i, '$1***@');
  }
}

/**
 * Create a pool on the database at `url` and bring its schema up to {@link schemaVersion}: all pending migrations
 * and the version bump in one transaction holding the advisory lock {@link migrationLockKey}, so a crash mid-upgrade
 * leaves the database at its old version and concurrent starts apply each migration once. Refuses, with an
 * `errorClass`, a database it cannot reach or one whose schema is newer than this build's. Returns the pool, whose
 * int8 columns read as numbers.
 */
export async function openPostgresPool(url: string, errorClass: new (message: string) => Error,
  options?: Partial<PostgresPoolOptions>): Promise<Pool> {
  const { max, connectionTimeoutMillis, idleInTransactionTimeoutMs } = { ...postgresPoolDefaults, ...options };
  const where = redactUrl(url);
  const pool = new pg.Pool({ connectionString: url, max, connectionTimeoutMillis, types: int8AsNumber,
    idle_in_transaction_session_timeout: idleInTransactionTimeoutMs });
  // An idle connection the server drops (a restart, a network blip) is an 'error' event that would otherwise crash
  // the process; the pool discards that connection and the next query opens a new one, or reports the fault itself.
  pool.on('error', () => {});
  // The same for a connection in use (a transaction the server ended: idle-in-transaction timeout, a restart): the
  // query under way fails with the reason, which the caller handles; the event itself must not end the process.
  pool.on('connect', (client) => client.on('error', () => {}));
  let client: PoolClient;
  try {
    client = await pool.connect();
  } catch (error: unknown) {
    await pool.end();
    throw new errorClass(`open: cannot connect to ${where}: ${describe(error)}`);
  }
  try {
    await migrate(client, where, errorClass);
    client.release();
    return pool;
  } catch (error: unknown) {
    client.release(error instanceof Error ? error : true);
    await pool.end();
    throw error;
  }
}

/** Apply the pending migrations on `client` under the migration lock; returns the version the database had. */
async function migrate(client: PoolClient, where: string, errorClass: new (message: string) => Error): Promise<number> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [migrationLockKey]);
    await client.query(`CREATE TABLE IF NOT EXISTS recite_schema_version (
      one     boolean PRIMARY KEY DEFAULT true CHECK (one), -- a single row
      version integer NOT NULL CHECK (version >= 0)
    )`);
    const { rows } = await client.query<{ version: number }>('SELECT version FROM recite_schema_version');
    const found = rows.length === 0 ? 0 : rows[0].version;
    if (found > schemaVersion) {
      throw new errorClass(`open: ${where} has schema version ${found}; this build knows versions up to ${schemaVersion}`);
    }
    for (let version = found; version < schemaVersion; version++) await client.query(migrations[version]);
    if (rows.length === 0) {
      await client.query('INSERT INTO recite_schema_version (version) VALUES ($1)', [schemaVersion]);
    } else if (found !== schemaVersion) {
      await client.query('UPDATE recite_schema_version SET version = $1', [schemaVersion]);
    }
    await client.query('COMMIT');
    return found;
  } catch (error: unknown) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

/**
 * Run `work` in one transaction on one connection of `pool`: BEGIN, then COMMIT if it resolves or ROLLBACK if it
 * throws (the error passes through), always giving the connection back; a connection whose ROLLBACK failed is closed
 * rather than reused.
 */
export async function inTransaction<T>(pool: Pool, work: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error: unknown) {
    try {
      await client.query('ROLLBACK');
    } catch (rollbackError: unknown) {
      broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
    }
    throw error;
  } finally {
    client.release(broken);
  }
}

/** Report whether `error` is PostgreSQL's unique violation (SQLSTATE 23505), optionally on constraint `constraint`. */
export function isUniqueViolation(error: unknown, constraint?: string): boolean {
  const { code, constraint: name } = (error ?? {}) as { code?: unknown; constraint?: unknown };
  return code === '23505' && (constraint === undefined || name === constraint);
}

/** View a Uint8Array as a Buffer (no copy), the form pg sends as bytea, in arrays too. */
export function buffer(value: Uint8Array): Buffer {
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/** Return an error's message for a log or another error's message (a connection's AggregateError: each attempt's). */
export function describe(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) return error.errors.map(describe).join('; ');
  return error instanceof Error ? error.message || String((error as { code?: unknown }).code) : String(error);
}
