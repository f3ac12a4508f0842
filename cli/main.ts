#!/usr/bin/env node
// The `recite` command line.
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { packageRoot } from '../server/model/builtin-models.js';
import { commandModules } from './command-modules.js';
import { lastServerUrl } from './connection.js';
import { describeError } from './errors.js';
import { integerProblem } from '../server/util/numbers.js';

const { version } = JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string };

const program = new Command('recite')
  .description('Find input embeddings that make a frozen GPT-2 recite a given text exactly.')
  .version(version, '-V, --version', 'print the version of recite')
  .showHelpAfterError()
  .option('--threads <n>', 'threads each onnxruntime session computes with (default: RECITE_THREADS, else every core)')
  .hook('preAction', async () => {
    const { threads } = program.opts<{ threads?: string }>();
    if (threads === undefined) return;
    const problem = integerProblem(Number(threads), 1, 1024);
    if (problem) throw new Error(`--threads ${threads}: ${problem}`);
    const { setSessionThreads } = await import('../server/model/devices.js');
    setSessionThreads(Number(threads));
  });

const named = commandModules.filter((m) => m.commands.includes(process.argv[2] ?? ''));
for (const module of named.length > 0 ? named : commandModules) (await module.load())(program);

// `recite invert --json | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});

program.parseAsync(process.argv).catch((error: unknown) => {
  process.stderr.write(`recite: ${describeError(error, lastServerUrl())}\n`);
  process.exitCode = 1;
});
