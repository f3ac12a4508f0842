// `recite bench`: time the gradient graph against the same-run MatMul peak, or with --engine the inversion engine's
// job-iterations per second with N jobs batched against the same jobs in turn, or with --fairness a light client's
// job alone and beside a heavy client, or with --fleet several `recite serve` processes on one PostgreSQL database;
// progress on stderr, the table (or the JSON with `--json -`) on stdout.
import fs from 'node:fs';
import Table from 'cli-table3';
import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';
import type { EngineBenchEvent, EngineBenchResult } from '../../server/bench/engine-bench.js';
import { engineBenchDefaults, runEngineBench } from '../../server/bench/engine-bench.js';
import type { BenchModelName, GraphBenchEvent, GraphBenchResult } from '../../server/bench/graph-bench.js';
import { benchModelNames, graphBenchDefaults, runGraphBench } from '../../server/bench/graph-bench.js';
import type { FairnessBenchResult } from '../../server/bench/fairness-bench.js';
import { fairnessBenchDefaults, median, runFairnessBench } from '../../server/bench/fairness-bench.js';
import type { FleetBenchResult } from '../../server/bench/fleet-bench.js';
import { fleetBenchDefaults, formatPerServer, runFleetBench } from '../../server/bench/fleet-bench.js';
import { defaultRandomGpt2Dir } from '../../server/bench/random-gpt2.js';
import { parseDeviceRequest } from '../../server/model/devices.js';
import type { GraphPrecision } from '../../server/model/precision.js';
import { graphPrecisions } from '../../server/model/precision.js';
import { printJsonLine } from '../json-events.js';
import { positiveInteger } from '../options.js';

interface BenchCommandOptions {
  device: string;
  models: BenchModelName[];
  precision: GraphPrecision[];
  batches: number[];
  lengths: number[];
  minRuns: number;
  minSeconds: number;
  engine?: boolean;
  jobs?: number[];
  iterations?: number;
  repeats?: number;
  json?: string;
  cacheDir?: string;
  fairness?: boolean;
  heavyJobs?: number;
  heavyRestarts?: number;
  heavyBeams?: number;
  lightIterations?: number;
  timeout?: number;
  fleet?: boolean;
  db?: string;
  workers?: number[];
  model?: string;
  maxHeldJobs?: number;
}

// Flags of one bench only, by option key and flag: given to the other bench they would be ignored silently.
const graphOnlyFlags = [['batches', '--batches'], ['minRuns', '--min-runs'], ['minSeconds', '--min-seconds']] as const;
const engineOnlyFlags = [['jobs', '--jobs'], ['iterations', '--iterations'], ['repeats', '--repeats']] as const;
const fairnessOnlyFlags = [['heavyJobs', '--heavy-jobs'], ['heavyRestarts', '--heavy-restarts'],
  ['heavyBeams', '--heavy-beams'], ['lightIterations', '--light-iterations'], ['timeout', '--timeout']] as const;
const fleetOnlyFlags = [['db', '--db'], ['workers', '--workers'], ['model', '--model'],
  ['maxHeldJobs', '--max-held-jobs']] as const;

