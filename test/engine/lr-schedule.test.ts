import { describe, expect, it } from 'vitest';

import {
  cosineDefaults,
  cosineLr,
  createConstantSchedule,
  createCosineSchedule,
  createLrSchedule,
  createPlateauSchedule,
  lrScheduleDefaults,
  plateauDefaults,
  scaleLrToNorm,
} from '../../server/engine/lr-schedule.js';
import type { LrSchedule, LrScheduleSnapshot } from '../../server/engine/lr-schedule.js';

/** Feed losses one per iteration, returning the lr in force after each. */
function feed(schedule: LrSchedule, losses: readonly number[]): number[] {
  return losses.map((loss) => schedule.step(loss));
}

const repeat = (value: number, n: number): number[] => Array.from({ length: n }, () => value);

describe('defaults', () => {
  it('equal PyTorch’s CosineAnnealingLR and ReduceLROnPlateau defaults', () => {
    expect(cosineDefaults.etaMin).toBe(0);
    expect({ ...plateauDefaults }).toEqual({
      mode: 'min',
      factor: 0.1,
      patience: 10,
      threshold: 1e-4,
      thresholdMode: 'rel',
      cooldown: 0,
      minLr: 0,
      eps: 1e-8,
    });
    expect(lrScheduleDefaults.kind).toBe('constant');
    expect(lrScheduleDefaults.relativeToNorm).toBe(false);
    expect(Object.isFrozen(plateauDefaults) && Object.isFrozen(cosineDefaults) && Object.isFrozen(lrScheduleDefaults)).toBe(true);
  });
});

describe('constant', () => {
  it('keeps the base lr and counts iterations', () => {
    const schedule = createLrSchedule(0.1);
    expect(schedule.kind).toBe('constant');
    expect(feed(schedule, [5, 4, 3])).toEqual([0.1, 0.1, 0.1]);
    expect(schedule.lr).toBe(0.1);
    expect(schedule.iteration).toBe(3);
  });
});

describe('cosine', () => {
  it('is the base lr at 0, halfway at T/2 and etaMin at T', () => {
    // η_t = η_min + (η_base − η_min)·(1 + cos(π t / T))/2: cos 0 = 1, cos π/2 = 0, cos π = −1
    const schedule = createCosineSchedule(0.1, { totalIterations: 100 });
    expect(schedule.lr).toBe(0.1);
    for (let t = 0; t < 50; t++) schedule.step();
    expect(schedule.lr).toBeCloseTo(0.05, 15);
    for (let t = 50; t < 100; t++) schedule.step();
    expect(schedule.iteration).toBe(100);
    expect(schedule.lr).toBe(0);
  });

  it('respects etaMin and matches the closed form in between', () => {
    const schedule = createLrSchedule(0.1, { kind: 'cosine', totalIterations: 8, etaMin: 0.01 });
    const lrs = [schedule.lr, ...feed(schedule, repeat(1, 8))];
    // t = 2 of 8: 0.01 + 0.09·(1 + cos(π/4))/2 = 0.01 + 0.09·0.853553 = 0.0868198
    expect(lrs[2]).toBeCloseTo(0.0868198, 7);
    expect(lrs[4]).toBeCloseTo(0.055, 15);
    expect(lrs[8]).toBeCloseTo(0.01, 15);
    lrs.forEach((lr, t) => expect(lr).toBeCloseTo(0.01 + (0.09 * (1 + Math.cos((Math.PI * t) / 8))) / 2, 15));
    expect(cosineLr(0.1, 4, { totalIterations: 8, etaMin: 0.01 })).toBe(lrs[4]);
  });

  it('needs totalIterations', () => {
    expect(() => createLrSchedule(0.1, { kind: 'cosine' })).toThrow('cosine schedule: totalIterations 0 is not an integer ≥ 1');
  });
});

