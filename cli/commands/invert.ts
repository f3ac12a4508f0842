// `recite invert`: search for a prompt that makes the model recite a text, with live progress. Talks to --server
// (or $RECITE_SERVER) through the SDK, or to a server it starts in this process.
import type { Command } from 'commander';
import { Status } from '../../sdk/index.js';
import type { InvertOptions, ResultEvent } from '../../sdk/index.js';
import { defaultModelName } from '../../server/model/builtin-models.js';
import { describeProvider } from '../../server/model/devices.js';
import { writeSafetensors } from '../../server/model/safetensors.js';
import { openConnection, withServerOptions } from '../connection.js';
import { describeError } from '../errors.js';
import { interruptedExitStatus, onInterrupt } from '../interrupt.js';
import { jsonView, terminalView } from '../invert-view.js';
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
  precision?: string;
  json?: boolean;
  out?: string;
  server?: string;
  token?: string;
  local?: boolean;
}

export function registerInvertCommand(program: Command): void {
  const command = program.command('invert')
    .description('find a prompt embedding that makes the model recite TEXT (exit 0 on a hit, 2 when the budget ran out, ' +
      '3 when cancelled: Ctrl-C cancels the job and prints the summary)')
    .argument('[text]', 'the target text')
    .option('--target-ids <ids>', 'the target as comma-separated token ids instead of text')
    .option('--model <name|dir>', 'a model the server serves (default: its default); in this process a built-in name, ' +
      `a folder or NAME=DIR (default ${defaultModelName})`);
  addSettingsOptions(command, { param: 'full', reportEvery: '1' })
    .option('--continue', 'keep optimizing after a hit (until the budget)')
    .option('--device <device>', 'in this process: cpu | webgpu | cuda | auto', 'auto')
    .option('--precision <precision>', 'in this process: the graphs\' precision, fp32 | fp16 (default fp32)')
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
  const connection = await openConnection(options);
  const view = options.json ? jsonView() : terminalView(settings.maxIterations ?? 1000);
  const skipped = connection.provider?.skipped ?? [];
  if (skipped.length > 0) {
    view.note(`recite invert: running on ${describeProvider(connection.provider!.name, skipped)}`);
  }
  // Ctrl-C cancels the job on the server and keeps following it: the job ends CANCELLED, its result (the best
  // embedding so far) arrives and is summarized like any other. A second Ctrl-C stops waiting for it.
  const controller = new AbortController();
  let jobId: string | undefined;
  let cancelWanted = false;
  const cancel = () => {
    if (jobId === undefined) return; // asked again once the first event names the job
    view.note(`recite invert: cancelling job ${jobId} (Ctrl-C again to stop waiting)`);
    connection.client.cancelJob(jobId).catch((error: unknown) => {
      view.note(`recite invert: job ${jobId} could not be cancelled: ${describeError(error, connection.baseUrl)}`);
      controller.abort();
    });
  };
  const release = onInterrupt(() => {
    cancelWanted = true;
    cancel();
  }, () => controller.abort());
  try {
    let result: ResultEvent | undefined;
    for await (const event of connection.client.invert(target, { ...settings, model: connection.model, signal: controller.signal })) {
      if (jobId === undefined) {
        jobId = event.jobId;
        if (cancelWanted) cancel();
      }
      view.onEvent(event);
      if (event.type === 'result') result = event;
    }
    if (!result && controller.signal.aborted) {
      view.close();
      process.stderr.write(`recite invert: stopped waiting${jobId ? ` for job ${jobId}` : ''}\n`);
      return interruptedExitStatus;
    }
    if (!result) throw new Error('the event stream ended before the result');
    view.done(result);
    if (options.out) writeEmbeddings(options.out, result, settings.decode);
    return exitStatus[result.status];
  } finally {
    release();
    view.close();
    await connection.close();
  }
}

/** The hit check's decoder as `recite decode` reads it back: greedy or beam:N. */
export function decoderName(decode: InvertOptions['decode']): string {
  return decode === undefined || decode === 'greedy' ? 'greedy' : `beam:${decode.beams}`;
}

function writeEmbeddings(file: string, result: ResultEvent, decode: InvertOptions['decode']): void {
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
    // The decoder of the job's hit check: `recite decode` uses it by default, so it reproduces `decoded`.
    decoder: decoderName(decode),
  });
}
