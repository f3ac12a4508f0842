// What an unauthenticated or hostile client can hold on the shared server, before Connect decodes anything:
// sockets that send nothing (or a request head one byte at a time) are closed at a deadline, also those the cleartext
// port hands to the HTTP/1.1 server by hand; one HTTP/2 connection opens at most 100 streams at once; a request is
// refused from its headers (no token, an unknown one, a declared body over the limit) before its body is read.
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Health } from '../../sdk/gen/health/v1/health_pb.js';
import type { TestServer } from '../helpers/test-server.js';
import { aliceToken, startTestServer } from '../helpers/test-server.js';

let server: TestServer;
const headersTimeoutMs = 400;
const idleTimeoutMs = 600;
const bodyTimeoutMs = 800;

beforeAll(async () => {
  server = await startTestServer({
    connectionLimits: { headersTimeoutMs, idleTimeoutMs, bodyTimeoutMs, maxStreamsPerConnection: 100 },
    readMaxBytes: 1024 * 1024,
  });
});

afterAll(async () => {
  await server.close();
});

/** Connect and resolve with the ms until the server closes the socket; `feed` writes to it meanwhile. */
function closedAfter(feed: (socket: net.Socket) => void = () => {}): Promise<number> {
  const { port } = new URL(server.url);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = net.connect(Number(port), '127.0.0.1', () => feed(socket));
    socket.on('error', () => {});
    socket.on('close', () => resolve(performance.now() - started));
    setTimeout(() => reject(new Error('the server kept the socket open for 5 s')), 5000).unref();
  });
}

describe('socket deadlines', () => {
  it('closes a socket that sends nothing', async () => {
    const ms = await closedAfter();
    expect(ms).toBeGreaterThanOrEqual(headersTimeoutMs - 50);
  });

  it('closes an HTTP/1.1 socket that trickles its request head (the deadline is not extended by bytes)', async () => {
    const head = 'GET /metrics HTTP/1.1\r\nHost: x\r\n';
    const ms = await closedAfter((socket) => {
      let i = 0;
      const timer = setInterval(() => {
        if (socket.destroyed || i >= head.length) return clearInterval(timer);
        socket.write(head[i++]!);
      }, 50);
    });
    expect(ms).toBeLessThan(headersTimeoutMs + 1000);
  });

  it('closes an idle keep-alive HTTP/1.1 connection after its last response, not while a response streams', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const socketClosed = new Promise<number>((resolve) => {
      const req = http.get(`${server.url}/metrics`, { agent }, (res) => {
        res.resume();
        res.on('end', () => {
          const ended = performance.now();
          req.socket!.once('close', () => resolve(performance.now() - ended));
        });
      });
    });
    const ms = await socketClosed;
    expect(ms).toBeGreaterThanOrEqual(idleTimeoutMs - 50);
    expect(ms).toBeLessThan(idleTimeoutMs + 1500);
    agent.destroy();
  });

  it('cuts off a request whose body trickles in past the body deadline', async () => {
    const { port } = new URL(server.url);
    const started = performance.now();
    const ms = await new Promise<number>((resolve) => {
      const socket = net.connect(Number(port), '127.0.0.1', () => {
        socket.write(`POST /recite.v1.ReciteService/ListJobs HTTP/1.1\r\nHost: x\r\nauthorization: Bearer ${aliceToken}\r\n` +
          'content-type: application/proto\r\ncontent-length: 1000\r\n\r\n');
        const timer = setInterval(() => (socket.destroyed ? clearInterval(timer) : socket.write('\0')), 100);
      });
      socket.on('error', () => {});
      socket.on('close', () => resolve(performance.now() - started));
    });
    expect(ms).toBeGreaterThanOrEqual(bodyTimeoutMs - 50);
    expect(ms).toBeLessThan(bodyTimeoutMs + 1000);
  });

  it('keeps an HTTP/2 stream open past the deadlines while it is in flight', async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: server.url }));
    const abort = new AbortController();
    let messages = 0;
    const started = performance.now();
    // Health.Watch sends the status, then nothing until it changes: a quiet stream in flight.
    setTimeout(() => abort.abort(), 2 * idleTimeoutMs + 200);
    try {
      for await (const _ of health.watch({ service: '' }, { signal: abort.signal })) messages++;
    } catch (error: unknown) {
      expect(ConnectError.from(error).code).toBe(Code.Canceled);
    }
    expect(messages).toBeGreaterThanOrEqual(1);
    expect(performance.now() - started).toBeGreaterThan(2 * idleTimeoutMs);
  });
});

