// Tokens: at least 16 characters wherever they come from, a token given twice is refused (it once silently changed
// client), and `recite serve` reloads its tokens on SIGHUP (a file that does not parse keeps the old ones).
// ListModels tells clients names and shapes, never the server's paths; refused requests are logged.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Code, ConnectError } from '@connectrpc/connect';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { TokenTable } from '../../server/service/auth.js';
import { spawnServe, stopServe, reciteClient } from '../crash/serve-process.js';
import type { ServeProcess } from '../crash/serve-process.js';
import { aliceToken, startTestServer } from '../helpers/test-server.js';
import { bearer, networkTransport, reciteClient as serviceClient } from './service-fixtures.js';

const servers: ServeProcess[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await stopServe(s);
});

describe('token sources', () => {
  it('refuse a token shorter than 16 characters, in a file and in RECITE_TOKENS', () => {
    expect(() => TokenTable.parseFile('short alice\n', 'tokens.txt')).toThrow('tokens.txt:1: token of 5 characters; at least 16 are needed');
    expect(() => TokenTable.parseEnv('a=alice')).toThrow('RECITE_TOKENS: the token of client alice has 1 characters; at least 16 are needed');
  });

  it('refuse a token given twice, naming both clients', () => {
    const token = 'the-same-token-0123456789';
    expect(() => TokenTable.parseFile(`${token} alice\n${token} bob\n`, 'tokens.txt'))
      .toThrow('tokens.txt:2: this token is already given (to client alice); each token names one client');
    expect(() => TokenTable.parseEnv(`${token}=alice,${token}=bob`))
      .toThrow('RECITE_TOKENS: the token of client bob is already given (to client alice)');
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'recite-tokens-')), 'tokens.txt');
    fs.writeFileSync(file, `${token} alice\n`);
    expect(() => TokenTable.read(file, `${token}=bob`))
      .toThrow(`RECITE_TOKENS: the token of client bob is also in ${file} (client alice)`);
  });
});

describe('recite serve on SIGHUP', () => {
  it('reloads the tokens file with its clients\' options; a broken file keeps the tokens it had', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-hup-'));
    const file = path.join(dir, 'tokens.txt');
    const first = 'first-token-0123456789abcdef';
    const second = 'second-token-0123456789abcdef';
    fs.writeFileSync(file, `${first} alice\n`);
    const s = await spawnServe(path.join(dir, 'recite.db'), ['--tokens-file', file]);
    servers.push(s);
    const client = reciteClient(s.url);
    const list = (token: string) => client.listJobs({}, { headers: { authorization: `Bearer ${token}` } })
      .then(() => 'OK', (e: unknown) => Code[ConnectError.from(e).code]);
    const listAll = (token: string) => client.listJobs({ allClients: true }, { headers: { authorization: `Bearer ${token}` } })
      .then(() => 'OK', (e: unknown) => Code[ConnectError.from(e).code]);
    expect(await list(first)).toBe('OK');
    expect(await list(second)).toBe('Unauthenticated');
    expect(await listAll(first)).toBe('PermissionDenied');

    // the clients' options are reloaded with the tokens: alice is an admin from now on
    fs.writeFileSync(file, `${second} alice admin max-jobs=5\n`);
    s.child.kill('SIGHUP');
    await waitForLog(s, 'tokens reloaded');
    expect(await list(second)).toBe('OK');
    expect(await list(first)).toBe('Unauthenticated');
    expect(await listAll(second)).toBe('OK');

    fs.writeFileSync(file, 'short alice\n');
    s.child.kill('SIGHUP');
    await waitForLog(s, 'tokens not reloaded');
    expect(await list(second)).toBe('OK');
    expect(s.child.exitCode).toBeNull();
  }, 60_000);
});

async function waitForLog(s: ServeProcess, msg: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!s.stderr().includes(`"msg":"${msg}"`)) {
    if (Date.now() > deadline) throw new Error(`no "${msg}" in the log`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('a shared server tells clients no more than they need', () => {
  it('ListModels shows names and shapes, not the server paths of the checkpoints', async () => {
    const server = await startTestServer();
    try {
      const { models } = await serviceClient(networkTransport('connect', server.url)).listModels({}, bearer(aliceToken));
      expect(models.map((m) => [m.name, m.nEmbd, m.nLayer])).toEqual([['tiny', 32, 2]]);
      const dir = server.server.models.list()[0]!.dir;
      expect(JSON.stringify(models)).not.toContain(dir);
      expect(JSON.stringify(models)).not.toContain('fixtures');
    } finally {
      await server.close();
    }
  });

  it('logs a refused request, unary or streaming, with its procedure, code and message', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => { lines.push(line); } });
    const server = await startTestServer({ logger });
    try {
      const client = serviceClient(networkTransport('connect', server.url));
      const error = ConnectError.from(await client.decode({ embedding: { shape: [1, 32], values: new Array<number>(32).fill(Number.NaN) },
        maxTokens: 2 }, bearer(aliceToken)).catch((e: unknown) => e));
      expect(error.code).toBe(Code.InvalidArgument);
      const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'request refused');
      expect(logged).toMatchObject({ procedure: '/recite.v1.ReciteService/Decode', code: 'InvalidArgument',
        message: 'embedding.values[0]: NaN is not a finite number' });
      // a stream that fails while it is read is logged too
      const watch = ConnectError.from(await (async () => {
        for await (const _ of client.watchJob({ jobId: 'no-such-job' }, bearer(aliceToken))) { /* none */ }
      })().catch((e: unknown) => e));
      expect(watch.code).toBe(Code.NotFound);
      const streamed = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.msg === 'request refused' && l.procedure === '/recite.v1.ReciteService/WatchJob');
      expect(streamed).toMatchObject({ code: 'NotFound', message: 'job_id: no job "no-such-job" for this client' });
    } finally {
      await server.close();
    }
  });
});
