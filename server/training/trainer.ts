// Train a tied-head GPT-2 on a token stream with the project's own training graph (forward, next-token loss and
// backward to every weight, run by onnxruntime) and AdamW on the host. Resumable: the run folder holds the
// weights, the optimizer's moments and the step; a batch's windows are drawn from a stream seeded by (seed, step),
// so a resumed run sees exactly the batches an uninterrupted one would.
//
// B = sequences per step, S = positions per sequence, C = channels, V = vocab (50257)
import fs from 'node:fs';
import path from 'node:path';
import ort from 'onnxruntime-node';
import type { Gpt2Config } from '../model/checkpoint.js';
import { loadCheckpoint } from '../model/checkpoint.js';
import { sessionThreads } from '../model/devices.js';
import { sequenceHelpers } from '../model/gpt2-session.js';
import type { SequenceHelpers } from '../model/gpt2-session.js';
import { buildTrainingGraph, trainableWeights, trainingGraphIo, weightGradientOutput } from '../model/gpt2-training-graph.js';
import { toHuggingFaceConfig, writeRandomCheckpoint } from '../model/random-checkpoint.js';
import { readSafetensorsHeader, readTensorFloat32, writeSafetensors } from '../model/safetensors.js';
import { createSeededRandom, mixSeeds } from '../util/seeded-random.js';
import { readCorpusSplit } from './corpus.js';

/** Configure a training run; every field is recorded in the run folder, and a resume must agree with it. */
export interface TrainingOptions {
  /** Model shape; vocab 50257 and GPT-2's tokenizer always. */
  nEmbd: number;
  nLayer: number;
  nHead: number;
  /** Context of the model (n_positions) and the length of every training sequence. */
  nPositions: number;
  /** Sequences per step. */
  batch: number;
  /** Steps in all; the learning rate follows a warmup and a cosine decay over them. */
  steps: number;
  /** Peak learning rate, reached after `warmupSteps`, decaying to `minLr` at `steps`. */
  lr: number;
  minLr: number;
  warmupSteps: number;
  /** AdamW's decoupled weight decay, applied to matrices (not to biases, LayerNorm gains or wpe). */
  weightDecay: number;
  beta1: number;
  beta2: number;
  /** Clip the gradient's global L2 norm to this. */
  gradClip: number;
  seed: number;
  /** Evaluate on the validation split every this many steps, over `evalWindows` windows. */
  evalEvery: number;
  evalWindows: number;
  /** Save the run's state every this many steps. */
  checkpointEvery: number;
  /** Start from the weights of another run folder (its last state) instead of GPT-2's random initialization. */
  initFrom?: string;
}

export const trainingDefaults: Readonly<TrainingOptions> = Object.freeze({
  nEmbd: 192,
  nLayer: 4,
  nHead: 4,
  nPositions: 128, // tokens of context
  batch: 16, // sequences per step: 2048 tokens
  steps: 1800, // 3.7 M tokens: about an epoch and a quarter of the corpus
  lr: 3e-3,
  minLr: 3e-4,
  warmupSteps: 100,
  weightDecay: 0.1,
  beta1: 0.9,
  beta2: 0.95,
  gradClip: 1.0,
  seed: 0,
  evalEvery: 250,
  evalWindows: 64, // 8 k validation tokens per evaluation
  checkpointEvery: 100,
});

/** One line of the run's log. */
export interface TrainingLogLine {
  step: number;
  /** Tokens seen so far. */
  tokens: number;
  /** Mean training NLL (nats per token) of this step's batch. */
  loss: number;
  lr: number;
  gradNorm: number;
  /** Training throughput over the last reporting interval, tokens per second. */
  tokensPerSecond: number;
  /** Wall time of the run so far (resumed runs add up), seconds. */
  elapsed: number;
  /** Mean validation NLL, on evaluation steps. */
  validationLoss?: number;
}

const stateFile = 'state.safetensors';
const runFile = 'run.json';
const logFile = 'log.jsonl';

interface RunRecord {
  options: TrainingOptions;
  corpus: string;
  step: number;
  elapsed: number;
}

/** AdamW's state for one weight: steps taken, and the first and second moments (`exp_avg`, `exp_avg_sq`). */
export interface AdamWMoments {
  step: number;
  readonly expAvg: Float32Array;
  readonly expAvgSq: Float32Array;
}

/** The weights and optimizer state of a run in memory. */
interface TrainingState {
  config: Gpt2Config;
  weights: Map<string, Float32Array>;
  moments: Map<string, AdamWMoments>;
  step: number;
  elapsed: number;
}

