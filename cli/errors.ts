// What the CLI prints when a command fails: one sentence for a person, without the class names of the errors
// underneath (ConnectError, InvalidArgumentError, TypeError: fetch failed), and with the server's address when
// the server could not be reached at all.
import { Code, ConnectError } from '@connectrpc/connect';

// Node's network error codes that mean "no server answered there", and how to say so.
const unreachable: Record<string, string> = {
  ECONNREFUSED: 'the connection was refused',
  ECONNRESET: 'the connection was reset',
  ENOTFOUND: 'the host name is unknown',
  EAI_AGAIN: 'the host name could not be looked up',
  EHOSTUNREACH: 'the host is unreachable',
  ENETUNREACH: 'the network is unreachable',
  ETIMEDOUT: 'the connection timed out',
  UND_ERR_CONNECT_TIMEOUT: 'the connection timed out',
  UND_ERR_SOCKET: 'the connection was closed',
  EPROTO: 'the TLS handshake failed',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'it presents a self-signed certificate (give --ca-file)',
  SELF_SIGNED_CERT_IN_CHAIN: 'it presents a self-signed certificate in its chain (give --ca-file)',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'its certificate could not be verified (give --ca-file)',
  BAD_PORT: 'fetch refuses that port (one browsers block); serve on another',
};

/** Return the network error code somewhere in `error`'s cause chain, if any. */
function networkCode(error: unknown): string | undefined {
  const seen = new Set<unknown>();
  for (let e: unknown = error; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code in unreachable) return code;
    if (e.message === 'bad port') return 'BAD_PORT'; // fetch's own refusal, before any connection
    // AggregateError (happy eyeballs: one error per address tried)
    if (e instanceof AggregateError) {
      const inner = e.errors.map(networkCode).find((c) => c !== undefined);
      if (inner) return inner;
    }
  }
  return undefined;
}

/** Return one human sentence for a failed command; `server` is the server it talked to, if any. */
export function describeError(error: unknown, server?: string): string {
  const code = networkCode(error);
  if (code) return `cannot reach the recite server at ${server ?? 'the given address'}: ${unreachable[code]}`;
  if (error instanceof ConnectError) {
    if (error.code === Code.Unauthenticated) return `the server refused the token: ${error.rawMessage}`;
    if (error.code === Code.Canceled) return 'the request was cancelled';
    return error.rawMessage;
  }
  if (error instanceof Error) return error.message;
  return String(error);
}