/** Register `recite bench`: parse the flags, run runGraphBench (or the engine, fairness or fleet bench), print the table or the JSON. */
export function registerBenchCommand(program: Command): void {
  program.command('bench')
    .description('time forward + backward runs of the gradient graph and compare with one large MatMul on the same ' +
      'execution provider; with --engine, time jobs through the inversion engine, batched against one at a time; ' +
      'with --fairness, a light client beside a heavy one; with --fleet, api and worker servers on one PostgreSQL ' +
      'database (on a 2-core machine the point is that work spreads and nothing stalls, not a speed-up)')
    .option('--engine', 'time the inversion engine: job-iterations/s of N jobs through the batcher against the same ' +
      'jobs one after another')
    .option('--device <device>', 'cpu | webgpu | cuda | auto', graphBenchDefaults.device)
    .addOption(new Option('--models <list>', `comma-separated: ${benchModelNames.join(', ')}`).argParser(parseModels)
      .default([...graphBenchDefaults.models], graphBenchDefaults.models.join(',')))
    .addOption(new Option('--precision <list>', `graph precisions to time each model at, comma-separated: ` +
      `${graphPrecisions.join(', ')} (a table row names a precision other than fp32 after the model)`)
      .argParser(parsePrecisions).default([...graphBenchDefaults.precisions], graphBenchDefaults.precisions.join(',')))
    .addOption(new Option('--batches <list>', 'batch sizes B, comma-separated').argParser(parseIntegers('--batches'))
      .default([...graphBenchDefaults.batches], graphBenchDefaults.batches.join(',')))
    .addOption(new Option('--lengths <list>', 'target lengths T in tokens, comma-separated')
      .argParser(parseIntegers('--lengths'))
      .default([...graphBenchDefaults.targetLengths],
        `${graphBenchDefaults.targetLengths.join(',')}; ${engineBenchDefaults.targetLengths.join(',')} with --engine`))
    .option('--min-runs <n>', 'timed runs per point at least, after one warm-up run', parseNumber('--min-runs'),
      graphBenchDefaults.minRuns)
    .option('--min-seconds <s>', 'seconds of timed runs per point at least', parseNumber('--min-seconds'),
      graphBenchDefaults.minSeconds)
    // No commander defaults for the engine's own flags: an unset one must be told apart from a given one.
    .option('--jobs <list>', `with --engine: job counts N, comma-separated (default: ${engineBenchDefaults.jobs.join(',')}); ` +
      `with --fleet: jobs submitted per worker count, one number (default: ${fleetBenchDefaults.jobs})`,
      parseIntegers('--jobs'))
    .option('--iterations <n>', 'with --engine: iterations per job (default: ' +
      `${Object.entries(engineBenchDefaults.iterations).map(([model, k]) => `${k} on ${model}`).join(', ')}); with ` +
      `--fleet: iterations of every job (default: ${fleetBenchDefaults.iterations})`,
      parsePositiveInteger('--iterations'))
    .option('--repeats <n>', 'with --engine: turns of each mode per point, in alternating order; the fastest are ' +
      `compared (default: ${engineBenchDefaults.repeats}); with --fairness: light jobs timed in each phase, medians ` +
      `compared (default: ${fairnessBenchDefaults.repeats})`, parsePositiveInteger('--repeats'))
    .option('--fairness', 'time a light client\'s job alone and beside a heavy client\'s load on one server (tiny ' +
      'model), and their ratio')
    .option('--heavy-jobs <n>', `with --fairness: the heavy client's jobs (default: ${fairnessBenchDefaults.heavyJobs})`,
      parsePositiveInteger('--heavy-jobs'))
    .option('--heavy-restarts <n>', 'with --fairness: restarts per heavy job (default: ' +
      `${fairnessBenchDefaults.heavyRestarts})`, parsePositiveInteger('--heavy-restarts'))
    .option('--heavy-beams <n>', 'with --fairness: beams of the heavy jobs\' hit check, every iteration (default: ' +
      `${fairnessBenchDefaults.heavyBeams})`, parsePositiveInteger('--heavy-beams'))
    .option('--light-iterations <n>', 'with --fairness: iterations of the light client\'s job (default: ' +
      `${fairnessBenchDefaults.lightIterations})`, parsePositiveInteger('--light-iterations'))
    .option('--timeout <s>', 'with --fairness: give up on the light job beside the load after this many seconds ' +
      `(default: ${fairnessBenchDefaults.timeoutSeconds}); with --fleet: give up on a worker count whose jobs have not ` +
      `all finished this long after the first submission (default: ${fleetBenchDefaults.timeoutSeconds})`,
    parsePositiveInteger('--timeout'))
    .option('--fleet', 'run one --role api server and W --role worker servers (child processes of the built CLI) on a ' +
      'fresh PostgreSQL database per worker count, submit jobs to the api server, and report job-iterations/s, how ' +
      'long jobs waited for a worker, the jobs each worker finished and the longest gap between results; the servers ' +
      'compute with --threads threads each (default: 1). On a 2-core machine the point is that the work spreads over ' +
      'every worker and nothing stalls, not a speed-up')
    .option('--db <url>', 'with --fleet: admin URL of the PostgreSQL server to create a throwaway database on per worker ' +
      `count (default: RECITE_TEST_POSTGRES, else ${fleetBenchDefaults.adminUrl.replace(/:[^:@/]*@/, ':***@')})`)
    .option('--workers <list>', `with --fleet: worker counts W, comma-separated (default: ${fleetBenchDefaults.workers.join(',')})`,
      parseIntegers('--workers'))
    .option('--model <name>', `with --fleet: the model the servers serve and the jobs ask for (default: ${fleetBenchDefaults.model})`)
    .option('--max-held-jobs <n>', 'with --fleet: jobs each worker runs at once (default: ' +
      `${fleetBenchDefaults.maxHeldJobs})`, parsePositiveInteger('--max-held-jobs'))
    .option('--json <file>', 'also write every figure as JSON to <file>; "-" prints it on stdout as one JSON line instead of the table')
    .option('--cache-dir <dir>', `folder of the generated GPT-2 124M random checkpoint (default ${defaultRandomGpt2Dir()})`)
    .action(async (options: BenchCommandOptions, command: Command) => {
      const given = (key: string) => command.getOptionValueSource(key) !== undefined &&
        command.getOptionValueSource(key) !== 'default';
      if (options.fleet) {
        if (options.engine || options.fairness) command.error('error: --fleet, --engine and --fairness are three benches; give one');
        const misplaced = [...graphOnlyFlags, ...fairnessOnlyFlags, ['repeats', '--repeats'] as const,
          ['precision', '--precision'] as const, ['models', '--models'] as const, ['device', '--device'] as const,
          ['lengths', '--lengths'] as const, ['cacheDir', '--cache-dir'] as const]
          .filter(([key]) => key !== 'timeout' && given(key));
        if (misplaced.length > 0) {
          command.error(`error: ${misplaced.map(([, flag]) => flag).join(', ')} ` +
            `${misplaced.length === 1 ? 'does' : 'do'} not apply with --fleet`);
        }
        if (options.jobs !== undefined && options.jobs.length !== 1) {
          command.error(`error: --jobs ${options.jobs.join(',')}: with --fleet, one job count`);
        }
        const { threads } = command.optsWithGlobals<{ threads?: string }>();
        await runFleetCommand(options, threads === undefined ? undefined : positiveInteger('--threads', threads));
        return;
      }
      const misplacedFleet = fleetOnlyFlags.filter(([key]) => given(key));
      if (misplacedFleet.length > 0) {
        command.error(`error: ${misplacedFleet.map(([, flag]) => flag).join(', ')} only ` +
          `${misplacedFleet.length === 1 ? 'applies' : 'apply'} with --fleet`);
      }
      if (options.fairness) {
        if (options.engine) command.error('error: --fairness and --engine are two benches; give one');
        const misplaced = [...graphOnlyFlags, ...engineOnlyFlags, ['precision', '--precision'] as const]
          .filter(([key]) => key !== 'repeats' && given(key));
        if (misplaced.length > 0) {
          command.error(`error: ${misplaced.map(([, flag]) => flag).join(', ')} ` +
            `${misplaced.length === 1 ? 'does' : 'do'} not apply with --fairness`);
        }
        await runFairnessCommand(options);
        return;
      }
      const misplacedFairness = fairnessOnlyFlags.filter(([key]) => given(key));
      if (misplacedFairness.length > 0) {
        command.error(`error: ${misplacedFairness.map(([, flag]) => flag).join(', ')} only ` +
          `${misplacedFairness.length === 1 ? 'applies' : 'apply'} with --fairness`);
      }
      const misplaced = (options.engine ? graphOnlyFlags : engineOnlyFlags).filter(([key]) => given(key));
      if (misplaced.length > 0) {
        command.error(`error: ${misplaced.map(([, flag]) => flag).join(', ')} only ` +
          `${misplaced.length === 1 ? 'applies' : 'apply'} ${options.engine ? 'without' : 'with'} --engine`);
      }
      if (options.engine) {
        await runEngineCommand(options, given('lengths'));
        return;
      }
      const result = await runGraphBench({
        device: parseDeviceRequest(options.device),
        models: options.models,
        precisions: options.precision,
        batches: options.batches,
        targetLengths: options.lengths,
        minRuns: options.minRuns,
        minSeconds: options.minSeconds,
        ...(options.cacheDir === undefined ? {} : { cacheDir: options.cacheDir }),
        onProgress: (event) => process.stderr.write(`recite bench: ${describeEvent(event)}\n`),
      });
      writeReport(result, formatBenchReport, options.json);
    });
}

