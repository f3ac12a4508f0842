// `recite dataset`: run a whole file of targets as one server-side data set and collect the results as they finish
// (JSON lines + one safetensors file of embeddings keyed by row id); sample reachable targets; show, list and
// cancel data sets. A run interrupted at any point and started again skips what is done and collects the rest.
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { toJobSettings } from '../../sdk/index.js';
import { toJson } from '@bufbuild/protobuf';
import { DatasetSchema, DatasetState, GetDatasetResponseSchema } from '../../sdk/gen/recite/v1/dataset_pb.js';
import type { Dataset } from '../../sdk/gen/recite/v1/dataset_pb.js';
import { JobState, Status } from '../../sdk/index.js';
import { defaultModelName } from '../../server/model/builtin-models.js';
import { connectToServer, openConnection, withServerOptions } from '../connection.js';
import type { Connection, LocalOrRemoteOptions } from '../connection.js';
import { onInterrupt } from '../interrupt.js';
import { printJsonLine } from '../json-events.js';
import { positiveInteger } from '../options.js';
import { createDatasetClient } from '../datasets/dataset-client.js';
import { readDatasetFile } from '../datasets/dataset-file.js';
import type { DatasetFileRow } from '../datasets/dataset-file.js';
import { createProgressBar } from '../datasets/progress-bar.js';
import { ResultsWriter } from '../datasets/results-file.js';
import type { ResultLine } from '../datasets/results-file.js';
import { quantile } from '../datasets/study-summary.js';
import { followDataset, submitDataset } from '../datasets/run-dataset.js';
import { addSettingsOptions, settingsFromFlags } from '../settings-options.js';
import type { SettingsFlags } from '../settings-options.js';

/** Flags every data set command shares: where the server is. */
export type ServerFlags = LocalOrRemoteOptions;

interface RunFlags extends SettingsFlags, ServerFlags {
  name?: string;
  out?: string;
  db?: string;
  progress: boolean;
  detach?: boolean;
  json?: boolean;
}

/**
 * Connect to --server or $RECITE_SERVER, or start a server in this process whose database is `dbPath` (kept, so a
 * rerun finds its data sets; undefined: a temporary one). Returns the connection and the model to ask for.
 */
export async function connectForDatasets(flags: ServerFlags, dbPath: string | undefined): Promise<{ connection: Connection; model: string }> {
  const connection = await openConnection(flags, dbPath);
  return { connection, model: connection.model };
}

/** Add --model and --device (for the in-process server) and --server / --token. */
export function withDatasetServerOptions(command: Command): Command {
  command
    .option('--model <name|dir>', 'a model the server serves (default: its default); in this process a built-in name, a ' +
      `folder or NAME=DIR (default ${defaultModelName})`)
    .option('--device <device>', 'in this process: cpu | webgpu | cuda | auto', 'auto');
  return withServerOptions(command, false);
}

