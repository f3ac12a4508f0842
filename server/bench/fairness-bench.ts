// Benchmark fair share between clients: how much longer a light client's job takes on a server that a heavy client
// loads, against the same job on the idle server, in the same run. The light client runs one Invert of a fixed number
// of iterations; the heavy client submits many jobs of several restarts, each with a beam-search hit check every
// iteration (the costliest host work a job can ask for). The figure of merit is beside / alone (goal ≤ 2).
//
// The light job runs `repeats` times alone before the heavy load, `repeats` times beside it, and `repeats` times alone
// again after the load is cancelled; the ratio is the median beside over the median alone, so a machine whose speed
// drifts during the run (shared with other work) biases it less than one figure of each would.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { createReciteClient } from '../../sdk/client.js';
import type { InvertOptions } from '../../sdk/job-settings.js';
import { resolveModelDir } from '../model/builtin-models.js';
import type { DeviceRequest } from '../model/execution-provider.js';
import { TokenTable } from '../service/auth.js';
import { createReciteServer } from '../app.js';
import type { HostInfo } from './host-info.js';
import { describeHost } from './host-info.js';

/** Configure runFairnessBench. */
export interface FairnessBenchOptions {
  device: DeviceRequest;
  /** Jobs the heavy client submits. */
  heavyJobs: number;
  /** Restarts of every heavy job. */
  heavyRestarts: number;
  /** Beams of the heavy jobs' hit check, run every iteration. */
  heavyBeams: number;
  /** Iterations of the light client's one job. */
  lightIterations: number;
  /** Give up on the light job beside the heavy load after this long (seconds); the ratio is then a lower bound. */
  timeoutSeconds: number;
  /** Light jobs timed alone before the load, beside it, and alone after it (each). */
  repeats: number;
  /** Called with a line to print while the bench runs. */
  onProgress?: (line: string) => void;
}

export const fairnessBenchDefaults: Readonly<Omit<FairnessBenchOptions, 'onProgress'>> = Object.freeze({
  device: 'cpu' as DeviceRequest,
  heavyJobs: 20,
  heavyRestarts: 8,
  heavyBeams: 16,
  lightIterations: 200,
  timeoutSeconds: 600,
  repeats: 3,
});

export interface FairnessBenchResult {
  settings: Omit<FairnessBenchOptions, 'onProgress'>;
  provider: string;
  host: HostInfo;
  /** The light job's wall times on the idle server: `repeats` before the heavy load, then `repeats` after it. */
  aloneSeconds: number[];
  /** The light job's wall times beside the heavy load (the timeout for one that did not finish). */
  besideSeconds: number[];
  /** Whether every light job beside the heavy load finished within the timeout. */
  besideFinished: boolean;
  /** median(besideSeconds) / median(aloneSeconds): at least this when a light job did not finish. */
  ratio: number;
  /** Row-iterations of the heavy client's restarts while the light jobs ran beside them. */
  heavyIterationsBeside: number;
  /** Seconds of graph and host work the scheduler charged each client while the light jobs ran beside the load. */
  chargedSecondsBeside: { light: number; heavy: number };
  wallSeconds: number;
}

const lightToken = 'fairness-bench-light-token-0123456789';
const heavyToken = 'fairness-bench-heavy-token-0123456789';
const lightTarget = 'Hello world';

