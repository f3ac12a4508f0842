// `recite invert`: search for a prompt that makes the model recite a text, with live progress.
import type { Command } from 'commander';
import { Option } from 'commander';
import { logUpdateStderr } from 'log-update';
import { loadEngineModel } from '../../server/engine/engine-model.js';
import type { InversionEvent, InversionResult, ProgressReport, RunStatus } from '../../server/engine/events.js';
import { InversionEngine } from '../../server/engine/inversion-engine.js';
import type { InversionSettings } from '../../server/engine/settings.js';
import { resolveModelDir } from '../../server/model/builtin-models.js';
import { parseDeviceRequest } from '../../server/model/execution-provider.js';
import { writeSafetensors } from '../../server/model/safetensors.js';
import { createGpt2Tokenizer } from '../../server/model/tokenizer.js';
import { eventToJson } from '../json-events.js';
import { parseDecode, parseIdList, parseInit, parseParameterization, positiveInteger, positiveNumber } from '../options.js';

/** Exit status per outcome: scripts branch on it. */
export const exitStatus: Record<RunStatus, number> = {
  HIT: 0,
  MAX_ITERATIONS: 2,
  PATIENCE: 2,
  THRESHOLD: 2,
  CANCELLED: 3,
  FAILED: 4,
};

interface InvertOptions {
  targetIds?: string;
  model: string;
  param: string;
  init: string;
  optimizer: InversionSettings['optimizer'];
  lr?: string;
  schedule: InversionSettings['schedule'];
  lrRelative?: boolean;
  maxIters: string;
  patience: string;
  nllThreshold: string;
  curriculum?: boolean;
  decode: string;
  restarts: string;
  seed: string;
  reportEvery: string;
  continue?: boolean;
  device: string;
  json?: boolean;
  out?: string;
  maxBatch: string;
}

export function registerInvertCommand(program: Command): void {
  program.command('invert')
    .description('find a prompt embedding that makes the model recite TEXT (exit 0 on a hit, 2 when the budget ran out)')
    .argument('[text]', 'the target text')
    .option('--target-ids <ids>', 'the target as comma-separated token ids instead of text')
    .option('--model <dir>', 'GPT-2 folder or built-in name', 'tiny')
    .option('--param <kind>', 'flat | full[:P] | projected:K[:random|pca]', 'full')
    .option('--init <kind>', 'random[:STD] | zeros | mean | text:TEXT', 'random')
    .addOption(new Option('--optimizer <name>', 'optimizer').choices(['rmsprop', 'adam', 'sgd']).default('rmsprop'))
    .option('--lr <x>', 'learning rate (default 0.1)')
    .addOption(new Option('--schedule <name>', 'lr schedule').choices(['constant', 'cosine', 'plateau']).default('constant'))
    .option('--lr-relative', 'scale the lr by the mean token-embedding norm')
    .option('--max-iters <n>', 'iterations per restart', '1000')
    .option('--patience <n>', 'stop after N iterations without a better NLL (0: off)', '0')
    .option('--nll-threshold <x>', 'stop once the summed NLL is at or below X (0: off)', '0')
    .option('--curriculum', 'optimize a growing prefix of the target')
    .option('--decode <kind>', 'hit check: greedy | beam:N[:EVERY]', 'greedy')
    .option('--restarts <n>', 'independent seeds; the best is the result', '1')
    .option('--seed <s>', 'seed of the first restart', '0')
    .option('--report-every <k>', 'report every k-th iteration', '1')
    .option('--continue', 'keep optimizing after a hit (until the budget)')
    .option('--device <device>', 'cpu | webgpu | cuda | auto', 'auto')
    .option('--max-batch <n>', 'jobs per graph run', '64')
    .option('--json', 'print one JSON object per event')
    .option('--out <file>', 'write the best embedding (and each restart\'s) as safetensors')
    .action(async (text: string | undefined, options: InvertOptions) => {
      process.exitCode = await invert(text, options);
    });
}