async function runEngineCommand(options: BenchCommandOptions, lengthsGiven: boolean): Promise<void> {
  const result = await runEngineBench({
    device: parseDeviceRequest(options.device),
    models: options.models,
    precisions: options.precision,
    targetLengths: lengthsGiven ? options.lengths : engineBenchDefaults.targetLengths,
    ...(options.jobs === undefined ? {} : { jobs: options.jobs }),
    ...(options.iterations === undefined ? {} : { iterations: options.iterations }),
    ...(options.repeats === undefined ? {} : { repeats: options.repeats }),
    ...(options.cacheDir === undefined ? {} : { cacheDir: options.cacheDir }),
    onProgress: (event) => process.stderr.write(`recite bench: ${describeEngineEvent(event)}\n`),
  });
  writeReport(result, formatEngineBenchReport, options.json);
}

async function runFairnessCommand(options: BenchCommandOptions): Promise<void> {
  const result = await runFairnessBench({
    device: parseDeviceRequest(options.device),
    ...(options.heavyJobs === undefined ? {} : { heavyJobs: options.heavyJobs }),
    ...(options.heavyRestarts === undefined ? {} : { heavyRestarts: options.heavyRestarts }),
    ...(options.heavyBeams === undefined ? {} : { heavyBeams: options.heavyBeams }),
    ...(options.lightIterations === undefined ? {} : { lightIterations: options.lightIterations }),
    ...(options.timeout === undefined ? {} : { timeoutSeconds: options.timeout }),
    ...(options.repeats === undefined ? {} : { repeats: options.repeats }),
    onProgress: (line) => process.stderr.write(`recite bench: ${line}\n`),
  });
  writeReport(result, formatFairnessReport, options.json);
}

