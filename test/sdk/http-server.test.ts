// The SDK's default fetch transport (Connect and gRPC-Web) against the fake service on a real HTTP server, port 0
// per test.
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Code, ConnectError, createReciteClient } from '../../sdk/index.js';
import type { Interceptor, ReciteEvent } from '../../sdk/index.js';
import { createFakeRecite } from './fake-recite.js';
import type { FakeRecite } from './fake-recite.js';

let fake: FakeRecite;
let server: Server;
let baseUrl: string;

beforeEach(async () => {
  fake = createFakeRecite();
  server = createServer(connectNodeAdapter({ routes: fake.routes }));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

async function collect(events: AsyncIterable<ReciteEvent>): Promise<ReciteEvent[]> {
  const out: ReciteEvent[] = [];
  for await (const event of events) out.push(event);
  return out;
}

describe.each(['connect', 'grpc-web'] as const)('default transport, %s', (protocol) => {
  it('sends the bearer token and streams the job', async () => {
    const client = createReciteClient(baseUrl, { token: 's3cret', protocol });
    const events = await collect(client.invert('Hello world', { lr: 0.5 }));
    expect(events.map((e) => e.type)).toEqual(['queued', 'started', 'progress', 'progress', 'progress', 'restart_result', 'result']);
    expect(events.at(-1)).toMatchObject({ jobId: 'job-1', sequence: 7, targetText: 'Hello world' });
    expect(await client.getJob('job-1')).toMatchObject({ jobId: 'job-1', label: 'row 3' });
    expect(fake.calls.map((c) => [c.method, c.authorization])).toEqual([['invert', 'Bearer s3cret'], ['getJob', 'Bearer s3cret']]);
  });

  it('turns server errors into ConnectErrors with their code', async () => {
    const client = createReciteClient(baseUrl, { protocol });
    await expect(client.getJob('job-1')).rejects.toSatisfy((e) => ConnectError.from(e).code === Code.Unauthenticated);
    const authed = createReciteClient(baseUrl, { protocol, token: 's3cret' });
    await expect(collect(authed.watchJob('job-404'))).rejects.toSatisfy((e) => ConnectError.from(e).code === Code.NotFound);
  });

  it('ends the stream on abort, and the server sees the client go away', async () => {
    fake.script.endless = true;
    const client = createReciteClient(baseUrl, { token: 's3cret', protocol });
    const controller = new AbortController();
    const ended = fake.streamEnded();
    let n = 0;
    for await (const _event of client.invert('Hello', { signal: controller.signal, cancelOnDisconnect: true })) {
      if (++n === 9) controller.abort();
    }
    expect(n).toBe(9);
    await ended;
    expect(fake.disconnects).toEqual(['invert']);
    expect(fake.calls[0].request).toMatchObject({ cancelOnDisconnect: true });
  });
});

it('runs the caller\'s own interceptors on the default transport, beside the token', async () => {
  const seen: string[] = [];
  const logger: Interceptor = (next) => async (request) => {
    seen.push(`${request.method.name} ${request.header.get('authorization')}`);
    return next(request);
  };
  const client = createReciteClient(baseUrl, { token: 's3cret', interceptors: [logger] });
  await client.listModels();
  expect(seen).toEqual(['ListModels Bearer s3cret']);
});

it('refuses an unknown protocol', () => {
  expect(() => createReciteClient(baseUrl, { protocol: 'grpc' as never })).toThrow(/protocol is "grpc"/);
});
