// Bad input at the edge of a real server: every invalid field and every limit gets its code and a message that
// names the field (with the value and the limit where the server knows them); malformed bytes get an error, not a
// crash; a full queue is ResourceExhausted. After each refusal the server still serves a good request.
import http2 from 'node:http2';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DecodeRequestSchema, Optimizer, Schedule } from '../../sdk/gen/recite/v1/recite_pb.js';
import { JobState, Status } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { TestServer } from '../helpers/test-server.js';
import { startTestServer } from '../helpers/test-server.js';
import type { Protocol, ReciteClient, Spec } from './service-fixtures.js';
import {
  aliceToken, bearer, bobToken, drain, endlessSpec, errorOf, helloSpec, networkTransport, reciteClient, waitFor,
} from './service-fixtures.js';

const alice = bearer(aliceToken);
const full = { kind: { case: 'full' as const, value: {} } };
const flat = { kind: { case: 'flat' as const, value: {} } };

/** Token ids 100, 101, … (all inside the vocabulary). */
function ids(n: number): Spec['target'] {
  return { case: 'targetIds', value: { ids: Array.from({ length: n }, (_, i) => 100 + i) } };
}

function hi(settings: NonNullable<Spec['settings']>): Spec {
  return { target: { case: 'text', value: 'Hi' }, settings };
}

