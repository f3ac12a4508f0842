// `recite study-report DIR`: the tables and figures of a study laid out as docs/study/run.sh lays it out (one folder
// per part with its runs.csv, capacity/*.json, score.jsonl, wall-times.csv), written beside them: tables.md (every
// table docs/study.md quotes) and one SVG per question that a part's own hit curve does not answer.
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { parse as parseCsv } from 'csv-parse/sync';
import type { TopLevelSpec } from 'vega-lite';
import { parseGpt2Config } from '../../server/model/checkpoint.js';
import { resolveModelDir } from '../../server/model/builtin-models.js';
import { renderVegaLiteSvg } from '../../server/util/vega-svg.js';
import { hitCurve, isHit } from '../datasets/study-summary.js';
import { renderHitPlot } from '../datasets/hit-plot.js';
import {
  capacityCurve, capacitySummary, compareWithScore, distinctRows, markdownTable, rankCorrelationBetween, seedAgreement, settingRows,
} from '../datasets/study-report.js';
import type { CapacityText, ReportRun, ScoredText, SettingRow } from '../datasets/study-report.js';

/** The parts docs/study/run.sh runs, in the order the report presents them. */
const parts = ['optimizers', 'parameterization', 'curriculum', 'initialization', 'lr-relative', 'decode-greedy', 'decode-beam'];
/** The baseline setting, as the optimizers part labels it: full, RMSProp, lr 0.1, greedy, random init. */
const baseline = { part: 'optimizers', setting: 'optimizer=rmsprop' };

export function registerStudyReportCommand(program: Command): void {
  program.command('study-report')
    .description('draw the tables (tables.md) and figures of a study laid out as docs/study/run.sh lays it out')
    .argument('<dir>', 'the study folder: one folder per part with runs.csv, capacity/, score.jsonl, wall-times.csv')
    .option('--model <name|dir>', 'the model the study ran on (for its width)', 'english')
    .action(async (dir: string, flags: { model: string }) => {
      const nEmbd = parseGpt2Config(path.join(resolveModelDir(flags.model), 'config.json')).nEmbd;
      const written = await writeStudyReport(dir, nEmbd);
      process.stdout.write(`wrote ${written.map((f) => path.join(dir, f)).join(', ')}\n`);
    });
}

