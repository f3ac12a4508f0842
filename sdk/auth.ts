// Bearer-token auth: every RPC that touches a job needs `authorization: Bearer <token>`, and a client sees only
// the jobs its token created.
import type { Interceptor, Transport } from '@connectrpc/connect';

const authorizationHeader = 'authorization';

/** Create an interceptor that adds `authorization: Bearer <token>` unless the call sets its own. */
export function bearerAuth(token: string): Interceptor {
  const value = `Bearer ${token}`;
  return (next) => async (request) => {
    if (!request.header.has(authorizationHeader)) request.header.set(authorizationHeader, value);
    return next(request);
  };
}

/**
 * Wrap a transport built elsewhere (a router transport in tests, a Node gRPC transport) so that every call carries
 * the bearer token; headers a call sets itself win. Interceptors belong to a transport's construction, hence this
 * decorator for transports the SDK did not build.
 */
export function withBearerToken(transport: Transport, token: string): Transport {
  const value = `Bearer ${token}`;
  const headerFor = (header: HeadersInit | undefined): Headers => {
    const merged = new Headers(header);
    if (!merged.has(authorizationHeader)) merged.set(authorizationHeader, value);
    return merged;
  };
  return {
    unary: (method, signal, timeoutMs, header, input, contextValues) =>
      transport.unary(method, signal, timeoutMs, headerFor(header), input, contextValues),
    stream: (method, signal, timeoutMs, header, input, contextValues) =>
      transport.stream(method, signal, timeoutMs, headerFor(header), input, contextValues),
  };
}
