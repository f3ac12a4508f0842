// The recite client: the ReciteService RPCs with ergonomic arguments, job events as a discriminated union, and the
// raw Connect client beside them. Fetch-based, so the same code runs in browsers and in Node 20.
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import type { Client, Interceptor, Transport } from '@connectrpc/connect';
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-web';
import { bearerAuth, withBearerToken } from './auth.js';
import { flattenJobEvent } from './events.js';
import type { ReciteEvent } from './events.js';
import { ReciteService } from './gen/recite/v1/recite_pb.js';
import type {
  DecodeResponse,
  Job,
  JobEvent,
  JobState,
  Model,
  SubmitJobResponse,
  TextScore,
  TokenizeResponse,
  WatchJobRequest,
} from './gen/recite/v1/recite_pb.js';
import { toJobSpec, toTensor } from './job-settings.js';
import type { JobSpecOptions, TensorInput } from './job-settings.js';

/** Configure createReciteClient. */
export interface ReciteClientOptions {
  /** Sent as `authorization: Bearer <token>` on every call. */
  token?: string;
  /** A ready transport (a router transport in tests, say); `protocol` and `interceptors` are then ignored. */
  transport?: Transport;
  /** Wire protocol of the default fetch transport; the server speaks both (and gRPC). Default 'connect'. */
  protocol?: 'connect' | 'grpc-web';
  /** More interceptors for the default transport (logging, retries). */
  interceptors?: Interceptor[];
}

/** Options every call accepts. */
export interface CallOptions {
  /** Abort the call: a unary call rejects with Code.Canceled, an event stream ends quietly. */
  signal?: AbortSignal;
  /** Give up after this long (Code.DeadlineExceeded). */
  timeoutMs?: number;
}

/** Configure invert: the job, its settings and the stream. */
export interface InvertCallOptions extends JobSpecOptions, CallOptions {
  /** Cancel the job when the stream ends before its result (by default the job carries on server-side). */
  cancelOnDisconnect?: boolean;
}

/** Configure watchJob. */
export interface WatchJobOptions extends CallOptions {
  /** Replay only events after this sequence number (0: the whole history). */
  afterSequence?: WatchJobRequest['afterSequence'];
}

/** Configure listJobs. */
export interface ListJobsOptions extends CallOptions {
  /** Jobs per page (server default 50). */
  pageSize?: number;
  /** Jobs created before this one (unset: the newest); pass the last job id of a page for the next. */
  beforeJobId?: string;
  /** Every client's jobs (admin clients only; others get PERMISSION_DENIED). */
  allClients?: boolean;
}

/** Configure decode. */
export interface DecodeOptions extends CallOptions {
  /** Tokens to generate. */
  maxTokens: number;
  /** 0 or 1: greedy; N > 1: beam search with N beams. */
  beams?: number;
  /** A model name from listModels(); unset: the server's default. */
  model?: string;
}

/** Configure tokenize. */
export interface TokenizeOptions extends CallOptions {
  model?: string;
  /** Encode "<|endoftext|>" as id 50256 rather than as text. */
  allowEndOfText?: boolean;
}

/** Configure score. */
export interface ScoreOptions extends CallOptions {
  /** A model name from listModels(); unset: the server's default. */
  model?: string;
}

/** Describe the recite client. Event streams start when iterated and end after the `result` event. */
export interface ReciteClient {
  /** Submit a job and stream its events until the result. Breaking out of the loop or aborting closes the stream. */
  invert(target: string | readonly number[], options?: InvertCallOptions): AsyncIterable<ReciteEvent>;
  /** Queue a job and return its id at once. */
  submitJob(target: string | readonly number[], options?: JobSpecOptions & CallOptions): Promise<SubmitJobResponse>;
  /** Replay a job's history (after `afterSequence`), then follow it live until the result. */
  watchJob(jobId: string, options?: WatchJobOptions): AsyncIterable<ReciteEvent>;
  /** Return a job's state, latest progress and (once finished) result. */
  getJob(jobId: string, options?: CallOptions): Promise<Job>;
  /** Return the caller's jobs, newest first, one page. */
  listJobs(options?: ListJobsOptions): Promise<Job[]>;
  /** Ask a queued or running job to stop; returns its state. */
  cancelJob(jobId: string, options?: CallOptions): Promise<JobState>;
  /** Delete a finished job with its events; a queued or running job is refused (FailedPrecondition): cancel it first. */
  deleteJob(jobId: string, options?: CallOptions): Promise<void>;
  /** Return the text a model produces after a (P, C) prompt embedding. */
  decode(embedding: TensorInput, options: DecodeOptions): Promise<DecodeResponse>;
  /** Return GPT-2 token ids and their texts for a string. */
  tokenize(text: string, options?: TokenizeOptions): Promise<TokenizeResponse>;
  /** Return the models the server serves. */
  listModels(options?: CallOptions): Promise<Model[]>;
  /** Score texts under a model: per-token NLL (first token after <|endoftext|>), bits per token and character. */
  score(texts: readonly string[], options?: ScoreOptions): Promise<TextScore[]>;
  /** The Connect client, for everything the methods above leave out (headers, trailers, raw responses). */
  raw: Client<typeof ReciteService>;
}

