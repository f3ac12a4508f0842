// The job settings flags, shared by every command that starts jobs (invert, dataset run, study, capacity): the same
// names, values and parsing everywhere, mapped onto the SDK's InvertOptions.
import type { Command } from 'commander';
import { Option } from 'commander';
import type { InvertOptions } from '../sdk/index.js';
import { lrScheduleKinds } from '../server/engine/lr-schedule.js';
import type { LrScheduleKind } from '../server/engine/lr-schedule.js';
import { optimizerKinds } from '../server/engine/optimizers.js';
import type { OptimizerKind } from '../server/engine/optimizers.js';
import { inversionDefaults, isRepetitionPenalty, repetitionPenaltyRange } from '../server/engine/settings.js';
import { parseDecode, parseInit, parseParameterization, positiveInteger, positiveNumber } from './options.js';

/** The settings flags as commander hands them over. */
export interface SettingsFlags {
  param: string;
  init: string;
  optimizer: OptimizerKind;
  lr?: string;
  schedule: LrScheduleKind;
  lrRelative?: boolean;
  maxIters: string;
  patience: string;
  nllThreshold: string;
  curriculum?: boolean;
  decode: string;
  restarts: string;
  seed: string;
  reportEvery: string;
  repetitionPenalty: string;
}

/**
 * Add invert's settings flags to `command`, with `defaults` for the ones a many-job command sets otherwise. Choices
 * and defaults are the engine's (server/engine/settings.ts); `recite study`'s grid keys are these flags' names.
 */
export function addSettingsOptions(command: Command, defaults: { param?: string; reportEvery?: string } = {}): Command {
  const engine = inversionDefaults;
  return command
    .option('--param <kind>', 'flat | full[:P] | projected:K[:random|pca]', defaults.param ?? engine.parameterization.kind)
    .option('--init <kind>', 'random[:STD] | zeros | mean | text:TEXT', engine.init.kind)
    .addOption(new Option('--optimizer <name>', 'optimizer').choices(optimizerKinds).default(engine.optimizer))
    .option('--lr <x>', `learning rate (default ${engine.lr})`)
    .addOption(new Option('--schedule <name>', 'lr schedule').choices(lrScheduleKinds).default(engine.schedule))
    .option('--lr-relative', 'scale the lr by the mean token-embedding norm')
    .option('--max-iters <n>', 'iterations per restart', String(engine.maxIterations))
    .option('--patience <n>', 'stop after N iterations without a better NLL (0: off)', String(engine.patience))
    .option('--nll-threshold <x>', 'stop once the summed NLL is at or below X (0: off)', String(engine.nllThreshold))
    .option('--curriculum', 'optimize a growing prefix of the target')
    .option('--decode <kind>', 'hit check: greedy | beam:N[:EVERY]', 'greedy')
    .option('--restarts <n>', 'independent seeds per job; the best is the result', String(engine.restarts))
    .option('--seed <s>', 'seed of the first restart', String(engine.seed))
    .option('--report-every <k>', 'store every k-th iteration\'s progress', defaults.reportEvery ?? '10')
    .option('--repetition-penalty <theta>', 'divide a repeated token\'s logit by THETA (multiply if negative), as ' +
      'Hugging Face\'s repetition_penalty, in the objective, the hit check and the decoders; a number in ' +
      repetitionPenaltyRange, String(engine.repetitionPenalty));
}

/** Map the flags onto the SDK's settings object (errors name the flag and the value). */
export function settingsFromFlags(flags: SettingsFlags): InvertOptions {
  const parameterization = parseParameterization(flags.param);
  const init = parseInit(flags.init);
  const decode = parseDecode(flags.decode);
  const nllThreshold = Number(flags.nllThreshold);
  if (!Number.isFinite(nllThreshold) || nllThreshold < 0) throw new Error(`--nll-threshold ${flags.nllThreshold}: expected a number ≥ 0`);
  const theta = repetitionPenaltyFlag(flags.repetitionPenalty);
  return {
    parameterization: parameterization.kind === 'flat' ? 'flat' : parameterization,
    init: init.kind === 'text' ? { kind: 'text', text: init.text }
      : init.kind === 'random' ? { kind: 'random', ...(init.std ? { std: init.std } : {}) }
        : init.kind === 'zeros' || init.kind === 'mean' ? init.kind : 'random',
    optimizer: flags.optimizer,
    ...(flags.lr !== undefined ? { lr: positiveNumber('--lr', flags.lr) } : {}),
    schedule: flags.schedule,
    lrRelativeToNorm: flags.lrRelative ?? false,
    maxIterations: positiveInteger('--max-iters', flags.maxIters),
    patience: positiveInteger('--patience', flags.patience, 0),
    nllThreshold,
    curriculum: flags.curriculum ?? false,
    decode: decode.kind === 'beam' ? { beams: decode.beams, every: decode.every } : 'greedy',
    restarts: positiveInteger('--restarts', flags.restarts),
    seed: positiveInteger('--seed', flags.seed, 0),
    reportEvery: positiveInteger('--report-every', flags.reportEvery),
    // Left out when off, as before the flag existed: a data set's content hash covers its settings, so a data set
    // run again after an upgrade is still the stored one.
    ...(theta !== 1 ? { repetitionPenalty: theta } : {}),
  };
}

function repetitionPenaltyFlag(value: string): number {
  const theta = Number(value);
  if (value.trim() === '' || !isRepetitionPenalty(theta)) {
    throw new Error(`--repetition-penalty ${value}: expected a number in ${repetitionPenaltyRange}`);
  }
  return theta;
}

/** Return the prompt vectors a parameterization uses for a target of `tokens` tokens (full: P = T unless given). */
export function promptVectorsOf(param: string, tokens: number): number {
  const p = parseParameterization(param);
  return p.kind === 'full' ? p.promptVectors ?? tokens : 1;
}
