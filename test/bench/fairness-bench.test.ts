// The fairness bench, small: it measures the light job alone twice and beside the heavy load in one run, reports
// what each client was charged meanwhile, and prints the ratio against the goal.
import { describe, expect, it } from 'vitest';
import { formatFairnessReport } from '../../cli/commands/bench.js';
import { runFairnessBench } from '../../server/bench/fairness-bench.js';

describe('runFairnessBench on the tiny model', () => {
  it('times the light job alone, beside the heavy client and alone again, and charges both clients meanwhile', async () => {
    const lines: string[] = [];
    const result = await runFairnessBench({
      device: 'cpu', heavyJobs: 2, heavyRestarts: 2, heavyBeams: 4, lightIterations: 30, timeoutSeconds: 60, repeats: 2,
      onProgress: (line) => lines.push(line),
    });
    expect(result.provider).toBe('cpu');
    expect(result.besideFinished).toBe(true);
    expect(result.aloneSeconds).toHaveLength(4); // 2 before the load, 2 after
    expect(result.besideSeconds).toHaveLength(2);
    expect([...result.aloneSeconds, ...result.besideSeconds].every((s) => s > 0)).toBe(true);
    // Medians of two: the means of each pair.
    const mid = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return (s[1]! + s[2]!) / 2; };
    expect(result.ratio).toBeCloseTo(((result.besideSeconds[0]! + result.besideSeconds[1]!) / 2) / mid(result.aloneSeconds), 10);
    // Both clients were served while the light job ran beside the load.
    expect(result.chargedSecondsBeside.light).toBeGreaterThan(0);
    expect(result.chargedSecondsBeside.heavy).toBeGreaterThan(0);
    expect(lines).toHaveLength(4);
    const report = formatFairnessReport(result);
    console.log(report);
    expect(report).toContain('heavy client: 2 jobs x 2 restarts, beam-4 hit check every iteration');
    expect(report).toMatch(/ratio: +\d+\.\d\dx \(goal: at most 2x, (met|NOT met)\)/);
  });
});
