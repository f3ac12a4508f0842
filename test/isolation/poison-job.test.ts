// One job must not break the shared server: an init embedding of 1e38 (finite in float32, NaN after the first
// LayerNorm) once made the argmax -1, the tokenizer threw inside the result summary, the rejection went unhandled and
// `recite serve` exited; the job stayed RUNNING, so every restart resumed it and died again. Now the job ends FAILED
// with a reason, logged with its id, and the same process serves the next job.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { create, toJson } from '@bufbuild/protobuf';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterEach, describe, expect, it } from 'vitest';
import { DatasetService, DatasetState } from '../../sdk/gen/recite/v1/dataset_pb.js';
import { JobSettingsSchema, JobSpecSchema, Status } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { JobEvent } from '../../sdk/gen/recite/v1/recite_pb.js';
import { authHeaders, reciteClient, serveToken, spawnServe, stopServe } from '../crash/serve-process.js';
import { openStream } from '../dashboard/ws-client.js';
import type { ServeProcess } from '../crash/serve-process.js';

const servers: ServeProcess[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await stopServe(s);
});

function tempDb(): string {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'recite-poison-')), 'recite.db');
}

const C = 32; // the tiny model's n_embd

function poisonSpec(value: number): MessageInitShape<typeof JobSpecSchema> & { settings: MessageInitShape<typeof JobSettingsSchema> } {
  return {
    target: { case: 'text', value: 'Hello world' },
    settings: {
      parameterization: { kind: { case: 'flat', value: {} } },
      init: { kind: { case: 'embedding', value: { shape: [1, C], values: new Array<number>(C).fill(value) } } },
      maxIterations: 20,
    },
  };
}

async function resultOf(url: string, jobId: string): Promise<JobEvent[]> {
  const events: JobEvent[] = [];
  for await (const r of reciteClient(url).watchJob({ jobId }, { headers: authHeaders, timeoutMs: 30_000 })) events.push(r.event!);
  return events;
}

describe('a job with poisoned numbers', () => {
  it('ends FAILED with a reason, is logged with its id, and the server keeps serving (RPC, /ws, data sets)', async () => {
    const serve = await spawnServe(tempDb());
    servers.push(serve);
    const client = reciteClient(serve.url);
    // NaN and ±Inf are refused at submission (InvalidArgument); these pass and overflow inside the graph.
    for (const value of [1e38, -3e38]) {
      const { jobId } = await client.submitJob({ spec: poisonSpec(value) }, { headers: authHeaders });
      const events = await resultOf(serve.url, jobId);
      const last = events.at(-1)!;
      expect(last.kind.case).toBe('result');
      const result = last.kind.case === 'result' ? last.kind.value : undefined;
      expect(result?.status).toBe(Status.FAILED);
      expect(result?.restarts[0]?.error).toMatch(/not finite|non-finite/);
      expect(serve.stderr()).toContain(jobId);
    }
    const refused = await client.submitJob({ spec: poisonSpec(Number.NaN) }, { headers: authHeaders }).catch((e: unknown) => e);
    expect(ConnectError.from(refused).code).toBe(Code.InvalidArgument);
    // The same job through /ws and as a data set row (both once ended the process the same way).
    const ws = await openStream(serve.url, serveToken);
    ws.send({ type: 'submit', id: 1, spec: toJson(JobSpecSchema, create(JobSpecSchema, poisonSpec(1e38))) });
    const { message } = await ws.next((m) => m.id === 1, { timeoutMs: 10_000 });
    await ws.close();
    expect(message.type).toBe('submitted');
    const viaWs = (await resultOf(serve.url, message.jobId as string)).at(-1)!;
    expect(viaWs.kind.case === 'result' && viaWs.kind.value.status).toBe(Status.FAILED);
    const datasets = createClient(DatasetService, createGrpcTransport({ baseUrl: serve.url }));
    const { settings } = poisonSpec(1e38);
    await datasets.submitDataset({ name: 'poison', settings, rows: [{ id: 'r0', target: { case: 'text', value: 'Hello world' } }] },
      { headers: authHeaders });
    for (let tries = 0; ; tries++) {
      const { dataset } = await datasets.getDataset({ name: 'poison' }, { headers: authHeaders });
      if (dataset?.state === DatasetState.FINISHED) {
        expect(dataset.counts?.failed).toBe(1);
        break;
      }
      if (tries > 300) throw new Error('the poisoned data set did not finish');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // the same process still runs ordinary jobs
    const { jobId } = await client.submitJob({ spec: { target: { case: 'text', value: 'Hello world' },
      settings: { maxIterations: 5 } } }, { headers: authHeaders });
    const events = await resultOf(serve.url, jobId);
    expect(events.at(-1)?.kind.case).toBe('result');
    expect(serve.child.exitCode).toBeNull();
    expect(serve.child.signalCode).toBeNull();
  }, 60_000);
});
