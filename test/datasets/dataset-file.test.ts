// Data set files: bad token ids are refused with the file, the line and the value, in the wording of every integer
// check (server/util/numbers.ts).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readDatasetFile } from '../../cli/datasets/dataset-file.js';

function file(lines: string[]): string {
  const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'recite-dataset-')), 'rows.jsonl');
  fs.writeFileSync(f, `${lines.join('\n')}\n`);
  return f;
}

describe('readDatasetFile', () => {
  it('reads token-id rows', () => {
    expect(readDatasetFile(file(['{"id": "a", "target_ids": [1, 2, 3]}']))).toEqual([{ id: 'a', text: '', targetIds: [1, 2, 3] }]);
  });

  it('names the line and the first bad id', () => {
    const f = file(['{"id": "a", "target_ids": [1, 2]}', '{"id": "b", "target_ids": [4, -1, 2.5]}']);
    expect(() => readDatasetFile(f)).toThrow(`${f}:2: target_ids: -1 is not an integer ≥ 0`);
    expect(() => readDatasetFile(file(['{"target_ids": ["7"]}']))).toThrow('target_ids: "7" is not an integer ≥ 0');
    expect(() => readDatasetFile(file(['{"target_ids": []}']))).toThrow('target_ids must be a non-empty array of token ids');
  });
});
