// The PostgreSQL back end of the data set store (dataset-repository.ts has the contract and the row life cycle): the
// data set tables of the job store's database (migration 2 in server/store/postgres-schema.ts) on a small pool of
// its own. Same semantics and messages as the SQLite store (dataset-store.ts). A row move and a finish lock what they
// read first (SELECT … FOR UPDATE), so two servers finishing rows of one data set get distinct finish orders.
// The server that drives the data sets holds a session-level advisory lock on a connection of its own (not the
// pool's: a pooled connection is handed to other queries, and the lock belongs to the session), kept open for the
// process's life, so the lead frees itself the moment the process dies or the connection drops.
import pg from 'pg';
import type { Pool, PoolClient } from 'pg';
import type { PostgresPoolOptions } from '../store/postgres-schema.js';
import {
  buffer, datasetLeadLockKey, describe, inTransaction, isUniqueViolation, openPostgresPool, redactUrl,
} from '../store/postgres-schema.js';
import type { DatasetRow, RowRow } from './dataset-rows.js';
import { datasetColumns, datasetFromRow, newestFirst, rowColumns, rowFromRow } from './dataset-rows.js';
import { DatasetStoreError } from './dataset-repository.js';
import type {
  DatasetRecord, DatasetRepository, DatasetRowRecord, DatasetState, NewDataset, RowCounts, RowOutcome, RowState,
} from './dataset-repository.js';

const missStatuses = ['MAX_ITERATIONS', 'PATIENCE', 'THRESHOLD'];
const poolSize = 4; // connections: the data set runner makes one call at a time, the service a few
/** The lead connection's application_name, which finds it in pg_stat_activity. */
export const leadApplicationName = 'recite-dataset-lead';
const leadCheckTimeoutMs = 10_000; // ms a lock or check query on the lead connection may take before it counts as lost

/** The connection that holds (or seeks) the data set lead, and who hears when it ends. */
interface LeadSession {
  client: pg.Client;
  leading: boolean;
  onLost: (() => void) | undefined;
}

/** Store data sets and their rows in a PostgreSQL database; see the module comment. */
export class PostgresDatasetStore implements DatasetRepository {
  /** Other servers may use the database at once. */
  readonly shared = true;
  private closed = false;
  private lead: LeadSession | undefined;
  /** The lead attempt under way: one at a time, so two never open a connection each. */
  private leadAttempt: Promise<boolean> | undefined;

  private constructor(private readonly pool: Pool, private readonly url: string) {}

  /** Open the data set tables of the database at `url` (the job store's), creating or upgrading the schema. */
  static async open(url: string, options?: Partial<PostgresPoolOptions>): Promise<PostgresDatasetStore> {
    return new PostgresDatasetStore(await openPostgresPool(url, DatasetStoreError, { max: poolSize, ...options }), url);
  }

  get open(): boolean {
    return !this.closed;
  }

  /** Close the pool and the lead connection, which frees the lead (no `onLost`: the closer knows). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const lead = this.lead;
    this.lead = undefined;
    if (lead) {
      lead.leading = false;
      await lead.client.end().catch(() => {});
    }
    await this.pool.end();
  }

  /**
   * Take the lead with pg_try_advisory_lock on the lead connection (opened on the first call, and again after it was
   * lost). While leading, check that the connection still answers: one that does not is ended, and the lead reported
   * lost, rather than trusted while the server may have ended the session and handed the lock to another.
   */
  async leadRunner(onLost?: () => void): Promise<boolean> {
    this.leadAttempt ??= this.tryLead(onLost).finally(() => {
      this.leadAttempt = undefined;
    });
    return this.leadAttempt;
  }

