// One dashboard WebSocket: the client's messages (subscribe, submit, cancel, …) in, job events and job summaries
// out, as the JSON encoding of the proto messages. Memory per socket stays bounded however slowly the client reads:
// - live progress is held back while the socket has more than `maxBufferedBytes` waiting, coalesced by the one rule
//   of server/service/coalescing-queue.ts (the newest report per restart replaces the one held), and sent once the
//   socket drains;
// - a replayed history is read from the store no faster than the socket drains, so it arrives whole;
// - queued, started, restart results and the result are always sent, after the progress held before them.
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { create, fromJson, toJson } from '@bufbuild/protobuf';
import type { JsonValue } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import type { Logger } from 'pino';
import type { RawData, WebSocket } from 'ws';
import { JobEventSchema, JobSpecSchema, JobState, SubmitJobRequestSchema } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { JobEvent, JobSpec } from '../../sdk/gen/recite/v1/recite_pb.js';
import { CoalescingQueue } from '../service/coalescing-queue.js';
import type { JobQueries, JobStreams, JobSubmission } from '../service/hub-ports.js';
import { toConnectError, validateRequest } from '../service/validation.js';
import type { JobListFeed, JobListReader } from './job-list-feed.js';
import { jobSummaryJson } from './job-summary.js';
import { unknownIn } from '../service/request-decoding.js';
import { integerProblem } from '../util/numbers.js';

export interface SessionOptions {
  /** Bytes a socket may have waiting to be sent before its live progress is held back and merged. */
  maxBufferedBytes: number;
  /** Jobs one socket may follow at once. */
  maxSubscriptions: number;
  /** Jobs the list holds on `subscribe_jobs` (newest first). */
  jobsPageSize: number;
}

/** What a socket has sent and holds, for tests and the metrics of a busy server. */
export interface SessionStats {
  clientId: string;
  /** Bytes waiting to be sent now. */
  bufferedAmount: number;
  /** The most bytes ever waiting, measured after each send. */
  maxBufferedAmount: number;
  /** Messages sent. */
  sent: number;
  /** Progress reports merged into later ones because the socket was behind. */
  coalesced: number;
  /** Progress reports and job summaries held back now. */
  held: number;
  subscriptions: number;
}

/** One job the socket follows. */
interface Subscription {
  readonly abort: AbortController;
  /** Progress held back while the socket is behind. */
  readonly held: CoalescingQueue;
}

const drainPollMs = 20; // how often a socket that is behind is checked
const turnEvery = 256; // events between two yields to the event loop while replaying

export class DashboardSession implements JobListReader {
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly heldJobs = new Map<string, string>(); // job id → serialized summary
  private drainTimer: NodeJS.Timeout | undefined;
  private followsJobs = false;
  private closed = false;
  private sent = 0;
  private coalesced = 0;
  private maxBufferedAmount = 0;
  /** False until the peer answers the last ping (see the dashboard's heartbeat). */
  alive = true;

  constructor(
    private readonly ws: WebSocket,
    readonly clientId: string,
    private readonly hub: JobSubmission & JobQueries & JobStreams,
    private readonly feed: JobListFeed,
    private readonly options: SessionOptions,
    private readonly log: Logger,
  ) {
    ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    ws.on('pong', () => { this.alive = true; });
    ws.on('close', () => this.dispose());
    ws.on('error', (error) => this.log.debug({ err: error, clientId }, 'dashboard socket error'));
    this.send({ type: 'hello', clientId });
  }

  stats(): SessionStats {
    let held = this.heldJobs.size;
    for (const s of this.subscriptions.values()) held += s.held.size;
    return {
      clientId: this.clientId,
      bufferedAmount: this.ws.bufferedAmount,
      maxBufferedAmount: this.maxBufferedAmount,
      sent: this.sent,
      coalesced: this.coalesced,
      held,
      subscriptions: this.subscriptions.size,
    };
  }

  /** Ping the peer; `alive` turns true again with its pong. */
  ping(): void {
    this.alive = false;
    this.ws.ping();
  }

  /** Close the socket (a normal close handshake), or cut it at once when `code` is omitted (a dead peer). */
  closeSocket(code?: number, reason?: string): void {
    this.dispose();
    if (code === undefined) this.ws.terminate();
    else this.ws.close(code, reason);
  }

