// `recite serve`: the shared server. Tokens from --tokens-file and RECITE_TOKENS; jobs in a SQLite file.
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { defaultModelName, resolveModelDir } from '../../server/model/builtin-models.js';
import { parseDeviceRequest } from '../../server/model/execution-provider.js';
import { formatBytes, parseBytes } from '../../server/engine/run-cost.js';
import { TokenTable } from '../../server/service/auth.js';
import type { ModelSource } from '../../server/service/model-registry.js';
import { createReciteServer, reciteServerDefaults } from '../../server/service/server.js';
import { positiveInteger } from '../options.js';

interface ServeOptions {
  port: string;
  host: string;
  model: string[];
  device: string;
  maxBatch: string;
  maxQueue: string;
  maxQueued: string;
  memoryBudget: string;
  db: string;
  tokensFile?: string;
  checkpointEvery: string;
}

/** Default database file: one per user, so a restart finds its jobs. */
export function defaultDbPath(): string {
  return process.env.RECITE_DB ?? path.join(os.homedir(), '.local', 'share', 'recite', 'recite.db');
}

/** Parse NAME=DIR (or a built-in name alone) into a model source. */
export function parseModelSource(value: string): ModelSource {
  const at = value.indexOf('=');
  const name = at < 0 ? value : value.slice(0, at);
  const dir = at < 0 ? resolveModelDir(value) : path.resolve(value.slice(at + 1));
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`--model ${value}: the name may hold letters, digits, . _ - only`);
  return { name, dir };
}

export function registerServeCommand(program: Command): void {
  program.command('serve')
    .description('serve inversions over Connect, gRPC and gRPC-Web on one port (tokens from --tokens-file or RECITE_TOKENS)')
    .option('--port <n>', 'port (0: any free port)', '7070')
    .option('--host <addr>', 'address to listen on', '127.0.0.1')
    .option('--model <name=dir>', `a model to serve, repeatable; the first is the default (default: ${defaultModelName})`,
      (value: string, previous: string[]) => [...previous, value], [] as string[])
    .option('--device <device>', 'cpu | webgpu | cuda | auto', 'auto')
    .option('--max-batch <n>', 'jobs per graph run', String(reciteServerDefaults.maxBatch))
    .option('--max-queue <n>', 'unfinished jobs per client before its submissions are refused (a client\'s own ' +
      'max-jobs= in the tokens file overrides it)', String(reciteServerDefaults.maxQueue))
    .option('--max-queued <size>', 'bytes a client\'s unfinished jobs may hold before its submissions are refused ' +
      '(its own max-queued= overrides it)', formatBytes(reciteServerDefaults.maxQueuedBytes).replace(' ', ''))
    .option('--memory-budget <size>', 'bytes the running restarts of one model may hold; restarts past it wait to ' +
      'start', formatBytes(reciteServerDefaults.memoryBudgetBytes).replace(' ', ''))
    .option('--db <file>', 'SQLite file of jobs, events and checkpoints', defaultDbPath())
    .option('--tokens-file <file>', 'bearer tokens, one "TOKEN CLIENT [admin] [max-jobs=N] [max-queued=SIZE]" per line')
    .option('--checkpoint-every <n>', 'iterations between checkpoints of a running job', String(reciteServerDefaults.checkpointEvery))
    .action(async (options: ServeOptions) => {
      const tokens = TokenTable.load(options.tokensFile, process.env.RECITE_TOKENS);
      if (tokens.size === 0) throw new Error('no tokens: give --tokens-file FILE ("TOKEN CLIENT" lines) or RECITE_TOKENS=TOKEN=CLIENT');
      const models = (options.model.length > 0 ? options.model : [defaultModelName]).map(parseModelSource);
      const server = createReciteServer({
        models,
        device: parseDeviceRequest(options.device),
        maxBatch: positiveInteger('--max-batch', options.maxBatch),
        maxQueue: positiveInteger('--max-queue', options.maxQueue),
        maxQueuedBytes: parseBytes(options.maxQueued, '--max-queued'),
        memoryBudgetBytes: parseBytes(options.memoryBudget, '--memory-budget'),
        dbPath: options.db,
        tokens,
        checkpointEvery: positiveInteger('--checkpoint-every', options.checkpointEvery),
      });
      await server.listen(positiveInteger('--port', options.port, 0), options.host);
      process.stdout.write(`recite serve: listening on ${server.url} (database ${options.db})\n`);
      const stop = (signal: string) => {
        server.log.info({ signal }, 'shutting down');
        void server.close().then(() => process.exit(0));
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
}
