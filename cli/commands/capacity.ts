// `recite capacity`: how many tokens can P vectors make the model recite? For each text (a file, or reachable
// targets the server samples), grow the prefix one token at a time until the search misses within its budget; the
// longest prefix hit is the text's capacity. Reports each text and the mean and median tokens per vector.
import Table from 'cli-table3';
import type { Command } from 'commander';
import type { Transport } from '@connectrpc/connect';
import { InvalidArgumentError } from 'commander';
import { Status } from '../../sdk/index.js';
import type { InvertOptions, ReciteClient, ResultEvent } from '../../sdk/index.js';
import { printJsonLine } from '../json-events.js';
import { parseParameterization, positiveInteger } from '../options.js';
import { createDatasetClient } from '../datasets/dataset-client.js';
import { readDatasetFile } from '../datasets/dataset-file.js';
import { addSettingsOptions, settingsFromFlags } from '../settings-options.js';
import type { SettingsFlags } from '../settings-options.js';
import { quantile } from '../datasets/study-summary.js';
import { connectForDatasets, withDatasetServerOptions } from './dataset.js';
import type { ServerFlags } from './dataset.js';

interface CapacityFlags extends SettingsFlags, ServerFlags {
  reachable: string;
  reachableTokens: string;
  reachableSeed: string;
  start: string;
  concurrency: string;
  json?: boolean;
}

/** One text's outcome. */
export interface TextCapacity {
  id: string;
  /** Tokens the text has (the most a search can be asked for). */
  tokens: number;
  /** The longest prefix recited exactly (0: not even the first token). */
  capacity: number;
  tokensPerVector: number;
  /** The whole text was recited: its capacity is at least its length. */
  whole: boolean;
  /** Optimizer steps to the hit of the longest prefix. */
  iterationsToHit: number | null;
  /** The first length missed, how, and its best NLL. */
  missedAt: { tokens: number; status: string; bestNll: number } | null;
  recited: string;
}

export function registerCapacityCommand(program: Command): void {
  const command = program.command('capacity')
    .description('find the longest prefix of each text that P vectors make the model recite exactly, growing it until the search misses')
    .argument('[file]', 'texts (one per line, or JSONL with id and text or target_ids); without it, reachable targets')
    .option('--reachable <n>', 'without FILE: sample N reachable targets (greedy continuations of hidden random prompts)', '20')
    .option('--reachable-tokens <t>', 'tokens per reachable target (the most a prefix can grow to)', '32')
    .option('--reachable-seed <s>', 'seed of the first hidden prompt', '0')
    .option('--start <t>', 'the first prefix length tried', '1')
    .option('--concurrency <n>', 'texts searched at once (their jobs share graph runs)', '64')
    .option('--json', 'print one JSON object (one line): every text and the summary');
  addSettingsOptions(command, { param: 'flat', reportEvery: '100000' });
  withDatasetServerOptions(command).action(async (file: string | undefined, flags: CapacityFlags) => {
    process.exitCode = await capacity(file, flags);
  });
}

