// Study grids: "optimizer=rmsprop,adam lr=0.03,0.1,0.3 param=flat,full seeds=5" is the cross product of the
// listed values of each settings flag (in the order written), each run with every seed.
import { Command } from 'commander';
import { integerProblem, integerRange, isIntegerIn } from '../../server/util/numbers.js';
import { addSettingsOptions } from '../settings-options.js';
import type { SettingsFlags } from '../settings-options.js';

/** One point of the grid: the flags it sets and its label ("optimizer=adam lr=0.1 param=flat"). */
export interface GridSetting {
  label: string;
  /** Grid key → value, in the grid's order. */
  values: Record<string, string>;
  flags: Partial<SettingsFlags>;
}

/** A parsed grid. */
export interface Grid {
  /** The keys that vary, in the order written. */
  keys: string[];
  settings: GridSetting[];
  seeds: number[];
}

/** Report a grid that cannot be parsed, naming the part and what is allowed. */
export class GridError extends Error {
  override name = 'GridError';
}

// Grid keys are the settings flags without their dashes, read from the flags themselves (settings-options.ts), so a
// setting added there is a grid key too; `seed` is the grid's own (a list of seeds).
const settingsFlags = addSettingsOptions(new Command()).options.filter((o) => o.long !== '--seed');
const flagOf: Record<string, keyof SettingsFlags> = Object.fromEntries(
  settingsFlags.map((o) => [o.long!.slice(2), o.attributeName() as keyof SettingsFlags]));
const booleanKeys = new Set(settingsFlags.filter((o) => o.isBoolean()).map((o) => o.long!.slice(2)));

/** Parse a grid; `seeds=N` runs seeds firstSeed … firstSeed+N−1, `seed=A,B,…` the seeds listed (default: firstSeed). */
export function parseGrid(spec: string, firstSeed = 0): Grid {
  const axes: { key: string; values: string[] }[] = [];
  let seeds = [firstSeed];
  for (const part of spec.trim().split(/\s+/).filter(Boolean)) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    const values = eq < 0 ? [] : part.slice(eq + 1).split(',').filter((v) => v !== '');
    if (values.length === 0) throw new GridError(`--grid: "${part}" has no values; write KEY=V1,V2,…`);
    if (key === 'seeds') {
      const n = Number(values[0]);
      if (values.length !== 1 || !isIntegerIn(n, 1)) throw new GridError(`--grid: seeds=${values.join(',')}: expected a count, ${integerRange(1)} (or seed=A,B,… for a list)`);
      seeds = Array.from({ length: n }, (_, i) => firstSeed + i);
    } else if (key === 'seed') {
      seeds = values.map((v) => {
        const s = Number(v);
        const problem = integerProblem(s, 0, 2 ** 32 - 1);
        if (problem) throw new GridError(`--grid: seed ${v}: ${problem}`);
        return s;
      });
    } else {
      if (!Object.hasOwn(flagOf, key)) {
        throw new GridError(`--grid: unknown key "${key}"; keys: ${[...Object.keys(flagOf), 'seeds', 'seed'].join(', ')}`);
      }
      if (axes.some((a) => a.key === key)) throw new GridError(`--grid: "${key}" is given twice`);
      if (booleanKeys.has(key) && !values.every((v) => v === 'true' || v === 'false')) {
        throw new GridError(`--grid: ${key}=${values.join(',')}: expected true or false`);
      }
      axes.push({ key, values: [...new Set(values)] });
    }
  }
  let points: Record<string, string>[] = [{}];
  for (const axis of axes) points = points.flatMap((p) => axis.values.map((v) => ({ ...p, [axis.key]: v })));
  const settings = points.map((values) => ({
    label: Object.entries(values).map(([k, v]) => `${k}=${v}`).join(' ') || 'default',
    values,
    flags: Object.fromEntries(Object.entries(values).map(([k, v]) => [flagOf[k], booleanKeys.has(k) ? v === 'true' : v])) as Partial<SettingsFlags>,
  }));
  return { keys: axes.map((a) => a.key), settings, seeds: [...new Set(seeds)] };
}