/** Write tables.md and the figures into `dir`; return the files written. */
export async function writeStudyReport(dir: string, nEmbd: number): Promise<string[]> {
  const runs = parts.filter((part) => fs.existsSync(path.join(dir, part, 'runs.csv')))
    .flatMap((part) => readRuns(path.join(dir, part, 'runs.csv'), part));
  if (runs.length === 0) throw new Error(`${dir}: no part has a runs.csv (parts: ${parts.join(', ')})`);
  const scores = readScores(path.join(dir, 'score.jsonl'));
  const tokensOf = new Map([...scores].map(([id, s]) => [id, s.tokens]));
  const wall = readWallTimes(path.join(dir, 'wall-times.csv'));
  const rows = settingRows(runs, tokensOf, nEmbd);
  const rowsOf = (part: string) => rows.filter((r) => r.part === part);
  const runsOf = (part: string, setting?: string) => runs.filter((r) => r.part === part && (setting === undefined || r.setting === setting));
  const sections: string[] = [];
  const files: string[] = ['tables.md'];
  const figure = async (name: string, spec: Promise<string>) => {
    fs.writeFileSync(path.join(dir, name), await spec);
    files.push(name);
  };

  for (const part of ['optimizers', 'curriculum', 'initialization', 'lr-relative']) {
    if (rowsOf(part).length === 0) continue;
    sections.push(`## ${part}\n\n${settingTable(rowsOf(part), false)}\n\nwall time of the part: ${seconds(wall.get(part))}`);
  }
  if (rowsOf('parameterization').length > 0) {
    sections.push(`## parameterization\n\n${settingTable(rowsOf('parameterization'), true)}\n\n` +
      `wall time of the part: ${seconds(wall.get('parameterization'))}`);
    await figure('hit-rate-vs-parameters.svg', renderVegaLiteSvg(hitRateVsParameters(rowsOf('parameterization'))));
  }

  // Stopping at the hit against a fixed budget: what every setting's runs saved.
  sections.push(`## stop at the hit against a fixed budget\n\n${markdownTable(
    ['part', 'setting', 'runs', 'hit rate', 'iterations run', 'fixed budget', 'saved', 'saved by the hits alone'],
    distinctRows(rows, runs).map((r) => {
      const hits = runs.filter((run) => run.part === r.part && run.setting === r.setting && isHit(run));
      const hitBudget = hits.reduce((s, run) => s + run.maxIterations, 0);
      const hitIterations = hits.reduce((s, run) => s + run.iterations, 0);
      return [r.part, r.setting, String(r.runs), percent(r.hitRate), String(r.iterations), String(r.budgetIterations),
        percent(1 - r.iterations / r.budgetIterations), hits.length > 0 ? percent(1 - hitIterations / hitBudget) : '–'];
    }), ['l', 'l'])}`);

  // Hit checks: each decode part ran alone, so its wall time over its iterations is the time per iteration.
  const decodeRows = ['decode-greedy', 'decode-beam'].flatMap((part) => rowsOf(part));
  if (decodeRows.length > 0) {
    const msPerIteration = (r: SettingRow) => (wall.has(r.part) ? (1000 * wall.get(r.part)!) / r.iterations : null);
    const greedy = decodeRows.find((r) => r.part === 'decode-greedy');
    sections.push(`## hit checks\n\n${markdownTable(
      ['setting', 'runs', 'hit rate', 'median it to hit', 'iterations run', 'wall time', 'ms per job-iteration', 'against greedy'],
      decodeRows.map((r) => {
        const ms = msPerIteration(r);
        const base = greedy ? msPerIteration(greedy) : null;
        return [r.setting, String(r.runs), percent(r.hitRate), fixed(r.medianIterationsToHit, 0), String(r.iterations),
          seconds(wall.get(r.part)), fixed(ms, 2), ms !== null && base !== null ? `${(ms / base).toFixed(2)}×` : '–'];
      }))}`);
    await figure('decode-hit-curve.svg', renderHitPlot(decodeRows.map((r) => ({
      setting: r.setting, points: hitCurve(runsOf(r.part), Math.max(...runsOf(r.part).map((run) => run.maxIterations))),
    })), { title: 'Hits within k iterations: greedy against beam hit checks', subtitle: subtitleOf(runsOf('decode-greedy')) }));
  }

  // Stability: how the seeds agree, for the settings that vary the start.
  const stabilitySettings = [
    { part: 'optimizers', setting: 'optimizer=rmsprop', label: 'init random, lr 0.1 (baseline)' },
    { part: 'initialization', setting: 'init=mean', label: 'init mean' },
    { part: 'lr-relative', setting: 'lr-relative=true', label: 'lr relative to the embedding norm' },
  ].filter((s) => runsOf(s.part, s.setting).length > 0);
  if (stabilitySettings.length > 0) {
    const agreements = stabilitySettings.map((s) => seedAgreement(s.label, runsOf(s.part, s.setting)));
    sections.push(`## stability over seeds\n\n${markdownTable(
      ['setting', 'targets', 'seeds', 'hit by every seed', 'by some', 'by none', 'mean sd of the best NLL across seeds'],
      agreements.map((a) => [a.setting, String(a.targets), String(a.seeds), String(a.hitByAll), String(a.hitBySome),
        String(a.hitByNone), a.meanNllSdAcrossSeeds.toFixed(2)]))}`);
    await figure('seed-agreement.svg', renderVegaLiteSvg(seedAgreementChart(agreements)));
  }

  // Capacity: one vector, natural sentences against reachable targets.
  const capacity = readCapacity(path.join(dir, 'capacity'));
  if (capacity.length > 0) {
    sections.push(`## capacity of one vector\n\n${markdownTable(
      ['texts', 'seed', 'count', 'mean tokens', 'median', 'p90', 'recited whole', 'wall time'],
      capacity.map((c) => {
        const s = capacitySummary(c.texts);
        return [c.source, String(c.seed), String(s.texts), s.mean.toFixed(2), fixed(s.median, 1), fixed(s.p90, 1), String(s.whole),
          seconds(wall.get(`capacity-${c.source}-${c.seed}`))];
      }))}`);
    await figure('capacity.svg', renderVegaLiteSvg(capacityChart(capacity)));
  }

  // Likelihoods: the optimized NLL of each run beside the model's own NLL of the text after <|endoftext|>.
  if (scores.size > 0) {
    const compared = distinctRows([...rowsOf('optimizers'), ...rowsOf('parameterization')], runs);
    const baseRuns = runsOf(baseline.part, baseline.setting);
    sections.push(`## likelihoods across settings\n\n${markdownTable(
      ['part', 'setting', 'runs', 'rank correlation with the score', 'median optimized / scored NLL', 'rank correlation with the baseline'],
      compared.map((r) => {
        const mine = runsOf(r.part, r.setting);
        const c = compareWithScore(r.setting, mine, scores);
        return [r.part, r.setting, String(c.pairs), c.rankCorrelationWithScore.toFixed(2), c.medianRatioToScore.toFixed(3),
          baseRuns.length > 0 ? rankCorrelationBetween(mine, baseRuns).toFixed(2) : '–'];
      }), ['l', 'l'])}`);
    await figure('nll-vs-score.svg', renderVegaLiteSvg(nllVsScore(compared.map((r) => ({
      setting: r.setting, runs: runsOf(r.part, r.setting),
    })), scores)));
  }

  fs.writeFileSync(path.join(dir, 'tables.md'),
    `<!-- written by \`recite study-report ${dir}\` from the files beside it; docs/study.md quotes these tables -->\n\n` +
    `${sections.join('\n\n')}\n`);
  return files;
}

