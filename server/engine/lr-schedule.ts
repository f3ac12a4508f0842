// Learning-rate schedules for one job: constant, cosine annealing and reduce-on-plateau, each a small state machine
// that says the lr for the coming iteration, advances after it (fed that iteration's loss), and exports its state
// for a checkpoint so a resumed job continues with the same numbers. Optionally the lr is relative to the model's
// embedding scale: effective lr = schedule lr × mean L2 norm of the token embeddings.
//
// Use per iteration t = 0, 1, …:  lr = schedule.lr;  optimizer.step(param, grad, lr);  schedule.step(loss_t).
// That is PyTorch's order (optimizer.step(), then scheduler.step(metric)).

import { checkNonNegative, mergeOptions } from '../util/options.js';
import { integerProblem } from '../util/numbers.js';

/** The schedules by what the job settings call them (the CLI's choices come from here). */
export const lrScheduleKinds = ['constant', 'cosine', 'plateau'] as const;
export type LrScheduleKind = (typeof lrScheduleKinds)[number];

/** Configure cosine annealing; names follow torch.optim.lr_scheduler.CosineAnnealingLR. */
export interface CosineOptions {
  /** Iterations over which the lr falls from the base lr to etaMin (`T_max`): the job's max iterations. */
  readonly totalIterations: number;
  /** The lr reached at iteration `totalIterations` (`eta_min`). */
  readonly etaMin: number;
}

/** Configure reduce-on-plateau; names follow torch.optim.lr_scheduler.ReduceLROnPlateau. */
export interface PlateauOptions {
  /** `min`: the loss should fall; `max`: the metric should rise. */
  readonly mode: 'min' | 'max';
  /** Multiply the lr by this on a plateau (< 1). */
  readonly factor: number;
  /** Non-improving iterations tolerated; the lr drops on the (patience + 1)-th in a row. */
  readonly patience: number;
  /** Least improvement that counts, relative to the best (`rel`) or absolute (`abs`). */
  readonly threshold: number;
  readonly thresholdMode: 'rel' | 'abs';
  /** Iterations after a drop during which non-improving iterations are not counted. */
  readonly cooldown: number;
  /** Floor for the lr (in the base lr's units, before any norm scaling). */
  readonly minLr: number;
  /** Skip a drop smaller than this (a drop that would change the lr by ≤ eps is ignored). */
  readonly eps: number;
}

/** Configure the schedule a job uses: its kind, the kind's settings, and the optional norm scaling. */
export interface LrScheduleOptions extends CosineOptions, PlateauOptions {
  /** Which schedule drives the lr. */
  readonly kind: LrScheduleKind;
  /** Multiply every lr by the mean L2 norm of the model's token embeddings (passed as `embeddingNorm`). */
  readonly relativeToNorm: boolean;
}

/** Cosine defaults: PyTorch's eta_min 0. `totalIterations` has no default in PyTorch (T_max is required). */
export const cosineDefaults: Readonly<CosineOptions> = Object.freeze({
  totalIterations: 0,
  etaMin: 0,
});

/** Reduce-on-plateau defaults, equal to PyTorch's. */
export const plateauDefaults: Readonly<PlateauOptions> = Object.freeze({
  mode: 'min',
  factor: 0.1,
  patience: 10,
  threshold: 1e-4,
  thresholdMode: 'rel',
  cooldown: 0,
  minLr: 0,
  eps: 1e-8,
});

/** Schedule defaults: a constant lr, not scaled to the embedding norm. */
export const lrScheduleDefaults: Readonly<LrScheduleOptions> = Object.freeze({
  kind: 'constant',
  relativeToNorm: false,
  ...cosineDefaults,
  ...plateauDefaults,
});



function checkCount(op: string, name: string, value: number, least: number): void {
  const problem = integerProblem(value, least);
  if (problem) throw new RangeError(`${op}: ${name} ${problem}`);
}

