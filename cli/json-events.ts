// Events as JSON lines: the proto JSON of each JobEvent (the same encoding the WebSocket stream uses), with the
// job id beside it, so every line parses with any JSON reader and maps onto the .proto field by field.
import { toJson } from '@bufbuild/protobuf';
import { JobEventSchema } from '../sdk/index.js';
import type { ReciteEvent } from '../sdk/index.js';

/** Return `{ jobId, type, event }` with `event` in the proto JSON encoding. */
export function eventToJson(event: ReciteEvent): unknown {
  return { jobId: event.jobId, type: event.type, event: toJson(JobEventSchema, event.raw) };
}
