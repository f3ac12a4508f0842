// Checkpoint and resume: a run snapshotted after k iterations, cancelled, and resubmitted with `resumeFrom` and the
// same settings continues exactly as the run that was never interrupted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EngineModel } from '../../server/engine/engine-model.js';
import { InversionEngine } from '../../server/engine/inversion-engine.js';
import type { RunSnapshot } from '../../server/engine/inversion-run.js';
import type { InversionSettings } from '../../server/engine/settings.js';
import { invert, loadTinyModel, maxSequenceDifference, nllSequence, reachableTarget } from '../helpers/engine-run.js';

let model: EngineModel;
let target: number[];

beforeAll(async () => {
  model = await loadTinyModel();
  target = await reachableTarget(model, 1002, 6); // no hit within these budgets: every run goes the full length
});
afterAll(async () => {
  await model.release();
});

const total = 60;
const cases: [string, Partial<InversionSettings>, number][] = [
  ['flat, RMSProp, constant lr', { parameterization: { kind: 'flat' } }, 25],
  ['full (P = 6), Adam, cosine schedule', { parameterization: { kind: 'full' }, optimizer: 'adam', lr: 0.05, schedule: 'cosine' }, 17],
  ['flat, SGD with momentum, reduce-on-plateau, curriculum', { parameterization: { kind: 'flat' }, optimizer: 'sgd', lr: 0.02,
    schedule: 'plateau', curriculum: true }, 31],
  ['projected (16, pca), RMSProp, patience 500', { parameterization: { kind: 'projected', dims: 16, basis: 'pca' }, patience: 500 }, 40],
];

describe(`resume after k of ${total} iterations`, () => {
  for (const [label, partial, k] of cases) {
    it(`${label}, k = ${k}: the continued NLL sequence is the uninterrupted run's, bit for bit`, async () => {
      const settings: Partial<InversionSettings> = { ...partial, seed: 4, maxIterations: total, stopOnHit: false };
      const engine = new InversionEngine(model, { maxBatch: 4, maxActiveRuns: 4 });
      const whole = await invert(engine, { targetIds: target, settings });
      expect(whole.best.iterations).toBe(total);

      let snapshot: RunSnapshot | undefined;
      let restartsSnapshotted: number[] = [];
      const first = await invert(engine, { targetIds: target, settings }, (progress, handle) => {
        if (progress.iteration === k - 1) {
          const snapshots = handle.snapshots();
          restartsSnapshotted = [...snapshots.keys()];
          // what a store would keep: a deep copy, detached from the live run
          snapshot = structuredClone(snapshots.get(0)!);
          handle.cancel();
        }
      });
      expect(restartsSnapshotted).toEqual([0]);
      expect(first.final.status).toBe('CANCELLED');
      expect(first.best.iterations).toBe(k);
      expect(snapshot!.iteration).toBe(k);

      const resumed = await invert(engine, { targetIds: target, settings, resumeFrom: new Map([[0, snapshot!]]) });
      const continued = resumed.progress();
      expect(continued[0]!.iteration).toBe(k);
      expect(resumed.best.iterations).toBe(total);
      const expected = nllSequence(whole.progress()).slice(k);
      console.log(`${label}: resumed at ${k}, max |Δ NLL| over ${total - k} iterations = ` +
        `${maxSequenceDifference(nllSequence(continued), expected).toExponential(2)}`);
      expect(nllSequence(continued)).toEqual(expected);
      expect(continued.map((p) => p.lr)).toEqual(whole.progress().slice(k).map((p) => p.lr));
      expect(continued.map((p) => p.optimizedTokens)).toEqual(whole.progress().slice(k).map((p) => p.optimizedTokens));
      // the best so far travelled with the snapshot
      expect(resumed.best.status).toBe(whole.best.status);
      expect(resumed.best.bestIteration).toBe(whole.best.bestIteration);
      expect(resumed.best.bestNll).toBe(whole.best.bestNll);
      expect(Array.from(resumed.best.embedding.values)).toEqual(Array.from(whole.best.embedding.values));
    });
  }
});
