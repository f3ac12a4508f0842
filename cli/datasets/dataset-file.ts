// Data set files: plain text (one target per line; the id is the line number) or JSON lines (`id` and `text`, or
// `target_ids` for a target given as GPT-2 token ids, as `recite dataset reachable` writes them).
import fs from 'node:fs';
import { firstIntegerProblem } from '../../server/util/numbers.js';

/** One target of a data set file. */
export interface DatasetFileRow {
  id: string;
  /** The text to recite; for a row given as token ids, their text (for the record) when the file has it. */
  text: string;
  /** The target as token ids, when the file gives them. */
  targetIds?: number[];
}

/** Report a data set file that cannot be read: the file, the line and what is wrong. */
export class DatasetFileError extends Error {
  override name = 'DatasetFileError';
}

/** Read a data set file; JSON lines when the name ends in .jsonl or every non-blank line starts with `{`. */
export function readDatasetFile(file: string): DatasetFileRow[] {
  const content = fs.readFileSync(file, 'utf8');
  const lines = content.split('\n').map((line) => line.replace(/\r$/, ''));
  const nonBlank = lines.filter((line) => line.trim() !== '');
  if (nonBlank.length === 0) throw new DatasetFileError(`${file}: no targets (the file is empty)`);
  const jsonl = file.endsWith('.jsonl') || nonBlank.every((line) => line.trimStart().startsWith('{'));
  const rows = jsonl ? readJsonLines(file, lines) : readPlainLines(lines);
  const seen = new Map<string, number>();
  for (const [i, row] of rows.entries()) {
    if (row.id === '__metadata__') throw new DatasetFileError(`${file}: row ${i + 1} uses the reserved id "__metadata__"`);
    const first = seen.get(row.id);
    if (first !== undefined) throw new DatasetFileError(`${file}: id ${JSON.stringify(row.id)} is used by rows ${first + 1} and ${i + 1}`);
    seen.set(row.id, i);
  }
  return rows;
}

function readPlainLines(lines: readonly string[]): DatasetFileRow[] {
  return lines.flatMap((text, i) => (text.trim() === '' ? [] : [{ id: String(i + 1), text }]));
}

function readJsonLines(file: string, lines: readonly string[]): DatasetFileRow[] {
  const rows: DatasetFileRow[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    const where = `${file}:${i + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error: unknown) {
      throw new DatasetFileError(`${where}: not JSON (${error instanceof Error ? error.message : String(error)})`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new DatasetFileError(`${where}: expected a JSON object`);
    const record = value as Record<string, unknown>;
    const id = record.id === undefined ? String(i + 1) : record.id;
    if (typeof id !== 'string' && typeof id !== 'number') throw new DatasetFileError(`${where}: id ${JSON.stringify(id)} is not a string or a number`);
    const ids = record.target_ids;
    if (ids !== undefined) {
      if (!Array.isArray(ids) || ids.length === 0) throw new DatasetFileError(`${where}: target_ids must be a non-empty array of token ids`);
      const problem = firstIntegerProblem(ids, 0);
      if (problem) throw new DatasetFileError(`${where}: target_ids: ${problem}`);
      rows.push({ id: String(id), text: typeof record.text === 'string' ? record.text : '', targetIds: ids as number[] });
      return;
    }
    if (typeof record.text !== 'string' || record.text === '') throw new DatasetFileError(`${where}: expected "text" (a non-empty string) or "target_ids"`);
    rows.push({ id: String(id), text: record.text });
  });
  return rows;
}
