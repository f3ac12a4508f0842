// JSON output of the CLI. Events as JSON lines: the proto JSON of each JobEvent (the same encoding the WebSocket
// stream uses), with the job id beside it, so every line parses with any JSON reader and maps onto the .proto field
// by field. Every other `--json` names enum values the same way, as the .proto spells them (STATUS_HIT,
// JOB_STATE_RUNNING), so one script reads `jobs --json` and `watch --json` alike; tables print them without the
// prefix.
import { toJson } from '@bufbuild/protobuf';
import type { DescEnum } from '@bufbuild/protobuf';
import { JobEventSchema } from '../sdk/index.js';
import type { ReciteEvent } from '../sdk/index.js';

/** Return `{ jobId, type, event }` with `event` in the proto JSON encoding. */
export function eventToJson(event: ReciteEvent): unknown {
  return { jobId: event.jobId, type: event.type, event: toJson(JobEventSchema, event.raw) };
}

/** Return the .proto name of an enum value (e.g. STATUS_HIT), as the proto JSON encoding writes it. */
export function protoEnumName(schema: DescEnum, value: number): string {
  return schema.value[value]?.name ?? String(value);
}

/** Write one JSON object as one line of stdout. */
export function printJsonLine(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}