/** Train (or resume) the run in `runDir` on the corpus in `corpusDir`, until `options.steps` or `stopAfterSteps`. */
export async function train(corpusDir: string, runDir: string, partial: Partial<TrainingOptions>,
  log: (line: TrainingLogLine) => void, stopAfterSteps = Infinity): Promise<TrainingState> {
  const train = readCorpusSplit(corpusDir, 'train');
  const validation = readCorpusSplit(corpusDir, 'validation');
  const { options, state } = openRun(runDir, corpusDir, partial);
  const { batch: B, nPositions: S } = options;
  const session = await openTrainingSession(state.config);
  const helpers = sequenceHelpers(S);
  const logStream = fs.createWriteStream(path.join(runDir, logFile), { flags: 'a' });
  try {
    let intervalStart = performance.now();
    let intervalTokens = 0;
    let sessionStart = performance.now();
    const elapsedBefore = state.elapsed;
    const lastStep = Math.min(options.steps, state.step + stopAfterSteps);
    while (state.step < lastStep) {
      const { inputIds, targetIds } = sampleBatch(train, B, S, mixSeeds(options.seed, state.step));
      const result = await runTrainingGraph(session, state, inputIds, targetIds, B, S, 1 / (B * S), helpers);
      const gradNorm = clipGradients(result.gradients, options.gradClip);
      const lr = learningRate(options, state.step);
      applyAdamW(state, result.gradients, lr, options);
      state.step += 1;
      intervalTokens += B * S;
      state.elapsed = elapsedBefore + (performance.now() - sessionStart) / 1000;
      const evaluate = state.step % options.evalEvery === 0 || state.step === options.steps;
      if (state.step % 10 === 0 || evaluate || state.step === lastStep) {
        const now = performance.now();
        const line: TrainingLogLine = {
          step: state.step,
          tokens: state.step * B * S,
          loss: result.loss,
          lr,
          gradNorm,
          tokensPerSecond: intervalTokens / ((now - intervalStart) / 1000),
          elapsed: state.elapsed,
        };
        if (evaluate) {
          line.validationLoss = (await evaluateWindows(session, state, validation, S, options.evalWindows, helpers)).meanNll;
        }
        logStream.write(`${JSON.stringify(line)}\n`);
        log(line);
        intervalStart = performance.now();
        intervalTokens = 0;
      }
      if (state.step % options.checkpointEvery === 0 || state.step === lastStep) saveRun(runDir, corpusDir, options, state);
    }
    return state;
  } finally {
    logStream.end();
    await session.release();
  }
}

/** The learning rate at `step`: linear warmup to lr, then a cosine down to minLr at the last step. */
export function learningRate(options: TrainingOptions, step: number): number {
  if (step < options.warmupSteps) return options.lr * (step + 1) / options.warmupSteps;
  const progress = Math.min(1, (step - options.warmupSteps) / Math.max(1, options.steps - options.warmupSteps));
  return options.minLr + 0.5 * (options.lr - options.minLr) * (1 + Math.cos(Math.PI * progress));
}

/** The validation loss over the windows of a token stream (stride S: every token after the first predicted once). */
export interface WindowEvaluation {
  meanNll: number;
  tokens: number;
  /** Per-token NLL of each predicted token, in stream order (token i + 1 of the stream at index i). */
  nll: Float32Array;
}

/**
 * Evaluate mean NLL over `windows` windows of `stream`, spread evenly over it (all of them when Infinity): window k
 * reads tokens kS .. kS+S-1 and predicts kS+1 .. kS+S. Spread, so a partial evaluation sees every source of a
 * split that holds its sources one after another.
 */
export async function evaluateWindows(session: ort.InferenceSession, state: Pick<TrainingState, 'config' | 'weights'>,
  stream: Uint16Array, S: number, windows: number, helpers = sequenceHelpers(S)): Promise<WindowEvaluation> {
  const available = Math.floor((stream.length - 1) / S);
  const count = Math.min(windows, available);
  const nll = new Float32Array(count * S);
  const evalBatch = 16;
  for (let first = 0; first < count; first += evalBatch) {
    const B = Math.min(evalBatch, count - first);
    const inputIds = new BigInt64Array(B * S);
    const targetIds = new BigInt64Array(B * S);
    for (let b = 0; b < B; b++) {
      const start = Math.floor(((first + b) * available) / count) * S;
      for (let s = 0; s < S; s++) {
        inputIds[b * S + s] = BigInt(stream[start + s]!);
        targetIds[b * S + s] = BigInt(stream[start + s + 1]!);
      }
    }
    const result = await runTrainingGraph(session, state, inputIds, targetIds, B, S, 0, helpers);
    nll.set(result.nll, first * S);
  }
  let sum = 0;
  for (const x of nll) sum += x;
  return { meanNll: sum / nll.length, tokens: nll.length, nll };
}

