// The inversion engine of one model: takes inversions (a target and settings), queues their restarts, starts them
// (their buffers are made then, not at submission) as the memory budget allows, in fair order between clients,
// and reports each inversion's events until its result. The batcher's fair-share rounds decide who advances.
import { Batcher, batcherDefaults } from './batcher.js';
import type { ClientUsage, WorkOwner } from './batcher.js';
import type { NextTokenModel } from './decoders.js';
import type { Gpt2Config } from '../model/checkpoint.js';
import type { EngineModel } from './engine-model.js';
import type { InversionEvent, InversionResult, RunResult } from './events.js';
import { InversionRun } from './inversion-run.js';
import type { RunSnapshot } from './inversion-run.js';
import type { CheckedSettings, InversionSettings } from './settings.js';
import { SettingsError } from './settings.js';
import { formatBytes, promptVectorsOf, runBytes } from './run-cost.js';
import { mixSeeds } from '../util/seeded-random.js';
import { tokenIdProblem } from '../util/numbers.js';

export interface InversionEngineOptions {
  /** Rows per graph run. */
  maxBatch: number;
  /** Restarts started at once at most; the rest wait in the queue. */
  maxActiveRuns: number;
  /**
   * Bytes the started restarts may hold together (see runBytes); a restart that does not fit waits for others to
   * end. Never a reason to refuse a job, except one restart larger than the whole budget.
   */
  memoryBudgetBytes: number;
}

export const inversionEngineDefaults: Readonly<InversionEngineOptions> = Object.freeze({
  maxBatch: batcherDefaults.maxBatch,
  maxActiveRuns: 4096,
  memoryBudgetBytes: 2 * 2 ** 30, // 2 GiB: about 450 gpt2 restarts of P = 256 (runBytes = 4.5 MiB each)
});

/** The client of an inversion submitted without one (engine tests, benches, the CLI's in-process server). */
export const defaultClient = 'local';

export interface InversionRequest {
  targetIds: readonly number[];
  /** Checked by whoever accepted the job, against its limits (the server's); the engine does not check them again. */
  settings: CheckedSettings;
  /** Receives every event of this inversion, in order. */
  onEvent?: (event: InversionEvent) => void;
  /** Resume restarts from checkpoints, by restart index. */
  resumeFrom?: ReadonlyMap<number, RunSnapshot>;
  /** Restarts that had already ended before a resume, by restart index: they are not run again. */
  completed?: ReadonlyMap<number, RunResult>;
  /** Who asks: rounds are shared fairly between clients, then between a client's jobs. */
  client?: string;
}

export interface InversionHandle {
  readonly settings: CheckedSettings;
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

/** A restart waiting to start: its run is made (and its buffers allocated) only then. */
interface PendingRun {
  inversion: Inversion;
  restart: number;
  snapshot?: RunSnapshot;
  bytes: number;
}

export class InversionEngine {
  private readonly batcher: Batcher;
  private readonly pending: PendingRun[] = [];
  private readonly owners = new Map<InversionRun, Inversion>();
  // Bytes held by started restarts (being made or in the batcher), in all and by client.
  private startedBytes = 0;
  private readonly startedBytesByClient = new Map<string, number>();
  private readonly runBytesOf = new Map<InversionRun, number>();
  private starting = 0;
  // Result summaries still decoding: closing waits for them before the model's sessions are released.
  private readonly finishing = new Set<Promise<void>>();
  private closed = false;
  private jobs = 0;
  readonly options: InversionEngineOptions;

  constructor(readonly model: EngineModel, options: Partial<InversionEngineOptions> = {}) {
    this.options = { ...inversionEngineDefaults, ...options };
    this.batcher = new Batcher(model, {
      onProgress: (run, progress) => this.owners.get(run)?.emit({ type: 'progress', progress }),
      onFinished: (run) => {
        const inversion = this.owners.get(run);
        this.owners.delete(run);
        this.release(run, inversion);
        if (inversion) this.track(inversion.finishRun(run, this.summaryOf(run, inversion)));
        this.admit();
      },
      ownerOf: (run) => this.owners.get(run)?.owner ?? { client: defaultClient, job: '' },
    }, { maxBatch: this.options.maxBatch });
  }

  /** Restarts waiting to start. */
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

