// The moments around a restart, in process: a watcher cut off by a graceful shutdown is told to come back
// (Unavailable, with the sequence to resume after); between a restart and its resume (the model still loading)
// a job's history is not replayed, since the events after its checkpoint are about to be replaced, and a cancel
// sent then is kept and stops the job when it resumes.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import type { Client } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { loadEngineModel } from '../../server/engine/engine-model.js';
import { resolveModelDir } from '../../server/model/builtin-models.js';
import { TokenTable } from '../../server/service/auth.js';
import { createReciteServer } from '../../server/app.js';
import type { ReciteServer } from '../../server/app.js';
import { JobState, ReciteService, Status } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { JobEvent } from '../../sdk/gen/recite/v1/recite_pb.js';
import { aliceToken } from '../helpers/test-server.js';

const headers = { authorization: `Bearer ${aliceToken}` };
const longSpec = {
  target: { case: 'text', value: 'does it make sense to compare apples and oranges?' },
  settings: { maxIterations: 100_000, continueAfterHit: true },
} as const;

const servers: ReciteServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

/** A server on `dir`'s database whose model load waits for `gate` (a big checkpoint loading, say). */
async function startServer(dir: string, gate: Promise<void> = Promise.resolve()): Promise<{ server: ReciteServer; client: Client<typeof ReciteService> }> {
  return startServerLoading(dir, async (name, modelDir, device) => {
    await gate;
    return loadEngineModel(name, modelDir, device);
  });
}

type ModelLoader = NonNullable<Parameters<typeof createReciteServer>[0]['loadModel']>;

async function startServerLoading(dir: string, loadModel: ModelLoader): Promise<{ server: ReciteServer; client: Client<typeof ReciteService> }> {
  const server = await createReciteServer({
    models: [{ name: 'tiny', dir: resolveModelDir('tiny') }],
    db: path.join(dir, 'recite.db'),
    tokens: new TokenTable(new Map([[aliceToken, 'alice']])),
    device: 'cpu',
    checkpointEvery: 10,
    logger: pino({ level: 'silent' }),
    loadModel,
  });
  servers.push(server);
  await server.listen(0);
  return { server, client: createClient(ReciteService, createGrpcTransport({ baseUrl: server.url })) };
}

async function errorOf(run: () => Promise<unknown>): Promise<ConnectError> {
  try {
    await run();
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error('expected the call to fail');
}

describe('around a restart', () => {
  it('ends a watch cut by shutdown with Unavailable; before the resume, replays the stored history and keeps a cancel', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-window-'));
    const first = await startServer(dir);
    await first.server.models.ready();
    const { jobId } = await first.client.submitJob({ spec: longSpec }, { headers });
    const seen: JobEvent[] = [];
    const cut = await errorOf(async () => {
      for await (const r of first.client.watchJob({ jobId }, { headers })) {
        seen.push(r.event!);
        if (r.event!.kind.case === 'progress' && r.event!.kind.value.iteration === 30) void first.server.close();
      }
    });
    expect(cut.code).toBe(Code.Unavailable);
    const lastSeen = seen.at(-1)!.sequence;
    expect(cut.rawMessage).toContain(`after sequence ${lastSeen}`);

    let open!: () => void;
    const second = await startServer(dir, new Promise((resolve) => { open = resolve; }));
    // The model is loading: the job is stored as running but not resumed. A watch replays the stored history at once
    // (the shutdown checkpoint covers every event sent) and follows the store until the job ends.
    expect((await second.client.getJob({ jobId }, { headers })).job!.state).toBe(JobState.RUNNING);
    const events: JobEvent[] = [];
    const following = (async () => {
      for await (const r of second.client.watchJob({ jobId }, { headers })) events.push(r.event!);
    })();
    for (let waited = 0; events.length < seen.length; waited += 20) {
      if (waited > 10_000) throw new Error(`the stored history did not replay: ${events.length} of ${seen.length} events`);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(events).toEqual(seen);
    expect((await second.client.cancelJob({ jobId }, { headers })).state).toBe(JobState.RUNNING);

    open();
    await second.server.models.ready();
    await following;
    expect(events.map((e) => e.sequence)).toEqual(events.map((_, i) => i + 1));
    expect(events.slice(0, seen.length)).toEqual(seen);
    const resumed = events.filter((e) => e.kind.case === 'started').map((e) => e.kind.value as { resumedFromIteration: number });
    const lastProgress = seen.filter((e) => e.kind.case === 'progress').at(-1)!.kind.value as { iteration: number };
    expect(resumed.map((s) => s.resumedFromIteration)).toEqual([0, lastProgress.iteration + 1]);
    const result = events.at(-1)!;
    expect(result.kind.case).toBe('result');
    expect((result.kind.value as { status: Status }).status).toBe(Status.CANCELLED);
  });

  it('ends the history of a job that cannot be resumed (its model fails to load) with a FAILED result', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-window-'));
    const first = await startServer(dir);
    await first.server.models.ready();
    const { jobId } = await first.client.submitJob({ spec: longSpec }, { headers });
    for await (const r of first.client.watchJob({ jobId }, { headers })) {
      if (r.event!.kind.case === 'progress' && r.event!.kind.value.iteration === 20) break;
    }
    await first.server.close();

    const second = await startServerLoading(dir, async () => { throw new Error('model.safetensors: truncated'); });
    await second.server.models.ready();
    let job;
    for (let attempt = 0; attempt < 200; attempt++) {
      job = (await second.client.getJob({ jobId }, { headers })).job!;
      if (job.state === JobState.FINISHED) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(job!.state).toBe(JobState.FINISHED);
    expect(job!.result?.status).toBe(Status.FAILED);
    expect(job!.result?.restarts[0]?.error).toContain('model.safetensors: truncated');
    const events: JobEvent[] = [];
    for await (const r of second.client.watchJob({ jobId }, { headers })) events.push(r.event!);
    expect(events.map((e) => e.sequence)).toEqual(events.map((_, i) => i + 1));
    expect(events.at(-1)!.kind.case).toBe('result');
  });
});
