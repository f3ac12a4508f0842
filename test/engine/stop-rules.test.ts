// Each stop rule, decoder and reporting rule shows its effect on a real run of the tiny model; settings out of range
// are refused with the field, the value and the limit.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EngineModel } from '../../server/engine/engine-model.js';
import type { RunResult } from '../../server/engine/events.js';
import { bestRestart, InversionEngine, restartSeed } from '../../server/engine/inversion-engine.js';
import type { InversionSettings } from '../../server/engine/settings.js';
import { SettingsError } from '../../server/engine/settings.js';
import { checked, invert, loadTinyModel, nllSequence, reachableTarget } from '../helpers/engine-run.js';

let model: EngineModel;
let engine: InversionEngine;
let reachable: number[]; // 6 tokens; flat from seed 1 hits after 16 steps here
let hitAt: number; // steps to that hit, measured in beforeAll so later tests do not hard-code this machine's number
let hard: number[]; // 6 tokens; flat from seed 1 finds no hit in 2000 iterations
const flat = { kind: 'flat' } as const;

beforeAll(async () => {
  model = await loadTinyModel();
  engine = new InversionEngine(model, { maxBatch: 8, maxActiveRuns: 8 });
  reachable = await reachableTarget(model, 1000, 6);
  hard = await reachableTarget(model, 1002, 6);
  const run = await invert(engine, { targetIds: reachable, settings: { parameterization: flat, seed: 1, maxIterations: 200 } });
  expect(run.best.iterationsToHit).not.toBeNull();
  hitAt = run.best.iterationsToHit!;
});
afterAll(async () => {
  await model.release();
});

const iterationsOf = (progress: readonly { iteration: number }[]) => progress.map((p) => p.iteration);
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describe('hit', () => {
  it('stopOnHit ends the run at the first iteration whose greedy decoding is the target (16 steps; budget 200)', async () => {
    const run = await invert(engine, { targetIds: reachable, settings: { parameterization: flat, seed: 1, maxIterations: 200 } });
    const progress = run.progress();
    expect(run.best.status).toBe('HIT');
    expect(run.best.iterationsToHit).toBe(hitAt);
    expect(hitAt).toBeGreaterThan(0);
    expect(run.best.iterations).toBe(hitAt + 1);
    expect(iterationsOf(progress)).toEqual(range(hitAt + 1));
    expect(progress.slice(0, -1).every((p) => p.correctPrefix < 6)).toBe(true);
    expect(progress.at(-1)!.argmaxIds).toEqual(reachable);
    expect(run.best.decodedIds).toEqual(reachable);
  });

  it('with stopOnHit false the run continues to maxIterations (hit + 24) and still reports the hit', async () => {
    const maxIterations = hitAt + 24;
    const run = await invert(engine, { targetIds: reachable,
      settings: { parameterization: flat, seed: 1, stopOnHit: false, maxIterations } });
    const progress = run.progress();
    expect(iterationsOf(progress)).toEqual(range(maxIterations));
    expect(run.best.iterations).toBe(maxIterations);
    expect(run.best.status).toBe('HIT');
    expect(run.best.iterationsToHit).toBe(hitAt);
    expect(run.best.bestIteration).toBe(hitAt); // the hit's prompt is kept, not a later one
    expect(run.best.bestNll).toBe(progress[hitAt]!.nllSum);
    expect(run.best.decodedIds).toEqual(reachable);
  });
});

describe('maxIterations', () => {
  it('evaluates exactly maxIterations (37) iterations and ends MAX_ITERATIONS without a hit', async () => {
    const run = await invert(engine, { targetIds: hard, settings: { parameterization: flat, seed: 1, maxIterations: 37 } });
    expect(run.best.status).toBe('MAX_ITERATIONS');
    expect(run.best.iterations).toBe(37);
    expect(run.best.iterationsToHit).toBeNull();
    expect(iterationsOf(run.progress())).toEqual(range(37));
  });
});

