// Time an asynchronous run repeatedly: one warm-up run (first-run allocations and kernel choices stay out of the
// figures), then at least `minRuns` timed runs and at least `minSeconds` of timed work.

/** Configure timeRuns. */
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

/** Run `run` once to warm up, then time it until both minimums of `options` are met. */
export async function timeRuns(run: () => Promise<unknown>, options: TimingOptions): Promise<RunTimes> {
  const warmupStart = performance.now();
  await run();
  const warmupMs = performance.now() - warmupStart;
  const samples: number[] = [];
  let totalMs = 0;
  while (samples.length < Math.max(1, options.minRuns) || totalMs < options.minSeconds * 1000) {
    const start = performance.now();
    await run();
    const ms = performance.now() - start;
    samples.push(ms);
    totalMs += ms;
  }
  return summarizeTimes(samples, warmupMs);
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
