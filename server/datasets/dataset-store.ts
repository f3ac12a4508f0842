// The SQLite back end of the data set store (dataset-repository.ts has the contract and the row life cycle): the
// data set tables of the job store's SQLite file (from migration 2 in server/store/sqlite-schema.ts) on a connection
// of its own. better-sqlite3 is synchronous, so each call has committed by the time its promise is made.
import Database from 'better-sqlite3';
import { openDatabase } from '../store/sqlite-schema.js';
import type { DatasetRow, RowRow } from './dataset-rows.js';
import { datasetColumns, datasetFromRow, newestFirst, rowColumns, rowFromRow } from './dataset-rows.js';
import { DatasetStoreError } from './dataset-repository.js';
import type {
  DatasetRecord, DatasetRepository, DatasetRowRecord, DatasetState, NewDataset, RowCounts, RowOutcome, RowState,
} from './dataset-repository.js';

export { DatasetStoreError };

const missStatuses = ['MAX_ITERATIONS', 'PATIENCE', 'THRESHOLD'];

/** Store data sets and their rows in SQLite; see dataset-repository.ts for the row life cycle. */
export class SqliteDatasetStore implements DatasetRepository {
  private readonly statements: ReturnType<typeof prepareStatements>;

  private constructor(private readonly db: Database.Database) {
    this.statements = prepareStatements(db);
  }

  /**
   * Open the data set tables of the SQLite file `file` (the job store's; migrating it if this connection is the
   * first), with the job store's settings: WAL, synchronous=NORMAL, a busy timeout. `':memory:'` gives a throwaway
   * store of its own.
   */
  static open(file: string, busyTimeoutMs = 5000): SqliteDatasetStore {
    return new SqliteDatasetStore(openDatabase(file, busyTimeoutMs, DatasetStoreError));
  }

  /** Close the connection; closing twice is harmless. */
  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  /** Report whether the connection is open (the runner stops touching a closed store). */
  get open(): boolean {
    return this.db.open;
  }

  /** A SQLite file has one server, so every data set in it was created or cancelled by this server's service. */
  readonly shared = false;

  /** Lead while open: no other server runs on this file. */
  async leadRunner(): Promise<boolean> {
    return this.db.open;
  }

  /** Store a data set with its rows, all PENDING, in one transaction. A name the client already uses is an error. */
  async createDataset(dataset: NewDataset): Promise<void> {
    if (dataset.rows.length === 0) throw new DatasetStoreError(`createDataset: data set '${dataset.name}' has no rows`);
    this.db.transaction(() => {
      try {
        this.statements.insertDataset.run(dataset.id, dataset.clientId, dataset.name, dataset.contentHash, dataset.model,
          dataset.settings, dataset.createdAtMs, dataset.rows.length);
      } catch (error) {
        if (error instanceof Database.SqliteError && error.code === 'SQLITE_CONSTRAINT_UNIQUE') {
          throw new DatasetStoreError(`createDataset: client '${dataset.clientId}' already has a data set '${dataset.name}'`);
        }
        throw error;
      }
      dataset.rows.forEach((row, index) => {
        const text = 'text' in row.target ? row.target.text : null;
        const ids = 'ids' in row.target ? JSON.stringify(row.target.ids) : null;
        try {
          this.statements.insertRow.run(dataset.id, index, row.rowId, text, ids);
        } catch (error) {
          if (error instanceof Database.SqliteError && error.code === 'SQLITE_CONSTRAINT_UNIQUE') {
            throw new DatasetStoreError(`createDataset: row ${index} repeats the id '${row.rowId}'`);
          }
          throw error;
        }
      });
    }).immediate();
  }

  /** Return the client's data set called `name`, or undefined. */
  async getDataset(clientId: string, name: string): Promise<DatasetRecord | undefined> {
    const row = this.statements.getByName.get(clientId, name);
    return row === undefined ? undefined : datasetFromRow(row);
  }

  /** Return the data set `id`, or undefined. */
  async getDatasetById(id: string): Promise<DatasetRecord | undefined> {
    const row = this.statements.getById.get(id);
    return row === undefined ? undefined : datasetFromRow(row);
  }

  /** List a client's data sets newest first, at most `limit`, after the one called `beforeName` if given. */
  async listDatasets(clientId: string, limit: number, beforeName?: string): Promise<DatasetRecord[]> {
    if (beforeName === undefined) return this.statements.listFirst.all(clientId, limit).map(datasetFromRow);
    const cursor = this.statements.cursor.get(clientId, beforeName);
    if (cursor === undefined) throw new DatasetStoreError(`listDatasets: client '${clientId}' has no data set '${beforeName}'`);
    return this.statements.listBefore.all(clientId, cursor.created_at, cursor.row, limit).map(datasetFromRow);
  }

