// A study's numbers: per setting, the hit rate over every target and seed, iterations to hit (median and 90th
// percentile over the hits), the median search time of the hits, and the final NLL as mean ± sd across seeds (each
// seed's mean over the targets); and the curve of the fraction of runs that hit within k iterations.

/** One run: one target under one setting and one seed. */
export interface StudyRun {
  setting: string;
  seed: number;
  id: string;
  status: string;
  iterationsToHit: number | null;
  iterations: number;
  bestNll: number | null;
  elapsedMs: number;
  jobId: string;
}

/** One setting's summary. */
export interface SettingSummary {
  setting: string;
  runs: number;
  hits: number;
  hitRate: number;
  medianIterationsToHit: number | null;
  p90IterationsToHit: number | null;
  medianHitMs: number | null;
  nllMean: number | null;
  /** Sample standard deviation across seeds; null with one seed. */
  nllSd: number | null;
}

/** Whether a run hit (and so has an iteration of its hit). */
export function isHit(run: Pick<StudyRun, 'status' | 'iterationsToHit'>): boolean {
  return run.status === 'HIT' && run.iterationsToHit !== null;
}

/** Summarize each setting's runs, in the order of `settings`. */
export function summarize(settings: readonly string[], runs: readonly StudyRun[]): SettingSummary[] {
  return settings.map((setting) => {
    const mine = runs.filter((r) => r.setting === setting);
    const hits = mine.filter(isHit);
    const toHit = hits.map((r) => r.iterationsToHit!);
    const perSeed = [...new Set(mine.map((r) => r.seed))].map((seed) => {
      const nlls = mine.filter((r) => r.seed === seed && r.bestNll !== null).map((r) => r.bestNll!);
      return nlls.length > 0 ? mean(nlls) : null;
    }).filter((v): v is number => v !== null);
    return {
      setting,
      runs: mine.length,
      hits: hits.length,
      hitRate: mine.length > 0 ? hits.length / mine.length : 0,
      medianIterationsToHit: quantile(toHit, 0.5),
      p90IterationsToHit: quantile(toHit, 0.9),
      medianHitMs: quantile(hits.map((r) => r.elapsedMs), 0.5),
      nllMean: perSeed.length > 0 ? mean(perSeed) : null,
      nllSd: perSeed.length > 1 ? Math.sqrt(perSeed.reduce((s, v) => s + (v - mean(perSeed)) ** 2, 0) / (perSeed.length - 1)) : null,
    };
  });
}

/**
 * Return the hit curve of one setting's runs: (k, fraction of runs whose hit came within k iterations), one point
 * where the fraction steps up, from (0, share hit at 0) to (`maxIterations`, hit rate).
 */
export function hitCurve(runs: readonly Pick<StudyRun, 'status' | 'iterationsToHit'>[], maxIterations: number):
  { k: number; fraction: number }[] {
  if (runs.length === 0) return [];
  const hits = runs.filter(isHit).map((r) => r.iterationsToHit!).sort((a, b) => a - b);
  const points = [{ k: 0, fraction: hits.filter((k) => k === 0).length / runs.length }];
  hits.forEach((k, i) => {
    if (k === 0 || hits[i + 1] === k) return;
    points.push({ k, fraction: (i + 1) / runs.length });
  });
  points.push({ k: Math.max(maxIterations, hits.at(-1) ?? 0), fraction: hits.length / runs.length });
  return points;
}

/** Return the q-quantile by linear interpolation between order statistics (numpy's default), or null for none. */
export function quantile(values: readonly number[], q: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const position = (sorted.length - 1) * q;
  const low = Math.floor(position);
  const high = Math.ceil(position);
  return sorted[low]! + (sorted[high]! - sorted[low]!) * (position - low);
}

function mean(values: readonly number[]): number {
  return values.reduce((s, v) => s + v, 0) / values.length;
}

/** Quote a CSV field when it needs it (RFC 4180). */
export function csvField(value: string | number | null): string {
  if (value === null) return '';
  const text = String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** Join rows into CSV text with a header. */
export function toCsv(header: readonly string[], rows: readonly (readonly (string | number | null)[])[]): string {
  return [header, ...rows].map((row) => row.map(csvField).join(',')).join('\n') + '\n';
}
