// `recite invert`: search for a prompt that makes the model recite a text, with live progress. Talks to
// --server through the SDK, or to a server it starts in this process.
import type { Command } from 'commander';
import { Option } from 'commander';
import { logUpdateStderr } from 'log-update';
import { Status } from '../../sdk/index.js';
import type { InvertOptions, ProgressEvent, ReciteEvent, ResultEvent } from '../../sdk/index.js';
import { writeSafetensors } from '../../server/model/safetensors.js';
import { connectToServer, startInProcessServer, withServerOptions } from '../connection.js';
import { eventToJson } from '../json-events.js';
import { parseDecode, parseIdList, parseInit, parseParameterization, positiveInteger, positiveNumber } from '../options.js';

/** Exit status per outcome: scripts branch on it. */
export const exitStatus: Record<Status, number> = {
  [Status.HIT]: 0,
  [Status.MAX_ITERATIONS]: 2,
  [Status.PATIENCE]: 2,
  [Status.THRESHOLD]: 2,
  [Status.CANCELLED]: 3,
  [Status.FAILED]: 4,
  [Status.UNSPECIFIED]: 4,
};

interface InvertCommandOptions {
  targetIds?: string;
  model: string;
  param: string;
  init: string;
  optimizer: 'rmsprop' | 'adam' | 'sgd';
  lr?: string;
  schedule: 'constant' | 'cosine' | 'plateau';
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
  server?: string;
  token?: string;
}

export function registerInvertCommand(program: Command): void {
  const command = program.command('invert')
    .description('find a prompt embedding that makes the model recite TEXT (exit 0 on a hit, 2 when the budget ran out)')
    .argument('[text]', 'the target text')
    .option('--target-ids <ids>', 'the target as comma-separated token ids instead of text')
    .option('--model <name|dir>', 'a model the server serves; without --server a folder or built-in name', 'tiny')
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
    .option('--device <device>', 'without --server: cpu | webgpu | cuda | auto', 'auto')
    .option('--json', 'print one JSON object per event (the proto JSON of each JobEvent)')
    .option('--out <file>', 'write the best embedding (and each restart\'s) as safetensors');
  withServerOptions(command, false).action(async (text: string | undefined, options: InvertCommandOptions) => {
    process.exitCode = await invert(text, options);
  });
}

function settingsOf(options: InvertCommandOptions): InvertOptions {
  const parameterization = parseParameterization(options.param);
  const init = parseInit(options.init);
  const decode = parseDecode(options.decode);
  return {
    parameterization: parameterization.kind === 'flat' ? 'flat' : parameterization,
    init: init.kind === 'text' ? { kind: 'text', text: init.text } : init.kind === 'random' ? { kind: 'random', ...(init.std ? { std: init.std } : {}) }
      : init.kind === 'zeros' || init.kind === 'mean' ? init.kind : 'random',
    optimizer: options.optimizer,
    ...(options.lr !== undefined ? { lr: positiveNumber('--lr', options.lr) } : {}),
    schedule: options.schedule,
    lrRelativeToNorm: options.lrRelative ?? false,
    maxIterations: positiveInteger('--max-iters', options.maxIters),
    patience: positiveInteger('--patience', options.patience, 0),
    nllThreshold: Number(options.nllThreshold),
    curriculum: options.curriculum ?? false,
    decode: decode.kind === 'beam' ? { beams: decode.beams, every: decode.every } : 'greedy',
    continueAfterHit: options.continue ?? false,
    restarts: positiveInteger('--restarts', options.restarts),
    seed: positiveInteger('--seed', options.seed, 0),
    reportEvery: positiveInteger('--report-every', options.reportEvery),
  };
}

