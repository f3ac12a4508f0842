// The store back ends the store suites run against, behind one shape: each test opens stores on an empty location
// (a fresh SQLite file, or a PostgreSQL database with an empty schema), so one behavioural test checks both.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import type { DatasetRepository } from '../../server/datasets/dataset-repository.js';
import { SqliteDatasetStore } from '../../server/datasets/dataset-store.js';
import { PostgresDatasetStore } from '../../server/datasets/postgres-dataset-store.js';
import type { JobRepository } from '../../server/store/job-repository.js';
import { PostgresJobStore } from '../../server/store/postgres-job-store.js';
import { SqliteJobStore } from '../../server/store/sqlite-job-store.js';
import { createTestDatabase } from './postgres.js';

export type BackendName = 'sqlite' | 'postgres';

/** Every back end, for `describe.each`. */
export const backendNames: readonly BackendName[] = ['sqlite', 'postgres'];

/** One back end's stores, all opened on the same location. */
export interface StoreBackend {
  readonly name: BackendName;
  /** Where the stores open now: a SQLite file path, or a database URL. */
  readonly location: string;
  openJobs(): Promise<JobRepository>;
  openDatasets(): Promise<DatasetRepository>;
  /** Return the first column of the first row of `sql`, run on the location directly (no store in between). */
  scalar(sql: string): Promise<unknown>;
  /** Start over on an empty location; close the stores first. */
  reset(): Promise<void>;
  /** Remove the location (the temp folder, or the test database). */
  cleanup(): Promise<void>;
}

/** Create back end `name` on an empty location: a file in a new temp folder, or a new test database. */
export async function createBackend(name: BackendName): Promise<StoreBackend> {
  return name === 'sqlite' ? sqliteBackend() : postgresBackend();
}

function sqliteBackend(): StoreBackend {
  const dir = mkdtempSync(join(tmpdir(), 'recite-store-'));
  let generation = 0;
  let file = join(dir, `store-${generation}.db`);
  return {
    name: 'sqlite',
    get location() {
      return file;
    },
    openJobs: async () => SqliteJobStore.open(file),
    openDatasets: async () => SqliteDatasetStore.open(file),
    async scalar(sql) {
      const raw = new Database(file, { readonly: true });
      try {
        return raw.prepare(sql).pluck().get();
      } finally {
        raw.close();
      }
    },
    async reset() {
      generation++;
      file = join(dir, `store-${generation}.db`);
    },
    async cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function postgresBackend(): Promise<StoreBackend> {
  const database = await createTestDatabase();
  const run = async <T>(work: (client: pg.Client) => Promise<T>): Promise<T> => {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      return await work(client);
    } finally {
      await client.end();
    }
  };
  return {
    name: 'postgres',
    location: database.url,
    openJobs: () => PostgresJobStore.open(database.url),
    openDatasets: () => PostgresDatasetStore.open(database.url),
    scalar: (sql) => run(async (client) => {
      const { rows } = await client.query({ text: sql, rowMode: 'array' });
      const value: unknown = rows[0]?.[0];
      // count(*) is int8, which pg hands out as a string outside the stores' own pools.
      return typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
    }),
    // The test role owns the database and so its public schema: dropping it leaves a database as new.
    reset: () => run(async (client) => {
      await client.query('DROP SCHEMA public CASCADE; CREATE SCHEMA public');
    }),
    cleanup: () => database.drop(),
  };
}
