// Continuous batching must not change a job's numbers: the same job and seed give the same per-iteration NLL alone
// and padded into one graph run with neighbours of other target lengths, and a neighbour's cancellation leaves the
// rest untouched.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EngineModel } from '../../server/engine/engine-model.js';
import { InversionEngine } from '../../server/engine/inversion-engine.js';
import type { InversionSettings } from '../../server/engine/settings.js';
import type { Recorded } from '../helpers/engine-run.js';
import { invert, loadTinyModel, maxSequenceDifference, nllSequence, reachableTarget, submitRecorded } from '../helpers/engine-run.js';

const iterations = 50;
const lengths = [3, 6, 9, 12]; // every row but the longest is padded in the shared graph run

interface Job {
  targetIds: number[];
  settings: Partial<InversionSettings>;
}

let model: EngineModel;
let jobs: Job[];
let alone: number[][]; // per job: its NLL sequence on an engine of its own

beforeAll(async () => {
  model = await loadTinyModel();
  jobs = await Promise.all(lengths.map(async (T, i) => ({
    targetIds: await reachableTarget(model, 2000 + i, T),
    settings: { parameterization: { kind: 'flat' }, seed: 10 + i, maxIterations: iterations, stopOnHit: false },
  } satisfies Job)));
  alone = [];
  for (const job of jobs) {
    const engine = new InversionEngine(model, { maxBatch: 4, maxActiveRuns: 4 });
    const run = await invert(engine, job);
    expect(run.best.iterations).toBe(iterations);
    alone.push(nllSequence(run.progress()));
    expect(engine.stats.graphRuns).toBe(iterations); // alone: one row per graph run
  }
});
afterAll(async () => {
  await model.release();
});

/** Submit every job to one engine (all at once, so they share graph runs) and wait for all results. */
async function runTogether(engine: InversionEngine,
  onProgress?: (job: number, recorded: () => Recorded) => void): Promise<Recorded[]> {
  const recorded: Recorded[] = [];
  await Promise.all(jobs.map(async (job, i) => {
    recorded[i] = await submitRecorded(engine, job, () => onProgress?.(i, () => recorded[i]!));
  }));
  await Promise.all(recorded.map((r) => r.result));
  return recorded;
}

describe('a job among neighbours of other target lengths', () => {
  it(`has the per-iteration NLL it has alone, to 1e-5, over ${iterations} iterations (flat, T = ${lengths.join(', ')})`, async () => {
    const engine = new InversionEngine(model, { maxBatch: 4, maxActiveRuns: 4 });
    const together = await runTogether(engine);
    const differences = together.map((r, i) => maxSequenceDifference(nllSequence(r.progress()), alone[i]!));
    console.log(`max |NLL alone − NLL in the batch| per job (T = ${lengths.join(', ')}): ` +
      differences.map((d) => d.toExponential(2)).join(', '));
    // The four really shared graph runs: 4 rows × 50 iterations in at most 51 runs (the first job may take
    // one round alone while the others are still being submitted).
    expect(engine.stats.rowIterations).toBe(4 * iterations);
    expect(engine.stats.graphRuns).toBeGreaterThanOrEqual(iterations);
    expect(engine.stats.graphRuns).toBeLessThanOrEqual(iterations + 1);
    differences.forEach((d, i) => expect(d, `job ${i} (T = ${lengths[i]})`).toBeLessThanOrEqual(1e-5));
  });

  it('is unaffected when a neighbour is cancelled after 20 iterations; the cancelled one ends CANCELLED', async () => {
    const cancelled = 2; // T = 9
    const cancelAfter = 20;
    const reference = await runTogether(new InversionEngine(model, { maxBatch: 4, maxActiveRuns: 4 }));
    const engine = new InversionEngine(model, { maxBatch: 4, maxActiveRuns: 4 });
    const together = await runTogether(engine, (job, recorded) => {
      const r = recorded();
      if (job === cancelled && r.progress().length === cancelAfter) r.handle.cancel();
    });
    const result = await together[cancelled]!.result;
    expect(result.status).toBe('CANCELLED');
    expect(result.restarts[0]!.iterations).toBe(cancelAfter);
    expect(together[cancelled]!.progress()).toHaveLength(cancelAfter);
    expect(together[cancelled]!.events.at(-1)!.type).toBe('result');
    // the cancelled job's 20 iterations were its own, then it left the graph runs
    expect(nllSequence(together[cancelled]!.progress())).toEqual(nllSequence(reference[cancelled]!.progress()).slice(0, cancelAfter));
    expect(engine.stats.rowIterations).toBe(3 * iterations + cancelAfter);
    for (let i = 0; i < jobs.length; i++) {
      if (i === cancelled) continue;
      const r = await together[i]!.result;
      expect(r.status, `job ${i}`).not.toBe('CANCELLED');
      expect(r.restarts[0]!.iterations, `job ${i}`).toBe(iterations);
      expect(nllSequence(together[i]!.progress()), `job ${i}`).toEqual(nllSequence(reference[i]!.progress()));
    }
  });
});
