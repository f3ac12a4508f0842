// Per-client quotas and the admin client on a real server: the tokens file sets each client's limits and marks
// admins; a client at its own limit is refused with RESOURCE_EXHAUSTED naming the limit and its use while another
// client is still accepted; an admin lists every client's jobs and cancels any; metrics show each client's use.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobBytes } from '../../server/engine/run-cost.js';
import { inversionLimits, makeInversionSettings } from '../../server/engine/settings.js';
import { TokenTable } from '../../server/service/auth.js';
import { parseClientOptions } from '../../server/service/client-policy.js';
import { JobState, Status } from '../../sdk/gen/recite/v1/recite_pb.js';
import { startCli } from '../datasets/processes.js';
import type { TestServer } from '../helpers/test-server.js';
import { startTestServer } from '../helpers/test-server.js';
import type { ReciteClient } from './service-fixtures.js';
import { bearer, endlessSpec, errorOf, networkTransport, reciteClient, waitFor } from './service-fixtures.js';

const tokensFile = `# the syntax: TOKEN CLIENT [admin] [max-jobs=N] [max-queued=SIZE]
alice-token-0123456789abcdef alice max-jobs=2
bob-token-0123456789abcdef00 bob
carol-token-0123456789abcdef carol admin
dave-token-0123456789abcdef0 dave max-queued=2KiB
`;
const alice = bearer('alice-token-0123456789abcdef');
const bob = bearer('bob-token-0123456789abcdef00');
const carol = bearer('carol-token-0123456789abcdef');
const dave = bearer('dave-token-0123456789abcdef0');

describe('the tokens file', () => {
  it('keeps plain "TOKEN CLIENT" lines valid and reads each client\'s options', () => {
    const { tokens, policies } = TokenTable.parseFileWithPolicies(tokensFile, 'tokens.txt');
    expect(tokens.get('bob-token-0123456789abcdef00')).toBe('bob');
    expect(policies.get('bob')).toEqual({ admin: false });
    expect(policies.get('alice')).toEqual({ admin: false, maxJobs: 2 });
    expect(policies.get('carol')).toEqual({ admin: true });
    expect(policies.get('dave')).toEqual({ admin: false, maxQueuedBytes: 2048 });
    expect(parseClientOptions(['max-queued=64MiB', 'max-jobs=5', 'admin'], 'f:1'))
      .toEqual({ admin: true, maxJobs: 5, maxQueuedBytes: 64 * 2 ** 20 });
    // A client with two tokens takes the options of both lines.
    const merged = TokenTable.parseFileWithPolicies('token-one-0123456789 erin max-jobs=3\ntoken-two-0123456789 erin admin\n');
    expect(merged.policies.get('erin')).toEqual({ admin: true, maxJobs: 3 });
  });

  it.each([
    ['token-one-0123456789 erin max-jobs=0', 'tokens.txt:1: max-jobs=0 is not an integer ≥ 1'],
    ['token-one-0123456789 erin max-jobs=two', 'tokens.txt:1: max-jobs=two is not an integer ≥ 1'],
    ['token-one-0123456789 erin max-queued=lots', 'tokens.txt:1: max-queued: "lots" is not a size'],
    ['token-one-0123456789 erin root', 'tokens.txt:1: unknown option "root"; expected admin, max-jobs=N or max-queued=SIZE'],
    ['token-one-0123456789 erin max-jobs=3\ntoken-two-0123456789 erin max-jobs=4',
      'tokens.txt:2: client erin is given max-jobs=4 here and 3 on an earlier line'],
  ])('refuses %j naming the line, the value and what is expected', (text, message) => {
    expect(() => TokenTable.parseFileWithPolicies(text, 'tokens.txt')).toThrow(message);
  });
});

