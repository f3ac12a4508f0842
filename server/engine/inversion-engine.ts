// The inversion engine of one model: takes inversions (a target and settings), queues their restarts, admits
// them into the batcher up to a limit, and reports each inversion's events until its result.
import { Batcher, batcherDefaults } from './batcher.js';
import type { EngineModel } from './engine-model.js';
import type { InversionEvent, InversionResult, RunResult } from './events.js';
import { InversionRun } from './inversion-run.js';
import type { RunSnapshot } from './inversion-run.js';
import type { InversionSettings } from './settings.js';
import { makeInversionSettings, SettingsError } from './settings.js';
import { mixSeeds } from '../util/seeded-random.js';

export interface InversionEngineOptions {
  /** Rows per graph run. */
  maxBatch: number;
  /** Restarts running at once; the rest wait in the queue. */
  maxActiveRuns: number;
}

export const inversionEngineDefaults: Readonly<InversionEngineOptions> = Object.freeze({
  maxBatch: batcherDefaults.maxBatch,
  maxActiveRuns: batcherDefaults.maxBatch,
});

export interface InversionRequest {
  targetIds: readonly number[];
  settings?: Partial<InversionSettings>;
  /** Receives every event of this inversion, in order. */
  onEvent?: (event: InversionEvent) => void;
  /** Resume restarts from checkpoints, by restart index. */
  resumeFrom?: ReadonlyMap<number, RunSnapshot>;
  /** Restarts that had already ended before a resume, by restart index: they are not run again. */
  completed?: ReadonlyMap<number, RunResult>;
}

export interface InversionHandle {
  readonly settings: InversionSettings;
  /** Resolves with the result once every restart has ended (never rejects: failures are a FAILED status). */
  readonly result: Promise<InversionResult>;
  cancel(): void;
  /** Snapshots of the restarts whose result is not yet reported (for checkpoints). */
  snapshots(): Map<number, RunSnapshot>;
}

/** Seed of restart r: restart 0 uses the job's seed itself, so a single run is reproducible from one number. */
export function restartSeed(seed: number, restart: number): number {
  return restart === 0 ? seed : mixSeeds(seed, restart);
}

export class InversionEngine {
  private readonly batcher: Batcher;
  private readonly pending: { run: InversionRun; inversion: Inversion }[] = [];
  private readonly owners = new Map<InversionRun, Inversion>();
  // Result summaries still decoding: closing waits for them before the model's sessions are released.
  private readonly finishing = new Set<Promise<void>>();
  private closed = false;
  readonly options: InversionEngineOptions;

  constructor(readonly model: EngineModel, options: Partial<InversionEngineOptions> = {}) {
    this.options = { ...inversionEngineDefaults, ...options };
    this.batcher = new Batcher(model, {
      onProgress: (run, progress) => this.owners.get(run)?.emit({ type: 'progress', progress }),
      onFinished: (run) => {
        const inversion = this.owners.get(run);
        this.owners.delete(run);
        this.admit();
        if (inversion) this.track(inversion.finishRun(run, !this.closed));
      },
    }, { maxBatch: this.options.maxBatch });
  }

  /** Restarts waiting for a place in the batcher. */
  get queued(): number {
    return this.pending.length;
  }

  /** Restarts in the batcher. */
  get running(): number {
    return this.batcher.size;
  }

  get stats() {
    return this.batcher.stats;
  }

