// How a CLI command reaches a server: `--server URL` or $RECITE_SERVER (token from --token or RECITE_TOKEN), or, for
// the commands that can do without one (invert, score, dataset run and reachable, study, capacity) when neither is
// given or --local is, a server started inside this process on a free local port, so the first command in the README
// needs no setup. Either way the command talks to it through the SDK.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import type { Transport } from '@connectrpc/connect';
import { createReciteClient, createReciteNodeTransport, createReciteTransport } from '../sdk/node.js';
import type { ReciteClient } from '../sdk/node.js';
import { defaultModelName } from '../server/model/builtin-models.js';
import { parseDeviceRequest } from '../server/model/devices.js';
import type { ProviderFallback } from '../server/model/devices.js';
import { TokenTable } from '../server/service/auth.js';
import { readFlagFile } from './options.js';

export interface ConnectionOptions {
  server?: string;
  token?: string;
  /** PEM file of the CA that signed an https server's certificate. */
  caFile?: string;
}

export interface Connection {
  client: ReciteClient;
  /** The server's base URL and the bearer token the client sends (for clients of the server's other services). */
  baseUrl: string;
  token: string;
  /** The transport the client uses, with the token (for clients of the server's other services). */
  transport: Transport;
  /** The model name to ask for ('' = the server's default). */
  model: string;
  /** In this process only: the execution provider the model runs on, and those `--device auto` skipped (why). */
  provider?: { name: string; skipped: ProviderFallback[] };
  /** The server runs in this process (and ends with it). */
  inProcess: boolean;
  close(): Promise<void>;
}

/** Add --server, --token and --ca-file to a command; `serverRequired` false adds --local too. */
export function withServerOptions(command: Command, serverRequired = true): Command {
  command.option('--server <url>', serverRequired
    ? 'recite server, http(s)://HOST:PORT or HOST:PORT (default $RECITE_SERVER or http://127.0.0.1:7070)'
    : 'recite server, http(s)://HOST:PORT or HOST:PORT (default $RECITE_SERVER; without either, one runs in this process)');
  if (!serverRequired) command.option('--local', 'run on a server started in this process even when $RECITE_SERVER is set');
  return command
    .option('--token <token>', 'bearer token (default $RECITE_TOKEN)')
    .option('--ca-file <file>', 'PEM certificate of the CA to trust for an https --server (default $RECITE_CA_FILE)');
}

/** The server a command that can run in-process should use: --server, else $RECITE_SERVER; undefined with --local. */
export function remoteServerOf(options: ConnectionOptions & { local?: boolean }): string | undefined {
  if (options.local) {
    if (options.server !== undefined) throw new Error(`--local and --server ${options.server} exclude each other: give one`);
    return undefined;
  }
  return options.server ?? (process.env.RECITE_SERVER || undefined);
}

/**
 * Return the base URL for a server address as a user writes it: with http:// or https://, or HOST:PORT alone
 * (then http://). `origin` names where the address came from, for the error.
 */
export function serverBaseUrl(address: string, origin: string): string {
  const value = address.trim();
  const withScheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(value) ? value : `http://${value}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new Error(`${origin} ${address} is not a server address: expected HOST:PORT or http(s)://HOST:PORT`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`${origin} ${address} has the scheme ${url.protocol.slice(0, -1)}: expected http or https`);
  }
  return withScheme.replace(/\/+$/, '');
}

let lastServer: string | undefined;

/** The base URL of the server this process last connected to (for an error that does not name it). */
export function lastServerUrl(): string | undefined {
  return lastServer;
}

