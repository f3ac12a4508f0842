// Benchmark the gradient graph: milliseconds per forward + backward run and achieved GFLOP/s over a grid of batch
// sizes and target lengths, on the tiny fixture and on a GPT-2-124M-shaped random checkpoint, against the
// throughput of one large MatMul on the same execution provider in the same process (the practical peak).
//
// The MatMul is timed between each point's graph runs (timeInterleaved), not once for the whole run: on a shared
// machine the speed of both drifts by 2x over tens of seconds, and a ratio of figures taken at different moments
// would measure the neighbours rather than the graph.
//
// B = batch, P = prompt vectors, T = target tokens, S = P + T - 1, C = channels, V = vocab
import type { Gpt2Config } from '../model/checkpoint.js';
import type { DeviceRequest, ProviderFallback, ProviderName } from '../model/execution-provider.js';
import { loadGpt2 } from '../model/gpt2-session.js';
import type { GraphPrecision } from '../model/precision.js';
import { graphPrecisions } from '../model/precision.js';
import { countGradientRunFlops } from './flops.js';
import type { MatmulPeak, MatmulShape } from './matmul-peak.js';
import { matmulFlops, matmulShapeDefaults, openMatmulPeak } from './matmul-peak.js';
import type { BenchModelName } from './random-gpt2.js';
import { benchModelDir, benchModelNames, defaultBenchModels, randomGpt2Seed } from './random-gpt2.js';
import type { HostInfo } from './host-info.js';
import { describeHost } from './host-info.js';
import { createSeededRandom, deriveSeed } from '../util/seeded-random.js';
import type { ProbeOptions, RunTimes, TimingOptions } from './timing.js';
import { summarizeTimes, timeInterleaved } from './timing.js';
import { firstIntegerProblem } from '../util/numbers.js';

/** Name a model the bench can time: the tiny fixture, or the generated GPT-2 124M shape with random weights. */
export type { BenchModelName } from './random-gpt2.js';
export { benchModelNames } from './random-gpt2.js';

/** Describe a progress event, for a command line to print while the bench runs. */
export type GraphBenchEvent =
  | { kind: 'matmul'; provider: ProviderName; fallbacks: ProviderFallback[] }
  | { kind: 'generate'; model: BenchModelName; dir: string }
  | { kind: 'model'; model: BenchModelName; precision: GraphPrecision; dir: string; provider: ProviderName;
    loadSeconds: number }
  | { kind: 'point'; point: GraphBenchPoint };

/** Configure runGraphBench. */
export interface GraphBenchOptions {
  /** Execution provider to ask for; `auto` tries cuda, then webgpu, then cpu. Every graph runs where the first lands. */
  device: DeviceRequest;
  /** Models to time, in this order. */
  models: readonly BenchModelName[];
  /** Graph precisions to time each model at, in this order (each model's points at one, then at the next). */
  precisions: readonly GraphPrecision[];
  /** Batch sizes B: jobs per graph run. */
  batches: readonly number[];
  /** Target lengths T, in tokens. */
  targetLengths: readonly number[];
  /** Prompt vectors P. */
  promptVectors: number;
  /** Timed runs per point at least, after one warm-up run. */
  minRuns: number;
  /** Seconds of timed runs per point at least. */
  minSeconds: number;
  /** Folder of the generated GPT-2 124M checkpoint; default `defaultRandomGpt2Dir()` at call time. */
  cacheDir?: string;
  /** Seed of the random prompts and target ids. */
  seed: number;
  /** Shape of the peak MatMul. */
  matmul: Readonly<MatmulShape>;
  /** Seconds the MatMul is timed each time it is timed, and the most seconds of graph runs between two such times. */
  probe: Readonly<ProbeOptions>;
  /** Called after each step, with figures that are final. */
  onProgress?: (event: GraphBenchEvent) => void;
}

