// The SDK client against a fake ReciteService in memory (createRouterTransport).
import { createRouterTransport } from '@connectrpc/connect';
import { beforeEach, describe, expect, it } from 'vitest';
import { Code, ConnectError, createReciteClient, JobState, Optimizer } from '../../sdk/index.js';
import type { ReciteClient, ReciteEvent } from '../../sdk/index.js';
import { createFakeRecite, lastSpec, scriptedEvents } from './fake-recite.js';
import type { FakeRecite } from './fake-recite.js';

let fake: FakeRecite;
let client: ReciteClient;

function clientFor(token?: string): ReciteClient {
  return createReciteClient('http://unused.invalid', { token, transport: createRouterTransport(fake.routes) });
}

async function collect(events: AsyncIterable<ReciteEvent>): Promise<ReciteEvent[]> {
  const out: ReciteEvent[] = [];
  for await (const event of events) out.push(event);
  return out;
}

async function codeOf(promise: Promise<unknown>): Promise<Code> {
  try {
    await promise;
  } catch (error) {
    return ConnectError.from(error).code;
  }
  throw new Error('expected a rejection');
}

beforeEach(() => {
  fake = createFakeRecite();
  client = clientFor('s3cret');
});

describe('auth', () => {
  it('sends authorization: Bearer <token> on unary and streaming calls', async () => {
    await client.getJob('job-1');
    await collect(client.invert('Hello world'));
    await client.listModels();
    expect(fake.calls.map((c) => [c.method, c.authorization])).toEqual([
      ['getJob', 'Bearer s3cret'],
      ['invert', 'Bearer s3cret'],
      ['listModels', 'Bearer s3cret'],
    ]);
  });

  it('sends no authorization without a token, and the server refusal is a ConnectError to branch on', async () => {
    const anonymous = clientFor();
    expect(await codeOf(anonymous.getJob('job-1'))).toBe(Code.Unauthenticated);
    expect(await codeOf(collect(anonymous.invert('Hello')))).toBe(Code.Unauthenticated);
    expect(fake.calls.map((c) => c.authorization)).toEqual([null, null]);
  });

  it('lets a call set its own authorization through the raw client', async () => {
    await expect(client.raw.getJob({ jobId: 'job-1' }, { headers: { authorization: 'Bearer other' } })).rejects.toThrow();
    expect(fake.calls.at(-1)?.authorization).toBe('Bearer other');
  });
});