describe('patience', () => {
  it('with lr 1e-9 nothing improves: patience 5 stops after iteration 5; patience 0 runs all 100', async () => {
    const settings: Partial<InversionSettings> = { parameterization: flat, seed: 1, lr: 1e-9, maxIterations: 100 };
    const patient = await invert(engine, { targetIds: hard, settings: { ...settings, patience: 5 } });
    expect(patient.best.status).toBe('PATIENCE');
    expect(patient.best.iterations).toBe(6); // iteration 0 sets the best; 1..5 fail to improve on it
    expect(patient.best.bestIteration).toBe(0);
    const nll = nllSequence(patient.progress());
    expect(Math.max(...nll) - Math.min(...nll)).toBeLessThan(1e-4); // it really did not move
    const endless = await invert(engine, { targetIds: hard, settings: { ...settings, patience: 0 } });
    expect(endless.best.status).toBe('MAX_ITERATIONS');
    expect(endless.best.iterations).toBe(100);
  });

  it('with lr 0.1 on a hard target, patience 50 stops exactly 50 iterations after the best one (budget 2000)', async () => {
    const run = await invert(engine, { targetIds: hard,
      settings: { parameterization: flat, seed: 1, patience: 50, maxIterations: 2000 } });
    const { best } = run;
    console.log(`patience 50: stopped after ${best.iterations} iterations, best at ${best.bestIteration}`);
    expect(best.status).toBe('PATIENCE');
    expect(best.iterations).toBeLessThan(2000);
    expect(best.iterations - 1 - best.bestIteration).toBe(50);
    const nll = nllSequence(run.progress());
    expect(nll[best.bestIteration]).toBe(best.bestNll);
    // nothing after the best improved on it by more than the tolerance that resets patience (relative 1e-6)
    expect(Math.min(...nll.slice(best.bestIteration + 1))).toBeGreaterThanOrEqual(best.bestNll * (1 - 1e-6));
  });
});

describe('nllThreshold', () => {
  it('stops with THRESHOLD at the first iteration whose NLL is ≤ 25 (hard target, no hit)', async () => {
    const settings: Partial<InversionSettings> = { parameterization: flat, seed: 1, maxIterations: 300 };
    const run = await invert(engine, { targetIds: hard, settings: { ...settings, nllThreshold: 25 } });
    const nll = nllSequence(run.progress());
    console.log(`threshold 25: reached after ${run.best.iterations} iterations (NLL ${nll.at(-1)!.toFixed(3)})`);
    expect(run.best.status).toBe('THRESHOLD');
    expect(run.best.iterationsToHit).toBeNull();
    expect(nll.at(-1)!).toBeLessThanOrEqual(25);
    expect(nll.slice(0, -1).every((v) => v > 25)).toBe(true);
    expect(run.best.iterations).toBeLessThan(300);
    // without the threshold the same search goes on past that point
    const without = await invert(engine, { targetIds: hard, settings: { ...settings, maxIterations: nll.length + 10 } });
    expect(without.best.status).toBe('MAX_ITERATIONS');
    expect(nllSequence(without.progress()).slice(0, nll.length)).toEqual(nll);
  });
});

describe('beam decoding', () => {
  it('{ beams: 4, every: 5 } checks for a hit only at iterations divisible by 5, and reports the decoded text there', async () => {
    const targetIds = await reachableTarget(model, 1003, 6);
    const settings: Partial<InversionSettings> = { parameterization: flat, seed: 1, maxIterations: 300 };
    const greedy = await invert(engine, { targetIds, settings });
    const beam = await invert(engine, { targetIds, settings: { ...settings, decode: { kind: 'beam', beams: 4, every: 5 } } });
    const progress = beam.progress();
    console.log(`greedy hit after ${greedy.best.iterationsToHit} steps; beam-4 every 5 after ${beam.best.iterationsToHit}`);
    expect(greedy.best.status).toBe('HIT');
    expect(beam.best.status).toBe('HIT');
    expect(beam.best.iterationsToHit! % 5).toBe(0);
    // greedy decoding was already right at iterations that are not multiples of 5, and the beam run went on
    const greedyRightElsewhere = progress.filter((p) => p.correctPrefix === 6 && p.iteration % 5 !== 0);
    expect(greedyRightElsewhere.length).toBeGreaterThan(0);
    expect(beam.best.iterationsToHit!).toBeGreaterThan(greedy.best.iterationsToHit!);
    for (const p of progress) {
      expect(p.decodedText !== undefined, `iteration ${p.iteration}`).toBe(p.iteration % 5 === 0);
      if (p.decodedIds) expect(p.decodedText).toBe(model.tokenizer.decode(p.decodedIds));
    }
    expect(progress.at(-1)!.decodedIds).toEqual(targetIds);
    // the decodes before the hit missed
    expect(progress.slice(0, -1).every((p) => p.decodedIds === undefined || p.decodedIds.join() !== targetIds.join())).toBe(true);
    expect(beam.best.decodedIds).toEqual(targetIds); // the result is decoded with the beam decoder too
  });
});

