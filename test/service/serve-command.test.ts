// `recite serve` as an operator starts it (the built CLI, --model tiny): every flag is checked before a model
// loads, a model that cannot load ends the server, and the execution provider it runs on, with the providers
// `--device auto` skipped and why, is logged by serve and printed by invert.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ServeProcess } from '../crash/serve-process.js';
import { cliPath, serveToken, spawnServe, stopServe } from '../crash/serve-process.js';

const autoOrder = ['cuda', 'webgpu', 'cpu']; // the order `--device auto` tries providers in
// A CLI start imports onnxruntime and the whole server: tens of seconds on a busy two-core machine.
const cliLimitMs = 180_000;

interface Run { code: number | null; stdout: string; stderr: string }

/** Run `recite serve ARGS` (tiny model, port 0, a temporary database) to its exit. */
function runServe(dir: string, args: string[]): Promise<Run> {
  const child = spawn(process.execPath, [cliPath, 'serve', '--port', '0', '--model', 'tiny', '--device', 'cpu',
    '--db', path.join(dir, 'serve.db'), ...args], {
    env: { ...process.env, RECITE_TOKENS: `${serveToken}=serve-client` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const timer = setTimeout(() => child.kill('SIGKILL'), cliLimitMs);
  return new Promise((resolve) => child.once('exit', (code) => {
    clearTimeout(timer);
    resolve({ code, stdout, stderr });
  }));
}

/** The JSON log lines of a serve process's stderr with message `msg`. */
function logLines(stderr: string, msg: string): Record<string, unknown>[] {
  return stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg === msg);
}

/** Expect skipped to be exactly the providers `auto` tries before `chosen`, each with a reason. */
function expectSkippedBefore(chosen: string, skipped: { provider: string; reason: string }[]): void {
  expect(autoOrder).toContain(chosen);
  expect(skipped.map((s) => s.provider)).toEqual(autoOrder.slice(0, autoOrder.indexOf(chosen)));
  for (const s of skipped) expect(s.reason).toMatch(new RegExp(`the ${s.provider === 'cuda' ? 'CUDA' : 'WebGPU'} execution provider needs`));
}

describe('recite serve', () => {
  let dir: string;
  let serve: ServeProcess | undefined;

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-serve-command-'));
  });
  afterEach(async () => {
    await stopServe(serve);
    serve = undefined;
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('refuses a bad --port, --device, --cors-origin, --host, --threads, --retention-days or missing model folder before any model loads', async () => {
    const cases: [string[], RegExp][] = [
      [['--port', 'abc'], /^recite: --port abc: expected an integer in \[0, 65535\]/m],
      [['--port', '70000'], /^recite: --port 70000: expected an integer in \[0, 65535\]/m],
      [['--device', 'gpu'], /^recite: --device gpu: expected one of auto, cpu, webgpu, cuda/m],
      [['--cors-origin', 'https://app.example.com/'], /^recite: --cors-origin https:\/\/app\.example\.com\/: expected an origin .*here https:\/\/app\.example\.com\)/m],
      [['--host', '192.0.2.1'], /^recite: --host 192\.0\.2\.1: not an address of this machine/m],
      [['--model', 'gpt2=/missing/dir'], /^recite: --model gpt2=\/missing\/dir: the folder \/missing\/dir does not exist/m],
      [['--threads', '0'], /^recite: --threads 0: 0 is not an integer in \[1, 1024\]/m],
      [['--retention-days', '-1'], /^recite: --retention-days -1: expected a number of days ≥ 0 \(0 keeps every job's history forever\)$/m],
    ];
    const runs = await Promise.all(cases.map(([args]) => runServe(dir, args)));
    for (const [i, [args, message]] of cases.entries()) {
      const run = runs[i]!;
      expect.soft(run.stderr, args.join(' ')).toMatch(message);
      expect.soft(run.code, args.join(' ')).toBe(1);
      // Before the fix the error came first and the process lived on until the model had loaded.
      expect.soft(logLines(run.stderr, 'model ready'), args.join(' ')).toEqual([]);
      expect.soft(run.stdout, args.join(' ')).not.toMatch(/listening/);
    }
  }, 2 * cliLimitMs);

  it('refuses a port in use before any model loads', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as net.AddressInfo).port;
    try {
      const run = await runServe(dir, ['--port', String(port)]);
      expect(run.stderr).toMatch(new RegExp(`^recite: --port ${port}: 127\\.0\\.0\\.1:${port} is already in use$`, 'm'));
      expect(run.code).toBe(1);
      expect(logLines(run.stderr, 'model ready')).toEqual([]);
    } finally {
      holder.close();
    }
  }, 2 * cliLimitMs);

  it('exits non-zero once a model fails to load, naming it and why', async () => {
    const notACheckpoint = fs.mkdtempSync(path.join(dir, 'empty-'));
    serve = await spawnServe(path.join(dir, 'failing.db'), ['--model', `broken=${notACheckpoint}`]);
    const { code } = await serve.exited;
    expect(code).toBe(1);
    expect(serve.stderr()).toContain(`recite: --model broken=${notACheckpoint}: the model failed to load (`);
    expect(logLines(serve.stderr(), 'model failed to load').map((l) => l.model)).toEqual(['broken']);
    // it went down cleanly: the store was closed, not abandoned
    expect(logLines(serve.stderr(), 'closed')).toHaveLength(1);
  }, 2 * cliLimitMs);

  it('logs and prints the execution provider it chose and each provider --device auto skipped, with the reason', async () => {
    serve = await spawnServe(path.join(dir, 'auto.db'), ['--device', 'auto']);
    const auto = serve;
    await expect.poll(() => logLines(auto.stderr(), 'model ready'), { timeout: cliLimitMs }).toHaveLength(1);
    const [ready] = logLines(serve.stderr(), 'model ready') as { provider: string; skippedProviders: { provider: string; reason: string }[] }[];
    expectSkippedBefore(ready!.provider, ready!.skippedProviders);
    await stopServe(serve, 'SIGTERM');

    // The test suite runs with RECITE_THREADS=1 (vitest.config.ts): the auto server's sessions have one thread,
    // and --threads overrides it.
    expect(ready).toMatchObject({ threads: 1 });
    serve = await spawnServe(path.join(dir, 'cpu.db'), ['--threads', '2']);
    const cpu = serve;
    await expect.poll(() => logLines(cpu.stderr(), 'model ready'), { timeout: cliLimitMs }).toHaveLength(1);
    expect(logLines(serve.stderr(), 'model ready')).toMatchObject([{ provider: 'cpu', threads: 2, skippedProviders: [] }]);
  }, 3 * cliLimitMs);
});

describe('recite invert in this process', () => {
  it('prints the execution provider and each provider --device auto skipped, with the reason', () => {
    const run = spawnSync(process.execPath, [cliPath, 'invert', '--model', 'tiny', '--device', 'auto', '--target-ids',
      '28630,32471', '--param', 'flat', '--max-iters', '3'], { encoding: 'utf8', timeout: cliLimitMs });
    expect(run.stderr).not.toMatch(/^recite: /m);
    const provider = /^time: .* on (\S+) \(model tiny\)$/m.exec(run.stdout)?.[1];
    expect(provider).toBeDefined();
    const line = /^recite invert: running on (\S+); (.*)$/m.exec(run.stderr);
    const skipped = line === null ? [] : line[2]!.split(/; (?=skipped )/).map((s) => {
      const match = /^skipped (\w+): (.+)$/.exec(s);
      return { provider: match?.[1] ?? s, reason: match?.[2] ?? '' };
    });
    if (line !== null) expect(line[1]).toBe(provider);
    expectSkippedBefore(provider!, skipped);
  }, 2 * cliLimitMs);
});
