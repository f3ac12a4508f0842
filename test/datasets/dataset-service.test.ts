// DatasetService on a real server (port 0, the tiny model on the CPU): a data set becomes jobs and finishes with
// every row accounted for; the same name and content finds it again, other content under the name is refused;
// bad input names the field; other clients see nothing; cancelling drains it; and a row caught by a crash while its
// job was being created is matched to that job instead of being submitted twice.
import fs from 'node:fs';
import path from 'node:path';
import type { Client } from '@connectrpc/connect';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SqliteDatasetStore } from '../../server/datasets/dataset-store.js';
import { DatasetService, DatasetState } from '../../sdk/gen/recite/v1/dataset_pb.js';
import type { Dataset, DatasetRow, SubmitDatasetRequest } from '../../sdk/gen/recite/v1/dataset_pb.js';
import { JobSettingsSchema, JobState, ReciteService, Status } from '../../sdk/gen/recite/v1/recite_pb.js';
import { toBinary, create } from '@bufbuild/protobuf';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { deriveSeed } from '../../server/util/seeded-random.js';
import { loadTinyModel, reachableTarget } from '../helpers/engine-run.js';
import { aliceToken, bobToken, startTestServer } from '../helpers/test-server.js';
import type { TestServer } from '../helpers/test-server.js';

const alice = { headers: { authorization: `Bearer ${aliceToken}` } };
const bob = { headers: { authorization: `Bearer ${bobToken}` } };
const flat = { parameterization: { kind: { case: 'flat' as const, value: {} } }, maxIterations: 300, reportEvery: 10 };

let targets: number[][];
const servers: TestServer[] = [];

beforeAll(async () => {
  const model = await loadTinyModel();
  try {
    targets = await Promise.all(Array.from({ length: 12 }, (_, i) => reachableTarget(model, deriveSeed(100, i), 6)));
  } finally {
    await model.release();
  }
});

afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

async function start(dir?: string) {
  const server = await startTestServer(dir ? { dir } : {});
  servers.push(server);
  const transport = createGrpcTransport({ baseUrl: server.url });
  return { server, datasets: createClient(DatasetService, transport), recite: createClient(ReciteService, transport) };
}

function rowsOf(ids: readonly number[][]): SubmitDatasetRequest['rows'] {
  return ids.map((t, i) => ({ id: `r${i}`, target: { case: 'targetIds', value: { ids: t } } }) as SubmitDatasetRequest['rows'][number]);
}

/** Follow a data set to its end; return the finished rows in the order they came and the last header. */
async function follow(client: Client<typeof DatasetService>, name: string, after = 0): Promise<{ rows: DatasetRow[]; dataset: Dataset }> {
  const rows: DatasetRow[] = [];
  let dataset: Dataset | undefined;
  for await (const message of client.watchDataset({ name, afterFinishOrder: after }, alice)) {
    dataset = message.dataset;
    rows.push(...message.rows.map((r) => r.row!));
  }
  return { rows, dataset: dataset! };
}

async function codeOf(promise: Promise<unknown>): Promise<{ code: Code; message: string }> {
  try {
    await promise;
  } catch (error: unknown) {
    const e = ConnectError.from(error);
    return { code: e.code, message: e.rawMessage };
  }
  throw new Error('expected the call to fail');
}

