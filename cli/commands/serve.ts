// `recite serve`: the shared server. Tokens from --tokens-file and RECITE_TOKENS; jobs in a SQLite file.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createSecureContext } from 'node:tls';
import { InvalidArgumentError } from 'commander';
import type { Command } from 'commander';
import { defaultModelName, isBuiltinModel, resolveModelDir } from '../../server/model/builtin-models.js';
import { describeProvider, deviceRequests, parseDeviceRequest } from '../../server/model/devices.js';
import { graphPrecisions, parseGraphPrecision } from '../../server/model/precision.js';
import { formatBytes, parseBytes } from '../../server/engine/run-cost.js';
import { TokenTable } from '../../server/service/auth.js';
import type { ModelSource } from '../../server/service/model-registry.js';
import { createReciteServer, reciteServerDefaults, serverRoles } from '../../server/app.js';
import type { ServerRole } from '../../server/app.js';
import { connectionLimitsDefaults } from '../../server/service/connection-guard.js';
import { parseCorsOrigin } from '../../server/service/cors.js';
import { parseRetentionDays } from '../../server/service/retention.js';
import { positiveInteger, readFlagFile } from '../options.js';

interface ServeOptions {
  port: string;
  host: string;
  model: string[];
  precision: string[];
  device: string;
  maxBatch: string;
  maxQueue: string;
  maxQueued: string;
  memoryBudget: string;
  db: string;
  role: string;
  serverId?: string;
  lease: string;
  maxHeldJobs: string;
  tokensFile?: string;
  checkpointEvery: string;
  tlsCert?: string;
  tlsKey?: string;
  headersTimeout: string;
  idleTimeout: string;
  bodyTimeout: string;
  maxStreamsPerConnection: string;
  maxRequestBytes: string;
  corsOrigin: string[];
  retentionDays?: string;
}

/** Default database file: one per user, so a restart finds its jobs. */
export function defaultDbPath(): string {
  return process.env.RECITE_DB ?? path.join(os.homedir(), '.local', 'share', 'recite', 'recite.db');
}

/**
 * Parse NAME=DIR, a built-in name or a folder into a model source. A folder alone is served under its own name
 * (the last part of its path, characters a name may not hold replaced by "-"), so `--model ~/models/gpt2` is "gpt2".
 */
export function parseModelSource(value: string): ModelSource {
  const at = value.indexOf('=');
  if (at < 0) {
    const dir = resolveModelDir(value);
    const name = isBuiltinModel(value) ? value : path.basename(dir).replace(/[^A-Za-z0-9._-]/g, '-') || 'model';
    return { name, dir };
  }
  const name = value.slice(0, at);
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`--model ${value}: the name "${name}" may hold letters, digits, . _ - only`);
  return { name, dir: path.resolve(value.slice(at + 1)) };
}

/**
 * Set the models' graph precision from --precision values, in order: "fp16" sets every model, "NAME=fp16" the model
 * served as NAME (which must be one of them).
 */
export function applyPrecisions(models: readonly ModelSource[], values: readonly string[]): ModelSource[] {
  const result = models.map((source) => ({ ...source }));
  for (const value of values) {
    const at = value.indexOf('=');
    const precision = parseGraphPrecision(value.slice(at + 1), `--precision ${value}`);
    const name = at < 0 ? undefined : value.slice(0, at);
    const chosen = name === undefined ? result : result.filter((source) => source.name === name);
    if (chosen.length === 0) {
      throw new Error(`--precision ${value}: no model is served as "${name}"; models: ${result.map((s) => s.name).join(', ')}`);
    }
    for (const source of chosen) source.precision = precision;
  }
  return result;
}

