// The study's arithmetic and its pieces: grid parsing, quantiles, per-setting summaries (final NLL as mean ± sd of
// the per-seed means), the hit curve, CSV quoting, and the SVG plot.
import { describe, expect, it } from 'vitest';
import { GridError, parseGrid } from '../../cli/datasets/grid.js';
import { renderHitPlot } from '../../cli/datasets/hit-plot.js';
import { hitCurve, quantile, summarize, toCsv } from '../../cli/datasets/study-summary.js';
import type { StudyRun } from '../../cli/datasets/study-summary.js';

describe('parseGrid', () => {
  it('crosses the values in the order written and runs each point with every seed', () => {
    const grid = parseGrid('optimizer=rmsprop,adam lr=0.03,0.1,0.3 param=flat,full seeds=5');
    expect(grid.keys).toEqual(['optimizer', 'lr', 'param']);
    expect(grid.settings).toHaveLength(12);
    expect(grid.settings[0]).toEqual({ label: 'optimizer=rmsprop lr=0.03 param=flat', values: { optimizer: 'rmsprop', lr: '0.03', param: 'flat' },
      flags: { optimizer: 'rmsprop', lr: '0.03', param: 'flat' } });
    expect(grid.settings[11]!.label).toBe('optimizer=adam lr=0.3 param=full');
    expect(grid.seeds).toEqual([0, 1, 2, 3, 4]);
    expect(parseGrid('seed=7,9 max-iters=100 curriculum=true,false', 3)).toMatchObject({
      seeds: [7, 9], settings: [{ flags: { maxIters: '100', curriculum: true } }, { flags: { maxIters: '100', curriculum: false } }],
    });
    expect(parseGrid('seeds=2', 10)).toMatchObject({ seeds: [10, 11], settings: [{ label: 'default' }] });
    expect(parseGrid('repetition-penalty=1,1.3').settings.map((s) => s.flags)).toEqual([
      { repetitionPenalty: '1' }, { repetitionPenalty: '1.3' }]);
  });

  it('names the bad part', () => {
    expect(() => parseGrid('optimiser=adam')).toThrow(new GridError('--grid: unknown key "optimiser"; keys: param, init, optimizer, lr, schedule, lr-relative, max-iters, patience, nll-threshold, curriculum, decode, restarts, report-every, repetition-penalty, seeds, seed'));
    expect(() => parseGrid('lr=')).toThrow('--grid: "lr=" has no values; write KEY=V1,V2,…');
    expect(() => parseGrid('seeds=0')).toThrow('--grid: seeds=0: expected a count, an integer ≥ 1 (or seed=A,B,… for a list)');
    expect(() => parseGrid('seed=1,-2')).toThrow('--grid: seed -2: -2 is not an integer in [0, 4294967295]');
    expect(() => parseGrid('lr=0.1 lr=0.3')).toThrow('--grid: "lr" is given twice');
  });
});

function run(setting: string, seed: number, id: string, iterationsToHit: number | null, bestNll: number, elapsedMs = 10): StudyRun {
  return { setting, seed, id, status: iterationsToHit === null ? 'MAX_ITERATIONS' : 'HIT', iterationsToHit, iterations: iterationsToHit ?? 100,
    bestNll, elapsedMs, jobId: `${setting}/${seed}/${id}` };
}

describe('summaries', () => {
  it('interpolates quantiles as numpy does', () => {
    expect(quantile([1, 2, 3, 4], 0.5)).toBe(2.5);
    expect(quantile([10, 20, 30, 40, 50], 0.9)).toBe(46);
    expect(quantile([7], 0.9)).toBe(7);
    expect(quantile([], 0.5)).toBeNull();
  });

  it('reports hit rate, iterations to hit, time and final NLL as mean ± sd across seeds', () => {
    const runs = [
      run('a', 0, 't1', 10, 1, 100), run('a', 0, 't2', null, 3, 900), // seed 0: mean NLL 2
      run('a', 1, 't1', 20, 3, 200), run('a', 1, 't2', 30, 5, 300), // seed 1: mean NLL 4
      run('b', 0, 't1', null, 8), run('b', 0, 't2', null, 8),
    ];
    const [a, b] = summarize(['a', 'b'], runs);
    expect(a).toEqual({ setting: 'a', runs: 4, hits: 3, hitRate: 0.75, medianIterationsToHit: 20, p90IterationsToHit: 28,
      medianHitMs: 200, nllMean: 3, nllSd: Math.SQRT2 });
    expect(b).toMatchObject({ runs: 2, hits: 0, hitRate: 0, medianIterationsToHit: null, nllMean: 8, nllSd: null });
  });

  it('draws the hit curve as steps up to the budget', () => {
    const runs = [run('a', 0, 't1', 5, 1), run('a', 0, 't2', 5, 1), run('a', 0, 't3', 40, 1), run('a', 0, 't4', null, 1)];
    expect(hitCurve(runs, 100)).toEqual([{ k: 0, fraction: 0 }, { k: 5, fraction: 0.5 }, { k: 40, fraction: 0.75 }, { k: 100, fraction: 0.75 }]);
  });

  it('quotes CSV fields that need it', () => {
    expect(toCsv(['a', 'b'], [['x,y', 'say "hi"'], [1.5, null]])).toBe('a,b\n"x,y","say ""hi"""\n1.5,\n');
  });

  it('renders an SVG with one line and one legend entry per setting', async () => {
    const svg = await renderHitPlot([
      { setting: 'optimizer=adam', points: [{ k: 0, fraction: 0 }, { k: 10, fraction: 0.5 }, { k: 100, fraction: 0.5 }] },
      { setting: 'optimizer=rmsprop', points: [{ k: 0, fraction: 0 }, { k: 4, fraction: 1 }, { k: 100, fraction: 1 }] },
    ], { title: 'Hits within k iterations' });
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('optimizer=adam');
    expect(svg).toContain('optimizer=rmsprop');
    expect(svg).toContain('fraction of runs hit within k iterations');
    expect(svg.match(/class="mark-line role-mark marks"/g)?.length ?? 0).toBeGreaterThanOrEqual(1);
  });
});
