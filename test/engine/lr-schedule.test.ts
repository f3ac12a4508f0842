import { describe, expect, it } from 'vitest';

import { cosineLr, createLrSchedule, lrScheduleDefaults, lrScheduleKinds, scaleLrToNorm } from '../../server/engine/lr-schedule.js';
import type { LrSchedule, LrScheduleSnapshot } from '../../server/engine/lr-schedule.js';

/** Feed losses one per iteration, returning the lr in force after each. */
function feed(schedule: LrSchedule, losses: readonly number[]): number[] {
  return losses.map((loss) => schedule.step(loss));
}

const repeat = (value: number, n: number): number[] => Array.from({ length: n }, () => value);
const plateau = (baseLr: number) => createLrSchedule(baseLr, { kind: 'plateau' });

describe('the registry', () => {
  it('offers constant (the default), cosine and plateau', () => {
    expect(lrScheduleKinds).toEqual(['constant', 'cosine', 'plateau']);
    expect({ ...lrScheduleDefaults }).toEqual({ kind: 'constant', relativeToNorm: false, totalIterations: 0 });
    expect(Object.isFrozen(lrScheduleDefaults)).toBe(true);
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
  it('is the base lr at 0, halfway at T/2 and 0 at T, the closed form in between', () => {
    // η_t = η_base·(1 + cos(π t / T))/2: cos 0 = 1, cos π/2 = 0, cos π = −1
    const schedule = createLrSchedule(0.1, { kind: 'cosine', totalIterations: 100 });
    expect(schedule.lr).toBe(0.1);
    const lrs = feed(schedule, repeat(1, 100));
    expect(lrs[49]).toBeCloseTo(0.05, 15);
    expect(schedule.iteration).toBe(100);
    expect(schedule.lr).toBe(0);
    // t = 25 of 100: 0.1·(1 + cos(π/4))/2 = 0.1·0.853553 = 0.0853553
    expect(lrs[24]).toBeCloseTo(0.0853553, 7);
    lrs.forEach((lr, i) => expect(lr).toBe(cosineLr(0.1, i + 1, 100)));
  });

  it('needs totalIterations', () => {
    expect(() => createLrSchedule(0.1, { kind: 'cosine' })).toThrow('cosine schedule: totalIterations 0 is not an integer ≥ 1');
  });
});

describe('reduce on plateau (PyTorch\'s defaults: factor 0.1, patience 10, relative threshold 1e-4)', () => {
  it('reduces after exactly patience + 1 non-improving iterations', () => {
    const schedule = plateau(0.1);
    // iteration 1 sets best (anything beats +∞); then 10 equal losses are tolerated, the 11th drops the lr
    const lrs = feed(schedule, [1, ...repeat(1, 10)]);
    expect(lrs).toEqual(repeat(0.1, 11));
    expect(schedule.step(1)).toBeCloseTo(0.01, 15);
    // the count restarts after a drop: another 11 to drop again
    expect(feed(schedule, repeat(1, 10)).every((lr) => lr === schedule.lr)).toBe(true);
    expect(schedule.step(1)).toBeCloseTo(0.001, 15);
  });

  it('an improvement resets the count', () => {
    const schedule = plateau(0.1);
    feed(schedule, [1, ...repeat(1, 10), 0.5, ...repeat(0.6, 10)]);
    expect(schedule.lr).toBe(0.1);
    expect(schedule.step(0.6)).toBeCloseTo(0.01, 15);
  });

  it('counts an improvement smaller than the relative threshold as none', () => {
    // best 1; rel threshold 1e-4: better means loss < 1·(1 − 1e-4) = 0.9999
    const smallSteps = plateau(0.1);
    feed(smallSteps, [1, 0.99995, 0.99990001, 0.99991, 0.99992, 0.99993, 0.99994, 0.99996, 0.99997, 0.99998, 0.99999]);
    expect(smallSteps.lr).toBe(0.1);
    expect(smallSteps.step(0.999901)).toBeCloseTo(0.01, 15); // 11th non-improving iteration

    const realStep = plateau(0.1);
    feed(realStep, [1, ...repeat(1, 10), 0.9998]); // 0.9998 < 0.9999: better, resets
    expect(realStep.lr).toBe(0.1);
  });

  it('skips a drop of at most eps (1e-8)', () => {
    // 1e-8 → 1e-9 would move it by 9e-9 ≤ eps: ignored
    const tiny = plateau(1e-8);
    expect(feed(tiny, [1, ...repeat(1, 20)])).toEqual(repeat(1e-8, 21));
  });

  it('counts a NaN loss as non-improving', () => {
    const schedule = plateau(0.1);
    feed(schedule, [1, ...repeat(1, 9)]);
    expect(schedule.step(Number.NaN)).toBe(0.1);
    expect(schedule.step(Number.NaN)).toBeCloseTo(0.01, 15);
  });

  it('refuses an unknown kind or option', () => {
    expect(() => createLrSchedule(0.1, { kind: 'step' as 'constant' })).toThrow(/kind is step; it must be one of constant, cosine, plateau/);
    expect(() => createLrSchedule(0.1, { patience: 3 } as object)).toThrow(/unknown option patience/);
    expect(() => createLrSchedule(-1)).toThrow('lr schedule: baseLr is -1; it must be a finite number >= 0');
  });
});

describe('relativeToNorm', () => {
  it('multiplies the lr by the embedding norm', () => {
    expect(scaleLrToNorm(0.1, 3.5)).toBeCloseTo(0.35, 15);
    const schedule = createLrSchedule(0.1, { kind: 'cosine', totalIterations: 4, relativeToNorm: true }, 3.5);
    expect(schedule.lr).toBeCloseTo(0.35, 15);
    expect(feed(schedule, [1, 1])[1]).toBeCloseTo(0.175, 15);
    const scaled = createLrSchedule(0.1, { kind: 'plateau', relativeToNorm: true }, 2);
    expect(feed(scaled, repeat(1, 12)).slice(-2)).toEqual([0.2, 0.020000000000000004]);
    expect(scaled.exportState().state).toMatchObject({ lr: 0.010000000000000002 }); // state stays in base units
  });

  it('is ignored without relativeToNorm and required with it', () => {
    expect(createLrSchedule(0.1, {}, 3.5).lr).toBe(0.1);
    expect(() => createLrSchedule(0.1, { relativeToNorm: true })).toThrow(/no embeddingNorm was given/);
    expect(() => scaleLrToNorm(0.1, 0)).toThrow('scaleLrToNorm: embeddingNorm is 0; it must be a finite number > 0');
  });
});

describe('checkpoint and resume', () => {
  const losses = [3, 2.5, 2.5, 2.6, 2.4, 2.4, 2.4, 2.4, 2.5, 2.4, 2.4, 2.3, 2.3, 2.3, 2.3, 2.3, 2.3, 2.3, 2.3, 2.3, 2.3,
    2.3, 2.3, 2.3, 2.3, 2.2];

  for (const kind of lrScheduleKinds) {
    for (const cut of [0, 7, 20]) {
      it(`${kind} resumes identically through JSON from iteration ${cut}`, () => {
        const options = { kind, totalIterations: losses.length, relativeToNorm: true };
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
    expect(plateau(0.1).exportState()).toEqual({ kind: 'plateau', iteration: 0, state: { lr: 0.1, best: 'Infinity', numBadEpochs: 0 } });
    expect(createLrSchedule(0.1, { kind: 'cosine', totalIterations: 5 }).exportState()).toEqual({ kind: 'cosine', iteration: 0, state: {} });
  });

  it('refuses a snapshot of another kind or state', () => {
    const cosine = createLrSchedule(0.1, { kind: 'cosine', totalIterations: 10 });
    expect(() => cosine.importState(createLrSchedule(0.1).exportState())).toThrow(
      'importState: snapshot is for a constant schedule; this one is cosine',
    );
    expect(() => cosine.importState({ kind: 'cosine', iteration: -2, state: {} })).toThrow(/iteration -2 is not an integer ≥ 0/);
    expect(() => cosine.importState({ kind: 'cosine', iteration: 2, state: { cooldownCounter: 0 } })).toThrow(
      "importState: cooldownCounter is not part of the cosine schedule's state",
    );
    const schedule = plateau(0.1);
    expect(() => schedule.importState({ kind: 'plateau', iteration: 2, state: { lr: 0.1, numBadEpochs: 1 } })).toThrow(
      "importState: best is undefined; it must be a number, 'Infinity', '-Infinity' or 'NaN'",
    );
    expect(schedule.exportState().state).toEqual({ lr: 0.1, best: 'Infinity', numBadEpochs: 0 }); // nothing taken
  });
});
