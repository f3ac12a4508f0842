// The settings of one inversion: what a researcher chooses, with defaults and the limits checked before a job
// starts. The result echoes them back in full so a run can be reproduced.
import { optimizerKinds } from './optimizers.js';
import type { OptimizerKind } from './optimizers.js';
import { lrScheduleKinds } from './lr-schedule.js';
import type { LrScheduleKind } from './lr-schedule.js';
import { integerProblem } from '../util/numbers.js';

/** How the soft prompt is parameterized. */
export type ParameterizationSettings =
  | { kind: 'full'; promptVectors?: number } // P vectors of C numbers; P defaults to the target's token count
  | { kind: 'flat' } // one vector of C numbers
  | { kind: 'projected'; dims: number; basis: 'random' | 'pca' }; // a k-number code through a fixed (k, C) basis

/** Where the search starts. */
export type InitSettings =
  | { kind: 'random'; std?: number } // normal; std defaults to the token embeddings' std
  | { kind: 'zeros' }
  | { kind: 'mean' } // the mean token embedding in every vector
  | { kind: 'text'; text: string } // the embeddings of a text's tokens (their mean for a single vector)
  | { kind: 'embedding'; values: number[] }; // a given prompt (P, C), row-major: a warm start

/** How a hit is checked. */
export type DecodeSettings =
  | { kind: 'greedy' } // teacher-forced argmax every iteration: free, and equivalent to free-running greedy decoding
  | { kind: 'beam'; beams: number; every: number }; // beam search decoding every `every` iterations

/** Configure one inversion. */
export interface InversionSettings {
  parameterization: ParameterizationSettings;
  init: InitSettings;
  optimizer: OptimizerKind;
  /** Learning rate; RMSProp's 0.1 is what the original experiments found fastest. */
  lr: number;
  /** SGD only: momentum (PyTorch's own default is 0; a plain-SGD search rarely converges, so 0.9 here). */
  momentum: number;
  schedule: LrScheduleKind;
  /** Scale the lr by the mean L2 norm of the token embeddings, so one lr means the same on every model. */
  lrRelativeToNorm: boolean;
  maxIterations: number;
  /** Stop after this many iterations without a better NLL (0: never). */
  patience: number;
  /** Stop once the summed NLL is at or below this (0: never). */
  nllThreshold: number;
  /** Optimize a growing prefix: add the next target token once the current prefix is reproduced. */
  curriculum: boolean;
  decode: DecodeSettings;
  /** Stop as soon as the model recites the target. */
  stopOnHit: boolean;
  /** Independent searches from seeds restartSeed(seed, r) (the seed itself, then seeds mixed from it); the best is
   * the result. */
  restarts: number;
  seed: number;
  /** Report every k-th iteration (the first, the last and the first hit are always reported). */
  reportEvery: number;
  /**
   * Repetition penalty theta, as Hugging Face's RepetitionPenaltyLogitsProcessor: the logit of a token already in
   * the text is divided by theta if positive, multiplied by it if negative, once per distinct token. It shapes the
   * objective (each target token's NLL given the target tokens before it), the teacher-forced argmax of the greedy
   * hit check and the decoders alike; the soft prompt is no token, so nothing is penalized before the first. 1: off.
   */
  repetitionPenalty: number;
}

export const inversionDefaults: Readonly<InversionSettings> = Object.freeze({
  parameterization: { kind: 'full' },
  init: { kind: 'random' },
  optimizer: 'rmsprop',
  lr: 0.1,
  momentum: 0.9,
  schedule: 'constant',
  lrRelativeToNorm: false,
  maxIterations: 1000,
  patience: 0,
  nllThreshold: 0,
  curriculum: false,
  decode: { kind: 'greedy' },
  stopOnHit: true,
  restarts: 1,
  seed: 0,
  reportEvery: 1,
  repetitionPenalty: 1,
} satisfies InversionSettings);

/** How often a beam hit check runs when a request names beams but not how often (iterations). */
export const beamCheckEveryDefault = 10;

/**
 * The largest repetition penalty, and 1 / it the smallest: at 10 a repeated token's positive logit keeps a tenth of
 * itself, which already rules repeats out in practice; far beyond it, theta (or its inverse) would push logits
 * past what float32 softmax carries.
 */
export const maxRepetitionPenalty = 10;

/** The repetition penalties a job may ask for, as errors state them. */
export const repetitionPenaltyRange = `[${1 / maxRepetitionPenalty}, ${maxRepetitionPenalty}] (1: off)`;

/** Whether `theta` is a repetition penalty a job may ask for: a number in [1 / max, max]. */
export function isRepetitionPenalty(theta: number): boolean {
  return theta >= 1 / maxRepetitionPenalty && theta <= maxRepetitionPenalty;
}

/** Limits on what one request may ask for (a shared server's guard rails). */
export interface InversionLimits {
  maxIterations: number; // iterations per restart
  maxRestarts: number;
  maxBeams: number;
  maxPromptVectors: number;
}

export const inversionLimits: Readonly<InversionLimits> = Object.freeze({
  maxIterations: 100_000,
  maxRestarts: 64,
  maxBeams: 16,
  maxPromptVectors: 256,
});

