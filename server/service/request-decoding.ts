// What Connect leaves too loose or reports as its own fault: a request whose binary body is not a valid message
// is the client's error (InvalidArgument naming the message type), not "internal"; JSON with unknown fields or
// unknown enum names is refused (Connect ignores them by default, silently running defaults the client never asked
// for). A store error that escapes a handler is Unavailable (transient). And every refused or failed request is
// logged, so an "internal error" always has a log line.
import { fromBinary } from '@bufbuild/protobuf';
import type { DescMessage } from '@bufbuild/protobuf';
import type { ConnectRouter, Interceptor } from '@connectrpc/connect';
import { Code, ConnectError, createContextKey, createContextValues } from '@connectrpc/connect';
import type { UniversalHandler, UniversalServerRequest } from '@connectrpc/connect/protocol';
import type { Logger } from 'pino';
import { isStoreFault } from '../store/job-repository.js';
import { SettingsError } from '../engine/settings.js';
import { JobError } from './job-errors.js';
import { toConnectError } from './validation.js';

/** JSON options for the Connect adapter: refuse what the schema does not know. */
export const strictJsonOptions = Object.freeze({ ignoreUnknownFields: false });

const malformedKey = createContextKey<string | undefined>(undefined, { description: 'why the request body does not decode' });

/**
 * Check each binary request body against its method's input type before Connect parses it: a body that does not
 * decode reaches the handler chain as an empty message marked malformed, and `rejectMalformed` answers
 * InvalidArgument, in the protocol of the request. Call after registering the services in `routes`. Only methods
 * with one request message are checked: reading a client stream whole first would hold its answers back until the
 * client closes it (a reflection stream waits for each answer before it sends more).
 */
export function checkBinaryBodies(router: ConnectRouter, readMaxBytes: number): void {
  router.handlers.forEach((handler, i) => {
    if (handler.method.methodKind === 'client_streaming' || handler.method.methodKind === 'bidi_streaming') return;
    const wrapped: UniversalHandler = Object.assign(
      (req: UniversalServerRequest) => checked(handler, req, readMaxBytes),
      handler,
    );
    (router.handlers as UniversalHandler[])[i] = wrapped;
  });
}

/** Return the interceptor that refuses the requests `checkBinaryBodies` marked malformed. */
export function rejectMalformed(): Interceptor {
  return (next) => async (req) => {
    const reason = req.contextValues.get(malformedKey);
    if (reason !== undefined) throw new ConnectError(reason, Code.InvalidArgument);
    return next(req);
  };
}

/** Return the interceptor that logs every request that ends in an error: internal ones with their stack. */
export function logErrors(log: Logger): Interceptor {
  return (next) => async (req) => {
    const report = (error: unknown) => {
      const e = ConnectError.from(error);
      const fields = { procedure: req.url.replace(/^.*?\/\/[^/]*/, ''), code: Code[e.code], message: e.rawMessage };
      if (e.code === Code.Internal || e.code === Code.Unknown) log.error({ ...fields, err: error }, 'request failed');
      else if (e.code !== Code.Canceled) log.info(fields, 'request refused');
    };
    let res;
    try {
      res = await next(req);
    } catch (error: unknown) {
      const mapped = toApiError(error);
      report(mapped);
      throw mapped;
    }
    if (!res.stream) return res;
    // A streaming response fails while it is read (WatchJob on a damaged store, say): log that too.
    const messages = res.message;
    return { ...res, message: (async function* () {
      try {
        yield* messages;
      } catch (error: unknown) {
        const mapped = toApiError(error);
        report(mapped);
        throw mapped;
      }
    })() };
  };
}

// The one place a handler's error becomes the API's: the service's refusals (JobError) and the engine's (settings)
// by toConnectError; a store error that escapes a handler (the data set store on a full disk, say) is transient:
// Unavailable, so that clients retry, rather than Internal. Anything else stays internal.
function toApiError(error: unknown): unknown {
  if (error instanceof JobError || error instanceof SettingsError) return toConnectError(error);
  if (error instanceof ConnectError || !isStoreFault(error)) return error;
  const code = (error as { code: string }).code;
  return new ConnectError(`the store failed (${code}: ${error instanceof Error ? error.message : String(error)}); retry later`,
    Code.Unavailable);
}

const binaryTypes = /^application\/(proto|connect\+proto|grpc|grpc\+proto|grpc-web|grpc-web\+proto)(;|$)/;

// Hand the handler chain an empty message marked with the reason: `rejectMalformed` answers it, in the protocol
// of the request.
function refused(handler: UniversalHandler, req: UniversalServerRequest, reason: string, enveloped: boolean) {
  const contextValues = req.contextValues ?? createContextValues();
  contextValues.set(malformedKey, reason);
  const header = new Headers(req.header);
  header.delete('content-length');
  const body = enveloped ? new Uint8Array(5) : new Uint8Array(0);
  if (!enveloped && !binaryTypes.test(header.get('content-type') ?? '')) header.set('content-type', 'application/proto');
  if (enveloped && /\+json/.test(header.get('content-type') ?? '')) {
    header.set('content-type', (header.get('content-type') ?? '').replace('+json', '+proto'));
  }
  return handler({ ...req, header, contextValues, body: replay([body]) });
}