/** Open the training graph for a model shape on the CPU, on the sessions' threads (every core unless set). */
export async function openTrainingSession(config: Gpt2Config): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(buildTrainingGraph(config).toBytes(), {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: sessionThreads(),
  });
}

/**
 * Compute the mean next-token NLL of `ids` (B rows of S + 1 tokens) and its gradient to every weight: the graph's
 * outputs finished on the host, before clipping. For tests against an independent implementation.
 */
export async function trainingGradients(session: ort.InferenceSession, config: Gpt2Config,
  weights: Map<string, Float32Array>, ids: readonly (readonly number[])[]): Promise<GraphRunResult> {
  const B = ids.length;
  const S = ids[0]!.length - 1;
  const inputIds = new BigInt64Array(B * S);
  const targetIds = new BigInt64Array(B * S);
  ids.forEach((row, b) => {
    for (let s = 0; s < S; s++) {
      inputIds[b * S + s] = BigInt(row[s]!);
      targetIds[b * S + s] = BigInt(row[s + 1]!);
    }
  });
  return runTrainingGraph(session, { config, weights }, inputIds, targetIds, B, S, 1 / (B * S), sequenceHelpers(S));
}

interface GraphRunResult {
  loss: number;
  nll: Float32Array;
  gradients: Map<string, Float32Array>;
}

async function runTrainingGraph(session: ort.InferenceSession, state: Pick<TrainingState, 'config' | 'weights'>,
  inputIds: BigInt64Array, targetIds: BigInt64Array, B: number, S: number, lossScale: number,
  helpers: SequenceHelpers): Promise<GraphRunResult> {
  const { nEmbd: C } = state.config;
  const io = trainingGraphIo.inputs;
  const feeds: Record<string, ort.Tensor> = {
    [io.inputIds]: new ort.Tensor('int64', inputIds, [B, S]),
    [io.targetIds]: new ort.Tensor('int64', targetIds, [B, S]),
    [io.positionIds]: helpers.positionIds,
    [io.causalBias]: helpers.causalBias,
    [io.lossScale]: new ort.Tensor('float32', Float32Array.of(lossScale), []),
  };
  const shapes = trainableWeights(state.config);
  for (const [name, shape] of shapes) feeds[name] = new ort.Tensor('float32', state.weights.get(name)!, shape);
  const out = await session.run(feeds);
  const nll = out[trainingGraphIo.outputs.nll]!.data as Float32Array;
  let loss = 0;
  for (const x of nll) loss += x;
  loss /= nll.length;
  const gradients = new Map<string, Float32Array>();
  for (const name of shapes.keys()) {
    const output = out[weightGradientOutput(name)];
    if (output) gradients.set(name, output.data as Float32Array);
  }
  // wte: the head's gradient (transposed back) plus the input rows; wpe: the input gradient summed over the batch.
  const V = state.config.vocabSize;
  const dH0 = out[trainingGraphIo.outputs.gradH0]!.data as Float32Array; // (B, S, C)
  const dWteT = out[trainingGraphIo.outputs.gradHeadT]!.data as Float32Array; // (C, V)
  const dWte = new Float32Array(V * C); // (V, C)
  for (let c = 0; c < C; c++) for (let v = 0; v < V; v++) dWte[v * C + c] = dWteT[c * V + v]!;
  const dWpe = new Float32Array(state.config.nPositions * C); // (nPositions, C)
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < S; s++) {
      const row = (b * S + s) * C;
      const token = Number(inputIds[b * S + s]) * C;
      for (let c = 0; c < C; c++) {
        const d = dH0[row + c]!;
        dWte[token + c] += d;
        dWpe[s * C + c] += d;
      }
    }
  }
  gradients.set('wte.weight', dWte);
  gradients.set('wpe.weight', dWpe);
  return { loss, nll, gradients };
}

// Clip the global L2 norm in place (torch.nn.utils.clip_grad_norm_); returns the norm before clipping.
function clipGradients(gradients: Map<string, Float32Array>, maxNorm: number): number {
  let sumSquares = 0;
  for (const g of gradients.values()) for (const x of g) sumSquares += x * x;
  const norm = Math.sqrt(sumSquares);
  if (norm > maxNorm) {
    const scale = maxNorm / (norm + 1e-6);
    for (const g of gradients.values()) for (let i = 0; i < g.length; i++) g[i]! *= scale;
  }
  return norm;
}

