// The summaries of restarts that finish together share their decode runs, also once the scheduler knows what a
// summary costs: a client alone takes all its waiting summaries in one round, as it takes all its gradient rows.
// Before, a summary estimated at more than a round's length ran one per round, each with decode runs of its own.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EngineModel } from '../../server/engine/engine-model.js';
import { InversionEngine } from '../../server/engine/inversion-engine.js';
import { loadTinyModel, submitRecorded } from '../helpers/engine-run.js';

let model: EngineModel;
let slow: EngineModel;
let rowsPerDecode: number[] = [];
const jobs = 8;
const target = [15496, 995]; // "Hello world": a summary decodes 2 tokens

beforeAll(async () => {
  model = await loadTinyModel();
  // Each decode run takes 100 ms, so a summary is estimated at far more than a round's 50 ms.
  slow = {
    ...model,
    decode: {
      nextLogprobs: async (prompt, promptVectors, tokens, penalty) => {
        rowsPerDecode.push(tokens.length);
        await new Promise((resolve) => setTimeout(resolve, 100));
        return model.decode.nextLogprobs(prompt, promptVectors, tokens, penalty);
      },
    },
  };
});
afterAll(async () => {
  await model.release();
});

async function wave(engine: InversionEngine, seed: number): Promise<void> {
  const runs = await Promise.all(Array.from({ length: jobs }, (_, i) => submitRecorded(engine, {
    targetIds: target, client: 'alone', settings: { maxIterations: 2, stopOnHit: false, seed: seed + i,
      parameterization: { kind: 'flat' } },
  })));
  const results = await Promise.all(runs.map((r) => r.result));
  for (const result of results) expect(result.restarts[0]!.decodedIds).toHaveLength(target.length);
}

describe('summaries of one client that finish together', () => {
  it('share every decode run, before and after the scheduler has measured a summary', async () => {
    const engine = new InversionEngine(slow);
    rowsPerDecode = [];
    await wave(engine, 0); // the first summaries teach the scheduler their cost
    expect(rowsPerDecode).toEqual([jobs, jobs]);
    rowsPerDecode = [];
    await wave(engine, 100);
    expect(rowsPerDecode).toEqual([jobs, jobs]); // two decode steps for all eight, not two for each of a few
    await engine.close();
  });
});
