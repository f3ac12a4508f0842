// Each job's work has its own boundary in the engine: non-finite numbers end that job's restart FAILED with a
// reason while its batch mates run on with the same numbers as alone; a summary that throws (the decode of a NaN
// prompt once did, and the rejection reached the process) is a FAILED restart. Queued restarts that are cancelled,
// and every restart of an engine closing for a shutdown, skip the decode and the nearest-token scan.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EngineModel } from '../../server/engine/engine-model.js';
import { InversionEngine } from '../../server/engine/inversion-engine.js';
import { invert, loadTinyModel, submitRecorded } from '../helpers/engine-run.js';

let model: EngineModel;
beforeAll(async () => {
  model = await loadTinyModel();
});
afterAll(async () => {
  await model.release();
});

const C = 32;
const target = [15496, 995]; // "Hello world"

describe('the engine keeps one job\'s failure to that job', () => {
  it('fails a restart whose numbers overflow, with the reason, and leaves its batch mate untouched', async () => {
    const alone = new InversionEngine(model);
    const reference = await invert(alone, { targetIds: target, settings: { maxIterations: 20, seed: 3 } });
    await alone.close();

    const engine = new InversionEngine(model);
    const poisoned = submitRecorded(engine, { targetIds: target, settings: { maxIterations: 20, parameterization: { kind: 'flat' },
      init: { kind: 'embedding', values: Array.from(new Float32Array(C).fill(1e38)) } } });
    const healthy = submitRecorded(engine, { targetIds: target, settings: { maxIterations: 20, seed: 3 } });
    const [bad, good] = await Promise.all([(await poisoned).result, (await healthy).result]);
    await engine.close();
    expect(bad.status).toBe('FAILED');
    expect(bad.restarts[0]!.error).toMatch(/^iteration 0: the NLL is NaN: non-finite numbers \(the prompt's largest \|value\| is 9\.99999\d*e\+37/);
    expect(bad.restarts[0]!.decodedIds).toEqual([]);
    expect(good.restarts[0]!.bestNll).toBe(reference.best.bestNll);
    expect(good.restarts[0]!.decodedText).toBe(reference.best.decodedText);
  });

  it('skips the summary of a queued restart that is cancelled, and of every restart when the engine closes', async () => {
    const engine = new InversionEngine(model, { maxBatch: 1, maxActiveRuns: 1 });
    const running = await submitRecorded(engine, { targetIds: target, settings: { maxIterations: 100_000, stopOnHit: false } });
    const queued = await submitRecorded(engine, { targetIds: target, settings: { maxIterations: 100_000 } });
    queued.handle.cancel();
    const cancelled = await queued.result;
    expect(cancelled.status).toBe('CANCELLED');
    expect(cancelled.restarts[0]!.iterations).toBe(0);
    expect(cancelled.restarts[0]!.decodedIds).toEqual([]);
    expect(cancelled.restarts[0]!.nearestTokens).toEqual([]);
    while (running.progress().length < 3) await new Promise((resolve) => setTimeout(resolve, 5));
    await engine.close();
    const stopped = await running.result;
    expect(stopped.status).toBe('CANCELLED');
    expect(stopped.restarts[0]!.iterations).toBeGreaterThan(0);
    expect(stopped.restarts[0]!.nearestTokens).toEqual([]);
  });
});