  /** Return the data sets with rows still to submit or to follow: RUNNING ones, and CANCELLED ones not yet drained. */
  async activeDatasets(): Promise<DatasetRecord[]> {
    return this.statements.active.all().map(datasetFromRow);
  }

  /** Return a data set's rows in `state`, lowest index first, at most `limit`. */
  async rowsInState(datasetId: string, state: RowState, limit = -1): Promise<DatasetRowRecord[]> {
    return this.statements.rowsInState.all(datasetId, state, limit).map(rowFromRow);
  }

  /** Return rows with index ≥ `fromIndex`, in index order, at most `limit`. */
  async rows(datasetId: string, fromIndex: number, limit: number): Promise<DatasetRowRecord[]> {
    return this.statements.rows.all(datasetId, fromIndex, limit).map(rowFromRow);
  }

  /** Return finished rows with finish_order > `afterFinishOrder`, in finish order, at most `limit`. */
  async finishedRows(datasetId: string, afterFinishOrder: number, limit: number): Promise<DatasetRowRecord[]> {
    return this.statements.finished.all(datasetId, afterFinishOrder, limit).map(rowFromRow);
  }

  /** Mark a PENDING row as having its job created now (a crash from here on is resolved by looking for the job). */
  async markSubmitting(datasetId: string, index: number, atMs: number): Promise<void> {
    this.move(datasetId, index, 'PENDING', () => this.statements.markSubmitting.run(atMs, datasetId, index));
  }

  /** Store a SUBMITTING row's job id. */
  async markSubmitted(datasetId: string, index: number, jobId: string): Promise<void> {
    this.move(datasetId, index, 'SUBMITTING', () => this.statements.markSubmitted.run(jobId, datasetId, index));
  }

  /** Put a SUBMITTING row back to PENDING: its job was not created (the queue was full, say), so try again later. */
  async markPending(datasetId: string, index: number): Promise<void> {
    this.move(datasetId, index, 'SUBMITTING', () => this.statements.markPending.run(datasetId, index));
  }

  /**
   * Finish a row with `outcome`, giving it the next place in the finish order; the data set is FINISHED once its
   * last row is (a CANCELLED one keeps its state and gets its finish time). Returns the row's finish order.
   */
  async finishRow(datasetId: string, index: number, outcome: RowOutcome, nowMs: number): Promise<number> {
    return this.db.transaction(() => {
      const row = this.statements.getRow.get(datasetId, index);
      if (row === undefined) throw new DatasetStoreError(`finishRow: data set '${datasetId}' has no row ${index}`);
      if (row.state === 'FINISHED') throw new DatasetStoreError(`finishRow: row ${index} of '${datasetId}' has already finished`);
      const dataset = this.statements.getById.get(datasetId)!;
      const order = dataset.finished_rows + 1;
      this.statements.finishRow.run(outcome.status, outcome.iterationsToHit, outcome.bestNll, outcome.iterations,
        outcome.elapsedMs, outcome.error, order, datasetId, index);
      const done = order === dataset.row_count;
      const state = done && dataset.state === 'RUNNING' ? 'FINISHED' : dataset.state;
      this.statements.datasetFinishedRows.run(order, state, done ? nowMs : null, datasetId);
      return order;
    }).immediate();
  }

  /** Mark a RUNNING data set CANCELLED (a finished one stays as it is). Returns whether it changed. */
  async cancelDataset(datasetId: string): Promise<boolean> {
    return this.statements.cancel.run(datasetId).changes > 0;
  }

  /** Count a data set's rows by state and outcome. */
  async counts(datasetId: string): Promise<RowCounts> {
    const c = this.statements.counts.get(missStatuses[0], missStatuses[1], missStatuses[2], datasetId)!;
    return {
      rows: c.rows,
      pending: c.pending ?? 0,
      submitted: c.submitted ?? 0,
      finished: c.finished ?? 0,
      hits: c.hits ?? 0,
      misses: c.misses ?? 0,
      failed: (c.finished ?? 0) - (c.hits ?? 0) - (c.misses ?? 0),
      finishedIterations: c.iterations ?? 0,
    };
  }

  private move(datasetId: string, index: number, from: RowState, update: () => Database.RunResult): void {
    this.db.transaction(() => {
      const row = this.statements.getRow.get(datasetId, index);
      if (row === undefined) throw new DatasetStoreError(`data set '${datasetId}' has no row ${index}`);
      if (row.state !== from) {
        throw new DatasetStoreError(`row ${index} of data set '${datasetId}' is ${row.state}; the move needs ${from}`);
      }
      update();
    }).immediate();
  }
}