async function checked(handler: UniversalHandler, req: UniversalServerRequest, readMaxBytes: number) {
  const contentType = req.header.get('content-type') ?? '';
  const encoding = req.header.get('content-encoding');
  if (/^application\/json(;|$)/.test(contentType) && !(encoding && encoding !== 'identity')) {
    return checkedJson(handler, req, readMaxBytes);
  }
  if (!binaryTypes.test(contentType) || !isAsyncIterable(req.body) || (encoding && encoding !== 'identity')) {
    return handler(req);
  }
  const read = await readWhole(req.body, readMaxBytes);
  if ('tooLarge' in read) return handler({ ...req, body: read.tooLarge });
  const { body } = read;
  const enveloped = !contentType.startsWith('application/proto');
  let message = body;
  if (enveloped) {
    const compressed = body.byteLength >= 5 && (body[0]! & 0b1) === 1;
    const size = body.byteLength >= 5 ? new DataView(body.buffer, body.byteOffset).getUint32(1) : -1;
    if (compressed || size !== body.byteLength - 5) return handler({ ...req, body: replay([body]) }); // Connect says
    message = body.subarray(5);
  }
  try {
    fromBinary(handler.method.input, message);
  } catch (error: unknown) {
    const why = error instanceof Error ? error.message : String(error);
    return refused(handler, req, `request: ${message.byteLength} bytes are not a valid ` +
      `${handler.method.input.typeName} in the protobuf binary encoding (${why})`, enveloped);
  }
  return handler({ ...req, body: replay([body]) });
}

// A unary Connect JSON request: find an unknown field or enum name and say where it is (protobuf's own error names
// the enum type, not the field). Anything else is left to Connect.
async function checkedJson(handler: UniversalHandler, req: UniversalServerRequest, readMaxBytes: number) {
  if (!isAsyncIterable(req.body)) return handler(req);
  const read = await readWhole(req.body, readMaxBytes);
  if ('tooLarge' in read) return handler({ ...req, body: read.tooLarge });
  const { body } = read;
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(body));
  } catch {
    return handler({ ...req, body: replay([body]) });
  }
  const problem = unknownIn(json, handler.method.input, '');
  if (problem) return refused(handler, req, problem, false);
  return handler({ ...req, body: replay([body]) });
}

/** Describe the first field name or enum name in `json` that `desc` does not know, with its path; or undefined. */
export function unknownIn(json: unknown, desc: DescMessage, path: string): string | undefined {
  if (typeof json !== 'object' || json === null || Array.isArray(json) || desc.typeName.startsWith('google.protobuf.')) {
    return undefined;
  }
  for (const [key, value] of Object.entries(json)) {
    const field = desc.fields.find((f) => f.jsonName === key || f.name === key);
    const at = path ? `${path}.${field?.name ?? key}` : field?.name ?? key;
    if (!field) return `${at}: unknown field of ${desc.typeName}; known: ${desc.fields.map((f) => f.name).join(', ')}`;
    const items = field.fieldKind === 'list' && Array.isArray(value) ? value : [value];
    for (const [i, item] of items.entries()) {
      const itemPath = field.fieldKind === 'list' ? `${at}[${i}]` : at;
      const enumDesc = field.fieldKind === 'enum' ? field.enum : field.fieldKind === 'list' && field.listKind === 'enum' ? field.enum : undefined;
      if (enumDesc && typeof item === 'string' && !enumDesc.values.some((v) => v.name === item)) {
        return `${itemPath}: ${JSON.stringify(item)} is not a value of ${enumDesc.typeName}; values: ` +
          enumDesc.values.map((v) => v.name).join(', ');
      }
      const messageDesc = field.fieldKind === 'message' ? field.message
        : field.fieldKind === 'list' && field.listKind === 'message' ? field.message : undefined;
      if (messageDesc) {
        const inner = unknownIn(item, messageDesc, itemPath);
        if (inner) return inner;
      }
    }
  }
  return undefined;
}

// Read a body whole; past readMaxBytes stop, and give back what was read and the rest, for Connect to refuse as
// it reads.
async function readWhole(stream: AsyncIterable<Uint8Array>, readMaxBytes: number):
  Promise<{ body: Uint8Array } | { tooLarge: AsyncIterable<Uint8Array> }> {
  const iterator = stream[Symbol.asyncIterator]();
  const chunks: Uint8Array[] = [];
  let length = 0;
  for (;;) {
    const next = await iterator.next();
    if (next.done) break;
    chunks.push(next.value);
    length += next.value.byteLength;
    if (length > readMaxBytes) return { tooLarge: replay(chunks, iterator) };
  }
  return { body: concat(chunks, length) };
}

async function* replay(chunks: Uint8Array[], rest?: AsyncIterator<Uint8Array>): AsyncIterable<Uint8Array> {
  yield* chunks;
  if (!rest) return;
  for (;;) {
    const next = await rest.next();
    if (next.done) return;
    yield next.value;
  }
}

function concat(chunks: Uint8Array[], length: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

function isAsyncIterable(value: unknown): value is AsyncIterable<Uint8Array> {
  return typeof value === 'object' && value !== null && Symbol.asyncIterator in value;
}
