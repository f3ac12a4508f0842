// Load on `recite serve` in a child process: 50 streaming Invert clients at once (Connect over HTTP/2 and
// HTTP/1.1 mixed) all get complete streams while the server's memory stays bounded over two rounds; a full queue
// refuses submissions promptly with ResourceExhausted and the server keeps serving. Prints its figures.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import type { Client } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { afterEach, describe, expect, it } from 'vitest';
import { JobState, ReciteService } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { JobEvent } from '../../sdk/gen/recite/v1/recite_pb.js';
import { authHeaders, reciteClient, rssBytes, spawnServe, stopServe } from '../crash/serve-process.js';
import type { ServeProcess } from '../crash/serve-process.js';

type Recite = Client<typeof ReciteService>;

const clients = 50;
const h2Connections = 5; // the HTTP/2 half shares 5 connections (5 streams each); each HTTP/1.1 stream has its own
const iterations = 100; // per job: 100 progress events + queued, started, restart result and result
const mib = 1024 * 1024;
// The first round allocates the working set once: onnxruntime's arenas for a batch of 50 (about 220–260 MiB
// measured here), streams, SQLite's cache. The bound leaves room for another machine's allocator; the leak check
// is the second round's.
const maxRoundGrowth = 512 * mib;
// A second identical round must find that memory reused: the native side (graph arenas, malloc) settles within a
// few tens of MiB, and the JavaScript heap after a full collection within a few MiB (events, streams, jobs are
// not kept once a job has finished).
const maxSecondRoundGrowth = 64 * mib;
const maxSecondRoundHeapGrowth = 8 * mib;
const gcPreload = path.join(path.dirname(fileURLToPath(import.meta.url)), 'gc-on-signal.mjs');

const servers: ServeProcess[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await stopServe(s);
});

function tempDb(): string {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'recite-load-')), 'recite.db');
}

/** Half the clients over HTTP/2 (a few shared connections), half over HTTP/1.1; all speak the Connect protocol. */
function mixedClients(url: string): { client: Recite; http: '2' | '1.1' }[] {
  const h2 = Array.from({ length: h2Connections }, () => createClient(ReciteService,
    createConnectTransport({ baseUrl: url, httpVersion: '2' })));
  return Array.from({ length: clients }, (_, i) => (i % 2 === 0
    ? { client: h2[(i / 2) % h2Connections]!, http: '2' as const }
    : { client: createClient(ReciteService, createConnectTransport({ baseUrl: url, httpVersion: '1.1' })), http: '1.1' as const }));
}

function signed(bytes: number): string {
  return `${bytes < 0 ? '−' : '+'}${(Math.abs(bytes) / mib).toFixed(1)}`;
}

interface StreamCheck {
  events: number;
  coalesced: number;
}

/**
 * Run one Invert stream to its end and check it is complete: sequences from 1 without a gap other than the
 * progress reports merged into a coalesced one, and a result last.
 */
async function invertStream(client: Recite, i: number): Promise<StreamCheck> {
  const events: JobEvent[] = [];
  const spec = {
    target: { case: 'text' as const, value: 'Hello world' },
    settings: { maxIterations: iterations, continueAfterHit: true, seed: i },
    label: `load-${i}`,
  };
  for await (const r of client.invert({ spec }, { headers: authHeaders })) events.push(r.event!);
  let coalesced = 0;
  let expected = 1;
  for (const e of events) {
    const merged = e.kind.case === 'progress' ? e.kind.value.coalesced : 0;
    coalesced += merged;
    expect(e.sequence, `client ${i}`).toBe(expected + merged);
    expected = e.sequence + 1;
  }
  const last = events.at(-1)!;
  expect(last.kind.case, `client ${i}`).toBe('result');
  expect((last.kind.value as { restarts: { iterations: number }[] }).restarts[0]!.iterations).toBe(iterations);
  return { events: events.length, coalesced };
}

/** The server's memory after a full garbage collection: RSS (/proc) and the JavaScript heap in use (/metrics). */
async function memory(serve: ServeProcess): Promise<{ rss: number; heapUsed: number }> {
  serve.child.kill('SIGUSR2');
  await new Promise((resolve) => setTimeout(resolve, 300));
  const metrics = await (await fetch(`${serve.url}/metrics`)).text();
  const heapUsed = Number(/^recite_nodejs_heap_size_used_bytes (\S+)$/m.exec(metrics)?.[1]);
  expect(heapUsed).toBeGreaterThan(0);
  return { rss: rssBytes(serve.pid), heapUsed };
}

async function round(url: string): Promise<{ ms: number; events: number; coalesced: number; byHttp: Record<string, number> }> {
  const mixed = mixedClients(url);
  const started = performance.now();
  const checks = await Promise.all(mixed.map(({ client }, i) => invertStream(client, i)));
  const ms = performance.now() - started;
  const byHttp: Record<string, number> = {};
  mixed.forEach(({ http }, i) => { byHttp[http] = (byHttp[http] ?? 0) + checks[i]!.events; });
  return {
    ms,
    events: checks.reduce((a, c) => a + c.events, 0),
    coalesced: checks.reduce((a, c) => a + c.coalesced, 0),
    byHttp,
  };
}

