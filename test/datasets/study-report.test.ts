// `recite study-report` on a small study laid out as docs/study/run.sh lays it out (test/fixtures/study-report): every
// table's numbers are worked out by hand in the comments, and each figure names what it plots.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { writeStudyReport } from '../../cli/commands/study-report.js';
import { capacityCurve, optimizedParameters } from '../../cli/datasets/study-report.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixture = path.join(here, '..', 'fixtures', 'study-report');

/** The cells of the Markdown table that follows `## heading` in tables.md, keyed by each row's first cells. */
function table(markdown: string, heading: string): string[][] {
  const at = markdown.indexOf(`## ${heading}\n`);
  expect(at, `tables.md has a section "${heading}"`).toBeGreaterThanOrEqual(0);
  const lines = markdown.slice(at).split('\n').slice(2);
  return lines.slice(0, lines.findIndex((l) => !l.startsWith('|'))).slice(2)
    .map((l) => l.split('|').slice(1, -1).map((c) => c.trim()));
}

describe('recite study-report', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-study-report-'));
  fs.cpSync(fixture, dir, { recursive: true });
  const written = writeStudyReport(dir, 192);

  it('writes tables.md and one figure per question the hit curves do not answer', async () => {
    expect(await written).toEqual(['tables.md', 'hit-rate-vs-parameters.svg', 'decode-hit-curve.svg', 'seed-agreement.svg',
      'capacity.svg', 'nll-vs-score.svg']);
    const svg = (name: string) => fs.readFileSync(path.join(dir, name), 'utf8');
    expect(svg('hit-rate-vs-parameters.svg')).toContain('Hit rate against the number of optimized parameters');
    expect(svg('hit-rate-vs-parameters.svg')).toContain('>projected:16<');
    expect(svg('capacity.svg')).toContain('>reachable<');
    expect(svg('nll-vs-score.svg')).toContain('recite score');
  });

  it('summarizes each setting: hit rate, median iterations to hit, iterations run of the budget, NLL over seeds', async () => {
    await written;
    const md = fs.readFileSync(path.join(dir, 'tables.md'), 'utf8');
    // rmsprop: hits at 20, 60 (seed 0) and 40 (seed 1) of 6 runs; 20+60+100+40+100+100 = 420 of 600 iterations; seed
    // means of the best NLL 14/3 and 18.5/3, their mean 5.42 and sd 1.5/√2 = 1.06.
    expect(table(md, 'optimizers')).toEqual([
      ['optimizer=rmsprop', '6', '50% (3)', '40', '420 (70%)', '5.42 ± 1.06'],
      ['optimizer=sgd', '6', '0% (0)', '–', '600 (100%)', '21.00 ± 1.41'],
    ]);
    expect(md).toContain('wall time of the part: 43 s'); // 42.5 s in wall-times.csv
    // full optimizes one vector per target token (2, 3, 4 tokens: 3 × 192 on average), flat C = 192, projected:16 16.
    expect(table(md, 'parameterization').map((r) => r.slice(0, 3))).toEqual([['param=full', '576', '6'], ['param=flat', '192', '3'],
      ['param=projected:16', '16', '3']]);
  });

  it('counts what stopping at the hit saved against a fixed budget', async () => {
    await written;
    const rows = table(fs.readFileSync(path.join(dir, 'tables.md'), 'utf8'), 'stop at the hit against a fixed budget');
    // rmsprop: 420 of 600 run, 30% saved; its three hits ran 120 of 300, 60% saved.
    expect(rows[0]).toEqual(['optimizers', 'optimizer=rmsprop', '6', '50%', '420', '600', '30%', '60%']);
    expect(rows[1]).toEqual(['optimizers', 'optimizer=sgd', '6', '0%', '600', '600', '0%', '–']);
    // param=full is the same data set as optimizer=rmsprop (the same jobs): counted once.
    expect(rows.map((r) => r[1])).toEqual(['optimizer=rmsprop', 'optimizer=sgd', 'param=flat', 'param=projected:16', 'decode=greedy',
      'decode=beam:4']);
  });

  it('divides each decode part\'s wall time by its iterations, and compares beam with greedy', async () => {
    await written;
    const rows = table(fs.readFileSync(path.join(dir, 'tables.md'), 'utf8'), 'hit checks');
    // greedy: 11 s over 110 iterations = 100 ms; beam: 8 s over 40 = 200 ms, 2×.
    expect(rows).toEqual([
      ['decode=greedy', '2', '50%', '10', '110', '11 s', '100.00', '1.00×'],
      ['decode=beam:4', '2', '100%', '20', '40', '8 s', '200.00', '2.00×'],
    ]);
  });

  it('counts, target by target, how many seeds hit', async () => {
    await written;
    const rows = table(fs.readFileSync(path.join(dir, 'tables.md'), 'utf8'), 'stability over seeds');
    // Target 1 hit by both seeds, 2 by one, 3 by none; sd of the best NLL 0.35, 1.41, 1.41: mean 1.06.
    expect(rows).toEqual([['init random, lr 0.1 (baseline)', '3', '2', '1', '1', '1', '1.06']]);
  });

  it('ranks optimized likelihoods against the model\'s score and against the baseline', async () => {
    await written;
    const rows = table(fs.readFileSync(path.join(dir, 'tables.md'), 'utf8'), 'likelihoods across settings');
    // rmsprop's best NLL over the score (10, 20, 30 by target): 0.2, 0.15, 0.3, 0.25, 0.25, 0.37: median 0.25.
    expect(rows[0]!.slice(0, 3)).toEqual(['optimizers', 'optimizer=rmsprop', '6']);
    expect(rows[0]![4]).toBe('0.250');
    expect(rows[0]![5]).toBe('1.00');
    expect(Number(rows[0]![3])).toBeGreaterThan(0.5);
    expect(rows.map((r) => r[1])).toEqual(['optimizer=rmsprop', 'optimizer=sgd', 'param=flat', 'param=projected:16']);
  });

  it('draws the capacity curve over the texts long enough for each length', () => {
    const texts = [{ id: '1', tokens: 4, capacity: 4, whole: true }, { id: '2', tokens: 6, capacity: 2, whole: false },
      { id: '3', tokens: 6, capacity: 0, whole: false }];
    const curve = capacityCurve(texts, 6);
    expect(curve[0]).toEqual({ length: 1, fraction: 2 / 3, texts: 3 });
    expect(curve[3]).toEqual({ length: 4, fraction: 1 / 3, texts: 3 });
    expect(curve[4]).toEqual({ length: 5, fraction: 0, texts: 2 }); // the 4-token text no longer counts
    expect(optimizedParameters('full', 9, 192)).toBe(9 * 192);
    expect(optimizedParameters('full:4', 9, 192)).toBe(4 * 192);
    expect(() => optimizedParameters('half', 9, 192)).toThrow('expected flat, full[:P] or projected:K');
  });
});