async function capacity(file: string | undefined, flags: CapacityFlags): Promise<number> {
  const parameterization = parseParameterization(flags.param);
  if (parameterization.kind === 'full' && parameterization.promptVectors === undefined) {
    throw new InvalidArgumentError('--param full: capacity needs a fixed number of vectors; use flat, full:P or projected:K');
  }
  const P = parameterization.kind === 'full' ? parameterization.promptVectors! : 1;
  const settings = settingsFromFlags(flags);
  const start = positiveInteger('--start', flags.start);
  const concurrency = positiveInteger('--concurrency', flags.concurrency);
  const { connection, model } = await connectForDatasets(flags, undefined);
  try {
    const client = connection.client;
    const models = await client.listModels();
    const served = models.find((m) => (model ? m.name === model : m.isDefault));
    if (!served) throw new Error(`model ${model || '(default)'} is not served; models: ${models.map((m) => m.name).join(', ')}`);
    const maxTokens = served.nPositions - P;
    const texts = file ? await readTexts(client, file, model) : await sampleTexts(connection, model, flags, P);
    const results: TextCapacity[] = new Array(texts.length);
    let next = 0;
    const worker = async () => {
      while (next < texts.length) {
        const i = next++;
        const text = texts[i]!;
        results[i] = await grow(client, text.id, text.ids.slice(0, maxTokens), { ...settings, model }, start, P);
        if (!flags.json) process.stderr.write(`recite capacity: ${describe(results[i]!)}\n`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, texts.length) }, worker));
    const perVector = results.map((r) => r.tokensPerVector);
    const summary = {
      texts: results.length,
      promptVectors: P,
      param: flags.param,
      maxIterations: settings.maxIterations ?? 1000,
      model: served.name,
      meanTokensPerVector: perVector.reduce((s, v) => s + v, 0) / perVector.length,
      medianTokensPerVector: quantile(perVector, 0.5)!,
      whole: results.filter((r) => r.whole).length,
    };
    if (flags.json) {
      printJsonLine({ summary, texts: results });
      return 0;
    }
    const table = new Table({
      head: ['text', 'tokens', 'capacity', 'per vector', 'it to hit', 'missed at', 'recited prefix'],
      colAligns: ['left', 'right', 'right', 'right', 'right', 'left', 'left'],
      style: { head: [], border: [], compact: true },
    });
    for (const r of results) {
      table.push([r.id, String(r.tokens), `${r.whole ? '≥' : ''}${r.capacity}`, r.tokensPerVector.toFixed(2),
        r.iterationsToHit === null ? '–' : String(r.iterationsToHit),
        r.missedAt ? `${r.missedAt.tokens} (${r.missedAt.status}, NLL ${r.missedAt.bestNll.toFixed(2)})` : '–',
        JSON.stringify(r.recited.length > 40 ? `${r.recited.slice(0, 39)}…` : r.recited)]);
    }
    process.stdout.write(`${table.toString()}\n`);
    process.stdout.write(`capacity: mean ${summary.meanTokensPerVector.toFixed(2)}, median ${summary.medianTokensPerVector.toFixed(2)} ` +
      `tokens per vector over ${summary.texts} texts (${flags.param}, P = ${P}, at most ${summary.maxIterations} iterations per ` +
      `length, model ${summary.model})${summary.whole > 0 ? `; ${summary.whole} recited whole (capacity at least their length)` : ''}\n`);
    return 0;
  } finally {
    await connection.close();
  }
}

/** Grow a text's prefix from `start` tokens until the search misses; return the longest prefix hit. */
async function grow(client: ReciteClient, id: string, ids: readonly number[], options: InvertOptions & { model: string },
  start: number, P: number): Promise<TextCapacity> {
  let capacity = 0;
  let iterationsToHit: number | null = null;
  let recited = '';
  let missedAt: TextCapacity['missedAt'] = null;
  for (let length = Math.min(start, ids.length); length <= ids.length; length++) {
    const result = await invertOnce(client, ids.slice(0, length), options);
    const best = result.restarts[result.best]!;
    if (result.status !== Status.HIT) {
      missedAt = { tokens: length, status: Status[result.status], bestNll: best.bestNll };
      break;
    }
    capacity = length;
    iterationsToHit = best.iterationsToHit ?? null;
    recited = result.targetText;
  }
  return { id, tokens: ids.length, capacity, tokensPerVector: capacity / P, whole: missedAt === null, iterationsToHit, missedAt, recited };
}

async function invertOnce(client: ReciteClient, ids: readonly number[], options: InvertOptions & { model: string }): Promise<ResultEvent> {
  for await (const event of client.invert(ids, options)) {
    if (event.type === 'result') return event;
  }
  throw new Error(`the event stream of a ${ids.length}-token search ended before its result`);
}

async function readTexts(client: ReciteClient, file: string, model: string): Promise<{ id: string; ids: number[] }[]> {
  const rows = readDatasetFile(file);
  return Promise.all(rows.map(async (row) => ({
    id: row.id,
    ids: row.targetIds ?? [...(await client.tokenize(row.text, { model })).ids],
  })));
}

async function sampleTexts(connection: { transport: Transport }, model: string, flags: CapacityFlags, P: number) {
  const { targets } = await createDatasetClient(connection).sampleReachableTargets({
    model,
    count: positiveInteger('--reachable', flags.reachable),
    tokens: positiveInteger('--reachable-tokens', flags.reachableTokens),
    promptVectors: P,
    seed: positiveInteger('--reachable-seed', flags.reachableSeed, 0),
  });
  return targets.map((t) => ({ id: t.id, ids: [...t.targetIds] }));
}

function describe(r: TextCapacity): string {
  const miss = r.missedAt ? `missed ${r.missedAt.tokens} tokens (${r.missedAt.status}, best NLL ${r.missedAt.bestNll.toFixed(2)})` : 'recited whole';
  return `${r.id}: ${r.whole ? '≥' : ''}${r.capacity} of ${r.tokens} tokens; ${miss}`;
}
