// The progress bar of a data set run (or of a study's many): rows done of all, hits, misses, failures, optimizer
// iterations per second over the last seconds, and an ETA. On a terminal it redraws in place on stderr; elsewhere
// (a log, a CI job) it prints a line every few seconds.
import cliProgress from 'cli-progress';

/** The counts a bar shows, summed over the data sets it follows. */
export interface ProgressCounts {
  rows: number;
  finished: number;
  hits: number;
  misses: number;
  failed: number;
  /** Optimizer iterations so far (a running total). */
  iterations: number;
}

/** A live progress display. */
export interface ProgressBar {
  update(counts: ProgressCounts): void;
  /** Draw the last state and release the terminal line. */
  stop(): void;
}

const rateWindowMs = 10_000; // iterations per second over this much of the recent past
const notTtyEveryMs = 5000; // a line this often when stderr is not a terminal

/** Create a bar for `total` rows labelled `label`; `enabled` false gives one that prints nothing. */
export function createProgressBar(label: string, total: number, enabled = true): ProgressBar {
  if (!enabled) return { update: () => {}, stop: () => {} };
  const bar = new cliProgress.SingleBar({
    format: `${label} {bar} {value}/{total} rows | {hits} hits, {misses} misses, {failed} failed | {rate} it/s | ETA {etaText}`,
    barsize: 24,
    hideCursor: true,
    noTTYOutput: true,
    notTTYSchedule: notTtyEveryMs,
    fps: 5,
    stream: process.stderr,
  }, cliProgress.Presets.shades_classic);
  const samples: { at: number; iterations: number }[] = [];
  const startedAt = Date.now();
  let startFinished: number | undefined;
  const fields = (c: ProgressCounts) => {
    const now = Date.now();
    // Rows finished by this run (not those found finished) over its time: the rate the rest will go at.
    startFinished ??= c.finished;
    const doneHere = c.finished - startFinished;
    const etaText = c.finished >= total ? '0s' : doneHere > 0 ? formatSeconds(((total - c.finished) * (now - startedAt)) / doneHere / 1000) : '–';
    samples.push({ at: now, iterations: c.iterations });
    while (samples.length > 2 && now - samples[0]!.at > rateWindowMs) samples.shift();
    const first = samples[0]!;
    const seconds = (now - first.at) / 1000;
    const rate = seconds > 0 ? (c.iterations - first.iterations) / seconds : 0;
    return { hits: c.hits, misses: c.misses, failed: c.failed, rate: Math.max(0, Math.round(rate)), etaText };
  };
  let started = false;
  return {
    update(counts) {
      if (!started) {
        started = true;
        bar.start(total, counts.finished, fields(counts));
        return;
      }
      bar.update(counts.finished, fields(counts));
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

/** Format seconds as 42s, 3m05s or 2h07m. */
export function formatSeconds(seconds: number): string {
  const s = Math.ceil(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
