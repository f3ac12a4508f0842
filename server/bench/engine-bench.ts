// Benchmark the inversion engine end to end: job-iterations per second of N jobs run together through the continuous
// batcher against the same N jobs run one after another, on the tiny fixture and on the GPT-2-124M-shaped random
// checkpoint. The graph bench times graph runs alone; this one adds what every iteration of a job costs on the host
// (assembling the batch, reading the outputs, the optimizer step, the progress report), which is what a server
// delivers to its users.
//
// Only the iteration phase is timed: from a job's submission to its last progress report. The result summary that
// follows (a greedy decode of T tokens and the nearest tokens of the best prompt) costs the same per job in both modes
// and is timed apart; inside the timed phase it would blur the ratio the bench is for.
//
// The two modes of a point run in turns, `repeats` times, in alternating order, and the ratio is taken between the
// fastest turns: on a shared machine the speed drifts by 3x over tens of seconds, and two figures taken once each, a
// minute apart, measure the neighbours as much as the batcher. The median turns are reported beside them, and so is
// the process's CPU time over the same phase: neighbours stretch wall time far more than the CPU time of the work.
//
// N = jobs, K = iterations per job, T = target tokens, P = prompt vectors (1: flat), C = channels
import type { Gpt2Config } from '../model/checkpoint.js';
import type { DeviceRequest, ProviderName } from '../model/execution-provider.js';
import type { EngineModel } from '../engine/engine-model.js';
import { loadEngineModel } from '../engine/engine-model.js';
import type { GraphPrecision } from '../model/precision.js';
import { graphPrecisions } from '../model/precision.js';
import type { InversionResult } from '../engine/events.js';
import type { InversionEngineOptions } from '../engine/inversion-engine.js';
import { InversionEngine } from '../engine/inversion-engine.js';
import type { InversionSettings } from '../engine/settings.js';
import { inversionDefaults, inversionLimits, makeInversionSettings } from '../engine/settings.js';
import { createSeededRandom, deriveSeed } from '../util/seeded-random.js';
import { peakRssMiB } from './graph-bench.js';
import type { HostInfo } from './host-info.js';
import { describeHost } from './host-info.js';
import type { BenchModelName } from './random-gpt2.js';
import { benchModelDir, benchModelNames, defaultBenchModels, randomGpt2Seed } from './random-gpt2.js';
import { firstIntegerProblem, integerProblem } from '../util/numbers.js';

/** Run N jobs together through one batcher, or one after another. */
export type EngineBenchMode = 'batched' | 'sequential';
const modes: readonly EngineBenchMode[] = ['sequential', 'batched'];

/** Describe a progress event, for a command line to print while the bench runs. */
export type EngineBenchEvent =
  | { kind: 'generate'; model: BenchModelName; dir: string }
  | { kind: 'model'; model: BenchModelName; precision: GraphPrecision; dir: string; provider: ProviderName;
    loadSeconds: number }
  | { kind: 'turn'; model: BenchModelName; precision: GraphPrecision; targetLength: number; jobs: number; mode: EngineBenchMode; turn: number;
    figures: EngineBenchTurn }
  | { kind: 'point'; point: EngineBenchPoint }
  | { kind: 'comparison'; comparison: EngineBenchComparison };

/** Configure runEngineBench. */
export interface EngineBenchOptions {
  /** Execution provider to ask for; later models are opened where the first landed. */
  device: DeviceRequest;
  /** Models to run, in this order. */
  models: readonly BenchModelName[];
  /** Graph precisions to run each model at, in this order. */
  precisions: readonly GraphPrecision[];
  /** Job counts N: run together through the batcher, and one after another. */
  jobs: readonly number[];
  /** Target lengths T, in tokens. */
  targetLengths: readonly number[];
  /** Iterations K of every job, per model. */
  iterations: Readonly<Record<BenchModelName, number>>;
  /** The engine's rows per graph run. */
  maxBatch: number;
  /** The engine's restarts running at once. */
  maxActiveRuns: number;
  /** Turns of each mode per point, in alternating order; the fastest turn of each is compared. */
  repeats: number;
  /** Folder of the generated GPT-2 124M checkpoint; default `defaultRandomGpt2Dir()` at call time. */
  cacheDir?: string;
  /** Seed of the targets and of the jobs' initial prompts. */
  seed: number;
  /** Called after each step, with figures that are final. */
  onProgress?: (event: EngineBenchEvent) => void;
}