async function runFleetCommand(options: BenchCommandOptions, threads: number | undefined): Promise<void> {
  const result = await runFleetBench({
    ...(options.db === undefined ? {} : { adminUrl: options.db }),
    ...(options.workers === undefined ? {} : { workers: options.workers }),
    ...(options.jobs === undefined ? {} : { jobs: options.jobs[0]! }),
    ...(options.iterations === undefined ? {} : { iterations: options.iterations }),
    ...(options.model === undefined ? {} : { model: options.model }),
    ...(options.maxHeldJobs === undefined ? {} : { maxHeldJobs: options.maxHeldJobs }),
    ...(threads === undefined ? {} : { threads }),
    ...(options.timeout === undefined ? {} : { timeoutSeconds: options.timeout }),
    onProgress: (line) => process.stderr.write(`recite bench: ${line}\n`),
  });
  writeReport(result, formatFleetReport, options.json);
}

/** Render the fleet bench's figures: one row per worker count, and job-iterations/s against one worker's. */
export function formatFleetReport(result: FleetBenchResult): string {
  const s = result.settings;
  const header = `fleet on PostgreSQL: 1 api server + W worker servers (model ${s.model}, max-held-jobs ${s.maxHeldJobs}, ` +
    `${s.threads} session thread${s.threads === 1 ? '' : 's'} each) | ${s.jobs} jobs x ${s.iterations} iterations per ` +
    `worker count | ${result.host.cpus} CPUs, ${result.host.cpuModel} | ${result.wallSeconds.toFixed(0)} s`;
  const table = new Table({
    head: ['workers', 'jobs', 'job-it/s', 'claim p50 ms', 'claim p95 ms', 'claim max ms', 'jobs per worker',
      'longest gap between results ms', 'RSS MiB'],
    colAligns: ['right', 'right', 'right', 'right', 'right', 'right', 'left', 'right', 'left'],
    style: { head: [], border: [] }, // no colour codes: the table is pasted into docs/benchmarks.md
    chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' }, // no rule between rows
  });
  for (const p of result.points) {
    table.push([p.workers, p.jobs, p.jobIterationsPerSecond.toFixed(1), p.claimMs.p50, p.claimMs.p95, p.claimMs.max,
      formatPerServer(p.jobsPerWorker), p.longestResultGapMs, formatPerServer(p.rssMiB)]);
  }
  const workerRss = result.points.flatMap((p) => Object.entries(p.rssMiB).filter(([name]) => name !== 'api').map(([, mib]) => mib));
  const apiRss = result.points.map((p) => p.rssMiB.api!);
  const memory = `RSS of the api server (no model weights or graphs) against a worker's in the same run: ` +
    `${(Math.max(...apiRss) / Math.min(...workerRss)).toFixed(2)}x at most (api ${Math.max(...apiRss)} MiB, workers ` +
    `${Math.min(...workerRss)}–${Math.max(...workerRss)} MiB)`;
  const ratios = result.ratios.length === 0 ? 'against W=1: not measured (needs --workers with 1)'
    : `job-it/s against W=1 in the same run: ${result.ratios.map((r) => `W=${r.workers} ${r.ratio.toFixed(2)}x`).join(', ')}`;
  const note = 'job-it/s: jobs x iterations over the seconds from the first submission to the last result. claim: a ' +
    'job\'s first event (written by the worker that starts it) minus its creation. longest gap: between two consecutive ' +
    'results of the run. With fewer cores than servers the point is that the work spreads and nothing stalls, not a speed-up.';
  return [header, table.toString(), ratios, memory, note].join('\n');
}

