// A slow reader of a job's stream: the server keeps at most `subscriberBuffer` progress reports waiting for it and
// merges older ones into newer ones (counted in `coalesced`); queued, started, restart results and the result are
// never dropped, and the counts add up: every iteration is either received or counted in a received report.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobState, Status } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { JobEvent, Progress } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { TestServer } from '../helpers/test-server.js';
import { startTestServer } from '../helpers/test-server.js';
import type { InMemoryService, ReciteClient, Spec } from './service-fixtures.js';
import { aliceToken, bearer, createInMemoryService, drain, networkTransport, reciteClient, waitFor } from './service-fixtures.js';

const subscriberBuffer = 8; // progress reports a reader may have waiting
const alice = bearer(aliceToken);

const longSpec: Spec = {
  target: { case: 'text', value: 'Hello world' },
  settings: {
    parameterization: { kind: { case: 'full', value: {} } },
    maxIterations: 2000,
    continueAfterHit: true,
    reportEvery: 1,
  },
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function progressOf(events: JobEvent[]): Progress[] {
  return events.flatMap((e) => (e.kind.case === 'progress' ? [e.kind.value] : []));
}

/** The job's latest reported iteration, from GetJob. */
async function iterationOf(client: ReciteClient, jobId: string): Promise<number> {
  return (await client.getJob({ jobId }, alice)).job!.lastProgress?.iteration ?? -1;
}

/**
 * Check what a reader received against the job's full stored history: no event but progress is missing, the
 * sequences rise, every received event equals the stored one but for `coalesced`, and each received progress
 * report accounts for itself plus the reports merged into it, so the counts add up to every iteration.
 */
function expectAccounted(received: JobEvent[], stored: JobEvent[]): void {
  const sequences = received.map((e) => e.sequence);
  expect(sequences).toEqual([...sequences].sort((a, b) => a - b));
  expect(new Set(sequences).size).toBe(sequences.length);
  expect(received.filter((e) => e.kind.case !== 'progress').map((e) => e.kind.case))
    .toEqual(stored.filter((e) => e.kind.case !== 'progress').map((e) => e.kind.case));
  expect(received.at(-1)!.kind.case).toBe('result');

  const bySequence = new Map(stored.map((e) => [e.sequence, e]));
  for (const event of received) {
    const original = bySequence.get(event.sequence)!;
    if (event.kind.case === 'progress' && original.kind.case === 'progress') {
      expect(original.kind.value.coalesced).toBe(0);
      expect({ ...event.kind.value, coalesced: 0 }).toEqual(original.kind.value);
    } else {
      expect(event).toEqual(original);
    }
  }

  const progress = progressOf(received);
  const storedProgress = progressOf(stored);
  // every merged report is one sequence number the reader did not get, and vice versa
  const coalesced = progress.reduce((sum, p) => sum + p.coalesced, 0);
  expect(stored.length - received.length).toBe(coalesced);
  expect(progress.reduce((sum, p) => sum + 1 + p.coalesced, 0)).toBe(storedProgress.length);
  // one restart: a report stands for the iterations since the previous one received
  let previous = -1;
  for (const p of progress) {
    expect(p.iteration - previous).toBe(1 + p.coalesced);
    previous = p.iteration;
  }
  expect(previous).toBe(storedProgress.at(-1)!.iteration);
}

interface Tier {
  name: string;
  start(): Promise<{ client: ReciteClient; close(): Promise<void> }>;
}

const tiers: Tier[] = [
  {
    name: 'in memory',
    async start() {
      const service: InMemoryService = await createInMemoryService({ subscriberBuffer });
      return { client: reciteClient(service.transport), close: service.close };
    },
  },
  {
    // HTTP/2 flow control holds the server's writes once the reader stops; HTTP/1.1 socket buffers on loopback
    // take megabytes, so a reader there is "slow" only after far more than this job writes.
    name: 'real server, gRPC over HTTP/2',
    async start() {
      const server: TestServer = await startTestServer({ subscriberBuffer });
      return { client: reciteClient(networkTransport('grpc', server.url)), close: server.close };
    },
  },
];

describe.each(tiers)('$name, subscriberBuffer 8', ({ start }) => {
  let client: ReciteClient;
  let close: () => Promise<void>;

  beforeAll(async () => {
    ({ client, close } = await start());
  });

  afterAll(async () => {
    await close();
  });

  it('gives a reader that stops for a while coalesced progress that adds up, and the result', async () => {
    const { jobId } = await client.submitJob({ spec: longSpec }, alice);
    const stream = client.watchJob({ jobId }, alice)[Symbol.asyncIterator]();
    const received: JobEvent[] = [];
    const next = async () => {
      const step = await stream.next();
      if (!step.done) received.push(step.value.event!);
      return !step.done;
    };
    for (let i = 0; i < 3; i++) await next(); // queued, started, the first progress report
    expect(received.map((e) => e.kind.case)).toEqual(['queued', 'started', 'progress']);

    // Stop reading for 2 s, and until the job has written more than any transport buffer holds of its reports.
    const pausedAt = Date.now();
    await sleep(2000);
    await waitFor(async () => (await iterationOf(client, jobId)) >= 1000 ||
      (await client.getJob({ jobId }, alice)).job!.state === JobState.FINISHED, 60_000, 'the job to pass iteration 1000');
    expect(Date.now() - pausedAt).toBeGreaterThanOrEqual(2000);

    while (await next());
    const last = received.at(-1)!;
    expect(last.kind.case).toBe('result');
    const result = last.kind.case === 'result' ? last.kind.value : undefined;
    expect(result!.status).toBe(Status.HIT);
    expect(result!.restarts[0]!.iterations).toBe(2000);

    const progress = progressOf(received);
    expect(progress.some((p) => p.coalesced > 0)).toBe(true);
    expect(progress.length).toBeLessThan(2000);
    expect(progress.reduce((sum, p) => sum + 1 + p.coalesced, 0)).toBe(2000);

    // The store kept every report: a reader after the fact gets all 2000, none coalesced.
    const replay = (await drain(client.watchJob({ jobId }, alice))).events;
    expect(progressOf(replay)).toHaveLength(2000);
    expect(progressOf(replay).every((p) => p.coalesced === 0)).toBe(true);
    expectAccounted(received, replay);
  });
});

// The stored replay and the live queue meet in the job hub, whatever the transport: in memory is enough.
describe('in memory, subscriberBuffer 8, a late reader', () => {
  let client: ReciteClient;
  let close: () => Promise<void>;

  beforeAll(async () => {
    ({ client, close } = await tiers[0]!.start());
  });

  afterAll(async () => {
    await close();
  });

  it('accounts exactly for a reader that joins late, replays many pages slowly, and catches up live', async () => {
    const { jobId } = await client.submitJob({ spec: { ...longSpec, settings: { ...longSpec.settings, maxIterations: 100_000 } } }, alice);
    try {
      // More than one page (500 events) of history is stored before the reader comes.
      await waitFor(async () => (await iterationOf(client, jobId)) >= 600, 60_000, '600 iterations');
      const stream = client.watchJob({ jobId }, alice)[Symbol.asyncIterator]();
      const received: JobEvent[] = [];
      const first = await stream.next();
      received.push(first.value!.event!);
      await sleep(2000);
      const target = await iterationOf(client, jobId);
      let cancelled = false;
      let count = 0;
      for (;;) {
        const step = await stream.next();
        if (step.done) break;
        const event = step.value.event!;
        received.push(event);
        if (++count % 50 === 0) await sleep(50); // slow, though faster than the job writes
        // Once the reader is past where the job was when it resumed, it is live: end the job.
        if (!cancelled && event.kind.case === 'progress' && event.kind.value.iteration > target + 200) {
          cancelled = true;
          expect((await client.cancelJob({ jobId }, alice)).state).toBe(JobState.RUNNING);
        }
      }
      expect(cancelled).toBe(true);
      const last = received.at(-1)!;
      expect(last.kind.case === 'result' && last.kind.value.status).toBe(Status.CANCELLED);
      const replay = (await drain(client.watchJob({ jobId }, alice))).events;
      expectAccounted(received, replay);
    } finally {
      await client.cancelJob({ jobId }, alice);
    }
  });
});