  /** Stop following everything (the socket closed or the server is shutting down). */
  dispose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.subscriptions.values()) s.abort.abort();
    this.subscriptions.clear();
    this.heldJobs.clear();
    this.feed.remove(this);
    clearInterval(this.drainTimer);
  }

  pushJob(jobId: string, message: string): void {
    if (this.behind()) {
      this.heldJobs.set(jobId, message);
      this.startDraining();
      return;
    }
    this.heldJobs.delete(jobId);
    this.sendText(message);
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    let message: Record<string, unknown>;
    try {
      if (isBinary) throw new Error('binary messages are not part of this protocol; send JSON text');
      const parsed: unknown = JSON.parse(rawText(data));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('expected a JSON object');
      message = parsed as Record<string, unknown>;
    } catch (error: unknown) {
      this.sendError(new ConnectError(`message: ${error instanceof Error ? error.message : String(error)}`, Code.InvalidArgument));
      return;
    }
    const id = requestId(message.id);
    void this.handle(message).catch((error: unknown) => this.sendError(toConnectError(error), {
      ...(id !== undefined ? { id } : {}),
      ...(typeof message.jobId === 'string' ? { jobId: message.jobId } : {}),
    }));
  }

  private async handle(message: Record<string, unknown>): Promise<void> {
    const id = requestId(message.id);
    const reply = (fields: Record<string, unknown>) => this.send({ ...fields, ...(id !== undefined ? { id } : {}) });
    switch (message.type) {
      case 'subscribe':
        this.subscribe(jobIdOf(message), afterSequenceOf(message));
        return;
      case 'unsubscribe': {
        const jobId = jobIdOf(message);
        this.subscriptions.get(jobId)?.abort.abort();
        this.subscriptions.delete(jobId);
        return;
      }
      case 'subscribe_jobs': {
        // Follow first, then list: a job created in between shows up twice rather than never.
        this.followsJobs = true;
        this.feed.add(this);
        const jobs = await this.hub.listJobs(this.clientId, this.options.jobsPageSize, '');
        this.send({ type: 'jobs', jobs: jobs.map(jobSummaryJson) });
        return;
      }
      case 'unsubscribe_jobs':
        this.followsJobs = false;
        this.feed.remove(this);
        this.heldJobs.clear();
        return;
      case 'submit': {
        const spec = specOf(message.spec);
        validateRequest(SubmitJobRequestSchema, create(SubmitJobRequestSchema, { spec }));
        const { jobId, queuePosition } = await this.hub.submit(this.clientId, spec);
        reply({ type: 'submitted', jobId, queuePosition });
        return;
      }
      case 'cancel': {
        const jobId = jobIdOf(message);
        const state = await this.hub.cancel(this.clientId, jobId);
        reply({ type: 'cancelled', jobId, state: `JOB_STATE_${JobState[state]}` });
        return;
      }
      default:
        throw new ConnectError(`type: ${JSON.stringify(message.type)} is not one of subscribe, unsubscribe, ` +
          'subscribe_jobs, unsubscribe_jobs, submit, cancel', Code.InvalidArgument);
    }
  }

  private subscribe(jobId: string, afterSequence: number): void {
    this.subscriptions.get(jobId)?.abort.abort();
    this.subscriptions.delete(jobId);
    if (this.subscriptions.size >= this.options.maxSubscriptions) {
      throw new ConnectError(`subscribe: this socket follows ${this.subscriptions.size} jobs; the limit is ` +
        `${this.options.maxSubscriptions}`, Code.ResourceExhausted);
    }
    const subscription: Subscription = { abort: new AbortController(), held: new CoalescingQueue() };
    this.subscriptions.set(jobId, subscription);
    void this.follow(jobId, afterSequence, subscription);
  }

  // Relay one job's events: its stored history, then live until the result.
  private async follow(jobId: string, afterSequence: number, subscription: Subscription): Promise<void> {
    const { signal } = subscription.abort;
    const subscribedAtMs = Date.now();
    let count = 0;
    try {
      for await (const event of this.hub.watch(this.clientId, jobId, afterSequence, signal)) {
        if (signal.aborted) break;
        // Emitted before the subscription: read from the store, which can wait for the socket without growing.
        const replayed = eventMs(event) < subscribedAtMs;
        if (replayed) {
          while (this.behind() && !signal.aborted) await sleep(drainPollMs);
          if (signal.aborted) break;
        }
        this.deliver(jobId, subscription, event);
        if (++count % turnEvery === 0) await nextTurn();
      }
    } catch (error: unknown) {
      if (!signal.aborted) this.sendError(toConnectError(error), { jobId });
    } finally {
      if (this.subscriptions.get(jobId) === subscription) this.subscriptions.delete(jobId);
    }
  }

  private deliver(jobId: string, subscription: Subscription, event: JobEvent): void {
    const { held } = subscription;
    if (event.kind.case === 'progress' && this.behind()) {
      const before = held.coalesced;
      held.push(event, true);
      this.coalesced += held.coalesced - before;
      this.startDraining();
      return;
    }
    // The progress held back comes first, so a restart's last report precedes its result.
    for (const waiting of held.takeAll()) this.sendEvent(jobId, waiting);
    this.sendEvent(jobId, event);
  }

  private behind(): boolean {
    return this.ws.bufferedAmount > this.options.maxBufferedBytes;
  }

  private startDraining(): void {
    if (this.drainTimer) return;
    this.drainTimer = setInterval(() => this.drain(), drainPollMs);
  }

  // Send what was held back once the socket has caught up.
  private drain(): void {
    if (this.closed || this.behind()) return;
    for (const [jobId, subscription] of this.subscriptions) {
      for (const held of subscription.held.takeAll()) this.sendEvent(jobId, held);
    }
    if (this.followsJobs) for (const message of this.heldJobs.values()) this.sendText(message);
    this.heldJobs.clear();
    clearInterval(this.drainTimer);
    this.drainTimer = undefined;
  }

  private sendEvent(jobId: string, event: JobEvent): void {
    this.send({ type: 'event', jobId, event: toJson(JobEventSchema, event) });
  }

  private sendError(error: ConnectError, fields: Record<string, unknown> = {}): void {
    this.send({ type: 'error', code: codeName(error.code), message: error.rawMessage, ...fields });
  }

  private send(message: Record<string, unknown>): void {
    this.sendText(JSON.stringify(message));
  }

  private sendText(text: string): void {
    if (this.closed || this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(text);
    this.sent++;
    this.maxBufferedAmount = Math.max(this.maxBufferedAmount, this.ws.bufferedAmount);
  }
}

