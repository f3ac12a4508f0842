// The job store's schema, as an ordered list of migrations: a file records how many it has applied in
// `PRAGMA user_version`, so a newer server upgrades an older file in place and an older server refuses a newer one
// instead of misreading it.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';

/**
 * Migrations in order; migration i brings a file from user_version i to i + 1. Append, never edit: a file in the
 * field has already run the ones before.
 */
export const migrations: readonly string[] = [
  // 1: jobs, their event history, their latest checkpoint.
  `
  CREATE TABLE jobs (
    -- rowid alias: insertion order, the tie-break that keeps listings stable for equal creation times
    row              INTEGER PRIMARY KEY,
    id               TEXT    NOT NULL UNIQUE,
    client_id        TEXT    NOT NULL,
    model            TEXT    NOT NULL,
    label            TEXT    NOT NULL,
    spec             BLOB    NOT NULL,
    target_ids       TEXT    NOT NULL, -- JSON array of token ids: readable from the sqlite3 shell
    target_text      TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('QUEUED', 'RUNNING', 'FINISHED')),
    status           TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    created_at       INTEGER NOT NULL, -- epoch ms
    finished_at      INTEGER,          -- epoch ms
    last_sequence    INTEGER NOT NULL DEFAULT 0 CHECK (last_sequence >= 0),
    summary          BLOB
  ) STRICT;
  CREATE INDEX jobs_by_client ON jobs (client_id, created_at);
  CREATE INDEX jobs_by_state ON jobs (state, created_at);

  CREATE TABLE events (
    job_id    TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    sequence  INTEGER NOT NULL CHECK (sequence >= 1),
    time_ms   INTEGER NOT NULL,
    kind      TEXT    NOT NULL CHECK (kind IN ('queued', 'started', 'progress', 'restart_result', 'result')),
    restart   INTEGER,
    iteration INTEGER,
    payload   BLOB    NOT NULL,
    PRIMARY KEY (job_id, sequence)
  ) STRICT;

  CREATE TABLE checkpoints (
    job_id   TEXT    PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    sequence INTEGER NOT NULL CHECK (sequence >= 0),
    time_ms  INTEGER NOT NULL,
    payload  BLOB    NOT NULL
  ) STRICT;
  `,
  // 2: data sets (server/datasets/): a client's named list of targets run with one set of settings, and its rows,
  // each linked to the job that runs it. No foreign key to jobs: the data set store may sit on its own connection.
  `
  CREATE TABLE datasets (
    row           INTEGER PRIMARY KEY, -- insertion order: the tie-break for equal creation times
    id            TEXT    NOT NULL UNIQUE,
    client_id     TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    content_hash  TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    settings      BLOB    NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('RUNNING', 'FINISHED', 'CANCELLED')),
    created_at    INTEGER NOT NULL, -- epoch ms
    finished_at   INTEGER,          -- epoch ms
    row_count     INTEGER NOT NULL CHECK (row_count >= 1),
    finished_rows INTEGER NOT NULL DEFAULT 0 CHECK (finished_rows >= 0), -- also the last finish_order given
    UNIQUE (client_id, name)
  ) STRICT;
  CREATE INDEX datasets_by_state ON datasets (state);

  CREATE TABLE dataset_rows (
    dataset_id        TEXT    NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    idx               INTEGER NOT NULL CHECK (idx >= 0),
    row_id            TEXT    NOT NULL,
    target_text       TEXT,             -- the row's target: text, or
    target_ids        TEXT,             -- a JSON array of token ids
    state             TEXT    NOT NULL CHECK (state IN ('PENDING', 'SUBMITTING', 'SUBMITTED', 'FINISHED')),
    submitting_at     INTEGER,          -- epoch ms: when its job was asked for (finds the job after a crash)
    job_id            TEXT,
    status            TEXT,
    iterations_to_hit INTEGER,
    best_nll          REAL,
    iterations        INTEGER,
    elapsed_ms        REAL,
    error             TEXT,
    finish_order      INTEGER,
    PRIMARY KEY (dataset_id, idx),
    UNIQUE (dataset_id, row_id),
    CHECK ((target_text IS NULL) <> (target_ids IS NULL))
  ) STRICT;
  CREATE INDEX dataset_rows_by_state ON dataset_rows (dataset_id, state, idx);
  CREATE INDEX dataset_rows_by_finish ON dataset_rows (dataset_id, finish_order);
  `,
  // 3: the checkpoint a resumed job started running from in a server that then stopped without a clean shutdown.
  // Found again at the next start, with no newer checkpoint, it means the job's resume failed again: quarantine.
  `
  ALTER TABLE jobs ADD COLUMN resumed_from INTEGER;
  `,
  // 4: leases (which server runs a job, until when, under which epoch: see job-repository.ts's Lease), the bytes a
  // job holds (quotas counted in the store, across servers), and the epoch each event was written under.
  `
  ALTER TABLE jobs ADD COLUMN owner TEXT;
  ALTER TABLE jobs ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0 CHECK (lease_epoch >= 0);
  ALTER TABLE jobs ADD COLUMN lease_expires_at INTEGER; -- epoch ms
  ALTER TABLE jobs ADD COLUMN cost_bytes INTEGER NOT NULL DEFAULT 0 CHECK (cost_bytes >= 0);
  ALTER TABLE events ADD COLUMN lease_epoch INTEGER;
  CREATE INDEX jobs_unfinished_by_client ON jobs (client_id) WHERE state <> 'FINISHED';
  `,
];

