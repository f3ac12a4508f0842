// Job events as a discriminated union: JobEvent's oneof flattened, each message's own fields kept as the proto
// names them, so `if (e.type === 'progress') e.nllSum` reads like the API reference.
import type { JobEvent, Progress, Queued, RestartResult, Result, Started } from './gen/recite/v1/recite_pb.js';

/** Keep a message's fields, without protobuf-es bookkeeping. */
type Fields<M> = Omit<M, '$typeName' | '$unknown'>;

/**
 * Describe what every event carries besides its message: the job id, JobEvent's own fields (`sequence`, the
 * position in the job's history to pass to watchJob when resuming, and `time`) and the JobEvent as received.
 */
export type EventHeader = { jobId: string; raw: JobEvent } & Omit<Fields<JobEvent>, 'kind'>;

export type QueuedEvent = { type: 'queued' } & EventHeader & Fields<Queued>;
export type StartedEvent = { type: 'started' } & EventHeader & Fields<Started>;
export type ProgressEvent = { type: 'progress' } & EventHeader & Fields<Progress>;
export type RestartResultEvent = { type: 'restart_result' } & EventHeader & Fields<RestartResult>;
export type ResultEvent = { type: 'result' } & EventHeader & Fields<Result>;

/** Describe one event of a job, discriminated by `type`; the `result` event is the last. */
export type ReciteEvent = QueuedEvent | StartedEvent | ProgressEvent | RestartResultEvent | ResultEvent;

/** Name the event types, in the order a job emits them. */
export const eventTypes: readonly ReciteEvent['type'][] = ['queued', 'started', 'progress', 'restart_result', 'result'];

/**
 * Flatten a JobEvent's oneof into a ReciteEvent. Returns undefined for an event without a kind this SDK knows
 * (sent by a newer server), which callers skip.
 */
export function flattenJobEvent(jobId: string, event: JobEvent): ReciteEvent | undefined {
  const { kind, ...eventFields } = fieldsOf(event);
  const header: EventHeader = { jobId, ...eventFields, raw: event };
  switch (kind.case) {
    case 'queued':
      return { type: 'queued', ...header, ...fieldsOf(kind.value) };
    case 'started':
      return { type: 'started', ...header, ...fieldsOf(kind.value) };
    case 'progress':
      return { type: 'progress', ...header, ...fieldsOf(kind.value) };
    case 'restartResult':
      return { type: 'restart_result', ...header, ...fieldsOf(kind.value) };
    case 'result':
      return { type: 'result', ...header, ...fieldsOf(kind.value) };
    default:
      return undefined;
  }
}

function fieldsOf<M extends { $typeName: string; $unknown?: unknown }>(message: M): Fields<M> {
  const { $typeName: _typeName, $unknown: _unknown, ...fields } = message;
  return fields;
}
