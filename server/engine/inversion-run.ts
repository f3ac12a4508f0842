// One restart of an inversion: theta, its optimizer and schedule, the best prompt so far and the stop rules.
// The batcher runs the graph; a run only says what to feed it (`graphTargets`, `prompt`) and digests the row of
// outputs that belongs to it (`consume`), so its trajectory cannot depend on who shared the batch.
//
// P = prompt vectors, C = channels, T = target tokens, T' = tokens optimized now (T, or a curriculum prefix)
import { beamDecodeMany, greedyDecodeMany } from './decoders.js';
import type { DecodeRequest } from './decoders.js';
import type { EngineModel } from './engine-model.js';
import type { NearestTokenReport, ProgressReport, RunResult, RunStatus } from './events.js';
import { initialTheta } from './initialization.js';
import type { LrSchedule, LrScheduleSnapshot } from './lr-schedule.js';
import { createLrSchedule } from './lr-schedule.js';
import type { Optimizer, OptimizerSnapshot } from './optimizers.js';
import { createOptimizer, optimizerOptionsFromSettings } from './optimizers.js';
import type { Parameterization } from './parameterization.js';
import { createParameterization } from './parameterization.js';
import type { InversionSettings } from './settings.js';

/** The outputs of one graph run that belong to one run. */
export interface RunGraphRow {
  nll: Float32Array; // (T') per-token NLL
  gradPrompt: Float32Array; // (P, C)
  argmaxIds: Int32Array; // (T')
  ms: number;
}

/** Everything needed to resume a run exactly where it stopped (the service checkpoints this). */
export interface RunSnapshot {
  /** Set when the run had ended but its result was not yet reported. */
  status?: RunStatus;
  iteration: number;
  theta: Float32Array;
  optimizer: OptimizerSnapshot;
  schedule: LrScheduleSnapshot;
  optimizedTokens: number;
  best: { nll: number; optimizedTokens: number; iteration: number; theta: Float32Array; hit: boolean };
  sinceImprovement: number;
  elapsedMs: number;
}

const nearestTokensPerVector = 5;
const log2e = Math.LOG2E;
// An NLL improvement smaller than this (relative) does not reset patience: float noise is not progress.
const improvementTolerance = 1e-6;

export class InversionRun {
  iteration = 0;
  status: RunStatus | undefined;
  error: string | undefined;
  private readonly prompt: Float32Array; // (P, C)
  private readonly gradTheta: Float32Array;
  private optimizedTokens: number;
  private best: RunSnapshot['best'];
  private sinceImprovement = 0;
  private elapsedMs = 0;
  /** Milliseconds in optimizer and schedule steps so far (the batcher reports them apart from other host work). */
  optimizerMs = 0;
  private cancelRequested = false;

  private constructor(
    readonly model: EngineModel,
    readonly settings: InversionSettings,
    readonly targetIds: readonly number[],
    readonly restart: number,
    readonly seed: number,
    readonly parameterization: Parameterization,
    private readonly theta: Float32Array,
    private readonly optimizer: Optimizer,
    private readonly schedule: LrSchedule,
  ) {
    this.prompt = new Float32Array(parameterization.promptVectors * model.checkpoint.config.nEmbd);
    this.gradTheta = new Float32Array(parameterization.size);
    this.optimizedTokens = settings.curriculum ? 1 : targetIds.length;
    this.best = { nll: Infinity, optimizedTokens: 0, iteration: 0, theta: Float32Array.from(theta), hit: false };
  }

  /** Build a run: parameterization, initial theta, optimizer and schedule, all from the settings and the seed. */
  static async create(model: EngineModel, settings: InversionSettings, targetIds: readonly number[], restart: number,
    seed: number): Promise<InversionRun> {
    const C = model.checkpoint.config.nEmbd;
    const parameterization = await createParameterization(settings.parameterization, C, targetIds.length,
      model.embeddings, seed);
    const theta = initialTheta(settings.init, parameterization, model.embeddings, model.tokenizer, seed);
    const optimizer = createOptimizer(settings.optimizer, parameterization.shape,
      optimizerOptionsFromSettings(settings.optimizer, { lr: settings.lr, momentum: settings.momentum }));
    const schedule = createLrSchedule(settings.lr, {
      kind: settings.schedule,
      relativeToNorm: settings.lrRelativeToNorm,
      totalIterations: settings.maxIterations,
    }, model.embeddings.meanNorm);
    const run = new InversionRun(model, settings, targetIds, restart, seed, parameterization, theta, optimizer, schedule);
    // A given embedding with NaN or ±Inf cannot start a search; the run ends FAILED before its first graph run.
    if (settings.init.kind === 'embedding') {
      const at = settings.init.values.findIndex((v) => !Number.isFinite(v));
      if (at >= 0) run.fail(`init.embedding.values[${at}]: ${settings.init.values[at]} is not finite`);
    }
    return run;
  }

