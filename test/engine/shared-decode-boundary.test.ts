// The fair-share rounds decode the beam checks of a round together, and the summaries of restarts that finish
// together: one job's decode that throws must still end only that job FAILED. Here the model's decoder throws for any
// batch holding a marked prompt; the shared decode fails, each job is decoded again alone, and only the marked one
// fails, with the reason, while its neighbour's history and summary are those it has alone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EngineModel } from '../../server/engine/engine-model.js';
import { InversionEngine } from '../../server/engine/inversion-engine.js';
import { invert, loadTinyModel, nllSequence, submitRecorded } from '../helpers/engine-run.js';

let model: EngineModel;
let marked: EngineModel;
let sharedFailures = 0;
const C = 32;
const marker = Math.fround(0.123);
const target = [15496, 995]; // "Hello world"

beforeAll(async () => {
  model = await loadTinyModel();
  marked = {
    ...model,
    decode: {
      nextLogprobs: (prompt, promptVectors, tokens) => {
        const rowSize = promptVectors * C;
        const rows = Array.from({ length: tokens.length }, (_, r) => prompt.subarray(r * rowSize, (r + 1) * rowSize));
        const markedRows = rows.filter((row) => row.includes(marker)).length;
        if (markedRows > 0) {
          if (markedRows < rows.length) sharedFailures++; // a batch with another job's rows in it
          return Promise.reject(new Error('poisoned decode'));
        }
        return model.decode.nextLogprobs(prompt, promptVectors, tokens);
      },
    },
  };
});
afterAll(async () => {
  await model.release();
});

const poisonedInit = { kind: 'embedding', values: Array.from(new Float32Array(C).fill(marker)) } as const;

describe('a decode shared between jobs keeps a failure to its own job', () => {
  it('fails only the job whose beam check throws; its neighbour keeps its solo history', async () => {
    const healthySettings = { maxIterations: 6, seed: 3, stopOnHit: false, parameterization: { kind: 'flat' },
      decode: { kind: 'beam', beams: 2, every: 1 } } as const;
    const alone = new InversionEngine(marked);
    const reference = await invert(alone, { targetIds: target, settings: healthySettings, client: 'healthy' });
    await alone.close();

    sharedFailures = 0;
    const engine = new InversionEngine(marked);
    const poisoned = submitRecorded(engine, { targetIds: target, client: 'poisoned', settings: { maxIterations: 6,
      parameterization: { kind: 'flat' }, init: poisonedInit, decode: { kind: 'beam', beams: 2, every: 1 } } });
    const healthy = submitRecorded(engine, { targetIds: target, settings: healthySettings, client: 'healthy' });
    const [bad, good] = await Promise.all([(await poisoned).result, (await healthy).result]);
    await engine.close();
    expect(sharedFailures).toBeGreaterThan(0); // the two beam checks did share a decode
    expect(bad.status).toBe('FAILED');
    expect(bad.restarts[0]!.error).toBe('beam check failed: poisoned decode');
    expect(good.status).toBe(reference.final.status);
    expect(nllSequence((await healthy).progress())).toEqual(nllSequence(reference.progress()));
    expect((await healthy).progress().map((p) => p.decodedText)).toEqual(reference.progress().map((p) => p.decodedText));
    expect(good.restarts[0]!.decodedText).toBe(reference.best.decodedText);
  });

  it('fails only the job whose summary throws; its neighbour gets the summary it has alone', async () => {
    const healthySettings = { maxIterations: 1, seed: 3, parameterization: { kind: 'flat' } } as const;
    const alone = new InversionEngine(marked);
    const reference = await invert(alone, { targetIds: target, settings: healthySettings, client: 'healthy' });
    await alone.close();

    sharedFailures = 0;
    const engine = new InversionEngine(marked);
    const poisoned = submitRecorded(engine, { targetIds: target, client: 'poisoned', settings: { maxIterations: 1,
      parameterization: { kind: 'flat' }, init: poisonedInit } });
    const healthy = submitRecorded(engine, { targetIds: target, settings: healthySettings, client: 'healthy' });
    const [bad, good] = await Promise.all([(await poisoned).result, (await healthy).result]);
    await engine.close();
    expect(sharedFailures).toBeGreaterThan(0); // the two summaries did share a decode
    expect(bad.status).toBe('FAILED');
    expect(bad.restarts[0]!.error).toBe('result summary failed: poisoned decode');
    expect(bad.restarts[0]!.decodedIds).toEqual([]);
    expect(bad.restarts[0]!.nearestTokens).toEqual([]);
    expect(good.restarts[0]!.status).toBe(reference.best.status);
    expect(good.restarts[0]!.decodedText).toBe(reference.best.decodedText);
    expect(good.restarts[0]!.nearestTokens).toEqual(reference.best.nearestTokens);
  });
});
