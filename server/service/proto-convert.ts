// Between the API's messages and the engine's types: job settings in, events and results out, and the run
// snapshots a checkpoint stores.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import type { GenEnum } from '@bufbuild/protobuf/codegenv2';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import type { InversionEvent, InversionResult, ProgressReport, RunResult, RunStatus } from '../engine/events.js';
import type { RunSnapshot } from '../engine/inversion-run.js';
import { lrScheduleKinds } from '../engine/lr-schedule.js';
import type { JsonNumber, LrScheduleSnapshot } from '../engine/lr-schedule.js';
import { optimizerKinds } from '../engine/optimizers.js';
import type { OptimizerSnapshot } from '../engine/optimizers.js';
import { beamCheckEveryDefault, SettingsError } from '../engine/settings.js';
import type { InitSettings, InversionSettings, ParameterizationSettings } from '../engine/settings.js';
import { enumNames } from '../../sdk/enum-names.js';
import {
  JobEventSchema, JobSettingsSchema, OptimizerSchema, Parameterization_Basis, ProgressSchema, RestartResultSchema,
  ResultSchema, ScheduleSchema, Status, TensorSchema,
} from '../../sdk/gen/recite/v1/recite_pb.js';
import type {
  Initialization, JobEvent, JobSettings, Parameterization, Progress, RestartResult, Result, Tensor,
} from '../../sdk/gen/recite/v1/recite_pb.js';

// The optimizer and schedule enums map onto the engine's registries by name (sdk/enum-names.ts: OPTIMIZER_ADAM is
// the kind 'adam'), so a kind the proto and the engine both gain needs no table here; test/service/proto-convert.test.ts
// checks that they name the same kinds. The other enums and the oneofs are tables typed over every value or case, so a
// value the proto gains is a compile error here until it is mapped. Either way a number without a mapping is a
// SettingsError naming the field, never a silent fallback to some other setting, and UNSPECIFIED (and an unset oneof)
// maps to undefined: the engine's default applies (server/engine/settings.ts).
const optimizerFromProto = kindsFromProto(OptimizerSchema, optimizerKinds);
const optimizerToProto = kindsToProto(OptimizerSchema, optimizerKinds);
const scheduleFromProto = kindsFromProto(ScheduleSchema, lrScheduleKinds);
const scheduleToProto = kindsToProto(ScheduleSchema, lrScheduleKinds);

/** Map UNSPECIFIED to undefined and each value to the kind of its name; a value no kind is named like is left out. */
function kindsFromProto<E extends number, K extends string>(schema: GenEnum<E>, kinds: readonly K[]): Record<E, K | undefined> {
  const table: Record<number, K | undefined> = { 0: undefined };
  for (const [name, value] of Object.entries(enumNames(schema))) {
    if ((kinds as readonly string[]).includes(name)) table[value] = name as K;
  }
  return table;
}

/** Map each kind to the value of its name. */
function kindsToProto<E extends number, K extends string>(schema: GenEnum<E>, kinds: readonly K[]): Record<K, E> {
  const values = enumNames(schema);
  return Object.fromEntries(kinds.filter((kind) => Object.hasOwn(values, kind)).map((kind) => [kind, values[kind]])) as
    Record<K, E>;
}

type ProjectionBasis = Extract<ParameterizationSettings, { kind: 'projected' }>['basis'];

const basisFromProto = {
  [Parameterization_Basis.UNSPECIFIED]: 'random', // the proto's documented meaning of UNSPECIFIED
  [Parameterization_Basis.RANDOM]: 'random',
  [Parameterization_Basis.PCA]: 'pca',
} as const satisfies Record<Parameterization_Basis, ProjectionBasis>;

const basisToProto = {
  random: Parameterization_Basis.RANDOM,
  pca: Parameterization_Basis.PCA,
} as const satisfies Record<ProjectionBasis, Parameterization_Basis>;

/** One converter per case of a proto oneof; the mapped type requires every case. */
type OneofTable<K extends { case: string | undefined; value?: unknown }, R> = {
  [C in NonNullable<K['case']>]: (value: Extract<K, { case: C }>['value']) => R;
};

type ParameterizationKind = Parameterization['kind'];
type InitKind = Initialization['kind'];

const parameterizationFromProto: OneofTable<ParameterizationKind, ParameterizationSettings> = {
  full: (v) => (v.promptVectors ? { kind: 'full', promptVectors: v.promptVectors } : { kind: 'full' }),
  flat: () => ({ kind: 'flat' }),
  projected: (v) => ({ kind: 'projected', dims: v.dims, basis: fromEnum(basisFromProto, v.basis, 'parameterization.projected.basis') }),
};

