// History retention: a finished job's progress events are worth keeping for a while (WatchJob replays them), its
// result for as long as the job is kept. After `retentionDays`, the store prunes each finished job's history down to
// its last event, the result, so GetJob, ListJobs and WatchJob still answer for the job while the store stops growing
// with old progress.
import type { Logger } from 'pino';
import type { JobRepository } from '../store/job-repository.js';

const dayMs = 86_400_000; // ms per day

/** Configure history retention. */
export interface RetentionOptions {
  /** Days a finished job keeps its whole event history; 0 keeps it forever (nothing is pruned). */
  retentionDays: number;
  /** Wait between two prunings, in ms. */
  intervalMs: number;
  /** The clock (tests). */
  now: () => number;
}

export const retentionDefaults: Readonly<RetentionOptions> = Object.freeze({
  retentionDays: 0,
  intervalMs: 3_600_000, // ms: once an hour
  now: () => Date.now(),
});

/** A running pruner: `runOnce` prunes now (the timer calls it too), `stop` ends the timer and waits for a run. */
export interface Retention {
  /** The run at start: the number of events it pruned (0 when retention is off). */
  readonly firstRun: Promise<number>;
  runOnce(): Promise<number>;
  stop(): Promise<void>;
}

/** Check `--retention-days`: a number ≥ 0 (fractions allowed); returns it. */
export function parseRetentionDays(value: string | number, flag = '--retention-days'): number {
  const days = typeof value === 'number' ? value : value.trim() === '' ? Number.NaN : Number(value);
  if (!Number.isFinite(days) || days < 0) {
    throw new Error(`${flag} ${String(value)}: expected a number of days ≥ 0 (0 keeps every job's history forever)`);
  }
  return days;
}

/**
 * Start pruning `store`: once now, then every `intervalMs`. With retentionDays 0 nothing runs. A failed run is
 * logged and tried again at the next tick: retention must never take the server down.
 */
export function startRetention(store: JobRepository, log: Logger, partial: Partial<RetentionOptions> = {}): Retention {
  const options = { ...retentionDefaults, ...partial };
  const days = parseRetentionDays(options.retentionDays, 'retentionDays');
  let running: Promise<number> | undefined;
  let stopped = false;
  const runOnce = async (): Promise<number> => {
    if (days === 0 || stopped) return 0;
    if (running) return running;
    running = (async () => {
      const finishedBeforeMs = Math.floor(options.now() - days * dayMs);
      try {
        const pruned = await store.pruneFinishedHistories(finishedBeforeMs);
        log.info({ pruned, retentionDays: days, finishedBefore: new Date(finishedBeforeMs).toISOString() },
          'finished job histories pruned');
        return pruned;
      } catch (error: unknown) {
        log.error({ err: error, retentionDays: days }, 'pruning finished job histories failed');
        return 0;
      } finally {
        running = undefined;
      }
    })();
    return running;
  };
  const firstRun = runOnce();
  let timer: NodeJS.Timeout | undefined;
  if (days > 0) {
    timer = setInterval(() => void runOnce(), options.intervalMs);
    timer.unref();
  }
  return {
    firstRun,
    runOnce,
    async stop() {
      stopped = true;
      if (timer) clearInterval(timer);
      await running;
    },
  };
}
