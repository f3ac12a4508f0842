// The built CLI on a real pseudo-terminal, as a person runs it: `script` (util-linux, always installed) gives the
// command a pty of its own, whose line discipline turns a \x03 written to it into SIGINT for the terminal's
// foreground process group: what Ctrl-C does, and not what `kill -INT` from a script does. What the command
// draws can be replayed into a headless xterm to read the screen a person would see.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import xterm from '@xterm/headless';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const cliPath = path.join(root, 'dist/cli/main.js');

export const columns = 160;
export const rows = 50;

/** A command on a pty. */
export interface TerminalRun {
  child: ChildProcess;
  /** Everything the command wrote to the terminal so far (stdout and stderr, escape sequences and all). */
  output(): string;
  /** Press Ctrl-C. */
  interrupt(): void;
  /** The exit status of the command (script -e passes it on; 128 + N when a signal N ended it). */
  exited: Promise<number | null>;
}

const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;

/** Run `node dist/cli/main.js ARGS` on a pty of `columns` × `rows`, with `env` added. */
export function runOnTerminal(args: readonly string[], env: Record<string, string> = {}): TerminalRun {
  if (!fs.existsSync(cliPath)) throw new Error(`${cliPath} is missing: build with \`npx tsc -p tsconfig.json\` first`);
  // A pty made by `script` from a pipe has no size (0 columns); a person's terminal has one.
  const command = `stty cols ${columns} rows ${rows}; exec ${[process.execPath, cliPath, ...args].map(quote).join(' ')}`;
  const child = spawn('script', ['--quiet', '--flush', '--return', '--command', command, '/dev/null'], {
    cwd: root,
    env: { ...process.env, RECITE_LOG_LEVEL: 'warn', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => { out += chunk.toString(); });
  child.stderr!.on('data', (chunk: Buffer) => { out += chunk.toString(); });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => out, interrupt: () => child.stdin!.write('\x03'), exited };
}

/** Resolve once `pattern` matches the output; reject after `timeoutMs` or when the command exits first. */
export async function waitForOutput(run: TerminalRun, pattern: RegExp, timeoutMs = 60_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = pattern.exec(run.output());
    if (match) return match;
    if (run.child.exitCode !== null) throw new Error(`the command exited before printing ${pattern}:\n${run.output()}`);
    if (Date.now() > deadline) throw new Error(`no ${pattern} within ${timeoutMs} ms:\n${run.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Replay terminal output into a headless xterm and return the lines a person sees at the end (scrollback included;
 * rows the terminal wrapped joined again).
 */
export async function screenOf(output: string): Promise<string[]> {
  const terminal = new xterm.Terminal({ cols: columns, rows, scrollback: 1000, allowProposedApi: true });
  // script writes what the pty sends: \n already became \r\n there.
  await new Promise<void>((resolve) => terminal.write(output, resolve));
  const buffer = terminal.buffer.active;
  const lines: string[] = [];
  for (let i = 0; i < buffer.length; i++) {
    const line = buffer.getLine(i)!;
    // A line longer than the terminal goes on in the next row: one line of the command's.
    if (line.isWrapped && lines.length > 0) lines[lines.length - 1] += line.translateToString(true);
    else lines.push(line.translateToString(true));
  }
  while (lines.length > 0 && lines.at(-1) === '') lines.pop();
  terminal.dispose();
  return lines;
}

/** Stop the command if it still runs. */
export async function stop(run: TerminalRun | undefined): Promise<void> {
  if (!run || run.child.exitCode !== null) return;
  run.child.kill('SIGKILL');
  await run.exited;
}