describe('invert', () => {
  it('streams the job as flattened events, in order, ending after the result', async () => {
    const events = await collect(client.invert('Hello world'));
    expect(events.map((e) => e.type)).toEqual(['queued', 'started', 'progress', 'progress', 'progress', 'restart_result', 'result']);
    expect(events.map((e) => e.sequence)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(events.every((e) => e.jobId === 'job-1')).toBe(true);
    const progress = events.filter((e) => e.type === 'progress');
    expect(progress.map((e) => e.nllSum)).toEqual([10, 9, 8]);
    expect(events[0]).toMatchObject({ type: 'queued', position: 2 });
    expect(events.at(-1)).toMatchObject({ type: 'result', targetText: 'Hello world' });
    expect(fake.disconnects).toEqual([]);
  });

  it('sends the target, the mapped settings, model, label and cancelOnDisconnect', async () => {
    await collect(client.invert([15496, 995], {
      model: 'gpt2', label: 'row 3', optimizer: 'adam', lr: 0.3, parameterization: 'flat', cancelOnDisconnect: true,
    }));
    const call = fake.calls.find((c) => c.method === 'invert');
    expect(call?.request).toMatchObject({ cancelOnDisconnect: true });
    const spec = lastSpec(fake, 'invert');
    expect(spec).toMatchObject({ model: 'gpt2', label: 'row 3', settings: { optimizer: Optimizer.ADAM, lr: 0.3 } });
    expect(spec.target.case).toBe('targetIds');
    expect(spec.target.value).toMatchObject({ ids: [15496, 995] });
    expect(spec.settings?.parameterization?.kind.case).toBe('flat');

    await collect(client.invert('Hello'));
    expect(fake.calls.at(-1)?.request).toMatchObject({ cancelOnDisconnect: false });
    expect(lastSpec(fake, 'invert').target).toEqual({ case: 'text', value: 'Hello' });
  });

  it('starts nothing until iterated', async () => {
    const events = client.invert('Hello');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(fake.calls).toEqual([]);
    await collect(events);
    expect(fake.calls).toHaveLength(1);
  });
});

describe('AbortSignal', () => {
  it('ends the iteration quietly when aborted, and the server sees the disconnect', async () => {
    fake.script.endless = true;
    const controller = new AbortController();
    const ended = fake.streamEnded();
    const seen: ReciteEvent[] = [];
    for await (const event of client.invert('Hello', { signal: controller.signal })) {
      seen.push(event);
      if (seen.length === 8) controller.abort();
    }
    expect(seen).toHaveLength(8);
    expect(seen.slice(0, 7).map((e) => e.type)).toEqual(scriptedEvents(3).map(() => expect.any(String)));
    await ended;
    expect(fake.disconnects).toEqual(['invert']);
  });

  it('closes the stream when the loop breaks, without a signal', async () => {
    fake.script.endless = true;
    const ended = fake.streamEnded();
    let n = 0;
    for await (const _event of client.watchJob('job-1')) if (++n === 2) break;
    await ended;
    expect(fake.disconnects).toEqual(['watchJob']);
  });

  it('ends at once for a signal aborted before the call, sending nothing', async () => {
    const events = await collect(client.invert('Hello', { signal: AbortSignal.abort() }));
    expect(events).toEqual([]);
    expect(fake.calls).toEqual([]);
  });

  it('aborts while the server is silent', async () => {
    fake.script.delayMs = 10_000;
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const started = Date.now();
    expect(await collect(client.invert('Hello', { signal: controller.signal }))).toEqual([]);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('rejects an aborted unary call with Code.Canceled', async () => {
    expect(await codeOf(client.listJobs({ signal: AbortSignal.abort() }))).toBe(Code.Canceled);
  });

  it('gives DeadlineExceeded when a stream outlives timeoutMs', async () => {
    fake.script.endless = true;
    expect(await codeOf(collect(client.invert('Hello', { timeoutMs: 100 })))).toBe(Code.DeadlineExceeded);
  });
});

describe('watchJob', () => {
  it('replays after afterSequence', async () => {
    const events = await collect(client.watchJob('job-1', { afterSequence: 4 }));
    expect(events.map((e) => e.sequence)).toEqual([5, 6, 7]);
    expect(fake.calls.at(-1)?.request).toMatchObject({ jobId: 'job-1', afterSequence: 4 });
  });

  it('surfaces NotFound as a ConnectError', async () => {
    expect(await codeOf(collect(client.watchJob('job-404')))).toBe(Code.NotFound);
  });
});

describe('unary methods', () => {
  it('submitJob sends the spec and returns the id and queue position', async () => {
    const response = await client.submitJob('Hello world', { restarts: 3, label: 'a' });
    expect(response).toMatchObject({ jobId: 'job-2', queuePosition: 4 });
    expect(lastSpec(fake, 'submitJob')).toMatchObject({ label: 'a', settings: { restarts: 3 } });
  });

  it('getJob, listJobs, cancelJob and deleteJob unwrap their responses', async () => {
    expect(await client.getJob('job-1')).toMatchObject({ jobId: 'job-1', state: JobState.RUNNING, label: 'row 3' });
    expect(await codeOf(client.getJob('job-404'))).toBe(Code.NotFound);
    expect((await client.listJobs({ pageSize: 2, beforeJobId: 'job-3' })).map((j) => j.jobId)).toEqual(['job-2', 'job-1']);
    expect(fake.calls.at(-1)?.request).toMatchObject({ pageSize: 2, beforeJobId: 'job-3' });
    expect(await client.cancelJob('job-1')).toBe(JobState.FINISHED);
    expect(fake.calls.at(-1)?.request).toMatchObject({ jobId: 'job-1' });
    expect(await client.deleteJob('job-1')).toBeUndefined();
    expect(fake.calls.at(-1)).toMatchObject({ method: 'deleteJob', request: { jobId: 'job-1' } });
    expect(await codeOf(client.deleteJob('job-404'))).toBe(Code.NotFound);
  });

  it('decode sends the embedding as a Tensor, with maxTokens, beams and model', async () => {
    const values = new Float32Array([0.25, -0.5, 1, 2]);
    const response = await client.decode({ shape: [2, 2], values }, { maxTokens: 5, beams: 4, model: 'gpt2' });
    expect(response).toMatchObject({ ids: [15496, 995], text: 'Hello world' });
    expect(fake.calls.at(-1)?.request).toMatchObject({
      model: 'gpt2', maxTokens: 5, beams: 4, embedding: { shape: [2, 2], values: [0.25, -0.5, 1, 2] },
    });
  });

  it('tokenize and listModels; an InvalidArgument keeps its message', async () => {
    expect(await client.tokenize('Hello world', { allowEndOfText: true })).toMatchObject({ ids: [15496, 995], tokens: ['Hello', ' world'] });
    expect(fake.calls.at(-1)?.request).toMatchObject({ text: 'Hello world', allowEndOfText: true, model: '' });
    const models = await client.listModels();
    expect(models.map((m) => [m.name, m.nEmbd, m.isDefault])).toEqual([['tiny', 32, true]]);
    try {
      await client.tokenize('x'.repeat(30));
      throw new Error('expected a rejection');
    } catch (error) {
      const e = ConnectError.from(error);
      expect(e.code).toBe(Code.InvalidArgument);
      expect(e.rawMessage).toBe('text has 30 characters; the limit is 20');
    }
  });

  it('refuses bad options client-side with InvalidArgument, before any call', async () => {
    expect(await codeOf(client.submitJob('Hello', { optimizer: 'lbfgs' as never }))).toBe(Code.InvalidArgument);
    expect(() => client.invert('Hello', { decode: 'beam' as never })).toThrow(ConnectError);
    expect(fake.calls).toEqual([]);
  });
});