/** What runEngineBench accepts: any options, and the iterations as one number for every model. */
export type EngineBenchRequest = Partial<Omit<EngineBenchOptions, 'iterations'>> & {
  iterations?: number | Partial<Record<BenchModelName, number>>;
};

/**
 * Run N ∈ {1, 8, 64} jobs of T = 10 tokens on both models, 100 iterations each on tiny and 10 on the 124M shape, in
 * 3 turns per mode.
 */
export const engineBenchDefaults: Readonly<Omit<EngineBenchOptions, 'cacheDir' | 'onProgress'>> = Object.freeze({
  device: 'auto',
  models: defaultBenchModels,
  precisions: Object.freeze(['fp32'] as GraphPrecision[]),
  jobs: Object.freeze([1, 8, 64]),
  targetLengths: Object.freeze([10]),
  // About the same seconds per point on both: a 124M graph run takes 30x a tiny one.
  iterations: Object.freeze({ tiny: 100, english: 30, 'gpt2-random': 10 }),
  maxBatch: 64, // rows per graph run: 64 jobs share every round
  maxActiveRuns: 64,
  repeats: 3,
  seed: 0,
});

/** The goal the figures are stated against: 64 jobs on the 124M shape at least 2x as fast together as in turn. */
export const engineBenchGoal = Object.freeze({ model: 'gpt2-random' as BenchModelName, jobs: 64, minRatio: 2 });

/** Raised for options the bench cannot run; the message names the option, the value and the limit. */
export class EngineBenchOptionsError extends Error {
  override name = 'EngineBenchOptionsError';
}

/** Merge `request` over engineBenchDefaults and check every field. */
export function makeEngineBenchOptions(request: EngineBenchRequest = {}): EngineBenchOptions {
  const { iterations, ...rest } = request;
  const options: EngineBenchOptions = {
    ...engineBenchDefaults,
    ...rest,
    iterations: typeof iterations === 'number'
      ? Object.fromEntries(benchModelNames.map((m) => [m, iterations])) as Record<BenchModelName, number>
      : { ...engineBenchDefaults.iterations, ...iterations },
  };
  const positiveIntegers = (field: string, values: readonly number[]): void => {
    if (values.length === 0) throw new EngineBenchOptionsError(`${field}: empty; give at least one value`);
    const problem = firstIntegerProblem(values, 1);
    if (problem) throw new EngineBenchOptionsError(`${field}: ${problem}`);
  };
  positiveIntegers('jobs', options.jobs);
  positiveIntegers('targetLengths', options.targetLengths);
  positiveIntegers('maxBatch', [options.maxBatch]);
  positiveIntegers('maxActiveRuns', [options.maxActiveRuns]);
  positiveIntegers('repeats', [options.repeats]);
  for (const name of benchModelNames) positiveIntegers(`iterations.${name}`, [options.iterations[name]]);
  const seedProblem = integerProblem(options.seed, 0, 2 ** 32 - 1);
  if (seedProblem) throw new EngineBenchOptionsError(`seed: ${seedProblem}`);
  if (options.models.length === 0) throw new EngineBenchOptionsError('models: empty; give at least one model');
  if (options.precisions.length === 0) throw new EngineBenchOptionsError('precisions: empty; give at least one');
  const unknownPrecision = options.precisions.find((p) => !graphPrecisions.includes(p));
  if (unknownPrecision !== undefined) {
    throw new EngineBenchOptionsError(`precisions: "${unknownPrecision}" is not one of ${graphPrecisions.join(', ')}`);
  }
  const unknown = options.models.find((m) => !benchModelNames.includes(m));
  if (unknown !== undefined) {
    throw new EngineBenchOptionsError(`models: "${unknown}" is not one of ${benchModelNames.join(', ')}`);
  }
  return options;
}

/** Hold the figures of one turn: N jobs run once in one mode, on a fresh engine. */
export interface EngineBenchTurn {
  jobIterations: number; // iterations summed over the jobs: N·K
  seconds: number; // the iteration phase; sequential: summed over the jobs
  jobIterationsPerSecond: number; // jobIterations / seconds
  cpuSeconds: number; // CPU time of the process (every thread) over the same phase
  jobIterationsPerCpuSecond: number; // jobIterations / cpuSeconds
  graphRuns: number; // gradient graph runs (engine stats)
  rowsPerGraphRun: number; // mean job-iterations per graph run
  graphSeconds: number; // inside gradient graph runs (engine stats)
  /** seconds − graphSeconds: assembling batches, reading outputs, optimizer steps, reports, yields between rounds. */
  hostSeconds: number;
  /** Result summaries (decode, nearest tokens) after the last iterations, outside `seconds`; batched: wall time. */
  summarySeconds: number;
  /** Where the iteration phase's `seconds` went (engine stats); `other` is what no part claims. */
  breakdown: EngineBenchBreakdown;
  rssMiB: number; // resident memory after the turn
}

