// docs/study.md stands on its committed results: the tables and figures regenerate from the CSV and JSON files in
// docs/study/ as committed, every table the page shows is one of them, every question has a figure and a command,
// every setting has at least 50 targets × 3 seeds, and the targets are the held-out sentences the command names.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseCsv } from 'csv-parse/sync';
import { describe, expect, it } from 'vitest';
import { writeStudyReport } from '../../cli/commands/study-report.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..', '..');
const studyDir = path.join(root, 'docs', 'study');
const page = fs.readFileSync(path.join(root, 'docs', 'study.md'), 'utf8');

/** The Markdown tables of a document, each as its lines. */
function tables(markdown: string): string[] {
  return markdown.split(/\n(?!\|)/).map((block) => block.split('\n').filter((l) => l.startsWith('|')).join('\n')).filter((t) => t.length > 0);
}

describe('docs/study.md', () => {
  it('shows tables and figures that regenerate from the committed results', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-study-'));
    fs.cpSync(studyDir, dir, { recursive: true });
    const written = await writeStudyReport(dir, 192);
    const committedTables = fs.readFileSync(path.join(studyDir, 'tables.md'), 'utf8');
    expect(fs.readFileSync(path.join(dir, 'tables.md'), 'utf8').replace(dir, 'docs/study')).toBe(committedTables);
    for (const figure of written.filter((f) => f.endsWith('.svg'))) {
      expect(fs.readFileSync(path.join(dir, figure), 'utf8'), figure).toBe(fs.readFileSync(path.join(studyDir, figure), 'utf8'));
    }
    const shown = tables(page);
    expect(shown.length).toBeGreaterThanOrEqual(8);
    const generated = tables(committedTables);
    for (const table of shown) expect(generated, `a table of study.md:\n${table}`).toContain(table);
  }, 120_000);

  it('answers each question with a figure, a command and a paragraph', () => {
    const sections = page.split(/\n## /).slice(1);
    const questions = sections.filter((s) => /^\d+\. /.test(s));
    expect(questions).toHaveLength(8);
    for (const section of questions) {
      const title = section.split('\n')[0]!;
      const figures = [...section.matchAll(/!\[[^\]]*\]\((study\/[^)]+\.svg)\)/g)].map((m) => m[1]!);
      expect(figures.length, `${title}: a figure`).toBeGreaterThan(0);
      for (const figure of figures) expect(fs.existsSync(path.join(root, 'docs', figure)), figure).toBe(true);
      expect(section, `${title}: its command`).toMatch(/```sh\n[^`]*node dist\/cli\/main\.js (study|capacity|study-report)/);
      expect(section.split('\n\n').filter((p) => !p.startsWith('|') && !p.startsWith('```') && !p.startsWith('!')).join(' ').length,
        `${title}: what the numbers show`).toBeGreaterThan(400);
    }
  });

  it('has at least 50 targets × 3 seeds for every setting of every part', () => {
    const parts = fs.readdirSync(studyDir).filter((d) => fs.existsSync(path.join(studyDir, d, 'runs.csv')));
    expect(parts.sort()).toEqual(['curriculum', 'decode-beam', 'decode-greedy', 'initialization', 'lr-relative', 'optimizers',
      'parameterization']);
    for (const part of parts) {
      const runs = parseCsv(fs.readFileSync(path.join(studyDir, part, 'runs.csv'), 'utf8'), { columns: true }) as Record<string, string>[];
      for (const setting of new Set(runs.map((r) => r['setting']))) {
        const mine = runs.filter((r) => r['setting'] === setting);
        expect(new Set(mine.map((r) => r['id'])).size, `${part} ${setting}: targets`).toBeGreaterThanOrEqual(50);
        expect(new Set(mine.map((r) => r['seed'])).size, `${part} ${setting}: seeds`).toBeGreaterThanOrEqual(3);
      }
    }
    for (const source of ['sentences', 'reachable']) {
      const seeds = fs.readdirSync(path.join(studyDir, 'capacity')).filter((f) => f.startsWith(`${source}-seed-`));
      expect(seeds.length, `capacity of ${source}: seeds`).toBeGreaterThanOrEqual(3);
      for (const file of seeds) {
        const report = JSON.parse(fs.readFileSync(path.join(studyDir, 'capacity', file), 'utf8')) as { texts: unknown[] };
        expect(report.texts.length, file).toBeGreaterThanOrEqual(50);
      }
    }
  });

  it('ran on the held-out sentences that run.sh asks `recite corpus sentences` for', () => {
    const script = fs.readFileSync(path.join(studyDir, 'run.sh'), 'utf8');
    const args = /recite (corpus sentences [^>]+)>/.exec(script)![1]!.trim().split(/\s+/);
    const sentences = execFileSync(process.execPath, [path.join(root, 'dist', 'cli', 'main.js'), ...args], { encoding: 'utf8' })
      .trim().split('\n');
    const scored = fs.readFileSync(path.join(studyDir, 'score.jsonl'), 'utf8').trim().split('\n')
      .map((line) => (JSON.parse(line) as { text: string }).text);
    expect(scored).toEqual(sentences);
    expect(sentences).toHaveLength(50);
    for (const s of sentences) {
      expect(s, 'a whole prose sentence').toMatch(/^[A-Z"'].*[.!?]["']?$/);
      expect(s.split(' ').length).toBeGreaterThanOrEqual(4);
      expect(s.split(' ').length).toBeLessThanOrEqual(8);
    }
  });
});
