// Seeded random numbers: a run started with the same seed draws the same numbers on every machine, so an
// initialization, a random basis, a random checkpoint or a benchmark's inputs are reproducible bit for bit.

/** Return a uniform generator on [0, 1) (mulberry32: tiny, fast, ample for values that only need to look random). */
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

/** Draw uniform, integer and normal samples from one seeded stream. */
export interface SeededRandom {
  /** Return a uniform sample in [0, 1). */
  uniform(): number;
  /** Return an integer in [0, limit). */
  int(limit: number): number;
  /** Fill `out` with normal samples of mean 0 and standard deviation `std`; returns `out`. */
  fillNormal(out: Float32Array, std: number): Float32Array;
}

/** Create one seeded stream. */
export function createSeededRandom(seed: number): SeededRandom {
  const uniform = seededUniform(seed);
  return {
    uniform,
    int: (limit) => Math.floor(uniform() * limit),
    fillNormal(out, std) {
      // Box-Muller: two uniforms give two independent normals.
      for (let i = 0; i < out.length; i += 2) {
        const radius = std * Math.sqrt(-2 * Math.log(1 - uniform())); // 1 - u is in (0, 1]: the log is finite
        const angle = 2 * Math.PI * uniform();
        out[i] = radius * Math.cos(angle);
        if (i + 1 < out.length) out[i + 1] = radius * Math.sin(angle);
      }
      return out;
    },
  };
}

/** Fill `out` with normal samples of standard deviation `std` from a fresh stream seeded with `seed`. */
export function fillNormal(out: Float32Array, std: number, seed: number): Float32Array {
  return createSeededRandom(seed).fillNormal(out, std);
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

/** Derive a seed for one part of a run from the run's seed and the part's coordinates. */
export function deriveSeed(seed: number, ...parts: readonly number[]): number {
  return parts.reduce(mixSeeds, seed >>> 0);
}