/** Create a client for the recite server at `baseUrl` (e.g. "http://localhost:8080"). */
export function createReciteClient(baseUrl: string, options: ReciteClientOptions = {}): ReciteClient {
  const raw = createClient(ReciteService, createReciteTransport(baseUrl, options));
  const callOptions = (o: CallOptions | undefined) => ({ signal: o?.signal, timeoutMs: o?.timeoutMs });
  return {
    raw,
    invert(target, options = {}) {
      const request = { spec: toJobSpec(target, options), cancelOnDisconnect: options.cancelOnDisconnect ?? false };
      return followEvents((signal) => raw.invert(request, { signal, timeoutMs: options.timeoutMs }), options.signal);
    },
    async submitJob(target, options = {}) {
      return raw.submitJob({ spec: toJobSpec(target, options) }, callOptions(options));
    },
    watchJob(jobId, options = {}) {
      const request = { jobId, afterSequence: options.afterSequence };
      return followEvents((signal) => raw.watchJob(request, { signal, timeoutMs: options.timeoutMs }), options.signal);
    },
    async getJob(jobId, options) {
      const { job } = await raw.getJob({ jobId }, callOptions(options));
      if (job === undefined) throw new ConnectError(`get job ${jobId}: the server sent no job`, Code.Internal);
      return job;
    },
    async listJobs(options = {}) {
      const request = { pageSize: options.pageSize ?? 0, beforeJobId: options.beforeJobId ?? '',
        allClients: options.allClients ?? false };
      return (await raw.listJobs(request, callOptions(options))).jobs;
    },
    async cancelJob(jobId, options) {
      return (await raw.cancelJob({ jobId }, callOptions(options))).state;
    },
    async deleteJob(jobId, options) {
      await raw.deleteJob({ jobId }, callOptions(options));
    },
    async decode(embedding, options) {
      const request = {
        model: options.model ?? '',
        embedding: toTensor(embedding),
        maxTokens: options.maxTokens,
        beams: options.beams ?? 0,
      };
      return raw.decode(request, callOptions(options));
    },
    async tokenize(text, options = {}) {
      const request = { model: options.model ?? '', text, allowEndOfText: options.allowEndOfText ?? false };
      return raw.tokenize(request, callOptions(options));
    },
    async listModels(options) {
      return (await raw.listModels({}, callOptions(options))).models;
    },
    async score(texts, options = {}) {
      return (await raw.score({ model: options.model ?? '', texts: [...texts] }, callOptions(options))).scores;
    },
  };
}

/**
 * Create the transport a recite client uses (also for the server's other services, such as DatasetService): the
 * given one, or Connect (or gRPC-Web) over fetch in the binary encoding, with the bearer token on every call.
 */
export function createReciteTransport(baseUrl: string, options: ReciteClientOptions = {}): Transport {
  const { token, transport } = options;
  if (transport !== undefined) return token === undefined ? transport : withBearerToken(transport, token);
  // The first interceptor runs first: the caller's own ones see (and may replace) the authorization header.
  const interceptors = [...(token === undefined ? [] : [bearerAuth(token)]), ...(options.interceptors ?? [])];
  const protocol = options.protocol ?? 'connect';
  // Binary: embeddings are long float arrays, several times smaller than their JSON.
  if (protocol === 'connect') return createConnectTransport({ baseUrl, useBinaryFormat: true, interceptors });
  if (protocol === 'grpc-web') return createGrpcWebTransport({ baseUrl, useBinaryFormat: true, interceptors });
  throw new ConnectError(`create recite client: protocol is ${JSON.stringify(protocol)}; expected 'connect' or 'grpc-web'`,
    Code.InvalidArgument);
}

/**
 * Stream a job's events. The call gets its own AbortController, linked to the caller's signal, because the Connect
 * client's stream has no return(): aborting it is how leaving the loop closes the HTTP stream, so the server sees
 * the disconnect (and cancels the job when asked to). The caller's abort ends the iteration without an error.
 */
async function* followEvents(
  open: (signal: AbortSignal) => AsyncIterable<{ jobId: string; event?: JobEvent }>,
  signal: AbortSignal | undefined,
): AsyncGenerator<ReciteEvent, void, undefined> {
  if (signal?.aborted) return;
  const controller = new AbortController();
  const onAbort = () => controller.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const response of open(controller.signal)) {
      if (response.event === undefined) continue;
      const event = flattenJobEvent(response.jobId, response.event);
      if (event !== undefined) yield event;
    }
  } catch (error) {
    if (signal?.aborted) return;
    throw ConnectError.from(error);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    controller.abort();
  }
}
