// `recite serve` in a child process, as an operator runs it: the built CLI (dist/, from `npx tsc`), port 0, a
// token in RECITE_TOKENS. Tests kill it outright or signal it, restart it on the same database, and read its RSS.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient } from '@connectrpc/connect';
import type { Client } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { ReciteService } from '../../sdk/gen/recite/v1/recite_pb.js';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const cliPath = path.join(root, 'dist/cli/main.js');
export const serveToken = 'crash-token-0123456789abcdef';
export const authHeaders = { authorization: `Bearer ${serveToken}` };

const listeningLine = /^recite serve: listening on (http:\/\/\S+)/m;
const startTimeoutMs = 30_000;

export interface ServeProcess {
  child: ChildProcess;
  pid: number;
  url: string;
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** What the process wrote to stderr so far (its structured log). */
  stderr(): string;
}

/**
 * Start `recite serve --port 0` on `dbPath` with `args` (and `nodeArgs` for node itself); resolves once it prints
 * the URL it listens on.
 */
export async function spawnServe(dbPath: string, args: string[] = [], nodeArgs: string[] = [],
  urlLine: RegExp = listeningLine): Promise<ServeProcess> {
  if (!fs.existsSync(cliPath)) throw new Error(`${cliPath} is missing: build with \`npx tsc -p tsconfig.json\` first`);
  const child = spawn(process.execPath, [...nodeArgs, cliPath, 'serve', '--port', '0', '--model', 'tiny', '--device', 'cpu',
    '--db', dbPath, ...args], {
    env: { ...process.env, RECITE_TOKENS: `${serveToken}=crash-client` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`recite serve printed no URL within ${startTimeoutMs} ms:\n${stderr}`)), startTimeoutMs);
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = urlLine.exec(stdout);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`recite serve exited (code ${code}, signal ${signal}) before listening:\n${stderr}`));
    });
  });
  return { child, pid: child.pid!, url, exited, stderr: () => stderr };
}

/** Kill the process (if still running) and wait for it to exit. */
export async function stopServe(serve: ServeProcess | undefined, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (!serve || serve.child.exitCode !== null || serve.child.signalCode !== null) return;
  serve.child.kill(signal);
  await serve.exited;
}

/** A ReciteService client over gRPC (HTTP/2) to `url`. */
export function reciteClient(url: string): Client<typeof ReciteService> {
  return createClient(ReciteService, createGrpcTransport({ baseUrl: url }));
}

/** Resident set size of a process in bytes, from /proc/PID/status (VmRSS). */
export function rssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}