describe('a server with per-client limits and an admin', () => {
  let server: TestServer;
  let c: ReciteClient;
  let dir: string;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-quotas-'));
    fs.writeFileSync(path.join(dir, 'tokens.txt'), tokensFile);
    server = await startTestServer({ tokens: TokenTable.load(path.join(dir, 'tokens.txt'), undefined), maxQueue: 10 });
    c = reciteClient(networkTransport('connect', server.url));
  });
  afterAll(async () => {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('refuses alice past her own max-jobs, naming the limit and her use, and still accepts bob', async () => {
    const first = (await c.submitJob({ spec: endlessSpec }, alice)).jobId;
    const second = (await c.submitJob({ spec: endlessSpec }, alice)).jobId;
    const refused = await errorOf(c.submitJob({ spec: endlessSpec }, alice));
    expect(refused.code).toBe(Code.ResourceExhausted);
    expect(refused.rawMessage).toBe('queue is full for client "alice": 2 jobs are queued or running; the limit is 2');
    const bobs = (await c.submitJob({ spec: endlessSpec }, bob)).jobId;
    expect((await c.getJob({ jobId: bobs }, bob)).job!.state).not.toBe(JobState.FINISHED);
    for (const [jobId, who] of [[first, alice], [second, alice], [bobs, bob]] as const) await c.cancelJob({ jobId }, who);
    // A cancelled job counts against alice's limit until it has ended: the tests below submit for her again.
    for (const [jobId, who] of [[first, alice], [second, alice], [bobs, bob]] as const) {
      await waitFor(async () => (await c.getJob({ jobId }, who)).job!.state === JobState.FINISHED, 10_000,
        'a cancelled job to end');
    }
  });

  it('refuses dave past his max-queued, naming his queued cost, the job\'s and the limit', async () => {
    // endlessSpec: "Hello world" (2 tokens), full (P = 2), RMSProp: (3 + 1) x 64 + 2 x 64 floats = 1.5 KiB a restart.
    const cost = jobBytes(makeInversionSettings({ parameterization: { kind: 'full' } }, inversionLimits), 2, { nEmbd: 32, vocabSize: 50257 });
    expect(cost).toBe(1536);
    const first = (await c.submitJob({ spec: endlessSpec }, dave)).jobId;
    const refused = await errorOf(c.submitJob({ spec: endlessSpec }, dave));
    expect(refused.code).toBe(Code.ResourceExhausted);
    expect(refused.rawMessage).toBe('queued cost over the limit for client "dave": its unfinished jobs hold 1.5 KiB ' +
      'and this job would add 1.5 KiB (1 restarts); the limit is 2 KiB');
    const bobs = (await c.submitJob({ spec: endlessSpec }, bob)).jobId; // bob is not held to dave's limit
    await c.cancelJob({ jobId: first }, dave);
    await c.cancelJob({ jobId: bobs }, bob);
  });

  it('lets the admin list every client\'s jobs and cancel any; others may do neither', async () => {
    const bobs = (await c.submitJob({ spec: endlessSpec }, bob)).jobId;
    const alices = (await c.submitJob({ spec: endlessSpec }, alice)).jobId;
    const all = (await c.listJobs({ allClients: true, pageSize: 100 }, carol)).jobs;
    const owners = new Map(all.map((j) => [j.jobId, j.client]));
    expect(owners.get(bobs)).toBe('bob');
    expect(owners.get(alices)).toBe('alice');
    expect((await c.listJobs({}, carol)).jobs).toEqual([]); // without all_clients: carol's own, none

    const denied = await errorOf(c.listJobs({ allClients: true }, alice));
    expect(denied.code).toBe(Code.PermissionDenied);
    expect(denied.rawMessage).toContain('client "alice" is not an admin');
    expect((await errorOf(c.cancelJob({ jobId: bobs }, alice))).code).toBe(Code.NotFound);

    expect((await c.cancelJob({ jobId: bobs }, carol)).state).not.toBe(JobState.FINISHED);
    await waitFor(async () => (await c.getJob({ jobId: bobs }, bob)).job!.state === JobState.FINISHED, 10_000,
      'bob\'s job to end after the admin cancelled it');
    expect((await c.getJob({ jobId: bobs }, bob)).job!.result!.status).toBe(Status.CANCELLED);
    await c.cancelJob({ jobId: alices }, alice);
  });

  it('lists every client\'s jobs with `recite jobs --all` for the admin, and tells anyone else why not', async () => {
    const bobs = (await c.submitJob({ spec: endlessSpec }, bob)).jobId;
    const admin = startCli(['jobs', '--all', '--server', server.url, '--token', 'carol-token-0123456789abcdef']);
    expect((await admin.exited).code).toBe(0);
    const row = admin.stdout().split('\n').find((line) => line.includes(bobs));
    expect(row).toMatch(/│ bob +│/); // the client column
    const other = startCli(['jobs', '--all', '--server', server.url, '--token', 'alice-token-0123456789abcdef']);
    expect((await other.exited).code).not.toBe(0);
    expect(other.stderr()).toContain('client "alice" is not an admin');
    await c.cancelJob({ jobId: bobs }, bob);
  });

  it('reports each client\'s queued cost, running rows and seconds used in the metrics', async () => {
    const jobId = (await c.submitJob({ spec: endlessSpec }, bob)).jobId;
    await waitFor(async () => ((await c.getJob({ jobId }, bob)).job!.lastProgress?.iteration ?? 0) > 0, 10_000,
      'bob\'s job to iterate');
    const text = await (await fetch(`${server.url}/metrics`)).text();
    expect(text).toMatch(/recite_client_queued_cost_bytes\{client="bob"\} [1-9]\d*/);
    expect(text).toMatch(/recite_client_running_rows\{client="bob",model="tiny"\} [1-9]/);
    expect(text).toMatch(/recite_client_seconds_total\{client="bob",model="tiny",kind="graph"\} [0-9.e-]+/);
    await c.cancelJob({ jobId }, bob);
  });
});
