// A small fake ReciteService for SDK tests: it records every request and its headers, streams a scripted job, and
// notes when a stream's client went away before the handler finished.
import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import type { ConnectRouter, HandlerContext, ServiceImpl } from '@connectrpc/connect';
import {
  DecodeResponseSchema,
  JobEventSchema,
  JobSchema,
  JobState,
  ModelSchema,
  ModelState,
  ProgressSchema,
  QueuedSchema,
  ReciteService,
  RestartResultSchema,
  ResultSchema,
  StartedSchema,
  Status,
  TokenizeResponseSchema,
} from '../../sdk/gen/recite/v1/recite_pb.js';
import type {
  CancelJobRequest,
  DecodeRequest,
  DeleteJobRequest,
  GetJobRequest,
  InvertRequest,
  JobEvent,
  JobSpec,
  ListJobsRequest,
  SubmitJobRequest,
  TokenizeRequest,
  WatchJobRequest,
} from '../../sdk/gen/recite/v1/recite_pb.js';

/** Describe one call the fake saw. */
export interface SeenCall {
  method: string;
  authorization: string | null;
  request: unknown;
}

/** Build the events of a short scripted job: queued, started, `progressCount` progress, restart result, result. */
export function scriptedEvents(progressCount: number): JobEvent[] {
  const events: JobEvent[] = [];
  const push = (kind: JobEvent['kind']) =>
    events.push(create(JobEventSchema, { sequence: events.length + 1, time: timestampFromMs(1_700_000_000_000 + events.length), kind }));
  push({ case: 'queued', value: create(QueuedSchema, { position: 2 }) });
  push({ case: 'started', value: create(StartedSchema, { restart: 0, seed: 7, promptVectors: 3, parameterCount: 96 }) });
  for (let i = 0; i < progressCount; i++) {
    push({ case: 'progress', value: create(ProgressSchema, { restart: 0, iteration: i, nllSum: 10 - i, argmaxText: `it ${i}`, correctPrefix: i }) });
  }
  push({ case: 'restartResult', value: create(RestartResultSchema, { restart: 0, seed: 7, status: Status.HIT, iterations: progressCount, decodedText: 'Hello world' }) });
  push({ case: 'result', value: create(ResultSchema, { status: Status.HIT, best: 0, targetText: 'Hello world', model: 'tiny' }) });
  return events;
}

/** Describe a running fake: its routes, what it saw, and how its last stream ended. */
export interface FakeRecite {
  routes: (router: ConnectRouter) => void;
  calls: SeenCall[];
  /** A method name each time a stream's ctx.signal aborted before its handler finished: the client went away. */
  disconnects: string[];
  /** Events the next invert/watch streams; `endless` streams progress until the client goes away. */
  script: { events: JobEvent[]; endless: boolean; delayMs: number };
  /** Resolves when a stream ends: its handler finished or its client went away. */
  streamEnded: () => Promise<void>;
}

