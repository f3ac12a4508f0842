// A seeded property test of the shared server: 200 jobs of extreme settings and embeddings (±1e38, NaN, ±Inf,
// empty, the largest sizes, out-of-range enums and counts) through the RPC, the WebSocket stream and data sets, all
// at one `recite serve` process. Each submission is either refused with a client error (InvalidArgument,
// ResourceExhausted: never Internal) or a job that ends with a result within 30 s; afterwards the process is the
// one that started (same pid, still running) and health says SERVING.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { create, toJson } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatasetService, DatasetState } from '../../sdk/gen/recite/v1/dataset_pb.js';
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from '../../sdk/gen/health/v1/health_pb.js';
import { JobSpecSchema, OptimizerSchema, ScheduleSchema } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { JobSettingsSchema } from '../../sdk/gen/recite/v1/recite_pb.js';
import { openStream } from '../dashboard/ws-client.js';
import type { WsClient } from '../dashboard/ws-client.js';
import { authHeaders, reciteClient, serveToken, spawnServe, stopServe } from '../crash/serve-process.js';
import type { ServeProcess } from '../crash/serve-process.js';

type Settings = MessageInitShape<typeof JobSettingsSchema>;
type Spec = MessageInitShape<typeof JobSpecSchema>;

const seed = 20261130;
const numRuns = 200;
const jobDeadlineMs = 30_000;
const C = 32; // the tiny model's n_embd
const clientErrors = new Set([Code.InvalidArgument, Code.ResourceExhausted, Code.FailedPrecondition, Code.OutOfRange]);

let serve: ServeProcess;
let ws: WsClient;

beforeAll(async () => {
  serve = await spawnServe(path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'recite-fuzz-')), 'recite.db'),
    ['--max-queue', '500']);
  ws = await openStream(serve.url, serveToken);
}, 60_000);

afterAll(async () => {
  await ws?.close();
  await stopServe(serve);
});

const extreme = fc.constantFrom(0, -0, 1e-45, 1, -1, 1e6, 1e20, -1e20, 1e38, -1e38, 3.4e38, Number.NaN,
  Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY);
const number = fc.oneof(extreme, fc.double());
// float fields (embedding values, std): what float32 can hold, or the client cannot even encode the request
const float = fc.oneof(extreme, fc.float());
const smallCount = (max: number) => fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 0, max }) },
  { weight: 1, arbitrary: fc.constantFrom(100_001, 4_294_967_295) });

const parameterization = fc.oneof(
  fc.record({ case: fc.constant('full' as const), value: fc.record({ promptVectors: fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min: 0, max: 3 }) }, { weight: 1, arbitrary: fc.constantFrom(63, 64, 256, 257) }) }) }),
  fc.record({ case: fc.constant('flat' as const), value: fc.constant({}) }),
  fc.record({ case: fc.constant('projected' as const), value: fc.record({
    dims: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 1, max: 32 }) }, fc.constantFrom(0, 33, 4096, 4097)),
    basis: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 2 }) }, fc.constant(3)) }) }),
);

const embedding = fc.oneof(
  // the right size for P = 1 or 2, filled with extremes
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 2 }).chain((P) => fc.record({
    shape: fc.constant([P, C]), values: fc.array(extreme, { minLength: P * C, maxLength: P * C }) })) },
  // any size
  fc.record({ shape: fc.array(fc.integer({ min: 0, max: 70 }), { minLength: 0, maxLength: 3 }),
    values: fc.array(float, { maxLength: 100 }) }),
);

const init = fc.oneof(
  fc.record({ case: fc.constant('random' as const), value: fc.record({ std: float }) }),
  fc.record({ case: fc.constant('zeros' as const), value: fc.constant({}) }),
  fc.record({ case: fc.constant('mean' as const), value: fc.constant({}) }),
  fc.record({ case: fc.constant('text' as const), value: fc.string({ maxLength: 30 }) }),
  fc.record({ case: fc.constant('embedding' as const), value: embedding }),
);

// Mostly a sane value, sometimes an extreme one: each job has a few extremes, and most still run.
const mostly = <T, U>(sane: T, wild: fc.Arbitrary<U>) =>
  fc.oneof({ weight: 12, arbitrary: fc.constant(sane) }, { weight: 1, arbitrary: wild });

const settings: fc.Arbitrary<Settings> = fc.record({
  parameterization: fc.record({ kind: parameterization }),
  // the embedding warm start is the point: extremes there pass validation and meet the graph
  init: fc.oneof({ weight: 1, arbitrary: fc.constant(undefined) }, { weight: 2, arbitrary: fc.record({ kind: init }) }),
  // one past the last value: an enum the API gains still leaves an undefined one in the draw
  optimizer: mostly(0, fc.integer({ min: 0, max: OptimizerSchema.values.length })),
  lr: mostly(0, number),
  momentum: mostly(undefined, number),
  schedule: mostly(0, fc.integer({ min: 0, max: ScheduleSchema.values.length })),
  lrRelativeToNorm: fc.boolean(),
  maxIterations: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 1, max: 12 }) },
    { weight: 1, arbitrary: fc.constantFrom(100_001, 4_294_967_295) }),
  patience: mostly(0, smallCount(5)),
  nllThreshold: mostly(0, number),
  curriculum: fc.boolean(),
  decoder: mostly(undefined, fc.record({ beams: fc.integer({ min: 0, max: 17 }),
    every: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constant(100_001)) })),
  continueAfterHit: fc.boolean(),
  restarts: mostly(0, fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constantFrom(1000, 4_294_967_295))),
  seed: fc.nat(),
  reportEvery: mostly(0, smallCount(5)),
}) as fc.Arbitrary<Settings>;