export function registerDatasetCommands(program: Command): void {
  const dataset = program.command('dataset').description('run files of targets as server-side data sets and collect their results');

  const run = dataset.command('run')
    .description('invert every target of FILE (text: one per line; JSONL: id and text or target_ids) and write the results as they finish')
    .argument('<file>', 'the data set file')
    .option('--name <name>', 'the data set\'s name on the server (default: the hash of model, settings and rows)')
    .option('--out <prefix>', 'write PREFIX.jsonl and PREFIX.safetensors (default: FILE without extension + .results)')
    .option('--db <file>', 'in this process: the server\'s database (default: PREFIX.db, so a rerun resumes)')
    .option('--no-progress', 'no progress bar')
    .option('--detach', 'submit the data set and exit; a later run with the same arguments collects the results')
    .option('--json', 'print the outcome as one JSON object: the data set (proto JSON) and the results files');
  addSettingsOptions(run);
  withDatasetServerOptions(run).action(async (file: string, flags: RunFlags) => {
    process.exitCode = await runDatasetCommand(file, flags);
  });

  withDatasetServerOptions(dataset.command('reachable')
    .description('print targets the model can recite (its greedy continuations of hidden random prompts) as JSONL')
    .option('--count <n>', 'targets', '50')
    .option('--tokens <t>', 'tokens per target', '6')
    .option('--prompt-vectors <p>', 'vectors of the hidden prompt', '1')
    .option('--seed <s>', 'seed of the first hidden prompt', '0')
    .option('--out <file>', 'write to FILE instead of stdout'))
    .action(async (flags: ServerFlags & { count: string; tokens: string; promptVectors: string; seed: string; out?: string }) => {
      const { connection, model } = await connectForDatasets(flags, undefined);
      try {
        const { targets } = await createDatasetClient(connection).sampleReachableTargets({
          model,
          count: positiveInteger('--count', flags.count),
          tokens: positiveInteger('--tokens', flags.tokens),
          promptVectors: positiveInteger('--prompt-vectors', flags.promptVectors),
          seed: positiveInteger('--seed', flags.seed, 0),
        });
        const text = targets.map((t) => JSON.stringify({ id: t.id, text: t.text, target_ids: t.targetIds })).join('\n') + '\n';
        if (flags.out) fs.writeFileSync(flags.out, text);
        else process.stdout.write(text);
      } finally {
        await connection.close();
      }
    });

  withServerOptions(dataset.command('status')
    .description('show a data set\'s counts (and its rows with --rows)')
    .argument('<name>', 'the data set\'s name')
    .option('--rows', 'list every row: id, state, status, iterations to hit, best NLL, job id')
    .option('--json', 'print the response in the proto JSON encoding'))
    .action(async (name: string, flags: { rows?: boolean; json?: boolean; server?: string; token?: string }) => {
      const client = createDatasetClient(connectToServer(flags));
      const response = await client.getDataset({ name, includeRows: flags.rows ?? false, pageSize: 10000 });
      if (flags.json) {
        printJsonLine(toJson(GetDatasetResponseSchema, response));
        return;
      }
      process.stdout.write(`${describeDataset(response.dataset!)}\n`);
      if (response.rows.length > 0) process.stdout.write('id\tstatus\titerations to hit\tbest NLL\tjob\n');
      for (const row of response.rows) {
        process.stdout.write(`${row.id}\t${row.state === JobState.FINISHED ? Status[row.status] : JobState[row.state] === 'UNSPECIFIED' ? 'PENDING' : JobState[row.state]}\t${row.iterationsToHit ?? '-'}\t${row.bestNll.toFixed(4)}\t${row.jobId}\n`);
      }
    });

  withServerOptions(dataset.command('list').description('list your data sets, newest first')
    .option('--json', 'one JSON object per data set (proto JSON)'))
    .action(async (flags: { json?: boolean; server?: string; token?: string }) => {
      const response = await createDatasetClient(connectToServer(flags)).listDatasets({ pageSize: 100 });
      for (const d of response.datasets) {
        if (flags.json) printJsonLine(toJson(DatasetSchema, d));
        else process.stdout.write(`${describeDataset(d)}\n`);
      }
    });

  withServerOptions(dataset.command('cancel').description('stop a data set: no more rows are submitted, running jobs are cancelled')
    .argument('<name>', 'the data set\'s name')
    .option('--json', 'print the data set as one JSON object (proto JSON)'))
    .action(async (name: string, flags: { json?: boolean; server?: string; token?: string }) => {
      const { dataset: d } = await createDatasetClient(connectToServer(flags)).cancelDataset({ name });
      if (flags.json) printJsonLine(toJson(DatasetSchema, d!));
      else process.stdout.write(`${describeDataset(d!)}\n`);
    });
}

async function runDatasetCommand(file: string, flags: RunFlags): Promise<number> {
  const rows = readDatasetFile(file);
  const byId = new Map(rows.map((row) => [row.id, row]));
  const settings = toJobSettings(settingsFromFlags(flags));
  const prefix = flags.out ?? path.join(path.dirname(file), `${path.basename(file).replace(/\.[^.]*$/, '')}.results`);
  const { connection, model } = await connectForDatasets(flags, flags.db ?? `${prefix}.db`);
  const controller = new AbortController();
  const release = onInterrupt(() => controller.abort());
  let writer: ResultsWriter | undefined;
  const started = performance.now();
  try {
    const client = createDatasetClient(connection);
    const { dataset, created } = await submitDataset(client, { name: flags.name ?? '', model, settings, rows });
    writer = new ResultsWriter(prefix, dataset.name);
    const resume = writer.resumePoint();
    process.stderr.write(`recite dataset: ${created ? 'submitted' : 'found'} data set ${dataset.name}: ${rows.length} rows, ` +
      `${resume.done} already in ${writer.jsonlPath}\n`);
    if (flags.detach) {
      if (flags.json) printJsonLine({ dataset: toJson(DatasetSchema, dataset), detached: true });
      else process.stdout.write(`${dataset.name}\n`);
      return 0;
    }
    const bar = createProgressBar('recite dataset', rows.length, flags.progress);
    let last: Dataset | undefined;
    try {
      last = await followDataset(client, dataset.name, {
        afterFinishOrder: resume.afterFinishOrder,
        includeResults: true,
        signal: controller.signal,
        onUpdate: (current, finished) => {
          for (const { row, job } of finished) {
            if (!row) continue;
            const input: DatasetFileRow = byId.get(row.id) ?? { id: row.id, text: job?.targetText ?? '' };
            writer!.add(input, row, job);
          }
          writer!.flushEmbeddings();
          bar.update(countsOf(current));
        },
      });
    } finally {
      bar.stop();
    }
    writer.close();
    const results = writer.results();
    writer = undefined;
    const seconds = (performance.now() - started) / 1000;
    if (controller.signal.aborted || !last || last.state === DatasetState.RUNNING) {
      process.stderr.write(`recite dataset: stopped; ${!connection.inProcess ? 'the data set runs on at the server; ' : ''}run the same command again to collect the rest\n`);
      if (flags.json) printJsonLine({ ...(last ? { dataset: toJson(DatasetSchema, last) } : {}), stopped: true, ...resultsJson(results, prefix, seconds) });
      return 3;
    }
    if (flags.json) printJsonLine({ dataset: toJson(DatasetSchema, last), stopped: false, ...resultsJson(results, prefix, seconds) });
    else process.stdout.write(`${summaryLines(last, results, prefix, seconds)}\n`);
    return 0;
  } finally {
    release();
    writer?.close();
    await connection.close();
  }
}