// [what, spec, field the message names, the exact message]
const badSpecs: [string, Spec, string, string][] = [
  ['an empty text', { target: { case: 'text', value: '' } }, 'spec.text', 'spec.text: "" must be at least 1 characters'],
  ['no target', {}, 'spec.target', 'spec.target: (message) exactly one field is required in oneof'],
  ['an empty id list', { target: { case: 'targetIds', value: { ids: [] } } }, 'spec.target_ids.ids',
    'spec.target_ids.ids: 0 items: must contain at least 1 item(s)'],
  ['4097 ids', { target: { case: 'targetIds', value: { ids: new Array<number>(4097).fill(1) } } }, 'spec.target_ids.ids',
    'spec.target_ids.ids: 4097 items: must contain no more than 4096 item(s)'],
  ['70 ids with flat (context 64, P 1)', { target: ids(70), settings: { parameterization: flat } }, 'spec.target',
    "spec.target: 70 tokens with P = 1 prompt vectors need 70 positions; the model's context allows 64, so at most 64 tokens"],
  ['65 ids with flat (one past the limit)', { target: ids(65), settings: { parameterization: flat } }, 'spec.target',
    "spec.target: 65 tokens with P = 1 prompt vectors need 65 positions; the model's context allows 64, so at most 64 tokens"],
  ['33 ids with full, P = T', { target: ids(33), settings: { parameterization: full } }, 'spec.target',
    "spec.target: 33 tokens with P = 33 prompt vectors need 65 positions; the model's context allows 64, so at most 32 tokens (full: P = T)"],
  ['token id 50257', { target: { case: 'targetIds', value: { ids: [15496, 50257] } } }, 'spec.target_ids.ids[1]',
    'spec.target_ids.ids[1]: 50257 is outside the vocabulary 0..50256'],
  ['a text of 100001 characters', { target: { case: 'text', value: 'x'.repeat(100_001) } }, 'spec.text',
    'spec.text: a string of 100001 characters must be at most 100000 characters'],
  ['an unknown model', { model: 'gpt9', target: { case: 'text', value: 'Hi' } }, 'spec.model',
    'spec.model: "gpt9" is not served here; models: tiny'],
  ['a label of 501 characters', { label: 'x'.repeat(501), target: { case: 'text', value: 'Hi' } }, 'spec.label',
    'spec.label: a string of 501 characters must be at most 500 characters'],
  ['max_iterations 100001', hi({ maxIterations: 100_001 }), 'spec.settings.max_iterations',
    'spec.settings.max_iterations: 100001 is not an integer in [1, 100000]'],
  ['patience 100001', hi({ patience: 100_001 }), 'spec.settings.patience',
    'spec.settings.patience: 100001 is not an integer in [0, 100000]'],
  ['report_every 100001', hi({ reportEvery: 100_001 }), 'spec.settings.report_every',
    'spec.settings.report_every: 100001 is not an integer in [1, 100000]'],
  ['65 restarts', hi({ restarts: 65 }), 'spec.settings.restarts', 'spec.settings.restarts: 65 is not an integer in [1, 64]'],
  ['17 decoder beams', hi({ decoder: { beams: 17 } }), 'spec.settings.decoder.beams',
    'spec.settings.decoder.beams: 17 must be less than or equal to 16'],
  ['decoder every 100001', hi({ decoder: { beams: 2, every: 100_001 } }), 'spec.settings.decoder.every',
    'spec.settings.decoder.every: 100001 must be less than or equal to 100000'],
  ['lr -1', hi({ lr: -1 }), 'spec.settings.lr',
    'spec.settings.lr: -1 must be greater than or equal to 0 and less than or equal to 1000'],
  ['lr 1001', hi({ lr: 1001 }), 'spec.settings.lr',
    'spec.settings.lr: 1001 must be greater than or equal to 0 and less than or equal to 1000'],
  ['lr NaN', hi({ lr: Number.NaN }), 'spec.settings.lr',
    'spec.settings.lr: NaN must be greater than or equal to 0 and less than or equal to 1000'],
  ['momentum 1', hi({ momentum: 1 }), 'spec.settings.momentum',
    'spec.settings.momentum: 1 must be greater than or equal to 0 and less than 1'],
  ['nll_threshold -1', hi({ nllThreshold: -1 }), 'spec.settings.nll_threshold',
    'spec.settings.nll_threshold: -1 must be greater than or equal to 0'],
  ['repetition_penalty 11', hi({ repetitionPenalty: 11 }), 'spec.settings.repetition_penalty',
    'spec.settings.repetition_penalty: 11 must be greater than or equal to 0 and less than or equal to 10'],
  ['repetition_penalty NaN', hi({ repetitionPenalty: Number.NaN }), 'spec.settings.repetition_penalty',
    'spec.settings.repetition_penalty: NaN must be greater than or equal to 0 and less than or equal to 10'],
  ['repetition_penalty 0.05', hi({ repetitionPenalty: 0.05 }), 'spec.settings.repetition_penalty',
    'spec.settings.repetition_penalty: 0.05 is not a number in [0.1, 10] (1: off)'],
  ['an undefined optimizer', hi({ optimizer: 9 as Optimizer }), 'spec.settings.optimizer',
    'spec.settings.optimizer: 9 value must be one of the defined enum values'],
  ['an undefined schedule', hi({ schedule: 9 as Schedule }), 'spec.settings.schedule',
    'spec.settings.schedule: 9 value must be one of the defined enum values'],
  ['projected dims 33 (n_embd 32)', hi({ parameterization: { kind: { case: 'projected', value: { dims: 33 } } } }),
    'spec.settings.parameterization.projected.dims',
    "spec.settings.parameterization.projected.dims: 33 exceeds the model's embedding width 32"],
  ['projected dims 0', hi({ parameterization: { kind: { case: 'projected', value: { dims: 0 } } } }),
    'spec.settings.parameterization.projected.dims',
    'spec.settings.parameterization.projected.dims: 0 must be greater than or equal to 1 and less than or equal to 4096'],
  ['257 prompt vectors', hi({ parameterization: { kind: { case: 'full', value: { promptVectors: 257 } } } }),
    'spec.settings.parameterization.full.prompt_vectors',
    'spec.settings.parameterization.full.prompt_vectors: 257 must be less than or equal to 256'],
  ['an init embedding of 10 values for (2, 32)', {
    target: { case: 'text', value: 'Hello world' },
    settings: { parameterization: full, init: { kind: { case: 'embedding', value: { shape: [10], values: new Array<number>(10).fill(0) } } } },
  }, 'spec.settings.init.embedding.values', 'spec.settings.init.embedding.values: 10 numbers; P = 2 vectors of C = 32 need 64'],
  ['an init embedding with NaN', {
    target: { case: 'text', value: 'Hello world' },
    settings: { parameterization: full, init: { kind: { case: 'embedding', value: { shape: [2, 32], values: [Number.NaN, ...new Array<number>(63).fill(0)] } } } },
  }, 'spec.settings.init.embedding.values', 'spec.settings.init.embedding.values: every value must be a finite number'],
  ['an empty init text', hi({ init: { kind: { case: 'text', value: '' } } }), 'spec.settings.init.text',
    'spec.settings.init.text: "" must be at least 1 characters'],
  ['init std -1', hi({ init: { kind: { case: 'random', value: { std: -1 } } } }), 'spec.settings.init.random.std',
    'spec.settings.init.random.std: -1 must be greater than or equal to 0 and less than or equal to 100'],
];