/** Run the light job alone, beside the heavy client's jobs, and alone again, on one in-process server (tiny model). */
export async function runFairnessBench(request: Partial<FairnessBenchOptions> = {}): Promise<FairnessBenchResult> {
  const { onProgress, ...rest } = request;
  const settings = { ...fairnessBenchDefaults, ...rest };
  const say = onProgress ?? (() => {});
  const started = performance.now();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-fairness-'));
  const server = await createReciteServer({
    models: [{ name: 'tiny', dir: resolveModelDir('tiny') }],
    db: path.join(dir, 'bench.db'),
    tokens: new TokenTable(new Map([[lightToken, 'light'], [heavyToken, 'heavy']])),
    device: settings.device,
    logger: pino({ level: 'silent' }),
    dashboard: false,
  });
  try {
    await server.listen(0);
    await server.models.ready();
    const entry = server.models.requireRunner('');
    const light = createReciteClient(server.url, { token: lightToken });
    const heavy = createReciteClient(server.url, { token: heavyToken });
    // Exactly lightIterations iterations: the job keeps going after a hit.
    const lightOptions: InvertOptions = { maxIterations: settings.lightIterations, continueAfterHit: true };
    const runLight = async (signal?: AbortSignal): Promise<{ seconds: number; finished: boolean }> => {
      const t0 = performance.now();
      try {
        for await (const event of light.invert(lightTarget, { ...lightOptions, cancelOnDisconnect: true, signal })) {
          if (event.type === 'result') return { seconds: (performance.now() - t0) / 1000, finished: true };
        }
      } catch (error: unknown) {
        if (!signal?.aborted) throw error;
      }
      return { seconds: (performance.now() - t0) / 1000, finished: false };
    };

    await runLight(); // warm-up: first graph runs and session set-up are not the server's steady speed
    const aloneSeconds: number[] = [];
    for (let i = 0; i < settings.repeats; i++) aloneSeconds.push((await runLight()).seconds);
    say(`light job alone: ${aloneSeconds.map((x) => x.toFixed(2)).join(', ')} s (${settings.lightIterations} iterations)`);

    const heavyOptions: InvertOptions = {
      restarts: settings.heavyRestarts,
      decode: { beams: settings.heavyBeams, every: 1 },
      continueAfterHit: true, // the load must not end by itself while the light job is measured
      maxIterations: 100_000,
    };
    const heavyIds: string[] = [];
    for (let i = 0; i < settings.heavyJobs; i++) {
      const { jobId } = await heavy.submitJob(`heavy job number ${i} of the load`, { ...heavyOptions, seed: i });
      heavyIds.push(jobId);
    }
    // Measure once the heavy client's restarts are all iterating, not while they are still being set up.
    const rowsBefore = entry.engine.stats.rowIterations;
    const heavyRuns = settings.heavyJobs * settings.heavyRestarts;
    while (entry.engine.stats.rowIterations - rowsBefore < heavyRuns) await new Promise((r) => setTimeout(r, 20));
    say(`heavy client: ${settings.heavyJobs} jobs x ${settings.heavyRestarts} restarts, beam-${settings.heavyBeams} ` +
      'check every iteration, running');

    const rowsAtStart = entry.engine.stats.rowIterations;
    const charged = (client: string) => {
      const usage = entry.engine.clientUsage().get(client);
      return usage ? (usage.graphMs + usage.hostMs) / 1000 : 0;
    };
    const chargedAtStart = { light: charged('light'), heavy: charged('heavy') };
    const besideSeconds: number[] = [];
    let besideFinished = true;
    for (let i = 0; i < settings.repeats && besideFinished; i++) {
      const beside = await runLight(AbortSignal.timeout(settings.timeoutSeconds * 1000));
      besideSeconds.push(beside.seconds);
      besideFinished = beside.finished;
    }
    const heavyIterationsBeside = entry.engine.stats.rowIterations - rowsAtStart -
      besideSeconds.length * settings.lightIterations;
    const chargedSecondsBeside = {
      light: charged('light') - chargedAtStart.light, heavy: charged('heavy') - chargedAtStart.heavy,
    };
    say(`light job beside the heavy client: ${besideSeconds.map((x) => x.toFixed(2)).join(', ')} s` +
      `${besideFinished ? '' : ` (the last did not finish: gave up after ${settings.timeoutSeconds} s)`}; ` +
      `the heavy client did ${heavyIterationsBeside} row-iterations meanwhile; work charged: light ` +
      `${chargedSecondsBeside.light.toFixed(2)} s, heavy ${chargedSecondsBeside.heavy.toFixed(2)} s`);

    await Promise.all(heavyIds.map((id) => heavy.cancelJob(id)));
    // Alone again means alone: after the cancelled jobs' last summaries too.
    while (server.hub.liveJobs > 0) await new Promise((r) => setTimeout(r, 50));
    await entry.engine.idle();
    const after: number[] = [];
    for (let i = 0; i < settings.repeats; i++) after.push((await runLight()).seconds);
    say(`light job alone again: ${after.map((x) => x.toFixed(2)).join(', ')} s`);
    aloneSeconds.push(...after);
    return {
      settings: { ...settings },
      provider: entry.model.provider,
      host: describeHost(),
      aloneSeconds,
      besideSeconds,
      besideFinished,
      ratio: median(besideSeconds) / median(aloneSeconds),
      heavyIterationsBeside,
      chargedSecondsBeside,
      wallSeconds: (performance.now() - started) / 1000,
    };
  } finally {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The median of a non-empty list (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