/** Merge partial cosine options over the defaults; totalIterations must be given (≥ 1). */
export function makeCosineOptions(partial: Partial<CosineOptions> = {}): CosineOptions {
  const options = mergeOptions('cosine schedule', cosineDefaults, partial);
  checkCount('cosine schedule', 'totalIterations', options.totalIterations, 1);
  checkNonNegative('cosine schedule', 'etaMin', options.etaMin);
  return options;
}

/** Merge partial reduce-on-plateau options over the defaults and check them as PyTorch does. */
export function makePlateauOptions(partial: Partial<PlateauOptions> = {}): PlateauOptions {
  const options = mergeOptions('plateau schedule', plateauDefaults, partial);
  const op = 'plateau schedule';
  if (options.mode !== 'min' && options.mode !== 'max') throw new RangeError(`${op}: mode is ${String(options.mode)}; it must be min or max`);
  if (options.thresholdMode !== 'rel' && options.thresholdMode !== 'abs') {
    throw new RangeError(`${op}: thresholdMode is ${String(options.thresholdMode)}; it must be rel or abs`);
  }
  if (!(options.factor >= 0 && options.factor < 1)) throw new RangeError(`${op}: factor is ${options.factor}; it must lie in [0, 1)`);
  checkCount(op, 'patience', options.patience, 0);
  checkCount(op, 'cooldown', options.cooldown, 0);
  checkNonNegative(op, 'threshold', options.threshold);
  checkNonNegative(op, 'minLr', options.minLr);
  checkNonNegative(op, 'eps', options.eps);
  return options;
}

