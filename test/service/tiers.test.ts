// The real ReciteService end to end, in two tiers: in memory (createRouterTransport with the real handlers, job
// hub, SQLite store and tiny model) and a real server on port 0 reached over Connect (HTTP/1.1), gRPC (HTTP/2)
// and gRPC-Web. Every tier runs the same script: an Invert to HIT, its replay, the unary RPCs, and cancellation.
import { toBinary } from '@bufbuild/protobuf';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthCheckResponse_ServingStatus as ServingStatus } from '../../sdk/gen/health/v1/health_pb.js';
import { JobEventSchema, JobState, ModelState, ResultSchema, Status } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { JobEvent, Result } from '../../sdk/gen/recite/v1/recite_pb.js';
import { startTestServer } from '../helpers/test-server.js';
import type { Protocol, ReciteClient } from './service-fixtures.js';
import {
  aliceToken, bearer, createInMemoryService, drain, endlessSpec, errorOf, healthClient, helloSpec, networkTransport,
  reciteClient, waitFor,
} from './service-fixtures.js';

const helloIds = [15496, 995];

interface Tier {
  name: string;
  protocol: Protocol | 'memory';
}

const tiers: Tier[] = [
  { name: 'in memory (router transport)', protocol: 'memory' },
  { name: 'real server, Connect over HTTP/1.1', protocol: 'connect' },
  { name: 'real server, gRPC over HTTP/2', protocol: 'grpc' },
  { name: 'real server, gRPC-Web over HTTP/1.1', protocol: 'grpc-web' },
];

function kindsOf(events: JobEvent[]): string[] {
  return events.map((e) => e.kind.case ?? 'none');
}

function bytesOf(events: JobEvent[]): Buffer[] {
  return events.map((e) => Buffer.from(toBinary(JobEventSchema, e)));
}

