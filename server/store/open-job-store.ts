// Placeholder opener (SQLite only) until the PostgreSQL back end lands.
import type { JobRepository } from './job-repository.js';
import { SqliteJobStore } from './sqlite-job-store.js';

export async function openJobStore(location: string): Promise<JobRepository> {
  return SqliteJobStore.open(location);
}