/** Time B ∈ {1, 8, 64} and T ∈ {10, 32} at P = 1 on both models, at least 3 runs and 2 s per point. */
export const graphBenchDefaults: Readonly<Omit<GraphBenchOptions, 'cacheDir' | 'onProgress'>> = Object.freeze({
  device: 'auto',
  models: defaultBenchModels,
  precisions: Object.freeze(['fp32'] as GraphPrecision[]),
  batches: Object.freeze([1, 8, 64]),
  targetLengths: Object.freeze([10, 32]),
  promptVectors: 1,
  minRuns: 3,
  minSeconds: 2,
  seed: 0,
  matmul: matmulShapeDefaults,
  // A quarter second of MatMul per second of graph runs: enough runs for a median, a bounded share of the wall time.
  probe: Object.freeze({ probeSeconds: 0.25, probeEverySeconds: 1 }),
});

/** Raised for options the bench cannot run; the message names the option, the value and the limit. */
export class GraphBenchOptionsError extends Error {
  override name = 'GraphBenchOptionsError';
}

/** Merge `partial` over graphBenchDefaults and check every field. */
export function makeGraphBenchOptions(partial: Partial<GraphBenchOptions> = {}): GraphBenchOptions {
  const options: GraphBenchOptions = { ...graphBenchDefaults, ...partial };
  const positiveIntegers = (field: string, values: readonly number[]): void => {
    if (values.length === 0) throw new GraphBenchOptionsError(`${field}: empty; give at least one value`);
    const problem = firstIntegerProblem(values, 1);
    if (problem) throw new GraphBenchOptionsError(`${field}: ${problem}`);
  };
  const nonNegative = (field: string, value: number): void => {
    if (!Number.isFinite(value) || value < 0) throw new GraphBenchOptionsError(`${field}: ${value} is not a number ≥ 0`);
  };
  positiveIntegers('batches', options.batches);
  positiveIntegers('targetLengths', options.targetLengths);
  positiveIntegers('promptVectors', [options.promptVectors]);
  positiveIntegers('minRuns', [options.minRuns]);
  positiveIntegers('matmul', [options.matmul.m, options.matmul.k, options.matmul.n]);
  nonNegative('minSeconds', options.minSeconds);
  nonNegative('probe.probeSeconds', options.probe.probeSeconds);
  nonNegative('probe.probeEverySeconds', options.probe.probeEverySeconds);
  if (options.models.length === 0) throw new GraphBenchOptionsError('models: empty; give at least one model');
  if (options.precisions.length === 0) throw new GraphBenchOptionsError('precisions: empty; give at least one');
  const unknownPrecision = options.precisions.find((p) => !graphPrecisions.includes(p));
  if (unknownPrecision !== undefined) {
    throw new GraphBenchOptionsError(`precisions: "${unknownPrecision}" is not one of ${graphPrecisions.join(', ')}`);
  }
  const unknown = options.models.find((m) => !benchModelNames.includes(m));
  if (unknown !== undefined) {
    throw new GraphBenchOptionsError(`models: "${unknown}" is not one of ${benchModelNames.join(', ')}`);
  }
  return options;
}

/** Hold the figures of one (model, B, T) point and of the MatMul timed between its runs. */
export interface GraphBenchPoint {
  model: BenchModelName;
  precision: GraphPrecision;
  batch: number; // B
  promptVectors: number; // P
  targetLength: number; // T
  sequenceLength: number; // S = P + T - 1
  times: RunTimes; // of the graph runs
  /** Median milliseconds of a run inside onnxruntime's session.run; the rest of `times` makes inputs, reads outputs. */
  sessionMedianMs: number;
  flopsPerRun: number; // MatMul FLOPs of one forward + backward run (flops.ts)
  gflopPerSecond: number; // flopsPerRun / median seconds per run / 1e9
  jobIterationsPerSecond: number; // B / median seconds per run: optimizer steps per second summed over the jobs
  matmulTimes: RunTimes; // of every run of the peak MatMul timed between this point's graph runs
  matmulProbes: number; // times the MatMul was timed during the point
  matmulBesideRunMs: number; // the MatMul's time beside the graph runs (InterleavedTimes.probeBesideRunMs)
  matmulGflopPerSecond: number; // the MatMul's FLOPs / matmulBesideRunMs in seconds / 1e9
  fractionOfPeak: number; // gflopPerSecond / matmulGflopPerSecond
  // The same from the fastest run of each: when other processes take the cores for seconds at a time, a median
  // can land in a slow stretch for one and not the other, while the fastest runs are the least disturbed.
  bestGflopPerSecond: number; // flopsPerRun / times.minMs in seconds / 1e9
  matmulBestGflopPerSecond: number; // the MatMul's FLOPs / matmulTimes.minMs in seconds / 1e9
  bestFractionOfPeak: number; // bestGflopPerSecond / matmulBestGflopPerSecond
}

