// Choose the data set store's back end the way the job store's is chosen (server/store/open-job-store.ts): a
// PostgreSQL URL opens the shared database, anything else is the path of the SQLite file the job store uses.
import { isPostgresUrl } from '../store/open-job-store.js';
import type { DatasetRepository } from './dataset-repository.js';
import { SqliteDatasetStore } from './dataset-store.js';
import { PostgresDatasetStore } from './postgres-dataset-store.js';

/** Open the data set store at `location`: a PostgreSQL URL, or a SQLite file path. */
export async function openDatasetStore(location: string): Promise<DatasetRepository> {
  return isPostgresUrl(location) ? PostgresDatasetStore.open(location) : SqliteDatasetStore.open(location);
}
