// Events as plain JSON: typed arrays become arrays, so each line of `--json` output parses anywhere.
import type { InversionEvent } from '../server/engine/events.js';

/** Return `event` with every typed array replaced by a plain array. */
export function eventToJson(event: InversionEvent): unknown {
  return JSON.parse(JSON.stringify(event, (_key, value: unknown) =>
    ArrayBuffer.isView(value) && !(value instanceof DataView) ? Array.from(value as Float32Array) : value));
}
