// Fair share in the engine on the tiny model: a light client's job submitted behind a heavy client's beam-checked
// restarts finishes first; every job's history (NLL sequence, beam-decoded text, hit iteration) is the same alone
// and shared; the memory budget makes restarts wait to start rather than refusing anyone; Decode steps and batched
// beam checks give what they give alone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sampleReachableTargets } from '../../server/datasets/reachable-targets.js';
import { beamDecode, beamDecodeMany, greedyDecode, greedyDecodeMany } from '../../server/engine/decoders.js';
import type { EngineModel } from '../../server/engine/engine-model.js';
import type { InversionEvent, ProgressReport } from '../../server/engine/events.js';
import { InversionEngine } from '../../server/engine/inversion-engine.js';
import type { InversionHandle } from '../../server/engine/inversion-engine.js';
import { runBytes } from '../../server/engine/run-cost.js';
import type { InversionSettings } from '../../server/engine/settings.js';
import { randomNormal } from '../../server/util/seeded-random.js';
import type { Recorded } from '../helpers/engine-run.js';
import { checked, loadTinyModel, nllSequence, reachableTarget, submitRecorded } from '../helpers/engine-run.js';

let model: EngineModel;
let lightTarget: number[];
let heavyTarget: number[];

// The light client: one restart, one vector, 60 iterations whatever happens.
const lightSettings: Partial<InversionSettings> = {
  parameterization: { kind: 'flat' }, seed: 3, maxIterations: 60, stopOnHit: false,
};
// The heavy client: restarts with a beam-8 hit check every iteration, fewer iterations than the light job: in the
// old first-come order (every run advances every round) it would finish first.
const heavySettings: Partial<InversionSettings> = {
  parameterization: { kind: 'flat' }, restarts: 4, decode: { kind: 'beam', beams: 8, every: 1 }, maxIterations: 40,
  stopOnHit: false,
};

beforeAll(async () => {
  model = await loadTinyModel();
  lightTarget = await reachableTarget(model, 31, 6);
  heavyTarget = await reachableTarget(model, 32, 6);
});
afterAll(async () => {
  await model.release();
});

/**
 * One history as the test compares it: per restart, every report's NLL, beam text, the hit iteration and the
 * summary (decoded text, nearest tokens).
 */
async function history(recorded: Recorded) {
  const result = await recorded.result;
  return result.restarts.map((r) => ({
    restart: r.restart,
    nll: nllSequence(recorded.progress(r.restart)),
    decoded: recorded.progress(r.restart).map((p: ProgressReport) => p.decodedText ?? null),
    iterationsToHit: r.iterationsToHit,
    status: r.status,
    decodedText: r.decodedText,
    nearest: r.nearestTokens.map((tokens) => tokens.map((t) => [t.id, t.cosine])),
  }));
}

describe('two clients on one engine', () => {
  it('finishes a light job submitted behind a heavy client\'s beam-checked restarts first, with the history it has alone', async () => {
    const aloneEngine = new InversionEngine(model);
    const lightAlone = await history(await submitRecorded(aloneEngine, { targetIds: lightTarget, settings: lightSettings, client: 'light' }));
    await aloneEngine.close();

    const engine = new InversionEngine(model);
    const finished: string[] = [];
    const heavy = await submitRecorded(engine, { targetIds: heavyTarget, settings: heavySettings, client: 'heavy' });
    void heavy.result.then(() => finished.push('heavy'));
    const light = await submitRecorded(engine, { targetIds: lightTarget, settings: lightSettings, client: 'light' });
    void light.result.then(() => finished.push('light'));
    await light.result;
    await new Promise((resolve) => setImmediate(resolve));
    expect(finished).toEqual(['light']);
    const heavyReports = heavy.events.filter((e: InversionEvent) => e.type === 'progress').length;
    console.log(`light job (60 iterations) finished while the heavy client had done ${heavyReports} of its ` +
      `${4 * 40} beam-checked iterations`);
    expect(heavyReports).toBeGreaterThan(0); // the heavy client was served meanwhile, not starved
    expect(heavyReports).toBeLessThan(4 * 40);
    expect(await history(light)).toEqual(lightAlone);
    await heavy.result;
    expect(finished).toEqual(['light', 'heavy']);
    // Every piece of work, summaries included, was charged to the client it was done for.
    expect([...engine.clientUsage().keys()].sort()).toEqual(['heavy', 'light']);
    await engine.close();
  });

  it('gives a beam-checked job the same history (NLL, beam text, hit iteration) alone and beside other clients', async () => {
    const settings: Partial<InversionSettings> = {
      parameterization: { kind: 'flat' }, restarts: 2, seed: 1, decode: { kind: 'beam', beams: 4, every: 1 },
      maxIterations: 60,
    };
    const aloneEngine = new InversionEngine(model);
    const alone = await history(await submitRecorded(aloneEngine, { targetIds: heavyTarget, settings, client: 'a' }));
    await aloneEngine.close();
    expect(alone.some((r) => r.iterationsToHit !== null)).toBe(true); // a hit to compare

    const engine = new InversionEngine(model, { maxBatch: 3 });
    const others = await Promise.all([
      submitRecorded(engine, { targetIds: lightTarget, settings: lightSettings, client: 'b' }),
      submitRecorded(engine, { targetIds: lightTarget, settings: { ...heavySettings, maxIterations: 20 }, client: 'c' }),
    ]);
    const shared = await submitRecorded(engine, { targetIds: heavyTarget, settings, client: 'a' });
    expect(await history(shared)).toEqual(alone);
    await Promise.all(others.map((o) => o.result));
    await engine.close();
  });
});

