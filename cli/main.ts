#!/usr/bin/env node
// The `recite` command line.
import { Command } from 'commander';
import { registerBenchCommand } from './commands/bench.js';
import { registerCapacityCommand } from './commands/capacity.js';
import { registerDatasetCommands } from './commands/dataset.js';
import { registerEvalCommand } from './commands/eval.js';
import { registerDecodeCommands } from './commands/decode.js';
import { registerInvertCommand } from './commands/invert.js';
import { registerJobCommands } from './commands/jobs.js';
import { registerModelFetchCommand } from './commands/model-fetch.js';
import { registerScoreCommand } from './commands/score.js';
import { registerServeCommand } from './commands/serve.js';
import { registerStudyCommand } from './commands/study.js';
import { registerTrainCommands } from './commands/train.js';

const program = new Command('recite')
  .description('Find input embeddings that make a frozen GPT-2 recite a given text exactly.')
  .showHelpAfterError();

registerInvertCommand(program);
registerServeCommand(program);
registerJobCommands(program);
registerDecodeCommands(program);
registerScoreCommand(program);
registerModelFetchCommand(program);
registerEvalCommand(program);
registerBenchCommand(program);
registerDatasetCommands(program);
registerStudyCommand(program);
registerCapacityCommand(program);
registerTrainCommands(program);

// `recite invert --json | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});

program.parseAsync(process.argv).catch((error: unknown) => {
  const e = error instanceof Error ? error : new Error(String(error));
  process.stderr.write(`recite: ${e.name === 'Error' ? '' : `${e.name}: `}${e.message}\n`);
  process.exitCode = 1;
});
