// What `recite invert` shows while a job runs and when it ends. On a terminal: one live line per running restart
// (iteration of the budget, NLL, correct tokens, iterations per second and the time to the end of the budget) and
// the text the model produces now, redrawn in place on stderr and cleared before anything that stays (a restart's
// outcome, a note, the summary), so no stale progress line is left above them. Elsewhere (a log, CI) the same
// line every few seconds. With --json, the events as JSON lines instead.
import { createLogUpdate } from 'log-update';
import { Status } from '../sdk/index.js';
import type { ProgressEvent, ReciteEvent, ResultEvent } from '../sdk/index.js';
import { formatSeconds } from './datasets/progress-bar.js';
import { eventToJson, printJsonLine } from './json-events.js';

/** How invert reports a job. */
export interface InvertView {
  onEvent(event: ReciteEvent): void;
  /** A line that stays (e.g. "cancelling job …"), written above the live lines. */
  note(line: string): void;
  /** The job's result: the summary. */
  done(result: ResultEvent): void;
  /** Release the terminal (clear the live lines, show the cursor); safe to call more than once. */
  close(): void;
}

const rateWindowMs = 5000; // iterations per second over this much of the recent past
const notLiveEveryMs = 2000; // a progress line this often when stderr is not a terminal
const redrawEveryMs = 100; // the live block on a terminal: ten times a second at most

/** Events as JSON lines on stdout; notes still go to stderr. */
export function jsonView(): InvertView {
  return {
    onEvent: (event) => printJsonLine(eventToJson(event)),
    note: (line) => process.stderr.write(`${line}\n`),
    done: () => {},
    close: () => {},
  };
}

/** Where one restart stands, for its live line. */
interface RestartLine {
  latest: ProgressEvent;
  /** (time, iteration) samples of the last few seconds, for the rate. */
  samples: { at: number; iteration: number }[];
}

/** The human view; `maxIterations` is the budget per restart (the total of "iteration 57/1000"). */
export function terminalView(maxIterations: number, live = process.stderr.isTTY === true): InvertView {
  const started = performance.now();
  const update = createLogUpdate(process.stderr);
  const running = new Map<number, RestartLine>();
  let targetLength = 0;
  let lastLine = 0;
  let drawn = false;

  const describe = (r: RestartLine) => {
    const p = r.latest;
    const first = r.samples[0]!;
    const last = r.samples.at(-1)!;
    const seconds = (last.at - first.at) / 1000;
    const rate = seconds > 0 ? (last.iteration - first.iteration) / seconds : 0;
    const eta = rate > 0 ? `ETA ${formatSeconds(Math.max(0, maxIterations - 1 - p.iteration) / rate)}` : 'ETA –';
    return `restart ${p.restart}  iteration ${String(p.iteration).padStart(String(maxIterations).length)}/${maxIterations}  ` +
      `NLL ${p.nllSum.toFixed(3).padStart(9)} (${p.bitsPerToken.toFixed(2)} bits/token)  correct ${p.correctPrefix}/${targetLength}  ` +
      `lr ${p.lr.toPrecision(3)}  ${rate >= 10 ? rate.toFixed(0) : rate.toFixed(1)} it/s  ${eta}`;
  };
  const block = () => {
    const lines = [...running.values()].sort((a, b) => a.latest.restart - b.latest.restart);
    if (lines.length === 0) return '';
    // The text of the restart closest to the target: with several restarts one text line is enough to watch.
    const best = lines.reduce((a, b) => (b.latest.nllSum < a.latest.nllSum ? b : a));
    const text = JSON.stringify(best.latest.decodedText || best.latest.argmaxText);
    return [...lines.map(describe), lines.length > 1 ? `  model (restart ${best.latest.restart}): ${text}` : `  model: ${text}`].join('\n');
  };
  // The live block is redrawn at most every redrawEveryMs: a fast job reports hundreds of iterations a second, and
  // each draw is a synchronous write to the terminal. Drawn on every event, a slow terminal (or a loaded machine)
  // kept the event loop busy with drawing, so that Ctrl-C's handler and the cancel request waited behind it.
  let lastDrawAt = 0;
  let pendingDraw: NodeJS.Timeout | undefined;
  const scheduleRedraw = () => {
    const wait = lastDrawAt + redrawEveryMs - performance.now();
    if (wait <= 0) {
      redraw();
    } else {
      pendingDraw ??= setTimeout(() => {
        pendingDraw = undefined;
        redraw();
      }, wait);
    }
  };
  const redraw = () => {
    clearTimeout(pendingDraw);
    pendingDraw = undefined;
    lastDrawAt = performance.now();
    const text = block();
    if (text === '') {
      if (drawn) update.clear();
    } else {
      update(text);
    }
    drawn = text !== '';
  };
  /** Write lines that stay, above the live block. */
  const close = () => {
    clearTimeout(pendingDraw);
    pendingDraw = undefined;
    if (!live) return;
    if (drawn) update.clear();
    drawn = false;
    update.done(); // shows the cursor again
  };
  const print = (text: string) => {
    if (live && drawn) update.clear();
    process.stderr.write(`${text}\n`);
    if (live) redraw();
  };

  return {
    onEvent(event) {
      if (event.type === 'started' && event.restart === 0) {
        print(`recite invert: job ${event.jobId}, ${event.parameterCount} parameters (P = ${event.promptVectors})`);
      } else if (event.type === 'progress') {
        targetLength = Math.max(targetLength, event.optimizedTokens);
        const now = performance.now();
        const r = running.get(event.restart) ?? { latest: event, samples: [] };
        r.latest = event;
        r.samples.push({ at: now, iteration: event.iteration });
        while (r.samples.length > 2 && now - r.samples[0]!.at > rateWindowMs) r.samples.shift();
        running.set(event.restart, r);
        if (live) scheduleRedraw();
        else if (now - lastLine > notLiveEveryMs) {
          lastLine = now;
          process.stderr.write(`${block()}\n`);
        }
      } else if (event.type === 'restart_result') {
        running.delete(event.restart);
        print(`restart ${event.restart} (seed ${event.seed}): ${Status[event.status]} after ${event.iterations} ` +
          `iterations${event.iterationsToHit !== undefined ? `, hit at ${event.iterationsToHit}` : ''}, best NLL ${event.bestNll.toFixed(4)}`);
      }
    },
    note: print,
    done(result) {
      running.clear();
      close();
      const best = result.restarts[result.best]!;
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      const nearest = best.nearestTokens.map((v) => v.tokens.slice(0, 3).map((t) => `${JSON.stringify(t.text)} ${t.cosine.toFixed(2)}`).join(', '));
      process.stdout.write([
        `status:      ${Status[result.status]}${best.iterationsToHit !== undefined ? ` at iteration ${best.iterationsToHit}` : ''}`,
        `target:      ${JSON.stringify(result.targetText)} (${result.targetIds.length} tokens)`,
        `decoded:     ${JSON.stringify(best.decodedText)}`,
        `best NLL:    ${best.bestNll.toFixed(4)} (iteration ${best.bestIteration})`,
        `embedding:   ${best.embedding?.shape.join(' x ')} floats, restart ${best.restart} of ${result.restarts.length}`,
        `nearest:     ${nearest.join(' | ')}`,
        `time:        ${seconds} s on ${result.provider} (model ${result.model})`,
      ].join('\n') + '\n');
    },
    close,
  };
}