  /** Bytes the started restarts hold now (see runBytes), against `options.memoryBudgetBytes`. */
  get memoryInUse(): number {
    return this.startedBytes;
  }

  /** Per client: restarts running and waiting, and the graph and host milliseconds used so far. */
  clientUsage(): Map<string, ClientUsage & { runningRows: number; queuedRuns: number }> {
    const out = new Map<string, ClientUsage & { runningRows: number; queuedRuns: number }>();
    const entry = (client: string) => {
      let e = out.get(client);
      if (!e) {
        e = { graphMs: 0, hostMs: 0, runningRows: 0, queuedRuns: 0 };
        out.set(client, e);
      }
      return e;
    };
    for (const [client, usage] of this.batcher.usage) Object.assign(entry(client), usage);
    for (const [client, rows] of this.batcher.activeRunsByClient()) entry(client).runningRows = rows;
    for (const p of this.pending) entry(p.inversion.owner.client).queuedRuns++;
    return out;
  }

  /**
   * Return a next-token model for `client` whose decode steps run in the engine's fair-share rounds (Decode calls,
   * target sampling): one client's long decode cannot hold up the others' jobs.
   */
  decoderFor(client: string): NextTokenModel {
    return this.batcher.scheduledDecoder({ client, job: `decode:${client}` });
  }

  /** Return the model's gradient graph for `client`, each run taking its turn in the fair-share rounds (Score). */
  gradientFor(client: string): EngineModel['gradient'] {
    return this.batcher.scheduledGradient({ client, job: `score:${client}` });
  }

  /**
   * Check the target against the model and the memory budget, then queue the restarts. A target too long for the
   * model's context or a restart over the budget throws SettingsError at once.
   */
  async submit(request: InversionRequest): Promise<InversionHandle> {
    if (this.closed) throw new Error('the inversion engine is closed');
    const settings = request.settings;
    const targetIds = [...request.targetIds];
    checkJobFitsModel(targetIds, settings, this.model.checkpoint.config, this.options.memoryBudgetBytes);
    const bytes = runBytes(settings, targetIds.length, this.model.checkpoint.config);
    const owner: WorkOwner = { client: request.client ?? defaultClient, job: `job-${++this.jobs}` };
    const inversion = new Inversion(this.model, settings, targetIds, request.onEvent ?? (() => {}), owner);
    const restarts: PendingRun[] = [];
    for (let r = 0; r < settings.restarts; r++) {
      const completed = request.completed?.get(r);
      if (completed) {
        inversion.recordCompleted(completed);
        continue;
      }
      const snapshot = request.resumeFrom?.get(r);
      restarts.push({ inversion, restart: r, bytes, ...(snapshot ? { snapshot } : {}) });
    }
    inversion.waiting = new Set(restarts);
    inversion.emit({ type: 'queued', position: this.pending.length });
    if (restarts.length === 0) this.track(inversion.complete());
    this.pending.push(...restarts);
    this.admit();
    return {
      settings,
      result: inversion.done,
      cancel: () => this.cancel(inversion),
      snapshots: () => inversion.snapshots(),
    };
  }

