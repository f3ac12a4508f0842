// A small seeded random source for benchmark inputs: the same seed gives the same prompts and targets on every
// machine, so two bench runs time the same work.

/** Draw uniform, normal and integer samples from one seeded stream. */
export interface SeededRandom {
  /** Return a uniform sample in [0, 1). */
  uniform(): number;
  /** Return an integer in [0, limit). */
  int(limit: number): number;
  /** Fill `out` with normal samples of mean 0 and standard deviation `std`; returns `out`. */
  fillNormal(out: Float32Array, std: number): Float32Array;
}

/** Create a seeded stream (mulberry32: tiny and fast, ample for inputs that only need to look random). */
export function createSeededRandom(seed: number): SeededRandom {
  let state = seed >>> 0;
  const uniform = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
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

/** Derive a seed for one part of a run from the run's seed and the part's coordinates. */
export function deriveSeed(seed: number, ...parts: readonly number[]): number {
  let hash = Math.imul((seed >>> 0) ^ 0x9e3779b9, 0x85ebca6b) >>> 0;
  for (const part of parts) {
    hash = Math.imul(hash ^ (part >>> 0), 0xc2b2ae35);
    hash ^= hash >>> 16;
  }
  return hash >>> 0;
}
