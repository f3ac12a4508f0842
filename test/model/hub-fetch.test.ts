// `recite model fetch` against a local fake of the Hugging Face hub that serves test/fixtures/tiny-gpt2.
//
// What @huggingface/hub 2.17 asks for (logged by the fake and asserted below):
//   GET /api/models/<repo>/revision/<rev>?expand=...&expand=siblings&expand=sha   model info: file list and commit
//   GET /<repo>/resolve/<commit>/<file>  with Range: bytes=0-0                    size (Content-Range) and ETag
//   GET /<repo>/resolve/<commit>/<file>                                           the bytes
// Errors carry X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound) and a JSON {"error": ...} body.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { Command } from 'commander';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerModelFetchCommand } from '../../cli/commands/model-fetch.js';
import { loadCheckpoint } from '../../server/model/checkpoint.js';
import { defaultModelDir, fetchModel, ModelFetchError } from '../../server/model/hub-download.js';
import type { FetchProgress } from '../../server/model/hub-download.js';
import { readSafetensorsHeader, readTensorFloat32, writeSafetensors } from '../../server/model/safetensors.js';

const run = promisify(execFile);
const fixtureDir = resolve('test/fixtures/tiny-gpt2');
const repoName = 'test-org/tiny-gpt2';
const commit = 'c0ffee'.padEnd(40, '0');
const generationConfig = Buffer.from(JSON.stringify({ bos_token_id: 50256, eos_token_id: 50256 }));

interface FakeRepo {
  sha: string;
  files: Map<string, Buffer>;
}

/** A fake hub: repos by name, a request log, and an optional transfer cut short. */
interface FakeHub {
  url: string;
  repos: Map<string, FakeRepo>;
  requests: string[];
  /** Close the connection after this many body bytes of this file. */
  cut?: { file: string; afterBytes: number };
  server: Server;
}

let hub: FakeHub;
let scratch: string;
let counter = 0;

function freshDir(label: string): string {
  return join(scratch, `${label}-${counter++}`);
}

function fixtureFile(name: string): Buffer {
  return readFileSync(join(fixtureDir, name));
}

async function startFakeHub(): Promise<FakeHub> {
  const state: Omit<FakeHub, 'url' | 'server'> = { repos: new Map(), requests: [] };
  const server = createServer((req, res) => handle(state as FakeHub, req, res));
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return Object.assign(state, { url, server });
}

function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'x-error-code': code });
  res.end(JSON.stringify({ error: message }));
}

function handle(hub: FakeHub, req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://fake');
  hub.requests.push(`${req.method} ${url.pathname}${req.headers.range ? ` range=${req.headers.range}` : ''}`);
  const info = /^\/api\/models\/(.+)\/revision\/([^/]+)$/.exec(url.pathname);
  const resolveMatch = /^\/(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
  const match = info ?? resolveMatch;
  if (match === null) return sendError(res, 404, 'EntryNotFound', `no route ${url.pathname}`);
  const repo = hub.repos.get(match[1]);
  if (repo === undefined) return sendError(res, 404, 'RepoNotFound', 'Repository not found');
  const revision = decodeURIComponent(match[2]);
  if (!['main', 'HEAD', repo.sha].includes(revision)) {
    return sendError(res, 404, 'RevisionNotFound', `Invalid rev id: ${revision}`);
  }
  if (info !== null) {
    expect(url.searchParams.getAll('expand')).toEqual(expect.arrayContaining(['siblings', 'sha']));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      _id: 'fake-id', id: match[1], private: false, gated: false, downloads: 0, likes: 0,
      lastModified: '2025-01-01T00:00:00.000Z', pipeline_tag: 'text-generation', sha: repo.sha,
      siblings: [...repo.files.keys()].map((rfilename) => ({ rfilename })),
    }));
    return;
  }
  const file = decodeURIComponent(match[3]);
  const body = repo.files.get(file);
  if (body === undefined) return sendError(res, 404, 'EntryNotFound', `${file} does not exist on "${revision}"`);
  const headers = {
    'content-type': 'application/octet-stream',
    etag: `"${createHash('sha256').update(body).digest('hex')}"`,
    'x-repo-commit': repo.sha,
    'accept-ranges': 'bytes',
  };
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  if (range !== null) {
    const start = Number(range[1]);
    const end = Math.min(range[2] === '' ? body.length - 1 : Number(range[2]), body.length - 1);
    res.writeHead(206, { ...headers, 'content-range': `bytes ${start}-${end}/${body.length}`, 'content-length': end - start + 1 });
    res.end(body.subarray(start, end + 1));
    return;
  }
  res.writeHead(200, { ...headers, 'content-length': body.length });
  if (hub.cut?.file === file) {
    res.write(body.subarray(0, hub.cut.afterBytes), () => res.destroy());
    return;
  }
  res.end(body);
}