  /** Check the request, then queue its restarts. Invalid settings or targets throw SettingsError at once. */
  async submit(request: InversionRequest): Promise<InversionHandle> {
    if (this.closed) throw new Error('the inversion engine is closed');
    const settings = makeInversionSettings(request.settings ?? {});
    const targetIds = [...request.targetIds];
    this.checkTarget(targetIds, settings);
    const inversion = new Inversion(this.model, settings, targetIds, request.onEvent ?? (() => {}));
    const runs: InversionRun[] = [];
    for (let r = 0; r < settings.restarts; r++) {
      const completed = request.completed?.get(r);
      if (completed) {
        inversion.recordCompleted(completed);
        continue;
      }
      const run = await InversionRun.create(this.model, settings, targetIds, r, restartSeed(settings.seed, r));
      const snapshot = request.resumeFrom?.get(r);
      if (snapshot) run.restore(snapshot);
      runs.push(run);
    }
    inversion.runs = runs;
    inversion.emit({ type: 'queued', position: this.pending.length });
    if (runs.length === 0) this.track(inversion.finishIfComplete());
    for (const run of runs) {
      this.owners.set(run, inversion);
      this.pending.push({ run, inversion });
    }
    this.admit();
    return {
      settings,
      result: inversion.done,
      cancel: () => this.cancel(inversion),
      snapshots: () => new Map(runs.filter((r) => !inversion.hasResult(r.restart)).map((r) => [r.restart, r.snapshot()])),
    };
  }

  /** Resolve when nothing is queued or running. */
  async idle(): Promise<void> {
    while (this.pending.length > 0 || this.batcher.size > 0) await this.batcher.idle();
  }

  /**
   * Cancel everything and resolve once no graph run or result summary is in flight, so the model's sessions can
   * be released. Submissions after this are refused.
   */
  async close(): Promise<void> {
    this.closed = true;
    for (const inversion of new Set(this.owners.values())) this.cancel(inversion);
    await this.idle();
    while (this.finishing.size > 0) await Promise.all([...this.finishing]);
  }

  // finishRun never rejects (a failing summary is a FAILED result); the catch keeps a bug there inside this engine.
  private track(finishing: Promise<void>): void {
    const tracked = finishing.catch(() => {}).finally(() => this.finishing.delete(tracked));
    this.finishing.add(tracked);
  }

  private cancel(inversion: Inversion): void {
    for (const run of inversion.runs) run.cancel();
    // queued restarts never reach the batcher: finish them here
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const entry = this.pending[i]!;
      if (entry.inversion !== inversion) continue;
      this.pending.splice(i, 1);
      entry.run.checkCancelled();
      this.owners.delete(entry.run);
      this.track(inversion.finishRun(entry.run, !this.closed));
    }
  }

  private admit(): void {
    while (this.pending.length > 0 && this.batcher.size < this.options.maxActiveRuns) {
      const { run, inversion } = this.pending.shift()!;
      inversion.emit({ type: 'started', restart: run.restart, seed: run.seed, promptVectors: run.promptVectors,
        parameterCount: run.parameterization.size });
      this.batcher.add(run);
    }
  }

  private checkTarget(targetIds: number[], settings: InversionSettings): void {
    const { vocabSize: V, nPositions } = this.model.checkpoint.config;
    if (targetIds.length === 0) throw new SettingsError('target', 'empty; at least 1 token is needed');
    targetIds.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= V) {
        throw new SettingsError(`target_ids[${t}]`, `${id} is outside the vocabulary 0..${V - 1}`);
      }
    });
    const p = settings.parameterization;
    const P = p.kind === 'full' ? p.promptVectors ?? targetIds.length : 1;
    if (P + targetIds.length - 1 > nPositions) {
      // full without a given P grows P with the target: P = T, so 2T - 1 positions
      const growsWithTarget = p.kind === 'full' && p.promptVectors === undefined;
      const maxTokens = growsWithTarget ? Math.floor((nPositions + 1) / 2) : nPositions - P + 1;
      throw new SettingsError('target', `${targetIds.length} tokens with P = ${P} prompt vectors need ` +
        `${P + targetIds.length - 1} positions; the model's context allows ${nPositions}, so ` +
        (maxTokens >= 1 ? `at most ${maxTokens} tokens${growsWithTarget ? ' (full: P = T)' : ''}`
          : `P = ${P} prompt vectors leave no room for a target`));
    }
    if (p.kind === 'projected' && p.dims > this.model.checkpoint.config.nEmbd) {
      throw new SettingsError('parameterization.dims', `${p.dims} exceeds the model's embedding width ` +
        `${this.model.checkpoint.config.nEmbd}`);
    }
    if (settings.init.kind === 'embedding') {
      const C = this.model.checkpoint.config.nEmbd;
      if (settings.init.values.length !== P * C) {
        throw new SettingsError('init.values', `${settings.init.values.length} numbers; P = ${P} vectors of C = ${C} ` +
          `need ${P * C}`);
      }
    }
  }
}

