// An idle-connection flood under a low file-descriptor limit: `recite serve` started by `bash -c 'ulimit -n 256;
// exec node …'`, then 600 connections that send nothing. Sockets once handed to the HTTP/1.1 server by hand never
// timed out, so the flood held every descriptor and no real client got in. Now each silent socket is closed at its
// deadline (--headers-timeout), the server logs it, and real clients are served while the flood goes on.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { authHeaders, cliPath, reciteClient, serveToken } from './serve-process.js';

const children: ReturnType<typeof spawn>[] = [];
const floods: net.Socket[] = [];
afterEach(() => {
  for (const s of floods.splice(0)) s.destroy();
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

const fdLimit = 256;
const floodSize = 600;
const headersTimeoutMs = 1000;

describe('an idle-connection flood under ulimit -n', () => {
  it(`serves real clients while ${floodSize} silent connections press on ${fdLimit} descriptors`, async () => {
    const dbPath = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'recite-flood-')), 'recite.db');
    const command = `ulimit -n ${fdLimit} && exec "${process.execPath}" "${cliPath}" serve --port 0 --model tiny --device cpu ` +
      `--db "${dbPath}" --headers-timeout ${headersTimeoutMs}`;
    const child = spawn('bash', ['-c', command], {
      env: { ...process.env, RECITE_TOKENS: `${serveToken}=flood-client` }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    const url = await new Promise<string>((resolve, reject) => {
      let stdout = '';
      child.stdout!.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        const match = /listening on (http:\/\/\S+)/.exec(stdout);
        if (match) resolve(match[1]!);
      });
      child.once('exit', (code) => reject(new Error(`serve exited (${code}):\n${stderr}`)));
    });
    const { port } = new URL(url);
    expect(fs.readFileSync(`/proc/${child.pid}/limits`, 'utf8')).toMatch(new RegExp(`Max open files\\s+${fdLimit}\\s`));

    // The flood: silent connections, each reopened as soon as the server drops it.
    let flooding = true;
    const open = () => {
      if (!flooding) return;
      const socket = net.connect(Number(port), '127.0.0.1');
      floods.push(socket);
      socket.on('error', () => {});
      socket.on('close', () => setTimeout(open, 10));
    };
    for (let i = 0; i < floodSize; i++) open();
    await new Promise((resolve) => setTimeout(resolve, 500));

    // Real clients: each call gets a fresh connection, retried until it is served (a dropped connect is retried).
    const served: number[] = [];
    const started = performance.now();
    for (let call = 0; call < 10; call++) {
      for (let attempt = 0; ; attempt++) {
        try {
          const client = reciteClient(url);
          await client.listJobs({}, { headers: authHeaders, timeoutMs: 3000 });
          served.push(performance.now() - started);
          break;
        } catch (error: unknown) {
          if (performance.now() - started > 60_000) throw error;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
    }
    flooding = false;
    expect(served).toHaveLength(10);
    expect(child.exitCode).toBeNull();
    // the server said what it did with the flood
    const deadline = Date.now() + 15_000;
    while (!stderr.includes('closed connections that sent no request in time') && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(stderr).toContain('closed connections that sent no request in time');
  }, 120_000);
});
