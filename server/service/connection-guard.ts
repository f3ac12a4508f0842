// Connection hygiene in front of Connect: what an unauthenticated or hostile client may hold on a shared server.
// Every socket (HTTP/1.1, HTTP/2, TLS; also those handed to the HTTP/1.1 server by hand, which Node's own header
// and request timeouts never see) has a deadline: a complete request within `headersTimeoutMs` of connecting, and
// the next one within `idleTimeoutMs` of the last response; a request's body must end within `bodyTimeoutMs` of
// its head. The deadlines are absolute, so a client trickling one byte at a time does not extend them, and the
// connection deadlines are off while a request is in flight (a WatchJob may be quiet for long). Requests are refused before their body is read when the token is missing or unknown, or when their
// Content-Length exceeds the limit, in the wire format of their protocol (gRPC, gRPC-Web or Connect).
import type http from 'node:http';
import type http2 from 'node:http2';
import { constants as http2Constants } from 'node:http2';
import type { Duplex } from 'node:stream';
import { Code } from '@connectrpc/connect';
import type { Logger } from 'pino';
import { bearerToken, publicServices } from './auth.js';
import type { TokenTable } from './auth.js';

/** Limits on each connection. */
export interface ConnectionLimits {
  /** From connecting (TLS handshake included) to a complete first request head, in ms. */
  headersTimeoutMs: number;
  /** From a connection's last response to its next request (none in flight), in ms. */
  idleTimeoutMs: number;
  /** From a request's head to the end of its body, in ms (a body trickled in holds a socket and a buffer). */
  bodyTimeoutMs: number;
  /** HTTP/2 streams open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS). */
  maxStreamsPerConnection: number;
}

export const connectionLimitsDefaults: Readonly<ConnectionLimits> = Object.freeze({
  headersTimeoutMs: 10_000, // ms
  idleTimeoutMs: 120_000, // ms
  bodyTimeoutMs: 60_000, // ms: 16 MiB at 300 KB/s
  maxStreamsPerConnection: 100,
});

const goawayGraceMs = 1000; // ms between an idle HTTP/2 session's GOAWAY and the end of its socket
const logEveryMs = 10_000; // closed connections are logged as one count per period, not one line each

/** Track each connection's deadline; `attach` before handing a socket to the HTTP/1.1 or HTTP/2 server. */
export class ConnectionGuard {
  private readonly guards = new WeakMap<object, SocketGuard>();
  private closedSinceLog = { headers: 0, idle: 0, body: 0 };
  private logTimer: NodeJS.Timeout | undefined;
  // The socket being handed to the HTTP/2 server: its session is created, synchronously, during that hand-over.
  private handingOver: SocketGuard | undefined;

  constructor(readonly limits: ConnectionLimits, private readonly log: Logger) {}

  /** Start a socket's deadline (call on connect). */
  attach(socket: Duplex): void {
    const guard = new SocketGuard(socket, (reason) => this.closed(reason));
    this.guards.set(socket, guard);
    guard.arm(this.limits.headersTimeoutMs, 'headers');
  }

  /** Hand a socket (or the Duplex in front of it) to the HTTP/2 server, keeping its guard. */
  handToHttp2(socket: Duplex, via: Duplex, h2: http2.Http2Server | http2.Http2SecureServer): void {
    this.handingOver = this.guards.get(socket);
    try {
      h2.emit('connection', via);
    } finally {
      this.handingOver = undefined;
    }
  }

  /** Watch the HTTP/1.1 server's requests and upgrades. */
  watchHttp1(h1: http.Server): void {
    h1.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      const guard = this.guards.get(req.socket);
      if (!guard) return;
      guard.begin();
      // `complete`: the whole message has arrived, read or not (nobody reads the empty body of a GET)
      const clear = this.bodyDeadline(req, () => !req.complete, () => req.socket.destroy());
      res.once('close', () => {
        clear();
        guard.end(this.limits.idleTimeoutMs);
      });
    });
    // A WebSocket has its own liveness (pings); the upgraded socket is no longer this guard's.
    h1.on('upgrade', (req: http.IncomingMessage) => this.guards.get(req.socket)?.release());
  }

  /** Watch the HTTP/2 server's sessions and streams. */
  watchHttp2(h2: http2.Http2Server | http2.Http2SecureServer): void {
    h2.on('session', (session: http2.ServerHttp2Session) => {
      const guard = this.handingOver;
      if (!guard) return;
      guard.session = session;
      session.on('stream', (stream: http2.ServerHttp2Stream) => {
        guard.begin();
        stream.once('close', () => guard.end(this.limits.idleTimeoutMs));
        this.bodyDeadline(stream, () => !stream.readableEnded, () => stream.close(http2Constants.NGHTTP2_CANCEL));
      });
    });
  }

  // A request whose body has not ended `bodyTimeoutMs` after its head is cut off (the connection for HTTP/1.1, the
  // stream for HTTP/2).
  private bodyDeadline(body: NodeJS.ReadableStream, unfinished: () => boolean, cutOff: () => void): () => void {
    const timer = setTimeout(() => {
      if (!unfinished()) return;
      this.closed('body');
      cutOff();
    }, this.limits.bodyTimeoutMs);
    timer.unref();
    const clear = () => clearTimeout(timer);
    body.once('end', clear);
    body.once('close', clear);
    return clear;
  }

  /** Stop the periodic log. */
  close(): void {
    clearTimeout(this.logTimer);
  }

  private closed(reason: 'headers' | 'idle' | 'body'): void {
    this.closedSinceLog[reason]++;
    if (this.logTimer) return;
    this.logTimer = setTimeout(() => {
      this.logTimer = undefined;
      const { headers, idle, body } = this.closedSinceLog;
      this.closedSinceLog = { headers: 0, idle: 0, body: 0 };
      this.log.warn({ noRequest: headers, idle, slowBody: body, headersTimeoutMs: this.limits.headersTimeoutMs,
        idleTimeoutMs: this.limits.idleTimeoutMs, bodyTimeoutMs: this.limits.bodyTimeoutMs },
      'closed connections that sent no request in time');
    }, logEveryMs);
    this.logTimer.unref();
  }
}

