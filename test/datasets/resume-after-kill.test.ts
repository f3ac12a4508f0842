// A data set run survives the CLI and the server both killed outright mid-run: started again on the same database
// and the same output prefix, it finishes every row, redoes nothing that had finished (same jobs, same results, no
// row submitted twice) and the results file holds exactly one line per row. Then a second language reads the
// files back: a standard-library python3 script parses the safetensors header and floats and the JSON lines.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sampleReachableTargets } from '../../server/datasets/reachable-targets.js';
import { readSafetensorsHeader, readTensorFloat32 } from '../../server/model/safetensors.js';
import { loadTinyModel } from '../helpers/engine-run.js';
import type { Child } from './processes.js';
import { kill, readJsonLines, root, runCli, startCli, startServe, token, waitFor } from './processes.js';

const rowsInDataset = 50;
const killAfterLines = 12; // rows written before both processes are killed
// Flat (one vector) on reachable six-token targets: most hit within tens of iterations; the budget keeps misses short.
const settings = ['--param', 'flat', '--max-iters', '300', '--report-every', '10'];
const serveArgs = ['--max-batch', '8', '--checkpoint-every', '10'];

interface Line {
  id: string;
  job_id: string;
  status: string;
  best_nll: number | null;
  iterations_to_hit: number | null;
  finish_order: number;
  embedding_shape: number[] | null;
  dataset: string;
}

let dir: string;
let children: Child[] = [];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-dataset-'));
  const model = await loadTinyModel();
  try {
    const targets = await sampleReachableTargets(model, rowsInDataset, 6, 1, 1);
    fs.writeFileSync(path.join(dir, 'targets.jsonl'),
      targets.map((t) => JSON.stringify({ id: t.id, text: t.text, target_ids: t.targetIds })).join('\n') + '\n');
  } finally {
    await model.release();
  }
});

afterAll(async () => {
  for (const c of children) await kill(c);
  fs.rmSync(dir, { recursive: true, force: true });
});

function finishedRows(dbPath: string): Map<string, { job_id: string; status: string; best_nll: number | null }> {
  const db = new Database(dbPath, { readonly: true });
  try {
    const rows = db.prepare(`SELECT row_id, job_id, status, best_nll FROM dataset_rows WHERE state = 'FINISHED'`).all() as
      { row_id: string; job_id: string; status: string; best_nll: number | null }[];
    return new Map(rows.map((r) => [r.row_id, r]));
  } finally {
    db.close();
  }
}

describe('recite dataset run, killed with its server and run again', () => {
  const prefix = () => path.join(dir, 'results');
  const dbPath = () => path.join(dir, 'server.db');
  const runArgs = (url: string) => ['dataset', 'run', path.join(dir, 'targets.jsonl'), '--server', url, '--token', token,
    '--out', prefix(), '--no-progress', ...settings];

  it('loses nothing and redoes nothing finished', async () => {
    const server = await startServe(dbPath(), serveArgs);
    const cli = startCli(runArgs(server.url));
    children.push(server, cli);
    await waitFor(`${killAfterLines} result lines`, () => readJsonLines(`${prefix()}.jsonl`).length >= killAfterLines
      || cli.child.exitCode !== null);
    await Promise.all([kill(cli), kill(server)]);
    const before = readJsonLines<Line>(`${prefix()}.jsonl`);
    expect(before.length, 'the kill came after the run had finished: nothing left to resume').toBeLessThan(rowsInDataset);
    const finishedBefore = finishedRows(dbPath());
    expect(finishedBefore.size).toBeGreaterThanOrEqual(before.length);

    const restarted = await startServe(dbPath(), serveArgs);
    children.push(restarted);
    const rerun = await runCli(runArgs(restarted.url));
    expect(rerun.stderr).toMatch(/found data set sha256:[0-9a-f]{64}: 50 rows, \d+ already in/);
    expect(rerun.stdout).toMatch(/^rows: +50: \d+ hits/m);
    await kill(restarted);

    const after = readJsonLines<Line>(`${prefix()}.jsonl`);
    // Exactly one line per row, each row of the file.
    expect(after).toHaveLength(rowsInDataset);
    expect(new Set(after.map((l) => l.id)).size).toBe(rowsInDataset);
    // Lines written before the kill are untouched.
    expect(after.slice(0, before.length)).toEqual(before);
    // Rows the server had finished kept their job and outcome.
    const finishedAfter = finishedRows(dbPath());
    for (const [id, row] of finishedBefore) expect(finishedAfter.get(id), id).toEqual(row);
    const byId = new Map(after.map((l) => [l.id, l]));
    for (const [id, row] of finishedBefore) expect(byId.get(id)!.job_id, id).toBe(row.job_id);
    // No row was submitted twice: one job per row label, and no other jobs.
    const db = new Database(dbPath(), { readonly: true });
    try {
      const labels = db.prepare('SELECT label, count(*) AS n FROM jobs GROUP BY label').all() as { label: string; n: number }[];
      expect(labels).toHaveLength(rowsInDataset);
      expect(labels.every((l) => l.n === 1)).toBe(true);
      const unfinished = db.prepare(`SELECT count(*) FROM jobs WHERE state != 'FINISHED'`).pluck().get();
      expect(unfinished).toBe(0);
    } finally {
      db.close();
    }
    // Every line's job is the one the server ran for that row, and every row has its embedding.
    const finalRows = finishedRows(dbPath());
    for (const line of after) expect(line.job_id).toBe(finalRows.get(line.id)!.job_id);
    const header = readSafetensorsHeader(`${prefix()}.safetensors`);
    expect(header.tensors.map((t) => t.name).sort()).toEqual(after.map((l) => l.id).sort());
    for (const t of header.tensors) expect(t.shape).toEqual([1, 32]);
    const hits = after.filter((l) => l.status === 'HIT').length;
    expect(hits).toBeGreaterThan(rowsInDataset / 2);
  });

  it('reads back in python (standard library only): safetensors header, offsets, floats and the JSON lines', () => {
    const script = path.join(root, 'test/datasets/read_results.py');
    const out = execFileSync('python3', [script, `${prefix()}.jsonl`, `${prefix()}.safetensors`], { encoding: 'utf8' });
    const report = JSON.parse(out) as { lines: number; tensors: number; hits: number; sums: Record<string, number>; metadata: Record<string, string> };
    const lines = readJsonLines<Line>(`${prefix()}.jsonl`);
    expect(report.lines).toBe(rowsInDataset);
    expect(report.tensors).toBe(rowsInDataset);
    expect(report.hits).toBe(lines.filter((l) => l.status === 'HIT').length);
    expect(report.metadata.dataset).toBe(lines[0]!.dataset);
    // The floats python read are the ones this side reads: compare each tensor's sum.
    const header = readSafetensorsHeader(`${prefix()}.safetensors`);
    for (const t of header.tensors) {
      const sum = readTensorFloat32(t).reduce((s, v) => s + v, 0);
      expect(report.sums[t.name]).toBeCloseTo(sum, 4);
    }
  });
});