export function registerServeCommand(program: Command): void {
  program.command('serve')
    .description('serve inversions over Connect, gRPC and gRPC-Web on one port (tokens from --tokens-file or RECITE_TOKENS); ' +
      'it runs until stopped and logs JSON lines (one object per event) on stderr, so it takes no --json')
    .option('--port <n>', 'port (0: any free port)', '7070')
    .option('--host <addr>', 'address to listen on', '127.0.0.1')
    .option('--model <name=dir>', `a model to serve, repeatable; the first is the default (default: ${defaultModelName})`,
      (value: string, previous: string[]) => [...previous, value], [] as string[])
    .option('--precision <[name=]precision>', `the graphs' precision, ${graphPrecisions.join(' | ')}, of the model ` +
      'served as NAME, or of every model without NAME=; repeatable, later values win (default: fp32; fp16 keeps ' +
      'layer-norm statistics, the attention softmax and the loss in fp32)',
    (value: string, previous: string[]) => [...previous, value], [] as string[])
    .option('--device <device>', 'cpu | webgpu | cuda | auto', 'auto')
    .option('--max-batch <n>', 'jobs per graph run', String(reciteServerDefaults.maxBatch))
    .option('--max-queue <n>', 'unfinished jobs per client before its submissions are refused (a client\'s own ' +
      'max-jobs= in the tokens file overrides it)', String(reciteServerDefaults.maxQueue))
    .option('--max-queued <size>', 'bytes a client\'s unfinished jobs may hold before its submissions are refused ' +
      '(its own max-queued= overrides it)', formatBytes(reciteServerDefaults.maxQueuedBytes).replace(' ', ''))
    .option('--memory-budget <size>', 'bytes the running restarts of one model may hold; restarts past it wait to ' +
      'start, and a job with one restart larger is refused (give a fleet\'s servers the same value)', formatBytes(reciteServerDefaults.memoryBudgetBytes).replace(' ', ''))
    .option('--db <file|url>', 'where jobs, events, checkpoints and data sets are kept: a SQLite file (one server), or ' +
      'a PostgreSQL URL postgres://USER:PASSWORD@HOST:PORT/DATABASE that several servers share (the schema is created ' +
      'or migrated at start)', defaultDbPath())
    .option('--role <role>', `what this server does: ${serverRoles.join(' | ')} (all: accepts, serves and runs jobs; ` +
      'worker: runs jobs and serves the API, no dashboard or data set runner; api: accepts and serves jobs, runs none and ' +
      'loads no model weights, only each model\'s config and tokenizer)',
    reciteServerDefaults.role)
    .option('--server-id <name>', 'this server\'s name among those sharing the database (default: host:pid:random)')
    .option('--lease <ms>', 'how long a running job\'s lease holds without renewal: a dead server\'s jobs move to ' +
      'another after this long', String(reciteServerDefaults.leaseMs))
    .option('--max-held-jobs <n>', 'jobs this server runs at once on a shared database; the rest wait for any server',
      String(reciteServerDefaults.maxHeldJobs))
    .option('--tokens-file <file>', 'bearer tokens, one "TOKEN CLIENT [admin] [max-jobs=N] [max-queued=SIZE]" per line')
    .option('--checkpoint-every <n>', 'progress reports of a running job between its checkpoints (a job reports every report_every iterations)', String(reciteServerDefaults.checkpointEvery))
    .option('--tls-cert <file>', 'serve TLS (HTTP/2 by ALPN and HTTP/1.1 on the one port) with this PEM certificate chain')
    .option('--tls-key <file>', 'the PEM private key of --tls-cert')
    .option('--headers-timeout <ms>', 'close a connection that sends no complete request within this long of connecting',
      String(connectionLimitsDefaults.headersTimeoutMs))
    .option('--idle-timeout <ms>', 'close a connection with no request in flight for this long',
      String(connectionLimitsDefaults.idleTimeoutMs))
    .option('--body-timeout <ms>', 'cut off a request whose body has not ended this long after its head',
      String(connectionLimitsDefaults.bodyTimeoutMs))
    .option('--max-streams-per-connection <n>', 'HTTP/2 streams open at once on one connection',
      String(connectionLimitsDefaults.maxStreamsPerConnection))
    .option('--max-request-bytes <n>', 'largest request body accepted', String(reciteServerDefaults.readMaxBytes))
    .option('--cors-origin <origin>', 'let pages from this origin (e.g. https://app.example.com) call the API from a ' +
      'browser, repeatable; none by default', (value: string, previous: string[]) => [...previous, value], [] as string[])
    .option('--retention-days <days>', 'days a finished job keeps its whole event history; then it is pruned to its ' +
      'result, which GetJob, ListJobs and WatchJob still give (checked at start and hourly; default: ' +
      'RECITE_RETENTION_DAYS, else 0: keep forever)')
    .action(async (options: ServeOptions) => {
      // Every flag is checked, and the port taken for a moment, before a model starts loading: a typo or a busy port
      // is reported at once, not after the seconds (or minutes, for a large checkpoint) a load takes.
      const tokens = TokenTable.load(options.tokensFile, process.env.RECITE_TOKENS);
      if (tokens.size === 0) throw new Error('no tokens: give --tokens-file FILE ("TOKEN CLIENT [OPTIONS]" lines) or RECITE_TOKENS=TOKEN=CLIENT');
      if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) {
        throw new Error('--tls-cert and --tls-key go together: give both, or neither for cleartext');
      }
      const tls = options.tlsCert && options.tlsKey
        ? { cert: readFlagFile('--tls-cert', options.tlsCert), key: readFlagFile('--tls-key', options.tlsKey) } : undefined;
      if (tls) checkTlsPair(options.tlsCert!, options.tlsKey!, tls);
      const models = applyPrecisions((options.model.length > 0 ? options.model : [defaultModelName]).map((value) => {
        const source = parseModelSource(value);
        if (!fs.existsSync(source.dir)) throw new Error(`--model ${value}: the folder ${source.dir} does not exist`);
        return source;
      }), options.precision);
      const port = positiveInteger('--port', options.port, 0, 65535);
      const settings = {
        models,
        device: parseDevice(options.device),
        maxBatch: positiveInteger('--max-batch', options.maxBatch),
        maxQueue: positiveInteger('--max-queue', options.maxQueue),
        maxQueuedBytes: parseBytes(options.maxQueued, '--max-queued'),
        memoryBudgetBytes: parseBytes(options.memoryBudget, '--memory-budget'),
        db: options.db,
        role: parseRole(options.role),
        ...(options.serverId !== undefined ? { serverId: options.serverId } : {}),
        leaseMs: positiveInteger('--lease', options.lease, 100),
        maxHeldJobs: positiveInteger('--max-held-jobs', options.maxHeldJobs, 1),
        tokens,
        checkpointEvery: positiveInteger('--checkpoint-every', options.checkpointEvery),
        readMaxBytes: positiveInteger('--max-request-bytes', options.maxRequestBytes),
        connectionLimits: {
          headersTimeoutMs: positiveInteger('--headers-timeout', options.headersTimeout),
          idleTimeoutMs: positiveInteger('--idle-timeout', options.idleTimeout),
          bodyTimeoutMs: positiveInteger('--body-timeout', options.bodyTimeout),
          maxStreamsPerConnection: positiveInteger('--max-streams-per-connection', options.maxStreamsPerConnection),
        },
        corsOrigins: options.corsOrigin.map(parseCorsOrigin),
        retentionDays: retentionDaysOf(options.retentionDays, process.env.RECITE_RETENTION_DAYS),
        ...(tls ? { tls } : {}),
      };
      await checkListen(port, options.host);
      const server = await createReciteServer(settings);
      await server.listen(port, options.host);
      process.stdout.write(`recite serve: listening on ${server.url} (database ${server.store.location})\n`);
      let stopping = false;
      const stop = (signal: string) => {
        stopping = true;
        server.log.info({ signal }, 'shutting down');
        void server.close().then(() => process.exit(0));
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
      // Reload the tokens (file and RECITE_TOKENS) and the clients' quotas and admin marks without a restart; a file
      // that does not parse keeps the old ones.
      process.on('SIGHUP', () => {
        try {
          const reloaded = TokenTable.read(options.tokensFile, process.env.RECITE_TOKENS);
          if (reloaded.tokens.size === 0) throw new Error('no tokens left: keeping the old ones');
          tokens.replace(reloaded.tokens, reloaded.policies);
          server.log.info({ tokens: reloaded.tokens.size, clients: new Set(reloaded.tokens.values()).size },
            'tokens reloaded');
        } catch (error: unknown) {
          server.log.error({ err: error }, 'tokens not reloaded');
        }
      });
      // Models load while the server already answers (Unavailable for a model still loading); a model that cannot
      // load ends the server, rather than leaving it up with a model no request can use.
      await server.models.ready();
      if (stopping) return;
      const failed = server.models.list().flatMap((m) => (m.state === 'FAILED' ? [m] : []));
      if (failed.length > 0) {
        await server.close();
        throw new Error(failed.map((m) => `--model ${m.name}=${m.dir}: the model failed to load (${m.error})`).join('; '));
      }
      for (const m of server.models.list()) {
        if (m.state !== 'READY') continue;
        process.stdout.write(m.runner
          ? `recite serve: model ${m.name} ready on ${describeProvider(m.runner.model.provider, m.runner.model.fallbacks)}\n`
          : `recite serve: model ${m.name} ready to accept jobs (config and tokenizer only: --role api runs none)\n`);
      }
    });
}

