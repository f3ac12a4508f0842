#!/usr/bin/env node
// The `recite` command line.
import { Command } from 'commander';
import { registerBenchCommand } from './commands/bench.js';
import { registerEvalCommand } from './commands/eval.js';

const program = new Command('recite')
  .description('Find input embeddings that make a frozen GPT-2 recite a given text exactly.')
  .showHelpAfterError();

registerEvalCommand(program);
registerBenchCommand(program);

program.parseAsync(process.argv).catch((error: unknown) => {
  const e = error instanceof Error ? error : new Error(String(error));
  process.stderr.write(`recite: ${e.name === 'Error' ? '' : `${e.name}: `}${e.message}\n`);
  process.exitCode = 1;
});