const initFromProto: OneofTable<InitKind, InitSettings> = {
  random: (v) => (v.std ? { kind: 'random', std: v.std } : { kind: 'random' }),
  zeros: () => ({ kind: 'zeros' }),
  mean: () => ({ kind: 'mean' }),
  text: (v) => ({ kind: 'text', text: v }),
  embedding: (v) => ({ kind: 'embedding', values: v.values }),
};

/** Look an enum value up in its table; a number the table lacks (a newer client's value) is a SettingsError. */
function fromEnum<E extends number, R>(table: Record<E, R>, value: E, field: string): R {
  if (!Object.hasOwn(table, value)) {
    throw new SettingsError(field, `${value} is not a known value (known: ${Object.keys(table).join(', ')})`);
  }
  return table[value];
}

function fromOneof<K extends { case: string | undefined; value?: unknown }, R>(table: OneofTable<K, R>, kind: K | undefined,
  field: string): R | undefined {
  if (kind?.case === undefined) return undefined;
  const convert = (table as Record<string, ((value: unknown) => R) | undefined>)[kind.case];
  if (!convert) throw new SettingsError(field, `"${kind.case}" is not a known case (known: ${Object.keys(table).join(', ')})`);
  return convert(kind.value);
}

/** Map the API's settings onto the engine's; zero values and UNSPECIFIED mean the engine's defaults. */
export function settingsFromProto(s: JobSettings | undefined): Partial<InversionSettings> {
  if (!s) return {};
  const beams = s.decoder?.beams ?? 0;
  return {
    parameterization: fromOneof(parameterizationFromProto, s.parameterization?.kind, 'parameterization'),
    init: fromOneof(initFromProto, s.init?.kind, 'init'),
    optimizer: fromEnum(optimizerFromProto, s.optimizer, 'optimizer'),
    lr: s.lr || undefined,
    momentum: s.momentum,
    schedule: fromEnum(scheduleFromProto, s.schedule, 'schedule'),
    lrRelativeToNorm: s.lrRelativeToNorm,
    maxIterations: s.maxIterations || undefined,
    patience: s.patience,
    nllThreshold: s.nllThreshold,
    curriculum: s.curriculum,
    decode: beams > 1 ? { kind: 'beam', beams, every: s.decoder?.every || beamCheckEveryDefault } : { kind: 'greedy' },
    stopOnHit: !s.continueAfterHit,
    restarts: s.restarts || undefined,
    seed: s.seed,
    reportEvery: s.reportEvery || undefined,
    // 0 (unset, and every job stored before the field existed) is the default 1: no penalty
    repetitionPenalty: s.repetitionPenalty || undefined,
  } satisfies EveryEngineSetting;
}

// Every engine setting has an entry in settingsFromProto (undefined: the default), so a setting the engine gains
// is a compile error there until the API carries it.
type EveryEngineSetting = { [K in keyof InversionSettings]-?: InversionSettings[K] | undefined };

/** Map the engine's applied settings back onto the API's (the result's settings echo). */
export function settingsToProto(s: InversionSettings): JobSettings {
  const p = s.parameterization;
  const init = s.init;
  return create(JobSettingsSchema, {
    parameterization: {
      kind: p.kind === 'full' ? { case: 'full', value: { promptVectors: p.promptVectors ?? 0 } }
        : p.kind === 'flat' ? { case: 'flat', value: {} }
        : { case: 'projected', value: { dims: p.dims, basis: basisToProto[p.basis] } },
    },
    init: {
      kind: init.kind === 'random' ? { case: 'random', value: { std: init.std ?? 0 } }
        : init.kind === 'zeros' ? { case: 'zeros', value: {} }
        : init.kind === 'mean' ? { case: 'mean', value: {} }
        : init.kind === 'text' ? { case: 'text', value: init.text }
        : { case: 'embedding', value: { shape: [init.values.length], values: init.values } },
    },
    optimizer: optimizerToProto[s.optimizer],
    lr: s.lr,
    momentum: s.momentum,
    schedule: scheduleToProto[s.schedule],
    lrRelativeToNorm: s.lrRelativeToNorm,
    maxIterations: s.maxIterations,
    patience: s.patience,
    nllThreshold: s.nllThreshold,
    curriculum: s.curriculum,
    decoder: s.decode.kind === 'beam' ? { beams: s.decode.beams, every: s.decode.every } : { beams: 1, every: 0 },
    continueAfterHit: !s.stopOnHit,
    restarts: s.restarts,
    seed: s.seed,
    reportEvery: s.reportEvery,
    repetitionPenalty: s.repetitionPenalty,
  });
}

export const statusToProto: Record<RunStatus, Status> = {
  HIT: Status.HIT,
  MAX_ITERATIONS: Status.MAX_ITERATIONS,
  PATIENCE: Status.PATIENCE,
  THRESHOLD: Status.THRESHOLD,
  CANCELLED: Status.CANCELLED,
  FAILED: Status.FAILED,
};

