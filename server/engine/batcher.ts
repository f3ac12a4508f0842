// Continuous batching: every active run advances one iteration per round, and runs that share a prompt length P
// share graph runs of up to `maxBatch` rows (targets padded and masked). Runs join and leave between rounds.
//
// B = rows in one graph run, P = prompt vectors, C = channels, T = longest target in the graph run
import type { EngineModel } from './engine-model.js';
import type { ProgressReport } from './events.js';
import type { InversionRun } from './inversion-run.js';

export interface BatcherOptions {
  /** Rows per graph run: the jobs of one P that share one forward + backward. */
  maxBatch: number;
}

export const batcherDefaults: Readonly<BatcherOptions> = Object.freeze({ maxBatch: 64 });

export interface BatcherCallbacks {
  onProgress(run: InversionRun, progress: ProgressReport): void;
  /** A run finished (any status); called once per run, after its last progress report. */
  onFinished(run: InversionRun): void;
}

/** Figures for metrics and benchmarks. */
export interface BatcherStats {
  graphRuns: number;
  rowIterations: number;
  graphMs: number;
}

export class Batcher {
  private readonly active: InversionRun[] = [];
  private loop: Promise<void> | undefined;
  readonly stats: BatcherStats = { graphRuns: 0, rowIterations: 0, graphMs: 0 };

  constructor(private readonly model: EngineModel, private readonly callbacks: BatcherCallbacks,
    readonly options: BatcherOptions = batcherDefaults) {}

  /** Runs in the batcher now. */
  get size(): number {
    return this.active.length;
  }

  /** Add a run; it takes part from the next round on. */
  add(run: InversionRun): void {
    this.active.push(run);
    this.loop ??= this.runRounds().finally(() => {
      this.loop = undefined;
      // a run added while the last round was ending starts the loop again
      if (this.active.length > 0) this.loop = this.runRounds();
    });
  }

  /** Resolve when no run is active. */
  async idle(): Promise<void> {
    while (this.loop) await this.loop;
  }

  private async runRounds(): Promise<void> {
    // Start on the next turn of the event loop: a burst of submissions then shares the first graph run.
    await new Promise((resolve) => setImmediate(resolve));
    while (this.active.length > 0) {
      this.retireFinished();
      const groups = new Map<number, InversionRun[]>();
      for (const run of this.active) {
        const group = groups.get(run.promptVectors) ?? [];
        group.push(run);
        groups.set(run.promptVectors, group);
      }
      for (const group of groups.values()) {
        for (let i = 0; i < group.length; i += this.options.maxBatch) {
          await this.step(group.slice(i, i + this.options.maxBatch));
        }
      }
      this.retireFinished();
      // let submissions, cancellations and stream writes in between rounds
      await new Promise((resolve) => setImmediate(resolve));
    }
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
      out = await this.model.gradient.run({ prompt, promptVectors: P, targets: live.map((run) => run.graphTargets()) });
    } catch (error: unknown) {
      const reason = `graph run failed: ${error instanceof Error ? error.message : String(error)}`;
      for (const run of live) run.fail(reason);
      return;
    }
    const ms = performance.now() - started;
    this.stats.graphRuns++;
    this.stats.rowIterations += live.length;
    this.stats.graphMs += ms;
    const T = out.targetLength;
    for (let b = 0; b < live.length; b++) {
      const run = live[b]!;
      try {
        const progress = await run.consume({
          nll: out.nll.subarray(b * T, (b + 1) * T),
          gradPrompt: out.gradPrompt.subarray(b * P * C, (b + 1) * P * C),
          argmaxIds: out.argmaxIds.subarray(b * T, (b + 1) * T),
          ms: ms / live.length,
        });
        if (progress) this.callbacks.onProgress(run, progress);
      } catch (error: unknown) {
        run.fail(`iteration ${run.iteration} failed: ${error instanceof Error ? error.message : String(error)}`);
      }
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
