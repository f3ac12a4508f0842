// Continuous batching under a fair-share scheduler. Each round the scheduler (FairShare) picks, client by client and
// job by job, which active runs advance one iteration and which host tasks run (result summaries, decode steps of
// Decode calls and of target sampling); the picked runs that share a prompt length P share graph runs of up to
// `maxBatch` rows (targets padded and masked), the beam hit checks due among them share one decode graph run per
// step (B × beams rows), and the summaries picked together share their decode runs and one pass over the token
// embeddings. Each client is charged the milliseconds its rows and tasks took. Runs join and leave between rounds.
// Who a run shares a round with never changes its numbers: each row of a graph run is computed on its own.
//
// B = rows in one graph run, P = prompt vectors, C = channels, T = longest target in the graph run
import { beamDecodeMany } from './decoders.js';
import type { NextTokenModel } from './decoders.js';
import type { EngineModel } from './engine-model.js';
import type { ProgressReport, RunResult } from './events.js';
import { FairShare } from './fair-share.js';
import type { ShareItem } from './fair-share.js';
import { InversionRun } from './inversion-run.js';

export interface BatcherOptions {
  /** Rows per graph run: the jobs of one P that share one forward + backward. */
  maxBatch: number;
}

export const batcherDefaults: Readonly<BatcherOptions> = Object.freeze({ maxBatch: 64 });

/** Who a piece of work is for: fairness is by client, then by job. */
export interface WorkOwner {
  client: string;
  job: string;
}

export interface BatcherCallbacks {
  onProgress(run: InversionRun, progress: ProgressReport): void;
  /** A run finished (any status); called once per run, after its last progress report. */
  onFinished(run: InversionRun): void;
  /** The client and job a run belongs to. */
  ownerOf(run: InversionRun): WorkOwner;
}

/** Figures for metrics and benchmarks: where a batcher's time went, in milliseconds summed since it started. */
export interface BatcherStats {
  graphRuns: number;
  rowIterations: number;
  /** Gradient graph runs as the batcher waits for them: assembling the batch, the session's run, reading outputs. */
  graphMs: number;
  /** Of graphMs, inside onnxruntime's session.run (the rest moves data between the host and the session). */
  sessionMs: number;
  /** Optimizer and schedule steps of every row. */
  optimizerMs: number;
  /** The rest of the rows' host work: NLL and hit checks, reports, stop rules, the parameterization's gradient. */
  rowHostMs: number;
  /** Beam checks: decode graph runs and the beams' bookkeeping. */
  beamMs: number;
  /** Result summaries: the best prompt's decode and its nearest tokens. */
  summaryMs: number;
  /** Other host tasks (Decode and sampling requests). */
  taskMs: number;
}

/** What one client has used of this batcher. */
export interface ClientUsage {
  /** Milliseconds of gradient graph runs, its share of each run by rows. */
  graphMs: number;
  /** Milliseconds of host work and decode graph runs (beam checks, summaries, Decode, sampling). */
  hostMs: number;
}

interface Task extends ShareItem {
  kind: 'summary' | 'host';
  run?: InversionRun; // summaries
  execute?: () => Promise<unknown>; // host tasks
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

type RoundItem = (ShareItem & { kind: 'run'; run: InversionRun }) | Task;

// Exponential moving averages of measured costs: estimates for the scheduler, corrected every round.
const smoothing = 0.3;
const ema = (previous: number | undefined, value: number) =>
  previous === undefined ? value : previous + smoothing * (value - previous);

export class Batcher {
  private readonly active: InversionRun[] = [];
  private readonly tasks: Task[] = [];
  private loop: Promise<void> | undefined;
  private readonly share = new FairShare();
  private readonly items = new WeakMap<InversionRun, RoundItem & { kind: 'run' }>();
  private readonly rowMs = new WeakMap<InversionRun, number>(); // a run's iteration without its beam check
  private readonly beamMs = new WeakMap<InversionRun, number>(); // its beam check's share of the decode runs
  private typicalRowMs: number | undefined;
  private beamMsPerRowStep: number | undefined; // one beam row for one decode step
  private decodeMsPerRowPosition: number | undefined; // one decode row over one position (Decode, sampling)
  private summaryMsPerVector: number | undefined;
  private chargedThisRound = 0;
  readonly stats: BatcherStats = {
    graphRuns: 0, rowIterations: 0, graphMs: 0, sessionMs: 0, optimizerMs: 0, rowHostMs: 0, beamMs: 0, summaryMs: 0, taskMs: 0,
  };
  readonly usage = new Map<string, ClientUsage>();