/** Raised for settings out of range; the message names the field, the value and the limit. */
export class SettingsError extends Error {
  override name = 'SettingsError';
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
  }
}

declare const checked: unique symbol;

/**
 * Settings that passed makeInversionSettings against the limits of whoever accepted the job (or were stored after
 * that): the engine runs them as they are. The brand exists only for the compiler: a plain object cannot reach the
 * engine unchecked, and the engine, which does not know the server's limits, has no reason to check them again.
 */
export type CheckedSettings = InversionSettings & { readonly [checked]: true };

function mergeOverDefaults(partial: Partial<InversionSettings>): InversionSettings {
  const s: InversionSettings = { ...inversionDefaults };
  for (const [key, value] of Object.entries(partial)) {
    if (!(key in inversionDefaults)) throw new SettingsError(key, `unknown setting; known: ${Object.keys(inversionDefaults).join(', ')}`);
    if (value !== undefined) (s as unknown as Record<string, unknown>)[key] = value;
  }
  return s;
}

/**
 * The settings of a job that was accepted before: merged over the defaults, without checking limits. The limits in
 * force now may differ from those the job was accepted under (a restarted server with tighter ones), and a job
 * already stored keeps the settings it was accepted with rather than failing when read or resumed.
 */
export function storedInversionSettings(partial: Partial<InversionSettings>): CheckedSettings {
  return mergeOverDefaults(partial) as CheckedSettings;
}

/** Merge `partial` over the defaults and check every field against `limits` (the server's, for a new job). */
export function makeInversionSettings(partial: Partial<InversionSettings>, limits: InversionLimits): CheckedSettings {
  const s = mergeOverDefaults(partial);
  const integer = (field: string, value: number, min: number, max: number) => {
    const problem = integerProblem(value, min, max);
    if (problem) throw new SettingsError(field, problem);
  };
  const positive = (field: string, value: number) => {
    if (!Number.isFinite(value) || value <= 0) throw new SettingsError(field, `${value} is not a finite number > 0`);
  };
  const nonNegative = (field: string, value: number) => {
    if (!Number.isFinite(value) || value < 0) throw new SettingsError(field, `${value} is not a finite number ≥ 0`);
  };
  if (!(optimizerKinds as readonly string[]).includes(s.optimizer)) {
    throw new SettingsError('optimizer', `"${s.optimizer}" is not one of ${optimizerKinds.join(', ')}`);
  }
  if (!(lrScheduleKinds as readonly string[]).includes(s.schedule)) {
    throw new SettingsError('schedule', `"${s.schedule}" is not one of ${lrScheduleKinds.join(', ')}`);
  }
  positive('lr', s.lr);
  if (!(s.momentum >= 0 && s.momentum < 1)) throw new SettingsError('momentum', `${s.momentum} is not in [0, 1)`);
  integer('maxIterations', s.maxIterations, 1, limits.maxIterations);
  integer('patience', s.patience, 0, limits.maxIterations);
  nonNegative('nllThreshold', s.nllThreshold);
  integer('restarts', s.restarts, 1, limits.maxRestarts);
  integer('seed', s.seed, 0, 2 ** 32 - 1);
  integer('reportEvery', s.reportEvery, 1, limits.maxIterations);
  if (!isRepetitionPenalty(s.repetitionPenalty)) {
    throw new SettingsError('repetitionPenalty', `${s.repetitionPenalty} is not a number in ${repetitionPenaltyRange}`);
  }
  const p = s.parameterization;
  if (p.kind === 'full') {
    if (p.promptVectors !== undefined) integer('parameterization.promptVectors', p.promptVectors, 1, limits.maxPromptVectors);
  } else if (p.kind === 'projected') {
    integer('parameterization.dims', p.dims, 1, 1_000_000);
    if (p.basis !== 'random' && p.basis !== 'pca') {
      throw new SettingsError('parameterization.basis', `"${String(p.basis)}" is not one of random, pca`);
    }
  } else if (p.kind !== 'flat') {
    throw new SettingsError('parameterization.kind', `"${String((p as { kind: unknown }).kind)}" is not one of full, flat, projected`);
  }
  const d = s.decode;
  if (d.kind === 'beam') {
    integer('decode.beams', d.beams, 1, limits.maxBeams);
    integer('decode.every', d.every, 1, limits.maxIterations);
  } else if (d.kind !== 'greedy') {
    throw new SettingsError('decode.kind', `"${String((d as { kind: unknown }).kind)}" is not one of greedy, beam`);
  }
  const init = s.init;
  if (init.kind === 'random' && init.std !== undefined) positive('init.std', init.std);
  if (!['random', 'zeros', 'mean', 'text', 'embedding'].includes(init.kind)) {
    throw new SettingsError('init.kind', `"${init.kind}" is not one of random, zeros, mean, text, embedding`);
  }
  if (init.kind === 'embedding' && !init.values.every(Number.isFinite)) {
    throw new SettingsError('init.values', 'every value must be a finite number');
  }
  return s as CheckedSettings;
}