  get promptVectors(): number {
    return this.parameterization.promptVectors;
  }

  get finished(): boolean {
    return this.status !== undefined;
  }

  /** The target tokens the next graph run optimizes (T'). */
  graphTargets(): readonly number[] {
    return this.targetIds.slice(0, this.optimizedTokens);
  }

  /** The prompt (P, C) for the current theta. */
  currentPrompt(): Float32Array {
    this.parameterization.toPrompt(this.theta, this.prompt);
    return this.prompt;
  }

  /** Ask the run to stop before its next iteration. */
  cancel(): void {
    this.cancelRequested = true;
  }

  /** Stop with CANCELLED if a cancel was requested; return whether the run is finished. */
  checkCancelled(): boolean {
    if (this.cancelRequested && !this.finished) this.status = 'CANCELLED';
    return this.finished;
  }

  /** End the run with FAILED and a reason (a graph run that threw). */
  fail(reason: string): void {
    this.status = 'FAILED';
    this.error = reason;
  }

  /** Whether this iteration's hit test is a beam search (the caller decodes it: see `beamCheck`). */
  beamCheckDue(): boolean {
    const d = this.settings.decode;
    return d.kind === 'beam' && this.optimizedTokens === this.targetIds.length && this.iteration % d.every === 0;
  }

  /** The beam search this iteration's hit test needs, on a copy of the current prompt: decoded with other runs'. */
  beamCheck(): DecodeRequest & { beams: number } {
    const d = this.settings.decode;
    if (d.kind !== 'beam') throw new Error(`restart ${this.restart}: a beam check was asked of a greedy run`);
    return { prompt: Float32Array.from(this.currentPrompt()), promptVectors: this.promptVectors,
      steps: this.targetIds.length, beams: d.beams, repetitionPenalty: this.settings.repetitionPenalty };
  }

  /**
   * Digest this run's row of a graph run: report, check for a hit and the stop rules, then take an optimizer step.
   * `beamIds` is the best beam of `beamCheck()` when `beamCheckDue()` (the batcher decodes the beam checks of a round
   * together). Returns the progress report, or undefined on iterations that `reportEvery` skips.
   */
  consume(row: RunGraphRow, beamIds?: readonly number[]): ProgressReport | undefined {
    const started = performance.now();
    const s = this.settings;
    const T = this.targetIds.length;
    const optimized = this.optimizedTokens;
    const tokenNll = Array.from(row.nll.subarray(0, optimized));
    const nllSum = tokenNll.reduce((a, v) => a + v, 0);
    const argmaxIds = Array.from(row.argmaxIds.subarray(0, optimized));
    // NaN or Inf in the graph's outputs poison every later step: end this run alone, with the reason.
    if (this.screen(row)) return undefined;
    let correctPrefix = 0;
    while (correctPrefix < optimized && argmaxIds[correctPrefix] === this.targetIds[correctPrefix]) correctPrefix++;

    // Hit: teacher-forced argmax equal to the whole target is exactly free-running greedy reproduction (under a
    // repetition penalty too: position t is penalized for the target tokens before it, which greedy decoding has
    // produced by then when it reproduces them).
    let hit = optimized === T && correctPrefix === T;
    let decoded: { ids: number[]; text: string } | undefined;
    if (this.beamCheckDue()) {
      if (!beamIds) throw new Error(`restart ${this.restart}, iteration ${this.iteration}: its beam check was not decoded`);
      decoded = { ids: [...beamIds], text: this.model.tokenizer.decode(beamIds) };
      hit = decoded.ids.every((id, t) => id === this.targetIds[t]);
    } else if (s.decode.kind === 'beam') {
      hit = false; // a beam hit is only known when the beam decoder runs
    }

    this.parameterization.gradientToTheta(row.gradPrompt, this.gradTheta);
    const lr = this.schedule.lr;
    const firstHit = hit && !this.best.hit; // reported whatever reportEvery says (the settings promise it)
    this.recordBest(nllSum, optimized, hit);
    this.status = this.stopRule(hit, nllSum, optimized);
    // Built only for the iterations that are reported, and before the step: it describes this iteration's prompt.
    const report = this.iteration % s.reportEvery === 0 || this.finished || firstHit;
    let progress: ProgressReport | undefined;
    if (report) {
      const grad = vectorStats(this.gradTheta);
      progress = {
        restart: this.restart,
        iteration: this.iteration,
        nllSum,
        nllPerToken: nllSum / optimized,
        bitsPerToken: (nllSum / optimized) * log2e,
        tokenNll,
        optimizedTokens: optimized,
        argmaxIds,
        argmaxText: this.model.tokenizer.decode(argmaxIds),
        correctPrefix,
        gradMeanAbs: grad.meanAbs,
        gradL2: grad.l2,
        gradMaxAbs: grad.maxAbs,
        promptNorm: vectorStats(this.currentPrompt()).l2,
        lr,
        ms: 0,
        ...(decoded ? { decodedIds: decoded.ids, decodedText: decoded.text } : {}),
      };
    }
    if (!this.status) {
      if (s.curriculum && correctPrefix === optimized && optimized < T) this.optimizedTokens++;
      const stepStarted = performance.now();
      this.optimizer.step(this.theta, this.gradTheta, lr);
      this.schedule.step(nllSum);
      this.optimizerMs += performance.now() - stepStarted;
    }
    const ms = row.ms + (performance.now() - started);
    this.elapsedMs += ms;
    if (progress) progress.ms = ms;
    this.iteration++;
    return progress;
  }

