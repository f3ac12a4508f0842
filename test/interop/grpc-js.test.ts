// A plain @grpc/grpc-js client that knows only the API's schema (the compiled descriptor set sdk/gen/recite.binpb)
// against a real server on h2c: what a gRPC client in any language sees, with none of this project's code.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aliceToken, startTestServer } from '../helpers/test-server.js';
import type { TestServer } from '../helpers/test-server.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const loaderOptions: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

// The shapes grpc-js hands out with the loader options above: snake_case fields, enums as their names, the
// oneof's chosen member named in a virtual field (`kind`, `target`).
interface WireEvent {
  sequence: number;
  kind: 'queued' | 'started' | 'progress' | 'restart_result' | 'result';
  started?: { restart: number; resumed_from_iteration: number };
  progress?: { restart: number; iteration: number; nll_sum: number };
  result?: { status: string; restarts: { status: string; iterations: number; iterations_to_hit: number | null }[] };
}
interface WireResponse {
  job_id: string;
  event: WireEvent;
}
type Unary = (request: object, metadata: grpc.Metadata, callback: (error: grpc.ServiceError | null, response: any) => void) => grpc.ClientUnaryCall;
type Streaming = (request: object, metadata: grpc.Metadata) => grpc.ClientReadableStream<WireResponse>;
interface ReciteClient extends grpc.Client {
  Invert: Streaming;
  WatchJob: Streaming;
  SubmitJob: Unary;
  GetJob: Unary;
  CancelJob: Unary;
  Tokenize: Unary;
  ListModels: Unary;
}

let server: TestServer;
let recite: ReciteClient;
let health: grpc.Client & { Check: Unary };

function loadReciteClient(address: string): ReciteClient {
  const definition = protoLoader.loadFileDescriptorSetFromBuffer(fs.readFileSync(path.join(root, 'sdk/gen/recite.binpb')), loaderOptions);
  const pkg = grpc.loadPackageDefinition(definition) as any;
  return new pkg.recite.v1.ReciteService(address, grpc.credentials.createInsecure()) as ReciteClient;
}

function loadHealthClient(address: string): grpc.Client & { Check: Unary } {
  const definition = protoLoader.loadSync(path.join(root, 'node_modules/grpc-health-check/proto/health/v1/health.proto'), loaderOptions);
  const pkg = grpc.loadPackageDefinition(definition) as any;
  return new pkg.grpc.health.v1.Health(address, grpc.credentials.createInsecure());
}

function auth(token = aliceToken): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  return metadata;
}

function call<T = any>(method: Unary, request: object, metadata = auth()): Promise<T> {
  return new Promise((resolve, reject) => {
    method(request, metadata, (error, response) => (error ? reject(error) : resolve(response as T)));
  });
}

/** Read a server stream to its end; resolves with the messages and the final status. */
function collect(stream: grpc.ClientReadableStream<WireResponse>, onData?: (r: WireResponse) => void):
  Promise<{ messages: WireResponse[]; status: grpc.StatusObject }> {
  const messages: WireResponse[] = [];
  return new Promise((resolve, reject) => {
    stream.on('data', (r: WireResponse) => {
      messages.push(r);
      onData?.(r);
    });
    stream.on('error', () => {}); // the status event carries the outcome
    stream.on('status', (status: grpc.StatusObject) => resolve({ messages, status }));
    stream.on('close', () => setTimeout(() => reject(new Error('stream closed without a status')), 1000).unref());
  });
}

async function failure(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (error) {
    return error as grpc.ServiceError;
  }
  throw new Error('expected the call to fail');
}

