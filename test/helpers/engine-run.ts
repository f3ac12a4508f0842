// Run inversions on the tiny fixture model and keep every event, for the engine suites.
import path from 'node:path';
import { greedyDecode } from '../../server/engine/decoders.js';
import type { EngineModel } from '../../server/engine/engine-model.js';
import { loadEngineModel } from '../../server/engine/engine-model.js';
import type { InversionEvent, InversionResult, ProgressReport, RunResult } from '../../server/engine/events.js';
import type { InversionEngine, InversionHandle, InversionRequest } from '../../server/engine/inversion-engine.js';
import type { CheckedSettings, InversionSettings } from '../../server/engine/settings.js';
import { inversionLimits, makeInversionSettings } from '../../server/engine/settings.js';
import { randomNormal } from '../../server/util/seeded-random.js';

export const tinyGpt2Dir = path.resolve('test/fixtures/tiny-gpt2');

/** Load the tiny fixture (n_embd 32, 2 layers, 4 heads, 64 positions) on the CPU. */
export function loadTinyModel(): Promise<EngineModel> {
  return loadEngineModel('tiny', tinyGpt2Dir, 'cpu');
}

/**
 * Return a target the model can be made to recite: its own greedy continuation of a hidden one-vector prompt drawn
 * with `hiddenSeed`, so at least one prompt (the hidden one) reproduces it.
 */
export async function reachableTarget(model: EngineModel, hiddenSeed: number, T: number): Promise<number[]> {
  const C = model.checkpoint.config.nEmbd;
  return greedyDecode(model.decode, randomNormal(C, model.embeddings.std, hiddenSeed), 1, T);
}

/** One submitted inversion and everything it has reported so far. */
export interface Recorded {
  handle: InversionHandle;
  events: InversionEvent[];
  /** Progress reports of `restart` (default 0), in order. */
  progress(restart?: number): ProgressReport[];
  /** The final result, once every restart has ended. */
  result: Promise<InversionResult>;
}

/** Settings checked against the default limits, as a server with the default limits would accept them. */
export function checked(partial: Partial<InversionSettings> = {}): CheckedSettings {
  return makeInversionSettings(partial, inversionLimits);
}

/** An engine request whose settings are still to be checked (against the default limits, by submitRecorded). */
export type TestRequest = Omit<InversionRequest, 'onEvent' | 'settings'> & { settings?: Partial<InversionSettings> };

/**
 * Submit `request` and record its events. `onProgress` runs inside the event callback, after the report is recorded,
 * with the handle (to cancel or snapshot at an exact iteration).
 */
export async function submitRecorded(engine: InversionEngine, request: TestRequest,
  onProgress?: (progress: ProgressReport, handle: InversionHandle) => void): Promise<Recorded> {
  const events: InversionEvent[] = [];
  let handle: InversionHandle | undefined;
  handle = await engine.submit({
    ...request,
    settings: checked(request.settings),
    onEvent: (event) => {
      events.push(event);
      if (event.type === 'progress' && onProgress) {
        if (!handle) throw new Error('a progress report arrived before submit returned its handle');
        onProgress(event.progress, handle);
      }
    },
  });
  const progress = (restart = 0) => events.flatMap((e) => (e.type === 'progress' && e.progress.restart === restart ? [e.progress] : []));
  return { handle, events, progress, result: handle.result };
}

/** Submit, wait for the result and return it with the recorded events. */
export async function invert(engine: InversionEngine, request: TestRequest,
  onProgress?: (progress: ProgressReport, handle: InversionHandle) => void):
  Promise<Recorded & { final: InversionResult; best: RunResult }> {
  const recorded = await submitRecorded(engine, request, onProgress);
  const final = await recorded.result;
  return { ...recorded, final, best: final.restarts[final.best]! };
}

/** The summed NLL of every progress report, in order. */
export function nllSequence(progress: readonly ProgressReport[]): number[] {
  return progress.map((p) => p.nllSum);
}

/** Largest |a[i] − b[i]|; the sequences must have the same length. */
export function maxSequenceDifference(a: readonly number[], b: readonly number[]): number {
  if (a.length !== b.length) throw new Error(`sequences differ in length: ${a.length} and ${b.length}`);
  return a.reduce((max, x, i) => Math.max(max, Math.abs(x - b[i]!)), 0);
}