/** Render the fairness bench's figures: the light job alone, beside the heavy load, and the ratio against the goal. */
export function formatFairnessReport(result: FairnessBenchResult): string {
  const s = result.settings;
  const list = (values: readonly number[]) => values.map((x) => x.toFixed(2)).join(', ');
  const before = result.aloneSeconds.slice(0, s.repeats);
  const after = result.aloneSeconds.slice(s.repeats);
  const ratio = `${result.besideFinished ? '' : 'more than '}${result.ratio.toFixed(2)}x`;
  return [
    `provider ${result.provider} (model tiny) | ${result.host.cpus} CPUs, ${result.host.cpuModel}, ${result.host.sessionThreads} session threads | ` +
      `${result.wallSeconds.toFixed(0)} s`,
    `heavy client: ${s.heavyJobs} jobs x ${s.heavyRestarts} restarts, beam-${s.heavyBeams} hit check every iteration`,
    `light client: one Invert of "Hello world", ${s.lightIterations} iterations, timed ${s.repeats} times in each phase`,
    `light alone:         median ${median(result.aloneSeconds).toFixed(2)} s (${list(before)} s before the load, ` +
      `${list(after)} s after)`,
    `light beside heavy:  median ${median(result.besideSeconds).toFixed(2)} s (${list(result.besideSeconds)} s` +
      `${result.besideFinished ? '' : ', the last given up'}); the heavy client did ${result.heavyIterationsBeside} ` +
      'row-iterations meanwhile',
    `work charged beside: light ${result.chargedSecondsBeside.light.toFixed(2)} s, heavy ` +
      `${result.chargedSecondsBeside.heavy.toFixed(2)} s (graph and host work, measured)`,
    `ratio:               ${ratio} (goal: at most 2x, ${result.besideFinished && result.ratio <= 2 ? 'met' : 'NOT met'})`,
  ].join('\n');
}

/** Print the table, or the JSON with `--json -`; `--json FILE` writes the JSON there as well. */
function writeReport<R>(result: R, format: (result: R) => string, jsonPath: string | undefined): void {
  const json = `${JSON.stringify(result, null, 2)}\n`;
  if (jsonPath === '-') {
    // stdout gets one line, as every --json of the CLI does; the file stays pretty for people to read.
    printJsonLine(result);
    return;
  }
  process.stdout.write(`${format(result)}\n`);
  if (jsonPath !== undefined) {
    fs.writeFileSync(jsonPath, json);
    process.stderr.write(`recite bench: figures written to ${jsonPath}\n`);
  }
}

