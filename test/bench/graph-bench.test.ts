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
      onProgress: (event) => events.push(event),
    });

    expect(result.provider).toBe('cpu');
    expect(result.fallbacks).toEqual([]);
    expect(result.models.map((m) => m.name)).toEqual(['tiny']);
    expect(result.points).toHaveLength(2);
    expect(events.map((e) => e.kind)).toEqual(['matmul', 'model', 'point', 'point', 'matmul']);

    const peak = result.matmulPeak;
    expect(peak.flopsPerRun).toBe(matmulFlops({ m: 256, k: 128, n: 256 }));
    expect(peak.measurements.map((m) => m.when)).toEqual(['before', 'after']);
    expect(peak.gflopPerSecond).toBe(Math.max(...peak.measurements.map((m) => m.gflopPerSecond)));
    for (const m of peak.measurements) {
      expect(m.provider).toBe('cpu');
      expect(m.gflopPerSecond).toBeCloseTo(peak.flopsPerRun / (m.times.medianMs / 1000) / 1e9, 6);
    }

    const model = result.models[0]!;
    expect(model.config.nEmbd).toBe(32);
    expect(model.parameters).toBeGreaterThan(50257 * 32);
    expect(model.peakRssMiB).toBeGreaterThan(0);
    expect(result.peakRssMiB).toBeGreaterThanOrEqual(model.peakRssMiB);
    for (const p of result.points) {
      expect(p.times.runs).toBeGreaterThanOrEqual(1);
      for (const value of [p.times.medianMs, p.times.meanMs, p.flopsPerRun, p.gflopPerSecond, p.jobIterationsPerSecond,
        p.fractionOfPeak]) {
        expect(Number.isFinite(value) && value > 0).toBe(true);
      }
      expect(p.sequenceLength).toBe(p.promptVectors + p.targetLength - 1);
      expect(p.flopsPerRun).toBe(countGradientRunFlops(model.config, p).total);
      expect(p.gflopPerSecond).toBeCloseTo(p.flopsPerRun / (p.times.medianMs / 1000) / 1e9, 6);
      expect(p.fractionOfPeak).toBeCloseTo(p.gflopPerSecond / peak.gflopPerSecond, 12);
      expect(p.jobIterationsPerSecond).toBeCloseTo(p.batch / (p.times.medianMs / 1000), 6);
    }
    const [one, two] = result.points;
    expect([one!.batch, two!.batch]).toEqual([1, 2]);
    expect(two!.flopsPerRun).toBe(2 * one!.flopsPerRun);
    expect(JSON.parse(JSON.stringify(result))).toEqual(result); // the CLI writes it as JSON
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
    [{ models: ['gpt9' as never] }, /models: "gpt9" is not one of tiny, gpt2-random/],
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
