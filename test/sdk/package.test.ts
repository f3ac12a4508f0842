// The SDK as a package, the way an app gets it: `npm pack` of sdk/, installed into a scratch project outside the
// repo (its dependencies from the npm registry, or npm's cache), the TypeScript example (examples/typescript)
// compiled there against the package's own types, and run on Node against a real `recite serve --model tiny`.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReciteClient, JobState, Status } from '../../sdk/index.js';
import type { ServeProcess } from '../crash/serve-process.js';
import { root, serveToken, spawnServe, stopServe } from '../crash/serve-process.js';

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const installTimeoutMs = 240_000; // a cold npm cache downloads TypeScript and the Connect packages

/** Run npm in `cwd`; throws with npm's output when it fails. */
function runNpm(cwd: string, args: string[]): string {
  return execFileSync(npm, [...args, '--no-audit', '--no-fund', '--loglevel=error'],
    { cwd, encoding: 'utf8', timeout: installTimeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
}

describe('the SDK package', () => {
  let dir: string;
  let app: string;
  let tarball: string;
  let serve: ServeProcess;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-sdk-package-'));
    // prepack builds sdk/dist (JS and .d.ts) with sdk/tsconfig.json
    const packed = JSON.parse(runNpm(path.join(root, 'sdk'), ['pack', '--json', '--pack-destination', dir])) as
      { filename: string }[];
    tarball = path.join(dir, packed[0]!.filename);
    app = path.join(dir, 'app');
    fs.cpSync(path.join(root, 'examples', 'typescript'), app, {
      recursive: true, filter: (source) => !/[/\\](node_modules|dist)$/.test(source),
    });
    runNpm(app, ['install', '--prefer-offline', tarball]);
    serve = await spawnServe(path.join(dir, 'recite.db'));
  }, 2 * installTimeoutMs);

  afterAll(async () => {
    await stopServe(serve, 'SIGTERM');
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('holds the built JS and .d.ts of both entries, and declares every package its files import', () => {
    const listing = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).split('\n');
    for (const file of ['index.js', 'index.d.ts', 'node.js', 'node.d.ts', 'gen/recite/v1/recite_pb.js']) {
      expect(listing).toContain(`package/dist/${file}`);
    }
    expect(listing.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
    const installed = path.join(app, 'node_modules', '@recite', 'sdk');
    const manifest = JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8')) as
      { dependencies: Record<string, string> };
    const imported = new Set<string>();
    for (const file of fs.readdirSync(path.join(installed, 'dist'), { recursive: true, encoding: 'utf8' })) {
      if (!file.endsWith('.js')) continue;
      const code = fs.readFileSync(path.join(installed, 'dist', file), 'utf8');
      for (const [, specifier] of code.matchAll(/\bfrom\s+["']([^"'.][^"']*)["']/g)) {
        const parts = specifier!.split('/');
        imported.add(specifier!.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!);
      }
    }
    expect([...imported].sort()).toEqual(Object.keys(manifest.dependencies).sort());
  });

  it('resolves the Node entry under Node and the browser entry under the browser condition', () => {
    const probe = 'import("@recite/sdk").then((m) => console.log(typeof m.createReciteClient, typeof m.createReciteNodeTransport))';
    const inNode = spawnSync(process.execPath, ['-e', probe], { cwd: app, encoding: 'utf8' });
    expect(inNode.stderr).toBe('');
    expect(inNode.stdout.trim()).toBe('function function');
    const inBrowser = spawnSync(process.execPath, ['--conditions=browser', '-e', probe], { cwd: app, encoding: 'utf8' });
    expect(inBrowser.stdout.trim()).toBe('function undefined');
    const subpaths = 'Promise.all(["@recite/sdk/browser", "@recite/sdk/node", "@recite/sdk/gen/recite/v1/dataset_pb"]' +
      '.map((p) => import(p))).then((ms) => console.log(ms.map((m) => Object.keys(m).length > 0).join(" ")))';
    expect(spawnSync(process.execPath, ['-e', subpaths], { cwd: app, encoding: 'utf8' }).stdout.trim()).toBe('true true true');
  });

  it('runs the TypeScript example, compiled against the package\'s types, on Node against recite serve', async () => {
    runNpm(app, ['run', 'build']); // tsc: fails on any type error in the example or the package's .d.ts
    const run = spawnSync(process.execPath, ['dist/submit.js', 'Hello world'], {
      cwd: app, encoding: 'utf8', timeout: installTimeoutMs,
      env: { ...process.env, RECITE_SERVER: serve.url, RECITE_TOKEN: serveToken },
    });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const field = (name: string) => new RegExp(`^${name}:\\s+(.*)$`, 'm').exec(run.stdout)?.[1];
    const jobId = field('job')!;
    expect(jobId).toMatch(/^[0-9a-f-]{36}$/);
    expect(run.stdout).toMatch(/^ {2}iteration 0: NLL \d+\.\d{3}, 0\/2 tokens right$/m);
    // What the example printed is what the server holds for that job.
    const job = await createReciteClient(serve.url, { token: serveToken }).getJob(jobId);
    expect(job.state).toBe(JobState.FINISHED);
    const best = job.result!.restarts[job.result!.best]!;
    expect(field('status')).toBe(Status[job.result!.status]);
    expect(field('target')).toBe('"Hello world" (2 tokens)');
    expect(field('decoded')).toBe(JSON.stringify(best.decodedText));

    const refused = spawnSync(process.execPath, ['dist/submit.js'], {
      cwd: app, encoding: 'utf8', timeout: installTimeoutMs,
      env: { ...process.env, RECITE_SERVER: serve.url, RECITE_TOKEN: 'not-a-token-of-this-server' },
    });
    expect(refused.status).toBe(1);
    expect(refused.stderr.trim()).toBe('recite: the bearer token is not valid on this server (Unauthenticated)');
  }, 2 * installTimeoutMs);
});
