// A front server (--role api) on a PostgreSQL database that goes away while the server is idle: readiness says so within seconds (a
// probe write), new jobs are refused with UNAVAILABLE, and once the database is back the server is ready and accepts
// jobs again, with no restart. The database "goes away" behind a TCP proxy the test closes, connections and all.
import net from 'node:net';
import { Code, ConnectError } from '@connectrpc/connect';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, describe, expect, it } from 'vitest';
import { Health, HealthCheckResponse_ServingStatus } from '../../sdk/gen/health/v1/health_pb.js';
import { adminUrl, createTestDatabase } from '../helpers/postgres.js';
import { authHeaders, reciteClient, spawnServe, stopServe } from '../crash/serve-process.js';
import type { ServeProcess } from '../crash/serve-process.js';

/** A TCP proxy to the PostgreSQL server that can be cut (every connection closed, nothing accepted) and restored. */
async function proxy(): Promise<{ port: number; cut(): Promise<void>; restore(): Promise<void>; close(): Promise<void> }> {
  const target = new URL(adminUrl);
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  let port = 0;
  const listen = () => new Promise<void>((resolve) => {
    server = net.createServer((client) => {
      const upstream = net.connect(Number(target.port || 5432), target.hostname);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        s.on('error', () => {});
      }
      client.pipe(upstream).pipe(client);
    });
    server.listen(port, '127.0.0.1', () => {
      port = (server!.address() as net.AddressInfo).port;
      resolve();
    });
  });
  const cut = async () => {
    const closing = new Promise<void>((resolve) => server!.close(() => resolve()));
    for (const s of sockets) s.destroy();
    await closing;
  };
  await listen();
  return { port, cut, restore: listen, close: cut };
}

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const started = Date.now();
  while (!await check()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return Date.now() - started;
}

describe('a server whose PostgreSQL database goes away', () => {
  it('reports not ready within seconds, refuses jobs with UNAVAILABLE, and recovers when the database returns', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    const tunnel = await proxy();
    cleanups.push(() => tunnel.close());
    const url = new URL(db.url);
    url.host = `127.0.0.1:${tunnel.port}`;
    // A front server runs no jobs, so no claim touches the database while it is idle: only the probe can notice.
    const server: ServeProcess = await spawnServe(url.toString(), ['--server-id', 'front', '--role', 'api']);
    cleanups.push(() => stopServe(server));
    const health = createClient(Health, createGrpcTransport({ baseUrl: server.url }));
    const serving = async () => (await health.check({})).status === HealthCheckResponse_ServingStatus.SERVING;
    const client = reciteClient(server.url);
    const spec = { model: 'tiny', target: { case: 'text' as const, value: 'Hello world' },
      settings: { parameterization: { kind: { case: 'full' as const, value: {} } }, maxIterations: 5 } };
    await until(serving, 30_000, 'serving at start');
    await client.submitJob({ spec }, { headers: authHeaders });

    await tunnel.cut();
    const notReadyAfter = await until(async () => !await serving(), 10_000, 'NOT_SERVING after the database went away');
    const refused = await client.submitJob({ spec }, { headers: authHeaders }).then(() => undefined, (e: unknown) => e);
    expect(ConnectError.from(refused).code).toBe(Code.Unavailable);
    expect(ConnectError.from(refused).rawMessage).toContain('the job store cannot be written');

    await tunnel.restore();
    const readyAfter = await until(serving, 15_000, 'SERVING once the database is back');
    const { jobId } = await client.submitJob({ spec }, { headers: authHeaders });
    expect(jobId).not.toBe('');
    process.stdout.write(`database down: not ready after ${notReadyAfter} ms; ready again ${readyAfter} ms after it returned\n`);
  }, 120_000);
});