/** The results part of `dataset run --json`: where they are, iterations to hit, the hits' bits per token. */
function resultsJson(results: readonly ResultLine[], prefix: string, seconds: number) {
  const toHit = results.flatMap((r) => (r.status === 'HIT' && r.iterations_to_hit !== null ? [r.iterations_to_hit] : []));
  const bits = results.flatMap((r) => (r.status === 'HIT' && r.bits_per_token !== null ? [r.bits_per_token] : []));
  return {
    results: { jsonl: `${prefix}.jsonl`, lines: results.length, safetensors: `${prefix}.safetensors`,
      embeddings: results.filter((r) => r.embedding_shape).length },
    iterationsToHit: { median: quantile(toHit, 0.5) ?? null, p90: quantile(toHit, 0.9) ?? null },
    hitBitsPerTokenMedian: quantile(bits, 0.5) ?? null,
    seconds: Number(seconds.toFixed(1)),
  };
}

/** The closing report of a run: the data set, its outcomes, iterations to hit and where the results are. */
function summaryLines(dataset: Dataset, results: readonly ResultLine[], prefix: string, seconds: number): string {
  const c = dataset.counts!;
  const toHit = results.flatMap((r) => (r.status === 'HIT' && r.iterations_to_hit !== null ? [r.iterations_to_hit] : []));
  const bits = results.flatMap((r) => (r.status === 'HIT' && r.bits_per_token !== null ? [r.bits_per_token] : []));
  const shapes = new Set(results.flatMap((r) => (r.embedding_shape ? [r.embedding_shape.join(' x ')] : [])));
  const pct = (n: number) => `${((100 * n) / c.rows).toFixed(0)}%`;
  return [
    `data set:    ${dataset.name} (${DatasetState[dataset.state]}, model ${dataset.model})`,
    `rows:        ${c.rows}: ${c.hits} hits (${pct(c.hits)}), ${c.misses} misses, ${c.failed} failed; ${c.iterations} iterations`,
    `to hit:      ${toHit.length > 0 ? `median ${quantile(toHit, 0.5)!.toFixed(0)}, 90th percentile ${quantile(toHit, 0.9)!.toFixed(0)} iterations` : 'no hits'}`,
    `hits' NLL:   ${bits.length > 0 ? `median ${quantile(bits, 0.5)!.toFixed(2)} bits per token` : '–'}`,
    `results:     ${prefix}.jsonl (${results.length} lines), ${prefix}.safetensors (${results.filter((r) => r.embedding_shape).length} embeddings of ${[...shapes].join(', ') || '–'})`,
    `time:        ${seconds.toFixed(1)} s this run`,
  ].join('\n');
}

function countsOf(dataset: Dataset) {
  const c = dataset.counts!;
  return { rows: c.rows, finished: c.finished, hits: c.hits, misses: c.misses, failed: c.failed, iterations: Number(c.iterations) };
}

/** One line about a data set: name, state and counts. */
export function describeDataset(d: Dataset): string {
  const c = d.counts!;
  return `data set ${d.name} (${DatasetState[d.state]}, model ${d.model}): ${c.finished}/${c.rows} finished — ${c.hits} hits, ` +
    `${c.misses} misses, ${c.failed} failed; ${c.pending} pending, ${c.queued} queued, ${c.running} running; ${c.iterations} iterations`;
}