  constructor(private readonly model: EngineModel, private readonly callbacks: BatcherCallbacks,
    readonly options: BatcherOptions = batcherDefaults) {}

  /** Runs in the batcher now. */
  get size(): number {
    return this.active.length;
  }

  /** Runs in the batcher now, by client. */
  activeRunsByClient(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const run of this.active) {
      const { client } = this.callbacks.ownerOf(run);
      counts.set(client, (counts.get(client) ?? 0) + 1);
    }
    return counts;
  }

  /** Add a run; it takes part from the next round on. */
  add(run: InversionRun): void {
    this.active.push(run);
    this.wake();
  }

  /**
   * Summarize a finished run of `owner` in a round (its client's share), batched with the other summaries of that
   * round.
   */
  summarize(run: InversionRun, owner: WorkOwner): Promise<RunResult> {
    const estimateMs = (this.summaryMsPerVector ?? 1) * run.promptVectors;
    // Summaries share their decode runs like gradient rows share a graph run: a client alone takes all of its waiting
    // summaries in one round. Were they capped by the round's length, one summary would run per round once the
    // estimates are known (one costs about a round's length), each with decode runs of its own.
    return this.enqueue({ ...owner, key: run, estimateMs, kind: 'summary', run, batched: true }) as Promise<RunResult>;
  }

  /**
   * Return a next-token model whose every call is one task of `owner` in the rounds: Decode calls and target
   * sampling take their share like everyone else, one decode step at a time.
   */
  scheduledDecoder(owner: WorkOwner): NextTokenModel {
    return {
      nextLogprobs: (prompt, promptVectors, tokens, repetitionPenalty) => {
        const rowPositions = tokens.length * (promptVectors + (tokens[0]?.length ?? 0));
        const key = Symbol('decode step');
        return this.enqueue({
          ...owner, key, kind: 'host', estimateMs: (this.decodeMsPerRowPosition ?? 0.01) * rowPositions,
          execute: async () => {
            const started = performance.now();
            const out = await this.model.decode.nextLogprobs(prompt, promptVectors, tokens, repetitionPenalty);
            this.decodeMsPerRowPosition = ema(this.decodeMsPerRowPosition, (performance.now() - started) / rowPositions);
            return out;
          },
        }) as Promise<Float32Array>;
      },
    };
  }

  /**
   * Return a gradient graph whose every run is one task of `owner` in the rounds (Score calls): charged to it like
   * its jobs' rows.
   */
  scheduledGradient(owner: WorkOwner): EngineModel['gradient'] {
    return {
      run: (batch) => this.enqueue({
        ...owner, key: Symbol('gradient run'), kind: 'host',
        estimateMs: (this.typicalRowMs ?? 1) * batch.targets.length,
        execute: () => this.model.gradient.run(batch),
      }) as ReturnType<EngineModel['gradient']['run']>,
    };
  }

  /** Resolve when no run is active and no task waits. */
  async idle(): Promise<void> {
    while (this.loop) await this.loop;
  }