/** Connect to --server (or $RECITE_SERVER, or the default local port). */
export function connectToServer(options: ConnectionOptions): Connection {
  const url = options.server !== undefined ? serverBaseUrl(options.server, '--server')
    : process.env.RECITE_SERVER ? serverBaseUrl(process.env.RECITE_SERVER, 'RECITE_SERVER') : 'http://127.0.0.1:7070';
  lastServer = url;
  const token = options.token ?? process.env.RECITE_TOKEN;
  if (!token) throw new Error(`no token for ${url}: give --token TOKEN or set RECITE_TOKEN`);
  const caFile = options.caFile ?? process.env.RECITE_CA_FILE;
  let transport: Transport;
  if (url.startsWith('https://') || caFile) {
    const ca = caFile ? readFlagFile('--ca-file', caFile).toString('utf8') : undefined;
    // Node's HTTP client: it takes the CA that fetch cannot.
    transport = createReciteNodeTransport(url, { token, ...(ca !== undefined ? { ca } : {}) });
  } else {
    transport = createReciteTransport(url, { token });
  }
  return { client: createReciteClient(url, { transport }), baseUrl: url, token, transport, model: '', inProcess: false, close: async () => {} };
}

/** Flags of the commands that run on a server when given one and on a server in this process otherwise. */
export interface LocalOrRemoteOptions extends ConnectionOptions {
  local?: boolean;
  /** A model the server serves, or, in this process, a built-in name, a folder or NAME=DIR. */
  model?: string;
  device: string;
  /** In this process: the graphs' precision (fp32 | fp16). */
  precision?: string;
}

/**
 * Connect to --server or $RECITE_SERVER, or (with neither, or with --local) start a server in this process; `dbPath`
 * as for startInProcessServer. The connection's `model` is the one to ask for.
 */
export async function openConnection(options: LocalOrRemoteOptions, dbPath?: string): Promise<Connection> {
  const server = remoteServerOf(options);
  if (server !== undefined) {
    // A server's precision is its operator's choice (serve --precision): silently ignoring the flag would mislead.
    if (options.precision !== undefined) throw new Error('--precision applies to a server in this process; --server chooses its own');
    return { ...connectToServer(options), model: options.model ?? '' };
  }
  return startInProcessServer(options.model ?? defaultModelName, options.device, dbPath, options.precision);
}

/**
 * Start a server in this process for one model, on a free local port with a one-time token. Its jobs live in a
 * temporary database, removed on close, unless `dbPath` names one to keep (so a rerun finds them).
 */
export async function startInProcessServer(model: string, device: string, dbPath?: string, precision?: string):
  Promise<Connection> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-'));
  const token = randomBytes(24).toString('hex');
  // The server (onnxruntime, SQLite, the dashboard) loads only when a command runs one here: a command with --server
  // starts as a client alone.
  const [{ createReciteServer }, { applyPrecisions, parseModelSource }, { default: pino }] = await Promise.all([
    import('../server/app.js'), import('./commands/serve.js'), import('pino')]);
  const [source] = applyPrecisions([parseModelSource(model)], precision === undefined ? [] : [precision]);
  const server = await createReciteServer({
    models: [source!],
    device: parseDeviceRequest(device),
    db: dbPath ?? path.join(dir, 'recite.db'),
    tokens: new TokenTable(new Map([[token, 'cli']])),
    dashboard: false, // nobody can reach a one-time token's page
    logger: pino({ level: process.env.RECITE_LOG_LEVEL ?? 'warn' }, pino.destination(2)),
  });
  await server.listen(0);
  await server.models.ready();
  const entry = server.models.list()[0]!;
  if (entry.state === 'FAILED') {
    await server.close();
    throw new Error(`model ${entry.name} (${entry.dir}) could not be loaded: ${entry.error}`);
  }
  const transport = createReciteTransport(server.url, { token });
  return {
    client: createReciteClient(server.url, { transport }),
    baseUrl: server.url,
    token,
    transport,
    model: source!.name,
    ...(entry.state === 'READY' && entry.runner ? { provider: { name: entry.runner.model.provider, skipped: entry.runner.model.fallbacks } } : {}),
    inProcess: true,
    async close() {
      await server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
