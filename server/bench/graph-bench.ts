// Benchmark the gradient graph: milliseconds per forward + backward run and achieved GFLOP/s over a grid of batch
// sizes and target lengths, on the tiny fixture and on a GPT-2-124M-shaped random checkpoint, against the
// throughput of one large MatMul on the same execution provider in the same process (the practical peak).
//
// B = batch, P = prompt vectors, T = target tokens, S = P + T - 1, C = channels, V = vocab
import os from 'node:os';
import ort from 'onnxruntime-node';
import type { Gpt2Config } from '../model/checkpoint.js';
import { resolveModelDir } from '../model/builtin-models.js';
import type { DeviceRequest, ProviderFallback, ProviderName } from '../model/execution-provider.js';
import { loadGpt2 } from '../model/gpt2-session.js';
import { countGradientRunFlops } from './flops.js';
import type { MatmulPeakMeasurement, MatmulShape } from './matmul-peak.js';
import { matmulFlops, matmulShapeDefaults, measureMatmulPeak } from './matmul-peak.js';
import { defaultRandomGpt2Dir, ensureRandomGpt2, randomGpt2Seed } from './random-gpt2.js';
import { createSeededRandom, deriveSeed } from './seeded-random.js';
import type { RunTimes } from './timing.js';
import { timeRuns } from './timing.js';

/** Name a model the bench can time: the tiny fixture, or the generated GPT-2 124M shape with random weights. */
export type BenchModelName = 'tiny' | 'gpt2-random';
export const benchModelNames: readonly BenchModelName[] = Object.freeze(['tiny', 'gpt2-random']);

/** Describe a progress event, for a command line to print while the bench runs. */
export type GraphBenchEvent =
  | { kind: 'matmul'; when: MatmulPeakWhen; measurement: MatmulPeakMeasurement }
  | { kind: 'generate'; model: BenchModelName; dir: string }
  | { kind: 'model'; model: BenchModelName; dir: string; provider: ProviderName; loadSeconds: number }
  | { kind: 'point'; measurement: GraphBenchMeasurement };

/** Configure runGraphBench. */
export interface GraphBenchOptions {
  /** Execution provider to ask for; `auto` tries cuda, then webgpu, then cpu. Every graph runs where the first lands. */
  device: DeviceRequest;
  /** Models to time, in this order. */
  models: readonly BenchModelName[];
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
  /** Called as the bench goes; the figures of a point are final except for its fraction of the peak. */
  onProgress?: (event: GraphBenchEvent) => void;
}

/** Time B ∈ {1, 8, 64} and T ∈ {10, 32} at P = 1 on both models, at least 3 runs and 2 s per point. */
export const graphBenchDefaults: Readonly<Omit<GraphBenchOptions, 'cacheDir' | 'onProgress'>> = Object.freeze({
  device: 'auto',
  models: benchModelNames,
  batches: Object.freeze([1, 8, 64]),
  targetLengths: Object.freeze([10, 32]),
  promptVectors: 1,
  minRuns: 3,
  minSeconds: 2,
  seed: 0,
  matmul: matmulShapeDefaults,
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
    const bad = values.find((v) => !Number.isSafeInteger(v) || v < 1);
    if (bad !== undefined) throw new GraphBenchOptionsError(`${field}: ${bad} is not an integer ≥ 1`);
  };
  positiveIntegers('batches', options.batches);
  positiveIntegers('targetLengths', options.targetLengths);
  positiveIntegers('promptVectors', [options.promptVectors]);
  positiveIntegers('minRuns', [options.minRuns]);
  positiveIntegers('matmul', [options.matmul.m, options.matmul.k, options.matmul.n]);
  if (!Number.isFinite(options.minSeconds) || options.minSeconds < 0) {
    throw new GraphBenchOptionsError(`minSeconds: ${options.minSeconds} is not a number ≥ 0`);
  }
  if (options.models.length === 0) throw new GraphBenchOptionsError('models: empty; give at least one model');
  const unknown = options.models.find((m) => !benchModelNames.includes(m));
  if (unknown !== undefined) {
    throw new GraphBenchOptionsError(`models: "${unknown}" is not one of ${benchModelNames.join(', ')}`);
  }
  return options;
}

/** Hold the figures of one (model, B, T) point, known as soon as it is timed. */
export interface GraphBenchMeasurement {
  model: BenchModelName;
  batch: number; // B
  promptVectors: number; // P
  targetLength: number; // T
  sequenceLength: number; // S = P + T - 1
  times: RunTimes;
  flopsPerRun: number; // MatMul FLOPs of one forward + backward run (flops.ts)
  gflopPerSecond: number; // flopsPerRun / median seconds per run / 1e9
  jobIterationsPerSecond: number; // B / median seconds per run: optimizer steps per second summed over the jobs
}

/** Hold one point's figures with its share of the same-run MatMul peak. */
export interface GraphBenchPoint extends GraphBenchMeasurement {
  fractionOfPeak: number; // gflopPerSecond / matmulPeak.gflopPerSecond
}

/** Say when the peak was measured: before the first model and after the last, the higher of the two counting. */
export type MatmulPeakWhen = 'before' | 'after';

/** Hold the peak MatMul's figures. */
export interface MatmulPeakReport {
  shape: MatmulShape;
  flopsPerRun: number;
  /** The higher of the two measurements: the ratio is never flattered by a slow moment of a shared machine. */
  gflopPerSecond: number;
  measurements: (MatmulPeakMeasurement & { when: MatmulPeakWhen })[];
}

