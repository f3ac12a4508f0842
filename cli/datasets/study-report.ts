// The numbers of a study report (docs/study.md): from the runs.csv of several `recite study` parts, the capacity JSON
// of `recite capacity --json`, the per-text scores of `recite score --json` and the parts' wall times, the tables
// that answer each question. Pure functions: cli/commands/study-report.ts reads the files and draws the figures.
import { mean, median, quantile, sampleRankCorrelation, sampleStandardDeviation } from 'simple-statistics';
import { isHit } from './study-summary.js';
import type { StudyRun } from './study-summary.js';

/** One run of a study part: a row of its runs.csv (the columns `recite study` writes, without the elapsed time). */
export interface ReportRun extends Omit<StudyRun, 'elapsedMs'> {
  part: string;
  /** The parameterization flag of the run ("full", "flat", "projected:16"). */
  param: string;
  maxIterations: number;
}

/** One text as `recite score --json` printed it; `id` is its line number, as data sets number text lines. */
export interface ScoredText {
  id: string;
  tokens: number;
  nllSum: number;
}

/** One text of `recite capacity --json`. */
export interface CapacityText {
  id: string;
  tokens: number;
  capacity: number;
  whole: boolean;
}

/** What a table row says about one setting of one part. */
export interface SettingRow {
  part: string;
  setting: string;
  runs: number;
  hits: number;
  hitRate: number;
  medianIterationsToHit: number | null;
  /** Iterations run, summed over the runs (each run stops at its hit). */
  iterations: number;
  /** What a fixed budget would have run: runs × max iterations. */
  budgetIterations: number;
  /** Mean over seeds of each seed's mean best NLL (nats, summed over the target). */
  nllMean: number | null;
  nllSdAcrossSeeds: number | null;
  /** Optimized parameters per run, mean over the runs (full: P × C with P the target's tokens). */
  parameters: number;
}

/** Return the number of numbers a parameterization optimizes for a target of `tokens` tokens. */
export function optimizedParameters(param: string, tokens: number, nEmbd: number): number {
  const [kind, size] = param.split(':');
  if (kind === 'flat') return nEmbd;
  if (kind === 'projected') return Number(size);
  if (kind === 'full') return (size === undefined ? tokens : Number(size)) * nEmbd;
  throw new Error(`parameterization "${param}": expected flat, full[:P] or projected:K`);
}

/** Summarize each setting of the runs, in the order the settings first appear. */
export function settingRows(runs: readonly ReportRun[], tokensOf: ReadonlyMap<string, number>, nEmbd: number): SettingRow[] {
  const keys = [...new Set(runs.map((r) => `${r.part}\u0000${r.setting}`))];
  return keys.map((key) => {
    const mine = runs.filter((r) => `${r.part}\u0000${r.setting}` === key);
    const hits = mine.filter(isHit);
    const perSeed = [...new Set(mine.map((r) => r.seed))]
      .map((seed) => mine.filter((r) => r.seed === seed && r.bestNll !== null).map((r) => r.bestNll!))
      .filter((nlls) => nlls.length > 0)
      .map((nlls) => mean(nlls));
    return {
      part: mine[0]!.part,
      setting: mine[0]!.setting,
      runs: mine.length,
      hits: hits.length,
      hitRate: hits.length / mine.length,
      medianIterationsToHit: hits.length > 0 ? median(hits.map((r) => r.iterationsToHit!)) : null,
      iterations: sum(mine.map((r) => r.iterations)),
      budgetIterations: sum(mine.map((r) => r.maxIterations)),
      nllMean: perSeed.length > 0 ? mean(perSeed) : null,
      nllSdAcrossSeeds: perSeed.length > 1 ? sampleStandardDeviation(perSeed) : null,
      parameters: mean(mine.map((r) => optimizedParameters(r.param, tokensOf.get(r.id) ?? 0, nEmbd))),
    };
  });
}

/** How the seeds of one setting agree, target by target. */
export interface SeedAgreement {
  setting: string;
  targets: number;
  seeds: number;
  /** Targets hit by every seed, by some but not all, by none. */
  hitByAll: number;
  hitBySome: number;
  hitByNone: number;
  /** Mean over the targets of the sd of the best NLL across seeds. */
  meanNllSdAcrossSeeds: number;
}