describe('curriculum', () => {
  it('optimizes 1, 2, ... tokens, adding one only after the prefix is reproduced, and reaches HIT', async () => {
    const run = await invert(engine, { targetIds: reachable,
      settings: { parameterization: flat, seed: 1, curriculum: true, maxIterations: 500 } });
    const progress = run.progress();
    console.log(`curriculum: ${progress.map((p) => `${p.correctPrefix}/${p.optimizedTokens}`).join(' ')}`);
    expect(run.best.status).toBe('HIT');
    expect(progress[0]!.optimizedTokens).toBe(1);
    for (let i = 0; i + 1 < progress.length; i++) {
      const p = progress[i]!;
      const grows = p.correctPrefix === p.optimizedTokens && p.optimizedTokens < 6;
      expect(progress[i + 1]!.optimizedTokens, `after iteration ${p.iteration}`).toBe(p.optimizedTokens + (grows ? 1 : 0));
      expect(p.tokenNll).toHaveLength(p.optimizedTokens);
      expect(p.argmaxIds).toHaveLength(p.optimizedTokens);
    }
    // at least once a prefix was wrong and the curriculum waited
    expect(progress.some((p, i) => i + 1 < progress.length && progress[i + 1]!.optimizedTokens === p.optimizedTokens)).toBe(true);
    expect(progress.at(-1)!.optimizedTokens).toBe(6);
    expect(run.best.decodedIds).toEqual(reachable);
  });
});

