// Shared pieces of the service suites: the real ReciteService in memory (the same parts server.ts wires, minus
// HTTP), clients over each protocol, and small helpers to drain streams and read error codes.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { Client, ConnectRouter, Transport } from '@connectrpc/connect';
import { ConnectError, createClient, createRouterTransport } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import pino from 'pino';
import { resolveModelDir } from '../../server/model/builtin-models.js';
import { createAuthInterceptor, TokenTable } from '../../server/service/auth.js';
import { HealthServiceImpl } from '../../server/service/health-service.js';
import type { JobHubOptions } from '../../server/service/job-hub.js';
import { JobHub } from '../../server/service/job-hub.js';
import { ModelRegistry } from '../../server/service/model-registry.js';
import { ReciteServiceImpl } from '../../server/service/recite-service.js';
import { SqliteJobStore } from '../../server/store/sqlite-job-store.js';
import { logErrors } from '../../server/service/request-decoding.js';
import { Health } from '../../sdk/gen/health/v1/health_pb.js';
import { ReciteService } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { JobEvent, JobSpecSchema } from '../../sdk/gen/recite/v1/recite_pb.js';
import { aliceToken, bobToken } from '../helpers/test-server.js';

export { aliceToken, bobToken };

export type ReciteClient = Client<typeof ReciteService>;
export type HealthClient = Client<typeof Health>;
export type Spec = MessageInitShape<typeof JobSpecSchema>;

export const tokens = new TokenTable(new Map([[aliceToken, 'alice'], [bobToken, 'bob']]));

/** The tiny model's "Hello world" with the settings that reach a hit in about a hundred iterations. */
export const helloSpec: Spec = {
  target: { case: 'text', value: 'Hello world' },
  settings: { parameterization: { kind: { case: 'full', value: {} } }, seed: 0 },
};

/** A job that never ends by itself: it keeps optimizing after its hit, for 100000 iterations. */
export const endlessSpec: Spec = {
  target: { case: 'text', value: 'Hello world' },
  settings: {
    parameterization: { kind: { case: 'full', value: {} } },
    maxIterations: 100_000,
    continueAfterHit: true,
    reportEvery: 50,
  },
};

/** Headers that carry a client's bearer token. */
export function bearer(token: string): { headers: Record<string, string> } {
  return { headers: { authorization: `Bearer ${token}` } };
}

export interface InMemoryService {
  transport: Transport;
  hub: JobHub;
  models: ModelRegistry;
  store: SqliteJobStore;
  close(): Promise<void>;
}

/** Wire the real service as server.ts does (store on a temp SQLite file, the tiny model on the CPU) in memory. */
export async function createInMemoryService(hubOptions: Partial<JobHubOptions> = {}): Promise<InMemoryService> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-memory-'));
  const store = SqliteJobStore.open(path.join(dir, 'recite.db'));
  const models = new ModelRegistry([{ name: 'tiny', dir: resolveModelDir('tiny') }], {
    device: 'cpu',
    engine: { maxBatch: 64, maxActiveRuns: 64 },
  });
  const hub = new JobHub(store, models, hubOptions, pino({ level: 'silent' }));
  const routes = (router: ConnectRouter) => router
    .service(ReciteService, new ReciteServiceImpl(hub, models))
    .service(Health, new HealthServiceImpl(models));
  // The server's own edge: errors mapped to the API's (logErrors), the token checked.
  const transport = createRouterTransport(routes, {
    router: { interceptors: [logErrors(pino({ level: 'silent' })), createAuthInterceptor(tokens)] },
  });
  await models.ready();
  await hub.start();
  return {
    transport, hub, models, store,
    async close() {
      await hub.shutdown();
      await models.close();
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export type Protocol = 'connect' | 'grpc' | 'grpc-web';

/** A transport to a listening server: Connect over HTTP/1.1, gRPC over HTTP/2, gRPC-Web over HTTP/1.1. */
export function networkTransport(protocol: Protocol, baseUrl: string): Transport {
  if (protocol === 'grpc') return createGrpcTransport({ baseUrl });
  if (protocol === 'grpc-web') return createGrpcWebTransport({ baseUrl, httpVersion: '1.1' });
  return createConnectTransport({ baseUrl, httpVersion: '1.1' });
}

export function reciteClient(transport: Transport): ReciteClient {
  return createClient(ReciteService, transport);
}

export function healthClient(transport: Transport): HealthClient {
  return createClient(Health, transport);
}

/** Read a whole stream of { jobId, event } responses. */
export async function drain(stream: AsyncIterable<{ jobId: string; event?: JobEvent }>): Promise<{ jobIds: Set<string>; events: JobEvent[] }> {
  const jobIds = new Set<string>();
  const events: JobEvent[] = [];
  for await (const response of stream) {
    jobIds.add(response.jobId);
    if (response.event) events.push(response.event);
  }
  return { jobIds, events };
}

/** Return the ConnectError a call ends with; fail when it succeeds. */
export async function errorOf(call: Promise<unknown> | (() => Promise<unknown>)): Promise<ConnectError> {
  try {
    await (typeof call === 'function' ? call() : call);
  } catch (error: unknown) {
    return ConnectError.from(error);
  }
  throw new Error('expected the call to fail');
}

/** Wait until `check` returns true, polling every 20 ms, or fail after `timeoutMs`. */
export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