/** Create the fake service. */
export function createFakeRecite(): FakeRecite {
  const calls: SeenCall[] = [];
  const disconnects: string[] = [];
  const script = { events: scriptedEvents(3), endless: false, delayMs: 0 };
  let endWaiters: (() => void)[] = [];
  const see = (method: string, request: unknown, ctx: HandlerContext) => {
    calls.push({ method, authorization: ctx.requestHeader.get('authorization'), request });
  };
  const requireToken = (ctx: HandlerContext) => {
    if (ctx.requestHeader.get('authorization') !== 'Bearer s3cret') {
      throw new ConnectError('missing or wrong bearer token', Code.Unauthenticated);
    }
  };

  const ended = () => {
    const waiters = endWaiters;
    endWaiters = [];
    for (const resolve of waiters) resolve();
  };

  // A client that goes away aborts ctx.signal while the handler may sit suspended in a yield that nobody will
  // resume (its finally never runs), so a disconnect is recorded from the signal, not from the generator's end.
  async function* stream(method: string, jobId: string, afterSequence: number, ctx: HandlerContext) {
    let finished = false;
    const onAbort = () => {
      if (finished) return;
      disconnects.push(method);
      ended();
    };
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    for (const event of script.events) {
      if (event.sequence <= afterSequence) continue;
      if (script.delayMs > 0) await sleep(script.delayMs, ctx.signal);
      if (ctx.signal.aborted) return;
      yield { jobId, event };
    }
    for (let i = 0; script.endless; i++) {
      await sleep(script.delayMs || 5, ctx.signal);
      if (ctx.signal.aborted) return;
      const event = create(JobEventSchema, {
        sequence: 1000 + i,
        kind: { case: 'progress', value: create(ProgressSchema, { iteration: 1000 + i }) },
      });
      yield { jobId, event };
    }
    finished = true;
    ctx.signal.removeEventListener('abort', onAbort);
    ended();
  }

  const impl: ServiceImpl<typeof ReciteService> = {
    async *invert(request: InvertRequest, ctx) {
      see('invert', request, ctx);
      requireToken(ctx);
      yield* stream('invert', 'job-1', 0, ctx);
    },
    async submitJob(request: SubmitJobRequest, ctx) {
      see('submitJob', request, ctx);
      requireToken(ctx);
      return { jobId: 'job-2', queuePosition: 4 };
    },
    async *watchJob(request: WatchJobRequest, ctx) {
      see('watchJob', request, ctx);
      requireToken(ctx);
      if (request.jobId !== 'job-1') throw new ConnectError(`job ${request.jobId} not found`, Code.NotFound);
      yield* stream('watchJob', request.jobId, Number(request.afterSequence), ctx);
    },
    async getJob(request: GetJobRequest, ctx) {
      see('getJob', request, ctx);
      requireToken(ctx);
      if (request.jobId !== 'job-1') throw new ConnectError(`job ${request.jobId} not found`, Code.NotFound);
      return { job: create(JobSchema, { jobId: 'job-1', state: JobState.RUNNING, label: 'row 3' }) };
    },
    async listJobs(request: ListJobsRequest, ctx) {
      see('listJobs', request, ctx);
      requireToken(ctx);
      return { jobs: [create(JobSchema, { jobId: 'job-2' }), create(JobSchema, { jobId: 'job-1' })] };
    },
    async cancelJob(request: CancelJobRequest, ctx) {
      see('cancelJob', request, ctx);
      requireToken(ctx);
      return { state: JobState.FINISHED };
    },
    async deleteJob(request: DeleteJobRequest, ctx) {
      see('deleteJob', request, ctx);
      requireToken(ctx);
      if (request.jobId !== 'job-1') throw new ConnectError(`job ${request.jobId} not found`, Code.NotFound);
      return {};
    },
    async decode(request: DecodeRequest, ctx) {
      see('decode', request, ctx);
      return create(DecodeResponseSchema, { ids: [15496, 995], text: 'Hello world' });
    },
    async tokenize(request: TokenizeRequest, ctx) {
      see('tokenize', request, ctx);
      if (request.text.length > 20) {
        throw new ConnectError(`text has ${request.text.length} characters; the limit is 20`, Code.InvalidArgument);
      }
      return create(TokenizeResponseSchema, { ids: [15496, 995], tokens: ['Hello', ' world'] });
    },
    async score(request, ctx) {
      see('score', request, ctx);
      throw new ConnectError('the fake scores nothing', Code.Unimplemented);
    },
    async listModels(request, ctx) {
      see('listModels', request, ctx);
      return { models: [create(ModelSchema, { name: 'tiny', state: ModelState.READY, nEmbd: 32, isDefault: true })] };
    },
  };

  return {
    routes: (router) => router.service(ReciteService, impl),
    calls,
    disconnects,
    script,
    streamEnded: () => new Promise<void>((resolve) => endWaiters.push(resolve)),
  };
}

/** Return the spec of the last call of `method`. */
export function lastSpec(fake: FakeRecite, method: 'invert' | 'submitJob'): JobSpec {
  const call = fake.calls.filter((c) => c.method === method).at(-1);
  const spec = (call?.request as { spec?: JobSpec } | undefined)?.spec;
  if (spec === undefined) throw new Error(`the fake saw no ${method} call with a spec`);
  return spec;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
