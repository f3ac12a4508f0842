// Ctrl-C on a real terminal: `recite invert` cancels its job, prints the summary and exits 3 within 5 s, in
// process and against a server (where GetJob then says CANCELLED); `recite watch` stops following, says where,
// leaves the job running and exits 130. A terminal is what matters: a pty's Ctrl-C reaches the whole foreground
// process group and meets the terminal-only code paths (the live progress lines), which `kill -INT` does not.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReciteClient, JobState, Status } from '../../sdk/node.js';
import type { ReciteClient } from '../../sdk/node.js';
import { kill, startServe, token } from '../datasets/processes.js';
import type { Child } from '../datasets/processes.js';
import { runOnTerminal, screenOf, stop, waitForOutput } from './terminal.js';
import type { TerminalRun } from './terminal.js';

// Long enough that no run ends by itself while the test waits; one vector keeps iterations quick.
const target = 'It is a truth universally acknowledged, that a single man in possession of a good fortune';
const budget = '100000';
const cancelWithinMs = 5000;

/** Press Ctrl-C once progress shows, and return the exit status and how long after the press it came. */
async function interruptOnceRunning(run: TerminalRun, running: RegExp): Promise<{ status: number | null; ms: number }> {
  await waitForOutput(run, running);
  const pressed = Date.now();
  run.interrupt();
  const status = await Promise.race([run.exited, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 30_000))]);
  if (status === 'timeout') throw new Error(`still running 30 s after Ctrl-C:\n${run.output()}`);
  return { status, ms: Date.now() - pressed };
}

describe('Ctrl-C on a terminal', () => {
  let dir: string;
  let serve: Child & { url: string };
  let client: ReciteClient;
  const runs: TerminalRun[] = [];

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-ctrl-c-'));
    serve = await startServe(path.join(dir, 'server.db'));
    client = createReciteClient(serve.url, { token });
  });

  afterAll(async () => {
    for (const run of runs) await stop(run);
    await kill(serve);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('cancels an in-process invert, prints the summary and exits 3', async () => {
    const run = runOnTerminal(['invert', target, '--model', 'tiny', '--device', 'cpu', '--param', 'flat', '--max-iters', budget]);
    runs.push(run);
    const { status, ms } = await interruptOnceRunning(run, /restart 0 +iteration +\d+/);
    expect(status, run.output()).toBe(3);
    expect(ms).toBeLessThan(cancelWithinMs);
    const screen = (await screenOf(run.output())).join('\n');
    expect(screen).toMatch(/cancelling job [0-9a-f-]{36}/);
    expect(screen).toMatch(/^status: +CANCELLED$/m);
    expect(screen).toMatch(/^time: +[\d.]+ s on cpu \(model tiny\)$/m);
  });

  it('cancels the job on the server: the summary, exit 3, and GetJob says CANCELLED', async () => {
    const run = runOnTerminal(['invert', target, '--server', serve.url, '--token', token, '--param', 'flat', '--max-iters', budget]);
    runs.push(run);
    const jobId = (await waitForOutput(run, /job ([0-9a-f-]{36})/))[1]!;
    const { status, ms } = await interruptOnceRunning(run, /restart 0 +iteration +\d+/);
    expect(status, run.output()).toBe(3);
    expect(ms).toBeLessThan(cancelWithinMs);
    expect((await screenOf(run.output())).join('\n')).toMatch(/^status: +CANCELLED$/m);
    const job = await client.getJob(jobId);
    expect(JobState[job.state]).toBe('FINISHED');
    expect(Status[job.result!.status]).toBe('CANCELLED');
  });

  it('stops `watch` and leaves the job running: where it stopped, how to go on, exit 130', async () => {
    const { jobId } = await client.submitJob(target, { parameterization: 'flat', maxIterations: Number(budget) });
    try {
      const run = runOnTerminal(['watch', jobId, '--server', serve.url, '--token', token]);
      runs.push(run);
      const { status, ms } = await interruptOnceRunning(run, /#\d+ restart 0 iteration \d+/);
      expect(status, run.output()).toBe(130);
      expect(ms).toBeLessThan(cancelWithinMs);
      const screen = (await screenOf(run.output())).join('\n');
      const stopped = /stopped following job ([0-9a-f-]{36}) after event #(\d+); the job runs on/.exec(screen);
      expect(stopped, screen).not.toBeNull();
      expect(stopped![1]).toBe(jobId);
      expect(screen).toContain(`recite watch ${jobId} --after ${stopped![2]}`);
      expect(JobState[(await client.getJob(jobId)).state]).toBe('RUNNING');
    } finally {
      await client.cancelJob(jobId);
    }
  });
});
