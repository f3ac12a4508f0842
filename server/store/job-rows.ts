// The rows both job store back ends read (jobs, events, checkpoints), the columns they select, and the mappers from
// a row to the records of job-repository.ts. The SQL around them stays per back end, where the dialects differ.
import type { CheckpointRecord, EventKind, EventRecord, JobRecord, JobState } from './job-repository.js';
import { JobStoreError } from './job-repository.js';

/**
 * A row of `jobs` as either driver returns it. better-sqlite3 and pg both give blobs as Buffer, and pg parses int8
 * to numbers (postgres-schema.ts installs that parser); only the boolean differs, see `cancel_requested`.
 */
export interface JobRow {
  id: string;
  client_id: string;
  model: string;
  label: string;
  spec: Buffer;
  target_ids: string;
  target_text: string;
  state: JobState;
  status: string | null;
  /** SQLite has no boolean type and returns 0 or 1; PostgreSQL returns a boolean. */
  cancel_requested: number | boolean;
  created_at: number;
  finished_at: number | null;
  last_sequence: number;
  summary: Buffer | null;
}

/** A row of `events`, as selected by {@link eventColumns}. */
export interface EventRow {
  job_id: string;
  sequence: number;
  time_ms: number;
  kind: EventKind;
  restart: number | null;
  iteration: number | null;
  payload: Buffer;
}

/** A row of `checkpoints`. */
export interface CheckpointRow {
  job_id: string;
  sequence: number;
  time_ms: number;
  payload: Buffer;
}

export const jobColumns = `id, client_id, model, label, spec, target_ids, target_text, state, status, cancel_requested,
  created_at, finished_at, last_sequence, summary`;
export const eventColumns = 'job_id, sequence, time_ms, kind, restart, iteration, payload';
export const checkpointColumns = 'job_id, sequence, time_ms, payload';
export const newestFirst = 'ORDER BY created_at DESC, row DESC';
export const oldestFirst = 'ORDER BY created_at ASC, row ASC';

/** Map a row of `jobs` to its record. */
export function jobFromRow(row: JobRow): JobRecord {
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
    cancelRequested: row.cancel_requested === true || row.cancel_requested === 1,
    createdAtMs: row.created_at,
    finishedAtMs: row.finished_at,
    lastSequence: row.last_sequence,
    summary: row.summary === null ? null : bytes(row.summary),
  };
}

/** Map a row of `events` to its record. */
export function eventFromRow(row: EventRow): EventRecord {
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

/** Map a row of `checkpoints` to its record. */
export function checkpointFromRow(row: CheckpointRow): CheckpointRecord {
  return { jobId: row.job_id, sequence: row.sequence, timeMs: row.time_ms, payload: bytes(row.payload) };
}

/** Hand out a blob as a plain Uint8Array (no copy): callers see the declared type, not Buffer's other methods. */
export function bytes(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/** Throw unless a statement on job `jobId` changed a row: `changed` is SQLite's changes or pg's rowCount. */
export function requireChanged(op: string, jobId: string, changed: number | null): void {
  if (changed === 0) throw new JobStoreError(`${op}: no job '${jobId}'`);
}
