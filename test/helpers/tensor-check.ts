// Compare tensors the way the reference fixture states its tolerances, and say by how much they differ.

/** Return max |a - b| / max |b| (the gradient tolerance's definition). */
export function maxRelativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) {
    throw new Error(`length ${actual.length} differs from the expected ${expected.length}`);
  }
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i]! - expected[i]!));
    maxRef = Math.max(maxRef, Math.abs(expected[i]!));
  }
  return maxRef === 0 ? maxDiff : maxDiff / maxRef;
}

/** Return max |a - b|. */
export function maxAbsoluteError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) {
    throw new Error(`length ${actual.length} differs from the expected ${expected.length}`);
  }
  let maxDiff = 0;
  for (let i = 0; i < expected.length; i++) maxDiff = Math.max(maxDiff, Math.abs(actual[i]! - expected[i]!));
  return maxDiff;
}

/** Print a labelled difference (visible with vitest's console output) and return it for an assertion. */
export function checkTensor(label: string, actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  const rel = maxRelativeError(actual, expected);
  console.log(`${label}: max rel err ${rel.toExponential(2)} over ${expected.length} values`);
  return rel;
}