async function invert(text: string | undefined, options: InvertOptions): Promise<number> {
  if ((text === undefined) === (options.targetIds === undefined)) {
    throw new Error('give the target either as TEXT or with --target-ids, not both and not neither');
  }
  const targetIds = options.targetIds !== undefined ? parseIdList('--target-ids', options.targetIds)
    : createGpt2Tokenizer().encode(text!);
  const settings: Partial<InversionSettings> = {
    parameterization: parseParameterization(options.param),
    init: parseInit(options.init),
    optimizer: options.optimizer,
    ...(options.lr !== undefined ? { lr: positiveNumber('--lr', options.lr) } : {}),
    schedule: options.schedule,
    lrRelativeToNorm: options.lrRelative ?? false,
    maxIterations: positiveInteger('--max-iters', options.maxIters),
    patience: positiveInteger('--patience', options.patience, 0),
    nllThreshold: Number(options.nllThreshold),
    curriculum: options.curriculum ?? false,
    decode: parseDecode(options.decode),
    stopOnHit: !options.continue,
    restarts: positiveInteger('--restarts', options.restarts),
    seed: positiveInteger('--seed', options.seed, 0),
    reportEvery: positiveInteger('--report-every', options.reportEvery),
  };
  const maxBatch = positiveInteger('--max-batch', options.maxBatch);
  const model = await loadEngineModel(options.model, resolveModelDir(options.model), parseDeviceRequest(options.device));
  const engine = new InversionEngine(model, { maxBatch });
  const view = options.json ? jsonView() : terminalView(model.tokenizer.decode(targetIds), targetIds.length, model.provider);
  const handle = await engine.submit({ targetIds, settings, onEvent: view.onEvent });
  const onSigint = () => handle.cancel();
  process.once('SIGINT', onSigint);
  try {
    const result = await handle.result;
    view.done(result);
    if (options.out) writeEmbeddings(options.out, result);
    return exitStatus[result.status];
  } finally {
    process.off('SIGINT', onSigint);
    await model.release();
  }
}

function writeEmbeddings(file: string, result: InversionResult): void {
  const best = result.restarts[result.best]!;
  writeSafetensors(file, [
    { name: 'embedding', shape: best.embedding.shape, data: best.embedding.values },
    ...result.restarts.map((r) => ({ name: `restart.${r.restart}`, shape: r.embedding.shape, data: r.embedding.values })),
  ], {
    target_text: result.targetText,
    target_ids: JSON.stringify(result.targetIds),
    status: result.status,
    best_restart: String(result.best),
    model: result.model,
    settings: JSON.stringify(result.settings),
  });
}

interface View {
  onEvent(event: InversionEvent): void;
  done(result: InversionResult): void;
}

function jsonView(): View {
  return {
    onEvent: (event) => process.stdout.write(`${JSON.stringify(eventToJson(event))}\n`),
    done: () => {},
  };
}

function terminalView(targetText: string, targetLength: number, provider: string): View {
  const live = process.stderr.isTTY;
  const started = performance.now();
  let lastLine = 0;
  const describe = (p: ProgressReport) =>
    `restart ${p.restart}  iteration ${String(p.iteration).padStart(5)}  NLL ${p.nllSum.toFixed(3).padStart(9)} ` +
    `(${p.bitsPerToken.toFixed(2)} bits/token)  correct ${p.correctPrefix}/${targetLength}  lr ${p.lr.toPrecision(3)}\n` +
    `  target: ${JSON.stringify(targetText)}\n  model:  ${JSON.stringify(p.decodedText ?? p.argmaxText)}`;
  process.stderr.write(`recite invert: ${targetLength} target tokens on ${provider}\n`);
  return {
    onEvent(event) {
      if (event.type !== 'progress') {
        if (event.type === 'restart_result') {
          if (live) logUpdateStderr.done();
          const r = event.result;
          process.stderr.write(`restart ${r.restart} (seed ${r.seed}): ${r.status} after ${r.iterations} iterations` +
            `${r.iterationsToHit !== null ? `, hit at ${r.iterationsToHit}` : ''}, best NLL ${r.bestNll.toFixed(4)}\n`);
        }
        return;
      }
      const now = performance.now();
      if (live) {
        logUpdateStderr(describe(event.progress));
      } else if (now - lastLine > 2000) {
        lastLine = now;
        process.stderr.write(`${describe(event.progress)}\n`);
      }
    },
    done(result) {
      const best = result.restarts[result.best]!;
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      process.stdout.write([
        `status:      ${result.status}${best.iterationsToHit !== null ? ` at iteration ${best.iterationsToHit}` : ''}`,
        `target:      ${JSON.stringify(result.targetText)} (${result.targetIds.length} tokens)`,
        `decoded:     ${JSON.stringify(best.decodedText)}`,
        `best NLL:    ${best.bestNll.toFixed(4)} (iteration ${best.bestIteration})`,
        `embedding:   ${best.embedding.shape.join(' x ')} floats, restart ${best.restart} of ${result.restarts.length}`,
        `nearest:     ${best.nearestTokens.map((v) => v.slice(0, 3).map((t) => `${JSON.stringify(t.text)} ${t.cosine.toFixed(2)}`).join(', ')).join(' | ')}`,
        `time:        ${seconds} s on ${result.provider}`,
      ].join('\n') + '\n');
    },
  };
}
