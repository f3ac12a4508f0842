// One check for the integers that arrive from outside (flags, requests, tokens files, stored snapshots) and one
// wording of their range, so that "3 is not an integer in [1, 2]" reads the same from the CLI, the API and the engine.
// Each caller wraps the reason in its own error (SettingsError, ConnectError, InvalidArgumentError, RangeError).

/** "an integer ≥ 1", "an integer in [0, 65535]". */
export function integerRange(min: number, max = Number.POSITIVE_INFINITY): string {
  return max === Number.POSITIVE_INFINITY ? `an integer ≥ ${min}` : `an integer in [${min}, ${max}]`;
}

/** Whether `value` is an integer in [min, max]. */
export function isIntegerIn(value: unknown, min: number, max = Number.POSITIVE_INFINITY): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

/** "0 is not an integer ≥ 1" (a string value quoted), or undefined when `value` is an integer in [min, max]. */
export function integerProblem(value: unknown, min: number, max = Number.POSITIVE_INFINITY): string | undefined {
  if (isIntegerIn(value, min, max)) return undefined;
  return `${typeof value === 'string' ? JSON.stringify(value) : String(value)} is not ${integerRange(min, max)}`;
}

/** The problem of the first value of `values` that is not an integer in [min, max], or undefined. */
export function firstIntegerProblem(values: readonly unknown[], min: number, max = Number.POSITIVE_INFINITY): string | undefined {
  for (const value of values) {
    const problem = integerProblem(value, min, max);
    if (problem) return problem;
  }
  return undefined;
}

/** "50257 is outside the vocabulary 0..50256", or undefined for a token id of a vocabulary of `vocabSize`. */
export function tokenIdProblem(id: unknown, vocabSize: number): string | undefined {
  return isIntegerIn(id, 0, vocabSize - 1) ? undefined : `${String(id)} is outside the vocabulary 0..${vocabSize - 1}`;
}