/** Name a Connect code as the Connect protocol writes it ("invalid_argument"). */
export function codeName(code: Code): string {
  return (Code[code] ?? 'unknown').replace(/[A-Z]/g, (c, at: number) => `${at ? '_' : ''}${c.toLowerCase()}`);
}

function eventMs(event: JobEvent): number {
  return event.time ? Number(event.time.seconds) * 1000 + event.time.nanos / 1e6 : 0;
}

function rawText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data as ArrayBuffer).toString('utf8');
}

function requestId(value: unknown): string | number | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  if (typeof value === 'string' && value.length <= 100) return value;
  return undefined;
}

function jobIdOf(message: Record<string, unknown>): string {
  const jobId = message.jobId;
  if (typeof jobId !== 'string' || jobId.length < 1 || jobId.length > 100) {
    throw new ConnectError(`jobId: ${JSON.stringify(jobId) ?? 'undefined'} is not a string of 1 to 100 characters`,
      Code.InvalidArgument);
  }
  return jobId;
}

function afterSequenceOf(message: Record<string, unknown>): number {
  const after = message.afterSequence ?? 0;
  const problem = integerProblem(after, 0, 0xffffffff);
  if (problem) throw new ConnectError(`afterSequence: ${problem}`, Code.InvalidArgument);
  return after as number;
}

function specOf(value: unknown): JobSpec {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConnectError('spec: expected the JSON of a recite.v1.JobSpec object', Code.InvalidArgument);
  }
  const unknown = unknownIn(value, JobSpecSchema, 'spec');
  if (unknown) throw new ConnectError(unknown, Code.InvalidArgument);
  try {
    return fromJson(JobSpecSchema, value as JsonValue);
  } catch (error: unknown) {
    throw new ConnectError(`spec: ${error instanceof Error ? error.message : String(error)}`, Code.InvalidArgument);
  }
}