  private async tryLead(onLost: (() => void) | undefined): Promise<boolean> {
    if (this.closed) return false;
    const lead = this.lead ?? await this.connectLead();
    if (lead === undefined) return false;
    try {
      if (lead.leading) {
        await lead.client.query('SELECT 1');
      } else {
        const { rows } = await lead.client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked',
          [datasetLeadLockKey]);
        // Ended while the query ran (then the lock, if taken, went with the session), or closed meanwhile.
        if (this.lead !== lead || this.closed) return false;
        lead.leading = rows[0].locked;
      }
    } catch (error: unknown) {
      this.leadEnded(lead);
      throw new DatasetStoreError(`leadRunner: the lead connection to ${redactUrl(this.url)} failed: ${describe(error)}`);
    }
    if (lead.leading && onLost) lead.onLost = onLost;
    return lead.leading && this.lead === lead;
  }

  private async connectLead(): Promise<LeadSession | undefined> {
    const client = new pg.Client({
      connectionString: this.url, application_name: leadApplicationName, keepAlive: true, query_timeout: leadCheckTimeoutMs,
    });
    const lead: LeadSession = { client, leading: false, onLost: undefined };
    // An error or end of an open connection is the loss of the lead (and of the lock, which the session held).
    client.on('error', () => this.leadEnded(lead));
    client.on('end', () => this.leadEnded(lead));
    try {
      await client.connect();
    } catch (error: unknown) {
      await client.end().catch(() => {});
      throw new DatasetStoreError(`leadRunner: cannot connect to ${redactUrl(this.url)}: ${describe(error)}`);
    }
    if (this.closed) {
      await client.end().catch(() => {});
      return undefined;
    }
    this.lead = lead;
    return lead;
  }

  private leadEnded(lead: LeadSession): void {
    if (this.lead === lead) this.lead = undefined;
    lead.client.end().catch(() => {});
    if (!lead.leading) return;
    lead.leading = false;
    lead.onLost?.();
  }

  async createDataset(dataset: NewDataset): Promise<void> {
    if (dataset.rows.length === 0) throw new DatasetStoreError(`createDataset: data set '${dataset.name}' has no rows`);
    await inTransaction(this.pool, async (client) => {
      try {
        await client.query(`INSERT INTO datasets (id, client_id, name, content_hash, model, settings, state, created_at,
          row_count) VALUES ($1, $2, $3, $4, $5, $6, 'RUNNING', $7, $8)`, [dataset.id, dataset.clientId, dataset.name,
          dataset.contentHash, dataset.model, buffer(dataset.settings), dataset.createdAtMs, dataset.rows.length]);
      } catch (error: unknown) {
        if (isUniqueViolation(error)) {
          throw new DatasetStoreError(`createDataset: client '${dataset.clientId}' already has a data set '${dataset.name}'`);
        }
        throw error;
      }
      // Found before the insert, in row order, so the message names the same row as SQLite's per-row insert does.
      const seen = new Set<string>();
      dataset.rows.forEach((row, index) => {
        if (seen.has(row.rowId)) throw new DatasetStoreError(`createDataset: row ${index} repeats the id '${row.rowId}'`);
        seen.add(row.rowId);
      });
      // One round trip for all rows: each column as an array, zipped back into rows by unnest.
      await client.query(`INSERT INTO dataset_rows (dataset_id, idx, row_id, target_text, target_ids, state)
        SELECT $1::text, idx - 1, row_id, target_text, target_ids, 'PENDING'
        FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS r (row_id, target_text, target_ids, idx)`, [
        dataset.id, dataset.rows.map((r) => r.rowId),
        dataset.rows.map((r) => ('text' in r.target ? r.target.text : null)),
        dataset.rows.map((r) => ('ids' in r.target ? JSON.stringify(r.target.ids) : null)),
      ]);
    });
  }

  async getDataset(clientId: string, name: string): Promise<DatasetRecord | undefined> {
    const rows = await this.datasets(`SELECT ${datasetColumns} FROM datasets WHERE client_id = $1 AND name = $2`, [clientId, name]);
    return rows[0];
  }

  async getDatasetById(id: string): Promise<DatasetRecord | undefined> {
    const rows = await this.datasets(`SELECT ${datasetColumns} FROM datasets WHERE id = $1`, [id]);
    return rows[0];
  }

  async listDatasets(clientId: string, limit: number, beforeName?: string): Promise<DatasetRecord[]> {
    if (beforeName === undefined) {
      return this.datasets(`SELECT ${datasetColumns} FROM datasets WHERE client_id = $1 ${newestFirst} LIMIT $2`,
        [clientId, limitOrAll(limit)]);
    }
    const { rows } = await this.pool.query<{ row: number; created_at: number }>(
      'SELECT row, created_at FROM datasets WHERE client_id = $1 AND name = $2', [clientId, beforeName]);
    if (rows.length === 0) throw new DatasetStoreError(`listDatasets: client '${clientId}' has no data set '${beforeName}'`);
    return this.datasets(`SELECT ${datasetColumns} FROM datasets WHERE client_id = $1 AND (created_at, row) < ($2, $3)
      ${newestFirst} LIMIT $4`, [clientId, rows[0].created_at, rows[0].row, limitOrAll(limit)]);
  }

  async activeDatasets(): Promise<DatasetRecord[]> {
    return this.datasets(`SELECT ${datasetColumns} FROM datasets
      WHERE state = 'RUNNING' OR (state = 'CANCELLED' AND finished_rows < row_count) ORDER BY created_at, row`, []);
  }

  async rowsInState(datasetId: string, state: RowState, limit = -1): Promise<DatasetRowRecord[]> {
    return this.rowRecords(`SELECT ${rowColumns} FROM dataset_rows WHERE dataset_id = $1 AND state = $2 ORDER BY idx LIMIT $3`,
      [datasetId, state, limitOrAll(limit)]);
  }

  async rows(datasetId: string, fromIndex: number, limit: number): Promise<DatasetRowRecord[]> {
    return this.rowRecords(`SELECT ${rowColumns} FROM dataset_rows WHERE dataset_id = $1 AND idx >= $2 ORDER BY idx LIMIT $3`,
      [datasetId, fromIndex, limitOrAll(limit)]);
  }

  async finishedRows(datasetId: string, afterFinishOrder: number, limit: number): Promise<DatasetRowRecord[]> {
    return this.rowRecords(`SELECT ${rowColumns} FROM dataset_rows WHERE dataset_id = $1 AND finish_order > $2
      ORDER BY finish_order LIMIT $3`, [datasetId, afterFinishOrder, limitOrAll(limit)]);
  }

  async markSubmitting(datasetId: string, index: number, atMs: number): Promise<void> {
    await this.move(datasetId, index, 'PENDING', (client) => client.query(`UPDATE dataset_rows
      SET state = 'SUBMITTING', submitting_at = $1 WHERE dataset_id = $2 AND idx = $3`, [atMs, datasetId, index]));
  }

  async markSubmitted(datasetId: string, index: number, jobId: string): Promise<void> {
    await this.move(datasetId, index, 'SUBMITTING', (client) => client.query(`UPDATE dataset_rows
      SET state = 'SUBMITTED', job_id = $1 WHERE dataset_id = $2 AND idx = $3`, [jobId, datasetId, index]));
  }

  async markPending(datasetId: string, index: number): Promise<void> {
    await this.move(datasetId, index, 'SUBMITTING', (client) => client.query(`UPDATE dataset_rows
      SET state = 'PENDING', submitting_at = NULL WHERE dataset_id = $1 AND idx = $2`, [datasetId, index]));
  }

  async finishRow(datasetId: string, index: number, outcome: RowOutcome, nowMs: number): Promise<number> {
    return inTransaction(this.pool, async (client) => {
      // The data set first: its finished_rows hands out the finish order, one finisher at a time.
      const datasets = await client.query<{ state: DatasetState; row_count: number; finished_rows: number }>(
        'SELECT state, row_count, finished_rows FROM datasets WHERE id = $1 FOR UPDATE', [datasetId]);
      const rows = await client.query<{ state: RowState }>(
        'SELECT state FROM dataset_rows WHERE dataset_id = $1 AND idx = $2 FOR UPDATE', [datasetId, index]);
      if (datasets.rows.length === 0 || rows.rows.length === 0) {
        throw new DatasetStoreError(`finishRow: data set '${datasetId}' has no row ${index}`);
      }
      if (rows.rows[0].state === 'FINISHED') {
        throw new DatasetStoreError(`finishRow: row ${index} of '${datasetId}' has already finished`);
      }
      const dataset = datasets.rows[0];
      const order = dataset.finished_rows + 1;
      await client.query(`UPDATE dataset_rows SET state = 'FINISHED', status = $1, iterations_to_hit = $2, best_nll = $3,
        iterations = $4, elapsed_ms = $5, error = $6, finish_order = $7 WHERE dataset_id = $8 AND idx = $9`, [
        outcome.status, outcome.iterationsToHit, outcome.bestNll, outcome.iterations, outcome.elapsedMs, outcome.error,
        order, datasetId, index,
      ]);
      const done = order === dataset.row_count;
      const state = done && dataset.state === 'RUNNING' ? 'FINISHED' : dataset.state;
      await client.query('UPDATE datasets SET finished_rows = $1, state = $2, finished_at = $3 WHERE id = $4',
        [order, state, done ? nowMs : null, datasetId]);
      return order;
    });
  }

  async cancelDataset(datasetId: string): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `UPDATE datasets SET state = 'CANCELLED' WHERE id = $1 AND state = 'RUNNING'`, [datasetId]);
    return (rowCount ?? 0) > 0;
  }

  async counts(datasetId: string): Promise<RowCounts> {
    const { rows } = await this.pool.query<{
      rows: number; pending: number; submitted: number; finished: number; hits: number; misses: number; iterations: number;
    }>(`SELECT count(*) AS rows,
        count(*) FILTER (WHERE state IN ('PENDING', 'SUBMITTING')) AS pending,
        count(*) FILTER (WHERE state = 'SUBMITTED') AS submitted,
        count(*) FILTER (WHERE state = 'FINISHED') AS finished,
        count(*) FILTER (WHERE state = 'FINISHED' AND status = 'HIT') AS hits,
        count(*) FILTER (WHERE state = 'FINISHED' AND status = ANY($1::text[])) AS misses,
        coalesce(sum(iterations) FILTER (WHERE state = 'FINISHED'), 0)::bigint AS iterations
      FROM dataset_rows WHERE dataset_id = $2`, [missStatuses, datasetId]);
    const [c] = rows;
    return {
      rows: c.rows,
      pending: c.pending,
      submitted: c.submitted,
      finished: c.finished,
      hits: c.hits,
      misses: c.misses,
      failed: c.finished - c.hits - c.misses,
      finishedIterations: c.iterations,
    };
  }

  private async move(datasetId: string, index: number, from: RowState,
    update: (client: PoolClient) => Promise<unknown>): Promise<void> {
    await inTransaction(this.pool, async (client) => {
      const { rows } = await client.query<{ state: RowState }>(
        'SELECT state FROM dataset_rows WHERE dataset_id = $1 AND idx = $2 FOR UPDATE', [datasetId, index]);
      if (rows.length === 0) throw new DatasetStoreError(`data set '${datasetId}' has no row ${index}`);
      if (rows[0].state !== from) {
        throw new DatasetStoreError(`row ${index} of data set '${datasetId}' is ${rows[0].state}; the move needs ${from}`);
      }
      await update(client);
    });
  }

  private async datasets(sql: string, values: unknown[]): Promise<DatasetRecord[]> {
    const { rows } = await this.pool.query<DatasetRow>(sql, values);
    return rows.map(datasetFromRow);
  }

  private async rowRecords(sql: string, values: unknown[]): Promise<DatasetRowRecord[]> {
    const { rows } = await this.pool.query<RowRow>(sql, values);
    return rows.map(rowFromRow);
  }
}

/** Map SQLite's "negative limit: no limit" onto PostgreSQL's LIMIT NULL. */
function limitOrAll(limit: number): number | null {
  return limit < 0 ? null : limit;
}