/** Hold the peak MatMul's description and the spread of its figures over the points. */
export interface MatmulPeakReport {
  shape: MatmulShape;
  flopsPerRun: number;
  provider: ProviderName;
  /** The best and the worst of the points' MatMul figures: how far the machine's speed drifted during the run. */
  bestGflopPerSecond: number;
  worstGflopPerSecond: number;
  /** The fastest single MatMul run of the whole bench. */
  bestRunGflopPerSecond: number;
}

/** Hold one model's part of the bench. */
export interface GraphBenchModelReport {
  name: BenchModelName;
  precision: GraphPrecision;
  dir: string;
  config: Gpt2Config;
  parameters: number; // elements of the checkpoint tensors the graph uses (the head is tied to wte)
  /** For gpt2-random: whether this run wrote the checkpoint, and how long that took. */
  generated: boolean;
  generateSeconds: number;
  loadSeconds: number; // build both graphs and open them (loadGpt2)
  /** Peak resident memory of the process so far, after this model's points and before its release. */
  peakRssMiB: number;
  rssMiB: number; // resident memory at the same moment
  points: GraphBenchPoint[];
}

/** Hold everything a bench run measured. */
export interface GraphBenchResult {
  startedAt: string; // ISO 8601
  wallSeconds: number;
  device: DeviceRequest; // as asked
  provider: ProviderName; // where every graph ran
  fallbacks: ProviderFallback[]; // providers `auto` passed over, and why
  host: HostInfo;
  settings: {
    batches: number[];
    targetLengths: number[];
    promptVectors: number;
    minRuns: number;
    minSeconds: number;
    seed: number;
    randomCheckpointSeed: number;
    probe: ProbeOptions;
  };
  matmulPeak: MatmulPeakReport;
  models: GraphBenchModelReport[];
  points: GraphBenchPoint[]; // every model's points, in run order
  /** Peak resident memory of the whole process (process.resourceUsage().maxRSS). */
  peakRssMiB: number;
}

const promptStd = 0.1; // soft prompts start near the scale of GPT-2's token embeddings

/** Run the bench: open the peak MatMul, then time each model's grid of points with the MatMul between the runs. */
export async function runGraphBench(partial: Partial<GraphBenchOptions> = {}): Promise<GraphBenchResult> {
  const options = makeGraphBenchOptions(partial);
  const startedAt = new Date();
  const start = performance.now();
  const progress = options.onProgress ?? (() => {});

  const peak = await openMatmulPeak(options.device, options.matmul, options.seed);
  progress({ kind: 'matmul', provider: peak.provider, fallbacks: peak.fallbacks });
  const models: GraphBenchModelReport[] = [];
  try {
    for (const name of options.models) {
      for (const precision of options.precisions) models.push(await benchModel(name, precision, peak, options, progress));
    }
  } finally {
    await peak.release();
  }

  const points = models.flatMap((m) => m.points);
  const matmulFigures = points.map((p) => p.matmulGflopPerSecond);
  return {
    startedAt: startedAt.toISOString(),
    wallSeconds: (performance.now() - start) / 1000,
    device: options.device,
    provider: peak.provider,
    fallbacks: peak.fallbacks,
    host: describeHost(),
    settings: {
      batches: [...options.batches],
      targetLengths: [...options.targetLengths],
      promptVectors: options.promptVectors,
      minRuns: options.minRuns,
      minSeconds: options.minSeconds,
      seed: options.seed,
      randomCheckpointSeed: randomGpt2Seed,
      probe: { ...options.probe },
    },
    matmulPeak: {
      shape: { ...options.matmul },
      flopsPerRun: matmulFlops(options.matmul),
      provider: peak.provider,
      bestGflopPerSecond: Math.max(...matmulFigures),
      worstGflopPerSecond: Math.min(...matmulFigures),
      bestRunGflopPerSecond: Math.max(...points.map((p) => p.matmulBestGflopPerSecond)),
    },
    models,
    points,
    peakRssMiB: peakRssMiB(),
  };
}

