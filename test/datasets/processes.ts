// The built CLI (dist/, from `npx tsc`) in child processes, as a person runs it: `recite serve --port 0` (it prints
// its URL on stdout) and `recite dataset run …`, each killable outright.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const cliPath = path.join(root, 'dist/cli/main.js');
export const token = 'dataset-token-0123456789abcdef';

const listeningLine = /^recite serve: listening on (http:\/\/\S+)/m;

/** A child process with what it printed so far. */
export interface Child {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Start `node dist/cli/main.js ARGS` with `env` added; quiet server logs unless RECITE_TEST_LOGS is set. */
export function startCli(args: readonly string[], env: Record<string, string> = {}): Child {
  if (!fs.existsSync(cliPath)) throw new Error(`${cliPath} is missing: build with \`npx tsc -p tsconfig.json\` first`);
  const child = spawn(process.execPath, [cliPath, ...args], {
    cwd: root,
    env: { ...process.env, RECITE_LOG_LEVEL: process.env.RECITE_TEST_LOGS ? 'info' : 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (chunk: Buffer) => { out += chunk.toString(); });
  child.stderr!.on('data', (chunk: Buffer) => { err += chunk.toString(); });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Run the CLI to its end; rejects with its output when it exits non-zero. */
export async function runCli(args: readonly string[], env: Record<string, string> = {}): Promise<{ stdout: string; stderr: string }> {
  const c = startCli(args, env);
  const { code, signal } = await c.exited;
  if (code !== 0) throw new Error(`recite ${args.join(' ')} exited with ${code ?? signal}:\n${c.stderr()}\n${c.stdout()}`);
  return { stdout: c.stdout(), stderr: c.stderr() };
}

/** Start `recite serve --port 0 --db DB` with this suite's token; resolves with the process and its URL. */
export async function startServe(dbPath: string, args: readonly string[] = []): Promise<Child & { url: string }> {
  const c = startCli(['serve', '--port', '0', '--model', 'tiny', '--device', 'cpu', '--db', dbPath, ...args], { RECITE_TOKENS: `${token}=dataset-client` });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`recite serve printed no URL within 60 s:\n${c.stderr()}`)), 60_000);
    c.child.stdout!.on('data', () => {
      const match = listeningLine.exec(c.stdout());
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    void c.exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`recite serve exited (${code ?? signal}) before listening:\n${c.stderr()}`));
    });
  });
  return { ...c, url };
}

/** Kill a process outright (if it still runs) and wait for it to be gone. */
export async function kill(c: Child | undefined): Promise<void> {
  if (!c || c.child.exitCode !== null || c.child.signalCode !== null) return;
  c.child.kill('SIGKILL');
  await c.exited;
}

/** Wait until `check` returns true, polling every `everyMs`; throws after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean, timeoutMs = 60_000, everyMs = 25): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** Return the complete lines of a JSONL file (a line being written is left out), parsed. */
export function readJsonLines<T = Record<string, unknown>>(file: string): T[] {
  if (!fs.existsSync(file)) return [];
  const text = fs.readFileSync(file, 'utf8');
  return text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter(Boolean).map((line) => JSON.parse(line) as T);
}
