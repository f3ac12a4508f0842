// The dashboard's WebSocket stream against a real server on port 0: authentication before the upgrade, the
// message protocol, the same events as WatchJob in the proto JSON encoding, and bounded memory for a socket that
// stops reading.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { fromJson, toBinary } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { createReciteClient } from '../../sdk/index.js';
import { JobEventSchema } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { TestServer } from '../helpers/test-server.js';
import { aliceToken, bobToken, startTestServer } from '../helpers/test-server.js';
import type { ServerMessage, WsClient } from './ws-client.js';
import { openStream, streamUrl, upgradeStatus } from './ws-client.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const maxBufferedBytes = 16 * 1024; // the test server's limit, low so that a few seconds of progress exceed it
const messageSlack = 16 * 1024; // one message sent past the limit (a result of 2 x 32 floats is ~2 KB)

const helloSpec = { text: 'Hello world', settings: { parameterization: { full: {} }, seed: 0 } };
// The same target kept running past its hit (about 1–2 s here): long enough to span several of the job list's
// 100 ms gathering rounds on any machine, so intermediate summaries are certain to be sent.
const longerHelloSpec = { ...helloSpec, settings: { ...helloSpec.settings, maxIterations: 600, continueAfterHit: true } };

const isEventOf = (jobId: string, kind?: string) => (m: ServerMessage) =>
  m.type === 'event' && m.jobId === jobId && (kind === undefined || kind in m.event);