type DecodeInit = MessageInitShape<typeof DecodeRequestSchema>;
const zeros = (n: number) => new Array<number>(n).fill(0);

const badDecodes: [string, DecodeInit, string, string][] = [
  ['no embedding', { maxTokens: 2 }, 'embedding', 'embedding: (unset) value is required'],
  ['an embedding of width 31', { embedding: { shape: [2, 31], values: zeros(62) }, maxTokens: 2 }, 'embedding.shape',
    "embedding.shape: [2, 31]; expected [P, 32] (C is the model's n_embd)"],
  ['an embedding of rank 3', { embedding: { shape: [2, 2, 32], values: zeros(128) }, maxTokens: 2 }, 'embedding.shape',
    "embedding.shape: [2, 2, 32]; expected [P, 32] (C is the model's n_embd)"],
  ['an empty shape', { embedding: { shape: [], values: [] }, maxTokens: 2 }, 'embedding.shape',
    'embedding.shape: 0 items: must contain at least 1 item(s)'],
  ['10 values for shape (2, 32)', { embedding: { shape: [2, 32], values: zeros(10) }, maxTokens: 2 }, 'embedding.values',
    'embedding.values: 10 numbers; shape [2, 32] needs 64'],
  ['max_tokens past the context', { embedding: { shape: [2, 32], values: zeros(64) }, maxTokens: 64 }, 'max_tokens',
    "max_tokens: 64 with P = 2 prompt vectors exceeds the model's context of 64 positions (at most 63)"],
  ['max_tokens 1025', { embedding: { shape: [2, 32], values: zeros(64) }, maxTokens: 1025 }, 'max_tokens',
    'max_tokens: 1025 must be greater than or equal to 1 and less than or equal to 1024'],
  ['max_tokens 0', { embedding: { shape: [2, 32], values: zeros(64) }, maxTokens: 0 }, 'max_tokens',
    'max_tokens: 0 must be greater than or equal to 1 and less than or equal to 1024'],
  ['17 beams', { embedding: { shape: [2, 32], values: zeros(64) }, maxTokens: 2, beams: 17 }, 'beams',
    'beams: 17 must be less than or equal to 16'],
  ['an unknown model', { model: 'gpt9', embedding: { shape: [2, 32], values: zeros(64) }, maxTokens: 2 }, 'model',
    'model: "gpt9" is not served here; models: tiny'],
  // These once answered "internal error" (NaN logits decode to token -1) or a negative limit.
  ['a NaN value', { embedding: { shape: [1, 32], values: [...zeros(5), Number.NaN, ...zeros(26)] }, maxTokens: 2 },
    'embedding.values[5]', 'embedding.values[5]: NaN is not a finite number'],
  ['an infinite value', { embedding: { shape: [1, 32], values: [Number.NEGATIVE_INFINITY, ...zeros(31)] }, maxTokens: 2 },
    'embedding.values[0]', 'embedding.values[0]: -Infinity is not a finite number'],
  ['a value of 1e38', { embedding: { shape: [1, 32], values: new Array<number>(32).fill(1e38) }, maxTokens: 2 },
    'embedding.values[0]', 'embedding.values[0]: 9.999999680285692e+37 is beyond ±1000000, the largest magnitude a prompt value may have'],
  ['shape [0, 32]', { embedding: { shape: [0, 32], values: [] }, maxTokens: 2 }, 'embedding.shape',
    "embedding.shape: [0, 32]: P = 0 prompt vectors; the model's context of 64 positions takes 1 to 64"],
  ['shape [31250, 32]', { embedding: { shape: [31250, 32], values: zeros(31250 * 32) }, maxTokens: 2 }, 'embedding.shape',
    "embedding.shape: [31250, 32]: P = 31250 prompt vectors; the model's context of 64 positions takes 1 to 64"],
];