async function invert(text: string | undefined, options: InvertCommandOptions): Promise<number> {
  if ((text === undefined) === (options.targetIds === undefined)) {
    throw new Error('give the target either as TEXT or with --target-ids, not both and not neither');
  }
  const target = options.targetIds !== undefined ? parseIdList('--target-ids', options.targetIds) : text!;
  const settings = settingsOf(options);
  const connection = options.server ? connectToServer(options) : await startInProcessServer(options.model, options.device);
  const controller = new AbortController();
  let jobId: string | undefined;
  const onSigint = () => {
    // Cancel the job itself, then stop following it once its result (CANCELLED) has arrived.
    if (jobId) void connection.client.cancelJob(jobId).catch(() => controller.abort());
    else controller.abort();
  };
  process.once('SIGINT', onSigint);
  const view = options.json ? jsonView() : terminalView();
  try {
    let result: ResultEvent | undefined;
    const model = options.server ? options.model : connection.model;
    for await (const event of connection.client.invert(target, { ...settings, model, signal: controller.signal })) {
      jobId = event.jobId;
      view.onEvent(event);
      if (event.type === 'result') result = event;
    }
    if (!result) throw new Error('the event stream ended before the result');
    view.done(result);
    if (options.out) writeEmbeddings(options.out, result);
    return exitStatus[result.status];
  } finally {
    process.off('SIGINT', onSigint);
    await connection.close();
  }
}

function writeEmbeddings(file: string, result: ResultEvent): void {
  const best = result.restarts[result.best]!;
  const tensor = (r: typeof best) => ({ shape: r.embedding?.shape ?? [], data: Float32Array.from(r.embedding?.values ?? []) });
  writeSafetensors(file, [
    { name: 'embedding', ...tensor(best) },
    ...result.restarts.map((r) => ({ name: `restart.${r.restart}`, ...tensor(r) })),
  ], {
    target_text: result.targetText,
    target_ids: JSON.stringify(result.targetIds),
    status: Status[result.status],
    best_restart: String(result.best),
    model: result.model,
  });
}

interface View {
  onEvent(event: ReciteEvent): void;
  done(result: ResultEvent): void;
}

function jsonView(): View {
  return {
    onEvent: (event) => process.stdout.write(`${JSON.stringify(eventToJson(event))}\n`),
    done: () => {},
  };
}

function terminalView(): View {
  const live = process.stderr.isTTY;
  const started = performance.now();
  let lastLine = 0;
  let targetLength = 0;
  const describe = (p: ProgressEvent) =>
    `restart ${p.restart}  iteration ${String(p.iteration).padStart(5)}  NLL ${p.nllSum.toFixed(3).padStart(9)} ` +
    `(${p.bitsPerToken.toFixed(2)} bits/token)  correct ${p.correctPrefix}/${targetLength}  lr ${p.lr.toPrecision(3)}\n` +
    `  model: ${JSON.stringify(p.decodedText || p.argmaxText)}`;
  return {
    onEvent(event) {
      if (event.type === 'started' && event.restart === 0) {
        process.stderr.write(`recite invert: job ${event.jobId}, ${event.parameterCount} parameters (P = ${event.promptVectors})\n`);
      } else if (event.type === 'progress') {
        targetLength = Math.max(targetLength, event.optimizedTokens);
        const now = performance.now();
        if (live) logUpdateStderr(describe(event));
        else if (now - lastLine > 2000) {
          lastLine = now;
          process.stderr.write(`${describe(event)}\n`);
        }
      } else if (event.type === 'restart_result') {
        if (live) logUpdateStderr.done();
        process.stderr.write(`restart ${event.restart} (seed ${event.seed}): ${Status[event.status]} after ${event.iterations} ` +
          `iterations${event.iterationsToHit !== undefined ? `, hit at ${event.iterationsToHit}` : ''}, best NLL ${event.bestNll.toFixed(4)}\n`);
      }
    },
    done(result) {
      const best = result.restarts[result.best]!;
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      const nearest = best.nearestTokens.map((v) => v.tokens.slice(0, 3).map((t) => `${JSON.stringify(t.text)} ${t.cosine.toFixed(2)}`).join(', '));
      process.stdout.write([
        `status:      ${Status[result.status]}${best.iterationsToHit !== undefined ? ` at iteration ${best.iterationsToHit}` : ''}`,
        `target:      ${JSON.stringify(result.targetText)} (${result.targetIds.length} tokens)`,
        `decoded:     ${JSON.stringify(best.decodedText)}`,
        `best NLL:    ${best.bestNll.toFixed(4)} (iteration ${best.bestIteration})`,
        `embedding:   ${best.embedding?.shape.join(' x ')} floats, restart ${best.restart} of ${result.restarts.length}`,
        `nearest:     ${nearest.join(' | ')}`,
        `time:        ${seconds} s on ${result.provider} (model ${result.model})`,
      ].join('\n') + '\n');
    },
  };
}
