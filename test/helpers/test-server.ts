// A real recite server on a free port for tests: the tiny model on the CPU, a SQLite file in a temp folder,
// two clients' tokens. Quiet logs unless RECITE_TEST_LOGS is set.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { resolveModelDir } from '../../server/model/builtin-models.js';
import { TokenTable } from '../../server/service/auth.js';
import type { ReciteServer, ReciteServerOptions } from '../../server/app.js';
import { createReciteServer } from '../../server/app.js';

export const aliceToken = 'alice-token-0123456789abcdef';
export const bobToken = 'bob-token-0123456789abcdef00';

export interface TestServer {
  server: ReciteServer;
  url: string;
  dbPath: string;
  dir: string;
  close(): Promise<void>;
}

/** Start a server on 127.0.0.1 port 0; `dir` reuses a folder (and its database) across restarts. */
export async function startTestServer(options: Partial<ReciteServerOptions> & { dir?: string } = {}): Promise<TestServer> {
  const dir = options.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'recite-server-'));
  const dbPath = path.join(dir, 'recite.db');
  const server = await createReciteServer({
    models: [{ name: 'tiny', dir: resolveModelDir('tiny') }],
    db: dbPath,
    tokens: new TokenTable(new Map([[aliceToken, 'alice'], [bobToken, 'bob']])),
    device: 'cpu',
    logger: pino({ level: process.env.RECITE_TEST_LOGS ? 'debug' : 'silent' }),
    ...options,
  });
  await server.listen(0);
  await server.models.ready();
  return { server, url: server.url, dbPath, dir, close: () => server.close() };
}
