// Choose the job store's back end from where it lives: a PostgreSQL URL opens the shared database, anything else is
// the path of a SQLite file on this machine.
import type { JobRepository } from './job-repository.js';
import { PostgresJobStore } from './postgres-job-store.js';
import { SqliteJobStore } from './sqlite-job-store.js';

/** Report whether `location` names a PostgreSQL database (postgres:// or postgresql://) rather than a file. */
export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}

/** Open the job store at `location`: a PostgreSQL URL, or a SQLite file path (created if missing). */
export async function openJobStore(location: string): Promise<JobRepository> {
  return isPostgresUrl(location) ? PostgresJobStore.open(location) : SqliteJobStore.open(location);
}