describe('the dashboard stream at /ws', () => {
  let server: TestServer;
  const clients: WsClient[] = [];
  const open = async (token = aliceToken, via: 'protocol' | 'query' = 'protocol') => {
    const client = await openStream(server.url, token, via);
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    server = await startTestServer({ dashboard: { maxBufferedBytes } });
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await server.close();
  });

  it('refuses a missing or unknown token with HTTP 401 before upgrading', async () => {
    const none = await upgradeStatus(streamUrl(server.url));
    expect(none.status).toBe(401);
    expect(none.body).toMatch(/missing bearer token/);
    const wrongProtocol = await upgradeStatus(streamUrl(server.url), ['bearer.not-a-token-of-this-server']);
    expect(wrongProtocol).toEqual({ status: 401, body: 'the bearer token is not valid on this server\n' });
    const wrongQuery = await upgradeStatus(streamUrl(server.url, '?token=not-a-token-of-this-server'));
    expect(wrongQuery.status).toBe(401);

    expect((await upgradeStatus(streamUrl(server.url), [`bearer.${aliceToken}`])).status).toBe(101);
    expect((await upgradeStatus(streamUrl(server.url), undefined, { authorization: `Bearer ${aliceToken}` })).status).toBe(101);
    const viaProtocol = await open();
    expect(viaProtocol.ws.protocol).toBe(`bearer.${aliceToken}`);
    expect((await viaProtocol.next((m) => m.type === 'hello')).message).toEqual({ type: 'hello', clientId: 'alice' });
    const viaQuery = await open(bobToken, 'query');
    expect((await viaQuery.next((m) => m.type === 'hello')).message.clientId).toBe('bob');
  });

  it('submits a job, lists it live and streams the events WatchJob streams, as proto JSON', async () => {
    const c = await open();
    c.send({ type: 'subscribe_jobs' });
    const { message: list } = await c.next((m) => m.type === 'jobs');
    expect(Array.isArray(list.jobs)).toBe(true);

    c.send({ type: 'submit', id: 'hello-1', spec: longerHelloSpec });
    const { message: submitted } = await c.next((m) => m.type === 'submitted' && m.id === 'hello-1');
    const jobId: string = submitted.jobId;
    expect(jobId).toMatch(/^[0-9a-f-]{36}$/);
    expect(submitted.queuePosition).toBeTypeOf('number');

    c.send({ type: 'subscribe', jobId, afterSequence: 0 });
    const { index: resultAt } = await c.next(isEventOf(jobId, 'result'));
    const events = c.messages.slice(0, resultAt + 1).filter(isEventOf(jobId)).map((m) => m.event);
    expect(events.map((e) => e.sequence)).toEqual(events.map((_, i) => i + 1));
    expect(Object.keys(events[0]!)).toContain('queued');
    expect(events.at(-1)!.result.status).toBe('STATUS_HIT');
    const progress = events.filter((e) => 'progress' in e).map((e) => e.progress);
    expect(progress.length).toBeGreaterThan(50);
    expect(progress[0]).toMatchObject({ optimizedTokens: 2 });
    expect(progress[0].tokenNll).toHaveLength(2);

    // The very events WatchJob streams. Compared in the binary encoding: an event that reaches a subscriber
    // live holds its float fields at double precision until the store rounds them (WatchJob's live events too).
    const rpc = createReciteClient(server.url, { token: aliceToken });
    const watched: Uint8Array[] = [];
    for await (const e of rpc.watchJob(jobId)) watched.push(toBinary(JobEventSchema, e.raw));
    expect(events.map((e) => toBinary(JobEventSchema, fromJson(JobEventSchema, e)))).toEqual(watched);

    // The job list saw the job arrive, run and finish, as summaries of Job without the embedding's numbers.
    const { message: finished } = await c.next((m) => m.type === 'job' && m.job.jobId === jobId && m.job.state === 'JOB_STATE_FINISHED');
    expect(finished.job).toMatchObject({ model: 'tiny', targetText: 'Hello world', targetIds: [15496, 995] });
    expect(finished.job.result.status).toBe('STATUS_HIT');
    expect(finished.job.result.restarts[0].embedding).toEqual({ shape: [2, 32] });
    expect(finished.job.lastProgress.iteration).toBeGreaterThan(50);
    const summaries = c.messages.filter((m) => m.type === 'job' && m.job.jobId === jobId);
    expect(summaries.length).toBeGreaterThan(2);
    expect(summaries.length).toBeLessThan(progress.length); // every N-th progress event, not each

    // A new socket lists the finished job.
    const later = await open();
    later.send({ type: 'subscribe_jobs' });
    const { message: relisted } = await later.next((m) => m.type === 'jobs');
    expect(relisted.jobs.map((j: { jobId: string }) => j.jobId)).toContain(jobId);
  });

  it('answers a bad message with an error that names the problem', async () => {
    const c = await open();
    c.ws.send('not json');
    expect((await c.next((m) => m.type === 'error')).message).toMatchObject({ code: 'invalid_argument' });
    let from = c.messages.length;
    c.send({ type: 'shout' });
    expect((await c.next((m) => m.type === 'error', { from })).message.message).toMatch(/type: "shout" is not one of/);

    from = c.messages.length;
    c.send({ type: 'submit', id: 7, spec: { text: 'Hello world', settings: { maxIterations: 100001 } } });
    const { message: tooMany } = await c.next((m) => m.type === 'error', { from });
    expect(tooMany).toMatchObject({ id: 7, code: 'invalid_argument' });
    expect(tooMany.message).toMatch(/max_iterations: 100001/);

    from = c.messages.length;
    c.send({ type: 'submit', id: 8, spec: { text: 'Hello world', colour: 'blue' } });
    expect((await c.next((m) => m.type === 'error', { from })).message).toMatchObject({ id: 8, code: 'invalid_argument' });

    from = c.messages.length;
    c.send({ type: 'subscribe', jobId: 'no-such-job' });
    expect((await c.next((m) => m.type === 'error', { from })).message).toMatchObject({ code: 'not_found', jobId: 'no-such-job' });

    // Another client's job does not exist for this one.
    c.send({ type: 'submit', id: 9, spec: helloSpec });
    const { message: submitted } = await c.next((m) => m.type === 'submitted' && m.id === 9);
    const bob = await open(bobToken);
    bob.send({ type: 'subscribe', jobId: submitted.jobId });
    expect((await bob.next((m) => m.type === 'error')).message).toMatchObject({ code: 'not_found', jobId: submitted.jobId });
    bob.send({ type: 'cancel', id: 'x', jobId: submitted.jobId });
    expect((await bob.next((m) => m.type === 'error' && m.id === 'x')).message.code).toBe('not_found');
  });

  it('cancels a job: the reply, then its CANCELLED result', async () => {
    const c = await open();
    c.send({ type: 'submit', id: 1, spec: { text: 'Hello world', settings: { maxIterations: 100000, continueAfterHit: true, reportEvery: 50 } } });
    const { message: submitted } = await c.next((m) => m.type === 'submitted');
    c.send({ type: 'subscribe', jobId: submitted.jobId });
    await c.next(isEventOf(submitted.jobId, 'progress'));
    c.send({ type: 'cancel', id: 2, jobId: submitted.jobId });
    expect((await c.next((m) => m.type === 'cancelled')).message).toMatchObject({ id: 2, jobId: submitted.jobId, state: 'JOB_STATE_RUNNING' });
    expect((await c.next(isEventOf(submitted.jobId, 'result'))).message.event.result.status).toBe('STATUS_CANCELLED');
  });

  it("runs the stream's example in docs/dashboard.md as written", async () => {
    const doc = fs.readFileSync(path.join(here, '..', '..', 'docs', 'dashboard.md'), 'utf8');
    const at = doc.indexOf('## The stream: `/ws`');
    expect(at, 'docs/dashboard.md has a section on the stream').toBeGreaterThanOrEqual(0);
    const code = /```js\n([\s\S]*?)```/.exec(doc.slice(at))![1]!
      .replace("'a-long-random-token-for-alice'", JSON.stringify(aliceToken))
      .replace('ws://127.0.0.1:7070/ws', streamUrl(server.url));
    const logs: unknown[][] = [];
    await new Promise<void>((resolve, reject) => {
      const console = {
        log: (...args: unknown[]) => {
          logs.push(args);
          if (args[0] === 'STATUS_HIT') resolve();
        },
        error: (...args: unknown[]) => reject(new Error(args.join(' '))),
      };
      // eslint-disable-next-line @typescript-eslint/no-implied-eval
      new Function('WebSocket', 'console', code)(WebSocket, console);
    });
    expect(logs[0]).toEqual([0, expect.any(Number), expect.any(String)]);
    expect(logs.at(-1)).toEqual(['STATUS_HIT', 'Hello world']);
  });

  it('keeps a socket that stops reading within its buffer bound, merges its progress, and still sends the result', async () => {
    // The slow reader (small MSS and receive window, as on a network) makes the server hold data itself. It is
    // connected before the job exists and subscribes as soon as it is submitted: a subscription that came late would
    // first replay the history, which waits for the socket instead of merging (the last part of this test).
    const reader = startSlowReader(server.url);
    expect(await reader.line()).toEqual({ phase: 'connected' });
    const control = await open();
    control.send({
      type: 'submit', id: 'long',
      spec: { text: 'Hello world', settings: { parameterization: { full: {} }, maxIterations: 2000, continueAfterHit: true, reportEvery: 1 } },
    });
    const { message: submitted } = await control.next((m) => m.type === 'submitted' && m.id === 'long');
    const jobId: string = submitted.jobId;
    reader.follow(jobId);
    // It reads nothing until the server has merged some of its progress, and for at least two seconds.
    expect(await reader.line()).toEqual({ phase: 'paused' });

    // A Node `ws` client that stops reading. On loopback the kernel's buffers take megabytes of what the server
    // writes, so this one mostly checks that a paused client still gets everything once it reads again.
    const paused = await open();
    paused.send({ type: 'subscribe', jobId });
    await paused.next(isEventOf(jobId, 'progress'));
    (paused.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();

    const sampled: number[] = [];
    const sampler = setInterval(() => {
      for (const s of server.server.dashboard!.stats().sockets) sampled.push(s.bufferedAmount);
    }, 20);
    const pausedAt = Date.now();
    await expect.poll(() => server.server.dashboard!.stats().sockets.some((s) => s.coalesced > 0), { timeout: 60_000, interval: 50 }).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, 2000 - (Date.now() - pausedAt))));
    const duringPause = server.server.dashboard!.stats().sockets;
    reader.resume();
    expect(await reader.line()).toEqual({ phase: 'reading' });
    (paused.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    const done = await reader.line();
    clearInterval(sampler);

    // The server held back progress rather than buffering it: below the bound all along.
    expect(Math.max(...sampled)).toBeLessThanOrEqual(maxBufferedBytes + messageSlack);
    for (const s of duringPause) expect(s.maxBufferedAmount).toBeLessThanOrEqual(maxBufferedBytes + messageSlack);
    expect(duringPause.some((s) => s.coalesced > 0)).toBe(true);
    expect(duringPause.every((s) => s.held <= 1)).toBe(true); // one report per restart at most

    // The slow reader got the whole job with merged progress, its result last.
    expect(done.phase).toBe('done');
    expect(done.kinds).toMatchObject({ queued: 1, started: 1, restartResult: 1, result: 1 });
    expect(done.coalesced).toBeGreaterThan(0);
    expect(done.kinds.progress + done.coalesced).toBe(2000);
    const sequences: number[] = done.sequences;
    expect(sequences.every((s, i) => i === 0 || s > sequences[i - 1]!)).toBe(true);
    expect(sequences.at(-1)).toBe(2004);

    const { message: result } = await paused.next(isEventOf(jobId, 'result'));
    expect(result.event.sequence).toBe(2004);

    // A replay of the finished job to a slow reader waits for the socket instead: the history arrives whole.
    const replay = startSlowReader(server.url, jobId);
    expect(await replay.line()).toEqual({ phase: 'paused' });
    const replaySampled: number[] = [];
    const replaySampler = setInterval(() => {
      for (const s of server.server.dashboard!.stats().sockets) replaySampled.push(s.bufferedAmount);
    }, 20);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    replay.resume();
    await replay.line();
    const whole = await replay.line();
    clearInterval(replaySampler);
    expect(whole.sequences).toEqual(Array.from({ length: 2004 }, (_, i) => i + 1));
    expect(whole.coalesced).toBe(0);
    const replayPeak = Math.max(...replaySampled);
    expect(replayPeak).toBeGreaterThan(maxBufferedBytes); // it filled the socket to the limit, then waited
    expect(replayPeak).toBeLessThanOrEqual(maxBufferedBytes + messageSlack);
  });
});

/**
 * Run slow-reader.py: `line()` resolves with each JSON line it prints, `resume()` lets it read. Without a job id it
 * connects and waits for `follow(jobId)`.
 */
function startSlowReader(url: string, jobId?: string): { line(): Promise<Record<string, any>>; follow(jobId: string): void; resume(): void } {
  const { hostname, port } = new URL(url);
  const script = path.join(here, 'slow-reader.py');
  const child = spawn('python3', [script, hostname, port, aliceToken, jobId ?? '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return {
    async line() {
      const next = await lines.next();
      if (next.done) throw new Error(`slow-reader.py ended early: ${stderr}`);
      return JSON.parse(next.value) as Record<string, any>;
    },
    follow: (id) => child.stdin.write(`${id}\n`),
    resume: () => child.stdin.end('\n'),
  };
}