  /**
   * Summarize the finished run: the best prompt, decoded, with its nearest tokens (see `summarize`). `summarize`
   * false skips the decode and the nearest-token scan (an engine closing for a shutdown: the job resumes from its
   * checkpoint, its summary is not wanted).
   */
  async result(summarize = true): Promise<RunResult> {
    return (await InversionRun.summarize(this.model, [this], summarize))[0]!;
  }

  /**
   * Whether the finished run's summary decodes anything. A failed run, or one cancelled before its first iteration,
   * skips the decode and the nearest-token scan: a failed run's numbers may not decode; a queued one has nothing to
   * show, and thousands of them cancelled at once must not cost a decode each.
   */
  wantsSummary(): boolean {
    return this.status !== 'FAILED' && !(this.status === 'CANCELLED' && this.iteration === 0);
  }

  /**
   * Summarize finished runs of one model together: their best prompts decoded in shared decode graph runs (greedy
   * and beam apart) and their nearest tokens in one pass over the token embeddings. Each run's summary is the one
   * it gets alone. Never rejects for one run's sake: runs that skip their summary (`wantsSummary`, or `summarize`
   * false) get none, and when the shared summary throws each run is summarized alone, so a summary that throws (a
   * best prompt that is not finite, a decode that fails) ends only its own run FAILED with the reason.
   */
  static async summarize(model: EngineModel, runs: readonly InversionRun[], summarize = true): Promise<RunResult[]> {
    const C = model.checkpoint.config.nEmbd;
    const embeddings = runs.map((run) => {
      const embedding = new Float32Array(run.promptVectors * C);
      run.parameterization.toPrompt(run.best.theta, embedding);
      return embedding;
    });
    const summaries: (RunSummary | undefined)[] = runs.map(() => undefined);
    const wanted: number[] = [];
    runs.forEach((run, i) => {
      if (!summarize || !run.wantsSummary()) return;
      const broken = firstNonFinite(embeddings[i]!);
      if (broken >= 0) run.fail(`result summary failed: the best prompt holds ${embeddings[i]![broken]} at index ${broken}`);
      else wanted.push(i);
    });
    const failSummary = (i: number, error: unknown) =>
      runs[i]!.fail(`result summary failed: ${error instanceof Error ? error.message : String(error)}`);
    try {
      const done = await summarizeTogether(model, wanted.map((i) => runs[i]!), wanted.map((i) => embeddings[i]!));
      wanted.forEach((i, j) => { summaries[i] = done[j]; });
    } catch (error: unknown) {
      if (wanted.length === 1) failSummary(wanted[0]!, error);
      for (const i of wanted.length > 1 ? wanted : []) {
        try {
          summaries[i] = (await summarizeTogether(model, [runs[i]!], [embeddings[i]!]))[0];
        } catch (alone: unknown) {
          failSummary(i, alone);
        }
      }
    }
    return runs.map((run, i) => run.summary(embeddings[i]!, summaries[i] ?? { decodedIds: [], decodedText: '', nearestTokens: [] }));
  }

