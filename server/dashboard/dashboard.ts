// The live dashboard: the page at `/` (with uPlot's browser build) and the WebSocket stream at `/ws` that feeds
// it. Browsers cannot set Authorization on a WebSocket, so the bearer token travels as the subprotocol
// `bearer.<token>` (or a `?token=` parameter); an unknown token is refused with HTTP 401 before the upgrade.
import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';
import type { TokenTable } from '../service/auth.js';
import { bearerToken } from '../service/auth.js';
import type { JobChanges, JobQueries, JobStreams, JobSubmission, SettingsLimits } from '../service/hub-ports.js';
import { JobListFeed } from './job-list-feed.js';
import type { StaticRoots } from './static-routes.js';
import { settingsSchemaJson } from './settings-schema.js';
import { createStaticRoutes, defaultStaticRoots } from './static-routes.js';
import { DashboardSession } from './ws-session.js';
import type { SessionStats } from './ws-session.js';

/** Configure the dashboard's stream. */
export interface DashboardOptions {
  /** Bytes a socket may have waiting to be sent before its live progress is held back and merged. */
  maxBufferedBytes: number;
  /** Jobs one socket may follow at once. */
  maxSubscriptions: number;
  /** Jobs the list holds when a socket subscribes to it (newest first). */
  jobsPageSize: number;
  /** Progress events of a running job between two of its job-list summaries. */
  jobsEvery: number;
  /** Milliseconds over which job-list changes are gathered into one round of summaries. */
  jobsDelayMs: number;
  /** Largest message a client may send, in bytes (a submit with a warm-start embedding is the big one). */
  maxPayload: number;
  /** Milliseconds between pings; a socket that missed the last pong is closed. */
  pingIntervalMs: number;
}

export const dashboardDefaults: Readonly<DashboardOptions> = Object.freeze({
  maxBufferedBytes: 256 * 1024, // 256 KiB: about 400 progress events of a 2-token target
  maxSubscriptions: 64,
  jobsPageSize: 100,
  jobsEvery: 10,
  jobsDelayMs: 100,
  maxPayload: 16 * 1024 * 1024, // 16 MiB, as the RPCs' readMaxBytes
  pingIntervalMs: 30_000,
});

/** Merge options over the defaults. */
export function makeDashboardOptions(partial: Partial<DashboardOptions> = {}): DashboardOptions {
  return { ...dashboardDefaults, ...partial };
}

/** What the dashboard needs from the server. */
export interface DashboardDeps {
  hub: JobSubmission & JobQueries & JobStreams & JobChanges & SettingsLimits;
  tokens: TokenTable;
  log: Logger;
  /** Where the page's files are (tests may point elsewhere). */
  roots?: StaticRoots;
}

export interface Dashboard {
  readonly options: DashboardOptions;
  /** Answer the page's HTTP requests; false for a path that is not the dashboard's. */
  httpRoutes(req: http.IncomingMessage, res: http.ServerResponse): boolean;
  /** Take a WebSocket upgrade for `/ws`; false for another path. */
  onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): boolean;
  /** Every open socket's counters (tests check the memory bound with it). */
  stats(): { sockets: SessionStats[] };
  /** Close every socket (1001, going away) and stop following the hub. */
  close(): void;
}

/** Build the dashboard over a job hub: its page, its WebSocket stream and the live job lists. */
export function createDashboard(deps: DashboardDeps, partial: Partial<DashboardOptions> = {}): Dashboard {
  const options = makeDashboardOptions(partial);
  const { hub, tokens, log } = deps;
  const staticRoutes = createStaticRoutes(deps.roots ?? defaultStaticRoots());
  const schema = JSON.stringify(settingsSchemaJson(hub.options.limits));
  const routes = (req: http.IncomingMessage, res: http.ServerResponse): boolean => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/settings-schema.json') return staticRoutes(req, res);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(schema), 'cache-control': 'no-cache' });
    res.end(schema);
    return true;
  };
  const feed = new JobListFeed(hub, { every: options.jobsEvery, delayMs: options.jobsDelayMs }, log);
  const sessions = new Set<DashboardSession>();
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: options.maxPayload,
    // A browser that offered subprotocols fails the handshake unless the server picks one.
    handleProtocols: (protocols) => [...protocols].find((p) => p.startsWith('bearer.')) ?? false,
  });
  const heartbeat = setInterval(() => {
    for (const session of sessions) {
      if (!session.alive) session.closeSocket();
      else session.ping();
    }
  }, options.pingIntervalMs);
  heartbeat.unref();

  const accept = (ws: WebSocket, clientId: string) => {
    const session = new DashboardSession(ws, clientId, hub, feed, options, log);
    sessions.add(session);
    ws.on('close', () => sessions.delete(session));
    log.debug({ clientId }, 'dashboard socket open');
  };

  return {
    options,
    httpRoutes: routes,
    onUpgrade(req, socket, head) {
      const url = new URL(req.url ?? '/', 'http://dashboard');
      if (url.pathname !== '/ws') return false;
      socket.on('error', () => socket.destroy());
      const token = upgradeToken(req, url);
      const clientId = token ? tokens.clientOf(token) : undefined;
      if (!clientId) {
        refuse(socket, 401, token ? 'the bearer token is not valid on this server'
          : 'missing bearer token: offer the subprotocol "bearer.<token>" or add ?token=<token>');
        return true;
      }
      wss.handleUpgrade(req, socket, head, (ws) => accept(ws, clientId));
      return true;
    },
    stats: () => ({ sockets: [...sessions].map((s) => s.stats()) }),
    close() {
      clearInterval(heartbeat);
      feed.close();
      for (const session of sessions) session.closeSocket(1001, 'server shutting down');
      sessions.clear();
      wss.close();
    },
  };
}

/** Return the token of a WebSocket upgrade: subprotocol `bearer.<token>`, `?token=`, or an Authorization header. */
export function upgradeToken(req: http.IncomingMessage, url: URL): string | undefined {
  for (const protocol of (req.headers['sec-websocket-protocol'] ?? '').split(',')) {
    const p = protocol.trim();
    if (p.startsWith('bearer.') && p.length > 'bearer.'.length) return p.slice('bearer.'.length);
  }
  return url.searchParams.get('token') || bearerToken(req.headers.authorization);
}

// Answer an upgrade with a plain HTTP error and close the connection.
function refuse(socket: Duplex, status: number, message: string): void {
  const body = `${message}\n`;
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n` +
    'connection: close\r\ncontent-type: text/plain; charset=utf-8\r\n' +
    `content-length: ${Buffer.byteLength(body)}\r\nwww-authenticate: Bearer\r\n\r\n${body}`);
}