/** Split the fixture's tensors over two safetensors shards with an index, as big checkpoints are published. */
function shardedFixture(): Map<string, Buffer> {
  const dir = freshDir('shards');
  mkdirSync(dir, { recursive: true });
  const tensors = readSafetensorsHeader(join(fixtureDir, 'model.safetensors')).tensors;
  const half = Math.ceil(tensors.length / 2);
  const weightMap: Record<string, string> = {};
  const files = new Map<string, Buffer>([['config.json', fixtureFile('config.json')]]);
  [tensors.slice(0, half), tensors.slice(half)].forEach((part, i) => {
    const shard = `model-0000${i + 1}-of-00002.safetensors`;
    writeSafetensors(join(dir, shard), part.map((t) => ({ name: t.name, shape: t.shape, data: readTensorFloat32(t) })));
    for (const t of part) weightMap[t.name] = shard;
    files.set(shard, readFileSync(join(dir, shard)));
  });
  files.set('model.safetensors.index.json', Buffer.from(JSON.stringify({ metadata: {}, weight_map: weightMap })));
  return files;
}

/** Return a URL on 127.0.0.1 where nothing listens: a port just bound and released. */
async function closedPortUrl(): Promise<string> {
  const probe = createServer();
  await new Promise<void>((done) => probe.listen(0, '127.0.0.1', done));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((done) => probe.close(done));
  return `http://127.0.0.1:${port}`;
}

async function fetchError(promise: Promise<unknown>): Promise<ModelFetchError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ModelFetchError);
    expect((error as Error).name).toBe('ModelFetchError');
    return error as ModelFetchError;
  }
  throw new Error('expected fetchModel to fail');
}

function sameFloats(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function expectSameBytes(dir: string, files: Map<string, Buffer>, names: string[]): void {
  for (const name of names) expect(readFileSync(join(dir, name)).equals(files.get(name) as Buffer), name).toBe(true);
}

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'recite-hub-'));
  hub = await startFakeHub();
  hub.repos.set(repoName, {
    sha: commit,
    files: new Map([
      ['config.json', fixtureFile('config.json')],
      ['model.safetensors', fixtureFile('model.safetensors')],
      ['README.md', fixtureFile('README.md')],
      ['reference.json', fixtureFile('reference.json')],
      ['generation_config.json', generationConfig],
    ]),
  });
  hub.repos.set('test-org/sharded-gpt2', { sha: 'a'.repeat(40), files: shardedFixture() });
  hub.repos.set('test-org/pytorch-only', {
    sha: 'b'.repeat(40),
    files: new Map([['config.json', fixtureFile('config.json')], ['pytorch_model.bin', Buffer.from('pickle')]]),
  });
  hub.repos.set('test-org/broken-weights', {
    sha: 'd'.repeat(40),
    files: new Map([['config.json', fixtureFile('config.json')], ['model.safetensors', Buffer.from('not a safetensors file')]]),
  });
});

afterAll(async () => {
  hub.server.closeAllConnections();
  await new Promise((done) => hub.server.close(done));
  rmSync(scratch, { recursive: true, force: true });
});

afterEach(() => {
  hub.cut = undefined;
  hub.requests.length = 0;
});

