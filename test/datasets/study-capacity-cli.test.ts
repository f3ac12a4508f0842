// The CLI end to end, each command in its own process with an in-process server: `dataset reachable` writes
// targets; `study` crosses 2 × 2 settings with 3 seeds and writes the table, the CSV files and the plot, and run
// again collects the same runs instead of repeating them; `capacity` reports tokens per vector.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readJsonLines, runCli } from './processes.js';

let dir: string;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-study-'));
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function csv(file: string): string[][] {
  return fs.readFileSync(file, 'utf8').trim().split('\n').map((line) => line.split(','));
}

describe('recite study and recite capacity', () => {
  it('dataset reachable, then a 2 × 2 × 3-seed study: table, runs.csv, summary.csv, hit-curve.svg; a rerun repeats nothing', async () => {
    const targets = path.join(dir, 'targets.jsonl');
    await runCli(['dataset', 'reachable', '--count', '4', '--tokens', '6', '--seed', '3', '--model', 'tiny', '--device', 'cpu', '--out', targets]);
    const rows = readJsonLines<{ id: string; text: string; target_ids: number[] }>(targets);
    expect(rows.map((r) => r.id)).toEqual(['reachable-3-0', 'reachable-3-1', 'reachable-3-2', 'reachable-3-3']);
    expect(rows.every((r) => r.target_ids.length === 6)).toBe(true);

    const out = path.join(dir, 'study');
    const args = ['study', targets, '--grid', 'optimizer=rmsprop,adam param=flat,full seeds=3', '--max-iters', '100',
      '--out', out, '--no-progress', '--model', 'tiny', '--device', 'cpu'];
    const first = await runCli(args);
    expect(first.stderr).toContain('4 settings × 3 seeds × 4 targets = 48 runs in 12 data sets');
    for (const setting of ['optimizer=rmsprop param=flat', 'optimizer=rmsprop param=full', 'optimizer=adam param=flat', 'optimizer=adam param=full']) {
      expect(first.stdout).toMatch(new RegExp(`│ ${setting} +│ +12 │ +\\d+% \\(\\d+\\) │`));
    }
    expect(first.stdout).toContain('final NLL (3 seeds)');
    const runs = csv(path.join(out, 'runs.csv'));
    expect(runs[0]).toEqual(['setting', 'optimizer', 'param', 'seed', 'id', 'status', 'iterations_to_hit', 'iterations', 'best_nll', 'elapsed_ms', 'job_id',
      'max_iterations']);
    expect(runs.slice(1).every((r) => r[11] === '100')).toBe(true); // the budget of every run, from --max-iters
    expect(runs).toHaveLength(1 + 48);
    expect(new Set(runs.slice(1).map((r) => r[10])).size).toBe(48); // 48 distinct jobs
    const summary = csv(path.join(out, 'summary.csv'));
    expect(summary).toHaveLength(1 + 4);
    for (const row of summary.slice(1)) {
      const [runCount, hits, rate] = [Number(row[3]), Number(row[4]), Number(row[5])];
      expect(runCount).toBe(12);
      expect(rate).toBeCloseTo(hits / 12, 4);
    }
    // The full parameterization (six vectors for six tokens) hits every reachable target within 100 iterations.
    expect(summary.filter((r) => r[2] === 'full').every((r) => Number(r[4]) === 12)).toBe(true);
    const svg = fs.readFileSync(path.join(out, 'hit-curve.svg'), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('optimizer=adam param=full');

    // Again: the data sets are found by their content and collected; the same jobs, nothing new.
    const again = await runCli(args);
    expect(csv(path.join(out, 'runs.csv'))).toEqual(runs);
    expect(again.stdout.split('\n').filter((l) => l.startsWith('│'))).toEqual(first.stdout.split('\n').filter((l) => l.startsWith('│')));
  });

  it('capacity grows each prefix until the search misses and reports tokens per vector', async () => {
    const { stdout } = await runCli(['capacity', '--reachable', '3', '--reachable-tokens', '12', '--max-iters', '200', '--json', '--model', 'tiny', '--device', 'cpu']);
    const report = JSON.parse(stdout) as {
      summary: { texts: number; promptVectors: number; meanTokensPerVector: number; medianTokensPerVector: number };
      texts: { id: string; tokens: number; capacity: number; whole: boolean; missedAt: { tokens: number } | null }[];
    };
    expect(report.summary).toMatchObject({ texts: 3, promptVectors: 1 });
    for (const t of report.texts) {
      expect(t.tokens).toBe(12);
      expect(t.capacity).toBeGreaterThanOrEqual(1);
      if (t.whole) expect(t.capacity).toBe(12);
      else expect(t.missedAt!.tokens).toBe(t.capacity + 1);
    }
    const mean = report.texts.reduce((s, t) => s + t.capacity, 0) / 3;
    expect(report.summary.meanTokensPerVector).toBeCloseTo(mean, 10);
  });
});
