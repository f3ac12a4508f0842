// Throwaway PostgreSQL databases: a fresh, empty database on the server an admin URL names, and its removal. The
// fleet benchmark runs each point in one; the tests do the same (test/helpers/postgres.ts).
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { redactUrl } from '../store/postgres-schema.js';

/** Signal that the admin URL's server could not be reached; callers add how to fix it where they are. */
export class DatabaseUnreachableError extends Error {
  override name = 'DatabaseUnreachableError';
}

/** A database of its own; `drop()` removes it, ending any connection still open to it. */
export interface ThrowawayDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/** Run `work` on a connection to the admin URL; a server that cannot be reached is a DatabaseUnreachableError. */
async function asAdmin(adminUrl: string, work: (client: pg.Client) => Promise<unknown>): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
  } catch (error: unknown) {
    await client.end().catch(() => {});
    const why = error instanceof AggregateError ? error.errors.map(String).join('; ') : String(error);
    throw new DatabaseUnreachableError(`PostgreSQL is not reachable at ${redactUrl(adminUrl)} (${why})`);
  }
  try {
    await work(client);
  } finally {
    await client.end();
  }
}

/** Create an empty database `<prefix>_<random hex>` on the admin URL's server; its role needs CREATEDB. */
export async function createThrowawayDatabase(adminUrl: string, prefix: string): Promise<ThrowawayDatabase> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  await asAdmin(adminUrl, (client) => client.query(`CREATE DATABASE ${name}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  let dropped = false;
  return {
    name,
    url: url.toString(),
    async drop() {
      if (dropped) return;
      dropped = true;
      await asAdmin(adminUrl, async (client) => {
        // A server killed without finishing, or a store left open, would otherwise keep the drop from running. Only
        // this role's own sessions: an autovacuum worker in the database belongs to the superuser (terminating it is
        // refused), and DROP DATABASE stops it by itself.
        await client.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = $1 AND pid <> pg_backend_pid() AND usename = current_user`, [name]);
        await client.query(`DROP DATABASE IF EXISTS ${name}`);
      });
    },
  };
}