/** Seconds of an iteration phase by part; they add up to the phase's seconds. */
export interface EngineBenchBreakdown {
  /** Inside onnxruntime's session.run of the gradient graph. */
  session: number;
  /** Around it: assembling the batch's inputs on the host, reading its outputs back. */
  transfers: number;
  /** Optimizer and schedule steps. */
  optimizer: number;
  /** The rows' other host work: NLL sums, hit checks, reports, the parameterization's gradient. */
  rows: number;
  /** Beam checks (decode graph runs). */
  beams: number;
  /** Rounds' scheduling, event delivery, yields to the event loop. */
  other: number;
}

/** Hold the figures of N jobs on one model in one mode: its fastest turn's, and every turn's rate. */
export interface EngineBenchPoint extends EngineBenchTurn {
  model: BenchModelName;
  precision: GraphPrecision;
  targetLength: number; // T
  jobs: number; // N
  mode: EngineBenchMode;
  iterationsPerJob: number; // K
  turns: number; // the figures above are the fastest turn's
  turnJobIterationsPerSecond: number[]; // (turns) every turn's rate, in run order
  medianJobIterationsPerSecond: number;
  medianJobIterationsPerCpuSecond: number;
  maxRssMiB: number; // the most resident memory after any of the turns
}

/** Set the batched figure of N jobs against the sequential one. */
export interface EngineBenchComparison {
  model: BenchModelName;
  precision: GraphPrecision;
  targetLength: number;
  jobs: number;
  sequentialPerSecond: number; // fastest turn
  batchedPerSecond: number; // fastest turn
  ratio: number; // batchedPerSecond / sequentialPerSecond
  medianRatio: number; // the same from the median turns
  cpuRatio: number; // the same from the median turns' job-iterations per CPU second
  /** Largest difference of a job's best NLL between any two turns of either mode: batching must not change the search. */
  maxBestNllDifference: number;
}

/** Hold one model's part of the bench. */
export interface EngineBenchModelReport {
  name: BenchModelName;
  precision: GraphPrecision;
  dir: string;
  provider: ProviderName;
  config: Gpt2Config;
  /** For gpt2-random: whether this run wrote the checkpoint, and how long that took. */
  generated: boolean;
  generateSeconds: number;
  loadSeconds: number; // build both graphs and open them (loadEngineModel)
  iterationsPerJob: number; // K
  rssAfterLoadMiB: number; // resident memory after loading and one warm-up job
  /** Peak resident memory of the process so far, after this model's points and before its release. */
  peakRssMiB: number;
  points: EngineBenchPoint[];
  comparisons: EngineBenchComparison[];
}

/** State the goal against the figures. */
export interface EngineBenchGoalReport {
  model: BenchModelName;
  jobs: number;
  minRatio: number;
  ratios: { targetLength: number; ratio: number; medianRatio: number; cpuRatio: number }[]; // empty when not run
  met: boolean | null; // every measured ratio ≥ minRatio; null when none was measured
  peakRssMiB: number | null; // the goal model's peak resident memory
}

/** Hold everything an engine bench run measured. */
export interface EngineBenchResult {
  startedAt: string; // ISO 8601
  wallSeconds: number;
  device: DeviceRequest; // as asked
  provider: ProviderName; // where every graph ran
  host: HostInfo;
  settings: {
    jobs: number[];
    targetLengths: number[];
    iterations: Record<BenchModelName, number>;
    engine: Pick<InversionEngineOptions, 'maxBatch' | 'maxActiveRuns'>;
    repeats: number;
    job: Partial<InversionSettings>; // every job's settings but its seed and maxIterations = reportEvery = K
    seed: number;
    randomCheckpointSeed: number;
  };
  models: EngineBenchModelReport[];
  points: EngineBenchPoint[]; // every model's points, in run order
  comparisons: EngineBenchComparison[];
  goal: EngineBenchGoalReport;
  /** Peak resident memory of the whole process (process.resourceUsage().maxRSS). */
  peakRssMiB: number;
}

