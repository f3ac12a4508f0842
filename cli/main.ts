#!/usr/bin/env node
// The `recite` command line.
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { packageRoot } from '../server/model/builtin-models.js';
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
import { lastServerUrl } from './connection.js';
import { describeError } from './errors.js';

const { version } = JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string };

const program = new Command('recite')
  .description('Find input embeddings that make a frozen GPT-2 recite a given text exactly.')
  .version(version, '-V, --version', 'print the version of recite')
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
  process.stderr.write(`recite: ${describeError(error, lastServerUrl())}\n`);
  process.exitCode = 1;
});
