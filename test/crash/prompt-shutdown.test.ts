// SIGTERM with a long queue: the server once spent minutes in shutdown (each cancelled queued restart still ran its
// decode and nearest-token scan, and every queued job was checkpointed). Now 4,000 queued jobs cost nothing to stop:
// the process exits within 5 s, and after a restart all 4,000 resume (a queued job needs no checkpoint: it starts
// afresh from its seed).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteJobStore } from '../../server/store/sqlite-job-store.js';
import { authHeaders, reciteClient, spawnServe, stopServe } from './serve-process.js';
import type { ServeProcess } from './serve-process.js';

const servers: ServeProcess[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await stopServe(s);
});

const jobs = 4000;
const spec = {
  target: { case: 'text', value: 'Hello world' },
  settings: { maxIterations: 100_000, continueAfterHit: true, reportEvery: 100 },
} as const;

describe('SIGTERM with a long queue', () => {
  it(`exits within 5 s with ${jobs} queued jobs, and all of them resume after a restart`, async () => {
    const dbPath = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'recite-shutdown-')), 'recite.db');
    const args = ['--max-queue', String(jobs + 10), '--max-batch', '4'];
    const s = await spawnServe(dbPath, args);
    servers.push(s);
    const client = reciteClient(s.url);
    const ids: string[] = [];
    const concurrency = 32;
    for (let i = 0; i < jobs; i += concurrency) {
      const batch = Array.from({ length: Math.min(concurrency, jobs - i) }, (_, k) =>
        client.submitJob({ spec: { ...spec, settings: { ...spec.settings, seed: i + k } } }, { headers: authHeaders }));
      for (const r of await Promise.all(batch)) ids.push(r.jobId);
    }
    expect(ids).toHaveLength(jobs);

    const started = performance.now();
    s.child.kill('SIGTERM');
    const exit = await Promise.race([s.exited, new Promise((resolve) => setTimeout(() => resolve('timeout'), 20_000))]);
    const seconds = (performance.now() - started) / 1000;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(seconds).toBeLessThanOrEqual(5);

    const store = SqliteJobStore.open(dbPath);
    expect(await store.unfinishedJobs()).toHaveLength(jobs);
    await store.close();
    const again = await spawnServe(dbPath, args);
    servers.push(again);
    const deadline = Date.now() + 60_000;
    while (!/"resumed":4000,"msg":"unfinished jobs resumed"/.test(again.stderr())) {
      if (Date.now() > deadline) throw new Error(`no "4000 resumed" line in the log:\n${again.stderr().slice(-2000)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const last = await reciteClient(again.url).getJob({ jobId: ids.at(-1)! }, { headers: authHeaders });
    expect(last.job?.jobId).toBe(ids.at(-1));
  }, 240_000);
});