/** Render the header line and the table of a bench result. */
export function formatBenchReport(result: GraphBenchResult): string {
  const peak = result.matmulPeak;
  const passedOver = result.fallbacks.length === 0 ? '' : `; passed over ${result.fallbacks.map((f) => f.provider).join(', ')}`;
  const header = `provider ${result.provider} (asked ${result.device}${passedOver}) | ` +
    `matmul peak (${peak.shape.m}, ${peak.shape.k}) x (${peak.shape.k}, ${peak.shape.n}) float32: ` +
    `${peak.worstGflopPerSecond.toFixed(1)} to ${peak.bestGflopPerSecond.toFixed(1)} GFLOP/s over the points ` +
    `(fastest run ${peak.bestRunGflopPerSecond.toFixed(1)}) | ` +
    `peak RSS ${result.peakRssMiB.toFixed(0)} MiB | ${result.host.cpus} CPUs, ${result.host.cpuModel}, ${result.host.sessionThreads} session threads | ` +
    `${result.wallSeconds.toFixed(0)} s`;
  const table = new Table({
    head: ['model', 'B', 'T', 'ms/run', '% in session', 'GFLOP/s', 'matmul GFLOP/s', '% of matmul peak', '% fastest runs',
      'job-it/s'],
    colAligns: ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
    style: { head: [], border: [] }, // no colour codes: the table is pasted into docs/benchmarks.md
    chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' }, // no rule between rows
  });
  for (const p of result.points) {
    table.push([benchLabel(p.model, p.precision), p.batch, p.targetLength, p.times.medianMs.toFixed(1),
      (100 * p.sessionMedianMs / p.times.medianMs).toFixed(1), p.gflopPerSecond.toFixed(1),
      p.matmulGflopPerSecond.toFixed(1), (100 * p.fractionOfPeak).toFixed(1), (100 * p.bestFractionOfPeak).toFixed(1),
      p.jobIterationsPerSecond.toFixed(1)]);
  }
  const note = 'ms/run, GFLOP/s, job-it/s: median run. % in session: the median run inside onnxruntime\'s ' +
    'session.run; the rest makes the inputs and reads the outputs on the host. matmul GFLOP/s: the peak MatMul timed between the same point\'s ' +
    'graph runs (median over the runs of the MatMul times just before and after each). % of matmul peak = GFLOP/s / ' +
    'matmul GFLOP/s; % fastest runs = the same ratio from the fastest graph run and the fastest MatMul run of the point.';
  return `${header}\n${table.toString()}\n${note}`;
}