async function benchModel(name: BenchModelName, precision: GraphPrecision, peak: MatmulPeak, options: GraphBenchOptions,
  progress: (event: GraphBenchEvent) => void): Promise<GraphBenchModelReport> {
  const { dir, generated, generateSeconds } = benchModelDir(name, options.cacheDir,
    (target) => progress({ kind: 'generate', model: name, dir: target }));

  const loadStart = performance.now();
  // The provider the MatMul landed on, asked for explicitly: a ratio across two providers would mean nothing.
  const model = await loadGpt2(dir, peak.provider, precision);
  const loadSeconds = (performance.now() - loadStart) / 1000;
  progress({ kind: 'model', model: name, precision, dir, provider: model.provider, loadSeconds });
  try {
    const { config } = model.checkpoint;
    const C = config.nEmbd;
    const P = options.promptVectors;
    const longest = Math.max(...options.targetLengths);
    if (P + longest - 1 > config.nPositions) {
      throw new GraphBenchOptionsError(`targetLengths: ${longest} tokens with ${P} prompt vectors need ` +
        `${P + longest - 1} positions; ${name} has ${config.nPositions}`);
    }
    const timing: TimingOptions & ProbeOptions = { minRuns: options.minRuns, minSeconds: options.minSeconds, ...options.probe };
    const matmulGflop = matmulFlops(peak.shape) / 1e9;
    const points: GraphBenchPoint[] = [];
    for (const T of options.targetLengths) {
      for (const B of options.batches) {
        const random = createSeededRandom(deriveSeed(options.seed, benchModelNames.indexOf(name), B, T));
        const prompt = random.fillNormal(new Float32Array(B * P * C), promptStd); // (B, P, C)
        const targets = Array.from({ length: B }, () => Array.from({ length: T }, () => random.int(config.vocabSize))); // (B, T)
        const sessionMs: number[] = [];
        const timed = await timeInterleaved(async () => {
          sessionMs.push((await model.gradient.run({ prompt, promptVectors: P, targets })).sessionMs);
        }, peak.run, timing);
        sessionMs.shift(); // the warm-up run's
        const flopsPerRun = countGradientRunFlops(config, { batch: B, promptVectors: P, targetLength: T }).total;
        const seconds = timed.run.medianMs / 1000;
        const gflopPerSecond = flopsPerRun / seconds / 1e9;
        const matmulGflopPerSecond = matmulGflop / (timed.probeBesideRunMs / 1000);
        const bestGflopPerSecond = flopsPerRun / (timed.run.minMs / 1000) / 1e9;
        const matmulBestGflopPerSecond = matmulGflop / (timed.probe.minMs / 1000);
        const point: GraphBenchPoint = {
          model: name,
          precision,
          batch: B,
          promptVectors: P,
          targetLength: T,
          sequenceLength: P + T - 1,
          times: timed.run,
          sessionMedianMs: summarizeTimes(sessionMs).medianMs,
          flopsPerRun,
          gflopPerSecond,
          jobIterationsPerSecond: B / seconds,
          matmulTimes: timed.probe,
          matmulProbes: timed.probes,
          matmulBesideRunMs: timed.probeBesideRunMs,
          matmulGflopPerSecond,
          fractionOfPeak: gflopPerSecond / matmulGflopPerSecond,
          bestGflopPerSecond,
          matmulBestGflopPerSecond,
          bestFractionOfPeak: bestGflopPerSecond / matmulBestGflopPerSecond,
        };
        progress({ kind: 'point', point });
        points.push(point);
      }
    }
    return {
      name,
      precision,
      dir,
      config: { ...config },
      parameters: [...model.checkpoint.tensors.values()].reduce((acc, t) => acc + t.shape.reduce((a, b) => a * b, 1), 0),
      generated,
      generateSeconds,
      loadSeconds,
      peakRssMiB: peakRssMiB(),
      rssMiB: process.memoryUsage.rss() / 2 ** 20,
      points,
    };
  } finally {
    await model.release();
  }
}

/** Return the process's peak resident memory so far, in MiB (maxRSS is in KiB). */
export function peakRssMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}