describe('fetchModel', () => {
  it('downloads config, weights and present tokenizer files byte for byte, and the folder loads', async () => {
    const dir = freshDir('tiny');
    const progress: FetchProgress[] = [];
    const result = await fetchModel({ name: repoName, dir, hubUrl: hub.url, onProgress: (p) => progress.push(p) });
    const repo = hub.repos.get(repoName) as FakeRepo;

    expect(result).toMatchObject({ dir, commit, hubUrl: hub.url });
    expect(result.files.map((f) => f.name)).toEqual(['config.json', 'model.safetensors', 'generation_config.json']);
    expectSameBytes(dir, repo.files, ['config.json', 'model.safetensors', 'generation_config.json']);
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors']);
    expect(result.checkpoint.config).toEqual(loadCheckpoint(fixtureDir).config);
    expect(sameFloats(loadCheckpoint(dir).readFloat32('wte.weight'), loadCheckpoint(fixtureDir).readFloat32('wte.weight'))).toBe(true);

    const weights = progress.filter((p) => p.file === 'model.safetensors');
    const size = statSync(join(fixtureDir, 'model.safetensors')).size;
    expect(weights.length).toBeGreaterThan(2);
    expect(weights.every((p) => p.totalBytes === size)).toBe(true);
    expect(weights.map((p) => p.bytes)).toEqual([...weights.map((p) => p.bytes)].sort((a, b) => a - b));
    expect(weights.at(-1)).toEqual({ file: 'model.safetensors', bytes: size, totalBytes: size, done: true });

    // The files come from the commit the model info named, so a push in between cannot mix two versions.
    expect(hub.requests[0]).toBe(`GET /api/models/${repoName}/revision/main`);
    expect(hub.requests).toContain(`GET /${repoName}/resolve/${commit}/model.safetensors range=bytes=0-0`);
    expect(hub.requests).toContain(`GET /${repoName}/resolve/${commit}/model.safetensors`);
    expect(hub.requests.some((r) => r.includes('README.md') || r.includes('reference.json'))).toBe(false);
  });

  it('puts the model under RECITE_MODELS_DIR/NAME by default, else ~/.cache/recite/models/NAME', async () => {
    const modelsDir = freshDir('models');
    const env = { RECITE_MODELS_DIR: modelsDir };
    expect(defaultModelDir(repoName, env)).toBe(join(modelsDir, 'test-org', 'tiny-gpt2'));
    expect(defaultModelDir('gpt2', { HOME: '/home/x' })).toMatch(/\.cache[/\\]recite[/\\]models[/\\]gpt2$/);
    const result = await fetchModel({ name: repoName, hubUrl: hub.url, env });
    expect(result.dir).toBe(join(modelsDir, 'test-org', 'tiny-gpt2'));
    expect(loadCheckpoint(result.dir).name).toBe('tiny-gpt2');
  });

  it('follows HF_ENDPOINT when no hub URL is given', async () => {
    const result = await fetchModel({ name: repoName, dir: freshDir('endpoint'), env: { HF_ENDPOINT: `${hub.url}/` } });
    expect(result.hubUrl).toBe(hub.url);
  });

  it('downloads a sharded checkpoint: the index and every shard it names', async () => {
    const dir = freshDir('sharded');
    const result = await fetchModel({ name: 'test-org/sharded-gpt2', dir, hubUrl: hub.url });
    const files = hub.repos.get('test-org/sharded-gpt2')?.files as Map<string, Buffer>;
    expect(result.files.map((f) => f.name).sort()).toEqual([...files.keys()].sort());
    expectSameBytes(dir, files, [...files.keys()]);
    expect(sameFloats(loadCheckpoint(dir).readFloat32('wte.weight'), loadCheckpoint(fixtureDir).readFloat32('wte.weight'))).toBe(true);
  });

  it('names the model, the hub and the cause for a model the hub does not have, and creates no folder', async () => {
    const dir = freshDir('missing');
    const error = await fetchError(fetchModel({ name: 'test-org/no-such-model', dir, hubUrl: hub.url }));
    expect(error.message).toContain(`fetch model test-org/no-such-model from ${hub.url}: no model test-org/no-such-model`);
    expect(error.message).toContain('HTTP 404: Repository not found');
    expect(existsSync(dir)).toBe(false);
  });

  it('names the model, the hub URL and the network cause when the hub is unreachable', async () => {
    const url = await closedPortUrl();
    const error = await fetchError(fetchModel({ name: 'gpt2', dir: freshDir('offline'), hubUrl: url }));
    expect(error.message).toMatch(new RegExp(`^fetch model gpt2 from ${url}: cannot reach the hub \\(connect ECONNREFUSED`));
    expect(error.message).toContain('--hub-url');
  });

  it('names a revision the repo does not have', async () => {
    const error = await fetchError(fetchModel({ name: repoName, dir: freshDir('rev'), hubUrl: hub.url, revision: 'v9' }));
    expect(error.message).toContain('has no revision v9');
  });

  it('leaves no partial file when a transfer breaks off', async () => {
    const dir = freshDir('cut');
    hub.cut = { file: 'model.safetensors', afterBytes: 1_000_000 };
    const error = await fetchError(fetchModel({ name: repoName, dir, hubUrl: hub.url }));
    expect(error.message).toContain(`fetch model ${repoName} from ${hub.url}: download model.safetensors:`);
    expect(readdirSync(dir)).toEqual(['config.json']);
  });

  it('refuses a repo without safetensors weights, naming what it has', async () => {
    const error = await fetchError(fetchModel({ name: 'test-org/pytorch-only', dir: freshDir('pt'), hubUrl: hub.url }));
    expect(error.message).toContain('has no model.safetensors (recite reads safetensors only); it has pytorch_model.bin');
  });

  it('says so when the downloaded folder does not load', async () => {
    const dir = freshDir('broken');
    const error = await fetchError(fetchModel({ name: 'test-org/broken-weights', dir, hubUrl: hub.url }));
    expect(error.message).toContain(`downloaded into ${dir}, but the folder does not load:`);
  });

  it('refuses a name that is not a repo id before any request', async () => {
    for (const name of ['../etc', 'a/b/c', '', 'a b']) {
      const error = await fetchError(fetchModel({ name, dir: freshDir('bad'), hubUrl: hub.url }));
      expect(error.message).toContain('is not a hub repo id');
    }
    expect(hub.requests).toEqual([]);
  });
});

