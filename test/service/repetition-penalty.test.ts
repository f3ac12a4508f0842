// The repetition penalty from the SDK's options through the service to the engine and back: a job that sets it runs
// under it (a target the tiny model recites only under theta = 1.3 is hit and decoded) and its result and stored job
// echo theta; a job that leaves it out echoes the default 1.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { greedyDecodeMany } from '../../server/engine/decoders.js';
import { randomNormal } from '../../server/util/seeded-random.js';
import { toJobSpec } from '../../sdk/index.js';
import type { InvertOptions } from '../../sdk/index.js';
import { Status } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { Result } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { InMemoryService, ReciteClient } from './service-fixtures.js';
import { aliceToken, bearer, createInMemoryService, reciteClient } from './service-fixtures.js';

const alice = bearer(aliceToken);
let service: InMemoryService;
let client: ReciteClient;

beforeAll(async () => {
  service = await createInMemoryService();
  client = reciteClient(service.transport);
});
afterAll(async () => {
  await service.close();
});

async function run(targetIds: number[], options: InvertOptions): Promise<{ jobId: string; result: Result }> {
  let jobId = '';
  let result: Result | undefined;
  for await (const response of client.invert({ spec: toJobSpec(targetIds, options) }, alice)) {
    jobId = response.jobId;
    if (response.event?.kind.case === 'result') result = response.event.kind.value;
  }
  return { jobId, result: result! };
}

describe('a job with repetition_penalty 1.3', () => {
  it('runs under it and echoes it in its result and its stored settings', async () => {
    const { model } = service.models.requireRunner('tiny');
    const hidden = randomNormal(model.checkpoint.config.nEmbd, model.embeddings.std, 1000);
    const [targetIds] = await greedyDecodeMany(model.decode, [{ prompt: hidden, promptVectors: 1, steps: 6, repetitionPenalty: 1.3 }]);
    const { jobId, result } = await run(targetIds!, { parameterization: 'flat', seed: 1, maxIterations: 400, repetitionPenalty: 1.3 });
    expect(result.status).toBe(Status.HIT);
    expect(result.restarts[0]!.decodedIds).toEqual(targetIds);
    expect(result.settings!.repetitionPenalty).toBe(1.3);
    const { job } = await client.getJob({ jobId }, alice);
    expect(job!.settings!.repetitionPenalty).toBe(1.3);
  });

  it('leaves a job without it at the default 1, echoed as such', async () => {
    const { jobId, result } = await run([15496, 995], { parameterization: 'full', maxIterations: 2 });
    expect(result.settings!.repetitionPenalty).toBe(1);
    const { job } = await client.getJob({ jobId }, alice);
    expect(job!.settings!.repetitionPenalty).toBe(1);
  });
});
