// A damaged SQLite file is refused at start with a message naming it (PRAGMA quick_check), instead of a server that
// answers "internal error" on the first read that meets the damage and logs nothing.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SqliteJobStore } from '../../server/store/sqlite-job-store.js';
import { cliPath } from '../crash/serve-process.js';

/** A store with enough jobs and events to span many pages, then one of its table pages overwritten. */
async function damagedStore(): Promise<string> {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'recite-corrupt-')), 'recite.db');
  const store = SqliteJobStore.open(file);
  for (let j = 0; j < 40; j++) {
    const id = `job-${j}`;
    await store.insertJob({ id, clientId: 'alice', model: 'tiny', label: '', spec: new Uint8Array(8), targetIds: [1, 2],
      targetText: 'x'.repeat(200), state: 'QUEUED', status: null, cancelRequested: false, createdAtMs: j, finishedAtMs: null });
    await store.appendEvents(Array.from({ length: 20 }, (_, i) => ({ jobId: id, sequence: i + 1, timeMs: i, kind: 'progress' as const,
      restart: 0, iteration: i, payload: new Uint8Array(300).fill(i) })));
  }
  await store.close(); // checkpoints the WAL into the file
  const bytes = fs.readFileSync(file);
  const pageSize = bytes.readUInt16BE(16);
  // Page 5 onwards holds table b-tree pages; garbage over one of them breaks its cells.
  bytes.fill(0xa5, pageSize * 4 + 8, pageSize * 5);
  fs.writeFileSync(file, bytes);
  return file;
}

describe('a damaged store file', () => {
  it('is refused by SqliteJobStore.open with a message naming the file', async () => {
    const file = await damagedStore();
    expect(() => SqliteJobStore.open(file)).toThrow(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is damaged`));
  });

  it('stops `recite serve` at start with that message, exit status 1', async () => {
    const file = await damagedStore();
    let status = 0;
    let stderr = '';
    try {
      execFileSync(process.execPath, [cliPath, 'serve', '--port', '0', '--model', 'tiny', '--device', 'cpu', '--db', file], {
        env: { ...process.env, RECITE_TOKENS: 'corrupt-test-token-0123456789=alice' }, stdio: 'pipe', timeout: 30_000,
      });
    } catch (error: unknown) {
      const e = error as { status: number; stderr: Buffer };
      status = e.status;
      stderr = e.stderr.toString();
    }
    expect(status).toBe(1);
    expect(stderr).toContain(`${file} is damaged`);
    expect(stderr).toContain('quick_check');
  }, 40_000);
});