/** Prepare every statement once. */
function prepareStatements(db: Database.Database) {
  return {
    insertDataset: db.prepare<[string, string, string, string, string, Uint8Array, number, number]>(
      `INSERT INTO datasets (id, client_id, name, content_hash, model, settings, state, created_at, row_count)
       VALUES (?, ?, ?, ?, ?, ?, 'RUNNING', ?, ?)`),
    insertRow: db.prepare<[string, number, string, string | null, string | null]>(
      `INSERT INTO dataset_rows (dataset_id, idx, row_id, target_text, target_ids, state) VALUES (?, ?, ?, ?, ?, 'PENDING')`),
    getByName: db.prepare<[string, string], DatasetRow>(`SELECT ${datasetColumns} FROM datasets WHERE client_id = ? AND name = ?`),
    getById: db.prepare<[string], DatasetRow>(`SELECT ${datasetColumns} FROM datasets WHERE id = ?`),
    cursor: db.prepare<[string, string], { row: number; created_at: number }>(
      'SELECT row, created_at FROM datasets WHERE client_id = ? AND name = ?'),
    listFirst: db.prepare<[string, number], DatasetRow>(
      `SELECT ${datasetColumns} FROM datasets WHERE client_id = ? ${newestFirst} LIMIT ?`),
    listBefore: db.prepare<[string, number, number, number], DatasetRow>(
      `SELECT ${datasetColumns} FROM datasets WHERE client_id = ? AND (created_at, row) < (?, ?) ${newestFirst} LIMIT ?`),
    active: db.prepare<[], DatasetRow>(
      `SELECT ${datasetColumns} FROM datasets WHERE state = 'RUNNING' OR (state = 'CANCELLED' AND finished_rows < row_count)
       ORDER BY created_at, row`),
    getRow: db.prepare<[string, number], RowRow>(`SELECT ${rowColumns} FROM dataset_rows WHERE dataset_id = ? AND idx = ?`),
    rowsInState: db.prepare<[string, RowState, number], RowRow>(
      `SELECT ${rowColumns} FROM dataset_rows WHERE dataset_id = ? AND state = ? ORDER BY idx LIMIT ?`),
    rows: db.prepare<[string, number, number], RowRow>(
      `SELECT ${rowColumns} FROM dataset_rows WHERE dataset_id = ? AND idx >= ? ORDER BY idx LIMIT ?`),
    finished: db.prepare<[string, number, number], RowRow>(
      `SELECT ${rowColumns} FROM dataset_rows WHERE dataset_id = ? AND finish_order > ? ORDER BY finish_order LIMIT ?`),
    markSubmitting: db.prepare<[number, string, number]>(
      `UPDATE dataset_rows SET state = 'SUBMITTING', submitting_at = ? WHERE dataset_id = ? AND idx = ?`),
    markSubmitted: db.prepare<[string, string, number]>(
      `UPDATE dataset_rows SET state = 'SUBMITTED', job_id = ? WHERE dataset_id = ? AND idx = ?`),
    markPending: db.prepare<[string, number]>(
      `UPDATE dataset_rows SET state = 'PENDING', submitting_at = NULL WHERE dataset_id = ? AND idx = ?`),
    finishRow: db.prepare<[string, number | null, number | null, number, number, string | null, number, string, number]>(
      `UPDATE dataset_rows SET state = 'FINISHED', status = ?, iterations_to_hit = ?, best_nll = ?, iterations = ?,
       elapsed_ms = ?, error = ?, finish_order = ? WHERE dataset_id = ? AND idx = ?`),
    datasetFinishedRows: db.prepare<[number, DatasetState, number | null, string]>(
      'UPDATE datasets SET finished_rows = ?, state = ?, finished_at = ? WHERE id = ?'),
    cancel: db.prepare<[string]>(`UPDATE datasets SET state = 'CANCELLED' WHERE id = ? AND state = 'RUNNING'`),
    counts: db.prepare<[string, string, string, string], {
      rows: number; pending: number | null; submitted: number | null; finished: number | null; hits: number | null;
      misses: number | null; iterations: number | null;
    }>(`SELECT count(*) AS rows,
        sum(state IN ('PENDING', 'SUBMITTING')) AS pending,
        sum(state = 'SUBMITTED') AS submitted,
        sum(state = 'FINISHED') AS finished,
        sum(state = 'FINISHED' AND status = 'HIT') AS hits,
        sum(state = 'FINISHED' AND status IN (?, ?, ?)) AS misses,
        sum(CASE WHEN state = 'FINISHED' THEN iterations ELSE 0 END) AS iterations
      FROM dataset_rows WHERE dataset_id = ?`),
  };
}