class SocketGuard {
  private timer: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private released = false;
  /** The HTTP/2 session on this socket: closed with GOAWAY first, so its client knows to reconnect. */
  session: http2.ServerHttp2Session | undefined;

  constructor(private readonly socket: Duplex, private readonly onTimeout: (reason: 'headers' | 'idle') => void) {
    socket.once('close', () => this.release());
  }

  arm(ms: number, reason: 'headers' | 'idle'): void {
    clearTimeout(this.timer);
    if (this.released) return;
    this.timer = setTimeout(() => {
      this.onTimeout(reason);
      if (this.session && !this.session.closed) {
        this.session.close();
        setTimeout(() => this.socket.destroy(), goawayGraceMs).unref();
      } else {
        this.socket.destroy();
      }
    }, ms);
    this.timer.unref();
  }

  begin(): void {
    this.inFlight++;
    clearTimeout(this.timer);
  }

  end(idleMs: number): void {
    this.inFlight--;
    if (this.inFlight === 0) this.arm(idleMs, 'idle');
  }

  release(): void {
    this.released = true;
    clearTimeout(this.timer);
  }
}

/**
 * Refuse a request before its body is read: an RPC without a valid token (a public service's excepted), or a body
 * whose Content-Length exceeds `maxBytes`. Returns true when it answered.
 */
export function refuseEarly(req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse, tokens: TokenTable, maxBytes: number): boolean {
  const path = (req.url ?? '/').split('?')[0]!;
  const isRpc = /^\/[A-Za-z0-9_.]+\/[A-Za-z0-9_]+$/.test(path) && req.method === 'POST';
  if (!isRpc) return false;
  if (!publicServices.has(path.split('/')[1]!)) {
    const token = bearerToken(req.headers.authorization);
    if (!token) {
      answerError(req, res, Code.Unauthenticated, 'missing bearer token: send "authorization: Bearer <token>"');
      return true;
    }
    if (!tokens.clientOf(token)) {
      answerError(req, res, Code.Unauthenticated, 'the bearer token is not valid on this server');
      return true;
    }
  }
  const length = Number(req.headers['content-length'] ?? 0);
  if (length > maxBytes) {
    answerError(req, res, Code.ResourceExhausted, `request body: content-length ${length} bytes exceeds the limit of ` +
      `${maxBytes} bytes`);
    return true;
  }
  return false;
}

const resetAfterMs = 1000; // ms between an early answer on HTTP/2 and the reset of a stream still sending

const connectCodeNames: Partial<Record<Code, { name: string; http: number }>> = {
  [Code.Unauthenticated]: { name: 'unauthenticated', http: 401 },
  [Code.ResourceExhausted]: { name: 'resource_exhausted', http: 429 },
};

// Answer with an error in the request's protocol, without reading its body: gRPC and gRPC-Web as a trailers-only
// response (HTTP 200, grpc-status in the headers), a Connect stream as HTTP 200 with one end-of-stream message, a
// Connect unary call as an HTTP status with its JSON error body. HTTP/1.1 closes the connection (the unread body is
// not drained); HTTP/2 resets a stream whose client still sends a moment after the answer (its flow-control
// window bounds what arrives meanwhile), late enough that the client has read the answer first.
function answerError(req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse, code: Code, message: string): void {
  const contentType = String(req.headers['content-type'] ?? '');
  const h1 = !('stream' in req);
  // HTTP/2: discard (never buffer) what arrives, so that a small body's end is seen and the stream closes cleanly
  // instead of with a reset that some clients (grpc-js) read as a missing status.
  if (!h1) req.resume();
  const headers: Record<string, string> = h1 ? { connection: 'close' } : {};
  if (contentType.startsWith('application/grpc')) {
    Object.assign(headers, { 'content-type': contentType.split(';')[0]!, 'grpc-status': String(code),
      'grpc-message': encodeURIComponent(message) });
    if (h1) {
      res.writeHead(200, headers);
      res.end();
    } else {
      // One HEADERS frame with END_STREAM: the compatibility API would send the headers and end with an empty DATA
      // frame, a response without trailers to a gRPC client.
      (req as http2.Http2ServerRequest).stream.respond({ ':status': 200, ...headers }, { endStream: true });
    }
  } else if (contentType.startsWith('application/connect+')) {
    const connect = connectCodeNames[code]!;
    const json = Buffer.from(JSON.stringify({ error: { code: connect.name, message } }));
    const envelope = Buffer.alloc(5 + json.length);
    envelope[0] = 0b10; // end of stream
    envelope.writeUInt32BE(json.length, 1);
    json.copy(envelope, 5);
    Object.assign(headers, { 'content-type': contentType.split(';')[0]! });
    res.writeHead(200, headers);
    res.end(envelope);
  } else {
    const connect = connectCodeNames[code]!;
    Object.assign(headers, { 'content-type': 'application/json' });
    res.writeHead(connect.http, headers);
    res.end(JSON.stringify({ code: connect.name, message }));
  }
  if (!h1) {
    const { stream } = req as http2.Http2ServerRequest;
    setTimeout(() => {
      if (!stream.closed) stream.close(http2Constants.NGHTTP2_NO_ERROR);
    }, resetAfterMs).unref();
  }
}