  private summary(embedding: Float32Array, { decodedIds, decodedText, nearestTokens }: RunSummary): RunResult {
    return {
      restart: this.restart,
      seed: this.seed,
      status: this.status ?? 'FAILED',
      iterations: this.iteration,
      iterationsToHit: this.best.hit ? this.best.iteration : null,
      bestNll: this.best.nll,
      bestIteration: this.best.iteration,
      embedding: { shape: [this.promptVectors, this.model.checkpoint.config.nEmbd], values: embedding },
      theta: Float32Array.from(this.best.theta),
      decodedIds,
      decodedText,
      nearestTokens,
      elapsedMs: this.elapsedMs,
      ...(this.error ? { error: this.error } : {}),
    };
  }

  /** Copy out everything needed to resume. */
  snapshot(): RunSnapshot {
    return {
      ...(this.status ? { status: this.status } : {}),
      iteration: this.iteration,
      theta: Float32Array.from(this.theta),
      optimizer: this.optimizer.exportState(),
      schedule: this.schedule.exportState(),
      optimizedTokens: this.optimizedTokens,
      best: { ...this.best, theta: Float32Array.from(this.best.theta) },
      sinceImprovement: this.sinceImprovement,
      elapsedMs: this.elapsedMs,
    };
  }

  /** Continue from a snapshot taken of a run with the same settings, target and seed. */
  restore(snapshot: RunSnapshot): void {
    if (snapshot.theta.length !== this.theta.length) {
      throw new RangeError(`restore: snapshot theta has ${snapshot.theta.length} numbers; this run has ${this.theta.length}`);
    }
    this.status = snapshot.status;
    this.iteration = snapshot.iteration;
    this.theta.set(snapshot.theta);
    this.optimizer.importState(snapshot.optimizer);
    this.schedule.importState(snapshot.schedule);
    this.optimizedTokens = snapshot.optimizedTokens;
    this.best = { ...snapshot.best, theta: Float32Array.from(snapshot.best.theta) };
    this.sinceImprovement = snapshot.sinceImprovement;
    this.elapsedMs = snapshot.elapsedMs;
  }

  // Best = a hit, else the most tokens optimized (curriculum), then the lowest NLL.
  private recordBest(nllSum: number, optimized: number, hit: boolean): void {
    const b = this.best;
    const better = !b.hit && (hit || optimized > b.optimizedTokens ||
      (optimized === b.optimizedTokens && nllSum < b.nll * (1 - improvementTolerance)));
    if (better) {
      this.best = { nll: nllSum, optimizedTokens: optimized, iteration: this.iteration, theta: Float32Array.from(this.theta), hit };
      this.sinceImprovement = 0;
    } else {
      this.sinceImprovement++;
    }
  }

  private stopRule(hit: boolean, nllSum: number, optimized: number): RunStatus | undefined {
    const s = this.settings;
    if (hit && s.stopOnHit) return 'HIT';
    if (this.cancelRequested) return 'CANCELLED';
    if (s.nllThreshold > 0 && optimized === this.targetIds.length && nllSum <= s.nllThreshold) {
      return this.best.hit ? 'HIT' : 'THRESHOLD';
    }
    if (s.patience > 0 && this.sinceImprovement >= s.patience) return this.best.hit ? 'HIT' : 'PATIENCE';
    if (this.iteration + 1 >= s.maxIterations) return this.best.hit ? 'HIT' : 'MAX_ITERATIONS';
    return undefined;
  }

  /**
   * End the run FAILED if its row of a graph run holds non-finite numbers (NaN or Inf poison every later step);
   * return whether it did. The batcher screens rows before their beam checks, so a poisoned prompt is never decoded.
   */
  screen(row: RunGraphRow): boolean {
    const optimized = this.optimizedTokens;
    const nllSum = row.nll.subarray(0, optimized).reduce((a, v) => a + v, 0);
    const broken = this.nonFinite(nllSum, row.gradPrompt, Array.from(row.argmaxIds.subarray(0, optimized)));
    if (broken) this.fail(`iteration ${this.iteration}: ${broken}; the search cannot continue`);
    return broken !== undefined;
  }