const target = fc.oneof(
  { weight: 6, arbitrary: fc.record({ case: fc.constant('text' as const), value: fc.string({ minLength: 1, maxLength: 12 }) }) },
  { weight: 1, arbitrary: fc.record({ case: fc.constant('text' as const), value: fc.constantFrom('', 'x'.repeat(200)) }) },
  { weight: 3, arbitrary: fc.record({ case: fc.constant('targetIds' as const), value: fc.record({
    ids: fc.oneof({ weight: 8, arbitrary: fc.array(fc.integer({ min: 0, max: 50_256 }), { minLength: 1, maxLength: 10 }) },
      fc.array(fc.integer({ min: 0, max: 60_000 }), { maxLength: 10 }), fc.constant(new Array<number>(80).fill(7))) }) }) },
);

const jobCase = fc.record({
  channel: fc.constantFrom('rpc' as const, 'ws' as const, 'dataset' as const),
  spec: fc.record({ target, settings }),
});

interface Outcome {
  refused?: Code;
  ms?: number;
}

async function viaRpc(spec: Spec): Promise<Outcome> {
  const client = reciteClient(serve.url);
  let jobId: string;
  try {
    jobId = (await client.submitJob({ spec }, { headers: authHeaders })).jobId;
  } catch (error: unknown) {
    return { refused: ConnectError.from(error).code };
  }
  return { ms: await resultWithin(jobId) };
}

let wsId = 0;
async function viaWs(spec: Spec): Promise<Outcome> {
  let json;
  try {
    json = toJson(JobSpecSchema, create(JobSpecSchema, spec));
  } catch {
    return viaRpc(spec); // not expressible in JSON (an enum number outside the enum): the RPC carries it
  }
  const id = ++wsId;
  const from = ws.messages.length;
  ws.send({ type: 'submit', spec: json, id });
  const { message } = await ws.next((m) => m.id === id, { from, timeoutMs: 10_000 });
  if (message.type === 'error') {
    const code = Code[(message.code as string).replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())
      .replace(/^[a-z]/, (c) => c.toUpperCase()) as keyof typeof Code];
    return { refused: code };
  }
  expect(message.type).toBe('submitted');
  return { ms: await resultWithin(message.jobId as string) };
}

let datasetCount = 0;
async function viaDataset(spec: Spec): Promise<Outcome> {
  const datasets = createClient(DatasetService, createGrpcTransport({ baseUrl: serve.url }));
  const name = `fuzz-${++datasetCount}`;
  const started = performance.now();
  const row = spec.target?.case === 'text'
    ? { id: 'r0', target: { case: 'text' as const, value: spec.target.value } }
    : { id: 'r0', target: { case: 'targetIds' as const, value: spec.target?.value ?? {} } };
  try {
    await datasets.submitDataset({ name, settings: spec.settings ?? {}, rows: [row] }, { headers: authHeaders });
  } catch (error: unknown) {
    return { refused: ConnectError.from(error).code };
  }
  for (;;) {
    const { dataset } = await datasets.getDataset({ name }, { headers: authHeaders });
    if (dataset?.state === DatasetState.FINISHED) return { ms: performance.now() - started };
    if (performance.now() - started > jobDeadlineMs) throw new Error(`data set ${name} did not finish within 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function resultWithin(jobId: string): Promise<number> {
  const started = performance.now();
  const stream = reciteClient(serve.url).watchJob({ jobId }, { headers: authHeaders, timeoutMs: jobDeadlineMs });
  for await (const r of stream) {
    if (r.event?.kind.case === 'result') return performance.now() - started;
  }
  throw new Error(`job ${jobId}: the stream ended without a result`);
}

describe('fuzzing the shared server', () => {
  it(`survives ${numRuns} jobs of extreme settings through RPC, /ws and data sets (seed ${seed})`, async () => {
    const pid = serve.pid;
    // The largest sizes, once each (too costly to draw at random): a million values, the most the proto allows,
    // for a prompt far past the context; and the longest prompt the context takes, every value 1e38.
    const million = await viaRpc({ target: { case: 'text', value: 'x' }, settings: { init: { kind: { case: 'embedding',
      value: { shape: [31_250, C], values: new Array<number>(1_000_000).fill(0.5) } } } } });
    expect(million.refused).toBe(Code.InvalidArgument);
    const longest = await viaRpc({ target: { case: 'targetIds', value: { ids: [7] } }, settings: { maxIterations: 3,
      parameterization: { kind: { case: 'full', value: { promptVectors: 64 } } },
      init: { kind: { case: 'embedding', value: { shape: [64, C], values: new Array<number>(64 * C).fill(1e38) } } } } });
    expect(longest.ms).toBeLessThanOrEqual(jobDeadlineMs);
    const tally = { refused: 0, finished: 0 };
    await fc.assert(fc.asyncProperty(jobCase, async ({ channel, spec }) => {
      const outcome = channel === 'rpc' ? await viaRpc(spec) : channel === 'ws' ? await viaWs(spec) : await viaDataset(spec);
      if (outcome.refused !== undefined) {
        tally.refused++;
        expect(clientErrors.has(outcome.refused), `refused with ${Code[outcome.refused]}`).toBe(true);
      } else {
        tally.finished++;
        expect(outcome.ms).toBeLessThanOrEqual(jobDeadlineMs);
      }
    }), { seed, numRuns, endOnFailure: true });
    expect(tally.refused + tally.finished).toBe(numRuns);
    expect(tally.finished).toBeGreaterThan(numRuns / 3);
    expect(serve.child.exitCode).toBeNull();
    expect(serve.pid).toBe(pid);
    const health = createClient(Health, createGrpcTransport({ baseUrl: serve.url }));
    expect((await health.check({ service: '' })).status).toBe(ServingStatus.SERVING);
  }, 600_000);
});
