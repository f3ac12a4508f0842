import { describe, expect, it } from 'vitest';
import { formatEngineBenchReport } from '../../cli/commands/bench.js';
import type { EngineBenchEvent } from '../../server/bench/engine-bench.js';
import {
  EngineBenchOptionsError, engineBenchDefaults, engineBenchGoal, makeEngineBenchOptions, runEngineBench,
} from '../../server/bench/engine-bench.js';

const K = 5; // iterations per job
const jobCounts = [1, 4];
const repeats = 2; // turns per mode

describe('runEngineBench on the tiny model', () => {
  it('reports the same work in both modes, and batched rounds that share graph runs', async () => {
    const events: EngineBenchEvent[] = [];
    const result = await runEngineBench({
      device: 'cpu',
      models: ['tiny'],
      jobs: jobCounts,
      iterations: K,
      repeats,
      onProgress: (event) => events.push(event),
    });

    expect(result.provider).toBe('cpu');
    expect(result.models.map((m) => m.name)).toEqual(['tiny']);
    const perN = ['turn', 'turn', 'turn', 'turn', 'point', 'point', 'comparison'];
    expect(events.map((e) => e.kind)).toEqual(['model', ...perN, ...perN]);
    // The modes take turns, in alternating order.
    expect(events.flatMap((e) => (e.kind === 'turn' && e.jobs === 1 ? [[e.mode, e.turn]] : []))).toEqual([
      ['sequential', 0], ['batched', 0], ['batched', 1], ['sequential', 1]]);
    expect(result.points.map((p) => [p.jobs, p.mode])).toEqual([[1, 'sequential'], [1, 'batched'], [4, 'sequential'],
      [4, 'batched']]);

    for (const p of result.points) {
      expect(p.model).toBe('tiny');
      expect(p.targetLength).toBe(10);
      expect(p.iterationsPerJob).toBe(K);
      expect(p.jobIterations).toBe(p.jobs * K);
      expect(p.turns).toBe(repeats);
      expect(p.turnJobIterationsPerSecond).toHaveLength(repeats);
      expect(p.jobIterationsPerSecond).toBe(Math.max(...p.turnJobIterationsPerSecond)); // the fastest turn's figures
      const [a, b] = p.turnJobIterationsPerSecond;
      expect(p.medianJobIterationsPerSecond).toBeCloseTo((a! + b!) / 2, 9);
      expect(p.maxRssMiB).toBeGreaterThanOrEqual(p.rssMiB);
      for (const value of [p.seconds, p.jobIterationsPerSecond, p.cpuSeconds, p.jobIterationsPerCpuSecond,
        p.medianJobIterationsPerCpuSecond, p.graphSeconds, p.summarySeconds, p.rssMiB, p.rowsPerGraphRun]) {
        expect(Number.isFinite(value) && value > 0).toBe(true);
      }
      expect(p.jobIterationsPerSecond).toBeCloseTo(p.jobIterations / p.seconds, 6);
      expect(p.jobIterationsPerCpuSecond).toBeCloseTo(p.jobIterations / p.cpuSeconds, 6);
      expect(p.rowsPerGraphRun).toBeCloseTo(p.jobIterations / p.graphRuns, 12);
      // Every gradient graph run of the point lies inside its timed phase.
      expect(p.graphSeconds).toBeLessThanOrEqual(p.seconds);
      expect(p.hostSeconds).toBeCloseTo(p.seconds - p.graphSeconds, 12);
      // The breakdown splits the same seconds: its parts add up, the graph's two parts make graphSeconds, and every
      // part that does work in this bench (session, transfers, optimizer steps, rows) took time; no beam checks ran.
      const parts = p.breakdown;
      expect(parts.session + parts.transfers + parts.optimizer + parts.rows + parts.beams + parts.other).toBeCloseTo(p.seconds, 9);
      expect(parts.session + parts.transfers).toBeCloseTo(p.graphSeconds, 9);
      for (const part of [parts.session, parts.transfers, parts.optimizer, parts.rows]) expect(part).toBeGreaterThan(0);
      expect(parts.beams).toBe(0);
      if (p.mode === 'sequential') {
        expect(p.graphRuns).toBe(p.jobs * K); // one row per graph run
        expect(p.rowsPerGraphRun).toBe(1);
      } else if (p.jobs === 1) {
        expect(p.graphRuns).toBe(K);
      } else {
        // K rounds of N rows; one more when the first submitted job starts a round alone before the others are
        // admitted (the batcher starts its loop on the first add, and that round's rows are fixed at once).
        expect(p.graphRuns).toBeGreaterThanOrEqual(K);
        expect(p.graphRuns).toBeLessThanOrEqual(K + 1);
        expect(p.rowsPerGraphRun).toBeGreaterThanOrEqual((p.jobs * K) / (K + 1));
      }
    }

    expect(result.comparisons.map((c) => c.jobs)).toEqual(jobCounts);
    for (const c of result.comparisons) {
      const of = (mode: string) => result.points.find((p) => p.jobs === c.jobs && p.mode === mode)!;
      expect(c.sequentialPerSecond).toBe(of('sequential').jobIterationsPerSecond);
      expect(c.batchedPerSecond).toBe(of('batched').jobIterationsPerSecond);
      expect(c.ratio).toBeCloseTo(c.batchedPerSecond / c.sequentialPerSecond, 12);
      expect(c.medianRatio).toBeCloseTo(of('batched').medianJobIterationsPerSecond /
        of('sequential').medianJobIterationsPerSecond, 12);
      expect(c.cpuRatio).toBeCloseTo(of('batched').medianJobIterationsPerCpuSecond /
        of('sequential').medianJobIterationsPerCpuSecond, 12);
      // The same jobs with the same seeds: sharing graph runs must not change where a search ends.
      expect(c.maxBestNllDifference).toBeLessThan(1e-4);
    }

    // The goal is about the 124M shape, which this run left out.
    expect(result.goal).toEqual({ ...engineBenchGoal, ratios: [], met: null, peakRssMiB: null });
    const model = result.models[0]!;
    expect(model.iterationsPerJob).toBe(K);
    expect(model.rssAfterLoadMiB).toBeGreaterThan(0);
    expect(model.peakRssMiB).toBeGreaterThan(0);
    expect(result.peakRssMiB).toBeGreaterThanOrEqual(model.peakRssMiB);
    expect(result.settings.iterations.tiny).toBe(K);
    expect(result.settings.repeats).toBe(repeats);
    expect(JSON.parse(JSON.stringify(result))).toEqual(result); // the CLI writes it as JSON

    const report = formatEngineBenchReport(result);
    expect(report).toMatch(/^provider cpu \(asked cpu\)/);
    expect(report.split('\n').filter((line) => line.startsWith('│ tiny'))).toHaveLength(4 + 4 + 2); // points, parts, ratios
    expect(report).toContain('% optimizer');
    expect(report).toContain('not measured');
  });

  it('refuses a target longer than the model\'s context before running a job', async () => {
    const events: EngineBenchEvent[] = [];
    await expect(runEngineBench({ device: 'cpu', models: ['tiny'], jobs: [1], iterations: 1, repeats: 1,
      targetLengths: [4, 65], onProgress: (e) => events.push(e) })).rejects.toThrow(/targetLengths: 65 tokens with 1 prompt vector need 65 positions; tiny has 64/);
    expect(events.some((e) => e.kind === 'point')).toBe(false);
  });
});

