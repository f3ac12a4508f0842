import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { countGradientRunFlops } from '../../server/bench/flops.js';
import type { GraphBenchEvent } from '../../server/bench/graph-bench.js';
import { GraphBenchOptionsError, graphBenchDefaults, makeGraphBenchOptions, runGraphBench } from '../../server/bench/graph-bench.js';
import { matmulFlops } from '../../server/bench/matmul-peak.js';
import { defaultRandomGpt2Dir } from '../../server/bench/random-gpt2.js';

describe('runGraphBench on the tiny model', () => {
  it('reports finite, consistent figures', async () => {
    const events: GraphBenchEvent[] = [];
    const result = await runGraphBench({
      device: 'cpu',
      models: ['tiny'],
      batches: [1, 2],
      targetLengths: [4],
      minRuns: 1,
      minSeconds: 0,
      // A small peak MatMul keeps the test quick; the default shape is for real figures.
      matmul: { m: 256, k: 128, n: 256 },
      probe: { probeSeconds: 0, probeEverySeconds: 1 },
      onProgress: (event) => events.push(event),
    });

    expect(result.provider).toBe('cpu');
    expect(result.fallbacks).toEqual([]);
    expect(result.models.map((m) => m.name)).toEqual(['tiny']);
    expect(result.points).toHaveLength(2);
    expect(events.map((e) => e.kind)).toEqual(['matmul', 'model', 'point', 'point']);

    const peak = result.matmulPeak;
    expect(peak.provider).toBe('cpu');
    expect(peak.flopsPerRun).toBe(matmulFlops({ m: 256, k: 128, n: 256 }));
    expect(peak.bestGflopPerSecond).toBe(Math.max(...result.points.map((p) => p.matmulGflopPerSecond)));
    expect(peak.worstGflopPerSecond).toBe(Math.min(...result.points.map((p) => p.matmulGflopPerSecond)));
    expect(peak.bestRunGflopPerSecond).toBe(Math.max(...result.points.map((p) => p.matmulBestGflopPerSecond)));

    const model = result.models[0]!;
    expect(model.config.nEmbd).toBe(32);
    expect(model.parameters).toBeGreaterThan(50257 * 32);
    expect(model.peakRssMiB).toBeGreaterThan(0);
    expect(result.peakRssMiB).toBeGreaterThanOrEqual(model.peakRssMiB);
    for (const p of result.points) {
      expect(p.times.runs).toBeGreaterThanOrEqual(1);
      expect(p.matmulProbes).toBeGreaterThanOrEqual(2); // before the first run and after the last
      expect(p.matmulTimes.runs).toBeGreaterThanOrEqual(2 * p.matmulProbes);
      for (const value of [p.times.medianMs, p.times.meanMs, p.flopsPerRun, p.gflopPerSecond, p.jobIterationsPerSecond,
        p.matmulGflopPerSecond, p.fractionOfPeak]) {
        expect(Number.isFinite(value) && value > 0).toBe(true);
      }
      // The session's share of a run: positive, and inside the run (the rest makes inputs and reads outputs).
      expect(p.sessionMedianMs).toBeGreaterThan(0);
      expect(p.sessionMedianMs).toBeLessThanOrEqual(p.times.maxMs);
      expect(p.sequenceLength).toBe(p.promptVectors + p.targetLength - 1);
      expect(p.flopsPerRun).toBe(countGradientRunFlops(model.config, p).total);
      expect(p.gflopPerSecond).toBeCloseTo(p.flopsPerRun / (p.times.medianMs / 1000) / 1e9, 6);
      expect(p.matmulGflopPerSecond).toBeCloseTo(peak.flopsPerRun / (p.matmulBesideRunMs / 1000) / 1e9, 6);
      expect(p.matmulBesideRunMs).toBeGreaterThanOrEqual(p.matmulTimes.minMs);
      expect(p.matmulBesideRunMs).toBeLessThanOrEqual(p.matmulTimes.maxMs);
      expect(p.fractionOfPeak).toBeCloseTo(p.gflopPerSecond / p.matmulGflopPerSecond, 12);
      expect(p.jobIterationsPerSecond).toBeCloseTo(p.batch / (p.times.medianMs / 1000), 6);
      expect(p.bestGflopPerSecond).toBeCloseTo(p.flopsPerRun / (p.times.minMs / 1000) / 1e9, 6);
      expect(p.matmulBestGflopPerSecond).toBeCloseTo(peak.flopsPerRun / (p.matmulTimes.minMs / 1000) / 1e9, 6);
      expect(p.bestFractionOfPeak).toBeCloseTo(p.bestGflopPerSecond / p.matmulBestGflopPerSecond, 12);
      expect(p.bestGflopPerSecond).toBeGreaterThanOrEqual(p.gflopPerSecond);
    }
    const [one, two] = result.points;
    expect([one!.batch, two!.batch]).toEqual([1, 2]);
    expect(two!.flopsPerRun).toBe(2 * one!.flopsPerRun);
    expect(JSON.parse(JSON.stringify(result))).toEqual(result); // the CLI writes it as JSON
  });
});

describe('runGraphBench refusals', () => {
  it('refuses a target longer than the model\'s context before timing anything', async () => {
    const events: GraphBenchEvent[] = [];
    await expect(runGraphBench({ device: 'cpu', models: ['tiny'], targetLengths: [4, 65], matmul: { m: 8, k: 8, n: 8 },
      onProgress: (e) => events.push(e) })).rejects.toThrow(/targetLengths: 65 tokens with 1 prompt vectors need 65 positions; tiny has 64/);
    expect(events.some((e) => e.kind === 'point')).toBe(false);
  });
});

describe('makeGraphBenchOptions', () => {
  it('fills in the defaults', () => {
    const options = makeGraphBenchOptions();
    expect(options.batches).toEqual([1, 8, 64]);
    expect(options.targetLengths).toEqual([10, 32]);
    expect(options.models).toEqual(['tiny', 'gpt2-random']);
    expect(options.promptVectors).toBe(1);
    expect(Object.isFrozen(graphBenchDefaults)).toBe(true);
  });

  it.each([
    [{ batches: [] }, /batches: empty/],
    [{ batches: [0] }, /batches: 0 is not an integer/],
    [{ targetLengths: [2.5] }, /targetLengths: 2.5/],
    [{ minRuns: 0 }, /minRuns: 0/],
    [{ minSeconds: -1 }, /minSeconds: -1/],
    [{ probe: { probeSeconds: Number.NaN, probeEverySeconds: 1 } }, /probe.probeSeconds: NaN/],
    [{ models: ['gpt9' as never] }, /models: "gpt9" is not one of tiny, english, gpt2-random/],
  ])('refuses %j', (partial, message) => {
    expect(() => makeGraphBenchOptions(partial)).toThrow(GraphBenchOptionsError);
    expect(() => makeGraphBenchOptions(partial)).toThrow(message);
  });
});

describe('defaultRandomGpt2Dir', () => {
  it('follows RECITE_CACHE_DIR, else ~/.cache/recite', () => {
    expect(defaultRandomGpt2Dir({ RECITE_CACHE_DIR: '/srv/cache' })).toBe(path.join('/srv/cache', 'gpt2-random-124m'));
    expect(defaultRandomGpt2Dir({})).toMatch(/[/\\]\.cache[/\\]recite[/\\]gpt2-random-124m$/);
  });
});