/** The retention in days: --retention-days, else RECITE_RETENTION_DAYS, else 0 (keep forever); each checked. */
export function retentionDaysOf(flag: string | undefined, env: string | undefined): number {
  if (flag !== undefined) return parseRetentionDays(flag, '--retention-days');
  if (env !== undefined && env !== '') return parseRetentionDays(env, 'RECITE_RETENTION_DAYS');
  return 0;
}

/** Parse --device, naming the flag in the error. */
function parseDevice(value: string) {
  try {
    return parseDeviceRequest(value);
  } catch {
    throw new Error(`--device ${value}: expected one of ${deviceRequests.join(', ')}`);
  }
}

/** Check that the certificate and key are PEM and belong together (the TLS server would refuse them later). */
function checkTlsPair(certFile: string, keyFile: string, pair: { cert: Buffer; key: Buffer }): void {
  try {
    createSecureContext(pair);
  } catch (error: unknown) {
    throw new Error(`--tls-cert ${certFile} --tls-key ${keyFile}: not a PEM certificate chain and its private key ` +
      `(${error instanceof Error ? error.message : String(error)})`);
  }
}

/** Listen on the port for a moment and let go: a busy port or a foreign address is refused before models load. */
async function checkListen(port: number, host: string): Promise<void> {
  const probe = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen(port, host, () => resolve());
    });
  } catch (error: unknown) {
    const code = (error as NodeJS.ErrnoException).code;
    const at = `${host}:${port}`;
    if (code === 'EADDRINUSE') throw new Error(`--port ${port}: ${at} is already in use`);
    if (code === 'EACCES') throw new Error(`--port ${port}: listening on ${at} is not permitted (ports below 1024 need privileges)`);
    if (code === 'EADDRNOTAVAIL') throw new Error(`--host ${host}: not an address of this machine`);
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') throw new Error(`--host ${host}: the name does not resolve to an address`);
    throw new Error(`--host ${host} --port ${port}: cannot listen (${error instanceof Error ? error.message : String(error)})`);
  } finally {
    await new Promise((resolve) => probe.close(resolve));
  }
}

function parseRole(value: string): ServerRole {
  if ((serverRoles as readonly string[]).includes(value)) return value as ServerRole;
  throw new InvalidArgumentError(`--role ${value}: expected one of ${serverRoles.join(', ')}`);
}