const badOthers: [string, (c: ReciteClient) => Promise<unknown>, string, string][] = [
  ['WatchJob with an empty job_id', (c) => drain(c.watchJob({ jobId: '' }, alice)), 'job_id',
    'job_id: "" must be at least 1 characters'],
  ['GetJob with an empty job_id', (c) => c.getJob({ jobId: '' }, alice), 'job_id', 'job_id: "" must be at least 1 characters'],
  ['CancelJob with an empty job_id', (c) => c.cancelJob({ jobId: '' }, alice), 'job_id', 'job_id: "" must be at least 1 characters'],
  ['DeleteJob with an empty job_id', (c) => c.deleteJob({ jobId: '' }, alice), 'job_id', 'job_id: "" must be at least 1 characters'],
  ['GetJob with a job_id of 101 characters', (c) => c.getJob({ jobId: 'x'.repeat(101) }, alice), 'job_id',
    'job_id: a string of 101 characters must be at most 100 characters'],
  ['ListJobs with page_size 1001', (c) => c.listJobs({ pageSize: 1001 }, alice), 'page_size',
    'page_size: 1001 must be less than or equal to 1000'],
  ['Tokenize with a text of 100001 characters', (c) => c.tokenize({ text: 'x'.repeat(100_001) }, alice), 'text',
    'text: a string of 100001 characters must be at most 100000 characters'],
  ['Tokenize with an unknown model', (c) => c.tokenize({ model: 'gpt9', text: 'Hi' }, alice), 'model',
    'model: "gpt9" is not served here; models: tiny'],
];

let server: TestServer;
let client: ReciteClient;

beforeAll(async () => {
  server = await startTestServer();
  client = reciteClient(networkTransport('connect', server.url));
});

afterAll(async () => {
  await server.close();
});

async function expectStillServing(c: ReciteClient = client): Promise<void> {
  const { ids: tokenIds } = await c.tokenize({ text: 'Hello world' }, alice);
  expect(tokenIds).toEqual([15496, 995]);
}

async function storedJobs(): Promise<number> {
  return (await server.server.store.listJobs('alice', { limit: 1000 })).length;
}

describe.each(['connect', 'grpc', 'grpc-web'] as Protocol[])('over %s', (protocol) => {
  let c: ReciteClient;
  beforeAll(() => {
    c = protocol === 'connect' ? client : reciteClient(networkTransport(protocol, server.url));
  });

  describe.each(badSpecs)('a job spec with %s', (_what, spec, field, message) => {
    it('is refused by SubmitJob and by Invert with InvalidArgument naming the field, and stores nothing', async () => {
      const before = await storedJobs();
      const submitted = await errorOf(c.submitJob({ spec }, alice));
      expect(submitted.code).toBe(Code.InvalidArgument);
      expect(submitted.rawMessage.startsWith(`${field}: `)).toBe(true);
      expect(submitted.rawMessage).toBe(message);
      const inverted = await errorOf(drain(c.invert({ spec }, alice)));
      expect(inverted.code).toBe(Code.InvalidArgument);
      expect(inverted.rawMessage).toBe(message);
      expect(await storedJobs()).toBe(before);
      expect(server.server.hub.liveJobs).toBe(0);
      await expectStillServing(c);
    });
  });

  it.each(badDecodes)('Decode with %s is InvalidArgument naming the field', async (_what, request, field, message) => {
    const error = await errorOf(c.decode(request, alice));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage.startsWith(`${field}: `)).toBe(true);
    expect(error.rawMessage).toBe(message);
    await expectStillServing(c);
  });

  it.each(badOthers)('%s is InvalidArgument naming the field', async (_what, call, field, message) => {
    const error = await errorOf(call(c));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage.startsWith(`${field}: `)).toBe(true);
    expect(error.rawMessage).toBe(message);
    await expectStillServing(c);
  });

  it('refuses a request without a spec, naming it', async () => {
    const error = await errorOf(c.submitJob({}, alice));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage).toBe('spec: (unset) value is required');
    await expectStillServing(c);
  });
});