describe('recite model fetch, in process', () => {
  async function runCommand(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
    const stdout: string[] = [];
    const stderr: string[] = [];
    const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => (stdout.push(String(chunk)), true));
    const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => (stderr.push(String(chunk)), true));
    const program = new Command('recite').exitOverride();
    registerModelFetchCommand(program);
    try {
      await program.parseAsync(args, { from: 'user' });
      return { status: Number(process.exitCode ?? 0), stdout: stdout.join(''), stderr: stderr.join('') };
    } finally {
      out.mockRestore();
      err.mockRestore();
      process.exitCode = undefined;
    }
  }

  it('downloads, prints progress on stderr and the folder on stdout', async () => {
    const dir = freshDir('cli');
    const { status, stdout, stderr } = await runCommand(['model', 'fetch', repoName, '--dir', dir, '--hub-url', hub.url]);
    expect(status).toBe(0);
    expect(stdout).toBe(`${dir}\n`);
    expect(stderr).toMatch(/model\.safetensors {2}6\.55 MB \/ 6\.55 MB {2}100%/);
    expect(stderr).toContain('config.json  ');
    expect(stderr).toContain('loads: n_embd 32, 2 layers, 4 heads, 64 positions, vocab 50257');
    expectSameBytes(dir, hub.repos.get(repoName)?.files as Map<string, Buffer>, ['config.json', 'model.safetensors']);
  });

  it('prints the result as one JSON object with --json: folder, commit, files, bytes and config', async () => {
    const dir = freshDir('cli-json');
    const { status, stdout } = await runCommand(['model', 'fetch', repoName, '--dir', dir, '--hub-url', hub.url, '--json']);
    expect(status).toBe(0);
    const lines = stdout.split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    const result = JSON.parse(lines[0]!) as { files: { name: string; bytes: number }[]; bytes: number };
    expect(result).toMatchObject({ name: repoName, dir, commit, hubUrl: hub.url,
      config: { nEmbd: 32, nLayer: 2, nHead: 4, nPositions: 64, vocabSize: 50257 } });
    for (const file of result.files) expect(file.bytes, file.name).toBe(statSync(join(dir, file.name)).size);
    expect(result.files.map((f) => f.name)).toContain('model.safetensors');
    expect(result.bytes).toBe(result.files.reduce((sum, f) => sum + f.bytes, 0));
  });

  it('exits 1 with one line naming the model and the hub, no stack', async () => {
    const { status, stdout, stderr } = await runCommand(['model', 'fetch', 'nobody/nothing', '--dir', freshDir('x'), '--hub-url', hub.url]);
    expect(status).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toMatch(new RegExp(`^recite model fetch: fetch model nobody/nothing from ${hub.url}: no model nobody/nothing`));
    expect(stderr).not.toMatch(/\n\s+at /);
  });

  it('shares a model command group another module registered', () => {
    const program = new Command('recite');
    program.command('model').description('manage GPT-2 checkpoints').command('list');
    registerModelFetchCommand(program);
    const model = program.commands.filter((c) => c.name() === 'model');
    expect(model).toHaveLength(1);
    expect(model[0].commands.map((c) => c.name())).toEqual(['list', 'fetch']);
  });
});