describe.each(tiers)('$name', ({ protocol }) => {
  let client: ReciteClient;
  let health: ReturnType<typeof healthClient>;
  let close: () => Promise<void>;
  const alice = bearer(aliceToken);

  beforeAll(async () => {
    if (protocol === 'memory') {
      const service = await createInMemoryService();
      client = reciteClient(service.transport);
      health = healthClient(service.transport);
      close = service.close;
    } else {
      const server = await startTestServer();
      const transport = networkTransport(protocol, server.url);
      client = reciteClient(transport);
      health = healthClient(transport);
      close = server.close;
    }
  });

  afterAll(async () => {
    await close();
  });

  let jobId = '';
  let history: JobEvent[] = [];
  let result: Result | undefined;

  it('streams an Invert of "Hello world" from queued to a HIT result', async () => {
    const { jobIds, events } = await drain(client.invert({ spec: helloSpec }, alice));
    expect(jobIds.size).toBe(1);
    jobId = [...jobIds][0]!;
    expect(jobId).toMatch(/^[0-9a-f-]{36}$/);
    history = events;

    const kinds = kindsOf(events);
    expect(kinds.slice(0, 2)).toEqual(['queued', 'started']);
    expect(kinds.slice(-2)).toEqual(['restartResult', 'result']);
    expect(kinds.slice(2, -2).every((k) => k === 'progress')).toBe(true);
    expect(events.map((e) => e.sequence)).toEqual(events.map((_, i) => i + 1));

    const progress = events.flatMap((e) => (e.kind.case === 'progress' ? [e.kind.value] : []));
    expect(progress.length).toBeGreaterThan(10);
    expect(progress.map((p) => p.iteration)).toEqual(progress.map((_, i) => i)); // reportEvery 1, none coalesced
    expect(progress.every((p) => p.coalesced === 0)).toBe(true);
    expect(progress.at(-1)!.correctPrefix).toBe(2);
    expect(progress.at(-1)!.argmaxIds).toEqual(helloIds);
    expect(progress[0]!.correctPrefix).toBeLessThan(2);

    const last = events.at(-1)!;
    expect(last.kind.case).toBe('result');
    result = last.kind.case === 'result' ? last.kind.value : undefined;
    expect(result!.status).toBe(Status.HIT);
    expect(result!.targetText).toBe('Hello world');
    expect(result!.targetIds).toEqual(helloIds);
    expect(result!.model).toBe('tiny');
    expect(result!.provider).toBe('cpu');
    const best = result!.restarts[result!.best]!;
    expect(best.status).toBe(Status.HIT);
    expect(best.decodedText).toBe('Hello world');
    expect(best.decodedIds).toEqual(helloIds);
    expect(best.iterationsToHit).toBe(progress.at(-1)!.iteration);
    expect(best.embedding!.shape).toEqual([2, 32]);
    expect(best.embedding!.values).toHaveLength(64);
  });

  it('replays the same history byte for byte with WatchJob after the fact, ending at the result', async () => {
    expect(history.length).toBeGreaterThan(0);
    const { jobIds, events } = await drain(client.watchJob({ jobId }, alice));
    expect([...jobIds]).toEqual([jobId]);
    expect(events.at(-1)!.kind.case).toBe('result');
    expect(bytesOf(events)).toEqual(bytesOf(history));

    const tail = await drain(client.watchJob({ jobId, afterSequence: history.length - 3 }, alice));
    expect(tail.events.map((e) => e.sequence)).toEqual([history.length - 2, history.length - 1, history.length]);
    expect(bytesOf(tail.events)).toEqual(bytesOf(history.slice(-3)));
  });

  it('reports the finished job with GetJob, lists it first with ListJobs, and CancelJob leaves it finished', async () => {
    const { job } = await client.getJob({ jobId }, alice);
    expect(job!.jobId).toBe(jobId);
    expect(job!.state).toBe(JobState.FINISHED);
    expect(job!.targetText).toBe('Hello world');
    expect(job!.targetIds).toEqual(helloIds);
    expect(job!.model).toBe('tiny');
    expect(job!.finishedAt).toBeDefined();
    expect(Buffer.from(toBinary(ResultSchema, job!.result!))).toEqual(Buffer.from(toBinary(ResultSchema, result!)));
    const lastProgress = history.findLast((e) => e.kind.case === 'progress')!;
    expect(job!.lastProgress?.iteration).toBe(lastProgress.kind.case === 'progress' ? lastProgress.kind.value.iteration : -1);

    const { jobs } = await client.listJobs({}, alice);
    expect(jobs[0]!.jobId).toBe(jobId);
    expect(jobs[0]!.state).toBe(JobState.FINISHED);

    const cancelled = await client.cancelJob({ jobId }, alice);
    expect(cancelled.state).toBe(JobState.FINISHED);
    const again = await client.getJob({ jobId }, alice);
    expect(again.job!.result!.status).toBe(Status.HIT);
  });

  it('decodes the result embedding back to the target, greedy and with beam search', async () => {
    const embedding = result!.restarts[result!.best]!.embedding!;
    const greedy = await client.decode({ embedding, maxTokens: 2 }, alice);
    expect(greedy.ids).toEqual(helloIds);
    expect(greedy.text).toBe('Hello world');
    // A greedy hit need not be what beam search finds (on the tiny model it is not: beam search prefers a likelier
    // pair), so the beam check uses a job whose hit test is the beam decoder itself.
    const { jobId: beamJob } = await client.submitJob({
      spec: {
        target: { case: 'text', value: 'Hello world' },
        settings: { parameterization: { kind: { case: 'full', value: {} } }, maxIterations: 3000, decoder: { beams: 4, every: 10 } },
      },
    }, alice);
    const { events } = await drain(client.watchJob({ jobId: beamJob }, alice));
    const end = events.at(-1)!;
    const beamResult = end.kind.case === 'result' ? end.kind.value : undefined;
    expect(beamResult!.status).toBe(Status.HIT);
    expect(beamResult!.settings!.decoder).toMatchObject({ beams: 4, every: 10 });
    const beamRestart = beamResult!.restarts[beamResult!.best]!;
    expect(beamRestart.decodedText).toBe('Hello world');
    const decodedProgress = events.flatMap((e) => (e.kind.case === 'progress' && e.kind.value.decodedIds.length > 0 ? [e.kind.value] : []));
    expect(decodedProgress.length).toBeGreaterThan(0);
    expect(decodedProgress.every((p) => p.iteration % 10 === 0)).toBe(true);
    const beam = await client.decode({ embedding: beamRestart.embedding!, maxTokens: 2, beams: 4 }, alice);
    expect(beam.ids).toEqual(helloIds);
    expect(beam.text).toBe('Hello world');
  });

  it('tokenizes "Hello world" as 15496 995 and lists the tiny model as READY on the CPU', async () => {
    const tokenized = await client.tokenize({ text: 'Hello world' }, alice);
    expect(tokenized.ids).toEqual(helloIds);
    expect(tokenized.tokens).toEqual(['Hello', ' world']);

    const { models } = await client.listModels({}, alice);
    expect(models).toHaveLength(1);
    expect(models[0]).toMatchObject({
      name: 'tiny', state: ModelState.READY, provider: 'cpu', nEmbd: 32, nPositions: 64, vocabSize: 50257,
      nLayer: 2, nHead: 4, isDefault: true, error: '',
    });
    expect((await health.check({})).status).toBe(ServingStatus.SERVING);
  });

  it('ends a long job with CANCELLED in its own stream when CancelJob asks', async () => {
    const events: JobEvent[] = [];
    let cancelState: JobState | undefined;
    let id = '';
    for await (const response of client.invert({ spec: endlessSpec }, alice)) {
      id = response.jobId;
      events.push(response.event!);
      if (response.event!.kind.case === 'progress' && cancelState === undefined) {
        cancelState = (await client.cancelJob({ jobId: id }, alice)).state;
      }
    }
    expect(cancelState).toBe(JobState.RUNNING);
    const last = events.at(-1)!;
    expect(last.kind.case).toBe('result');
    const jobResult = last.kind.case === 'result' ? last.kind.value : undefined;
    expect(jobResult!.status).toBe(Status.CANCELLED);
    expect(jobResult!.restarts[0]!.status).toBe(Status.CANCELLED);
    expect(jobResult!.restarts[0]!.iterations).toBeLessThan(100_000);
    expect(events.map((e) => e.sequence)).toEqual(events.map((_, i) => i + 1));
    const { job } = await client.getJob({ jobId: id }, alice);
    expect(job!.state).toBe(JobState.FINISHED);
    expect(job!.result!.status).toBe(Status.CANCELLED);
  });

  it('cancels an Invert with cancel_on_disconnect when its client goes away, and keeps one without it', async () => {
    // Follow a stream to its first progress report, then abort the call.
    const abandon = async (cancelOnDisconnect: boolean): Promise<string> => {
      const controller = new AbortController();
      let id = '';
      const error = await errorOf(async () => {
        for await (const response of client.invert({ spec: endlessSpec, cancelOnDisconnect }, { ...alice, signal: controller.signal })) {
          id = response.jobId;
          if (response.event!.kind.case === 'progress') controller.abort();
        }
      });
      expect(error.code).toBe(Code.Canceled);
      expect(id).not.toBe('');
      return id;
    };

    const cancelled = await abandon(true);
    const kept = await abandon(false);
    await waitFor(async () => (await client.getJob({ jobId: cancelled }, alice)).job!.state === JobState.FINISHED,
      10_000, 'the abandoned cancel_on_disconnect job to finish');
    const { job } = await client.getJob({ jobId: cancelled }, alice);
    expect(job!.result!.status).toBe(Status.CANCELLED);

    // The other one carries on: still running, and its iterations advance.
    const before = (await client.getJob({ jobId: kept }, alice)).job!;
    expect(before.state).toBe(JobState.RUNNING);
    await waitFor(async () => {
      const now = (await client.getJob({ jobId: kept }, alice)).job!;
      return now.state === JobState.RUNNING && now.lastProgress!.iteration > (before.lastProgress?.iteration ?? 0) + 50;
    }, 10_000, 'the kept job to advance');
    expect((await client.cancelJob({ jobId: kept }, alice)).state).toBe(JobState.RUNNING);
    const watched = await drain(client.watchJob({ jobId: kept }, alice));
    const end = watched.events.at(-1)!;
    expect(end.kind.case === 'result' && end.kind.value.status).toBe(Status.CANCELLED);
  });
});