describe('DatasetService', () => {
  it('runs every row as a job, in finish order, and finds the data set again by name and content', async () => {
    const { datasets, recite } = await start();
    const tooLong = { id: 'too-long', target: { case: 'text', value: 'x '.repeat(70) } } as SubmitDatasetRequest['rows'][number];
    const request = { name: 'reachable-12', model: '', settings: flat, rows: [...rowsOf(targets), tooLong] };
    const submitted = await datasets.submitDataset(request, alice);
    expect(submitted.created).toBe(true);
    expect(submitted.dataset!.contentHash).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(submitted.dataset!.counts!.rows).toBe(13);

    const { rows, dataset } = await follow(datasets, 'reachable-12');
    expect(dataset.state).toBe(DatasetState.FINISHED);
    expect(rows.map((r) => r.finishOrder)).toEqual(Array.from({ length: 13 }, (_, i) => i + 1));
    expect(new Set(rows.map((r) => r.id)).size).toBe(13);
    const c = dataset.counts!;
    expect(c.finished).toBe(13);
    expect(c.hits + c.misses + c.failed).toBe(13);
    expect(c.failed).toBe(1);
    expect(c.hits).toBeGreaterThanOrEqual(8); // flat reaches most reachable six-token targets within 300 iterations
    const refused = rows.find((r) => r.id === 'too-long')!;
    expect(refused.status).toBe(Status.FAILED);
    expect(refused.jobId).toBe('');
    expect(refused.error).toMatch(/spec\.target: \d+ tokens .*the model's context allows 64/);
    // Each ran row is an ordinary job of the client, labelled with the data set and the row.
    const hit = rows.find((r) => r.status === Status.HIT)!;
    const { job } = await recite.getJob({ jobId: hit.jobId }, alice);
    expect(job!.label).toBe(`reachable-12/${hit.id}`);
    expect(job!.state).toBe(JobState.FINISHED);
    expect(job!.result!.restarts[job!.result!.best]!.iterationsToHit).toBe(hit.iterationsToHit);
    expect(c.iterations).toBe(BigInt(rows.reduce((s, r) => s + r.iterations, 0)));

    // The same name and content: found, not created again; rows and outcomes unchanged.
    const again = await datasets.submitDataset(request, alice);
    expect(again.created).toBe(false);
    expect(again.dataset!.contentHash).toBe(submitted.dataset!.contentHash);
    const page = await datasets.getDataset({ name: 'reachable-12', includeRows: true }, alice);
    expect(page.rows.map((r) => r.jobId).sort()).toEqual(rows.map((r) => r.jobId).sort());
    // A watch after a finish order sends only the rows after it.
    expect((await follow(datasets, 'reachable-12', 10)).rows.map((r) => r.finishOrder)).toEqual([11, 12, 13]);
    // An empty name is the content hash.
    const byHash = await datasets.submitDataset({ ...request, name: '' }, alice);
    expect(byHash.dataset!.name).toBe(submitted.dataset!.contentHash);
    await datasets.cancelDataset({ name: byHash.dataset!.name }, alice);

    // The name with other content is refused, naming both hashes.
    const other = await codeOf(datasets.submitDataset({ ...request, settings: { ...flat, lr: 0.3 } }, alice));
    expect(other.code).toBe(Code.AlreadyExists);
    expect(other.message).toMatch(/^name: data set "reachable-12" exists with other content \(sha256:[0-9a-f]+\); this request's is sha256:/);
    // Another client sees no such data set.
    expect((await codeOf(datasets.getDataset({ name: 'reachable-12' }, bob))).code).toBe(Code.NotFound);
    expect((await datasets.listDatasets({}, bob)).datasets).toHaveLength(0);
    expect((await datasets.listDatasets({}, alice)).datasets.map((d) => d.name)).toContain('reachable-12');
  });

  it('still watches a data set with results after one of its jobs was deleted: that row comes without its job', async () => {
    const { datasets, recite } = await start();
    await datasets.submitDataset({ name: 'deleted-job', model: '', settings: flat, rows: rowsOf(targets.slice(0, 2)) }, alice);
    const { rows } = await follow(datasets, 'deleted-job');
    const [gone, kept] = rows;
    await recite.deleteJob({ jobId: gone!.jobId }, alice);
    const finished = [];
    for await (const message of datasets.watchDataset({ name: 'deleted-job', includeResults: true }, alice)) {
      finished.push(...message.rows);
    }
    expect(finished.map((r) => [r.row!.jobId, r.job?.jobId])).toEqual([[gone!.jobId, undefined], [kept!.jobId, kept!.jobId]]);
    expect(finished[0]!.row).toMatchObject({ status: gone!.status, state: JobState.FINISHED });
  });

  it('refuses bad input naming the field, the value and the limit', async () => {
    const { datasets } = await start();
    const rows = rowsOf(targets.slice(0, 2));
    const repeated = await codeOf(datasets.submitDataset({ name: 'x', settings: flat, rows: [...rows, rows[0]!] }, alice));
    expect(repeated).toEqual({ code: Code.InvalidArgument, message: 'rows[2].id: "r0" repeats the id of rows[0]; row ids must be unique within a data set' });
    const lr = await codeOf(datasets.submitDataset({ name: 'x', settings: { ...flat, maxIterations: 100_001 }, rows }, alice));
    expect(lr).toEqual({ code: Code.InvalidArgument, message: 'settings.max_iterations: 100001 is not an integer in [1, 100000]' });
    const model = await codeOf(datasets.submitDataset({ name: 'x', model: 'gpt2-xl', settings: flat, rows }, alice));
    expect(model).toEqual({ code: Code.InvalidArgument, message: 'model: "gpt2-xl" is not served here; models: tiny' });
    const none = await codeOf(datasets.submitDataset({ name: 'x', settings: flat, rows: [] }, alice));
    expect(none.code).toBe(Code.InvalidArgument);
    expect(none.message).toMatch(/^rows: /);
    const long = await codeOf(datasets.sampleReachableTargets({ count: 1, tokens: 64, promptVectors: 1 }, alice));
    expect(long).toEqual({ code: Code.InvalidArgument,
      message: 'tokens: 64 with prompt_vectors = 1 need 65 positions; the model\'s context allows 64, so at most 63' });
    expect((await codeOf(datasets.listDatasets({}, {}))).code).toBe(Code.Unauthenticated);
  });

  it('samples reachable targets: the greedy continuation of a seeded hidden prompt', async () => {
    const { datasets } = await start();
    const { targets: sampled } = await datasets.sampleReachableTargets({ count: 3, tokens: 6, seed: 100 }, alice);
    expect(sampled.map((t) => t.id)).toEqual(['reachable-100-0', 'reachable-100-1', 'reachable-100-2']);
    expect(sampled.map((t) => t.hiddenSeed)).toEqual([0, 1, 2].map((i) => deriveSeed(100, i)));
    expect(sampled.map((t) => t.targetIds)).toEqual(targets.slice(0, 3));
  });

  it('cancels: rows not yet submitted end at once, running jobs stop', async () => {
    const { datasets } = await start();
    const endless = { ...flat, maxIterations: 100_000, continueAfterHit: true, reportEvery: 100 };
    const many = Array.from({ length: 200 }, (_, i) => targets[i % targets.length]!);
    await datasets.submitDataset({ name: 'endless', settings: endless, rows: rowsOf(many) }, alice);
    const watching = follow(datasets, 'endless');
    await new Promise((resolve) => setTimeout(resolve, 600));
    const cancelled = await datasets.cancelDataset({ name: 'endless' }, alice);
    expect(cancelled.dataset!.state).toBe(DatasetState.CANCELLED);
    const { rows, dataset } = await watching;
    expect(rows).toHaveLength(200);
    expect(rows.every((r) => r.status === Status.CANCELLED)).toBe(true);
    expect(dataset.state).toBe(DatasetState.CANCELLED);
    expect(dataset.counts!.failed).toBe(200);
  });

  it('after a crash while a row\'s job was being created, adopts that job instead of submitting the row again', async () => {
    // A server creates the job the crash interrupted (same client, the row's label), then goes away.
    const first = await start();
    const { jobId } = await first.recite.submitJob({ spec: { target: { case: 'targetIds', value: { ids: targets[0]! } },
      settings: flat, label: 'crashed/r0' } }, alice);
    await first.server.close();
    servers.splice(0);
    // The data set, as the crash left it: row 0 SUBMITTING since before the job was made, the others PENDING.
    const store = SqliteDatasetStore.open(first.server.dbPath);
    await store.createDataset({ id: 'crashed-id', clientId: 'alice', name: 'crashed', contentHash: 'sha256:test', model: 'tiny',
      settings: toBinary(JobSettingsSchema, create(JobSettingsSchema, flat as MessageInitShape<typeof JobSettingsSchema>)),
      createdAtMs: Date.now() - 5000, rows: targets.slice(0, 3).map((ids, i) => ({ rowId: `r${i}`, target: { ids } })) });
    await store.markSubmitting('crashed-id', 0, Date.now() - 2000);
    await store.close();

    const second = await start(first.server.dir);
    const { rows } = await follow(second.datasets, 'crashed');
    expect(rows).toHaveLength(3);
    expect(rows.find((r) => r.id === 'r0')!.jobId).toBe(jobId);
    const jobs = (await second.recite.listJobs({ pageSize: 100 }, alice)).jobs;
    expect(jobs.filter((j) => j.label === 'crashed/r0')).toHaveLength(1);
    expect(jobs.filter((j) => j.label.startsWith('crashed/'))).toHaveLength(3);
    expect(fs.existsSync(path.join(first.server.dir, 'recite.db'))).toBe(true);
  });
});
