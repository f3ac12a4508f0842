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

/**
 * Check `gradPrompt` against central finite differences of `loss` at `prompt`: the derivative along each direction
 * (scaled to unit length) and along each single coordinate, with step `eps`. Returns how many derivatives were
 * compared and max |analytic - numeric| / max |analytic|.
 */
export async function finiteDifferenceError(loss: (x: Float32Array) => Promise<number>, prompt: Float32Array,
  gradPrompt: Float32Array, checks: { directions: readonly Float32Array[]; coordinates: readonly number[]; eps: number }):
  Promise<{ count: number; error: number }> {
  const { eps } = checks;
  const central = async (step: (x: number, i: number, sign: number) => number) =>
    ((await loss(prompt.map((x, i) => step(x, i, 1)))) - (await loss(prompt.map((x, i) => step(x, i, -1))))) / (2 * eps);
  const analytic: number[] = [];
  const numeric: number[] = [];
  for (const d of checks.directions) {
    const norm = Math.sqrt(d.reduce((a, v) => a + v * v, 0));
    const u = d.map((v) => v / norm);
    numeric.push(await central((x, i, sign) => x + sign * eps * u[i]!));
    analytic.push(gradPrompt.reduce((a, g, i) => a + g * u[i]!, 0));
  }
  for (const j of checks.coordinates) {
    numeric.push(await central((x, i, sign) => (i === j ? x + sign * eps : x)));
    analytic.push(gradPrompt[j]!);
  }
  return { count: analytic.length, error: maxRelativeError(numeric, analytic) };
}
