// What a job costs a server's memory, in one unit: the bytes its restarts hold while they run. Admission counts it
// (per-client quotas on queued cost, the global memory budget that delays run starts), so it is known from the
// settings alone, before any buffer exists.
//
// P = prompt vectors, C = channels, V = vocab, T = target tokens, K = beams, n = numbers in theta
import { optimizerStateFloats } from './optimizers.js';
import type { InversionSettings } from './settings.js';

const bytesPerFloat = 4;

/** The model's sizes that a run's buffers depend on. */
export interface ModelShape {
  nEmbd: number; // C
  vocabSize: number; // V
}

/** Return P for settings and a target of `targetTokens` tokens (full without P: one vector per target token). */
export function promptVectorsOf(settings: InversionSettings, targetTokens: number): number {
  const p = settings.parameterization;
  return p.kind === 'full' ? p.promptVectors ?? targetTokens : 1;
}

/**
 * Return the bytes one restart holds from its start to its result: theta, its gradient and the best theta (n numbers
 * each), the optimizer's state (the buffers its registry entry allocates), a projected basis (n x C), the prompt and
 * its gradient row (P x C each), and for a beam hit check K prompt copies and K rows of log-probabilities
 * (K x (P x C + V)).
 */
export function runBytes(settings: InversionSettings, targetTokens: number, model: ModelShape): number {
  const C = model.nEmbd;
  const P = promptVectorsOf(settings, targetTokens);
  const p = settings.parameterization;
  const shape = p.kind === 'full' ? [P, C] : p.kind === 'flat' ? [C] : [p.dims]; // theta's, as the parameterization's
  const n = shape.reduce((a, b) => a * b, 1);
  const moments = optimizerStateFloats(settings.optimizer, shape); // Adam: m and v (2n); RMSProp, SGD: n
  const basis = p.kind === 'projected' ? p.dims * C : 0;
  const beams = settings.decode.kind === 'beam' ? settings.decode.beams : 0;
  const floats = 3 * n + moments + basis + 2 * P * C + beams * (P * C + model.vocabSize);
  return floats * bytesPerFloat;
}

/** Return the bytes all of a job's restarts hold. */
export function jobBytes(settings: InversionSettings, targetTokens: number, model: ModelShape): number {
  return settings.restarts * runBytes(settings, targetTokens, model);
}

/** Format bytes for an error message or a log line: "2.5 MiB". */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${Number(value.toFixed(unit === 0 ? 0 : 2))} ${units[unit]}`;
}

/** Parse "64MiB", "2 GiB", "500KB", "1048576" into bytes; throws naming `field` for anything else. */
export function parseBytes(text: string, field: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)?\s*$/i.exec(text);
  if (!match) {
    throw new RangeError(`${field}: ${JSON.stringify(text)} is not a size; write bytes with an optional unit ` +
      '(B, KiB, MiB, GiB, TiB; KB, MB, GB, TB are powers of 1000)');
  }
  const value = Number(match[1]);
  const unit = (match[2] ?? 'B').toLowerCase();
  const scale: Record<string, number> = {
    b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40,
  };
  return Math.round(value * scale[unit]!);
}