// Flat (P = 1): every job has the same prompt length, so all of them can share each graph run. RMSProp at its default
// lr; no stop on a hit, so every job runs exactly K iterations and the work is the same in both modes.
const jobSettings = Object.freeze({
  parameterization: Object.freeze({ kind: 'flat' }),
  optimizer: 'rmsprop',
  lr: inversionDefaults.lr,
  stopOnHit: false,
} satisfies Partial<InversionSettings>);
const promptVectors = 1; // P of a flat prompt

/** Run the bench: per model, per T and N, the N jobs one after another, then together. */
export async function runEngineBench(request: EngineBenchRequest = {}): Promise<EngineBenchResult> {
  const options = makeEngineBenchOptions(request);
  const startedAt = new Date();
  const start = performance.now();
  const progress = options.onProgress ?? (() => {});

  const models: EngineBenchModelReport[] = [];
  let device: DeviceRequest = options.device;
  for (const name of options.models) {
    for (const precision of options.precisions) {
      const report = await benchModel(name, precision, device, options, progress);
      // Later models on the provider the first landed on: a table across two providers would compare nothing.
      device = report.provider;
      models.push(report);
    }
  }

  // The goal is stated at the first precision asked for (fp32 unless only fp16 ran).
  const goalPrecision = options.precisions[0]!;
  const comparisons = models.flatMap((m) => m.comparisons);
  const goalComparisons = comparisons.filter((c) => c.model === engineBenchGoal.model && c.jobs === engineBenchGoal.jobs &&
    c.precision === goalPrecision);
  const goalModel = models.find((m) => m.name === engineBenchGoal.model && m.precision === goalPrecision);
  return {
    startedAt: startedAt.toISOString(),
    wallSeconds: (performance.now() - start) / 1000,
    device: options.device,
    provider: models[0]!.provider,
    host: describeHost(),
    settings: {
      jobs: [...options.jobs],
      targetLengths: [...options.targetLengths],
      iterations: { ...options.iterations },
      engine: { maxBatch: options.maxBatch, maxActiveRuns: options.maxActiveRuns },
      repeats: options.repeats,
      job: structuredClone(jobSettings) as Partial<InversionSettings>,
      seed: options.seed,
      randomCheckpointSeed: randomGpt2Seed,
    },
    models,
    points: models.flatMap((m) => m.points),
    comparisons,
    goal: {
      ...engineBenchGoal,
      ratios: goalComparisons.map((c) => ({ targetLength: c.targetLength, ratio: c.ratio, medianRatio: c.medianRatio,
        cpuRatio: c.cpuRatio })),
      met: goalComparisons.length === 0 ? null : goalComparisons.every((c) => c.ratio >= engineBenchGoal.minRatio),
      peakRssMiB: goalModel?.peakRssMiB ?? null,
    },
    peakRssMiB: peakRssMiB(),
  };
}

