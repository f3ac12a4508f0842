// Request validation at the edge: the proto's protovalidate rules, reported as InvalidArgument with the field's
// path, the value sent and the rule it broke ("spec.settings.lr: -1 must be greater than or equal to 0 …").
import type { DescMessage, MessageShape } from '@bufbuild/protobuf';
import { pathToString } from '@bufbuild/protobuf/reflect';
import type { Path } from '@bufbuild/protobuf/reflect';
import { createValidator } from '@bufbuild/protovalidate';
import { Code, ConnectError } from '@connectrpc/connect';
import { JobError } from './job-errors.js';
import type { JobErrorReason } from './job-errors.js';
import { JobSettingsSchema } from '../../sdk/gen/recite/v1/recite_pb.js';
import { SettingsError } from '../engine/settings.js';

const validator = createValidator();

/** Throw InvalidArgument naming every broken rule of `message`, or return it when valid. */
export function validateRequest<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): MessageShape<Desc> {
  const result = validator.validate(schema, message);
  if (result.kind === 'valid') return message;
  if (result.kind === 'error') throw new ConnectError(`request could not be validated: ${result.error.message}`, Code.Internal);
  const details = result.violations.map((v) => {
    const path = pathToString(v.field);
    return `${path}: ${describeValue(valueAt(message, v.field))} ${v.message}`;
  });
  throw new ConnectError(details.join('; '), Code.InvalidArgument);
}

// The engine names settings in camelCase ("parameterization.dims"); clients know the proto's snake_case paths
// ("spec.settings.parameterization.projected.dims"). The path is found in the proto's descriptor: each name is a
// field of the message reached so far, or a field of one of its oneof members' messages. Only the engine names that
// differ from the proto's are listed.
const engineToProtoNames: Readonly<Record<string, string>> = { decode: 'decoder', stopOnHit: 'continueAfterHit' };

function protoFieldPath(message: DescMessage, names: readonly string[]): string[] | undefined {
  const [head, ...rest] = names;
  if (head === undefined) return [];
  const field = message.fields.find((f) => f.localName === (engineToProtoNames[head] ?? head));
  if (field) {
    if (rest.length === 0) return [field.name];
    const tail = field.fieldKind === 'message' ? protoFieldPath(field.message, rest) : undefined;
    return tail && [field.name, ...tail];
  }
  for (const member of message.fields) {
    if (member.fieldKind !== 'message' || !member.oneof) continue;
    const tail = protoFieldPath(member.message, names);
    if (tail) return [member.name, ...tail];
  }
  return undefined;
}

/** Return the request path of an engine settings field (or of the job's target). */
export function settingsFieldPath(field: string): string {
  const indexed = /^target_ids\[(\d+)\]$/.exec(field);
  if (indexed) return `spec.target_ids.ids[${indexed[1]}]`;
  if (field === 'target') return 'spec.target';
  const path = protoFieldPath(JobSettingsSchema, field.split('.'));
  return `spec.settings.${path ? path.join('.') : field}`;
}

function valueAt(message: unknown, path: Path): unknown {
  let value: unknown = message;
  for (const step of path) {
    if (value === undefined || value === null) return undefined;
    if ('kind' in step && step.kind === 'list_sub') {
      value = (value as unknown[])[step.index];
    } else if ('kind' in step && step.kind === 'map_sub') {
      value = (value as Record<string, unknown>)[String(step.key)];
    } else if ('kind' in step && step.kind === 'oneof') {
      value = (value as Record<string, { value?: unknown }>)[step.localName];
    } else if (step.kind === 'field' && step.oneof) {
      // a oneof member sits inside { case, value } under the oneof's name
      const selected = (value as Record<string, { case?: string; value?: unknown }>)[step.oneof.localName];
      value = selected?.case === step.localName ? selected.value : undefined;
    } else if ('localName' in step) {
      value = (value as Record<string, unknown>)[step.localName];
    }
  }
  return value;
}

function describeValue(value: unknown): string {
  if (typeof value === 'string') return value.length > 40 ? `a string of ${value.length} characters` : JSON.stringify(value);
  if (Array.isArray(value)) return `${value.length} items:`;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (value === undefined || value === null) return '(unset)';
  return '(message)';
}

/** The Connect code of each reason the job service refuses a call for (job-errors.ts). */
const jobErrorCodes: Readonly<Record<JobErrorReason, Code>> = {
  not_found: Code.NotFound,
  invalid: Code.InvalidArgument,
  exhausted: Code.ResourceExhausted,
  forbidden: Code.PermissionDenied,
  precondition: Code.FailedPrecondition,
  unavailable: Code.Unavailable,
};

/**
 * Map the service's and the engine's errors onto API errors, once, at the edge: a JobError by its reason, settings
 * out of range as the caller's to fix (naming the proto field), anything else as internal.
 */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof JobError) return new ConnectError(error.message, jobErrorCodes[error.reason]);
  if (error instanceof SettingsError) {
    return new ConnectError(`${settingsFieldPath(error.field)}: ${error.message.slice(error.field.length + 2)}`,
      Code.InvalidArgument);
  }
  return new ConnectError(error instanceof Error ? error.message : String(error), Code.Internal);
}
