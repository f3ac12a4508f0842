// The names clients write for the API's enum settings: a value's name without the enum's prefix, in lower case
// (OPTIMIZER_ADAM is 'adam', SCHEDULE_COSINE is 'cosine'). The server's engine calls its optimizers and schedules by
// the same names, so neither the SDK nor the server keeps a table of the proto's values.
import type { GenEnum } from '@bufbuild/protobuf/codegenv2';

/** The names of a generated TypeScript enum's values but UNSPECIFIED, in lower case: 'rmsprop' | 'adam' | …. */
export type EnumName<E extends object> = Lowercase<Exclude<Extract<keyof E, string>, 'UNSPECIFIED'>>;

/** Map the name of every value of `schema` but UNSPECIFIED (0) to its number. */
export function enumNames<E extends number>(schema: GenEnum<E>): Readonly<Record<string, E>> {
  return Object.freeze(Object.fromEntries(schema.values.filter((v) => v.number !== 0)
    .map((v) => [v.localName.toLowerCase(), v.number as E])));
}
