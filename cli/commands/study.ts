// `recite study`: run a data set under every setting of a grid and every seed (each pair one server-side data set,
// named by its content, so a rerun collects instead of repeating), then compare the settings: a table, CSV files
// and a plot of the fraction of runs that hit within k iterations.
import { setMaxListeners } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import Table from 'cli-table3';
import type { Command } from 'commander';
import { toJobSettings } from '../../sdk/index.js';
import { Status } from '../../sdk/index.js';
import type { Dataset } from '../../sdk/gen/recite/v1/dataset_pb.js';
import { onInterrupt } from '../interrupt.js';
import { printJsonLine } from '../json-events.js';
import { positiveInteger } from '../options.js';
import { createDatasetClient } from '../datasets/dataset-client.js';
import { readDatasetFile } from '../datasets/dataset-file.js';
import { parseGrid } from '../datasets/grid.js';
import { renderHitPlot } from '../datasets/hit-plot.js';
import { createProgressBar } from '../datasets/progress-bar.js';
import { followDataset, submitDataset } from '../datasets/run-dataset.js';
import { addSettingsOptions, settingsFromFlags } from '../settings-options.js';
import type { SettingsFlags } from '../settings-options.js';
import { hitCurve, summarize, toCsv } from '../datasets/study-summary.js';
import type { SettingSummary, StudyRun } from '../datasets/study-summary.js';
import { connectForDatasets, withDatasetServerOptions } from './dataset.js';
import type { ServerFlags } from './dataset.js';

interface StudyFlags extends SettingsFlags, ServerFlags {
  grid: string;
  out?: string;
  db?: string;
  progress: boolean;
  logIterations?: boolean;
  json?: boolean;
}

export function registerStudyCommand(program: Command): void {
  const command = program.command('study')
    .description('run FILE under each setting of --grid and each seed; print a summary per setting, write CSV and a hit-rate plot')
    .argument('<file>', 'the data set file (text lines, or JSONL with id and text or target_ids)')
    .requiredOption('--grid <spec>', 'settings to cross, e.g. "optimizer=rmsprop,adam lr=0.03,0.1,0.3 param=flat,full seeds=5"')
    .option('--out <dir>', 'folder for runs.csv, summary.csv and hit-curve.svg (default: FILE without extension + .study)')
    .option('--db <file>', 'in this process: the server\'s database (default: OUT/study.db, so a rerun resumes)')
    .option('--log-iterations', 'plot iterations on a log axis')
    .option('--no-progress', 'no progress bar')
    .option('--json', 'print one JSON object per setting (its values and summary) instead of the table');
  addSettingsOptions(command);
  withDatasetServerOptions(command).action(async (file: string, flags: StudyFlags) => {
    process.exitCode = await study(file, flags);
  });
}

