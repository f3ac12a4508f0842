// Throwaway PostgreSQL databases for the store tests: one fresh database per caller on the server named by
// RECITE_TEST_POSTGRES (default: the one test/postgres/start.sh starts), dropped afterwards. A server that cannot be
// reached fails the test: a store test that skipped would pass without checking anything.
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The admin URL the tests create their databases through; its role needs CREATEDB. */
export const adminUrl = process.env.RECITE_TEST_POSTGRES ?? 'postgres://recite:recite@127.0.0.1:5432/postgres';

/** A database of its own for a test; `drop()` removes it, ending any connection still open to it. */
export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/** Connect to the admin database, or fail with how to start one. */
async function admin(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
  } catch (error: unknown) {
    await client.end().catch(() => {});
    const why = error instanceof AggregateError ? error.errors.map(String).join('; ') : String(error);
    throw new Error(`PostgreSQL for the store tests is not reachable at ${adminUrl.replace(/:[^:@/]*@/, ':***@')} ` +
      `(${why}): run \`bash test/postgres/start.sh\` (as root), or set RECITE_TEST_POSTGRES to the URL of a server ` +
      'whose role may CREATE DATABASE');
  }
  return client;
}

/** Create an empty database `recite_test_<random hex>` and return its URL. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `recite_test_${randomBytes(6).toString('hex')}`;
  const client = await admin();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  let dropped = false;
  return {
    name,
    url: url.toString(),
    async drop() {
      if (dropped) return;
      dropped = true;
      const dropper = await admin();
      try {
        // A store the test forgot to close would otherwise keep the database from being dropped.
        await dropper.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
        await dropper.query(`DROP DATABASE IF EXISTS ${name}`);
      } finally {
        await dropper.end();
      }
    },
  };
}
