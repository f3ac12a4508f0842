// The fleet bench, small: an api server and one, then two, worker servers (child processes of the built CLI) on a
// throwaway PostgreSQL database each; every job finishes once, both workers take part, and the figures are real.
import { describe, expect, it } from 'vitest';
import { formatFleetReport } from '../../cli/commands/bench.js';
import { percentile, runFleetBench } from '../../server/bench/fleet-bench.js';
import { adminUrl } from '../helpers/postgres.js';

describe('runFleetBench on the tiny model', () => {
  it('runs every job once at W = 1 and 2, spread over both workers, with finite figures', async () => {
    const lines: string[] = [];
    // Four jobs held per worker at most: one worker cannot take all twelve, so the second must take some.
    const result = await runFleetBench({
      adminUrl, workers: [1, 2], jobs: 12, iterations: 30, maxHeldJobs: 4, threads: 1, timeoutSeconds: 50,
      onProgress: (line) => lines.push(line),
    });
    expect(result.points.map((p) => p.workers)).toEqual([1, 2]);
    for (const p of result.points) {
      expect(p.finishedJobs).toBe(12);
      expect(p.jobsWithOneResult).toBe(12);
      expect(p.resultEvents).toBe(12);
      expect(Object.values(p.jobsPerWorker).reduce((a, b) => a + b, 0)).toBe(12);
      for (const x of [p.wallSeconds, p.jobIterationsPerSecond, p.claimMs.p50, p.claimMs.p95, p.claimMs.max,
        p.longestResultGapMs]) {
        expect(Number.isFinite(x)).toBe(true);
        expect(x).toBeGreaterThan(0);
      }
      expect(p.claimMs.p50).toBeLessThanOrEqual(p.claimMs.p95);
      expect(p.claimMs.p95).toBeLessThanOrEqual(p.claimMs.max);
      // Every server's memory, read from its metrics: the api server, which loads no model, holds less than a worker.
      expect(Object.keys(p.rssMiB).sort()).toEqual(['api', ...Object.keys(p.jobsPerWorker)].sort());
      for (const [name, mib] of Object.entries(p.rssMiB)) if (name !== 'api') expect(p.rssMiB.api).toBeLessThan(mib);
    }
    expect(Object.keys(result.points[0]!.jobsPerWorker)).toEqual(['w1']);
    const two = result.points[1]!.jobsPerWorker;
    expect(Object.keys(two).sort()).toEqual(['w1', 'w2']);
    expect(two.w1).toBeGreaterThanOrEqual(1);
    expect(two.w2).toBeGreaterThanOrEqual(1);
    expect(result.ratios).toHaveLength(1);
    expect(result.ratios[0]!.workers).toBe(2);
    expect(Number.isFinite(result.ratios[0]!.ratio) && result.ratios[0]!.ratio > 0).toBe(true);

    const report = formatFleetReport(result);
    console.log(report);
    expect(report).toMatch(/job-it\/s against W=1 in the same run: W=2 \d+\.\d\dx/);
    expect(report).toMatch(/RSS of the api server \(no model weights or graphs\) against a worker's in the same run: 0\.\d\dx/);
    expect(lines.some((line) => line.startsWith('W=2: '))).toBe(true);
  });

  it('takes nearest-rank percentiles', () => {
    const values = [5, 1, 4, 2, 3];
    expect(percentile(values, 0.5)).toBe(3);
    expect(percentile(values, 0.95)).toBe(5);
    expect(percentile([7], 0.5)).toBe(7);
  });
});