/** Hold one model's part of the bench. */
export interface GraphBenchModelReport {
  name: BenchModelName;
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
  host: {
    platform: string;
    arch: string;
    cpuModel: string;
    cpus: number;
    memoryMiB: number;
    node: string;
    onnxruntime: string;
  };
  settings: {
    batches: number[];
    targetLengths: number[];
    promptVectors: number;
    minRuns: number;
    minSeconds: number;
    seed: number;
    randomCheckpointSeed: number;
  };
  matmulPeak: MatmulPeakReport;
  models: GraphBenchModelReport[];
  points: GraphBenchPoint[]; // every model's points, in run order
  /** Peak resident memory of the whole process (process.resourceUsage().maxRSS). */
  peakRssMiB: number;
}

const promptStd = 0.1; // soft prompts start near the scale of GPT-2's token embeddings

/** Run the bench: the peak MatMul, each model's grid of points, the peak again; return every figure. */
export async function runGraphBench(partial: Partial<GraphBenchOptions> = {}): Promise<GraphBenchResult> {
  const options = makeGraphBenchOptions(partial);
  const startedAt = new Date();
  const start = performance.now();
  const timing = { minRuns: options.minRuns, minSeconds: options.minSeconds };
  const progress = options.onProgress ?? (() => {});

  const measurePeak = async (when: MatmulPeakWhen, device: DeviceRequest) => {
    const measurement = await measureMatmulPeak(device, options.matmul, timing, options.seed);
    progress({ kind: 'matmul', when, measurement });
    return { ...measurement, when };
  };
  const before = await measurePeak('before', options.device);
  // Every later graph opens on the provider the peak landed on: a ratio across two providers would mean nothing.
  const provider = before.provider;

  const models: GraphBenchModelReport[] = [];
  for (const name of options.models) {
    models.push(await benchModel(name, provider, options, timing, progress));
  }
  const after = await measurePeak('after', provider);

  const peak = Math.max(before.gflopPerSecond, after.gflopPerSecond);
  for (const model of models) {
    for (const point of model.points) point.fractionOfPeak = point.gflopPerSecond / peak;
  }
  return {
    startedAt: startedAt.toISOString(),
    wallSeconds: (performance.now() - start) / 1000,
    device: options.device,
    provider,
    fallbacks: before.fallbacks,
    host: {
      platform: os.platform(),
      arch: os.arch(),
      cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
      cpus: os.availableParallelism(),
      memoryMiB: Math.round(os.totalmem() / 2 ** 20),
      node: process.version,
      onnxruntime: ort.env.versions.node ?? ort.env.versions.common,
    },
    settings: {
      batches: [...options.batches],
      targetLengths: [...options.targetLengths],
      promptVectors: options.promptVectors,
      minRuns: options.minRuns,
      minSeconds: options.minSeconds,
      seed: options.seed,
      randomCheckpointSeed: randomGpt2Seed,
    },
    matmulPeak: {
      shape: { ...options.matmul },
      flopsPerRun: matmulFlops(options.matmul),
      gflopPerSecond: peak,
      measurements: [before, after],
    },
    models,
    points: models.flatMap((m) => m.points),
    peakRssMiB: peakRssMiB(),
  };
}

async function benchModel(name: BenchModelName, provider: ProviderName, options: GraphBenchOptions,
  timing: { minRuns: number; minSeconds: number }, progress: (event: GraphBenchEvent) => void):
  Promise<GraphBenchModelReport> {
  let dir: string;
  let generated = false;
  let generateSeconds = 0;
  if (name === 'tiny') {
    dir = resolveModelDir('tiny');
  } else {
    const ensured = ensureRandomGpt2(options.cacheDir ?? defaultRandomGpt2Dir(), randomGpt2Seed,
      (target) => progress({ kind: 'generate', model: name, dir: target }));
    ({ dir, generated } = ensured);
    generateSeconds = ensured.seconds;
  }

  const loadStart = performance.now();
  const model = await loadGpt2(dir, provider);
  const loadSeconds = (performance.now() - loadStart) / 1000;
  progress({ kind: 'model', model: name, dir, provider: model.provider, loadSeconds });
  try {
    const { config } = model.checkpoint;
    const C = config.nEmbd;
    const P = options.promptVectors;
    const points: GraphBenchPoint[] = [];
    for (const T of options.targetLengths) {
      for (const B of options.batches) {
        const random = createSeededRandom(deriveSeed(options.seed, benchModelNames.indexOf(name), B, T));
        const prompt = random.fillNormal(new Float32Array(B * P * C), promptStd); // (B, P, C)
        const targets = Array.from({ length: B }, () => Array.from({ length: T }, () => random.int(config.vocabSize))); // (B, T)
        const times = await timeRuns(() => model.gradient.run({ prompt, promptVectors: P, targets }), timing);
        const flopsPerRun = countGradientRunFlops(config, { batch: B, promptVectors: P, targetLength: T }).total;
        const seconds = times.medianMs / 1000;
        const measurement: GraphBenchMeasurement = {
          model: name,
          batch: B,
          promptVectors: P,
          targetLength: T,
          sequenceLength: P + T - 1,
          times,
          flopsPerRun,
          gflopPerSecond: flopsPerRun / seconds / 1e9,
          jobIterationsPerSecond: B / seconds,
        };
        progress({ kind: 'point', measurement });
        points.push({ ...measurement, fractionOfPeak: Number.NaN });
      }
    }
    return {
      name,
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
