// What the CLI promises beyond Ctrl-C, checked on the built CLI against a real `recite serve`: every command that
// can run on a server runs on $RECITE_SERVER (and --local keeps it in this process); --json is one JSON object per
// line on every command (serve logs JSON lines on stderr), with the .proto's enum names; --version; --model DIR and
// NAME=DIR; a server address without a scheme; errors as one sentence without class names; progress that shows the budget, rate and
// ETA and leaves no line behind; decode with the hit check's decoder.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '@connectrpc/connect';
import { createReciteClient, createReciteTransport } from '../../sdk/node.js';
import type { ReciteClient } from '../../sdk/node.js';
import { DatasetService } from '../../sdk/gen/recite/v1/dataset_pb.js';
import { kill, root, startCli, startServe, token } from '../datasets/processes.js';
import type { Child } from '../datasets/processes.js';
import { runOnTerminal, screenOf, stop, waitForOutput } from './terminal.js';

// A target the tiny model can recite with one vector (its own greedy continuation of a hidden prompt).
const reachable = '28630,32471,35967,35967,35967,35967';

/** Run the CLI to its end and return its exit status and output. */
async function cli(args: readonly string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const c: Child = startCli(args, env);
  const { code } = await c.exited;
  return { code, stdout: c.stdout(), stderr: c.stderr() };
}

