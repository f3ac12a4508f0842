// InvertOptions: the camelCase settings object a client writes, and its mapping onto the proto's JobSpec and
// JobSettings. Options left out are sent as zero values, which the server reads as its documented defaults.
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import type { GenEnum } from '@bufbuild/protobuf/codegenv2';
import {
  DecoderSchema,
  InitializationSchema,
  JobSettingsSchema,
  JobSpecSchema,
  OptimizerSchema,
  Parameterization_Basis,
  Parameterization_BasisSchema,
  ParameterizationSchema,
  ScheduleSchema,
  TensorSchema,
  TokenIdsSchema,
} from './gen/recite/v1/recite_pb.js';
import type { Optimizer, Schedule } from './gen/recite/v1/recite_pb.js';
import { enumNames } from './enum-names.js';
import type { EnumName } from './enum-names.js';
import type { Initialization, JobSettings, JobSpec, Parameterization, Tensor } from './gen/recite/v1/recite_pb.js';

/** Describe a float32 tensor as plain numbers: `values` row-major, their count the product of `shape`. */
export interface TensorInput {
  /** Dimensions, outermost first; for prompts (P, C). */
  shape: readonly number[];
  values: ArrayLike<number>;
}

/**
 * Say what the optimizer moves: `'flat'` (one vector), `'full'` (P = T vectors), full with a given P, or a
 * K-number code projected through a fixed (K, C) basis.
 */
export type ParameterizationOption =
  | 'flat'
  | 'full'
  | { kind: 'full'; promptVectors?: number }
  | { kind: 'projected'; dims: number; basis?: EnumName<typeof Parameterization_Basis> };

/**
 * Say where the search starts: normal noise (std 0 or unset: the token embeddings' std), zeros, the mean token
 * embedding, a text's token embeddings, or a given (P, C) prompt.
 */
export type InitOption =
  | 'random'
  | 'zeros'
  | 'mean'
  | { kind: 'random'; std?: number }
  | { kind: 'text'; text: string }
  | { kind: 'embedding'; embedding: TensorInput };

/** An optimizer by name: every value of the proto's Optimizer enum. */
export type OptimizerName = EnumName<typeof Optimizer>;

/** A learning-rate schedule by name: every value of the proto's Schedule enum. */
export type ScheduleName = EnumName<typeof Schedule>;

/** Say how a hit is checked: greedy (teacher-forced argmax) or beam search, decoded every `every` iterations. */
export type DecodeOption = 'greedy' | { beams: number; every?: number };

/** Describe the knobs of one inversion; every one maps to a JobSettings field of the same meaning. */
export interface InvertOptions {
  parameterization?: ParameterizationOption;
  init?: InitOption;
  optimizer?: OptimizerName;
  /** Learning rate (server default 0.1). */
  lr?: number;
  /** SGD momentum (server default 0.9). */
  momentum?: number;
  schedule?: ScheduleName;
  /** Scale the lr by the mean L2 norm of the token embeddings. */
  lrRelativeToNorm?: boolean;
  /** Iterations per restart (server default 1000). */
  maxIterations?: number;
  /** Stop after this many iterations without a better NLL (0: never). */
  patience?: number;
  /** Stop once the summed NLL is at or below this (0: never). */
  nllThreshold?: number;
  /** Optimize a growing prefix of the target. */
  curriculum?: boolean;
  decode?: DecodeOption;
  /** Keep optimizing after a hit, until the budget. */
  continueAfterHit?: boolean;
  /** Independent seeds (server default 1); the best is the result. */
  restarts?: number;
  seed?: number;
  /** Report every k-th iteration (server default 1). */
  reportEvery?: number;
  /**
   * Repetition penalty theta (server default 1: off; 0.1 to 10): a token already in the text has its logit divided by
   * theta if positive, multiplied by it if negative, in the optimized likelihood, the hit check and the decoders.
   */
  repetitionPenalty?: number;
}

/** Describe what a job is about besides its settings. */
export interface JobSpecOptions extends InvertOptions {
  /** A model name from listModels(); unset: the server's default. */
  model?: string;
  /** A label for the caller's own bookkeeping (a data set row id, say). */
  label?: string;
}

