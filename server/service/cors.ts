// Cross-origin calls from browser apps: a page on another origin may call the RPCs only when the server lists its
// origin (`recite serve --cors-origin`); none is listed by default. The headers Connect, gRPC-Web and gRPC need come
// from @connectrpc/connect's `cors` constants, the preflight and origin matching from the `cors` middleware.
import type http from 'node:http';
import type http2 from 'node:http2';
import { cors as connectCors } from '@connectrpc/connect';
import createCorsMiddleware from 'cors';

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;

/** Handle a request's CORS part, then call `next` unless it was a preflight (answered here). */
export type CorsHandler = (req: Request, res: Response, next: () => void) => void;

// The RPC paths ("/recite.v1.ReciteService/Invert"); the dashboard, /ws and /metrics stay same-origin only.
const rpcPath = /^\/[A-Za-z0-9_.]+\/[A-Za-z0-9_]+$/;

const preflightMaxAgeSeconds = 7200; // how long a browser may reuse a preflight's answer

/**
 * Check `--cors-origin` values: each must be an origin as browsers send it (scheme, host and port if not the
 * scheme's default; no path, no trailing slash), since the allow-list is compared with the Origin header verbatim.
 */
export function parseCorsOrigin(value: string): string {
  let origin: string | undefined;
  try {
    origin = new URL(value).origin;
  } catch {
    origin = undefined;
  }
  if (origin === undefined || origin === 'null' || origin !== value) {
    throw new Error(`--cors-origin ${value}: expected an origin such as https://app.example.com or ` +
      `http://localhost:5173 (scheme, host and port only${origin && origin !== 'null' ? `; here ${origin}` : ''})`);
  }
  return origin;
}

/** Create the CORS handler for the RPC routes and the allowed origins. */
export function createCorsHandler(origins: readonly string[]): CorsHandler {
  const middleware = createCorsMiddleware({
    origin: [...origins],
    methods: [...connectCors.allowedMethods],
    // Authorization carries the bearer token; the rest is what the Connect and gRPC-Web protocols send.
    allowedHeaders: [...connectCors.allowedHeaders, 'Authorization'],
    exposedHeaders: [...connectCors.exposedHeaders],
    maxAge: preflightMaxAgeSeconds,
  });
  return (req, res, next) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (origins.length === 0 || req.headers.origin === undefined || !rpcPath.test(path)) {
      next();
      return;
    }
    middleware(req, res, () => next());
  };
}
