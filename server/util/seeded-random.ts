// Seeded random numbers: a run started with the same seed draws the same numbers on every machine, so an
// initialization or a random basis is reproducible bit for bit.

/** Return a uniform generator on [0, 1) (mulberry32: tiny, fast, ample for initial values and test inputs). */
export function seededUniform(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fill `out` with normal samples of standard deviation `std` (Box-Muller over seededUniform). */
export function fillNormal(out: Float32Array, std: number, seed: number): Float32Array {
  const uniform = seededUniform(seed);
  for (let i = 0; i < out.length; i += 2) {
    const u1 = 1 - uniform(); // in (0, 1], so the log is finite
    const u2 = uniform();
    const radius = std * Math.sqrt(-2 * Math.log(u1));
    out[i] = radius * Math.cos(2 * Math.PI * u2);
    if (i + 1 < out.length) out[i + 1] = radius * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

/** Return `length` normal samples of standard deviation `std`. */
export function randomNormal(length: number, std: number, seed: number): Float32Array {
  return fillNormal(new Float32Array(length), std, seed);
}

/** Mix two 32-bit values into one seed (so per-tensor or per-restart seeds derive from one user seed). */
export function mixSeeds(a: number, b: number): number {
  let h = Math.imul((a >>> 0) ^ 0x9e3779b9, 0x85ebca6b) ^ b;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
