// grpc.health.v1 as a stock gRPC health client sees it (grpc-js with grpc-health-check's service definition): every
// service the server serves answers with the server's one status, NOT_SERVING while the model loads and SERVING once
// it is ready; a service it does not serve is NOT_FOUND for Check and SERVICE_UNKNOWN for Watch. No token is needed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEngineModel } from '../../server/engine/engine-model.js';
import { resolveModelDir } from '../../server/model/builtin-models.js';
import { TokenTable } from '../../server/service/auth.js';
import type { ReciteServer } from '../../server/app.js';
import { createReciteServer } from '../../server/app.js';
import { aliceToken } from '../helpers/test-server.js';

// Every service the server mounts (reflection lists the same, test/interop/reflection.test.ts)
const servedServices = ['grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection',
  'grpc.reflection.v1alpha.ServerReflection', 'recite.v1.DatasetService', 'recite.v1.ReciteService'];

type Callback<T> = (error: grpc.ServiceError | null, response: T) => void;
interface HealthClient extends grpc.Client {
  Check(request: { service: string }, callback: Callback<{ status: string }>): void;
  List(request: object, callback: Callback<{ statuses: Record<string, { status: string }> }>): void;
  Watch(request: { service: string }): grpc.ClientReadableStream<{ status: string }>;
}

let server: ReciteServer;
let health: HealthClient;
let releaseModel!: () => void;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-health-'));

beforeAll(async () => {
  const gate = new Promise<void>((resolve) => { releaseModel = resolve; });
  server = await createReciteServer({
    models: [{ name: 'tiny', dir: resolveModelDir('tiny') }],
    db: path.join(dir, 'recite.db'),
    tokens: new TokenTable(new Map([[aliceToken, 'alice']])),
    device: 'cpu',
    logger: pino({ level: 'silent' }),
    // the model loads only when the test says so, to see the status while it loads
    loadModel: async (name, modelDir, device) => {
      await gate;
      return loadEngineModel(name, modelDir, device);
    },
  });
  await server.listen(0);
  const Client = grpc.makeClientConstructor(healthService, 'Health') as unknown as new (address: string, credentials: grpc.ChannelCredentials) => HealthClient;
  health = new Client(server.url.replace(/^http:\/\//, ''), grpc.credentials.createInsecure());
});

afterAll(async () => {
  releaseModel();
  health?.close();
  await server?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function check(service: string): Promise<string> {
  return new Promise((resolve, reject) => {
    health.Check({ service }, (error, response) => (error ? reject(error) : resolve(response.status)));
  });
}

function list(): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    health.List({}, (error, response) => (error ? reject(error)
      : resolve(Object.fromEntries(Object.entries(response.statuses).map(([name, s]) => [name, s.status])))));
  });
}

/** The first status a Watch of `service` sends. */
function firstWatched(service: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stream = health.Watch({ service });
    stream.on('data', (response: { status: string }) => {
      resolve(response.status);
      stream.cancel();
    });
    stream.on('error', (error: grpc.ServiceError) => {
      if (error.code !== grpc.status.CANCELLED) reject(error);
    });
  });
}

describe('grpc.health.v1 for every served service', () => {
  it('says NOT_SERVING for the server and each service while the model loads', async () => {
    for (const service of ['', ...servedServices]) expect([service, await check(service)]).toEqual([service, 'NOT_SERVING']);
  });

  it('says SERVING for the server and each service once the model is ready, in Check, List and Watch', async () => {
    releaseModel();
    await server.models.ready();
    for (const service of ['', ...servedServices]) expect([service, await check(service)]).toEqual([service, 'SERVING']);
    expect(await list()).toEqual(Object.fromEntries(['', ...servedServices].map((s) => [s, 'SERVING'])));
    expect(await firstWatched('recite.v1.DatasetService')).toBe('SERVING');
  });

  it('answers a service it does not serve with NOT_FOUND (Check) and SERVICE_UNKNOWN (Watch)', async () => {
    const error = await check('recite.v1.NoSuchService').then(() => undefined, (e: grpc.ServiceError) => e);
    expect(error?.code).toBe(grpc.status.NOT_FOUND);
    expect(error?.details).toContain('recite.v1.NoSuchService');
    expect(await firstWatched('recite.v1.NoSuchService')).toBe('SERVICE_UNKNOWN');
  });
});