async function study(file: string, flags: StudyFlags): Promise<number> {
  const rows = readDatasetFile(file);
  const grid = parseGrid(flags.grid, positiveInteger('--seed', flags.seed, 0));
  const runsPlanned = grid.settings.flatMap((setting) => grid.seeds.map((seed) => ({ setting, seed })));
  // Check every setting before anything is submitted: a typo in the last one should not cost the first ones' work.
  const planned = runsPlanned.map((p) => {
    const settingFlags = { ...flags, ...p.setting.flags, seed: String(p.seed) };
    return { ...p, maxIterations: Number(settingFlags.maxIters), settings: toJobSettings(settingsFromFlags(settingFlags)) };
  });
  const outDir = flags.out ?? path.join(path.dirname(file), `${path.basename(file).replace(/\.[^.]*$/, '')}.study`);
  fs.mkdirSync(outDir, { recursive: true });
  const { connection, model } = await connectForDatasets(flags, flags.db ?? path.join(outDir, 'study.db'));
  const controller = new AbortController();
  // One signal stops every data set's stream: a listener each, as many as the grid has points and seeds.
  setMaxListeners(0, controller.signal);
  const release = onInterrupt(() => controller.abort());
  try {
    const client = createDatasetClient(connection);
    const submitted: (typeof planned[number] & { dataset: Dataset })[] = [];
    for (const p of planned) {
      const { dataset } = await submitDataset(client, { name: '', model, settings: p.settings, rows });
      submitted.push({ ...p, dataset });
    }
    process.stderr.write(`recite study: ${grid.settings.length} settings × ${grid.seeds.length} seeds × ${rows.length} targets ` +
      `= ${submitted.length * rows.length} runs in ${submitted.length} data sets\n`);
    const latest = new Map<string, Dataset>(submitted.map((s) => [s.dataset.name, s.dataset]));
    const runs: StudyRun[] = [];
    const bar = createProgressBar('recite study', submitted.length * rows.length, flags.progress);
    const redraw = () => {
      const all = [...latest.values()].map((d) => d.counts!);
      bar.update({
        rows: all.reduce((s, c) => s + c.rows, 0),
        finished: all.reduce((s, c) => s + c.finished, 0),
        hits: all.reduce((s, c) => s + c.hits, 0),
        misses: all.reduce((s, c) => s + c.misses, 0),
        failed: all.reduce((s, c) => s + c.failed, 0),
        iterations: all.reduce((s, c) => s + Number(c.iterations), 0),
      });
    };
    try {
      await Promise.all(submitted.map((s) => followDataset(client, s.dataset.name, {
        afterFinishOrder: 0,
        includeResults: false,
        signal: controller.signal,
        onUpdate: (dataset, finished) => {
          latest.set(dataset.name, dataset);
          for (const { row } of finished) {
            if (!row) continue;
            runs.push({
              setting: s.setting.label, seed: s.seed, id: row.id, status: Status[row.status] ?? 'UNSPECIFIED',
              iterationsToHit: row.iterationsToHit ?? null, iterations: row.iterations,
              bestNll: row.status === Status.FAILED && row.jobId === '' ? null : row.bestNll,
              elapsedMs: row.elapsedMs, jobId: row.jobId,
            });
          }
          redraw();
        },
      })));
    } finally {
      bar.stop();
    }
    if (controller.signal.aborted) {
      process.stderr.write(`recite study: stopped; ${connection.inProcess ? '' : 'the data sets run on at the server; '}` +
        'run the same command again to collect\n');
      return 3;
    }
    const labels = grid.settings.map((s) => s.label);
    const summaries = summarize(labels, runs);
    const valuesOf = new Map(grid.settings.map((s) => [s.label, s.values]));
    if (flags.json) {
      for (const s of summaries) printJsonLine({ ...s, values: valuesOf.get(s.setting) ?? {}, seeds: grid.seeds.length });
    } else {
      process.stdout.write(`${summaryTable(summaries, grid.seeds.length)}\n`);
    }
    const order = new Map(rows.map((r, i) => [r.id, i]));
    runs.sort((a, b) => labels.indexOf(a.setting) - labels.indexOf(b.setting) || a.seed - b.seed || order.get(a.id)! - order.get(b.id)!);
    // Each run's parameterization and budget go in too (when the grid does not vary them), so that runs.csv alone
    // says what was optimized and for how long (`recite study-report` reads them).
    const paramOf = (setting: string) => valuesOf.get(setting)!['param'] ?? flags.param;
    const budgetOf = new Map(planned.map((p) => [p.setting.label, p.maxIterations]));
    const extraKeys = grid.keys.includes('param') ? [] : ['param'];
    fs.writeFileSync(path.join(outDir, 'runs.csv'), toCsv(
      ['setting', ...grid.keys, 'seed', 'id', 'status', 'iterations_to_hit', 'iterations', 'best_nll', 'elapsed_ms', 'job_id',
        ...extraKeys, 'max_iterations'],
      runs.map((r) => [r.setting, ...grid.keys.map((k) => valuesOf.get(r.setting)![k] ?? null), r.seed, r.id, r.status,
        r.iterationsToHit, r.iterations, r.bestNll, round(r.elapsedMs, 3), r.jobId,
        ...(extraKeys.length > 0 ? [paramOf(r.setting)] : []), budgetOf.get(r.setting) ?? null])));
    fs.writeFileSync(path.join(outDir, 'summary.csv'), toCsv(
      ['setting', ...grid.keys, 'runs', 'hits', 'hit_rate', 'median_iterations_to_hit', 'p90_iterations_to_hit', 'median_hit_ms',
        'final_nll_mean', 'final_nll_sd'],
      summaries.map((s) => [s.setting, ...grid.keys.map((k) => valuesOf.get(s.setting)![k] ?? null), s.runs, s.hits,
        round(s.hitRate, 4), round(s.medianIterationsToHit, 2), round(s.p90IterationsToHit, 2), round(s.medianHitMs, 3), round(s.nllMean, 4),
        round(s.nllSd, 4)])));
    const maxIterations = Math.max(...planned.map((p) => p.maxIterations || 1000));
    const svg = await renderHitPlot(grid.settings.map((s) => ({
      setting: s.label,
      points: hitCurve(runs.filter((r) => r.setting === s.label), maxIterations),
    })), {
      title: `Hits within k iterations: ${path.basename(file)}`,
      subtitle: `${rows.length} targets × ${grid.seeds.length} seeds per setting, model ${model || 'default'}`,
      logIterations: flags.logIterations ?? false,
    });
    fs.writeFileSync(path.join(outDir, 'hit-curve.svg'), svg);
    // With --json stdout holds only the JSON lines.
    (flags.json ? process.stderr : process.stdout)
      .write(`wrote ${['runs.csv', 'summary.csv', 'hit-curve.svg'].map((f) => path.join(outDir, f)).join(', ')}\n`);
    return 0;
  } finally {
    release();
    await connection.close();
  }
}

function summaryTable(summaries: readonly SettingSummary[], seeds: number): string {
  const table = new Table({
    head: ['setting', 'runs', 'hit rate', 'median it', 'p90 it', 'median time to hit', `final NLL (${seeds} seeds)`],
    colAligns: ['left', 'right', 'right', 'right', 'right', 'right', 'right'],
    style: { head: [], border: [], compact: true },
  });
  for (const s of summaries) {
    table.push([
      s.setting,
      String(s.runs),
      `${(100 * s.hitRate).toFixed(0)}% (${s.hits})`,
      s.medianIterationsToHit === null ? '–' : s.medianIterationsToHit.toFixed(0),
      s.p90IterationsToHit === null ? '–' : s.p90IterationsToHit.toFixed(0),
      s.medianHitMs === null ? '–' : `${s.medianHitMs.toFixed(0)} ms`,
      s.nllMean === null ? '–' : `${s.nllMean.toFixed(2)} ± ${s.nllSd === null ? '–' : s.nllSd.toFixed(2)}`,
    ]);
  }
  return table.toString();
}

function round(value: number | null, digits: number): number | null {
  return value === null ? null : Number(value.toFixed(digits));
}
