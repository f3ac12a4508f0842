// Throwaway PostgreSQL databases for the store tests: one fresh database per caller on the server named by
// RECITE_TEST_POSTGRES (default: the one test/postgres/start.sh starts), dropped afterwards. A server that cannot be
// reached fails the test: a store test that skipped would pass without checking anything.
import { createThrowawayDatabase, DatabaseUnreachableError } from '../../server/bench/throwaway-database.js';
import type { ThrowawayDatabase } from '../../server/bench/throwaway-database.js';

/** The admin URL the tests create their databases through; its role needs CREATEDB. */
export const adminUrl = process.env.RECITE_TEST_POSTGRES ?? 'postgres://recite:recite@127.0.0.1:5432/postgres';

/** A database of its own for a test; `drop()` removes it, ending any connection still open to it. */
export type TestDatabase = ThrowawayDatabase;

/** Create an empty database `recite_test_<random hex>`, or fail with how to start a server. */
export async function createTestDatabase(): Promise<TestDatabase> {
  try {
    return await createThrowawayDatabase(adminUrl, 'recite_test');
  } catch (error: unknown) {
    if (!(error instanceof DatabaseUnreachableError)) throw error;
    throw new Error(`${error.message.replace('PostgreSQL', 'PostgreSQL for the store tests')}: run ` +
      '`bash test/postgres/start.sh` (as root), or set RECITE_TEST_POSTGRES to the URL of a server whose role may ' +
      'CREATE DATABASE');
  }
}
