// TLS: `recite serve --tls-cert --tls-key` with a self-signed certificate made here by openssl. One port speaks
// HTTP/2 (ALPN "h2": gRPC, Connect) and HTTP/1.1 (ALPN "http/1.1": Connect, the dashboard, metrics); the SDK's Node
// transport and the CLI reach it with an https URL and the certificate as their CA, and refuse it without.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReciteClient, createReciteNodeTransport } from '../../sdk/node.js';
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from '../../sdk/gen/health/v1/health_pb.js';
import { cliPath, serveToken, spawnServe, stopServe } from './serve-process.js';
import type { ServeProcess } from './serve-process.js';

let dir = '';
let cert = '';
let key = '';
let serve: ServeProcess;
let url = '';

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-tls-'));
  cert = path.join(dir, 'cert.pem');
  key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert],
  { stdio: 'pipe' });
  serve = await spawnServe(path.join(dir, 'recite.db'), ['--tls-cert', cert, '--tls-key', key], [], /^recite serve: listening on (https:\/\/\S+)/m);
  url = serve.url;
}, 60_000);

afterAll(async () => {
  await stopServe(serve);
});

function alpnOf(protocols: string[]): Promise<string | false> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: Number(port), ca: fs.readFileSync(cert), ALPNProtocols: protocols,
      servername: 'localhost' }, () => {
      resolve(socket.alpnProtocol ?? false);
      socket.destroy();
    });
    socket.on('error', reject);
  });
}

describe('recite serve --tls-cert --tls-key', () => {
  it('listens on an https URL and negotiates h2 or http/1.1 by ALPN', async () => {
    expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(await alpnOf(['h2', 'http/1.1'])).toBe('h2');
    expect(await alpnOf(['http/1.1'])).toBe('http/1.1');
  });

  it('serves gRPC over HTTP/2 and Connect over HTTP/1.1 to clients that trust the certificate', async () => {
    const ca = fs.readFileSync(cert, 'utf8');
    const health = createClient(Health, createGrpcTransport({ baseUrl: url, nodeOptions: { ca } }));
    expect((await health.check({ service: '' })).status).toBe(ServingStatus.SERVING);
    for (const httpVersion of ['2', '1.1'] as const) {
      const client = createReciteClient(url, { transport: createReciteNodeTransport(url, { token: serveToken, ca, httpVersion }) });
      const models = await client.listModels();
      expect(models.map((m) => m.name)).toEqual(['tiny']);
    }
    const metrics = await new Promise<number>((resolve, reject) => {
      https.get(`${url}/metrics`, { ca }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      }).on('error', reject);
    });
    expect(metrics).toBe(200);
  });

  it('is refused by a client that does not trust the certificate', async () => {
    const client = createReciteClient(url, { transport: createReciteNodeTransport(url, { token: serveToken }) });
    const error = ConnectError.from(await client.listModels().catch((e: unknown) => e));
    expect(error.message).toMatch(/self-signed certificate/);
  });

  it('is reached by the CLI with --server https://… and --ca-file', () => {
    const run = spawnSync(process.execPath, [cliPath, 'models', '--server', url, '--token', serveToken, '--ca-file', cert, '--json'],
      { encoding: 'utf8', timeout: 30_000 });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout.split('\n')[0]!).name).toBe('tiny');
    const untrusted = spawnSync(process.execPath, [cliPath, 'models', '--server', url, '--token', serveToken],
      { encoding: 'utf8', timeout: 30_000 });
    expect(untrusted.status).not.toBe(0);
    expect(untrusted.stderr).toMatch(/self-signed certificate/);
  });
});
