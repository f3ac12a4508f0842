// `recite invert`: search for a prompt that makes the model recite a text, with live progress. Talks to
// --server through the SDK, or to a server it starts in this process.
import type { Command } from 'commander';
import { logUpdateStderr } from 'log-update';
import { Status } from '../../sdk/index.js';
import type { ProgressEvent, ReciteEvent, ResultEvent } from '../../sdk/index.js';
import { defaultModelName } from '../../server/model/builtin-models.js';
import { writeSafetensors } from '../../server/model/safetensors.js';
import { connectToServer, startInProcessServer, withServerOptions } from '../connection.js';
import { eventToJson } from '../json-events.js';
import { parseIdList } from '../options.js';
import { addSettingsOptions, settingsFromFlags } from '../settings-options.js';
import type { SettingsFlags } from '../settings-options.js';

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

interface InvertCommandOptions extends SettingsFlags {
  targetIds?: string;
  model?: string;
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
    .option('--model <name|dir>', 'a model the server serves (default: its default); without --server a folder or ' +
      `built-in name (default ${defaultModelName})`);
  addSettingsOptions(command, { param: 'full', reportEvery: '1' })
    .option('--continue', 'keep optimizing after a hit (until the budget)')
    .option('--device <device>', 'without --server: cpu | webgpu | cuda | auto', 'auto')
    .option('--json', 'print one JSON object per event (the proto JSON of each JobEvent)')
    .option('--out <file>', 'write the best embedding (and each restart\'s) as safetensors');
  withServerOptions(command, false).action(async (text: string | undefined, options: InvertCommandOptions) => {
    process.exitCode = await invert(text, options);
  });
}

async function invert(text: string | undefined, options: InvertCommandOptions): Promise<number> {
  if ((text === undefined) === (options.targetIds === undefined)) {
    throw new Error('give the target either as TEXT or with --target-ids, not both and not neither');
  }
  const target = options.targetIds !== undefined ? parseIdList('--target-ids', options.targetIds) : text!;
  const settings = { ...settingsFromFlags(options), continueAfterHit: options.continue ?? false };
  const connection = options.server ? connectToServer(options) : await startInProcessServer(options.model ?? defaultModelName, options.device);
  const skipped = connection.provider?.skipped ?? [];
  if (skipped.length > 0) {
    process.stderr.write(`recite invert: running on ${connection.provider!.name}; ` +
      `${skipped.map((f) => `skipped ${f.provider}: ${f.reason}`).join('; ')}\n`);
  }
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