describe('the memory budget', () => {
  it('delays restarts past the budget instead of refusing them, starting the next client\'s first', async () => {
    const settings = checked({ ...lightSettings, maxIterations: 15 });
    const bytes = runBytes(settings, lightTarget.length, model.checkpoint.config);
    const engine = new InversionEngine(model, { memoryBudgetBytes: 2 * bytes });
    const starts: string[] = [];
    let mostRunning = 0;
    let mostHeld = 0;
    const watch = (client: string) => (event: InversionEvent) => {
      if (event.type === 'started') starts.push(`${client}${event.restart}`);
      mostRunning = Math.max(mostRunning, engine.running);
      mostHeld = Math.max(mostHeld, engine.memoryInUse);
    };
    const a = await engine.submit({ targetIds: lightTarget, settings: checked({ ...settings, restarts: 3 }), client: 'a', onEvent: watch('a') });
    const b = await engine.submit({ targetIds: lightTarget, settings, client: 'b', onEvent: watch('b') });
    expect(engine.queued).toBeGreaterThan(0); // waiting, not refused
    expect(engine.memoryInUse).toBeLessThanOrEqual(2 * bytes);
    const results = await Promise.all([a.result, b.result]);
    expect(results.map((r) => r.restarts.map((x) => x.iterations))).toEqual([[15, 15, 15], [15]]);
    expect(mostRunning).toBe(2);
    expect(mostHeld).toBe(2 * bytes);
    // a's first two fill the budget; b's restart starts before a's third (b holds less).
    expect(starts).toEqual(['a0', 'a1', 'b0', 'a2']);
    expect(engine.memoryInUse).toBe(0);
    await engine.close();
  });

  it('keeps a resumed restart\'s checkpoint while it waits to start', async () => {
    const settings = checked({ ...lightSettings, restarts: 2, maxIterations: 30 });
    const bytes = runBytes(settings, lightTarget.length, model.checkpoint.config);
    // A first run of both restarts, stopped at 10 iterations: the snapshots to resume from.
    const first = new InversionEngine(model);
    const snapshots = await new Promise<ReturnType<InversionHandle['snapshots']>>((resolve) => {
      let handle: InversionHandle | undefined;
      void first.submit({
        targetIds: lightTarget, settings,
        onEvent: (event) => {
          if (event.type === 'progress' && event.progress.restart === 1 && event.progress.iteration === 9) {
            resolve(handle!.snapshots());
          }
        },
      }).then((h) => { handle = h; });
    });
    await first.close();
    // Resumed where only one restart fits: the other waits, and a checkpoint taken meanwhile still holds its snapshot.
    const engine = new InversionEngine(model, { memoryBudgetBytes: bytes });
    const handle = await engine.submit({ targetIds: lightTarget, settings, resumeFrom: snapshots });
    expect(engine.queued).toBe(1);
    const waiting = handle.snapshots();
    expect([...waiting.keys()].sort()).toEqual([0, 1]);
    const queuedRestart = [0, 1].find((r) => waiting.get(r) === snapshots.get(r))!;
    expect(waiting.get(queuedRestart)!.iteration).toBe(snapshots.get(queuedRestart)!.iteration);
    const result = await handle.result;
    expect(result.restarts.map((r) => r.iterations)).toEqual([30, 30]);
    await engine.close();
  });

  it('refuses only a restart larger than the whole budget, naming both', async () => {
    const engine = new InversionEngine(model, { memoryBudgetBytes: 100 });
    await expect(engine.submit({ targetIds: lightTarget, settings: checked(lightSettings) })).rejects.toThrow(
      "parameterization: one restart of this job (P = 1 prompt vectors of C = 32) holds 768 B; the server's memory " +
      'budget for all running restarts is 100 B');
    await engine.close();
  });
});

describe('decoding through the scheduler and in batches', () => {
  it('gives each prompt what it gets alone: batched beam and greedy decodes, and scheduled decode steps', async () => {
    const C = model.checkpoint.config.nEmbd;
    const prompts = [1, 2, 3].map((P, i) => ({ prompt: randomNormal(P * C, model.embeddings.std, 70 + i), promptVectors: P }));
    const steps = [5, 3, 4];
    const beams = [4, 2, 3];
    const many = await beamDecodeMany(model.decode, prompts.map((p, i) => ({ ...p, steps: steps[i]!, beams: beams[i]! })));
    const greedyMany = await greedyDecodeMany(model.decode, prompts.map((p, i) => ({ ...p, steps: steps[i]! })));
    const engine = new InversionEngine(model);
    const scheduled = engine.decoderFor('someone');
    for (let i = 0; i < prompts.length; i++) {
      const { prompt, promptVectors } = prompts[i]!;
      const alone = await beamDecode(model.decode, prompt, promptVectors, steps[i]!, beams[i]!);
      expect(many[i]).toEqual(alone);
      expect(await beamDecode(scheduled, prompt, promptVectors, steps[i]!, beams[i]!)).toEqual(alone);
      expect(greedyMany[i]).toEqual(await greedyDecode(model.decode, prompt, promptVectors, steps[i]!));
    }
    expect(engine.clientUsage().get('someone')!.hostMs).toBeGreaterThan(0); // the steps were charged to it
    // Reachable targets sampled together through the scheduler: each is its hidden prompt's own greedy continuation.
    const sampled = await sampleReachableTargets(model, 3, 4, 1, 9, engine.decoderFor('someone'));
    for (const target of sampled) {
      const hidden = randomNormal(C, model.embeddings.std, target.hiddenSeed);
      expect(target.targetIds).toEqual(await greedyDecode(model.decode, hidden, 1, 4));
    }
    await engine.close();
  });
});