async function benchModel(name: BenchModelName, precision: GraphPrecision, device: DeviceRequest,
  options: EngineBenchOptions, progress: (event: EngineBenchEvent) => void): Promise<EngineBenchModelReport> {
  const { dir, generated, generateSeconds } = benchModelDir(name, options.cacheDir,
    (target) => progress({ kind: 'generate', model: name, dir: target }));

  const loadStart = performance.now();
  const model = await loadEngineModel(name, dir, device, precision);
  const loadSeconds = (performance.now() - loadStart) / 1000;
  const provider = model.provider as ProviderName; // EngineModel widens loadGpt2's ProviderName to a string
  progress({ kind: 'model', model: name, precision, dir, provider, loadSeconds });
  try {
    const { config } = model.checkpoint;
    const longest = Math.max(...options.targetLengths);
    if (promptVectors + longest - 1 > config.nPositions) {
      throw new EngineBenchOptionsError(`targetLengths: ${longest} tokens with ${promptVectors} prompt vector need ` +
        `${promptVectors + longest - 1} positions; ${name} has ${config.nPositions}`);
    }
    const K = options.iterations[name];
    const modelIndex = benchModelNames.indexOf(name);
    // One short job first: the first graph runs, decodes and engine calls of a process are slower than the rest.
    await runMode(model, 'sequential', benchJobs(config, options.seed, modelIndex, 1, longest, 0), 2, options);
    const rssAfterLoadMiB = rssMiB();

    const points: EngineBenchPoint[] = [];
    const comparisons: EngineBenchComparison[] = [];
    for (const T of options.targetLengths) {
      for (const N of options.jobs) {
        const jobs = benchJobs(config, options.seed, modelIndex, N, T, 1);
        const turns: Record<EngineBenchMode, EngineBenchTurn[]> = { sequential: [], batched: [] };
        const bestNll: number[][] = []; // (turns of both modes, N)
        for (let turn = 0; turn < options.repeats; turn++) {
          // Alternate which mode goes first, so that neither always runs in the same phase of a drift.
          for (const mode of turn % 2 === 0 ? modes : [...modes].reverse()) {
            const measured = await runMode(model, mode, jobs, K, options);
            const figures: EngineBenchTurn = { ...measured.turn, rssMiB: rssMiB() };
            progress({ kind: 'turn', model: name, precision, targetLength: T, jobs: N, mode, turn, figures });
            turns[mode].push(figures);
            bestNll.push(measured.bestNll);
          }
        }
        const [sequential, batched] = modes.map((mode) => {
          const point = summarizeTurns(turns[mode], { model: name, precision, targetLength: T, jobs: N, mode,
            iterationsPerJob: K });
          progress({ kind: 'point', point });
          points.push(point);
          return point;
        }) as [EngineBenchPoint, EngineBenchPoint];
        const comparison: EngineBenchComparison = {
          model: name,
          precision,
          targetLength: T,
          jobs: N,
          sequentialPerSecond: sequential.jobIterationsPerSecond,
          batchedPerSecond: batched.jobIterationsPerSecond,
          ratio: batched.jobIterationsPerSecond / sequential.jobIterationsPerSecond,
          medianRatio: batched.medianJobIterationsPerSecond / sequential.medianJobIterationsPerSecond,
          cpuRatio: batched.medianJobIterationsPerCpuSecond / sequential.medianJobIterationsPerCpuSecond,
          maxBestNllDifference: Math.max(...bestNll.map((turn) => Math.max(...turn.map((nll, i) =>
            Math.abs(nll - bestNll[0]![i]!))))),
        };
        progress({ kind: 'comparison', comparison });
        comparisons.push(comparison);
      }
    }
    return {
      name,
      precision,
      dir,
      provider,
      config: { ...config },
      generated,
      generateSeconds,
      loadSeconds,
      iterationsPerJob: K,
      rssAfterLoadMiB,
      peakRssMiB: peakRssMiB(),
      points,
      comparisons,
    };
  } finally {
    await model.release();
  }
}

/** One job of the bench: a target and the seed of its initial prompt. */
interface BenchJob {
  targetIds: number[]; // (T)
  seed: number;
}

/** Return N jobs with seeded random targets of T tokens; the same for both modes of a point. */
function benchJobs(config: Gpt2Config, seed: number, modelIndex: number, N: number, T: number, purpose: number): BenchJob[] {
  const random = createSeededRandom(deriveSeed(seed, purpose, modelIndex, N, T));
  return Array.from({ length: N }, (_, i) => ({
    targetIds: Array.from({ length: T }, () => random.int(config.vocabSize)),
    seed: deriveSeed(seed, purpose, modelIndex, N, T, i),
  }));
}

/** Return a point: the fastest turn's figures, every turn's rate and their median. */
function summarizeTurns(turns: readonly EngineBenchTurn[],
  where: Pick<EngineBenchPoint, 'model' | 'precision' | 'targetLength' | 'jobs' | 'mode' | 'iterationsPerJob'>): EngineBenchPoint {
  const rates = turns.map((t) => t.jobIterationsPerSecond);
  const fastest = turns[rates.indexOf(Math.max(...rates))]!;
  return {
    ...where,
    ...fastest,
    turns: turns.length,
    turnJobIterationsPerSecond: rates,
    medianJobIterationsPerSecond: median(rates),
    medianJobIterationsPerCpuSecond: median(turns.map((t) => t.jobIterationsPerCpuSecond)),
    maxRssMiB: Math.max(...turns.map((t) => t.rssMiB)),
  };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const n = sorted.length;
  return n % 2 === 1 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2;
}

/**
 * Run `jobs` for K iterations each on a fresh engine: all submitted at once (batched), or each submitted once the one
 * before has its result (sequential). Time each job's iteration phase up to its last progress report, apart from
 * the result summary that follows it.
 */
