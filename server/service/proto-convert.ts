// Between the API's messages and the engine's types: job settings in, events and results out, and the run
// snapshots a checkpoint stores.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import type { InversionEvent, InversionResult, ProgressReport, RunResult, RunStatus } from '../engine/events.js';
import type { RunSnapshot } from '../engine/inversion-run.js';
import type { LrScheduleSnapshot } from '../engine/lr-schedule.js';
import type { OptimizerSnapshot } from '../engine/optimizers.js';
import type { InversionSettings } from '../engine/settings.js';
import {
  JobEventSchema, JobSettingsSchema, Optimizer, Parameterization_Basis, ProgressSchema, RestartResultSchema,
  ResultSchema, Schedule, Status, TensorSchema,
} from '../../sdk/gen/recite/v1/recite_pb.js';
import type { JobEvent, JobSettings, Progress, RestartResult, Result, Tensor } from '../../sdk/gen/recite/v1/recite_pb.js';

/** Map the API's settings onto the engine's; zero values mean the engine's defaults. */
export function settingsFromProto(s: JobSettings | undefined): Partial<InversionSettings> {
  if (!s) return {};
  const out: Partial<InversionSettings> = {};
  const p = s.parameterization?.kind;
  if (p?.case === 'full') out.parameterization = p.value.promptVectors ? { kind: 'full', promptVectors: p.value.promptVectors } : { kind: 'full' };
  else if (p?.case === 'flat') out.parameterization = { kind: 'flat' };
  else if (p?.case === 'projected') {
    out.parameterization = { kind: 'projected', dims: p.value.dims, basis: p.value.basis === Parameterization_Basis.PCA ? 'pca' : 'random' };
  }
  const init = s.init?.kind;
  if (init?.case === 'random') out.init = init.value.std ? { kind: 'random', std: init.value.std } : { kind: 'random' };
  else if (init?.case === 'zeros') out.init = { kind: 'zeros' };
  else if (init?.case === 'mean') out.init = { kind: 'mean' };
  else if (init?.case === 'text') out.init = { kind: 'text', text: init.value };
  else if (init?.case === 'embedding') out.init = { kind: 'embedding', values: init.value.values };
  if (s.optimizer === Optimizer.ADAM) out.optimizer = 'adam';
  else if (s.optimizer === Optimizer.SGD) out.optimizer = 'sgd';
  else out.optimizer = 'rmsprop';
  if (s.lr) out.lr = s.lr;
  if (s.momentum !== undefined) out.momentum = s.momentum;
  out.schedule = s.schedule === Schedule.COSINE ? 'cosine' : s.schedule === Schedule.PLATEAU ? 'plateau' : 'constant';
  out.lrRelativeToNorm = s.lrRelativeToNorm;
  if (s.maxIterations) out.maxIterations = s.maxIterations;
  out.patience = s.patience;
  out.nllThreshold = s.nllThreshold;
  out.curriculum = s.curriculum;
  const beams = s.decoder?.beams ?? 0;
  out.decode = beams > 1 ? { kind: 'beam', beams, every: s.decoder?.every || 10 } : { kind: 'greedy' };
  out.stopOnHit = !s.continueAfterHit;
  if (s.restarts) out.restarts = s.restarts;
  out.seed = s.seed;
  if (s.reportEvery) out.reportEvery = s.reportEvery;
  return out;
}

/** Map the engine's applied settings back onto the API's (the result's settings echo). */
export function settingsToProto(s: InversionSettings): JobSettings {
  const p = s.parameterization;
  const init = s.init;
  return create(JobSettingsSchema, {
    parameterization: {
      kind: p.kind === 'full' ? { case: 'full', value: { promptVectors: p.promptVectors ?? 0 } }
        : p.kind === 'flat' ? { case: 'flat', value: {} }
        : { case: 'projected', value: { dims: p.dims, basis: p.basis === 'pca' ? Parameterization_Basis.PCA : Parameterization_Basis.RANDOM } },
    },
    init: {
      kind: init.kind === 'random' ? { case: 'random', value: { std: init.std ?? 0 } }
        : init.kind === 'zeros' ? { case: 'zeros', value: {} }
        : init.kind === 'mean' ? { case: 'mean', value: {} }
        : init.kind === 'text' ? { case: 'text', value: init.text }
        : { case: 'embedding', value: { shape: [init.values.length], values: init.values } },
    },
    optimizer: { rmsprop: Optimizer.RMSPROP, adam: Optimizer.ADAM, sgd: Optimizer.SGD }[s.optimizer],
    lr: s.lr,
    momentum: s.momentum,
    schedule: { constant: Schedule.CONSTANT, cosine: Schedule.COSINE, plateau: Schedule.PLATEAU }[s.schedule],
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

const statusFromProto = new Map<Status, RunStatus>(Object.entries(statusToProto).map(([k, v]) => [v, k as RunStatus]));

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
    status: statusFromProto.get(r.status) ?? 'FAILED',
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

/** Serialize the running restarts' snapshots of one job, by restart index. */
export function encodeSnapshots(snapshots: ReadonlyMap<number, RunSnapshot>): Uint8Array {
  const entries = [...snapshots].map(([restart, s]) => [restart, {
    ...s,
    theta: floatsToBase64(s.theta),
    optimizer: JSON.parse(JSON.stringify(s.optimizer, typedArraysAsBase64)),
    best: { ...s.best, nll: Number.isFinite(s.best.nll) ? s.best.nll : String(s.best.nll), theta: floatsToBase64(s.best.theta) },
  } satisfies EncodedSnapshot]);
  return new TextEncoder().encode(JSON.stringify(entries));
}

/** Read what encodeSnapshots wrote. */
export function decodeSnapshots(bytes: Uint8Array): Map<number, RunSnapshot> {
  const entries = JSON.parse(new TextDecoder().decode(bytes)) as [number, EncodedSnapshot][];
  return new Map(entries.map(([restart, s]) => [restart, {
    ...s,
    theta: base64ToFloats(s.theta),
    optimizer: JSON.parse(JSON.stringify(s.optimizer), base64AsFloats) as OptimizerSnapshot,
    best: { ...s.best, nll: Number(s.best.nll), theta: base64ToFloats(s.best.theta) },
  }]));
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
