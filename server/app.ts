// The composition root: builds the job store, the model registry, the job hub, the API services, the data sets and
// the dashboard, and serves them on one port. Nothing in server/ below it imports it (test/architecture/layers.test.ts).
//
// The recite server: one port for gRPC (HTTP/2), Connect and gRPC-Web (HTTP/1.1 or HTTP/2), Prometheus metrics
// and plain HTTP pages. A cleartext port cannot negotiate HTTP/2 by ALPN, so each connection's first bytes decide:
// the HTTP/2 preface goes to the HTTP/2 server, anything else to the HTTP/1.1 server (browsers, WebSockets). With
// TLS, ALPN decides ("h2" or "http/1.1") on the same port.
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { Duplex } from 'node:stream';
import type { AddressInfo } from 'node:net';
import type { ConnectRouter } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import pino from 'pino';
import type { Logger } from 'pino';
import type { InversionLimits } from './engine/settings.js';
import { inversionLimits } from './engine/settings.js';
import type { DeviceRequest } from './model/execution-provider.js';
import { sessionThreads } from './model/devices.js';
import type { Dashboard, DashboardOptions } from './dashboard/dashboard.js';
import { createDashboard } from './dashboard/dashboard.js';
import type { JobRepository } from './store/job-repository.js';
import { isPostgresUrl, openJobStore } from './store/open-job-store.js';
import { openDatasetStore } from './datasets/open-dataset-store.js';
import { createDatasets } from './datasets/index.js';
import { DatasetService } from '../sdk/gen/recite/v1/dataset_pb.js';
import { Health } from '../sdk/gen/health/v1/health_pb.js';
import { ReciteService } from '../sdk/gen/recite/v1/recite_pb.js';
import type { TokenTable } from './service/auth.js';
import { createAuthInterceptor } from './service/auth.js';
import type { ConnectionLimits } from './service/connection-guard.js';
import { ConnectionGuard, connectionLimitsDefaults, refuseEarly } from './service/connection-guard.js';
import { createCorsHandler } from './service/cors.js';
import { HealthServiceImpl } from './service/health-service.js';
import { JobHub, jobHubDefaults } from './service/job-hub.js';
import { inversionEngineDefaults } from './engine/inversion-engine.js';
import { createServiceMetrics } from './service/metrics.js';
import type { ModelSource } from './service/model-registry.js';
import { ModelRegistry } from './service/model-registry.js';
import { ReciteServiceImpl } from './service/recite-service.js';
import type { Retention } from './service/retention.js';
import { parseRetentionDays, startRetention } from './service/retention.js';
import { serveReflection } from './service/reflection-service.js';
import { checkBinaryBodies, logErrors, rejectMalformed, strictJsonOptions } from './service/request-decoding.js';