  private enqueue(task: Omit<Task, 'resolve' | 'reject'>): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.tasks.push({ ...task, resolve, reject });
      this.wake();
    });
  }

  private wake(): void {
    this.loop ??= this.runRounds().catch((error: unknown) => this.failAll(error)).finally(() => {
      this.loop = undefined;
      // work added while the last round was ending starts the loop again
      if (this.active.length > 0 || this.tasks.length > 0) this.wake();
    });
  }

  private async runRounds(): Promise<void> {
    // Start on the next turn of the event loop: a burst of submissions then shares the first graph run.
    await new Promise((resolve) => setImmediate(resolve));
    while (this.active.length > 0 || this.tasks.length > 0) {
      const roundStarted = performance.now();
      this.chargedThisRound = 0;
      this.retireFinished();
      const items: RoundItem[] = [];
      for (const run of this.active) if (!run.finished) items.push(this.itemOf(run));
      items.push(...this.tasks);
      const selected = this.share.select(items);
      const groups = new Map<number, InversionRun[]>();
      for (const item of selected) {
        if (item.kind !== 'run') continue;
        const group = groups.get(item.run.promptVectors) ?? [];
        group.push(item.run);
        groups.set(item.run.promptVectors, group);
      }
      for (const group of groups.values()) {
        for (let i = 0; i < group.length; i += this.options.maxBatch) {
          await this.step(group.slice(i, i + this.options.maxBatch));
        }
      }
      const tasks = selected.filter((item): item is Task => item.kind !== 'run');
      for (const task of tasks) this.tasks.splice(this.tasks.indexOf(task), 1);
      await this.runSummaries(tasks.filter((task) => task.kind === 'summary'));
      for (const task of tasks.filter((t) => t.kind === 'host')) {
        const started = performance.now();
        try {
          task.resolve(await task.execute!());
        } catch (error: unknown) {
          task.reject(error);
        }
        const ms = performance.now() - started;
        this.stats.taskMs += ms;
        this.chargeHost(task.client, ms);
      }
      this.retireFinished();
      this.chargeBookkeeping(items, performance.now() - roundStarted - this.chargedThisRound);
      // let submissions, cancellations and stream writes in between rounds
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  // A run's item, made once and kept up to date: a round allocates nothing per waiting run.
  private itemOf(run: InversionRun): RoundItem & { kind: 'run' } {
    let item = this.items.get(run);
    if (!item) {
      item = { ...this.callbacks.ownerOf(run), key: run, kind: 'run', run, estimateMs: 0, batched: true };
      this.items.set(run, item);
    }
    item.estimateMs = this.estimate(run);
    item.batched = !run.beamCheckDue();
    return item;
  }

  // Expected milliseconds of a run's next iteration: its own last costs, or what runs have cost so far.
  private estimate(run: InversionRun): number {
    const row = this.rowMs.get(run) ?? this.typicalRowMs ?? 1;
    if (!run.beamCheckDue()) return row;
    const d = run.settings.decode;
    const rowSteps = (d.kind === 'beam' ? d.beams : 1) * run.targetIds.length;
    return row + (this.beamMs.get(run) ?? (this.beamMsPerRowStep ?? 0.1) * rowSteps);
  }

  private async step(runs: InversionRun[]): Promise<void> {
    const live = runs.filter((run) => !run.checkCancelled());
    if (live.length === 0) return;
    const P = live[0]!.promptVectors;
    const C = this.model.checkpoint.config.nEmbd;
    const started = performance.now();
    let out;
    try {
      const prompt = new Float32Array(live.length * P * C); // (B, P, C)
      live.forEach((run, b) => prompt.set(run.currentPrompt(), b * P * C));
      out = await this.model.gradient.run({ prompt, promptVectors: P, targets: live.map((run) => run.graphTargets()),
        repetitionPenalty: live.map((run) => run.settings.repetitionPenalty) });
    } catch (error: unknown) {
      const reason = `graph run failed: ${error instanceof Error ? error.message : String(error)}`;
      for (const run of live) run.fail(reason);
      return;
    }
    const ms = performance.now() - started;
    this.stats.graphRuns++;
    this.stats.rowIterations += live.length;
    this.stats.graphMs += ms;
    this.stats.sessionMs += out.sessionMs;
    for (const run of live) this.chargeGraph(this.callbacks.ownerOf(run).client, ms / live.length);
    const T = out.targetLength;
    const rows = live.map((_, b) => ({
      nll: out.nll.subarray(b * T, (b + 1) * T),
      gradPrompt: out.gradPrompt.subarray(b * P * C, (b + 1) * P * C),
      argmaxIds: out.argmaxIds.subarray(b * T, (b + 1) * T),
      ms: ms / live.length,
    }));
    // A row with non-finite numbers ends its run here, before the beam checks: its prompt is never decoded.
    live.forEach((run, b) => this.guard(run, 'the row check', () => run.screen(rows[b]!)));
    const beamIds = await this.beamChecks(live.filter((run) => !run.finished));
    for (let b = 0; b < live.length; b++) {
      const run = live[b]!;
      if (run.finished) continue; // its row or its beam check failed
      const hostStarted = performance.now();
      const optimizerBefore = run.optimizerMs;
      try {
        const progress = run.consume(rows[b]!, beamIds.get(run));
        if (progress) this.callbacks.onProgress(run, progress);
      } catch (error: unknown) {
        run.fail(`iteration ${run.iteration} failed: ${error instanceof Error ? error.message : String(error)}`);
      }
      const hostMs = performance.now() - hostStarted;
      const optimizerMs = run.optimizerMs - optimizerBefore;
      this.stats.optimizerMs += optimizerMs;
      this.stats.rowHostMs += hostMs - optimizerMs;
      this.chargeHost(this.callbacks.ownerOf(run).client, hostMs);
      this.rowMs.set(run, ema(this.rowMs.get(run), ms / live.length + hostMs));
      this.typicalRowMs = ema(this.typicalRowMs, ms / live.length + hostMs);
    }
  }

  // Decode the beam checks due among `runs` together; each run is charged by its share of the rows. If the shared
  // decode throws, each check is decoded alone, so only a run whose own check fails ends FAILED.
  private async beamChecks(runs: InversionRun[]): Promise<Map<InversionRun, number[]>> {
    const ids = new Map<InversionRun, number[]>();
    const due: InversionRun[] = [];
    const checks: ReturnType<InversionRun['beamCheck']>[] = [];
    for (const run of runs) {
      this.guard(run, 'the beam check', () => {
        if (!run.beamCheckDue()) return;
        checks.push(run.beamCheck());
        due.push(run);
      });
    }
    if (due.length === 0) return ids;
    const started = performance.now();
    try {
      const results = await beamDecodeMany(this.model.decode, checks);
      due.forEach((run, i) => ids.set(run, results[i]!.ids));
    } catch (error: unknown) {
      if (due.length === 1) due[0]!.fail(`beam check failed: ${error instanceof Error ? error.message : String(error)}`);
      for (const [i, run] of (due.length > 1 ? due : []).entries()) {
        try {
          ids.set(run, (await beamDecodeMany(this.model.decode, [checks[i]!]))[0]!.ids);
        } catch (alone: unknown) {
          run.fail(`beam check failed: ${alone instanceof Error ? alone.message : String(alone)}`);
        }
      }
    }
    const ms = performance.now() - started;
    this.stats.beamMs += ms;
    const rowSteps = checks.map((c) => c.beams * c.steps);
    const total = rowSteps.reduce((a, b) => a + b, 0);
    due.forEach((run, i) => {
      const share = ms * rowSteps[i]! / total;
      this.chargeHost(this.callbacks.ownerOf(run).client, share);
      this.beamMs.set(run, ema(this.beamMs.get(run), share));
    });
    this.beamMsPerRowStep = ema(this.beamMsPerRowStep, ms / total);
    return ids;
  }

  // Run one run's piece of work; what it throws ends that run FAILED with the reason, never the round.
  private guard(run: InversionRun, what: string, work: () => unknown): void {
    try {
      work();
    } catch (error: unknown) {
      run.fail(`iteration ${run.iteration}: ${what} failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  private async runSummaries(tasks: Task[]): Promise<void> {
    if (tasks.length === 0) return;
    const runs = tasks.map((task) => task.run!);
    const started = performance.now();
    try {
      const results = await InversionRun.summarize(this.model, runs);
      tasks.forEach((task, i) => task.resolve(results[i]));
    } catch (error: unknown) {
      for (const task of tasks) task.reject(error);
    }
    const ms = performance.now() - started;
    this.stats.summaryMs += ms;
    const vectors = runs.reduce((sum, run) => sum + run.promptVectors, 0);
    tasks.forEach((task, i) => this.chargeHost(task.client, ms * runs[i]!.promptVectors / vectors));
    this.summaryMsPerVector = ema(this.summaryMsPerVector, ms / vectors);
  }

  // The round's own work (listing, estimating and choosing items, retiring runs, collecting their garbage) grows
  // with the items a client has waiting: each client pays for it by its share of the items.
  private chargeBookkeeping(items: readonly RoundItem[], ms: number): void {
    if (ms <= 0 || items.length === 0) return;
    const counts = new Map<string, number>();
    for (const item of items) counts.set(item.client, (counts.get(item.client) ?? 0) + 1);
    for (const [client, count] of counts) this.chargeHost(client, ms * count / items.length);
  }

  private usageOf(client: string): ClientUsage {
    let usage = this.usage.get(client);
    if (!usage) {
      usage = { graphMs: 0, hostMs: 0 };
      this.usage.set(client, usage);
    }
    return usage;
  }

  private chargeGraph(client: string, ms: number): void {
    this.chargedThisRound += ms;
    this.usageOf(client).graphMs += ms;
    this.share.charge(client, ms);
  }

  private chargeHost(client: string, ms: number): void {
    this.chargedThisRound += ms;
    this.usageOf(client).hostMs += ms;
    this.share.charge(client, ms);
  }

  // The last line of defence: a round that throws (a bug outside every run's own boundary) ends the runs and tasks it
  // held FAILED with the reason instead of rejecting into the process; the next round starts clean.
  private failAll(error: unknown): void {
    const reason = `scheduling round failed: ${error instanceof Error ? error.message : String(error)}`;
    for (const run of this.active) if (!run.finished) run.fail(reason);
    for (const task of this.tasks.splice(0)) task.reject(new Error(reason));
    try {
      this.retireFinished();
    } catch {
      // onFinished's own boundaries (finishRun never rejects) keep what is left of this round inside the engine
    }
  }

  private retireFinished(): void {
    for (let i = this.active.length - 1; i >= 0; i--) {
      const run = this.active[i]!;
      if (run.checkCancelled()) {
        this.active.splice(i, 1);
        this.callbacks.onFinished(run);
      }
    }
  }
}
