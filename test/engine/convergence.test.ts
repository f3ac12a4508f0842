// The search finds what exists: on targets that are the model's own greedy continuation of a hidden prompt, `flat`
// and `full` reach a hit from a different seed within a stated budget, and `projected` drives the NLL down.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { greedyDecode } from '../../server/engine/decoders.js';
import type { EngineModel } from '../../server/engine/engine-model.js';
import { InversionEngine } from '../../server/engine/inversion-engine.js';
import type { InversionSettings } from '../../server/engine/settings.js';
import { invert, loadTinyModel, nllSequence, reachableTarget } from '../helpers/engine-run.js';

let model: EngineModel;
let engine: InversionEngine;

beforeAll(async () => {
  model = await loadTinyModel();
  engine = new InversionEngine(model, { maxBatch: 8, maxActiveRuns: 8 });
});
afterAll(async () => {
  await model.release();
});

/** Run to a hit within `budget` iterations and check the result the way a researcher would. */
async function expectHit(targetIds: number[], settings: Partial<InversionSettings>, budget: number, label: string) {
  const run = await invert(engine, { targetIds, settings: { ...settings, maxIterations: budget } });
  const { best } = run;
  const T = targetIds.length;
  console.log(`${label}: ${best.status} after ${best.iterationsToHit} steps (${best.elapsedMs.toFixed(0)} ms)`);
  expect(best.status).toBe('HIT');
  expect(best.iterationsToHit).not.toBeNull();
  expect(best.iterationsToHit!).toBeLessThan(budget);
  // the hit is the last iteration evaluated, and the search did start somewhere that missed
  expect(best.iterations).toBe(best.iterationsToHit! + 1);
  const progress = run.progress();
  expect(progress[0]!.correctPrefix).toBeLessThan(T);
  expect(progress.at(-1)!.correctPrefix).toBe(T);
  // the result's own decoding, and a free-running greedy decode of its embedding done here, recite the target
  expect(best.decodedIds).toEqual(targetIds);
  const [P, C] = best.embedding.shape;
  expect(best.embedding.values).toHaveLength(P * C);
  expect(await greedyDecode(model.decode, best.embedding.values, P, T)).toEqual(targetIds);
  return best;
}

describe('flat (one vector) reaches HIT on reachable 6-token targets', () => {
  for (const hiddenSeed of [1000, 1001]) {
    it(`hidden prompt seed ${hiddenSeed}, search seed 1, RMSProp lr 0.1: HIT within 200 iterations`, async () => {
      const targetIds = await reachableTarget(model, hiddenSeed, 6);
      const best = await expectHit(targetIds, { parameterization: { kind: 'flat' }, seed: 1 }, 200,
        `flat, hidden ${hiddenSeed}`);
      expect(best.embedding.shape).toEqual([1, model.checkpoint.config.nEmbd]);
    });
  }
});

describe('full (P = T vectors) reaches HIT', () => {
  for (const hiddenSeed of [1000, 1001, 1002, 1003]) {
    it(`2-token continuation of hidden prompt seed ${hiddenSeed}, search seed 5: HIT within 100 iterations`, async () => {
      const targetIds = await reachableTarget(model, hiddenSeed, 2);
      const best = await expectHit(targetIds, { parameterization: { kind: 'full' }, seed: 5 }, 100,
        `full, hidden ${hiddenSeed}`);
      expect(best.embedding.shape).toEqual([2, model.checkpoint.config.nEmbd]);
    });
  }

  it('"Hello world" (natural text, not a model continuation), seed 3: HIT within 1000 iterations', async () => {
    const targetIds = model.tokenizer.encode('Hello world');
    expect(targetIds).toEqual([15496, 995]);
    await expectHit(targetIds, { parameterization: { kind: 'full' }, seed: 3 }, 1000, 'full, "Hello world"');
  });
});

describe('projected (16 of 32 dims) lowers the NLL', () => {
  for (const basis of ['random', 'pca'] as const) {
    it(`basis ${basis}: over 200 iterations the NLL falls at least 5 nats below the initial prompt's`, async () => {
      const targetIds = await reachableTarget(model, 1000, 6);
      const run = await invert(engine, { targetIds, settings: {
        parameterization: { kind: 'projected', dims: 16, basis }, seed: 1, maxIterations: 200, stopOnHit: false,
      } });
      const nll = nllSequence(run.progress());
      expect(nll).toHaveLength(200);
      const initial = nll[0]!;
      const lowest = Math.min(...nll);
      const late = nll.slice(-20).reduce((a, v) => a + v, 0) / 20;
      console.log(`projected ${basis}: NLL ${initial.toFixed(2)} at start, lowest ${lowest.toFixed(2)}, ` +
        `mean of the last 20 ${late.toFixed(2)}`);
      expect(lowest).toBeLessThan(initial - 5);
      expect(late).toBeLessThan(initial - 5); // a lasting descent, not one lucky iteration
      const best = run.best;
      expect(best.theta).toHaveLength(16); // the optimizer moved a 16-number code
      expect(best.embedding.shape).toEqual([1, model.checkpoint.config.nEmbd]);
    });
  }
});
