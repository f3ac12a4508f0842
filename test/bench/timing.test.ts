import { describe, expect, it } from 'vitest';
import { summarizeTimes, timeRuns } from '../../server/bench/timing.js';

describe('timeRuns', () => {
  it('makes one warm-up run and then minRuns timed runs', async () => {
    let calls = 0;
    const times = await timeRuns(async () => { calls++; }, { minRuns: 3, minSeconds: 0 });
    expect(calls).toBe(4);
    expect(times.runs).toBe(3);
  });

  it('keeps running until minSeconds of timed runs have passed', async () => {
    let calls = 0;
    const sleep = () => new Promise((resolve) => setTimeout(resolve, 10));
    const times = await timeRuns(async () => { calls++; await sleep(); }, { minRuns: 1, minSeconds: 0.05 });
    expect(times.runs).toBeGreaterThanOrEqual(4); // timers may fire late, never early by much
    expect(times.runs * times.meanMs).toBeGreaterThanOrEqual(50);
    expect(calls).toBe(times.runs + 1);
  });
});

describe('summarizeTimes', () => {
  it('takes the middle of an odd count and the mean of the two middles of an even one', () => {
    expect(summarizeTimes([5, 1, 3]).medianMs).toBe(3);
    expect(summarizeTimes([4, 1, 3, 2])).toMatchObject({ medianMs: 2.5, meanMs: 2.5, minMs: 1, maxMs: 4, runs: 4 });
  });
});
