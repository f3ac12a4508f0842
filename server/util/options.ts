// The options pattern's merge, shared by every `makeXOptions`: defaults, overridden by the caller's values,
// refusing names the defaults do not have (a misspelt option would otherwise be silently ignored).

/** Merge `partial` over `defaults`, skipping undefined values and rejecting names the defaults do not have. */
export function mergeOptions<T extends object>(op: string, defaults: Readonly<T>, partial: Partial<T>): Readonly<T> {
  const merged: Record<string, unknown> = { ...defaults };
  for (const [key, value] of Object.entries(partial)) {
    if (!Object.hasOwn(defaults, key)) {
      throw new RangeError(`${op}: unknown option ${key}; known options are ${Object.keys(defaults).join(', ')}`);
    }
    if (value !== undefined) merged[key] = value;
  }
  return Object.freeze(merged) as Readonly<T>;
}

/** Throw a RangeError unless `value` is a finite number ≥ 0. */
export function checkNonNegative(op: string, name: string, value: number): void {
  if (!(value >= 0) || !Number.isFinite(value)) {
    throw new RangeError(`${op}: ${name} is ${value}; it must be a finite number >= 0`);
  }
}
