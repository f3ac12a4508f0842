// The rows both data set store back ends read (datasets, dataset_rows), the columns they select, and the mappers
// from a row to the records of dataset-repository.ts. The SQL around them stays per back end, where the dialects
// differ. Both drivers return the same shape here: blobs as Buffer, and numbers (pg parses int8 to numbers, see
// server/store/postgres-schema.ts).
import { bytes } from '../store/job-rows.js';
import type { DatasetRecord, DatasetRowRecord, DatasetState, RowState } from './dataset-repository.js';

/** A row of `datasets`, as selected by {@link datasetColumns}. */
export interface DatasetRow {
  id: string;
  client_id: string;
  name: string;
  content_hash: string;
  model: string;
  settings: Buffer;
  state: DatasetState;
  created_at: number;
  finished_at: number | null;
  row_count: number;
  finished_rows: number;
}

/** A row of `dataset_rows`, as selected by {@link rowColumns}. */
export interface RowRow {
  dataset_id: string;
  idx: number;
  row_id: string;
  target_text: string | null;
  target_ids: string | null;
  state: RowState;
  submitting_at: number | null;
  job_id: string | null;
  status: string | null;
  iterations_to_hit: number | null;
  best_nll: number | null;
  iterations: number | null;
  elapsed_ms: number | null;
  error: string | null;
  finish_order: number | null;
}

export const datasetColumns = 'id, client_id, name, content_hash, model, settings, state, created_at, finished_at, row_count, finished_rows';
export const rowColumns = `dataset_id, idx, row_id, target_text, target_ids, state, submitting_at, job_id, status, iterations_to_hit,
  best_nll, iterations, elapsed_ms, error, finish_order`;
export const newestFirst = 'ORDER BY created_at DESC, row DESC';

/** Map a row of `datasets` to its record. */
export function datasetFromRow(row: DatasetRow): DatasetRecord {
  return {
    id: row.id,
    clientId: row.client_id,
    name: row.name,
    contentHash: row.content_hash,
    model: row.model,
    settings: bytes(row.settings),
    state: row.state,
    createdAtMs: row.created_at,
    finishedAtMs: row.finished_at,
    rowCount: row.row_count,
    finishedRows: row.finished_rows,
  };
}

/** Map a row of `dataset_rows` to its record; an unfinished row has no outcome. */
export function rowFromRow(row: RowRow): DatasetRowRecord {
  return {
    datasetId: row.dataset_id,
    index: row.idx,
    rowId: row.row_id,
    target: row.target_ids !== null ? { ids: JSON.parse(row.target_ids) as number[] } : { text: row.target_text ?? '' },
    state: row.state,
    submittingAtMs: row.submitting_at,
    jobId: row.job_id,
    outcome: row.state === 'FINISHED' ? {
      status: row.status ?? 'FAILED',
      iterationsToHit: row.iterations_to_hit,
      bestNll: row.best_nll,
      iterations: row.iterations ?? 0,
      elapsedMs: row.elapsed_ms ?? 0,
      error: row.error,
    } : null,
    finishOrder: row.finish_order,
  };
}