describe('recite model fetch, built', () => {
  const builtCommand = resolve('dist/cli/commands/model-fetch.js');
  const builtMain = resolve('dist/cli/main.js');
  const mainHasModelFetch = existsSync(builtMain) && readFileSync(builtMain, 'utf8').includes('registerModelFetchCommand');
  // Until cli/main.ts registers the command, run the built registration on a fresh program in a real process.
  const standalone = [
    '--input-type=module', '-e',
    `import { Command } from 'commander';
     import { registerModelFetchCommand } from ${JSON.stringify(builtCommand)};
     const program = new Command('recite');
     registerModelFetchCommand(program);
     await program.parseAsync(process.argv.slice(1), { from: 'user' });`,
    '--',
  ];

  async function runBuilt(args: string[], env: NodeJS.ProcessEnv): Promise<{ status: number; stdout: string; stderr: string }> {
    if (!existsSync(builtCommand)) throw new Error(`${builtCommand} is missing: build first (npx tsc -p tsconfig.json)`);
    const argv = mainHasModelFetch ? [builtMain, ...args] : [...standalone, ...args];
    const childEnv = { ...process.env, HF_ENDPOINT: '', HF_TOKEN: '', ...env };
    try {
      const { stdout, stderr } = await run(process.execPath, argv, { env: childEnv });
      return { status: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code?: number; stdout: string; stderr: string };
      return { status: e.code ?? -1, stdout: e.stdout, stderr: e.stderr };
    }
  }

  it(`fetches into RECITE_MODELS_DIR/NAME (${mainHasModelFetch ? 'dist/cli/main.js' : 'built command on a fresh program'})`, async () => {
    const modelsDir = freshDir('built');
    const { status, stdout, stderr } = await runBuilt(['model', 'fetch', repoName, '--hub-url', hub.url], { RECITE_MODELS_DIR: modelsDir });
    expect(stderr).toContain('loads: n_embd 32');
    expect(status).toBe(0);
    const dir = join(modelsDir, 'test-org', 'tiny-gpt2');
    expect(stdout).toBe(`${dir}\n`);
    expectSameBytes(dir, hub.repos.get(repoName)?.files as Map<string, Buffer>, ['config.json', 'model.safetensors', 'generation_config.json']);
    expect(loadCheckpoint(dir).config.nEmbd).toBe(32);
  });

  it('exits 1 with a clear line for a missing model and for an unreachable hub', async () => {
    const missing = await runBuilt(['model', 'fetch', 'nobody/nothing', '--dir', freshDir('b404'), '--hub-url', hub.url], {});
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain(`fetch model nobody/nothing from ${hub.url}: no model nobody/nothing on this hub (HTTP 404`);
    expect(missing.stderr).not.toMatch(/\n\s+at /);

    const url = await closedPortUrl();
    const offline = await runBuilt(['model', 'fetch', 'gpt2', '--dir', freshDir('boff'), '--hub-url', url], {});
    expect(offline.status).toBe(1);
    expect(offline.stderr).toMatch(new RegExp(`fetch model gpt2 from ${url}: cannot reach the hub \\(connect ECONNREFUSED`));
    expect(offline.stderr).not.toMatch(/\n\s+at /);
  });
});
