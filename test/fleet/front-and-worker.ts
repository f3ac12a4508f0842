// The smallest fleet: a front server (`--role api`, runs no job) and a worker (`--role worker`) on a throwaway
// PostgreSQL database, both `recite serve` child processes. The dashboard tests watch, on the front server, jobs that
// the worker runs.
import { createTestDatabase } from '../helpers/postgres.js';
import { spawnServe, stopServe } from '../crash/serve-process.js';
import type { ServeProcess } from '../crash/serve-process.js';

export interface FrontAndWorker {
  front: ServeProcess;
  worker: ServeProcess;
  /** Stop both servers, then drop the database. */
  close(): Promise<void>;
}

export async function startFrontAndWorker(): Promise<FrontAndWorker> {
  const db = await createTestDatabase();
  const servers: ServeProcess[] = [];
  const close = async () => {
    for (const server of servers.reverse()) await stopServe(server);
    await db.drop();
  };
  try {
    servers.push(await spawnServe(db.url, ['--server-id', 'front', '--role', 'api']));
    servers.push(await spawnServe(db.url, ['--server-id', 'worker', '--role', 'worker']));
  } catch (error: unknown) {
    await close();
    throw error;
  }
  return { front: servers[0]!, worker: servers[1]!, close };
}