function readRuns(file: string, part: string): ReportRun[] {
  const records = parseCsv(fs.readFileSync(file, 'utf8'), { columns: true, skip_empty_lines: true }) as Record<string, string>[];
  return records.map((r) => ({
    part,
    setting: r['setting']!,
    seed: Number(r['seed']),
    id: r['id']!,
    status: r['status']!,
    iterationsToHit: r['iterations_to_hit'] === '' ? null : Number(r['iterations_to_hit']),
    iterations: Number(r['iterations']),
    bestNll: r['best_nll'] === '' ? null : Number(r['best_nll']),
    param: r['param'] ?? 'full',
    maxIterations: Number(r['max_iterations']),
    jobId: r['job_id']!,
  }));
}

function readScores(file: string): Map<string, ScoredText> {
  if (!fs.existsSync(file)) return new Map();
  const lines = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
  // Data sets number the lines of a text file from 1.
  return new Map(lines.map((line, i) => {
    const scored = JSON.parse(line) as { tokens: number; nll_sum: number };
    return [String(i + 1), { id: String(i + 1), tokens: scored.tokens, nllSum: scored.nll_sum }];
  }));
}

function readWallTimes(file: string): Map<string, number> {
  if (!fs.existsSync(file)) return new Map();
  return new Map(fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => {
    const [name, value] = line.split(',');
    return [name!, Number(value)];
  }));
}

function readCapacity(dir: string): { source: string; seed: number; texts: CapacityText[] }[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).sort().flatMap((file) => {
    const match = /^(\w+)-seed-(\d+)\.json$/.exec(file);
    if (!match) return [];
    const report = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as { texts: CapacityText[] };
    return [{ source: match[1]!, seed: Number(match[2]), texts: report.texts }];
  });
}

function settingTable(rows: readonly SettingRow[], withParameters: boolean): string {
  return markdownTable(
    ['setting', ...(withParameters ? ['parameters'] : []), 'runs', 'hit rate', 'median it to hit', 'iterations run (of the budget)',
      'final NLL, mean ± sd over seeds'],
    rows.map((r) => [r.setting, ...(withParameters ? [r.parameters.toFixed(0)] : []), String(r.runs),
      `${percent(r.hitRate)} (${r.hits})`, fixed(r.medianIterationsToHit, 0),
      `${r.iterations} (${percent(r.iterations / r.budgetIterations)})`,
      r.nllMean === null ? '–' : `${r.nllMean.toFixed(2)} ± ${fixed(r.nllSdAcrossSeeds, 2)}`]));
}

function hitRateVsParameters(rows: readonly SettingRow[]): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'Hit rate against the number of optimized parameters', subtitle: `${rows[0]!.runs} runs per setting`, anchor: 'start' },
    width: 520, height: 300, background: 'white', padding: 12,
    data: { values: rows.map((r) => ({ setting: r.setting.replace(/^param=/, ''), parameters: r.parameters, hitRate: r.hitRate })) },
    layer: [
      { mark: { type: 'point', filled: true, size: 90 } },
      { mark: { type: 'text', dx: 8, align: 'left' }, encoding: { text: { field: 'setting' } } },
    ],
    encoding: {
      x: { field: 'parameters', type: 'quantitative', title: 'optimized parameters per target (log)', scale: { type: 'log', domain: [8, 4096] } },
      y: { field: 'hitRate', type: 'quantitative', title: 'hit rate', scale: { domain: [0, 1] }, axis: { format: '%' } },
    },
    config: { font: 'sans-serif', axis: { grid: true, gridOpacity: 0.4 } },
  };
}