describe('restarts', () => {
  /** The documented rule, restated: a hit beats no hit; then the lowest best NLL. */
  const expectedBest = (restarts: readonly RunResult[]) => restarts.reduce((best, r, i) => {
    const b = restarts[best]!;
    const rHit = r.status === 'HIT';
    const bHit = b.status === 'HIT';
    return (rHit && !bHit) || (rHit === bHit && r.bestNll < b.bestNll) ? i : best;
  }, 0);

  it('3 restarts from seed 2 report 3 restart_results with seeds restartSeed(2, r); a hit beats a lower NLL', async () => {
    const run = await invert(engine, { targetIds: hard,
      settings: { parameterization: flat, seed: 2, restarts: 3, maxIterations: 400 } });
    const seeds = [0, 1, 2].map((r) => restartSeed(2, r));
    expect(seeds[0]).toBe(2);
    expect(new Set(seeds).size).toBe(3);
    const started = run.events.flatMap((e) => (e.type === 'started' ? [e] : []));
    expect(started.map((e) => [e.restart, e.seed])).toEqual(seeds.map((s, r) => [r, s]));
    const restartResults = run.events.flatMap((e) => (e.type === 'restart_result' ? [e.result] : []));
    expect(restartResults).toHaveLength(3);
    expect(restartResults.map((r) => r.seed).sort()).toEqual([...seeds].sort());
    const { restarts } = run.final;
    expect(restarts.map((r) => [r.restart, r.seed])).toEqual(seeds.map((s, r) => [r, s]));
    console.log(`restarts of seed 2: ${restarts.map((r) => `${r.status} ${r.bestNll.toFixed(3)}`).join(', ')}; best ${run.final.best}`);
    expect(run.final.best).toBe(expectedBest(restarts));
    expect(run.final.status).toBe(restarts[run.final.best]!.status);
    // this seed is a case where the rule's first clause decides: the best restart hit, yet a restart without a hit
    // reached a lower NLL
    const best = restarts[run.final.best]!;
    expect(best.status).toBe('HIT');
    expect(restarts.some((r) => r.status !== 'HIT' && r.bestNll < best.bestNll)).toBe(true);
    // restart r starts where a single search from seed restartSeed(2, r) starts (the trajectories themselves are
    // compared across batch sizes in batching.test.ts)
    for (const r of [0, 1, 2]) {
      const single = await invert(engine, { targetIds: hard,
        settings: { parameterization: flat, seed: seeds[r], maxIterations: 1 } });
      const first = run.progress(r)[0]!;
      expect(first.iteration).toBe(0);
      expect(Math.abs(single.progress()[0]!.nllSum - first.nllSum), `restart ${r}`).toBeLessThanOrEqual(1e-5);
      expect(single.progress()[0]!.argmaxIds, `restart ${r}`).toEqual(first.argmaxIds);
    }
    expect(new Set([0, 1, 2].map((r) => run.progress(r)[0]!.nllSum)).size).toBe(3);
  });

  it('bestRestart implements the rule on hand-made results (hit first, then the lowest NLL, ties to the first)', () => {
    const result = (status: RunResult['status'], bestNll: number) => ({ status, bestNll }) as RunResult;
    expect(bestRestart([result('MAX_ITERATIONS', 1), result('HIT', 9), result('PATIENCE', 0.5)])).toBe(1);
    expect(bestRestart([result('HIT', 3), result('MAX_ITERATIONS', 1), result('HIT', 2)])).toBe(2);
    expect(bestRestart([result('THRESHOLD', 2), result('MAX_ITERATIONS', 1)])).toBe(1);
    expect(bestRestart([result('HIT', 2), result('HIT', 2)])).toBe(0);
  });

  it('3 restarts from seed 5: between two hits the lower best NLL wins', async () => {
    const run = await invert(engine, { targetIds: hard,
      settings: { parameterization: flat, seed: 5, restarts: 3, maxIterations: 400 } });
    const { restarts } = run.final;
    console.log(`restarts of seed 5: ${restarts.map((r) => `${r.status} ${r.bestNll.toFixed(3)}`).join(', ')}; best ${run.final.best}`);
    expect(restarts.map((r) => r.seed)).toEqual([0, 1, 2].map((r) => restartSeed(5, r)));
    const hits = restarts.filter((r) => r.status === 'HIT');
    expect(hits.length).toBe(2);
    expect(run.final.best).toBe(expectedBest(restarts));
    expect(restarts[run.final.best]!.bestNll).toBe(Math.min(...hits.map((r) => r.bestNll)));
  });
});

describe('reportEvery', () => {
  it('k = 7 reports iterations 0, 7, 14, 21, 28 and the last (29), then the result', async () => {
    const run = await invert(engine, { targetIds: hard,
      settings: { parameterization: flat, seed: 1, maxIterations: 30, reportEvery: 7 } });
    expect(iterationsOf(run.progress())).toEqual([0, 7, 14, 21, 28, 29]);
    expect(run.best.iterations).toBe(30);
    expect(run.events.map((e) => e.type)).toEqual(['queued', 'started', ...Array(6).fill('progress'), 'restart_result', 'result']);
  });

  it('k = 5 with a hit at 16 reports 0, 5, 10, 15 and the hit; with stopOnHit false the first hit too', async () => {
    const k = [5, 7, 3].find((n) => hitAt % n !== 0)!; // 5 here; the hit must fall between multiples
    const multiples = (below: number) => range(below).filter((i) => i % k === 0);
    const settings: Partial<InversionSettings> = { parameterization: flat, seed: 1, reportEvery: k, maxIterations: 200 };
    const stopping = await invert(engine, { targetIds: reachable, settings });
    expect(iterationsOf(stopping.progress())).toEqual([...multiples(hitAt), hitAt]);
    expect(stopping.best.status).toBe('HIT');
    expect(stopping.events.at(-1)!.type).toBe('result');
    const maxIterations = hitAt + 2 * k + 1;
    const going = await invert(engine, { targetIds: reachable, settings: { ...settings, stopOnHit: false, maxIterations } });
    expect(iterationsOf(going.progress())).toEqual(
      [...multiples(hitAt), hitAt, ...multiples(maxIterations).filter((i) => i > hitAt), maxIterations - 1]);
    expect(going.progress().find((p) => p.iteration === hitAt)!.correctPrefix).toBe(6);
    expect(going.best.iterationsToHit).toBe(hitAt);
  });
});