export function seedAgreement(setting: string, runs: readonly ReportRun[]): SeedAgreement {
  const seeds = new Set(runs.map((r) => r.seed)).size;
  const byTarget = groupBy(runs, (r) => r.id);
  let all = 0;
  let some = 0;
  let none = 0;
  const sds: number[] = [];
  for (const target of byTarget.values()) {
    const hits = target.filter(isHit).length;
    if (hits === target.length) all++;
    else if (hits > 0) some++;
    else none++;
    const nlls = target.filter((r) => r.bestNll !== null).map((r) => r.bestNll!);
    if (nlls.length > 1) sds.push(sampleStandardDeviation(nlls));
  }
  return { setting, targets: byTarget.size, seeds, hitByAll: all, hitBySome: some, hitByNone: none,
    meanNllSdAcrossSeeds: sds.length > 0 ? mean(sds) : 0 };
}

/** One setting's optimized NLL set beside the model's own NLL of the same texts. */
export interface LikelihoodComparison {
  setting: string;
  pairs: number;
  /** Spearman's rank correlation between the optimized NLL and the scored NLL, over the runs. */
  rankCorrelationWithScore: number;
  /** Median over the runs of optimized NLL / scored NLL. */
  medianRatioToScore: number;
}

export function compareWithScore(setting: string, runs: readonly ReportRun[], scores: ReadonlyMap<string, ScoredText>):
  LikelihoodComparison {
  const pairs = runs.filter((r) => r.bestNll !== null && scores.has(r.id))
    .map((r) => ({ optimized: r.bestNll!, scored: scores.get(r.id)!.nllSum }));
  return {
    setting,
    pairs: pairs.length,
    rankCorrelationWithScore: sampleRankCorrelation(pairs.map((p) => p.optimized), pairs.map((p) => p.scored)),
    medianRatioToScore: median(pairs.map((p) => p.optimized / p.scored)),
  };
}

/** Spearman's rank correlation of two settings' optimized NLL, target by target (each target's mean over seeds). */
export function rankCorrelationBetween(a: readonly ReportRun[], b: readonly ReportRun[]): number {
  const meanOf = (runs: readonly ReportRun[]) => new Map([...groupBy(runs.filter((r) => r.bestNll !== null), (r) => r.id)]
    .map(([id, rs]) => [id, mean(rs.map((r) => r.bestNll!))]));
  const ma = meanOf(a);
  const mb = meanOf(b);
  const ids = [...ma.keys()].filter((id) => mb.has(id));
  return sampleRankCorrelation(ids.map((id) => ma.get(id)!), ids.map((id) => mb.get(id)!));
}

/** The capacity curve: for each target length L, the fraction of texts (long enough) whose recited prefix reaches L. */
export function capacityCurve(texts: readonly CapacityText[], maxLength: number): { length: number; fraction: number; texts: number }[] {
  const points: { length: number; fraction: number; texts: number }[] = [];
  for (let length = 1; length <= maxLength; length++) {
    const eligible = texts.filter((t) => t.tokens >= length);
    if (eligible.length === 0) break;
    points.push({ length, fraction: eligible.filter((t) => t.capacity >= length).length / eligible.length, texts: eligible.length });
  }
  return points;
}

/** Mean, median and 90th percentile of the capacities (tokens recited by one vector), and how many were recited whole. */
export function capacitySummary(texts: readonly CapacityText[]): { texts: number; mean: number; median: number; p90: number; whole: number } {
  const capacities = texts.map((t) => t.capacity);
  return { texts: texts.length, mean: mean(capacities), median: median(capacities), p90: quantile(capacities, 0.9),
    whole: texts.filter((t) => t.whole).length };
}

/** Render rows as a Markdown table; numbers are formatted by the caller. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[], align?: readonly ('l' | 'r')[]): string {
  const rule = header.map((_, i) => ((align?.[i] ?? (i === 0 ? 'l' : 'r')) === 'r' ? '---:' : '---'));
  return [header, rule, ...rows].map((row) => `| ${row.join(' | ')} |`).join('\n');
}

/**
 * Keep the first of the settings whose runs are the same jobs (a setting two parts share is one data set, read
 * twice), so that a table over every part counts each run once.
 */
export function distinctRows(rows: readonly SettingRow[], runs: readonly ReportRun[]): SettingRow[] {
  const seen = new Set<string>();
  return rows.filter((row) => {
    const jobs = runs.filter((r) => r.part === row.part && r.setting === row.setting).map((r) => r.jobId).sort().join(',');
    if (seen.has(jobs)) return false;
    seen.add(jobs);
    return true;
  });
}

function sum(values: readonly number[]): number {
  return values.reduce((s, v) => s + v, 0);
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}
