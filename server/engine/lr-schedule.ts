// Learning-rate schedules for one job, as a registry like the optimizers': each one is defined once
// (`defineSchedule`: its kind, label, the numbers it keeps and how they give the lr) and listed in `definitions`. A
// schedule says the lr for the coming iteration, advances after it (fed that iteration's loss), and its state is
// numbers by name, so a checkpoint is a plain copy of it and a resumed job continues with the same numbers.
// Optionally the lr is relative to the model's embedding scale: effective lr = schedule lr × mean L2 norm of the
// token embeddings.
//
// Use per iteration t = 0, 1, …:  lr = schedule.lr;  optimizer.step(param, grad, lr);  schedule.step(loss_t).
// That is PyTorch's order (optimizer.step(), then scheduler.step(metric)).

import { checkNonNegative, mergeOptions } from '../util/options.js';
import { integerProblem } from '../util/numbers.js';

/** What a schedule knows of its job. */
export interface ScheduleJob {
  /** The optimizer's lr, where every schedule starts. */
  readonly baseLr: number;
  /** The job's max iterations (cosine's `T_max`). */
  readonly totalIterations: number;
}

/** A schedule's state: numbers by name (iterations completed are counted apart, as `iteration`). */
export type ScheduleState = Record<string, number>;

/** Define a schedule: everything the rest of the project learns of it. */
export interface ScheduleDefinition<K extends string, S extends ScheduleState> {
  /** What the settings, the CLI and the proto (SCHEDULE_<KIND>) call it. */
  readonly kind: K;
  /** The state before the first iteration; throws for a job the schedule cannot drive. */
  createState(job: ScheduleJob): S;
  /** The lr of the iteration after `iteration` completed ones. */
  lr(state: S, iteration: number, job: ScheduleJob): number;
  /** Advance `state` past one iteration, fed its loss. */
  step(state: S, loss: number): void;
}

function defineSchedule<K extends string, S extends ScheduleState>(definition: ScheduleDefinition<K, S>):
  ScheduleDefinition<K, S> {
  return Object.freeze(definition);
}

/** Constant: the base lr throughout (torch: no scheduler). */
const constant = defineSchedule({
  kind: 'constant',
  createState: () => ({}),
  lr: (_state, _iteration, job) => job.baseLr,
  step: () => {},
});

/**
 * Compute CosineAnnealingLR's closed form (`_get_closed_form_lr`, eta_min 0) at iteration t:
 *   η_t = η_base · (1 + cos(π · t / T_max)) / 2
 * PyTorch's `step()` uses an equivalent recursive form that agrees up to float64 rounding. As in PyTorch, past
 * T_max the formula rises again (it is periodic); a job's T_max is its max iterations, so it never gets there.
 */
export function cosineLr(baseLr: number, iteration: number, totalIterations: number): number {
  return (baseLr * (1 + Math.cos((Math.PI * iteration) / totalIterations))) / 2;
}

/** Cosine annealing from the base lr to 0 over the job's max iterations (torch CosineAnnealingLR). */
const cosine = defineSchedule({
  kind: 'cosine',
  createState: (job) => {
    checkCount('cosine schedule', 'totalIterations', job.totalIterations, 1);
    return {};
  },
  lr: (_state, iteration, job) => cosineLr(job.baseLr, iteration, job.totalIterations),
  step: () => {},
});

// ReduceLROnPlateau with PyTorch's defaults (mode min, threshold mode rel, no cooldown, min_lr 0), which no setting
// changes.
const plateauFactor = 0.1; // the lr's multiplier on a plateau
const plateauPatience = 10; // non-improving iterations tolerated; the lr drops on the 11th in a row
const plateauThreshold = 1e-4; // least relative improvement that counts
const plateauEps = 1e-8; // a drop that would change the lr by no more than this is skipped

/**
 * Reduce on plateau (torch ReduceLROnPlateau): multiply the lr by 0.1 once the loss has not improved on its best by
 * a relative 1e-4 for more than 10 iterations in a row. `best` starts at +∞ (PyTorch's `mode_worse`),
 * `numBadEpochs` is PyTorch's `num_bad_epochs`.
 */
const plateau = defineSchedule({
  kind: 'plateau',
  createState: (job) => ({ lr: job.baseLr, best: Infinity, numBadEpochs: 0 }),
  lr: (state) => state.lr,
  step(state, loss) {
    // is_better(a, best) in mode min, threshold mode rel; a NaN loss is not better
    if (loss < state.best * (1 - plateauThreshold)) {
      state.best = loss;
      state.numBadEpochs = 0;
    } else {
      state.numBadEpochs += 1;
    }
    if (state.numBadEpochs > plateauPatience) {
      // _reduce_lr: new_lr = max(old_lr * factor, min_lr), applied only if it moves by more than eps
      const newLr = state.lr * plateauFactor;
      if (state.lr - newLr > plateauEps) state.lr = newLr;
      state.numBadEpochs = 0;
    }
  },
});

// ---------------------------------------------------------------------------------------------------------------
// The registry

/** Every schedule, in the order the CLI offers them. */
const definitions = [constant, cosine, plateau] as const;

type Definition = (typeof definitions)[number];
export type LrScheduleKind = Definition['kind'];

/** The schedules by what the job settings call them (the CLI's choices come from here). */
export const lrScheduleKinds: readonly LrScheduleKind[] = Object.freeze(definitions.map((d) => d.kind));

/** Look a schedule up by kind. */
export function scheduleDefinition(kind: LrScheduleKind): Definition {
  const definition = definitions.find((d) => d.kind === kind);
  if (!definition) throw new RangeError(`lr schedule: kind is ${String(kind)}; it must be one of ${lrScheduleKinds.join(', ')}`);
  return definition;
}