export interface ReciteServerOptions {
  models: ModelSource[];
  device: DeviceRequest;
  /** Jobs per graph run. */
  maxBatch: number;
  /** Unfinished jobs per client beyond which its submissions get ResourceExhausted (unless the tokens file sets its own). */
  maxQueue: number;
  /** Bytes a client's unfinished jobs may hold (jobBytes) before its submissions get ResourceExhausted (same). */
  maxQueuedBytes: number;
  /** Bytes all started restarts of one model may hold; restarts beyond it wait to start. */
  memoryBudgetBytes: number;
  /**
   * Where jobs, events, checkpoints and data sets are kept: a SQLite file (one server), or a PostgreSQL URL
   * (`postgres://…`: several servers may share it).
   */
  db: string;
  /**
   * What this server does: 'all' accepts, serves and runs jobs; 'worker' runs jobs and serves the API but no
   * dashboard or data set runner; 'api' accepts and serves jobs but runs none (they wait for a worker's claim).
   */
  role: ServerRole;
  /** This server's name among those sharing the database (lease owner, metrics); unique per process by default. */
  serverId: string;
  /** How long a job's lease holds without renewal, in ms: a dead server's jobs move to another after this. */
  leaseMs: number;
  /** Jobs this server runs at once at most, on a shared database (with a SQLite file it runs all of them). */
  maxHeldJobs: number;
  tokens: TokenTable;
  /** Iterations between checkpoints of a running job. */
  checkpointEvery: number;
  /** Progress events a stream's reader may have waiting before older ones are coalesced. */
  subscriberBuffer: number;
  limits: InversionLimits;
  /** Largest request message accepted, in bytes (also checked from Content-Length before the body is read). */
  readMaxBytes: number;
  /** Deadlines of each connection and the HTTP/2 stream limit. */
  connectionLimits: ConnectionLimits;
  /** Serve TLS (HTTP/2 by ALPN and HTTP/1.1 on the one port): PEM certificate chain and private key. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  logger: Logger;
  /** Serve the dashboard (the page at `/`, its WebSocket stream at `/ws`): true, false, or its options. */
  dashboard: boolean | Partial<DashboardOptions>;
  /** Origins whose pages may call the RPCs from a browser (CORS); none when unset. */
  corsOrigins?: readonly string[];
  /**
   * Days a finished job keeps its whole event history; after that its history is pruned to its result (GetJob,
   * ListJobs and WatchJob still answer for it). 0 keeps every history forever.
   */
  retentionDays: number;
  /** Extra HTTP routes: return true when the request was handled. */
  httpRoutes?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
  /** WebSocket upgrades on the HTTP/1.1 server for paths the dashboard does not take. */
  onUpgrade?: (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => void;
  /** Replaces model loading (tests). */
  loadModel?: ConstructorParameters<typeof ModelRegistry>[1]['load'];
}

/** What a server does; see ReciteServerOptions.role. */
export type ServerRole = 'all' | 'api' | 'worker';
export const serverRoles: readonly ServerRole[] = ['all', 'api', 'worker'];

export const reciteServerDefaults = Object.freeze({
  role: 'all' as ServerRole,
  leaseMs: jobHubDefaults.leaseMs,
  maxHeldJobs: 128, // jobs: two full batches of the default maxBatch, so a worker's next batch is ready

  device: 'auto' as DeviceRequest,
  maxBatch: 64,
  maxQueue: 1000,
  maxQueuedBytes: jobHubDefaults.maxQueuedBytes,
  memoryBudgetBytes: inversionEngineDefaults.memoryBudgetBytes,
  checkpointEvery: 50,
  subscriberBuffer: jobHubDefaults.subscriberBuffer,
  limits: inversionLimits,
  dashboard: true as boolean | Partial<DashboardOptions>,
  readMaxBytes: 16 * 1024 * 1024, // 16 MiB: an embedding of 1024 x 1600 floats is 6.5 MB in the binary encoding
  connectionLimits: connectionLimitsDefaults,
  retentionDays: 0, // days; 0: keep every history
});

export interface ReciteServer {
  readonly hub: JobHub;
  readonly models: ModelRegistry;
  readonly store: JobRepository;
  /** The pruning of old finished jobs' histories (runs nothing when retentionDays is 0). */
  readonly retention: Retention;
  readonly log: Logger;
  /** The dashboard, unless turned off. */
  readonly dashboard: Dashboard | undefined;
  /** Start listening; resolves with the address (port 0 picks a free one). */
  listen(port: number, host?: string): Promise<AddressInfo>;
  /** The base URL once listening. */
  readonly url: string;
  /** Drain: stop accepting, checkpoint running jobs, end streams, close the store. */
  close(): Promise<void>;
}

/** Build a server: open the store, start loading the models, resume unfinished jobs once they are ready. */
export async function createReciteServer(partial: Partial<ReciteServerOptions> & Pick<ReciteServerOptions, 'models' | 'db' | 'tokens'>): Promise<ReciteServer> {
  const options: ReciteServerOptions = {
    ...reciteServerDefaults,
    serverId: `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
    logger: pino({ name: 'recite' }, pino.destination(2)),
    ...partial,
  };
  const log = options.logger;
  const retentionDays = parseRetentionDays(options.retentionDays, 'retentionDays');
  if (options.role === 'api' && !isPostgresUrl(options.db)) {
    // Its jobs would wait forever: a SQLite file belongs to one server, so no worker can claim them.
    throw new Error(`role api runs no jobs, and the SQLite file ${options.db} is not shared with servers that do: give ` +
      'a PostgreSQL URL (postgres://…) that workers share, or role all');
  }
  const store = await openJobStore(options.db);
  const datasetStore = await openDatasetStore(options.db).catch(async (error: unknown) => {
    await store.close();
    throw error;
  });
  const models = new ModelRegistry(options.models, {
    device: options.device,
    engine: { maxBatch: options.maxBatch, memoryBudgetBytes: options.memoryBudgetBytes },
    runsModels: options.role !== 'api',
    ...(options.loadModel ? { load: options.loadModel } : {}),
  });
  // The hub is made after the metrics (they count its finished jobs) and read by them when scraped.
  let hubRef: JobHub | undefined;
  const metrics = createServiceMetrics(models, {
    store: () => hubRef!, clients: { useByClient: () => hubRef!.useByClient() },
    fleet: () => ({ serverId: hubRef!.serverId, role: options.role, liveJobs: hubRef!.liveJobs, claims: hubRef!.claims,
      leasesLost: hubRef!.lostJobs }),
  });
  const hub = new JobHub(store, models, {
    maxQueue: options.maxQueue,
    maxQueuedBytes: options.maxQueuedBytes,
    limitsOf: (clientId) => options.tokens.policyOf(clientId),
    checkpointEvery: options.checkpointEvery,
    subscriberBuffer: options.subscriberBuffer,
    limits: options.limits,
    memoryBudgetBytes: options.memoryBudgetBytes,
    onJobFinished: (model, status) => metrics.jobsFinished.inc({ model, status }),
    serverId: options.serverId,
    runsJobs: options.role !== 'api',
    exclusiveStore: !isPostgresUrl(options.db),
    leaseMs: options.leaseMs,
    maxHeldJobs: isPostgresUrl(options.db) ? options.maxHeldJobs : Number.POSITIVE_INFINITY,
    // A shared database takes every server's writes: one transaction per 100 ms per server rather than one per
    // engine round keeps it responsive (the live-tail lag it adds is at most that long).
    writeEveryMs: isPostgresUrl(options.db) ? 100 : 0,
    // A database server can go away while this one is idle: readiness says so within 2 s. (A SQLite file's faults
    // show at the next write.)
    probeEveryMs: isPostgresUrl(options.db) ? 2000 : 0,
  }, log);
  hubRef = hub;
  const retention = startRetention(store, log, { retentionDays });
  // A worker serves the API for the jobs it runs, but leaves the pages and the data sets to the front servers.
  const dashboard = options.dashboard === false || options.role === 'worker' ? undefined
    : createDashboard({ hub, tokens: options.tokens, log }, options.dashboard === true ? {} : options.dashboard);
  const health = new HealthServiceImpl(models, () => hub.storeFault === undefined);
  const datasets = createDatasets({ store: datasetStore, hub, jobs: store, models, log });
  const routes = (router: ConnectRouter) => {
    router
      .service(ReciteService, new ReciteServiceImpl(hub, models))
      .service(DatasetService, datasets.service)
      .service(Health, health);
    health.serve(serveReflection(router)); // gRPC server reflection for the services above; health answers for all
    checkBinaryBodies(router, options.readMaxBytes);
  };
  const handler = connectNodeAdapter({
    routes,
    interceptors: [logErrors(log), rejectMalformed(), createAuthInterceptor(options.tokens)],
    readMaxBytes: options.readMaxBytes,
    jsonOptions: strictJsonOptions,
    fallback(req, res) {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method === 'GET' && path === '/metrics') {
        void metrics.registry.metrics().then((text) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(text);
        });
        return;
      }
      if (dashboard?.httpRoutes(req as http.IncomingMessage, res as http.ServerResponse)) return;
      if (options.httpRoutes?.(req as http.IncomingMessage, res as http.ServerResponse)) return;
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end(`no route for ${req.method} ${path}\n`);
    },
  });
  // Refused before Connect reads a byte of the body: no token, an unknown one, or a declared body over the limit.
  // CORS comes first: a preflight carries no token, and a browser reads a refusal only with the CORS headers on it.
  const cors = createCorsHandler(options.corsOrigins ?? []);
  const guardedHandler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    cors(req, res, () => {
      if (refuseEarly(req, res, options.tokens, options.readMaxBytes)) return;
      handler(req, res);
    });
  };
  const guard = new ConnectionGuard(options.connectionLimits, log);
  const h1 = http.createServer(guardedHandler);
  const h2 = http2.createServer({ settings: { maxConcurrentStreams: options.connectionLimits.maxStreamsPerConnection } },
    guardedHandler);
  guard.watchHttp1(h1);
  guard.watchHttp2(h2);
  h1.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    if (dashboard?.onUpgrade(req, socket, head)) return;
    if (options.onUpgrade) options.onUpgrade(req, socket, head);
    else socket.destroy();
  });
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket) => {
    // The HTTP/1.1 server turns Nagle off on its sockets; the HTTP/2 one sees only the Duplex in front of the socket,
    // so without this every small gRPC response waits for the client's delayed ACK (about 40 ms).
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  };
  let tcp: net.Server;
  if (options.tls) {
    tcp = tls.createServer({ cert: options.tls.cert, key: options.tls.key, ALPNProtocols: ['h2', 'http/1.1'],
      // the handshake gets the deadline of a request head; the guard takes over from the secure connection on
      handshakeTimeout: options.connectionLimits.headersTimeoutMs });
    tcp.on('connection', track);
    tcp.on('secureConnection', (socket: tls.TLSSocket) => {
      guard.attach(socket);
      if (socket.alpnProtocol === 'h2') guard.handToHttp2(socket, socket, h2);
      else h1.emit('connection', socket);
    });
    // A failed handshake (a plain-HTTP client, a port scanner) concerns that client only.
    tcp.on('tlsClientError', (error: Error, socket: tls.TLSSocket) => {
      log.debug({ err: error }, 'TLS handshake failed');
      socket.destroy();
    });
  } else {
    tcp = net.createServer((socket) => {
      track(socket);
      guard.attach(socket);
      routeConnection(socket, h1, h2, guard);
    });
  }
  // Out of file descriptors (EMFILE on accept) and the like: the listening socket goes on, so log, never throw.
  let lastAcceptErrorLog = 0;
  tcp.on('error', (error: NodeJS.ErrnoException) => {
    if (!tcp.listening) return;
    if (Date.now() - lastAcceptErrorLog < 10_000) return;
    lastAcceptErrorLog = Date.now();
    log.error({ err: error }, 'accepting a connection failed');
  });

  const ready = models.ready().then(async () => {
    for (const m of models.list()) {
      // skippedProviders: what `--device auto` passed over, and why (a GPU server that ended up on the CPU)
      if (m.state === 'READY' && m.runner) log.info({ model: m.name, provider: m.runner.model.provider, precision: m.precision, threads: sessionThreads(), skippedProviders: m.runner.model.fallbacks, dir: m.dir }, 'model ready');
      else if (m.state === 'READY') log.info({ model: m.name, dir: m.dir }, 'model described (config and tokenizer; no weights: this server runs no jobs)');
      else if (m.state === 'FAILED') log.error({ model: m.name, error: m.error }, 'model failed to load');
    }
    const resumed = await hub.start();
    if (resumed > 0) log.info({ resumed }, 'unfinished jobs resumed');
  }).catch((error: unknown) => {
    // Jobs that did not resume stay unfinished in the store; the server serves the rest.
    log.error({ err: error }, 'resuming unfinished jobs failed');
  });

  let url = '';
  let closed = false;
  return {
    hub, models, store, retention, log, dashboard,
    get url() { return url; },
    async listen(port, host = '127.0.0.1') {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(port, host, () => resolve());
      });
      const address = tcp.address() as AddressInfo;
      url = `${options.tls ? 'https' : 'http'}://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
      log.info({ url, server: options.serverId, role: options.role, db: store.location }, 'listening');
      return address;
    },
    async close() {
      if (closed) return;
      closed = true;
      health.drain();
      tcp.close();
      await retention.stop();
      await ready.catch(() => {});
      dashboard?.close();
      await datasets.close();
      await hub.shutdown();
      // streams end once their subscribers are closed; give them a moment, then cut what is left
      await new Promise((resolve) => setTimeout(resolve, 100));
      for (const socket of sockets) socket.destroy();
      guard.close();
      h2.close();
      h1.close();
      await models.close();
      await store.close();
      log.info('closed');
    },
  };
}