describe('makeEngineBenchOptions', () => {
  it('fills in the defaults', () => {
    const options = makeEngineBenchOptions();
    expect(options.jobs).toEqual([1, 8, 64]);
    expect(options.targetLengths).toEqual([10]);
    expect(options.models).toEqual(['tiny', 'gpt2-random']);
    expect(options.iterations).toEqual({ tiny: 100, english: 30, 'gpt2-random': 10 });
    expect(options.maxBatch).toBe(64);
    expect(options.repeats).toBe(3);
    expect(Object.isFrozen(engineBenchDefaults)).toBe(true);
  });

  it('takes the iterations as one number for every model, or per model', () => {
    expect(makeEngineBenchOptions({ iterations: 3 }).iterations).toEqual({ tiny: 3, english: 3, 'gpt2-random': 3 });
    expect(makeEngineBenchOptions({ iterations: { 'gpt2-random': 4 } }).iterations).toEqual({ tiny: 100, english: 30, 'gpt2-random': 4 });
  });

  it.each([
    [{ jobs: [] }, /jobs: empty/],
    [{ jobs: [0] }, /jobs: 0 is not an integer/],
    [{ targetLengths: [2.5] }, /targetLengths: 2.5/],
    [{ iterations: 0 }, /iterations.tiny: 0/],
    [{ maxBatch: -1 }, /maxBatch: -1/],
    [{ repeats: 0 }, /repeats: 0/],
    [{ seed: -1 }, /seed: -1/],
    [{ models: [] }, /models: empty/],
    [{ models: ['gpt9' as never] }, /models: "gpt9" is not one of tiny, english, gpt2-random/],
  ])('refuses %j', (partial, message) => {
    expect(() => makeEngineBenchOptions(partial)).toThrow(EngineBenchOptionsError);
    expect(() => makeEngineBenchOptions(partial)).toThrow(message);
  });
});