describe('an idle HTTP/2 connection', () => {
  it('gets a GOAWAY after its last stream, so its client reconnects rather than meeting a dead socket', async () => {
    const session = http2.connect(server.url);
    const goaway = new Promise<number>((resolve) => session.once('goaway', () => resolve(performance.now())));
    const answered = await new Promise<number>((resolve) => {
      const stream = session.request({ ':method': 'POST', ':path': '/grpc.health.v1.Health/Check',
        'content-type': 'application/grpc', te: 'trailers' });
      stream.on('close', () => resolve(performance.now()));
      stream.resume();
      stream.end(Buffer.from([0, 0, 0, 0, 0]));
    });
    const ms = (await goaway) - answered;
    session.destroy();
    expect(ms).toBeGreaterThanOrEqual(idleTimeoutMs - 50);
    expect(ms).toBeLessThan(idleTimeoutMs + 1000);
  });
});

describe('HTTP/2 streams per connection', () => {
  it('advertises a limit of 100 and refuses streams beyond it', async () => {
    const session = http2.connect(server.url);
    await new Promise<void>((resolve) => session.once('remoteSettings', () => resolve()));
    expect(session.remoteSettings.maxConcurrentStreams).toBe(100);
    // Ask for 150 Health.Watch streams at once (each stays open): at most 100 are answered; the others are refused
    // or never start.
    const frame = Buffer.from([0, 0, 0, 0, 0]); // an empty HealthCheckRequest, gRPC-framed
    const outcomes = await Promise.all(Array.from({ length: 150 }, () => new Promise<string>((resolve) => {
      setTimeout(() => resolve('not started'), 2000);
      const stream = session.request({ ':method': 'POST', ':path': '/grpc.health.v1.Health/Watch',
        'content-type': 'application/grpc', te: 'trailers' });
      stream.on('response', () => resolve('open'));
      stream.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
      stream.on('close', () => resolve(`closed ${stream.rstCode}`));
      stream.end(frame);
    })));
    session.destroy();
    expect(outcomes.filter((o) => o === 'open').length).toBeLessThanOrEqual(100);
    expect(outcomes.filter((o) => o !== 'open').length).toBeGreaterThanOrEqual(50);
  });
});

/** POST `bytes` zeros to a ReciteService method over HTTP/1.1, declaring their length; resolves with the answer. */
function post(bytes: number, authorization: string | undefined): Promise<{ status: number; body: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = http.request(`${server.url}/recite.v1.ReciteService/SubmitJob`, {
      method: 'POST',
      headers: { 'content-type': 'application/proto', 'content-length': bytes,
        ...(authorization ? { authorization } : {}) },
    }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => { body += chunk.toString(); });
      res.on('end', () => resolve({ status: res.statusCode!, body, ms: performance.now() - started }));
    });
    req.on('error', reject);
    // Send the head and a first piece only: an answer that needs the rest would never come.
    req.write(Buffer.alloc(Math.min(bytes, 64 * 1024)));
  });
}

describe('refused from the headers, before the body is read', () => {
  it('a request without a token', async () => {
    const answer = await post(12_000_000, undefined);
    expect(answer.status).toBe(401);
    expect(JSON.parse(answer.body)).toEqual({ code: 'unauthenticated',
      message: 'missing bearer token: send "authorization: Bearer <token>"' });
  });

  it('a request with an unknown token', async () => {
    const answer = await post(12_000_000, 'Bearer mallory-token-0123456789abcdef');
    expect(answer.status).toBe(401);
    expect(JSON.parse(answer.body).message).toBe('the bearer token is not valid on this server');
  });

  it('a declared body over the limit, naming its length and the limit', async () => {
    const answer = await post(2 * 1024 * 1024, `Bearer ${aliceToken}`);
    expect(answer.status).toBe(429);
    expect(JSON.parse(answer.body)).toEqual({ code: 'resource_exhausted',
      message: 'request body: content-length 2097152 bytes exceeds the limit of 1048576 bytes' });
  });

  it('over gRPC too, as a gRPC status', async () => {
    const session = http2.connect(server.url);
    const answer = await new Promise<Record<string, unknown>>((resolve) => {
      const stream = session.request({ ':method': 'POST', ':path': '/recite.v1.ReciteService/SubmitJob',
        'content-type': 'application/grpc', 'content-length': '12000000', te: 'trailers' });
      stream.on('response', (headers) => resolve(headers));
      stream.write(Buffer.alloc(1024));
    });
    session.destroy();
    expect(answer['grpc-status']).toBe(String(Code.Unauthenticated));
  });
});