// A stored restart result always has a run's status: UNSPECIFIED (or a number this build does not know) in one is a
// damaged record, reported as such rather than resumed as some other status.
const statusFromProto = {
  [Status.UNSPECIFIED]: undefined,
  [Status.HIT]: 'HIT',
  [Status.MAX_ITERATIONS]: 'MAX_ITERATIONS',
  [Status.PATIENCE]: 'PATIENCE',
  [Status.THRESHOLD]: 'THRESHOLD',
  [Status.CANCELLED]: 'CANCELLED',
  [Status.FAILED]: 'FAILED',
} as const satisfies Record<Status, RunStatus | undefined>;

function storedRunStatus(r: RestartResult): RunStatus {
  const status = Object.hasOwn(statusFromProto, r.status) ? statusFromProto[r.status] : undefined;
  if (!status) throw new Error(`stored restart result ${r.restart}: status ${r.status} is not the status of a finished run`);
  return status;
}

/** Return a tensor message (shape, values). */
export function tensorToProto(shape: readonly number[], values: ArrayLike<number>): Tensor {
  return create(TensorSchema, { shape: [...shape], values: Array.from(values) });
}

export function progressToProto(p: ProgressReport, coalesced = 0): Progress {
  return create(ProgressSchema, { ...p, coalesced, decodedIds: p.decodedIds ?? [], decodedText: p.decodedText ?? '' });
}

export function restartResultToProto(r: RunResult): RestartResult {
  return create(RestartResultSchema, {
    restart: r.restart,
    seed: r.seed,
    status: statusToProto[r.status],
    iterations: r.iterations,
    iterationsToHit: r.iterationsToHit ?? undefined,
    bestNll: r.bestNll,
    bestIteration: r.bestIteration,
    embedding: tensorToProto(r.embedding.shape, r.embedding.values),
    decodedIds: r.decodedIds,
    decodedText: r.decodedText,
    nearestTokens: r.nearestTokens.map((tokens) => ({ tokens })),
    elapsedMs: r.elapsedMs,
    error: r.error ?? '',
  });
}

/** Rebuild an engine RunResult from a stored restart result (to resume a job whose other restarts ended). */
export function restartResultFromProto(r: RestartResult): RunResult {
  const shape = r.embedding?.shape ?? [0, 0];
  return {
    restart: r.restart,
    seed: r.seed,
    status: storedRunStatus(r),
    iterations: r.iterations,
    iterationsToHit: r.iterationsToHit ?? null,
    bestNll: r.bestNll,
    bestIteration: r.bestIteration,
    embedding: { shape: [shape[0] ?? 0, shape[1] ?? 0], values: Float32Array.from(r.embedding?.values ?? []) },
    theta: new Float32Array(0),
    decodedIds: r.decodedIds,
    decodedText: r.decodedText,
    nearestTokens: r.nearestTokens.map((n) => n.tokens.map((t) => ({ id: t.id, text: t.text, cosine: t.cosine }))),
    elapsedMs: r.elapsedMs,
    ...(r.error ? { error: r.error } : {}),
  };
}

export function resultToProto(r: InversionResult): Result {
  return create(ResultSchema, {
    status: statusToProto[r.status],
    best: r.best,
    restarts: r.restarts.map(restartResultToProto),
    targetIds: r.targetIds,
    targetText: r.targetText,
    settings: settingsToProto(r.settings),
    model: r.model,
    provider: r.provider,
    elapsedMs: r.elapsedMs,
  });
}

/** Map an engine event onto a JobEvent with its sequence number and time. */
export function eventToProto(event: InversionEvent, sequence: number, timeMs: number, resumedFromIteration = 0): JobEvent {
  const base = { sequence, time: timestampFromMs(timeMs) };
  switch (event.type) {
    case 'queued':
      return create(JobEventSchema, { ...base, kind: { case: 'queued', value: { position: event.position } } });
    case 'started':
      return create(JobEventSchema, { ...base, kind: { case: 'started', value: { ...event, resumedFromIteration } } });
    case 'progress':
      return create(JobEventSchema, { ...base, kind: { case: 'progress', value: progressToProto(event.progress) } });
    case 'restart_result':
      return create(JobEventSchema, { ...base, kind: { case: 'restartResult', value: restartResultToProto(event.result) } });
    case 'result':
      return create(JobEventSchema, { ...base, kind: { case: 'result', value: resultToProto(event.result) } });
  }
}

export const encodeEvent = (event: JobEvent): Uint8Array => toBinary(JobEventSchema, event);
export const decodeEvent = (bytes: Uint8Array): JobEvent => fromBinary(JobEventSchema, bytes);

// ---------------------------------------------------------------------------------------------------------------
// Run snapshots: JSON with typed arrays as base64 of their little-endian bytes (exact floats, compact enough).