describe('keep the best', () => {
  it('returns the best prompt, not the last: its NLL, evaluated again, is bestNll (200 iterations, hard target)', async () => {
    const run = await invert(engine, { targetIds: hard, settings: { parameterization: flat, seed: 1, maxIterations: 200 } });
    const { best } = run;
    const progress = run.progress();
    const nll = nllSequence(progress);
    console.log(`keep the best: best NLL ${best.bestNll.toFixed(4)} at ${best.bestIteration}, last ${nll.at(-1)!.toFixed(4)}`);
    expect(best.bestIteration).toBeLessThan(best.iterations - 1);
    expect(nll.at(-1)!).toBeGreaterThan(best.bestNll);
    expect(nll[best.bestIteration]).toBe(best.bestNll);
    expect(best.bestNll).toBeLessThanOrEqual(Math.min(...nll) * (1 + 1e-6));
    const again = await model.gradient.run({ prompt: best.embedding.values, promptVectors: 1, targets: [hard] });
    const nllAgain = Array.from(again.nll).reduce((a, v) => a + v, 0);
    expect(Math.abs(nllAgain - best.bestNll)).toBeLessThanOrEqual(1e-6);
    expect(Array.from(again.argmaxIds)).toEqual(progress[best.bestIteration]!.argmaxIds);
  });
});

describe('settings validation', () => {
  /**
   * Check the settings against the default limits and submit; return the SettingsError it is refused with (and check
   * that nothing was reported).
   */
  async function refusal(targetIds: number[], settings: Record<string, unknown>): Promise<SettingsError> {
    const events: unknown[] = [];
    const error: unknown = await Promise.resolve()
      .then(() => engine.submit({ targetIds, settings: checked(settings as Partial<InversionSettings>),
        onEvent: (e) => events.push(e) }))
      .then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(SettingsError);
    expect(events).toEqual([]);
    return error as SettingsError;
  }

  it('maxIterations over the limit names the field, the value and the limit 100000', async () => {
    const e = await refusal(reachable, { maxIterations: 100_001 });
    expect(e.name).toBe('SettingsError');
    expect(e.field).toBe('maxIterations');
    expect(e.message).toMatch(/^maxIterations: /);
    expect(e.message).toContain('100001');
    expect(e.message).toContain('100000');
  });

  it('restarts over the limit names the field, the value and the limit 64', async () => {
    const e = await refusal(reachable, { restarts: 65 });
    expect(e.field).toBe('restarts');
    expect(e.message).toContain('65');
    expect(e.message).toContain('64');
  });

  it('an unknown optimizer names the field, the value and the known ones', async () => {
    const e = await refusal(reachable, { optimizer: 'lbfgs' });
    expect(e.field).toBe('optimizer');
    expect(e.message).toContain('"lbfgs"');
    expect(e.message).toContain('rmsprop, adam, sgd');
  });

  it('a target longer than the 64-position context names the target, its length and the limit', async () => {
    const tokens = (n: number) => Array.from({ length: n }, (_, i) => 100 + i);
    const flatTooLong = await refusal(tokens(65), { parameterization: flat });
    expect(flatTooLong.field).toBe('target');
    expect(flatTooLong.message).toContain('65 tokens');
    expect(flatTooLong.message).toContain('allows 64');
    expect(flatTooLong.message).toContain('at most 64 tokens');
    // full uses P = T vectors: 33 tokens need 33 + 32 = 65 positions
    const fullTooLong = await refusal(tokens(33), { parameterization: { kind: 'full' } });
    expect(fullTooLong.field).toBe('target');
    expect(fullTooLong.message).toContain('65 positions');
    expect(fullTooLong.message).toContain('at most 32 tokens');
    // the largest targets that fit are accepted
    for (const [T, parameterization] of [[64, flat], [32, { kind: 'full' }]] as const) {
      const handle = await engine.submit({ targetIds: tokens(T), settings: checked({ parameterization, maxIterations: 1 }) });
      expect((await handle.result).restarts[0]!.iterations).toBe(1);
    }
  });
});