describe('malformed messages', () => {
  async function post(method: string, contentType: string, body: Uint8Array | string, token: string | undefined = aliceToken) {
    return fetch(`${server.url}/recite.v1.ReciteService/${method}`, {
      method: 'POST',
      headers: { 'content-type': contentType, ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: typeof body === 'string' ? body : new Uint8Array(body),
    });
  }

  // Connect-ES reports a request it cannot parse as `internal` ("parse binary: …"); the server checks binary bodies
  // first, so the client learns it is its own request that is wrong, and which message type was expected.
  it.each([
    ['an unterminated varint', Buffer.from([0xff, 0xff, 0xff, 0xff]), '4 bytes', 'premature EOF'],
    ['a spec cut short', Buffer.from([0x0a, 0x05, 0x01]), '3 bytes', 'illegal tag: field no 0 wire type 1'],
    ['text', Buffer.from('not protobuf at all'), '19 bytes', 'illegal tag: field no 13 wire type 6'],
  ])('SubmitJob with %s as application/proto is invalid_argument naming the message type', async (_what, body, size, why) => {
    const before = await storedJobs();
    const response = await post('SubmitJob', 'application/proto', body);
    expect(response.status).toBe(400);
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(await response.json()).toEqual({ code: 'invalid_argument',
      message: `request: ${size} are not a valid recite.v1.SubmitJobRequest in the protobuf binary encoding (${why})` });
    expect(await storedJobs()).toBe(before);
    await expectStillServing();
  });

  it('SubmitJob over gRPC with a malformed message is INVALID_ARGUMENT', async () => {
    const session = http2.connect(server.url);
    const trailers = await new Promise<http2.IncomingHttpHeaders>((resolve) => {
      const stream = session.request({ ':method': 'POST', ':path': '/recite.v1.ReciteService/SubmitJob',
        'content-type': 'application/grpc', te: 'trailers', authorization: `Bearer ${aliceToken}` });
      stream.on('response', (headers) => {
        if (headers['grpc-status'] !== undefined) resolve(headers); // trailers-only
      });
      stream.on('trailers', resolve);
      // one gRPC frame of 3 bytes: field 1 (spec) claiming 5 bytes that do not follow
      stream.end(Buffer.from([0, 0, 0, 0, 3, 0x0a, 0x05, 0x01]));
    });
    session.destroy();
    expect(trailers['grpc-status']).toBe(String(Code.InvalidArgument));
    expect(decodeURIComponent(String(trailers['grpc-message']))).toMatch(/not a valid recite\.v1\.SubmitJobRequest/);
    await expectStillServing();
  });

  it.each([
    ['an unknown field', '{"spec": {"text": "Hello", "colour": "red"}}',
      /^spec\.colour: unknown field of recite\.v1\.JobSpec; known: /],
    ['an unknown enum name', '{"spec": {"text": "Hello", "settings": {"optimizer": "OPTIMIZER_UNKNOWN"}}}',
      /^spec\.settings\.optimizer: "OPTIMIZER_UNKNOWN" is not a value of recite\.v1\.Optimizer; values: OPTIMIZER_UNSPECIFIED, /],
  ])('SubmitJob with JSON holding %s is invalid_argument naming it (not silently a default)', async (_what, json, message) => {
    const before = await storedJobs();
    const response = await post('SubmitJob', 'application/json', json);
    expect(response.status).toBe(400);
    const body = await response.json() as { code: string; message: string };
    expect(body.code).toBe('invalid_argument');
    expect(body.message).toMatch(message);
    expect(await storedJobs()).toBe(before);
  });

  it('SubmitJob with malformed JSON is invalid_argument', async () => {
    const response = await post('SubmitJob', 'application/json', '{not json');
    expect(response.status).toBe(400);
    const body = await response.json() as { code: string; message: string };
    expect(body.code).toBe('invalid_argument');
    expect(body.message).toMatch(/^cannot decode message recite\.v1\.SubmitJobRequest from JSON/);
    await expectStillServing();
  });

  it('SubmitJob with JSON that names no target is invalid_argument naming spec.target', async () => {
    const response = await post('SubmitJob', 'application/json', '{"spec": {"label": "x"}}');
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({
      code: 'invalid_argument', message: 'spec.target: (message) exactly one field is required in oneof',
    });
  });

  it('Invert with a truncated stream envelope ends with an error in the stream', async () => {
    // Connect streaming: flags 0, length 100, then only 3 bytes.
    const response = await post('Invert', 'application/connect+proto', Buffer.from([0, 0, 0, 0, 100, 1, 2, 3]));
    expect(response.status).toBe(200);
    const bytes = Buffer.from(await response.arrayBuffer());
    expect(bytes[0]).toBe(2); // end-stream flag
    expect(JSON.parse(bytes.subarray(5).toString('utf8'))).toEqual({
      error: { code: 'invalid_argument', message: 'protocol error: incomplete envelope' },
    });
    expect(server.server.hub.liveJobs).toBe(0);
    await expectStillServing();
  });

  it('an unknown method is a 404 from the fallback, not an RPC', async () => {
    const response = await post('NoSuchMethod', 'application/proto', Buffer.alloc(0));
    expect(response.status).toBe(404);
    expect(await response.text()).toBe('no route for POST /recite.v1.ReciteService/NoSuchMethod\n');
    await expectStillServing();
  });
});

describe('a full queue', () => {
  let small: TestServer;
  let c: ReciteClient;

  beforeAll(async () => {
    small = await startTestServer({ maxQueue: 2 });
    c = reciteClient(networkTransport('connect', small.url));
  });

  afterAll(async () => {
    await small.close();
  });

  it('refuses a client\'s submissions past max_queue with ResourceExhausted, and takes them again once a job ends', async () => {
    const accepted: string[] = [];
    let refusal;
    for (let i = 0; i < 5 && !refusal; i++) {
      try {
        accepted.push((await c.submitJob({ spec: endlessSpec }, alice)).jobId);
      } catch (error: unknown) {
        refusal = error;
      }
    }
    expect(accepted).toHaveLength(2);
    const submitted = await errorOf(Promise.reject(refusal));
    expect(submitted.code).toBe(Code.ResourceExhausted);
    expect(submitted.rawMessage).toBe('queue is full for client "alice": 2 jobs are queued or running; the limit is 2');

    // Invert is refused the same way; a refused job is not stored. The limit is alice's own: bob is still accepted.
    const inverted = await errorOf(drain(c.invert({ spec: helloSpec }, alice)));
    expect(inverted.code).toBe(Code.ResourceExhausted);
    expect(inverted.rawMessage).toBe('queue is full for client "alice": 2 jobs are queued or running; the limit is 2');
    const bobs = (await c.submitJob({ spec: endlessSpec }, bearer(bobToken))).jobId;
    expect((await c.listJobs({}, alice)).jobs.map((j) => j.jobId).sort()).toEqual([...accepted].sort());
    expect((await c.listJobs({}, bearer(bobToken))).jobs.map((j) => j.jobId)).toEqual([bobs]);
    await c.cancelJob({ jobId: bobs }, bearer(bobToken));
    await expectStillServing(c);

    // The accepted jobs keep running; once one ends, the queue takes a new job.
    expect((await c.cancelJob({ jobId: accepted[0]! }, alice)).state).toBe(JobState.RUNNING);
    await waitFor(async () => (await c.getJob({ jobId: accepted[0]! }, alice)).job!.state === JobState.FINISHED,
      10_000, 'the cancelled job to finish');
    const { events } = await drain(c.invert({ spec: helloSpec }, alice));
    const end = events.at(-1)!;
    expect(end.kind.case === 'result' && end.kind.value.status).toBe(Status.HIT);
    await c.cancelJob({ jobId: accepted[1]! }, alice);
  });
});

describe('after all of that', () => {
  it('still runs a good Invert to a HIT', async () => {
    const { events } = await drain(client.invert({ spec: helloSpec }, alice));
    const end = events.at(-1)!;
    expect(end.kind.case).toBe('result');
    expect(end.kind.case === 'result' && end.kind.value.status).toBe(Status.HIT);
    expect(end.kind.case === 'result' && end.kind.value.restarts[0]!.decodedText).toBe('Hello world');
  });
});
