// Jobs with a repetition penalty through the engine: a target the model recites under theta = 1.3 (its own
// penalized greedy continuation of a hidden prompt) is found with the greedy hit check, the result's summary decodes
// it under the same penalty and echoes theta, and jobs of different thetas share graph runs without changing each
// other's numbers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { greedyDecode, greedyDecodeMany } from '../../server/engine/decoders.js';
import type { EngineModel } from '../../server/engine/engine-model.js';
import { InversionEngine } from '../../server/engine/inversion-engine.js';
import type { InversionSettings } from '../../server/engine/settings.js';
import { randomNormal } from '../../server/util/seeded-random.js';
import { invert, loadTinyModel, maxSequenceDifference, nllSequence, submitRecorded } from '../helpers/engine-run.js';

const theta = 1.3;
let model: EngineModel;

beforeAll(async () => {
  model = await loadTinyModel();
});
afterAll(async () => {
  await model.release();
});

/** The model's greedy continuation of a hidden one-vector prompt under `penalty`: a target known to be reachable. */
async function penalizedTarget(hiddenSeed: number, T: number, penalty: number): Promise<number[]> {
  const hidden = randomNormal(model.checkpoint.config.nEmbd, model.embeddings.std, hiddenSeed);
  return (await greedyDecodeMany(model.decode, [{ prompt: hidden, promptVectors: 1, steps: T, repetitionPenalty: penalty }]))[0]!;
}

describe(`a job with repetition penalty ${theta}`, () => {
  it('reaches a hit on a target reachable under that penalty, decodes it under the penalty and echoes theta', async () => {
    const T = 6;
    const targetIds = await penalizedTarget(1000, T, theta);
    expect(targetIds).not.toEqual(await penalizedTarget(1000, T, 1)); // the penalty shapes this target
    const engine = new InversionEngine(model, { maxBatch: 8, maxActiveRuns: 8 });
    const budget = 400;
    const run = await invert(engine, {
      targetIds,
      settings: { parameterization: { kind: 'flat' }, seed: 1, maxIterations: budget, repetitionPenalty: theta },
    });
    const { best, final } = run;
    console.log(`target ${targetIds.join(' ')}: ${best.status} at iteration ${best.iterationsToHit}`);
    expect(best.status).toBe('HIT');
    expect(final.settings.repetitionPenalty).toBe(theta);
    // The greedy hit check (teacher-forced argmax under the penalty) agrees with free-running decoding under it.
    expect(run.progress().at(-1)!.argmaxIds).toEqual(targetIds);
    expect(best.decodedIds).toEqual(targetIds);
    const [P] = best.embedding.shape;
    expect((await greedyDecodeMany(model.decode, [{ prompt: best.embedding.values, promptVectors: P!, steps: T,
      repetitionPenalty: theta }]))[0]).toEqual(targetIds);
    // Without the penalty the same prompt says something else: the hit depends on the penalty.
    expect(await greedyDecode(model.decode, best.embedding.values, P!, T)).not.toEqual(targetIds);
  });
});

describe('jobs of different repetition penalties in one batch', () => {
  it('have the per-iteration NLL they have alone, to 1e-5', async () => {
    const iterations = 30;
    const jobs = await Promise.all([[1.3, 7], [1, 4], [0.7, 9]].map(async ([penalty, T], i) => ({
      targetIds: await penalizedTarget(3000 + i, T!, penalty!),
      settings: { parameterization: { kind: 'flat' }, seed: 20 + i, maxIterations: iterations, stopOnHit: false,
        repetitionPenalty: penalty! } satisfies Partial<InversionSettings>,
    })));
    const alone: number[][] = [];
    for (const job of jobs) {
      const run = await invert(new InversionEngine(model, { maxBatch: 4, maxActiveRuns: 4 }), job);
      alone.push(nllSequence(run.progress()));
    }
    const engine = new InversionEngine(model, { maxBatch: 4, maxActiveRuns: 4 });
    const together = await Promise.all(jobs.map((job) => submitRecorded(engine, job)));
    await Promise.all(together.map((r) => r.result));
    expect(engine.stats.graphRuns).toBeLessThanOrEqual(iterations + 1); // they did share graph runs
    together.forEach((r, i) => {
      expect(maxSequenceDifference(nllSequence(r.progress()), alone[i]!), `job ${i}`).toBeLessThanOrEqual(1e-5);
    });
  });
});