/** Render the header line, the tables of points and ratios, the goal and the memory of an engine bench result. */
export function formatEngineBenchReport(result: EngineBenchResult): string {
  const k = result.models.map((m) => `${m.iterationsPerJob} on ${benchLabel(m.name, m.precision)}`).join(', ');
  const header = `provider ${result.provider} (asked ${result.device}) | ${result.host.cpus} CPUs, ${result.host.cpuModel}, ${result.host.sessionThreads} session threads | ` +
    `engine maxBatch ${result.settings.engine.maxBatch}, flat prompt (P = 1), ${result.settings.job.optimizer}, ` +
    `iterations per job: ${k}, ${result.settings.repeats} turns per mode | peak RSS ${result.peakRssMiB.toFixed(0)} MiB | ` +
    `${result.wallSeconds.toFixed(0)} s`;
  const style = {
    style: { head: [], border: [] }, // no colour codes: the table is pasted into docs/benchmarks.md
    chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' }, // no rule between rows
  };
  const points = new Table({
    head: ['model', 'T', 'jobs', 'mode', 'job-its', 'seconds', 'job-it/s', 'median job-it/s', 'job-it/CPU-s',
      'graph runs', 'rows/run', '% in graph', 'summary s', 'RSS MiB'],
    colAligns: ['left', 'right', 'right', 'left', ...Array<'right'>(10).fill('right')],
    ...style,
  });
  for (const p of result.points) {
    points.push([benchLabel(p.model, p.precision), p.targetLength, p.jobs, p.mode, p.jobIterations,
      p.seconds.toFixed(2),
      p.jobIterationsPerSecond.toFixed(1), p.medianJobIterationsPerSecond.toFixed(1),
      p.medianJobIterationsPerCpuSecond.toFixed(1), p.graphRuns, p.rowsPerGraphRun.toFixed(1),
      (100 * p.graphSeconds / p.seconds).toFixed(1), p.summarySeconds.toFixed(2), p.maxRssMiB.toFixed(0)]);
  }
  // Where the iteration phase's time went, per point, and the summaries after it against it.
  const parts = new Table({
    head: ['model', 'T', 'jobs', 'mode', '% session', '% transfers', '% optimizer', '% rows', '% beams', '% other',
      'summaries / iterations'],
    colAligns: ['left', 'right', 'right', 'left', ...Array<'right'>(7).fill('right')],
    ...style,
  });
  for (const p of result.points) {
    const b = p.breakdown;
    const percent = (seconds: number) => (100 * seconds / p.seconds).toFixed(1);
    parts.push([benchLabel(p.model, p.precision), p.targetLength, p.jobs, p.mode, percent(b.session),
      percent(b.transfers), percent(b.optimizer),
      percent(b.rows), percent(b.beams), percent(b.other), `${percent(p.summarySeconds)}%`]);
  }
  const ratios = new Table({
    head: ['model', 'T', 'jobs', 'batched / sequential', 'median turns', 'per CPU second', 'best-NLL difference'],
    colAligns: ['left', 'right', 'right', 'right', 'right', 'right', 'right'],
    ...style,
  });
  for (const c of result.comparisons) {
    ratios.push([benchLabel(c.model, c.precision), c.targetLength, c.jobs, `${c.ratio.toFixed(2)}x`, `${c.medianRatio.toFixed(2)}x`,
      `${c.cpuRatio.toFixed(2)}x`, c.maxBestNllDifference.toExponential(1)]);
  }
  const goal = result.goal;
  const goalLine = `goal: ${goal.jobs} jobs on ${goal.model} batched at least ${goal.minRatio}x the job-it/s of one ` +
    'at a time: ' + (goal.met === null
    ? `not measured (needs --models ${goal.model} and --jobs ${goal.jobs})`
    : `${goal.ratios.map((r) => `T=${r.targetLength} ${r.ratio.toFixed(2)}x (median turns ${r.medianRatio.toFixed(2)}x, ` +
      `per CPU second ${r.cpuRatio.toFixed(2)}x)`).join(', ')}, ${goal.met ? 'met' : 'NOT met'}` +
      `; peak RSS ${goal.peakRssMiB?.toFixed(0) ?? '?'} MiB`);
  const memory = result.models.map((m) => {
    const rss = m.points.map((p) => p.maxRssMiB);
    return `memory, ${benchLabel(m.name, m.precision)}: RSS ${m.rssAfterLoadMiB.toFixed(0)} MiB after loading and a warm-up job, ` +
      `${Math.min(...rss).toFixed(0)} to ${Math.max(...rss).toFixed(0)} MiB after the turns, ` +
      `peak ${m.peakRssMiB.toFixed(0)} MiB`;
  });
  const note = 'Each mode ran in turns, alternating with the other. seconds, job-it/s: the iteration phase of the ' +
    'fastest turn, from submission to the last progress report (sequential: summed over the jobs); the result ' +
    'summaries that follow (a greedy decode of T tokens and the nearest tokens, per job) are the summary column. ' +
    'job-it/CPU-s: per second of the process\'s CPU time, median turn. % in graph: share of the seconds inside ' +
    'gradient graph runs; the rest is host work. The second table splits the same seconds: onnxruntime\'s session run, ' +
    'the inputs and outputs around it, optimizer steps, the rows\' other host work, beam checks and the rest (rounds, ' +
    'events, yields); summaries / iterations: the summary column against the seconds. RSS: the most after any turn. ' +
    'batched / sequential: job-it/s of the ' +
    'same jobs, fastest turns; best-NLL difference: the largest between any two turns of a job.';
  return [header, points.toString(), parts.toString(), ratios.toString(), goalLine, ...memory, note].join('\n');
}