describe('recite serve under load', () => {
  it(`streams ${clients} concurrent Invert clients to their results, with bounded memory over two rounds`, async () => {
    const serve = await spawnServe(tempDb(), [], ['--expose-gc', '--import', gcPreload]);
    servers.push(serve);
    const probe = reciteClient(serve.url);
    await probe.tokenize({ text: 'warm up' }, { headers: authHeaders });
    const m0 = await memory(serve);

    const first = await round(serve.url);
    const m1 = await memory(serve);
    const second = await round(serve.url);
    const m2 = await memory(serve);

    const figures = (name: string, r: Awaited<ReturnType<typeof round>>) =>
      `${name}: ${clients} streams in ${(r.ms / 1000).toFixed(2)} s, ${r.events} events ` +
      `(HTTP/2 ${r.byHttp['2']}, HTTP/1.1 ${r.byHttp['1.1']}; ${(r.events / (r.ms / 1000)).toFixed(0)} events/s), ` +
      `${r.coalesced} progress reports coalesced`;
    console.log([
      figures('round 1', first),
      figures('round 2', second),
      ...(['rss', 'heapUsed'] as const).map((k) => `server ${k === 'rss' ? 'RSS' : 'JS heap used'} after a full GC: ` +
        `${(m0[k] / mib).toFixed(1)} MiB before, ${(m1[k] / mib).toFixed(1)} MiB after round 1 ` +
        `(${signed(m1[k] - m0[k])}), ${(m2[k] / mib).toFixed(1)} MiB after round 2 (${signed(m2[k] - m1[k])})`),
    ].join('\n'));

    expect(first.events + first.coalesced).toBe(clients * (iterations + 4));
    expect(second.events + second.coalesced).toBe(clients * (iterations + 4));
    expect(m1.rss - m0.rss).toBeLessThan(maxRoundGrowth);
    expect(m2.rss - m1.rss).toBeLessThan(maxSecondRoundGrowth);
    expect(m2.heapUsed - m1.heapUsed).toBeLessThan(maxSecondRoundHeapGrowth);
  });

  it('refuses submissions beyond --max-queue with ResourceExhausted, promptly, and keeps serving', async () => {
    const maxQueue = 10;
    const serve = await spawnServe(tempDb(), ['--max-queue', String(maxQueue)]);
    servers.push(serve);
    const client = reciteClient(serve.url);
    await client.tokenize({ text: 'warm up' }, { headers: authHeaders });
    const spec = {
      target: { case: 'text' as const, value: 'does it make sense to compare apples and oranges?' },
      settings: { maxIterations: 100_000, continueAfterHit: true, reportEvery: 100 },
    };
    const started = performance.now();
    const outcomes = await Promise.all(Array.from({ length: 30 }, async () => {
      const t0 = performance.now();
      try {
        const { jobId } = await client.submitJob({ spec }, { headers: authHeaders, timeoutMs: 10_000 });
        return { jobId, ms: performance.now() - t0 };
      } catch (error) {
        return { error: ConnectError.from(error), ms: performance.now() - t0 };
      }
    }));
    const wallMs = performance.now() - started;
    const accepted = outcomes.flatMap((o) => ('jobId' in o ? [o.jobId] : []));
    const refused = outcomes.flatMap((o) => ('error' in o && o.error ? [o.error] : []));
    const slowest = Math.max(...outcomes.map((o) => o.ms));
    console.log(`queue limit ${maxQueue}: 30 SubmitJob calls in ${wallMs.toFixed(0)} ms (slowest ${slowest.toFixed(0)} ms): ` +
      `${accepted.length} accepted, ${refused.length} refused (${refused[0]?.code === Code.ResourceExhausted ? 'ResourceExhausted' : refused[0]?.code}: ` +
      `${refused[0]?.rawMessage})`);
    expect(accepted).toHaveLength(maxQueue);
    expect(refused.map((e) => e.code)).toEqual(Array(30 - maxQueue).fill(Code.ResourceExhausted));
    expect(refused[0]!.rawMessage).toContain(`the limit is ${maxQueue}`);
    expect(slowest).toBeLessThan(3000);

    // Still serving: a unary call while the queue is full, then a slot freed by a cancel is taken again.
    const t0 = performance.now();
    const tokens = await client.tokenize({ text: 'Hello world' }, { headers: authHeaders, timeoutMs: 5000 });
    expect(tokens.ids).toEqual([15496, 995]);
    const tokenizeMs = performance.now() - t0;
    await client.cancelJob({ jobId: accepted[0]! }, { headers: authHeaders });
    for (let i = 0; ; i++) {
      const { job } = await client.getJob({ jobId: accepted[0]! }, { headers: authHeaders });
      if (job!.state === JobState.FINISHED) break;
      expect(i).toBeLessThan(100);
      await new Promise((r) => setTimeout(r, 50));
    }
    await client.submitJob({ spec }, { headers: authHeaders, timeoutMs: 5000 });
    await expect(client.submitJob({ spec }, { headers: authHeaders, timeoutMs: 5000 })).rejects.toMatchObject({ code: Code.ResourceExhausted });
    console.log(`Tokenize with the queue full: ${tokenizeMs.toFixed(0)} ms`);
  });
});
