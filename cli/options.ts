// Parsing of command-line values into engine settings; errors name the option, the value and what is allowed.
import fs from 'node:fs';
import { InvalidArgumentError } from 'commander';
import { beamCheckEveryDefault } from '../server/engine/settings.js';
import type { DecodeSettings, InitSettings, ParameterizationSettings } from '../server/engine/settings.js';
import { integerRange, isIntegerIn } from '../server/util/numbers.js';

/** Read the file a flag names; a file that cannot be read is an error naming the flag and the file. */
export function readFlagFile(option: string, file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (error: unknown) {
    throw new Error(`${option} ${file}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** Parse an integer in [min, max] (by default ≥ 1). */
export function positiveInteger(option: string, value: string, min = 1, max = Number.POSITIVE_INFINITY): number {
  const n = Number(value);
  if (value.trim() === '' || !isIntegerIn(n, min, max)) {
    throw new InvalidArgumentError(`${option} ${value}: expected ${integerRange(min, max)}`);
  }
  return n;
}

/** Parse a finite number > 0. */
export function positiveNumber(option: string, value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${option} ${value}: expected a number > 0`);
  return n;
}

/** Parse "1,2,3" into token ids. */
export function parseIdList(option: string, value: string): number[] {
  const ids = value.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (ids.length === 0 || !ids.every((id) => isIntegerIn(id, 0))) {
    throw new InvalidArgumentError(`${option} ${value}: expected comma-separated token ids`);
  }
  return ids;
}

/** Parse flat | full[:P] | projected:K[:random|pca]. */
export function parseParameterization(value: string): ParameterizationSettings {
  const [kind, a, b] = value.split(':');
  if (kind === 'flat' && a === undefined) return { kind: 'flat' };
  if (kind === 'full') return a === undefined ? { kind: 'full' } : { kind: 'full', promptVectors: positiveInteger('--param full:P', a) };
  if (kind === 'projected' && a !== undefined && (b === undefined || b === 'random' || b === 'pca')) {
    return { kind: 'projected', dims: positiveInteger('--param projected:K', a), basis: b ?? 'random' };
  }
  throw new InvalidArgumentError(`--param ${value}: expected flat, full, full:P or projected:K[:random|pca]`);
}

/** Parse random[:STD] | zeros | mean | text:TEXT. */
export function parseInit(value: string): InitSettings {
  const colon = value.indexOf(':');
  const kind = colon < 0 ? value : value.slice(0, colon);
  const arg = colon < 0 ? undefined : value.slice(colon + 1);
  if (kind === 'random') return arg === undefined ? { kind: 'random' } : { kind: 'random', std: positiveNumber('--init random:STD', arg) };
  if ((kind === 'zeros' || kind === 'mean') && arg === undefined) return { kind };
  if (kind === 'text' && arg) return { kind: 'text', text: arg };
  throw new InvalidArgumentError(`--init ${value}: expected random[:STD], zeros, mean or text:TEXT`);
}

/** Parse greedy | beam:N[:EVERY]. */
export function parseDecode(value: string): DecodeSettings {
  const [kind, n, every] = value.split(':');
  if (kind === 'greedy' && n === undefined) return { kind: 'greedy' };
  if (kind === 'beam' && n !== undefined) {
    return { kind: 'beam', beams: positiveInteger('--decode beam:N', n), every: every === undefined ? beamCheckEveryDefault : positiveInteger('--decode beam:N:EVERY', every) };
  }
  throw new InvalidArgumentError(`--decode ${value}: expected greedy or beam:N[:EVERY]`);
}