/** A port nobody listens on: bind one, then let it go. */
async function freePort(): Promise<number> {
  return new Promise<number>((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Parse stdout as JSON lines: every non-empty line one object. */
function jsonLines(stdout: string): Record<string, unknown>[] {
  const lines = stdout.split('\n').filter((l) => l !== '');
  return lines.map((line) => {
    const value: unknown = JSON.parse(line);
    expect(typeof value === 'object' && value !== null && !Array.isArray(value), line).toBe(true);
    return value as Record<string, unknown>;
  });
}

describe('the CLI keeps its word', () => {
  let dir: string;
  let serve: Child & { url: string };
  let client: ReciteClient;
  let hostPort: string;
  const onServer = () => ({ RECITE_SERVER: hostPort, RECITE_TOKEN: token });
  const jobIds = async () => new Set((await client.listJobs({ pageSize: 1000 })).map((j) => j.jobId));
  const datasetNames = async () => new Set((await createClient(DatasetService, createReciteTransport(serve.url, { token }))
    .listDatasets({ pageSize: 1000 })).datasets.map((d) => d.name));

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-cli-'));
    serve = await startServe(path.join(dir, 'server.db'));
    client = createReciteClient(serve.url, { token });
    hostPort = serve.url.replace(/^http:\/\//, '');
    fs.writeFileSync(path.join(dir, 'targets.jsonl'), [
      JSON.stringify({ id: 'a', target_ids: [28630, 32471, 35967] }),
      JSON.stringify({ id: 'b', text: 'Hello world' }),
    ].join('\n') + '\n');
  });

  afterAll(async () => {
    await kill(serve);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('--version prints the version of package.json', async () => {
    const { version } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
    const run = await cli(['--version']);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`${version}\n`);
  });

  // Each CLI run starts a node process (seconds on a loaded machine): these tests get more time than the default.
  const slow = 300_000;

  it('runs invert on $RECITE_SERVER (given as HOST:PORT), and --local in this process', async () => {
    const jobsBefore = await jobIds();
    const invert = await cli(['invert', '--target-ids', reachable, '--param', 'flat', '--seed', '1', '--max-iters', '50', '--json'], onServer());
    expect(invert.code, invert.stderr).toBe(0);
    const invertJob = jsonLines(invert.stdout)[0]!.jobId as string;
    expect(jobsBefore.has(invertJob)).toBe(false);
    expect((await jobIds()).has(invertJob)).toBe(true);

    const local = await cli(['invert', '--target-ids', reachable, '--param', 'flat', '--seed', '1', '--max-iters', '50', '--json',
      '--local', '--model', 'tiny', '--device', 'cpu'], onServer());
    expect(local.code, local.stderr).toBe(0);
    expect((await jobIds()).has(jsonLines(local.stdout)[0]!.jobId as string)).toBe(false);
  }, slow);

  it('runs score and capacity on $RECITE_SERVER', async () => {
    // score runs no job to look for: pointed at an address where nobody listens, it fails there instead of
    // starting a server of its own.
    const score = await cli(['score', 'Hello', '--json'], { RECITE_SERVER: `127.0.0.1:${await freePort()}`, RECITE_TOKEN: token });
    expect(score.code).toBe(1);
    expect(score.stderr).toMatch(/cannot reach the recite server at http:\/\/127\.0\.0\.1:\d+: the connection was refused/);

    const beforeCapacity = await jobIds();
    const capacity = await cli(['capacity', path.join(dir, 'targets.jsonl'), '--param', 'flat', '--max-iters', '20', '--json'], onServer());
    expect(capacity.code, capacity.stderr).toBe(0);
    expect(jsonLines(capacity.stdout)).toHaveLength(1);
    expect([...(await jobIds())].filter((id) => !beforeCapacity.has(id)).length).toBeGreaterThan(0);
  }, slow);

  it('runs dataset run and study on $RECITE_SERVER, each printing JSON lines', async () => {
    const datasetsBefore = await datasetNames();
    const run = await cli(['dataset', 'run', path.join(dir, 'targets.jsonl'), '--out', path.join(dir, 'run'), '--param', 'flat',
      '--max-iters', '20', '--no-progress', '--json'], onServer());
    expect(run.code, run.stderr).toBe(0);
    const [outcome] = jsonLines(run.stdout);
    const datasetName = (outcome!.dataset as { name: string }).name;
    expect(datasetsBefore.has(datasetName)).toBe(false);
    expect((await datasetNames()).has(datasetName)).toBe(true);
    expect(outcome).toMatchObject({ stopped: false, results: { lines: 2, jsonl: `${path.join(dir, 'run')}.jsonl` } });
    expect((outcome!.dataset as { state: string }).state).toBe('DATASET_STATE_FINISHED');
    expect(fs.existsSync(path.join(dir, 'run.db'))).toBe(false); // no server of its own

    const study = await cli(['study', path.join(dir, 'targets.jsonl'), '--grid', 'lr=0.1,0.3 seeds=1', '--out', path.join(dir, 'study'),
      '--param', 'flat', '--max-iters', '20', '--no-progress', '--json'], onServer());
    expect(study.code, study.stderr).toBe(0);
    const settings = jsonLines(study.stdout);
    expect(settings.map((s) => s.setting)).toEqual(['lr=0.1', 'lr=0.3']);
    for (const s of settings) expect(s).toMatchObject({ runs: 2, seeds: 1 });
    expect([...(await datasetNames())].filter((n) => !datasetsBefore.has(n)).length).toBe(3); // the run's and the study's two
  }, slow);

  it('prints one JSON object per line on every client command, with the .proto enum names', async () => {
    // Too long for one vector to recite before the cancel lands: the job ends CANCELLED, not HIT.
    const { jobId } = await client.submitJob('It is a truth universally acknowledged, that a single man in possession of a good fortune',
      { parameterization: 'flat', maxIterations: 100000 });
    const cancel = await cli(['cancel', jobId, '--json'], onServer());
    expect(cancel.code, cancel.stderr).toBe(0);
    expect(jsonLines(cancel.stdout)).toEqual([{ jobId, state: expect.stringMatching(/^JOB_STATE_/) as unknown }]);

    const watch = await cli(['watch', jobId, '--json'], onServer());
    expect(watch.code).toBe(3);
    const result = jsonLines(watch.stdout).find((e) => e.type === 'result')!;
    const watchedStatus = (result.event as { result: { status: string } }).result.status;
    expect(watchedStatus).toBe('STATUS_CANCELLED');
    const jobs = await cli(['jobs', '--json'], onServer());
    const listed = jsonLines(jobs.stdout).find((j) => j.jobId === jobId)!;
    expect(listed).toMatchObject({ state: 'JOB_STATE_FINISHED', status: watchedStatus });

    const deleted = await cli(['delete', jobId, '--json'], onServer());
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(jsonLines(deleted.stdout)).toEqual([{ jobId, deleted: true }]);
    expect((await jobIds()).has(jobId)).toBe(false);

    const models = jsonLines((await cli(['models', '--json'], onServer())).stdout);
    expect(models[0]).toMatchObject({ name: 'tiny', state: 'MODEL_STATE_READY' });

    const detached = await cli(['dataset', 'run', path.join(dir, 'targets.jsonl'), '--out', path.join(dir, 'detached'),
      '--param', 'flat', '--max-iters', '100000', '--detach', '--json'], onServer());
    expect(detached.code, detached.stderr).toBe(0);
    const [submitted] = jsonLines(detached.stdout);
    expect(submitted).toMatchObject({ detached: true });
    const name = (submitted!.dataset as { name: string }).name;
    const names = [...(await datasetNames())];
    expect(names).toContain(name);
    const list = await cli(['dataset', 'list', '--json'], onServer());
    expect(jsonLines(list.stdout).map((d) => d.name).sort()).toEqual(names.sort());
    const status = await cli(['dataset', 'status', name, '--json'], onServer());
    expect(jsonLines(status.stdout)).toHaveLength(1);
    const cancelled = await cli(['dataset', 'cancel', name, '--json'], onServer());
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(jsonLines(cancelled.stdout)).toEqual([expect.objectContaining({ name, state: 'DATASET_STATE_CANCELLED' })]);
  }, slow);

  it('prints one JSON object per line on the local commands too: eval, corpus, train, model-card, bench', async () => {
    // eval: one object per case, with the numbers the reference has for the tiny model.
    const fixture = path.join(root, 'test/fixtures/tiny-gpt2');
    const reference = JSON.parse(fs.readFileSync(path.join(fixture, 'reference.json'), 'utf8')) as
      { cases: { name: string; nll_sum: number[]; greedy_ids: number[][] }[] };
    const evaluated = await cli(['eval', '--model', fixture, '--cases', path.join(fixture, 'reference.json'), '--device',
      'cpu', '--json']);
    expect(evaluated.code, evaluated.stderr).toBe(0);
    const cases = jsonLines(evaluated.stdout);
    expect(cases.map((c) => (c.case as { name: string }).name)).toEqual(reference.cases.map((c) => c.name));
    cases.forEach((line, i) => {
      expect(line).toMatchObject({ provider: 'cpu', providerFallbacks: [] });
      const result = line.case as { nllSum: number[]; greedyIds: number[][]; nllPerToken: unknown; gradPrompt: unknown };
      result.nllSum.forEach((nll, b) => expect(nll).toBeCloseTo(reference.cases[i]!.nll_sum[b]!, 2));
      expect(result.greedyIds).toEqual(reference.cases[i]!.greedy_ids);
      expect(Object.keys(result).sort()).toEqual(['argmaxIds', 'beam4Ids', 'gradPrompt', 'greedyIds', 'name', 'nllPerToken', 'nllSum']);
    });
    const noOut = await cli(['eval', '--model', 'tiny', '--cases', path.join(fixture, 'reference.json')]);
    expect(noOut.code).toBe(1);
    expect(noOut.stderr).toContain('--out is missing');

    const sentences = await cli(['corpus', 'sentences', '--count', '3', '--json']);
    expect(sentences.code, sentences.stderr).toBe(0);
    const texts = jsonLines(sentences.stdout);
    expect(texts).toHaveLength(3);
    const plain = (await cli(['corpus', 'sentences', '--count', '3'])).stdout.trimEnd().split('\n');
    expect(texts).toEqual(plain.map((text) => ({ text })));

    const built = await cli(['corpus', 'build', '--out', path.join(dir, 'corpus'), '--json']);
    expect(built.code, built.stderr).toBe(0);
    const [manifest, ...rest] = jsonLines(built.stdout);
    expect(rest).toEqual([]);
    const splits = manifest!.splits as Record<'train' | 'validation', { tokens: number }>;
    expect(splits.train.tokens).toBe(fs.statSync(path.join(dir, 'corpus', 'train.u16')).size / 2);
    expect((manifest!.sources as { name: string }[]).map((s) => s.name)).toEqual(['austen', 'kjv', 'brown']);

    // train and model-card on a corpus of a few hundred tokens: a tiny run, seconds.
    const tinyCorpus = path.join(dir, 'tiny-corpus');
    fs.mkdirSync(tinyCorpus);
    for (const [split, n] of [['train', 400], ['validation', 200]] as const) {
      const tokens = Uint16Array.from({ length: n }, (_, i) => (i * 7919) % 300);
      fs.writeFileSync(path.join(tinyCorpus, `${split}.u16`), Buffer.from(tokens.buffer));
    }
    fs.copyFileSync(path.join(dir, 'corpus', 'manifest.json'), path.join(tinyCorpus, 'manifest.json'));
    const run = path.join(dir, 'run');
    const exported = path.join(dir, 'trained');
    const trained = await cli(['train', '--corpus', tinyCorpus, '--run', run, '--export', exported, '--n-embd', '32',
      '--n-layer', '1', '--n-head', '2', '--n-positions', '64', '--batch', '2', '--steps', '2', '--warmup-steps', '1',
      '--eval-every', '2', '--eval-windows', '2', '--json']);
    expect(trained.code, trained.stderr).toBe(0);
    const trainLines = jsonLines(trained.stdout);
    const steps = trainLines.filter((l) => l.type === 'step');
    expect(steps.length).toBeGreaterThan(0);
    const logged = fs.readFileSync(path.join(run, 'log.jsonl'), 'utf8').split('\n').filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(steps).toEqual(logged.map((l) => ({ type: 'step', ...l })));
    expect(steps.at(-1)).toMatchObject({ step: 2, loss: expect.any(Number) as unknown, validationLoss: expect.any(Number) as unknown });
    expect(trainLines.at(-1)).toEqual({ type: 'export', step: 2, dir: exported });
    expect(trained.stderr).not.toContain('| loss');

    const card = await cli(['model-card', '--model', exported, '--corpus', tinyCorpus, '--run', run, '--out',
      path.join(dir, 'card'), '--json']);
    expect(card.code, card.stderr).toBe(0);
    const [summary, ...more] = jsonLines(card.stdout);
    expect(more).toEqual([]);
    const written = JSON.parse(fs.readFileSync(path.join(dir, 'card', 'evaluation.json'), 'utf8')) as Record<string, unknown>;
    expect(summary).toEqual({ model: written.model, modelFileSha256: written.modelFileSha256, parameters: written.parameters,
      validation: written.validation, samples: written.samples, out: path.join(dir, 'card') });

    // bench --json -: the report as one line (the file form stays pretty).
    const bench = await cli(['bench', '--models', 'tiny', '--batches', '1', '--lengths', '10', '--min-runs', '1',
      '--min-seconds', '0.1', '--device', 'cpu', '--json', '-']);
    expect(bench.code, bench.stderr).toBe(0);
    const [report, ...others] = jsonLines(bench.stdout);
    expect(others).toEqual([]);
    expect(report).toMatchObject({ device: 'cpu', provider: 'cpu' });
  }, slow);

  it('takes --model DIR (named after the folder) and --model NAME=DIR', async () => {
    const folder = path.join(root, 'test/fixtures/tiny-gpt2');
    const args = ['invert', '--target-ids', reachable, '--param', 'flat', '--seed', '1', '--max-iters', '50', '--device', 'cpu'];
    const byDir = await cli([...args, '--model', folder]);
    expect(byDir.code, byDir.stderr).toBe(0);
    expect(byDir.stdout).toMatch(/^time: .* \(model tiny-gpt2\)$/m);
    const named = await cli([...args, '--model', `mine=${folder}`]);
    expect(named.code, named.stderr).toBe(0);
    expect(named.stdout).toMatch(/^time: .* \(model mine\)$/m);
  }, slow);

  it('reaches --server HOST:PORT without a scheme', async () => {
    const run = await cli(['models', '--server', hostPort, '--token', token, '--json']);
    expect(run.code, run.stderr).toBe(0);
    expect(jsonLines(run.stdout)[0]!.name).toBe('tiny');
  });

  it('says what went wrong in one sentence, without class names', async () => {
    const port = await freePort();
    const refused = await cli(['jobs', '--server', `127.0.0.1:${port}`, '--token', token]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(`recite: cannot reach the recite server at http://127.0.0.1:${port}: the connection was refused\n`);

    const badNumber = await cli(['invert', 'Hello', '--max-iters', 'abc', '--server', serve.url, '--token', token]);
    expect(badNumber.code).toBe(1);
    expect(badNumber.stderr).toBe('recite: --max-iters abc: expected an integer ≥ 1\n');

    const unknownJob = await cli(['cancel', '00000000-0000-0000-0000-000000000000'], onServer());
    expect(unknownJob.code).toBe(1);
    expect(unknownJob.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    const unknownDelete = await cli(['delete', '00000000-0000-0000-0000-000000000000'], onServer());
    expect(unknownDelete.code).toBe(1);
    expect(unknownDelete.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    for (const run of [refused, badNumber, unknownJob, unknownDelete]) expect(run.stderr).not.toMatch(/[A-Z][a-z]+Error\b|\[[a-z_]+\]/);
  }, slow);

  it('shows iteration/total, rate and ETA while it runs and leaves no progress line behind (two restarts)', async () => {
    const run = runOnTerminal(['invert', '--target-ids', reachable, '--param', 'flat', '--seed', '1', '--restarts', '2',
      '--max-iters', '300', '--model', 'tiny', '--device', 'cpu']);
    try {
      await waitForOutput(run, /restart 1 +iteration +\d+\/300 .* [\d.]+ it\/s +ETA (\d+[smh]|–)/);
      expect(await run.exited, run.output()).toBe(0);
    } finally {
      await stop(run);
    }
    const screen = await screenOf(run.output());
    expect(screen.filter((l) => /iteration +\d+\/300|^ +model/.test(l)), screen.join('\n')).toEqual([]);
    expect(screen.filter((l) => /^restart \d \(seed \d+\): /.test(l))).toHaveLength(2);
    expect(screen.at(-7)).toMatch(/^status: +HIT/);
  });

  it('decodes with the decoder of the job\'s hit check by default, says which, and explains beams in its help', async () => {
    const file = path.join(dir, 'beam.safetensors');
    const invert = await cli(['invert', '--target-ids', reachable, '--param', 'flat', '--seed', '1', '--max-iters', '200',
      '--decode', 'beam:3:1', '--out', file], onServer());
    expect(invert.code, invert.stderr).toBe(0);
    const decoded = JSON.parse(/^decoded: +(".*")$/m.exec(invert.stdout)![1]!) as string;

    const byDefault = await cli(['decode', file], onServer());
    expect(byDefault.code, byDefault.stderr).toBe(0);
    expect(byDefault.stderr).toBe(`recite decode: beam search, 3 beams (the job's hit check, from ${file}), 6 tokens\n`);
    expect(byDefault.stdout).toBe(`${decoded}\n`);
    const asJson = jsonLines((await cli(['decode', file, '--json'], onServer())).stdout);
    expect(asJson).toEqual([expect.objectContaining({ text: decoded, decoder: 'beam:3', maxTokens: 6 })]);
    const greedy = jsonLines((await cli(['decode', file, '--beams', '1', '--json'], onServer())).stdout);
    expect(greedy[0]).toMatchObject({ decoder: 'greedy', maxTokens: 6 });

    const help = await cli(['decode', '--help']);
    expect(help.stdout).toMatch(/hit check/);
    expect(help.stdout).toMatch(/most likely whole sequence/);
  }, slow);
});