// torch.optim.AdamW (decoupled weight decay), one tensor at a time.
function applyAdamW(state: TrainingState, gradients: Map<string, Float32Array>, lr: number,
  options: TrainingOptions): void {
  for (const [name, param] of state.weights) {
    const moments = state.moments.get(name)!;
    moments.step += 1;
    adamwStep(param, gradients.get(name)!, moments, lr, decays(name) ? options.weightDecay : 0, options);
  }
}

/**
 * Take one AdamW step in place, as torch.optim.AdamW (the arithmetic in float64, stored as float32: the trainer
 * needs speed over 12 M weights, not the bit-exact float32 replay of engine/optimizers.ts's adamStep):
 *
 *   p ← p · (1 − lr·λ)                              param.mul_(1 - lr * weight_decay)
 *   m ← β₁·m + (1−β₁)·g                             exp_avg.lerp_(grad, 1 - beta1)
 *   v ← β₂·v + (1−β₂)·g²                            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
 *   p ← p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)      bias corrections in the step size and the denominator
 */
export function adamwStep(param: Float32Array, grad: Float32Array, moments: AdamWMoments, lr: number,
  weightDecay: number, options: Pick<TrainingOptions, 'beta1' | 'beta2'>, eps = 1e-8): void {
  const { beta1, beta2 } = options;
  const t = moments.step;
  const stepSize = lr / (1 - beta1 ** t);
  const bias2Sqrt = Math.sqrt(1 - beta2 ** t);
  const keep = 1 - lr * weightDecay;
  const m = moments.expAvg;
  const v = moments.expAvgSq;
  for (let i = 0; i < param.length; i++) {
    const g = grad[i]!;
    const mi = beta1 * m[i]! + (1 - beta1) * g;
    const vi = beta2 * v[i]! + (1 - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i]! * keep - stepSize * mi / (Math.sqrt(vi) / bias2Sqrt + eps);
  }
}

// Decay the matrices that multiply activations (wte included: it is the head too), as nanoGPT does.
function decays(name: string): boolean {
  return name === 'wte.weight' || name.endsWith('c_attn.weight') || name.endsWith('c_proj.weight') ||
    name.endsWith('c_fc.weight');
}

function sampleBatch(stream: Uint16Array, B: number, S: number, seed: number) {
  const random = createSeededRandom(seed);
  const inputIds = new BigInt64Array(B * S);
  const targetIds = new BigInt64Array(B * S);
  for (let b = 0; b < B; b++) {
    const start = random.int(stream.length - S - 1);
    for (let s = 0; s < S; s++) {
      inputIds[b * S + s] = BigInt(stream[start + s]!);
      targetIds[b * S + s] = BigInt(stream[start + s + 1]!);
    }
  }
  return { inputIds, targetIds };
}

// ---------------------------------------------------------------------------------------------------------------
// The run folder: run.json (options, step), state.safetensors (weights and moments), log.jsonl

function modelConfig(options: TrainingOptions): Gpt2Config {
  return {
    vocabSize: 50257,
    nPositions: options.nPositions,
    nEmbd: options.nEmbd,
    nLayer: options.nLayer,
    nHead: options.nHead,
    nInner: 4 * options.nEmbd,
    layerNormEpsilon: 1e-5,
    scaleAttnWeights: true,
    eosTokenId: 50256,
  };
}

function openRun(runDir: string, corpusDir: string, partial: Partial<TrainingOptions>):
  { options: TrainingOptions; state: TrainingState } {
  const recordPath = path.join(runDir, runFile);
  if (fs.existsSync(recordPath)) {
    const record = JSON.parse(fs.readFileSync(recordPath, 'utf8')) as RunRecord;
    for (const [key, value] of Object.entries(partial)) {
      if (value !== undefined && record.options[key as keyof TrainingOptions] !== value) {
        throw new Error(`resume training run ${runDir}: ${key} is ${record.options[key as keyof TrainingOptions]} ` +
          `there, ${value} asked; start a new run folder to change it`);
      }
    }
    const config = modelConfig(record.options);
    const header = readSafetensorsHeader(path.join(runDir, stateFile));
    const byName = new Map(header.tensors.map((t) => [t.name, t]));
    const read = (name: string) => readTensorFloat32(byName.get(name)!);
    const weights = new Map<string, Float32Array>();
    const moments = new Map<string, AdamWMoments>();
    for (const name of trainableWeights(config).keys()) {
      weights.set(name, read(name));
      moments.set(name, { step: record.step, expAvg: read(`adam.m.${name}`), expAvgSq: read(`adam.v.${name}`) });
    }
    return { options: record.options, state: { config, weights, moments, step: record.step, elapsed: record.elapsed } };
  }
  const options = { ...trainingDefaults, ...Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined)) };
  const config = modelConfig(options);
  fs.mkdirSync(runDir, { recursive: true });
  const weights = options.initFrom ? readRunWeights(options.initFrom, config) : randomWeights(runDir, config, options.seed);
  const moments = new Map<string, AdamWMoments>();
  for (const [name, value] of weights) {
    moments.set(name, { step: 0, expAvg: new Float32Array(value.length), expAvgSq: new Float32Array(value.length) });
  }
  const state = { config, weights, moments, step: 0, elapsed: 0 };
  saveRun(runDir, corpusDir, options, state);
  return { options, state };
}