function seedAgreementChart(agreements: readonly ReturnType<typeof seedAgreement>[]): TopLevelSpec {
  const kinds = ['hit by every seed', 'by some seeds', 'by none'];
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'Do the seeds agree? Targets by how many of their seeds hit', anchor: 'start' },
    width: 520, height: 40 * agreements.length, background: 'white', padding: 12,
    data: { values: agreements.flatMap((a) => [a.hitByAll, a.hitBySome, a.hitByNone].map((targets, i) => ({ setting: a.setting, kind: kinds[i], order: i, targets }))) },
    mark: 'bar',
    encoding: {
      y: { field: 'setting', type: 'nominal', title: null, sort: agreements.map((a) => a.setting), axis: { labelLimit: 300 } },
      x: { field: 'targets', type: 'quantitative', title: 'targets', stack: 'zero' },
      color: { field: 'kind', type: 'nominal', title: null, sort: kinds, scale: { domain: kinds, range: ['#1b9e77', '#e6ab02', '#bbbbbb'] }, legend: { orient: 'bottom' } },
      order: { field: 'order' },
    },
    config: { font: 'sans-serif' },
  };
}

function capacityChart(capacity: readonly { source: string; seed: number; texts: CapacityText[] }[]): TopLevelSpec {
  const maxLength = Math.max(...capacity.flatMap((c) => c.texts.map((t) => t.tokens)));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'How many tokens one vector makes the model recite', subtitle: 'fraction of texts whose prefix of L tokens is recited exactly, one line per seed', anchor: 'start' },
    width: 520, height: 300, background: 'white', padding: 12,
    data: { values: capacity.flatMap((c) => capacityCurve(c.texts, maxLength).map((p) => ({ source: c.source, seed: `${c.source} ${c.seed}`, ...p }))) },
    mark: { type: 'line', point: true, strokeWidth: 2 },
    encoding: {
      x: { field: 'length', type: 'quantitative', title: 'target length L (tokens)', axis: { tickMinStep: 1 } },
      y: { field: 'fraction', type: 'quantitative', title: 'recited exactly', scale: { domain: [0, 1] }, axis: { format: '%' } },
      color: { field: 'source', type: 'nominal', title: 'texts', scale: { scheme: 'dark2' }, legend: { orient: 'bottom' } },
      detail: { field: 'seed' },
    },
    config: { font: 'sans-serif', axis: { grid: true, gridOpacity: 0.4 } },
  };
}

function nllVsScore(settings: readonly { setting: string; runs: ReportRun[] }[], scores: ReadonlyMap<string, ScoredText>): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'Optimized NLL against the model\'s NLL of the same text', subtitle: 'one point per run; nats summed over the target', anchor: 'start' },
    width: 520, height: 340, background: 'white', padding: 12,
    data: { values: settings.flatMap((s) => s.runs.filter((r) => r.bestNll !== null && scores.has(r.id))
      .map((r) => ({ setting: s.setting, scored: scores.get(r.id)!.nllSum, optimized: r.bestNll }))) },
    mark: { type: 'point', filled: true, opacity: 0.55, size: 28 },
    encoding: {
      x: { field: 'scored', type: 'quantitative', title: 'NLL after <|endoftext|> (recite score)' },
      y: { field: 'optimized', type: 'quantitative', title: 'best NLL under the optimized prompt' },
      color: { field: 'setting', type: 'nominal', title: 'setting', sort: settings.map((s) => s.setting), scale: { scheme: 'dark2' }, legend: { orient: 'bottom', columns: 2 } },
      shape: { field: 'setting', type: 'nominal', sort: settings.map((s) => s.setting) },
    },
    config: { font: 'sans-serif', axis: { grid: true, gridOpacity: 0.4 } },
  };
}

function subtitleOf(runs: readonly ReportRun[]): string {
  return `${new Set(runs.map((r) => r.id)).size} targets × ${new Set(runs.map((r) => r.seed)).size} seeds per setting`;
}

function percent(fraction: number): string {
  return `${(100 * fraction).toFixed(0)}%`;
}

function fixed(value: number | null, digits: number): string {
  return value === null ? '–' : value.toFixed(digits);
}

function seconds(value: number | undefined): string {
  return value === undefined ? '–' : `${value.toFixed(0)} s`;
}