function describeEngineEvent(event: EngineBenchEvent): string {
  switch (event.kind) {
    case 'generate':
      return `${event.model}: writing a random GPT-2 124M checkpoint (~500 MB, once) to ${event.dir}`;
    case 'model':
      return `${benchLabel(event.model, event.precision)}: graphs open on ${event.provider} in ${event.loadSeconds.toFixed(1)} s (${event.dir})`;
    case 'turn': {
      const f = event.figures;
      return `${benchLabel(event.model, event.precision)} T=${event.targetLength} N=${event.jobs} ${event.mode} turn ${event.turn + 1}: ` +
        `${f.jobIterations} job-its in ${f.seconds.toFixed(2)} s, ${f.jobIterationsPerSecond.toFixed(1)} job-it/s over ` +
        `${f.graphRuns} graph runs (${f.rowsPerGraphRun.toFixed(1)} rows each), summaries ${f.summarySeconds.toFixed(2)} s, ` +
        `RSS ${f.rssMiB.toFixed(0)} MiB`;
    }
    case 'point': {
      const p = event.point;
      return `${benchLabel(p.model, p.precision)} T=${p.targetLength} N=${p.jobs} ${p.mode}: fastest of ${p.turns} turns ` +
        `${p.jobIterationsPerSecond.toFixed(1)} job-it/s, median ${p.medianJobIterationsPerSecond.toFixed(1)}`;
    }
    case 'comparison': {
      const c = event.comparison;
      return `${benchLabel(c.model, c.precision)} T=${c.targetLength} N=${c.jobs}: batched ${c.ratio.toFixed(2)}x sequential, median turns ` +
        `${c.medianRatio.toFixed(2)}x, per CPU second ${c.cpuRatio.toFixed(2)}x (largest best-NLL difference ` +
        `${c.maxBestNllDifference.toExponential(1)})`;
    }
  }
}

function describeEvent(event: GraphBenchEvent): string {
  switch (event.kind) {
    case 'matmul': {
      const passedOver = event.fallbacks.map((f) => `${f.provider} (${f.reason})`).join('; ');
      return `peak MatMul open on ${event.provider}${passedOver ? `; passed over ${passedOver}` : ''}`;
    }
    case 'generate':
      return `${event.model}: writing a random GPT-2 124M checkpoint (~500 MB, once) to ${event.dir}`;
    case 'model':
      return `${benchLabel(event.model, event.precision)}: graphs open on ${event.provider} in ${event.loadSeconds.toFixed(1)} s (${event.dir})`;
    case 'point': {
      const p = event.point;
      return `${benchLabel(p.model, p.precision)} B=${p.batch} T=${p.targetLength}: ${p.times.medianMs.toFixed(1)} ms/run over ` +
        `${p.times.runs} runs, ${p.gflopPerSecond.toFixed(1)} GFLOP/s, matmul ${p.matmulGflopPerSecond.toFixed(1)} ` +
        `GFLOP/s (${(100 * p.fractionOfPeak).toFixed(1)}%), ${p.jobIterationsPerSecond.toFixed(1)} job-it/s`;
    }
  }
}

/** Name a bench model with its precision where it is not the default: "tiny", "tiny fp16". */
function benchLabel(model: string, precision: GraphPrecision): string {
  return precision === 'fp32' ? model : `${model} ${precision}`;
}

function parsePrecisions(value: string): GraphPrecision[] {
  const names = splitList(value);
  const unknown = names.find((n) => !(graphPrecisions as readonly string[]).includes(n));
  if (unknown !== undefined) throw new InvalidArgumentError(`"${unknown}" is not one of ${graphPrecisions.join(', ')}.`);
  return names as GraphPrecision[];
}

function parseModels(value: string): BenchModelName[] {
  const names = splitList(value);
  const unknown = names.find((n) => !(benchModelNames as readonly string[]).includes(n));
  if (unknown !== undefined) {
    throw new InvalidArgumentError(`"${unknown}" is not one of ${benchModelNames.join(', ')}.`);
  }
  return names as BenchModelName[];
}

function parseIntegers(flag: string): (value: string) => number[] {
  return (value) => splitList(value).map((item) => positiveInteger(flag, item));
}

function parsePositiveInteger(flag: string): (value: string) => number {
  return (value) => positiveInteger(flag, value);
}

function parseNumber(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < 0) {
      throw new InvalidArgumentError(`${flag}: "${value}" is not a number ≥ 0.`);
    }
    return n;
  };
}

function splitList(value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter(Boolean);
}