describe('reduce on plateau', () => {
  it('reduces after exactly patience + 1 non-improving iterations', () => {
    const schedule = createPlateauSchedule(0.1);
    // iteration 1 sets best (anything beats +∞); then 10 equal losses are tolerated, the 11th drops the lr
    const lrs = feed(schedule, [1, ...repeat(1, 10)]);
    expect(lrs).toEqual(repeat(0.1, 11));
    expect(schedule.step(1)).toBeCloseTo(0.01, 15);
    // the count restarts after a drop: another 11 to drop again
    expect(feed(schedule, repeat(1, 10)).every((lr) => lr === schedule.lr)).toBe(true);
    expect(schedule.step(1)).toBeCloseTo(0.001, 15);
  });

  it('an improvement resets the count', () => {
    const schedule = createPlateauSchedule(0.1);
    feed(schedule, [1, ...repeat(1, 10), 0.5, ...repeat(0.6, 10)]);
    expect(schedule.lr).toBe(0.1);
    expect(schedule.step(0.6)).toBeCloseTo(0.01, 15);
  });

  it('counts an improvement smaller than the relative threshold as none', () => {
    // best 1; rel threshold 1e-4: better means loss < 1·(1 − 1e-4) = 0.9999
    const smallSteps = createPlateauSchedule(0.1);
    feed(smallSteps, [1, 0.99995, 0.99990001, 0.99991, 0.99992, 0.99993, 0.99994, 0.99996, 0.99997, 0.99998, 0.99999]);
    expect(smallSteps.lr).toBe(0.1);
    expect(smallSteps.step(0.999901)).toBeCloseTo(0.01, 15); // 11th non-improving iteration

    const realStep = createPlateauSchedule(0.1);
    feed(realStep, [1, ...repeat(1, 10), 0.9998]); // 0.9998 < 0.9999: better, resets
    expect(realStep.lr).toBe(0.1);
  });

  it('supports the absolute threshold mode', () => {
    const schedule = createPlateauSchedule(0.1, { thresholdMode: 'abs', threshold: 0.1, patience: 1 });
    // better means loss < best − 0.1
    expect(feed(schedule, [1, 0.95])).toEqual([0.1, 0.1]);
    expect(schedule.step(0.85)).toBe(0.1); // 0.85 < 0.9: new best
    expect(feed(schedule, [0.8, 0.8])[1]).toBeCloseTo(0.01, 15);
  });

  it('never goes below minLr, and skips a drop of at most eps', () => {
    const floored = createPlateauSchedule(0.1, { patience: 0, minLr: 0.005 });
    // patience 0: every non-improving iteration drops; 0.1 → 0.01 → max(0.001, 0.005) → stays
    expect(feed(floored, [1, 1, 1, 1])).toEqual([0.1, 0.010000000000000002, 0.005, 0.005]);

    const tiny = createPlateauSchedule(1e-8, { patience: 0 });
    // 1e-8 → 1e-9 would move it by 9e-9 ≤ eps 1e-8: ignored
    expect(feed(tiny, [1, 1, 1])).toEqual([1e-8, 1e-8, 1e-8]);
  });

  it('ignores non-improving iterations during cooldown', () => {
    const schedule = createPlateauSchedule(1, { patience: 2, cooldown: 3 });
    const lrs = feed(schedule, [1, 1, 1, 1]);
    expect(lrs[3]).toBeCloseTo(0.1, 15);
    // after the drop: 3 cooldown iterations, then patience + 1 = 3 more
    const after = feed(schedule, repeat(1, 6));
    expect(after.slice(0, 5)).toEqual(repeat(lrs[3], 5));
    expect(after[5]).toBeCloseTo(0.01, 15);
  });

  it('max mode wants the metric to rise', () => {
    const schedule = createPlateauSchedule(0.1, { mode: 'max', patience: 0 });
    expect(feed(schedule, [1, 2, 3])).toEqual([0.1, 0.1, 0.1]);
    expect(schedule.step(3)).toBeCloseTo(0.01, 15);
  });

  it('counts a NaN loss as non-improving and needs a loss', () => {
    const schedule = createPlateauSchedule(0.1, { patience: 0 });
    schedule.step(1);
    expect(schedule.step(Number.NaN)).toBeCloseTo(0.01, 15);
    expect(() => schedule.step()).toThrow(/step needs the iteration's loss/);
  });

  it('rejects PyTorch’s invalid settings', () => {
    expect(() => createPlateauSchedule(0.1, { factor: 1 })).toThrow('plateau schedule: factor is 1; it must lie in [0, 1)');
    expect(() => createPlateauSchedule(0.1, { patience: -1 })).toThrow(/patience -1 is not an integer ≥ 0/);
    expect(() => createLrSchedule(0.1, { kind: 'plateau', cooldown: 0.5 })).toThrow(/cooldown 0.5 is not an integer ≥ 0/);
    expect(() => createLrSchedule(0.1, { kind: 'step' as 'constant' })).toThrow(/kind is step/);
    expect(() => createLrSchedule(0.1, { gamma: 0.5 } as object)).toThrow(/unknown option gamma/);
  });
});

describe('relativeToNorm', () => {
  it('multiplies the lr by the embedding norm', () => {
    expect(scaleLrToNorm(0.1, 3.5)).toBeCloseTo(0.35, 15);
    const schedule = createLrSchedule(0.1, { kind: 'cosine', totalIterations: 4, relativeToNorm: true }, 3.5);
    expect(schedule.lr).toBeCloseTo(0.35, 15);
    expect(feed(schedule, [1, 1])[1]).toBeCloseTo(0.175, 15);
    const plateau = createLrSchedule(0.1, { kind: 'plateau', patience: 0, relativeToNorm: true }, 2);
    expect(feed(plateau, [1, 1])).toEqual([0.2, 0.020000000000000004]);
    expect(plateau.exportState()).toMatchObject({ lr: 0.010000000000000002 }); // state stays in base units
  });

  it('is ignored without relativeToNorm and required with it', () => {
    expect(createLrSchedule(0.1, {}, 3.5).lr).toBe(0.1);
    expect(() => createLrSchedule(0.1, { relativeToNorm: true })).toThrow(/no embeddingNorm was given/);
    expect(() => scaleLrToNorm(0.1, 0)).toThrow('scaleLrToNorm: embeddingNorm is 0; it must be a finite number > 0');
  });
});

describe('checkpoint and resume', () => {
  const losses = [3, 2.5, 2.5, 2.6, 2.4, 2.4, 2.4, 2.4, 2.5, 2.4, 2.4, 2.3, 2.3, 2.3, 2.3, 2.3, 2.3, 2.2, 2.2, 2.2];
  const settings = [
    { kind: 'constant' },
    { kind: 'cosine', totalIterations: 20, etaMin: 0.001 },
    { kind: 'plateau', patience: 2, cooldown: 1, minLr: 0.0005 },
  ] as const;

  for (const options of settings) {
    for (const cut of [0, 7]) {
      it(`${options.kind} resumes identically through JSON from iteration ${cut}`, () => {
        const straight = createLrSchedule(0.1, options, 1.7);
        const expected = feed(straight, losses);

        const first = createLrSchedule(0.1, options, 1.7);
        const before = feed(first, losses.slice(0, cut));
        const snapshot = JSON.parse(JSON.stringify(first.exportState())) as LrScheduleSnapshot;
        first.step(0); // later steps must not touch the snapshot

        const resumed = createLrSchedule(0.1, options, 1.7);
        resumed.importState(snapshot);
        expect(resumed.iteration).toBe(cut);
        const after = feed(resumed, losses.slice(cut));
        expect([...before, ...after]).toEqual(expected);
        expect(resumed.exportState()).toEqual(straight.exportState());
      });
    }
  }

  it('writes the initial best (+∞) in a form JSON keeps', () => {
    const snapshot = createPlateauSchedule(0.1).exportState();
    expect(snapshot).toEqual({ kind: 'plateau', iteration: 0, lr: 0.1, best: 'Infinity', numBadEpochs: 0, cooldownCounter: 0 });
    expect(createPlateauSchedule(0.1, { mode: 'max' }).exportState()).toMatchObject({ best: '-Infinity' });
  });

  it('refuses a snapshot of another kind', () => {
    const cosine = createCosineSchedule(0.1, { totalIterations: 10 });
    expect(() => cosine.importState(createConstantSchedule(0.1).exportState())).toThrow(
      'importState: snapshot is for a constant schedule; this one is cosine',
    );
    expect(() => cosine.importState({ kind: 'cosine', iteration: -2 })).toThrow(/iteration -2 is not an integer ≥ 0/);
  });
});