async function runMode(model: EngineModel, mode: EngineBenchMode, jobs: readonly BenchJob[], K: number,
  options: EngineBenchOptions): Promise<{ turn: Omit<EngineBenchTurn, 'rssMiB'>; bestNll: number[] }> {
  const engine = new InversionEngine(model, { maxBatch: options.maxBatch, maxActiveRuns: options.maxActiveRuns });
  // One untimed graph run of the mode's batch shape, so the first timed round pays no first-run allocations.
  await warmGraph(model, jobs.slice(0, mode === 'batched' ? Math.min(jobs.length, options.maxBatch) : 1));

  const lastIterationAt: number[] = []; // (N) when each job reported its last iteration
  const submit = (job: BenchJob, i: number) => engine.submit({
    targetIds: job.targetIds,
    // reportEvery = K: a job reports its first and its last iteration only, so reporting costs next to nothing.
    settings: makeInversionSettings({ ...jobSettings, seed: job.seed, maxIterations: K, reportEvery: K }, inversionLimits),
    onEvent: (event) => {
      if (event.type === 'progress' && event.progress.iteration === K - 1) {
        lastIterationAt[i] = performance.now();
        lastIterationCpu[i] = cpuMicroseconds();
      }
    },
  });
  const results: InversionResult[] = [];
  const lastIterationCpu: number[] = []; // (N) process CPU microseconds at the same moments
  let iterationMs = 0;
  let iterationCpuUs = 0;
  let summaryMs = 0;
  if (mode === 'batched') {
    // The batcher starts a round as soon as the first job is admitted, so that job's first iteration runs alone and it
    // ends a round before the others (K + 1 graph runs for N > 1): the engine as a server runs it.
    const start = performance.now();
    const startCpu = cpuMicroseconds();
    const handles = [];
    for (const [i, job] of jobs.entries()) handles.push(await submit(job, i));
    results.push(...await Promise.all(handles.map((h) => h.result)));
    const doneAt = performance.now();
    const lastAt = Math.max(...lastIterationAt);
    iterationMs = lastAt - start;
    iterationCpuUs = Math.max(...lastIterationCpu) - startCpu;
    summaryMs = doneAt - lastAt;
  } else {
    for (const [i, job] of jobs.entries()) {
      const start = performance.now();
      const startCpu = cpuMicroseconds();
      const result = await (await submit(job, i)).result;
      const doneAt = performance.now();
      results.push(result);
      iterationMs += lastIterationAt[i]! - start;
      iterationCpuUs += lastIterationCpu[i]! - startCpu;
      summaryMs += doneAt - lastIterationAt[i]!;
    }
  }
  await engine.idle();

  results.forEach((result, i) => {
    const run = result.restarts[0]!;
    if (run.iterations !== K || lastIterationAt[i] === undefined) {
      throw new Error(`engine bench ${model.name} ${mode} N=${jobs.length}: job ${i} ended ${run.status} after ` +
        `${run.iterations} of ${K} iterations${run.error ? `: ${run.error}` : ''}`);
    }
  });
  const { graphRuns, rowIterations, graphMs, sessionMs, optimizerMs, rowHostMs, beamMs } = engine.stats;
  const jobIterations = results.reduce((sum, r) => sum + r.restarts[0]!.iterations, 0);
  if (rowIterations !== jobIterations) {
    throw new Error(`engine bench ${model.name} ${mode} N=${jobs.length}: the batcher counted ${rowIterations} ` +
      `row-iterations for ${jobIterations} job iterations`);
  }
  const seconds = iterationMs / 1000;
  const cpuSeconds = iterationCpuUs / 1e6;
  const graphSeconds = graphMs / 1000;
  return {
    turn: {
      jobIterations,
      seconds,
      jobIterationsPerSecond: jobIterations / seconds,
      cpuSeconds,
      jobIterationsPerCpuSecond: jobIterations / cpuSeconds,
      graphRuns,
      rowsPerGraphRun: rowIterations / graphRuns,
      graphSeconds,
      hostSeconds: seconds - graphSeconds,
      summarySeconds: summaryMs / 1000,
      breakdown: {
        session: sessionMs / 1000,
        transfers: (graphMs - sessionMs) / 1000,
        optimizer: optimizerMs / 1000,
        rows: rowHostMs / 1000,
        beams: beamMs / 1000,
        other: seconds - (graphMs + optimizerMs + rowHostMs + beamMs) / 1000,
      },
    },
    bestNll: results.map((r) => r.restarts[0]!.bestNll),
  };
}

async function warmGraph(model: EngineModel, jobs: readonly BenchJob[]): Promise<void> {
  const C = model.checkpoint.config.nEmbd;
  await model.gradient.run({
    prompt: new Float32Array(jobs.length * promptVectors * C), // (B, P, C)
    promptVectors,
    targets: jobs.map((job) => job.targetIds),
  });
}

function cpuMicroseconds(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

function rssMiB(): number {
  return process.memoryUsage.rss() / 2 ** 20;
}