  // Describe what is not finite in a graph run's row (or an argmax outside the vocabulary, which NaN logits give).
  private nonFinite(nllSum: number, gradPrompt: Float32Array, argmaxIds: readonly number[]): string | undefined {
    const V = this.model.checkpoint.config.vocabSize;
    let what: string | undefined;
    if (!Number.isFinite(nllSum)) what = `the NLL is ${nllSum}`;
    const g = firstNonFinite(gradPrompt);
    if (!what && g >= 0) what = `the gradient holds ${gradPrompt[g]} at index ${g}`;
    const a = argmaxIds.findIndex((id) => !(id >= 0 && id < V));
    if (!what && a >= 0) what = `the argmax at position ${a} is ${argmaxIds[a]}, outside the vocabulary 0..${V - 1}`;
    if (!what) return undefined;
    const prompt = this.currentPrompt();
    let maxAbs = 0;
    for (const v of prompt) maxAbs = Math.max(maxAbs, Math.abs(v));
    return `${what}: non-finite numbers (the prompt's largest |value| is ${maxAbs}, beyond what float32 LayerNorm ` +
      'and softmax can carry)';
  }
}

/** What a run's summary decodes: the best prompt's text and its nearest tokens. */
interface RunSummary {
  decodedIds: number[];
  decodedText: string;
  nearestTokens: NearestTokenReport[][];
}

// Decode runs' best prompts in shared decode graph runs (greedy and beam apart) and find their nearest tokens in one
// pass over the token embeddings; throws if any of it fails (the caller then summarizes each run alone).
async function summarizeTogether(model: EngineModel, runs: readonly InversionRun[],
  embeddings: readonly Float32Array[]): Promise<RunSummary[]> {
  if (runs.length === 0) return [];
  const C = model.checkpoint.config.nEmbd;
  const request = (run: InversionRun, i: number): DecodeRequest => ({ prompt: embeddings[i]!,
    promptVectors: run.promptVectors, steps: run.targetIds.length, repetitionPenalty: run.settings.repetitionPenalty });
  const decoded: number[][] = [];
  const greedy = runs.flatMap((run, i) => (run.settings.decode.kind === 'greedy' ? [i] : []));
  const beam = runs.flatMap((run, i) => (run.settings.decode.kind === 'beam' ? [i] : []));
  (await greedyDecodeMany(model.decode, greedy.map((i) => request(runs[i]!, i))))
    .forEach((ids, j) => { decoded[greedy[j]!] = ids; });
  (await beamDecodeMany(model.decode, beam.map((i) => {
    const d = runs[i]!.settings.decode;
    return { ...request(runs[i]!, i), beams: d.kind === 'beam' ? d.beams : 1 };
  }))).forEach((result, j) => { decoded[beam[j]!] = result.ids; });
  const vectors = embeddings.flatMap((embedding, i) =>
    Array.from({ length: runs[i]!.promptVectors }, (_, p) => embedding.subarray(p * C, (p + 1) * C)));
  const nearest = await model.embeddings.nearestMany(vectors, nearestTokensPerVector);
  let vector = 0;
  return runs.map((run, i) => {
    const nearestTokens: NearestTokenReport[][] = [];
    for (let p = 0; p < run.promptVectors; p++) {
      nearestTokens.push(nearest[vector++]!.map(({ id, cosine }) => ({ id, text: model.tokenizer.tokenText(id), cosine })));
    }
    return { decodedIds: decoded[i]!, decodedText: model.tokenizer.decode(decoded[i]!), nearestTokens };
  });
}

/** Index of the first NaN or ±Inf in `values`, or -1. */
function firstNonFinite(values: Float32Array): number {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) return i;
  return -1;
}

function vectorStats(values: Float32Array): { meanAbs: number; l2: number; maxAbs: number } {
  let sumAbs = 0;
  let sumSq = 0;
  let maxAbs = 0;
  for (const v of values) {
    const a = Math.abs(v);
    sumAbs += a;
    sumSq += v * v;
    if (a > maxAbs) maxAbs = a;
  }
  return { meanAbs: sumAbs / (values.length || 1), l2: Math.sqrt(sumSq), maxAbs };
}