const http2Preface = Buffer.from('PRI * HTTP/2.0');

// Peek at a connection's first bytes and hand it to the HTTP/2 or the HTTP/1.1 server.
function routeConnection(socket: net.Socket, h1: http.Server, h2: http2.Http2Server, guard: ConnectionGuard): void {
  let seen = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    seen = Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, http2Preface.length);
    const isH2 = seen.subarray(0, n).equals(http2Preface.subarray(0, n));
    if (isH2 && seen.length < http2Preface.length) return; // not enough to tell yet
    socket.off('data', onData);
    if (isH2) {
      guard.handToHttp2(socket, replaying(socket, seen), h2);
    } else {
      socket.pause();
      socket.unshift(seen);
      h1.emit('connection', socket);
      socket.resume();
    }
  };
  socket.on('data', onData);
}

// The HTTP/2 server reads a net.Socket through its native handle, past bytes unshifted back into the JavaScript
// stream; a plain Duplex in front of the socket makes it read through JavaScript, starting with the bytes we peeked.
function replaying(socket: net.Socket, head: Buffer): Duplex {
  const duplex = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      socket.write(chunk, callback);
    },
    final(callback) {
      socket.end(callback);
    },
    destroy(error, callback) {
      socket.destroy(error ?? undefined);
      callback(error);
    },
  });
  duplex.push(head);
  socket.on('data', (chunk: Buffer) => {
    if (!duplex.push(chunk)) socket.pause();
  });
  socket.on('end', () => duplex.push(null));
  socket.on('error', (error) => duplex.destroy(error));
  socket.on('close', () => duplex.destroy());
  return duplex;
}