/** One inversion's restarts and its event stream. */
class Inversion {
  runs: InversionRun[] = [];
  private readonly results = new Map<number, RunResult>();
  private finished = false;
  private readonly started = performance.now();
  private resolve!: (result: InversionResult) => void;
  readonly done = new Promise<InversionResult>((resolve) => { this.resolve = resolve; });

  constructor(private readonly model: EngineModel, readonly settings: InversionSettings,
    readonly targetIds: number[], private readonly onEvent: (event: InversionEvent) => void) {}

  emit(event: InversionEvent): void {
    try {
      this.onEvent(event);
    } catch {
      // a listener's failure (a closed stream) must not stop the engine
    }
  }

  hasResult(restart: number): boolean {
    return this.results.has(restart);
  }

  /** Count a restart that ended before a resume. */
  recordCompleted(result: RunResult): void {
    this.results.set(result.restart, result);
  }

  /**
   * Record a finished restart and, when it is the last, the result. Never rejects: this is the boundary of one job's
   * work, so whatever throws here ends this job FAILED and reaches neither the other jobs nor the process.
   */
  async finishRun(run: InversionRun, summarize = true): Promise<void> {
    let result: RunResult;
    try {
      result = await run.result(summarize);
    } catch (error: unknown) {
      run.fail(`result summary failed: ${error instanceof Error ? error.message : String(error)}`);
      result = await run.result(false);
    }
    this.results.set(run.restart, result);
    this.emit({ type: 'restart_result', result });
    try {
      await this.finishIfComplete();
    } catch (error: unknown) {
      this.finished = true;
      const reason = `result failed: ${error instanceof Error ? error.message : String(error)}`;
      const restarts = [...this.results.values()].map((r) => ({ ...r, status: 'FAILED' as const, error: reason }));
      const final: InversionResult = {
        status: 'FAILED', best: 0, restarts, targetIds: this.targetIds, targetText: '', settings: this.settings,
        model: this.model.name, provider: this.model.provider, elapsedMs: performance.now() - this.started,
      };
      this.emit({ type: 'result', result: final });
      this.resolve(final);
    }
  }

  /** Emit the result once every restart has one. */
  async finishIfComplete(): Promise<void> {
    if (this.results.size < this.settings.restarts || this.finished) return;
    this.finished = true;
    const restarts = [...this.results.values()].sort((a, b) => a.restart - b.restart);
    const best = bestRestart(restarts);
    const final: InversionResult = {
      status: restarts[best]!.status,
      best,
      restarts,
      targetIds: this.targetIds,
      targetText: this.model.tokenizer.decode(this.targetIds),
      settings: this.settings,
      model: this.model.name,
      provider: this.model.provider,
      elapsedMs: performance.now() - this.started,
    };
    this.emit({ type: 'result', result: final });
    this.resolve(final);
  }
}

/** A hit beats no hit; then the lowest best NLL. */
export function bestRestart(restarts: readonly RunResult[]): number {
  let best = 0;
  restarts.forEach((r, i) => {
    const b = restarts[best]!;
    const rHit = r.status === 'HIT';
    const bHit = b.status === 'HIT';
    if ((rHit && !bHit) || (rHit === bHit && r.bestNll < b.bestNll)) best = i;
  });
  return best;
}