interface EncodedSnapshot {
  iteration: number;
  theta: string;
  optimizer: unknown;
  schedule: LrScheduleSnapshot;
  optimizedTokens: number;
  best: { nll: number | string; optimizedTokens: number; iteration: number; theta: string; hit: boolean };
  sinceImprovement: number;
  elapsedMs: number;
}

// The format is versioned so that a server reads the checkpoints of the versions before it (a job stored by an older
// server resumes after an upgrade; test/storage/stored-formats.test.ts resumes a database made on 2026-11-30):
// version 1 was the bare list of [restart, snapshot] pairs; version 2 wraps the same list as { version, runs };
// version 3 stores the optimizer and the schedule as copies of their state ({ kind, state }), where versions 1 and 2
// spelt each kind's fields out beside `kind` (see `fromVersion2`). A change to what a snapshot holds bumps the
// version and reads the older ones.
export const snapshotFormatVersion = 3;

/** Serialize the running restarts' snapshots of one job, by restart index. */
export function encodeSnapshots(snapshots: ReadonlyMap<number, RunSnapshot>): Uint8Array {
  const runs = [...snapshots].map(([restart, s]) => [restart, {
    ...s,
    theta: floatsToBase64(s.theta),
    optimizer: JSON.parse(JSON.stringify(s.optimizer, typedArraysAsBase64)),
    best: { ...s.best, nll: Number.isFinite(s.best.nll) ? s.best.nll : String(s.best.nll), theta: floatsToBase64(s.best.theta) },
  } satisfies EncodedSnapshot]);
  return new TextEncoder().encode(JSON.stringify({ version: snapshotFormatVersion, runs }));
}

/** Read what encodeSnapshots wrote, in this version's format or an earlier one. */
export function decodeSnapshots(bytes: Uint8Array): Map<number, RunSnapshot> {
  const stored = JSON.parse(new TextDecoder().decode(bytes)) as [number, EncodedSnapshot][] | { version: number; runs: [number, EncodedSnapshot][] };
  const version = Array.isArray(stored) ? 1 : stored.version;
  if (version > snapshotFormatVersion || !Number.isInteger(version) || version < 1) {
    throw new Error(`checkpoint format version ${String(version)}: this server reads versions 1 to ${snapshotFormatVersion}`);
  }
  const entries = Array.isArray(stored) ? stored : stored.runs;
  return new Map(entries.map(([restart, s]) => {
    const snapshot: RunSnapshot = {
      ...s,
      theta: base64ToFloats(s.theta),
      optimizer: JSON.parse(JSON.stringify(s.optimizer), base64AsFloats) as OptimizerSnapshot,
      best: { ...s.best, nll: Number(s.best.nll), theta: base64ToFloats(s.best.theta) },
    };
    return [restart, version < 3 ? fromVersion2(snapshot) : snapshot];
  }));
}

/**
 * Rewrite a snapshot of versions 1 and 2 in version 3's terms. Those spelt the optimizer's state out beside its kind
 * ({ kind: 'adam', step, expAvg, expAvgSq, maxExpAvgSq }) and the schedule's likewise ({ kind: 'plateau', iteration,
 * lr, best, numBadEpochs, cooldownCounter }). A null buffer was one the options did not use (RMSProp's centered and
 * momentum buffers, Adam's AMSGrad maximum: options no request could set), or SGD's momentum buffer before its first
 * step, which is zeros now. The plateau's cooldown counter was always 0 (no cooldown).
 */
function fromVersion2(s: RunSnapshot): RunSnapshot {
  const { kind, ...optimizerFields } = s.optimizer as unknown as { kind: string } & Record<string, number | Float32Array | null>;
  const optimizerState: Record<string, number | Float32Array> = {};
  for (const [name, value] of Object.entries(optimizerFields)) {
    if (value !== null) optimizerState[name] = value;
    else if (kind === 'sgd' && name === 'momentumBuffer') optimizerState[name] = new Float32Array(s.theta.length);
  }
  const { kind: scheduleKind, iteration, cooldownCounter: _, ...scheduleState } =
    s.schedule as unknown as { kind: string; iteration: number; cooldownCounter?: number } & Record<string, JsonNumber>;
  return { ...s, optimizer: { kind, state: optimizerState }, schedule: { kind: scheduleKind, iteration, state: scheduleState } };
}

const base64Marker = 'f32:';

function typedArraysAsBase64(_key: string, value: unknown): unknown {
  return value instanceof Float32Array ? base64Marker + floatsToBase64(value) : value;
}

function base64AsFloats(_key: string, value: unknown): unknown {
  return typeof value === 'string' && value.startsWith(base64Marker) ? base64ToFloats(value.slice(base64Marker.length)) : value;
}

function floatsToBase64(values: Float32Array): string {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('base64');
}

function base64ToFloats(text: string): Float32Array {
  const bytes = Buffer.from(text, 'base64');
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}