/** Configure the schedule a job uses. */
export interface LrScheduleOptions {
  /** Which schedule drives the lr. */
  readonly kind: LrScheduleKind;
  /** Multiply every lr by the mean L2 norm of the model's token embeddings (passed as `embeddingNorm`). */
  readonly relativeToNorm: boolean;
  /** The job's max iterations; cosine needs it (≥ 1). */
  readonly totalIterations: number;
}

/** Schedule defaults: a constant lr, not scaled to the embedding norm. */
export const lrScheduleDefaults: Readonly<LrScheduleOptions> = Object.freeze({
  kind: 'constant',
  relativeToNorm: false,
  totalIterations: 0,
});

function checkCount(op: string, name: string, value: number, least: number): void {
  const problem = integerProblem(value, least);
  if (problem) throw new RangeError(`${op}: ${name} ${problem}`);
}

/**
 * Scale an lr to the model's embedding size: lr × (mean L2 norm of the token embeddings), so one setting means
 * the same relative step for models whose embeddings differ in scale. The caller computes the norm once per model.
 */
export function scaleLrToNorm(lr: number, embeddingNorm: number): number {
  if (!(embeddingNorm > 0) || !Number.isFinite(embeddingNorm)) {
    throw new RangeError(`scaleLrToNorm: embeddingNorm is ${embeddingNorm}; it must be a finite number > 0`);
  }
  return lr * embeddingNorm;
}

/**
 * Write a state number so that JSON keeps it: JSON.stringify turns ±Infinity into null, and plateau's best starts at
 * +Infinity.
 */
export type JsonNumber = number | 'Infinity' | '-Infinity' | 'NaN';

function toJsonNumber(value: number): JsonNumber {
  if (Number.isFinite(value)) return value;
  if (Number.isNaN(value)) return 'NaN';
  return value > 0 ? 'Infinity' : '-Infinity';
}

function fromJsonNumber(label: string, value: JsonNumber | undefined): number {
  if (typeof value === 'number') return value;
  if (value === 'Infinity') return Infinity;
  if (value === '-Infinity') return -Infinity;
  if (value === 'NaN') return NaN;
  throw new RangeError(`importState: ${label} is ${String(value)}; it must be a number, 'Infinity', '-Infinity' or 'NaN'`);
}

/** Copy of a schedule's state for a checkpoint: iterations completed (PyTorch's `last_epoch`) and its numbers, JSON-safe. */
export interface LrScheduleSnapshot {
  readonly kind: string;
  readonly iteration: number;
  readonly state: Readonly<Record<string, JsonNumber>>;
}

/** Drive the lr of one job, iteration by iteration. */
export interface LrSchedule {
  readonly kind: LrScheduleKind;
  /** The lr for the coming iteration (norm scaling included when relativeToNorm). */
  readonly lr: number;
  /** Iterations completed so far. */
  readonly iteration: number;
  /** Advance past one iteration, fed its loss (used by plateau; ignored by the others). Returns the next lr. */
  step(loss: number): number;
  /** Copy the state out for a checkpoint; its numbers are in the base lr's units, before any norm scaling. */
  exportState(): LrScheduleSnapshot;
  /** Replace the state with a checkpoint's, checking its kind and that it names the same numbers. */
  importState(snapshot: LrScheduleSnapshot): void;
}

/**
 * Create the schedule a job's options ask for, starting from the optimizer's base lr. With `relativeToNorm`,
 * `embeddingNorm` (the mean L2 norm of the model's token-embedding rows) is required and multiplies every lr.
 */
export function createLrSchedule(baseLr: number, partial: Partial<LrScheduleOptions> = {},
  embeddingNorm?: number): LrSchedule {
  const options = mergeOptions('lr schedule', lrScheduleDefaults, partial);
  const definition = scheduleDefinition(options.kind) as unknown as ScheduleDefinition<LrScheduleKind, ScheduleState>;
  checkNonNegative('lr schedule', 'baseLr', baseLr);
  let scale = 1;
  if (options.relativeToNorm) {
    if (embeddingNorm === undefined) throw new RangeError('createLrSchedule: relativeToNorm is set, but no embeddingNorm was given');
    scale = scaleLrToNorm(1, embeddingNorm);
  }
  const scaled = (lr: number) => (options.relativeToNorm ? lr * scale : lr);
  const job: ScheduleJob = { baseLr, totalIterations: options.totalIterations };
  const state = definition.createState(job);
  let iteration = 0;
  return {
    kind: options.kind,
    get lr() {
      return scaled(definition.lr(state, iteration, job));
    },
    get iteration() {
      return iteration;
    },
    step(loss) {
      iteration += 1;
      definition.step(state, loss);
      return scaled(definition.lr(state, iteration, job));
    },
    exportState: () => ({
      kind: options.kind,
      iteration,
      state: Object.fromEntries(Object.entries(state).map(([name, value]) => [name, toJsonNumber(value)])),
    }),
    importState(snapshot) {
      if (snapshot.kind !== options.kind) {
        throw new Error(`importState: snapshot is for a ${snapshot.kind} schedule; this one is ${options.kind}`);
      }
      checkCount('importState', 'iteration', snapshot.iteration, 0);
      const names = Object.keys(state);
      const extra = Object.keys(snapshot.state).find((name) => !names.includes(name));
      if (extra !== undefined) throw new Error(`importState: ${extra} is not part of the ${options.kind} schedule's state`);
      const values = names.map((name) => fromJsonNumber(name, snapshot.state[name]));
      names.forEach((name, i) => { state[name] = values[i]!; });
      iteration = snapshot.iteration;
    },
  };
}