async function waitFinished(jobId: string, timeoutMs = 20_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { job } = await call(recite.GetJob.bind(recite), { job_id: jobId });
    if (job.state === 'JOB_STATE_FINISHED') return job;
    if (Date.now() > deadline) throw new Error(`job ${jobId} still ${job.state} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// A job that runs until cancelled: far more iterations than the test waits for, a hit does not stop it.
const longSpec = {
  text: 'does it make sense to compare apples and oranges?',
  settings: { max_iterations: 100_000, continue_after_hit: true, report_every: 10 },
};

beforeAll(async () => {
  server = await startTestServer();
  const address = server.url.replace(/^http:\/\//, '');
  recite = loadReciteClient(address);
  health = loadHealthClient(address);
});

afterAll(async () => {
  recite?.close();
  health?.close();
  await server?.close();
});

describe('grpc-js client from the descriptor set', () => {
  let hitEvents: WireEvent[] = [];
  let hitJobId = '';

  it('streams Invert to a HIT on the tiny model', async () => {
    const { messages, status } = await collect(recite.Invert({ spec: { text: 'Hello world', settings: { max_iterations: 2000 } } }, auth()));
    expect(status.code).toBe(grpc.status.OK);
    hitJobId = messages[0]!.job_id;
    expect(hitJobId).toMatch(/^[0-9a-f-]{36}$/);
    expect(messages.every((m) => m.job_id === hitJobId)).toBe(true);
    hitEvents = messages.map((m) => m.event);
    expect(hitEvents.map((e) => e.sequence)).toEqual(hitEvents.map((_, i) => i + 1));
    expect(hitEvents[0]!.kind).toBe('queued');
    expect(hitEvents[1]!.kind).toBe('started');
    const progress = hitEvents.filter((e) => e.kind === 'progress').map((e) => e.progress!.iteration);
    expect(progress).toEqual(progress.map((_, i) => i));
    const last = hitEvents.at(-1)!;
    expect(last.kind).toBe('result');
    expect(last.result!.status).toBe('STATUS_HIT');
    expect(last.result!.restarts[0]!.iterations_to_hit).toBeGreaterThanOrEqual(0);
  });

  it('replays the same events with WatchJob after the fact, ending at the result', async () => {
    expect(hitJobId).not.toBe('');
    const { messages, status } = await collect(recite.WatchJob({ job_id: hitJobId, after_sequence: 0 }, auth()));
    expect(status.code).toBe(grpc.status.OK);
    expect(messages.map((m) => m.event)).toEqual(hitEvents);
    const tail = await collect(recite.WatchJob({ job_id: hitJobId, after_sequence: hitEvents.length - 2 }, auth()));
    expect(tail.messages.map((m) => m.event)).toEqual(hitEvents.slice(-2));
  });

  it('cancels a long job with CancelJob: its Invert stream ends with STATUS_CANCELLED', async () => {
    const stream = recite.Invert({ spec: longSpec }, auth());
    let cancelled: Promise<{ state: string }> | undefined;
    const { messages, status } = await collect(stream, (r) => {
      if (!cancelled && r.event.kind === 'progress' && r.event.progress!.iteration >= 20) {
        cancelled = call(recite.CancelJob.bind(recite), { job_id: r.job_id });
      }
    });
    expect((await cancelled!).state).toBe('JOB_STATE_RUNNING');
    expect(status.code).toBe(grpc.status.OK);
    const last = messages.at(-1)!.event;
    expect(last.kind).toBe('result');
    expect(last.result!.status).toBe('STATUS_CANCELLED');
    expect(last.result!.restarts[0]!.iterations).toBeLessThan(100_000);
    const job = await waitFinished(messages[0]!.job_id);
    expect(job.result.status).toBe('STATUS_CANCELLED');
  });

  it('cancels the job when the client cancels an Invert sent with cancel_on_disconnect', async () => {
    const stream = recite.Invert({ spec: longSpec, cancel_on_disconnect: true }, auth());
    let jobId = '';
    const { status } = await collect(stream, (r) => {
      jobId = r.job_id;
      if (r.event.kind === 'progress' && r.event.progress!.iteration >= 20) stream.cancel();
    });
    expect(status.code).toBe(grpc.status.CANCELLED);
    const job = await waitFinished(jobId);
    expect(job.state).toBe('JOB_STATE_FINISHED');
    expect(job.result.status).toBe('STATUS_CANCELLED');
  });

  it('keeps a job running when its stream is cancelled without cancel_on_disconnect', async () => {
    const stream = recite.Invert({ spec: longSpec }, auth());
    let jobId = '';
    await collect(stream, (r) => {
      jobId = r.job_id;
      if (r.event.kind === 'progress') stream.cancel();
    });
    await new Promise((r) => setTimeout(r, 300));
    const { job } = await call(recite.GetJob.bind(recite), { job_id: jobId });
    expect(job.state).toBe('JOB_STATE_RUNNING');
    await call(recite.CancelJob.bind(recite), { job_id: jobId });
    expect((await waitFinished(jobId)).result.status).toBe('STATUS_CANCELLED');
  });

  it('tokenizes', async () => {
    const res = await call(recite.Tokenize.bind(recite), { text: 'Hello world' });
    expect(res.ids).toEqual([15496, 995]);
    expect(res.tokens).toEqual(['Hello', ' world']);
  });

  it('lists the models', async () => {
    const res = await call(recite.ListModels.bind(recite), {});
    expect(res.models).toHaveLength(1);
    expect(res.models[0]).toMatchObject({
      name: 'tiny', state: 'MODEL_STATE_READY', vocab_size: 50257, n_embd: 32, provider: 'cpu', is_default: true,
    });
  });

  it('is refused UNAUTHENTICATED without a token, on unary and streaming calls', async () => {
    const unary = await failure(call(recite.ListModels.bind(recite), {}, new grpc.Metadata()));
    expect(unary.code, unary.details).toBe(grpc.status.UNAUTHENTICATED);
    const wrong = await failure(call(recite.ListModels.bind(recite), {}, auth('not-a-token')));
    expect(wrong.code).toBe(grpc.status.UNAUTHENTICATED);
    const { status } = await collect(recite.Invert({ spec: { text: 'Hello world' } }, new grpc.Metadata()));
    expect(status.code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('gets INVALID_ARGUMENT naming the field for an empty text', async () => {
    const error = await failure(call(recite.SubmitJob.bind(recite), { spec: { text: '' } }));
    expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error.details).toContain('spec.text');
    const { status } = await collect(recite.Invert({ spec: { text: '' } }, auth()));
    expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(status.details).toContain('spec.text');
  });

  it('answers grpc.health.v1.Health/Check with SERVING, without a token', async () => {
    const res = await call(health.Check.bind(health), { service: '' }, new grpc.Metadata());
    expect(res.status).toBe('SERVING');
    const named = await call(health.Check.bind(health), { service: 'recite.v1.ReciteService' }, new grpc.Metadata());
    expect(named.status).toBe('SERVING');
  });
});
