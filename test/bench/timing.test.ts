import { describe, expect, it } from 'vitest';
import { summarizeTimes, timeInterleaved } from '../../server/bench/timing.js';

describe('timeInterleaved', () => {
  it('makes one warm-up run, then minRuns timed runs between two probes', async () => {
    const calls: string[] = [];
    const times = await timeInterleaved(async () => { calls.push('run'); }, async () => { calls.push('probe'); },
      { minRuns: 3, minSeconds: 0, probeSeconds: 0, probeEverySeconds: 60 });
    // A probe is 2 runs at least, so its median has more than one sample.
    expect(calls).toEqual(['run', 'probe', 'probe', 'run', 'run', 'run', 'probe', 'probe']);
    expect(times.run.runs).toBe(3);
    expect(times.probes).toBe(2);
    expect(times.probe.runs).toBe(4);
  });

  it('pairs each run with the probes on either side of it', async () => {
    // Probe times step 1, 1 | 3, 3 | 5, 5 ms: the runs sit between probes 1 and 2 (beside 2 ms) and 2 and 3 (4 ms).
    const probeMs = [1, 1, 3, 3, 5, 5];
    let probeCall = 0;
    const clock = { now: 0 };
    const realNow = performance.now.bind(performance);
    performance.now = () => clock.now;
    try {
      const times = await timeInterleaved(async () => { clock.now += 10; },
        async () => { clock.now += probeMs[probeCall++]!; },
        { minRuns: 3, minSeconds: 0, probeSeconds: 0, probeEverySeconds: 0.02 });
      // warm-up, probe 1, runs 1-2 (20 ms), probe 2, run 3, probe 3
      expect(times.probes).toBe(3);
      expect(times.run.runs).toBe(3);
      expect(times.probeBesideRunMs).toBe(2); // median of 2, 2, 4
    } finally {
      performance.now = realNow;
    }
  });

  it('keeps running until minSeconds have passed, probing every probeEverySeconds', async () => {
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    let probeCalls = 0;
    const times = await timeInterleaved(() => sleep(10), async () => { probeCalls++; },
      { minRuns: 1, minSeconds: 0.1, probeSeconds: 0, probeEverySeconds: 0.03 });
    expect(times.run.runs).toBeGreaterThanOrEqual(2);
    expect(times.run.runs * times.run.meanMs).toBeGreaterThanOrEqual(100);
    // At most one probe per 30 ms of runs, plus the probe before the first run and the one after the last.
    const runMs = times.run.runs * times.run.meanMs;
    expect(times.probes).toBeGreaterThanOrEqual(3);
    expect(times.probes).toBeLessThanOrEqual(Math.floor(runMs / 30) + 2);
    expect(probeCalls).toBe(times.probe.runs);
  });
});

describe('summarizeTimes', () => {
  it('takes the middle of an odd count and the mean of the two middles of an even one', () => {
    expect(summarizeTimes([5, 1, 3]).medianMs).toBe(3);
    expect(summarizeTimes([4, 1, 3, 2])).toMatchObject({ medianMs: 2.5, meanMs: 2.5, minMs: 1, maxMs: 4, runs: 4 });
  });
});
