// The data set store's contract: a client's named list of targets and its rows, behind an asynchronous interface
// with two back ends, SQLite (dataset-store.ts, in the job store's file) and PostgreSQL (postgres-dataset-store.ts,
// in the job store's database). A row moves PENDING → SUBMITTING (its job is being created) → SUBMITTED (the job's
// id is stored) → FINISHED (its outcome copied from the job, with its place in the finish order); every move
// commits before its promise resolves, so a server killed outright finds each row where it was.

export type DatasetState = 'RUNNING' | 'FINISHED' | 'CANCELLED';
export type RowState = 'PENDING' | 'SUBMITTING' | 'SUBMITTED' | 'FINISHED';

/** Describe one data set as stored. */
export interface DatasetRecord {
  id: string;
  clientId: string;
  name: string;
  contentHash: string;
  model: string;
  /** The JobSettings as submitted (opaque bytes). */
  settings: Uint8Array;
  state: DatasetState;
  createdAtMs: number;
  finishedAtMs: number | null;
  rowCount: number;
  finishedRows: number;
}

/** A row's target: its text, or its token ids. */
export type RowTarget = { text: string } | { ids: number[] };

/** Describe one row as stored. */
export interface DatasetRowRecord {
  datasetId: string;
  index: number;
  rowId: string;
  target: RowTarget;
  state: RowState;
  submittingAtMs: number | null;
  jobId: string | null;
  outcome: RowOutcome | null;
  finishOrder: number | null;
}

/** How a row ended, copied from its job's result (or the reason it has no job). */
export interface RowOutcome {
  /** A RunStatus: HIT, MAX_ITERATIONS, PATIENCE, THRESHOLD, CANCELLED or FAILED. */
  status: string;
  iterationsToHit: number | null;
  bestNll: number | null;
  /** Over all restarts. */
  iterations: number;
  elapsedMs: number;
  error: string | null;
}

/** Fields a new data set is stored with; it starts RUNNING with every row PENDING. */
export type NewDataset = Omit<DatasetRecord, 'state' | 'finishedAtMs' | 'rowCount' | 'finishedRows'> & {
  rows: readonly { rowId: string; target: RowTarget }[];
};

/** Count a data set's rows by state and outcome. */
export interface RowCounts {
  rows: number;
  pending: number;
  submitted: number;
  finished: number;
  hits: number;
  misses: number;
  failed: number;
  /** Iterations of the finished rows. */
  finishedIterations: number;
}

/** Signal a call the store refuses: an unknown data set or row, or a forbidden transition. */
export class DatasetStoreError extends Error {
  override name = 'DatasetStoreError';
}

/** The data set store; see the module comment. */
export interface DatasetRepository {
  /** Whether it is open (the runner stops touching a closed store). */
  readonly open: boolean;
  /**
   * Whether other servers may use it at once (PostgreSQL): then data sets are created and cancelled where this
   * server's runner does not hear of it, and it has to look for them.
   */
  readonly shared: boolean;
  /**
   * Try to become the one server whose runner drives the data sets of this store, so two runners never race over a
   * row (one's start-up recovery would put the other's in-flight SUBMITTING row back to PENDING). Returns whether
   * this process leads now; asking again while leading returns true. A lead lasts until the store closes, or until
   * the store can no longer vouch for it (PostgreSQL: the connection that holds the lock ends), when `onLost` is
   * called once and the lead may be sought again. SQLite always leads: one server has the file.
   */
  leadRunner(onLost?: () => void): Promise<boolean>;
  /** Close it; closing twice is harmless. */
  close(): Promise<void>;
  /** Store a data set with its rows, all PENDING, in one transaction. A name the client already uses is an error. */
  createDataset(dataset: NewDataset): Promise<void>;
  /** Return the client's data set called `name`, or undefined. */
  getDataset(clientId: string, name: string): Promise<DatasetRecord | undefined>;
  /** Return the data set `id`, or undefined. */
  getDatasetById(id: string): Promise<DatasetRecord | undefined>;
  /** List a client's data sets newest first, at most `limit`, after the one called `beforeName` if given. */
  listDatasets(clientId: string, limit: number, beforeName?: string): Promise<DatasetRecord[]>;
  /** Return the data sets with rows still to submit or to follow: RUNNING ones, and CANCELLED ones not yet drained. */
  activeDatasets(): Promise<DatasetRecord[]>;
  /** Return a data set's rows in `state`, lowest index first, at most `limit` (-1: all). */
  rowsInState(datasetId: string, state: RowState, limit?: number): Promise<DatasetRowRecord[]>;
  /** Return rows with index ≥ `fromIndex`, in index order, at most `limit`. */
  rows(datasetId: string, fromIndex: number, limit: number): Promise<DatasetRowRecord[]>;
  /** Return finished rows with finish_order > `afterFinishOrder`, in finish order, at most `limit`. */
  finishedRows(datasetId: string, afterFinishOrder: number, limit: number): Promise<DatasetRowRecord[]>;
  /** Mark a PENDING row as having its job created now (a crash from here on is resolved by looking for the job). */
  markSubmitting(datasetId: string, index: number, atMs: number): Promise<void>;
  /** Store a SUBMITTING row's job id. */
  markSubmitted(datasetId: string, index: number, jobId: string): Promise<void>;
  /** Put a SUBMITTING row back to PENDING: its job was not created (the queue was full, say), so try again later. */
  markPending(datasetId: string, index: number): Promise<void>;
  /**
   * Finish a row with `outcome`, giving it the next place in the finish order; the data set is FINISHED once its
   * last row is (a CANCELLED one keeps its state and gets its finish time). Returns the row's finish order.
   */
  finishRow(datasetId: string, index: number, outcome: RowOutcome, nowMs: number): Promise<number>;
  /** Mark a RUNNING data set CANCELLED (a finished one stays as it is). Returns whether it changed. */
  cancelDataset(datasetId: string): Promise<boolean>;
  /** Count a data set's rows by state and outcome. */
  counts(datasetId: string): Promise<RowCounts>;
}
