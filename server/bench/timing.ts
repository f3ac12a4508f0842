// Time an asynchronous run repeatedly: one warm-up run (first-run allocations and kernel choices stay out of the
// figures), then at least `minRuns` timed runs and at least `minSeconds` of timed work, with a reference run (the
// probe) timed between them, so that both figures come from the same seconds of a machine whose speed drifts.

/** Configure how many runs timeInterleaved times. */
export interface TimingOptions {
  /** Timed runs at least, after the warm-up run. */
  minRuns: number;
  /** Seconds of timed runs at least; more runs are made until both minimums are met. */
  minSeconds: number;
}

/** Hold the times of one measured point. */
export interface RunTimes {
  runs: number; // timed runs, warm-up excluded
  warmupMs: number; // the untimed first run
  medianMs: number;
  meanMs: number;
  minMs: number;
  maxMs: number;
}

/** Configure how often timeInterleaved times the probe. */
export interface ProbeOptions {
  /** Seconds of probe runs at least, each time the probe is timed (and 2 runs at least). */
  probeSeconds: number;
  /** Seconds of timed runs at most between two probes. */
  probeEverySeconds: number;
}

const minProbeRuns = 2; // a probe's median needs more than one sample

/** Hold the times of runs and of the probe runs timed between them. */
export interface InterleavedTimes {
  run: RunTimes;
  probe: RunTimes; // every probe run, pooled
  probes: number; // times the probe was timed: before the first run, between runs, after the last
  /**
   * Median, over the timed runs, of the probe time beside each run: the mean of the median times of the probes just
   * before and just after it. Each run weighs once here as in `run.medianMs`, so when the machine's speed changes
   * during a point the two medians are taken over the same moments.
   */
  probeBesideRunMs: number;
}

/**
 * Run `run` once to warm up, then time it until both minimums of `options` are met; time `probe` before the first
 * timed run, after the last, and whenever `probeEverySeconds` of timed runs have passed since the last probe.
 */
export async function timeInterleaved(run: () => Promise<unknown>, probe: () => Promise<unknown>,
  options: TimingOptions & ProbeOptions): Promise<InterleavedTimes> {
  const warmupStart = performance.now();
  await run();
  const warmupMs = performance.now() - warmupStart;
  const probeSamples: number[] = [];
  const probeMedians: number[] = []; // (probes)
  const timeProbe = async (): Promise<void> => {
    const samples: number[] = [];
    let spentMs = 0;
    while (samples.length < minProbeRuns || spentMs < options.probeSeconds * 1000) {
      const start = performance.now();
      await probe();
      const ms = performance.now() - start;
      samples.push(ms);
      spentMs += ms;
    }
    probeSamples.push(...samples);
    probeMedians.push(summarizeTimes(samples).medianMs);
  };
  const samples: number[] = [];
  const probeBefore: number[] = []; // (runs) index of the probe just before each run
  let totalMs = 0;
  let sinceProbeMs = 0;
  const moreRuns = () => samples.length < Math.max(1, options.minRuns) || totalMs < options.minSeconds * 1000;
  await timeProbe();
  while (moreRuns()) {
    const start = performance.now();
    await run();
    const ms = performance.now() - start;
    samples.push(ms);
    probeBefore.push(probeMedians.length - 1);
    totalMs += ms;
    sinceProbeMs += ms;
    if (sinceProbeMs >= options.probeEverySeconds * 1000 && moreRuns()) {
      await timeProbe();
      sinceProbeMs = 0;
    }
  }
  await timeProbe();
  const beside = probeBefore.map((j) => (probeMedians[j]! + probeMedians[j + 1]!) / 2);
  return {
    run: summarizeTimes(samples, warmupMs),
    probe: summarizeTimes(probeSamples),
    probes: probeMedians.length,
    probeBesideRunMs: summarizeTimes(beside).medianMs,
  };
}

/** Summarize timed samples (milliseconds) as median, mean, min and max. */
export function summarizeTimes(samplesMs: readonly number[], warmupMs = 0): RunTimes {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const n = sorted.length;
  if (n === 0) throw new RangeError('summarize times: no samples');
  const medianMs = n % 2 === 1 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2;
  return {
    runs: n,
    warmupMs,
    medianMs,
    meanMs: sorted.reduce((a, b) => a + b, 0) / n,
    minMs: sorted[0]!,
    maxMs: sorted[n - 1]!,
  };
}