/** Report the schema version this build writes. */
export const schemaVersion = migrations.length;

/**
 * Bring `db` up to {@link schemaVersion}, each migration in its own transaction with the version bump, so a crash
 * mid-upgrade leaves the file at the last complete version. Returns the version the file had before.
 */
export function migrate(db: Database.Database, file: string, errorClass: new (message: string) => Error): number {
  const found = db.pragma('user_version', { simple: true }) as number;
  if (found > schemaVersion) {
    throw new errorClass(`open: ${file} has schema version ${found}; this build knows versions up to ${schemaVersion}`);
  }
  for (let version = found; version < schemaVersion; version++) {
    db.transaction(() => {
      db.exec(migrations[version]);
      // PRAGMA takes no bound parameters; `version` is a loop counter, not input.
      db.pragma(`user_version = ${version + 1}`);
    }).immediate();
  }
  return found;
}

/**
 * Open the SQLite file `file` the way every store of this project shares it: create its folder, set WAL,
 * synchronous=NORMAL (durable against a process crash; a power loss may lose the last transactions but never
 * corrupts), a busy timeout and foreign keys, and create or upgrade the schema. `':memory:'` gives a throwaway one.
 */
export function openDatabase(file: string, busyTimeoutMs: number, errorClass: new (message: string) => Error,
  options: { checkIntegrity?: boolean } = {}): Database.Database {
  if (file !== ':memory:' && file !== '') mkdirSync(dirname(file), { recursive: true });
  let db: Database.Database;
  try {
    db = new Database(file);
  } catch (error: unknown) {
    throw new errorClass(`open: ${file}: ${error instanceof Error ? error.message : String(error)}`);
  }
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma(`busy_timeout = ${Math.trunc(busyTimeoutMs)}`);
    db.pragma('foreign_keys = ON');
    if (options.checkIntegrity) checkIntegrity(db, file, errorClass);
    migrate(db, file, errorClass);
    return db;
  } catch (error: unknown) {
    db.close();
    if (error instanceof errorClass) throw error;
    const code = (error as { code?: unknown }).code;
    if (code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB') throw corrupt(file, String(error), errorClass);
    throw error;
  }
}

/**
 * Refuse a damaged file at start (`PRAGMA quick_check`: every page and index entry readable and well-formed) rather
 * than answer "internal error" on the first read that meets the damage. Linear in the file's size.
 */
function checkIntegrity(db: Database.Database, file: string, errorClass: new (message: string) => Error): void {
  const problems = db.pragma('quick_check(5)', { simple: false }) as { quick_check: string }[];
  const found = problems.map((row) => row.quick_check).filter((text) => text !== 'ok');
  if (found.length > 0) throw corrupt(file, found.join('; '), errorClass);
}

function corrupt(file: string, detail: string, errorClass: new (message: string) => Error): Error {
  return new errorClass(`open: ${file} is damaged (SQLite's quick_check: ${detail}); the server will not run on it: ` +
    'restore it from a backup, or move it away to start with an empty store');
}
