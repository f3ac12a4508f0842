// Before any test: make sure the PostgreSQL the store and fleet tests use answers. With the default URL and no server
// answering, start the local one with test/postgres/start.sh (Debian's postgresql package, run as root), so the
// README's `npm ci && npm test` holds on a machine that has the package. Anything else is left to the tests, which
// fail (never skip) with how to fix it.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const defaultUrl = 'postgres://recite:recite@127.0.0.1:5432/postgres';

async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

export default async function setup(): Promise<void> {
  if (process.env.RECITE_TEST_POSTGRES || await answers(defaultUrl)) return;
  if (process.getuid?.() !== 0) return;
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'start.sh');
  try {
    execFileSync('bash', [script], { stdio: ['ignore', 'ignore', 'inherit'] });
  } catch {
    // start.sh said why on stderr; the PostgreSQL tests fail with the same advice.
  }
}