  /** Resolve when nothing is queued, starting or running. */
  async idle(): Promise<void> {
    while (this.pending.length > 0 || this.starting > 0 || this.batcher.size > 0) {
      await this.batcher.idle();
      if (this.starting > 0) await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /**
   * Cancel everything and resolve once no graph run or result summary is in flight, so the model's sessions can
   * be released. Submissions after this are refused.
   */
  async close(): Promise<void> {
    this.closed = true;
    for (const inversion of new Set([...this.owners.values(), ...this.pending.map((p) => p.inversion)])) {
      this.cancel(inversion);
    }
    await this.idle();
    while (this.finishing.size > 0) await Promise.all([...this.finishing]);
    await this.batcher.idle();
  }

  // finishRun never rejects (a failing summary is a FAILED result); the catch keeps a bug there inside this engine.
  private track(finishing: Promise<void>): void {
    const tracked = finishing.catch(() => {}).finally(() => this.finishing.delete(tracked));
    this.finishing.add(tracked);
  }

  private cancel(inversion: Inversion): void {
    inversion.cancelled = true;
    for (const run of inversion.runs) run.cancel();
    // Restarts that never started end here; they are made only to report their initial prompt (no summary is
    // decoded for a restart cancelled before its first iteration).
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const entry = this.pending[i]!;
      if (entry.inversion !== inversion) continue;
      this.pending.splice(i, 1);
      inversion.waiting.delete(entry);
      this.track(this.makeRun(entry).then((run) => {
        run.cancel();
        run.checkCancelled();
        return inversion.finishRun(run, this.summaryOf(run, inversion));
      }, (error: unknown) => inversion.failRestart(entry.restart, error instanceof Error ? error.message : String(error))));
    }
  }

  /**
   * Start waiting restarts while the budget allows: always the one of the client holding the fewest started bytes
   * (oldest first among equals), so one client's backlog never keeps another client's first restart waiting for
   * more than the restarts already running. A restart that does not fit waits; nothing behind it overtakes it.
   */
  private admit(): void {
    while (this.pending.length > 0 && this.batcher.size + this.starting < this.options.maxActiveRuns) {
      let at = 0;
      for (let i = 1; i < this.pending.length; i++) {
        if (this.heldBy(this.pending[i]!.inversion.owner.client) < this.heldBy(this.pending[at]!.inversion.owner.client)) at = i;
      }
      const entry = this.pending[at]!;
      if (this.startedBytes > 0 && this.startedBytes + entry.bytes > this.options.memoryBudgetBytes) return;
      this.pending.splice(at, 1);
      this.hold(entry.inversion.owner.client, entry.bytes);
      this.starting++;
      void this.start(entry);
    }
  }

  private async start(entry: PendingRun): Promise<void> {
    const { inversion } = entry;
    let run: InversionRun;
    try {
      run = await this.makeRun(entry);
    } catch (error: unknown) {
      this.starting--;
      this.hold(inversion.owner.client, -entry.bytes);
      inversion.waiting.delete(entry);
      this.track(inversion.failRestart(entry.restart, error instanceof Error ? error.message : String(error)));
      this.admit();
      return;
    }
    this.starting--;
    inversion.waiting.delete(entry);
    this.runBytesOf.set(run, entry.bytes);
    this.owners.set(run, inversion);
    if (inversion.cancelled) run.cancel();
    inversion.emit({ type: 'started', restart: run.restart, seed: run.seed, promptVectors: run.promptVectors,
      parameterCount: run.parameterization.size });
    this.batcher.add(run);
  }

  private async makeRun(entry: PendingRun): Promise<InversionRun> {
    const { inversion, restart } = entry;
    const run = await InversionRun.create(this.model, inversion.settings, inversion.targetIds, restart,
      restartSeed(inversion.settings.seed, restart));
    if (entry.snapshot) run.restore(entry.snapshot);
    inversion.runs.push(run);
    return run;
  }

  // A finished restart's summary: decoded in the batcher's rounds, charged to its client; none for a run that skips
  // it (failed, or cancelled before its first iteration) nor while the engine closes for a shutdown.
  private summaryOf(run: InversionRun, inversion: Inversion): Promise<RunResult> {
    if (this.closed || !run.wantsSummary()) return run.result(false);
    return this.batcher.summarize(run, inversion.owner);
  }

  private heldBy(client: string): number {
    return this.startedBytesByClient.get(client) ?? 0;
  }

  private hold(client: string, bytes: number): void {
    this.startedBytes += bytes;
    const held = this.heldBy(client) + bytes;
    if (held > 0) this.startedBytesByClient.set(client, held);
    else this.startedBytesByClient.delete(client);
  }

  private release(run: InversionRun, inversion: Inversion | undefined): void {
    const bytes = this.runBytesOf.get(run) ?? 0;
    this.runBytesOf.delete(run);
    this.hold(inversion?.owner.client ?? defaultClient, -bytes);
  }
}

/**
 * Refuse a job that a model cannot run, with a SettingsError naming the field: an empty target, a token id outside the
 * vocabulary, a target too long for the context, settings that do not fit the model's shapes, or one restart larger
 * than the whole memory budget. The engine checks every job it takes; a server that accepts a job for another to run
 * (`--role api`, or no room here) checks it before storing it, so it is refused at once rather than failed later.
 */
export function checkJobFitsModel(targetIds: readonly number[], settings: InversionSettings, config: Gpt2Config,
  memoryBudgetBytes: number): void {
  const { vocabSize: V, nPositions, nEmbd: C } = config;
  if (targetIds.length === 0) throw new SettingsError('target', 'empty; at least 1 token is needed');
  targetIds.forEach((id, t) => {
    const problem = tokenIdProblem(id, V);
    if (problem) throw new SettingsError(`target_ids[${t}]`, problem);
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
  if (p.kind === 'projected' && p.dims > C) {
    throw new SettingsError('parameterization.dims', `${p.dims} exceeds the model's embedding width ${C}`);
  }
  if (settings.init.kind === 'embedding' && settings.init.values.length !== P * C) {
    throw new SettingsError('init.values', `${settings.init.values.length} numbers; P = ${P} vectors of C = ${C} ` +
      `need ${P * C}`);
  }
  const bytes = runBytes(settings, targetIds.length, config);
  if (bytes > memoryBudgetBytes) {
    // The prompt's size (P x C) and the beams decide a restart's bytes: name the parameterization, with both.
    const beams = settings.decode.kind === 'beam' ? `, beam-${settings.decode.beams} checks` : '';
    throw new SettingsError('parameterization', `one restart of this job (P = ${promptVectorsOf(settings, targetIds.length)} ` +
      `prompt vectors of C = ${C}${beams}) holds ${formatBytes(bytes)}; the server's memory budget for all running ` +
      `restarts is ${formatBytes(memoryBudgetBytes)}`);
  }
}

/** One inversion's restarts and its event stream. */
class Inversion {
  runs: InversionRun[] = [];
  /** Restarts not started yet. */
  waiting = new Set<PendingRun>();
  cancelled = false;
  private readonly results = new Map<number, RunResult>();
  private finished = false;
  private readonly started = performance.now();
  private resolve!: (result: InversionResult) => void;
  readonly done = new Promise<InversionResult>((resolve) => { this.resolve = resolve; });

  constructor(private readonly model: EngineModel, readonly settings: InversionSettings,
    readonly targetIds: number[], private readonly onEvent: (event: InversionEvent) => void,
    readonly owner: WorkOwner) {}

  /**
   * Snapshots of the restarts whose result is not yet reported (for checkpoints): the running ones', and the resume
   * snapshots of those still waiting to start, so a checkpoint taken while they wait keeps what they had reached.
   */
  snapshots(): Map<number, RunSnapshot> {
    const out = new Map<number, RunSnapshot>();
    for (const entry of this.waiting) if (entry.snapshot) out.set(entry.restart, entry.snapshot);
    for (const run of this.runs) if (!this.results.has(run.restart)) out.set(run.restart, run.snapshot());
    return out;
  }

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
   * Record a finished restart, its summary made in the batcher's rounds, and, when it is the last, the result. Never
   * rejects: this is the boundary of one job's work, so whatever throws here ends this job FAILED and reaches neither
   * the other jobs nor the process.
   */
  async finishRun(run: InversionRun, summary: Promise<RunResult>): Promise<void> {
    let result: RunResult;
    try {
      result = await summary;
    } catch (error: unknown) {
      run.fail(`result summary failed: ${error instanceof Error ? error.message : String(error)}`);
      result = await run.result(false);
    }
    this.results.set(run.restart, result);
    this.emit({ type: 'restart_result', result });
    await this.complete();
  }

  /** End a restart that could not be made (its settings failed on this model) with FAILED and the reason. */
  async failRestart(restart: number, reason: string): Promise<void> {
    const C = this.model.checkpoint.config.nEmbd;
    const result: RunResult = {
      restart, seed: restartSeed(this.settings.seed, restart), status: 'FAILED', iterations: 0, iterationsToHit: null,
      bestNll: Infinity, bestIteration: 0, embedding: { shape: [0, C], values: new Float32Array(0) },
      theta: new Float32Array(0), decodedIds: [], decodedText: '', nearestTokens: [], elapsedMs: 0,
      error: `the restart could not start: ${reason}`,
    };
    this.results.set(restart, result);
    this.emit({ type: 'restart_result', result });
    await this.complete();
  }

  /** Emit the result if every restart has one; never rejects (a result that cannot be made is a FAILED one). */
  async complete(): Promise<void> {
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