// GPT-2's initialization: N(0, 0.02) matrices, zero biases, unit LayerNorm gains.
function randomWeights(runDir: string, config: Gpt2Config, seed: number): Map<string, Float32Array> {
  const init = writeRandomCheckpoint(path.join(runDir, 'init'), { config, seed, prefixKeys: false });
  const checkpoint = loadCheckpoint(init.dir);
  const weights = new Map([...trainableWeights(config).keys()].map((name) => [name, checkpoint.readFloat32(name)]));
  fs.rmSync(init.dir, { recursive: true });
  return weights;
}

// The float32 weights of another run's last state; its shape must be this run's.
function readRunWeights(otherRunDir: string, config: Gpt2Config): Map<string, Float32Array> {
  const other = JSON.parse(fs.readFileSync(path.join(otherRunDir, runFile), 'utf8')) as RunRecord;
  for (const key of ['nEmbd', 'nLayer', 'nHead', 'nPositions'] as const) {
    const value = { nEmbd: config.nEmbd, nLayer: config.nLayer, nHead: config.nHead, nPositions: config.nPositions }[key];
    if (other.options[key] !== value) {
      throw new Error(`start training from ${otherRunDir}: its ${key} is ${other.options[key]}, this run's ${value}`);
    }
  }
  const header = readSafetensorsHeader(path.join(otherRunDir, stateFile));
  const byName = new Map(header.tensors.map((t) => [t.name, t]));
  return new Map([...trainableWeights(config).keys()].map((name) => [name, readTensorFloat32(byName.get(name)!)]));
}

function saveRun(runDir: string, corpusDir: string, options: TrainingOptions, state: TrainingState): void {
  const shapes = trainableWeights(state.config);
  const tensors = [...shapes].flatMap(([name, shape]) => [
    { name, shape, dtype: 'F32' as const, data: () => state.weights.get(name)! },
    { name: `adam.m.${name}`, shape, dtype: 'F32' as const, data: () => state.moments.get(name)!.expAvg },
    { name: `adam.v.${name}`, shape, dtype: 'F32' as const, data: () => state.moments.get(name)!.expAvgSq },
  ]);
  // Write then rename: a kill mid-write leaves the previous state whole.
  const tmp = path.join(runDir, `${stateFile}.tmp`);
  writeSafetensors(tmp, tensors, { step: String(state.step) });
  fs.renameSync(tmp, path.join(runDir, stateFile));
  const record: RunRecord = { options, corpus: path.resolve(corpusDir), step: state.step, elapsed: state.elapsed };
  fs.writeFileSync(path.join(runDir, `${runFile}.tmp`), `${JSON.stringify(record, null, 2)}\n`);
  fs.renameSync(path.join(runDir, `${runFile}.tmp`), path.join(runDir, runFile));
}

/** Write the run's weights as a Hugging Face GPT-2 folder (config.json + model.safetensors, tied head). */
export function exportRun(runDir: string, outDir: string, dtype: 'F32' | 'F16' = 'F16'): void {
  const record = JSON.parse(fs.readFileSync(path.join(runDir, runFile), 'utf8')) as RunRecord;
  const config = modelConfig(record.options);
  const header = readSafetensorsHeader(path.join(runDir, stateFile));
  const byName = new Map(header.tensors.map((t) => [t.name, t]));
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, 'config.json'), `${JSON.stringify(toHuggingFaceConfig(config, true), null, 2)}\n`);
  const tensors = [...trainableWeights(config)].map(([name, shape]) => ({
    name: `transformer.${name}`,
    shape,
    dtype,
    data: () => readTensorFloat32(byName.get(name)!),
  }));
  writeSafetensors(path.join(outDir, 'model.safetensors'), tensors, { format: 'pt', step: String(record.step) });
}