/** Map InvertOptions onto JobSettings; throws ConnectError InvalidArgument for a value no field can hold. */
export function toJobSettings(options: InvertOptions = {}): JobSettings {
  const settings = create(JobSettingsSchema, {
    lr: options.lr ?? 0,
    momentum: options.momentum,
    lrRelativeToNorm: options.lrRelativeToNorm ?? false,
    maxIterations: options.maxIterations ?? 0,
    patience: options.patience ?? 0,
    nllThreshold: options.nllThreshold ?? 0,
    curriculum: options.curriculum ?? false,
    continueAfterHit: options.continueAfterHit ?? false,
    restarts: options.restarts ?? 0,
    seed: options.seed ?? 0,
    reportEvery: options.reportEvery ?? 0,
    repetitionPenalty: options.repetitionPenalty ?? 0,
  });
  if (options.parameterization !== undefined) settings.parameterization = toParameterization(options.parameterization);
  if (options.init !== undefined) settings.init = toInitialization(options.init);
  if (options.optimizer !== undefined) settings.optimizer = enumValue('optimizer', OptimizerSchema, options.optimizer);
  if (options.schedule !== undefined) settings.schedule = enumValue('schedule', ScheduleSchema, options.schedule);
  if (options.decode !== undefined) {
    const decode = options.decode;
    if (decode === 'greedy') settings.decoder = create(DecoderSchema, { beams: 1 });
    else if (typeof decode === 'object' && decode !== null) {
      settings.decoder = create(DecoderSchema, { beams: decode.beams, every: decode.every ?? 0 });
    } else throw invalid('decode', decode, "'greedy' or { beams, every? }");
  }
  return settings;
}

/** Build the JobSpec for a target (text, or GPT-2 token ids) and its options. */
export function toJobSpec(target: string | readonly number[], options: JobSpecOptions = {}): JobSpec {
  const spec = create(JobSpecSchema, {
    model: options.model ?? '',
    label: options.label ?? '',
    settings: toJobSettings(options),
  });
  if (typeof target === 'string') spec.target = { case: 'text', value: target };
  else if (Array.isArray(target)) spec.target = { case: 'targetIds', value: create(TokenIdsSchema, { ids: [...target] }) };
  else throw invalid('target', target, 'a string or an array of token ids');
  return spec;
}

/** Build a proto Tensor from shape and values (a Float32Array or any array of numbers). */
export function toTensor(tensor: TensorInput): Tensor {
  return create(TensorSchema, { shape: [...tensor.shape], values: Array.from(tensor.values) });
}

function toParameterization(option: ParameterizationOption): Parameterization {
  const kind = typeof option === 'string' ? option : option?.kind;
  switch (kind) {
    case 'flat':
      return create(ParameterizationSchema, { kind: { case: 'flat', value: {} } });
    case 'full': {
      const promptVectors = typeof option === 'object' && option.kind === 'full' ? option.promptVectors ?? 0 : 0;
      return create(ParameterizationSchema, { kind: { case: 'full', value: { promptVectors } } });
    }
    case 'projected': {
      const projected = option as Extract<ParameterizationOption, { kind: 'projected' }>;
      const basis = projected.basis === undefined ? Parameterization_Basis.UNSPECIFIED
        : enumValue('parameterization.basis', Parameterization_BasisSchema, projected.basis);
      return create(ParameterizationSchema, { kind: { case: 'projected', value: { dims: projected.dims, basis } } });
    }
    default:
      throw invalid('parameterization', option, "'flat', 'full', { kind: 'full', promptVectors } or { kind: 'projected', dims, basis? }");
  }
}

function toInitialization(option: InitOption): Initialization {
  const kind = typeof option === 'string' ? option : option?.kind;
  switch (kind) {
    case 'random': {
      const std = typeof option === 'object' && option.kind === 'random' ? option.std ?? 0 : 0;
      return create(InitializationSchema, { kind: { case: 'random', value: { std } } });
    }
    case 'zeros':
      return create(InitializationSchema, { kind: { case: 'zeros', value: {} } });
    case 'mean':
      return create(InitializationSchema, { kind: { case: 'mean', value: {} } });
    case 'text':
      return create(InitializationSchema, {
        kind: { case: 'text', value: (option as Extract<InitOption, { kind: 'text' }>).text },
      });
    case 'embedding':
      return create(InitializationSchema, {
        kind: { case: 'embedding', value: toTensor((option as Extract<InitOption, { kind: 'embedding' }>).embedding) },
      });
    default:
      throw invalid('init', option, "'random', 'zeros', 'mean', { kind: 'random', std }, { kind: 'text', text } or { kind: 'embedding', embedding }");
  }
}

// Look a value up by its short name in the proto's descriptor, so every value the proto has is accepted.
function enumValue<E extends number>(field: string, schema: GenEnum<E>, name: string): E {
  const names = enumNames(schema);
  if (!Object.hasOwn(names, name)) throw invalid(field, name, Object.keys(names).map((n) => `'${n}'`).join(', '));
  return names[name]!;
}

function invalid(field: string, value: unknown, expected: string): ConnectError {
  return new ConnectError(`invert options: ${field} is ${JSON.stringify(value)}; expected ${expected}`, Code.InvalidArgument);
}