/** Merge partial schedule options over the defaults, checking the settings of the chosen kind. */
export function makeLrScheduleOptions(partial: Partial<LrScheduleOptions> = {}): LrScheduleOptions {
  const options = mergeOptions('lr schedule', lrScheduleDefaults, partial);
  const { kind } = options;
  if (kind !== 'constant' && kind !== 'cosine' && kind !== 'plateau') {
    throw new RangeError(`lr schedule: kind is ${String(kind)}; it must be constant, cosine or plateau`);
  }
  if (kind === 'cosine') makeCosineOptions({ totalIterations: options.totalIterations, etaMin: options.etaMin });
  if (kind === 'plateau') {
    const { mode, factor, patience, threshold, thresholdMode, cooldown, minLr, eps } = options;
    makePlateauOptions({ mode, factor, patience, threshold, thresholdMode, cooldown, minLr, eps });
  }
  return options;
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
 * Write a loss-like number so that JSON keeps it: JSON.stringify turns ±Infinity into null, and plateau's best
 * starts at ±Infinity (PyTorch's `mode_worse`).
 */
export type JsonNumber = number | 'Infinity' | '-Infinity' | 'NaN';

function toJsonNumber(value: number): JsonNumber {
  if (Number.isFinite(value)) return value;
  if (Number.isNaN(value)) return 'NaN';
  return value > 0 ? 'Infinity' : '-Infinity';
}

function fromJsonNumber(label: string, value: JsonNumber): number {
  if (typeof value === 'number') return value;
  if (value === 'Infinity') return Infinity;
  if (value === '-Infinity') return -Infinity;
  if (value === 'NaN') return NaN;
  throw new RangeError(`importState: ${label} is ${String(value)}; it must be a number, 'Infinity', '-Infinity' or 'NaN'`);
}

/** Snapshot a constant schedule: iterations completed. */
export interface ConstantScheduleSnapshot {
  readonly kind: 'constant';
  readonly iteration: number;
}

/** Snapshot a cosine schedule: iterations completed (PyTorch's `last_epoch`), which fixes the lr. */
export interface CosineScheduleSnapshot {
  readonly kind: 'cosine';
  readonly iteration: number;
}

/** Snapshot reduce-on-plateau: PyTorch's `last_epoch`, the current lr, `best`, `num_bad_epochs`, `cooldown_counter`. */
export interface PlateauScheduleSnapshot {
  readonly kind: 'plateau';
  readonly iteration: number;
  /** Current lr, before any norm scaling. */
  readonly lr: number;
  readonly best: JsonNumber;
  readonly numBadEpochs: number;
  readonly cooldownCounter: number;
}

/** Snapshot any schedule; plain JSON-safe data. */
export type LrScheduleSnapshot = ConstantScheduleSnapshot | CosineScheduleSnapshot | PlateauScheduleSnapshot;

/** Drive the lr of one job, iteration by iteration. */
export interface LrSchedule {
  readonly kind: LrScheduleKind;
  /** The lr for the coming iteration (norm scaling included when relativeToNorm). */
  readonly lr: number;
  /** Iterations completed so far. */
  readonly iteration: number;
  /** Advance past one iteration, fed its loss (used by plateau; ignored by the others). Returns the next lr. */
  step(loss?: number): number;
  exportState(): LrScheduleSnapshot;
  /** Replace the state with a checkpoint's, checking that it is for this kind. */
  importState(snapshot: LrScheduleSnapshot): void;
}

function checkSnapshotHead<K extends LrScheduleKind>(
  kind: K,
  snapshot: LrScheduleSnapshot,
): asserts snapshot is Extract<LrScheduleSnapshot, { kind: K }> {
  if (snapshot.kind !== kind) throw new Error(`importState: snapshot is for a ${snapshot.kind} schedule; this one is ${kind}`);
  checkCount('importState', 'iteration', snapshot.iteration, 0);
}

function checkBaseLr(op: string, baseLr: number): void {
  checkNonNegative(op, 'baseLr', baseLr);
}

/** Create a schedule that keeps the base lr (torch: no scheduler). */
export function createConstantSchedule(baseLr: number): LrSchedule {
  checkBaseLr('constant schedule', baseLr);
  let iteration = 0;
  return {
    kind: 'constant',
    get lr() {
      return baseLr;
    },
    get iteration() {
      return iteration;
    },
    step() {
      iteration += 1;
      return baseLr;
    },
    exportState: () => ({ kind: 'constant', iteration }),
    importState(snapshot) {
      checkSnapshotHead('constant', snapshot);
      iteration = snapshot.iteration;
    },
  };
}

/**
 * Compute CosineAnnealingLR's closed form (`_get_closed_form_lr`) at iteration t:
 *   η_t = η_min + (η_base − η_min) · (1 + cos(π · t / T_max)) / 2
 * PyTorch's `step()` uses an equivalent recursive form that agrees up to float64 rounding. As in PyTorch, past
 * T_max the formula rises again (it is periodic); a job's T_max is its max iterations, so it never gets there.
 */
export function cosineLr(baseLr: number, iteration: number, options: CosineOptions): number {
  const { etaMin, totalIterations } = options;
  return etaMin + ((baseLr - etaMin) * (1 + Math.cos((Math.PI * iteration) / totalIterations))) / 2;
}

/** Create a cosine-annealing schedule from `baseLr` to `etaMin` over `totalIterations` (torch CosineAnnealingLR). */
export function createCosineSchedule(baseLr: number, partial: Partial<CosineOptions>): LrSchedule {
  checkBaseLr('cosine schedule', baseLr);
  const options = makeCosineOptions(partial);
  let iteration = 0;
  return {
    kind: 'cosine',
    get lr() {
      return cosineLr(baseLr, iteration, options);
    },
    get iteration() {
      return iteration;
    },
    step() {
      iteration += 1;
      return cosineLr(baseLr, iteration, options);
    },
    exportState: () => ({ kind: 'cosine', iteration }),
    importState(snapshot) {
      checkSnapshotHead('cosine', snapshot);
      iteration = snapshot.iteration;
    },
  };
}

/**
 * Create a reduce-on-plateau schedule (torch ReduceLROnPlateau): multiply the lr by `factor` once the loss has
 * not improved on its best by `threshold` for more than `patience` iterations in a row, never below `minLr`.
 */
export function createPlateauSchedule(baseLr: number, partial: Partial<PlateauOptions> = {}): LrSchedule {
  checkBaseLr('plateau schedule', baseLr);
  const options = makePlateauOptions(partial);
  // _init_is_better: mode_worse
  const modeWorse = options.mode === 'min' ? Infinity : -Infinity;
  let iteration = 0; // last_epoch
  let lr = baseLr;
  let best = modeWorse;
  let numBadEpochs = 0;
  let cooldownCounter = 0;

  // is_better(a, best), term by term as in PyTorch
  const isBetter = (a: number): boolean => {
    const { mode, thresholdMode, threshold } = options;
    if (mode === 'min' && thresholdMode === 'rel') return a < best * (1 - threshold);
    if (mode === 'min') return a < best - threshold;
    if (thresholdMode === 'rel') return a > best * (threshold + 1);
    return a > best + threshold;
  };

  return {
    kind: 'plateau',
    get lr() {
      return lr;
    },
    get iteration() {
      return iteration;
    },
    step(loss?: number) {
      if (typeof loss !== 'number') throw new TypeError(`plateau schedule: step needs the iteration's loss; got ${String(loss)}`);
      iteration += 1;
      if (isBetter(loss)) {
        best = loss;
        numBadEpochs = 0;
      } else {
        numBadEpochs += 1;
      }
      if (cooldownCounter > 0) {
        // in_cooldown: ignore any bad epochs in cooldown
        cooldownCounter -= 1;
        numBadEpochs = 0;
      }
      if (numBadEpochs > options.patience) {
        // _reduce_lr: new_lr = max(old_lr * factor, min_lr), applied only if it moves by more than eps
        const newLr = Math.max(lr * options.factor, options.minLr);
        if (lr - newLr > options.eps) lr = newLr;
        cooldownCounter = options.cooldown;
        numBadEpochs = 0;
      }
      return lr;
    },
    exportState: () => ({ kind: 'plateau', iteration, lr, best: toJsonNumber(best), numBadEpochs, cooldownCounter }),
    importState(snapshot) {
      checkSnapshotHead('plateau', snapshot);
      checkNonNegative('importState', 'lr', snapshot.lr);
      checkCount('importState', 'numBadEpochs', snapshot.numBadEpochs, 0);
      checkCount('importState', 'cooldownCounter', snapshot.cooldownCounter, 0);
      best = fromJsonNumber('best', snapshot.best);
      iteration = snapshot.iteration;
      lr = snapshot.lr;
      numBadEpochs = snapshot.numBadEpochs;
      cooldownCounter = snapshot.cooldownCounter;
    },
  };
}

/** Multiply a schedule's lr by a fixed scale, keeping its state and snapshots in the base lr's units. */
function scaled(schedule: LrSchedule, embeddingNorm: number): LrSchedule {
  scaleLrToNorm(1, embeddingNorm);
  return {
    kind: schedule.kind,
    get lr() {
      return scaleLrToNorm(schedule.lr, embeddingNorm);
    },
    get iteration() {
      return schedule.iteration;
    },
    step: (loss) => scaleLrToNorm(schedule.step(loss), embeddingNorm),
    exportState: () => schedule.exportState(),
    importState: (snapshot) => schedule.importState(snapshot),
  };
}

/**
 * Create the schedule a job's options ask for, starting from the optimizer's base lr. With `relativeToNorm`,
 * `embeddingNorm` (the mean L2 norm of the model's token-embedding rows) is required and multiplies every lr.
 */
export function createLrSchedule(
  baseLr: number,
  partial: Partial<LrScheduleOptions> = {},
  embeddingNorm?: number,
): LrSchedule {
  const options = makeLrScheduleOptions(partial);
  let schedule: LrSchedule;
  switch (options.kind) {
    case 'constant':
      schedule = createConstantSchedule(baseLr);
      break;
    case 'cosine':
      schedule = createCosineSchedule(baseLr, { totalIterations: options.totalIterations, etaMin: options.etaMin });
      break;
    case 'plateau': {
      const { mode, factor, patience, threshold, thresholdMode, cooldown, minLr, eps } = options;
      schedule = createPlateauSchedule(baseLr, { mode, factor, patience, threshold, thresholdMode, cooldown, minLr, eps });
      break;
    }
  }
  if (!options.relativeToNorm) return schedule;
  if (embeddingNorm === undefined) {
    throw new RangeError('createLrSchedule: relativeToNorm is set, but no embeddingNorm was given');
  }
  return scaled(schedule, embeddingNorm);
}
