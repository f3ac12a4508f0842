// Why the job service refuses a call, in its own words: the hub and its parts throw a JobError with a reason, and
// the API's edge (validation.ts's toConnectError, applied by the request interceptors, the dashboard's socket and
// the data set runner) turns each reason into one Connect code. The service's core knows no RPC protocol.

/** A reason the job service refuses a call. */
export type JobErrorReason =
  /** No such job for this caller (another client's job is reported the same way). */
  | 'not_found'
  /** A request field that cannot be right, whatever the state. */
  | 'invalid'
  /** A quota or a limit of the caller's is used up: retry once its jobs finish. */
  | 'exhausted'
  /** The caller may not ask this. */
  | 'forbidden'
  /** Not in a state that allows it (deleting a running job). */
  | 'precondition'
  /** Not now: the server is stopping, or its store cannot be written; retry later or elsewhere. */
  | 'unavailable';

/** Signal a call the job service refuses; the message names the field, the value and the limit. */
export class JobError extends Error {
  override name = 'JobError';
  constructor(readonly reason: JobErrorReason, message: string) {
    super(message);
  }
}
