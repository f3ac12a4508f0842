// Decoding from an embedding: what text does GPT-2 produce after the soft prompt alone?
// Greedy and beam search match Hugging Face transformers' generate() with min_new_tokens = max_new_tokens = steps:
// the end-of-text token is removed from the candidates at every step, and beams start from the one prompt.
//
// P = prompt vectors, C = channels, V = vocab, K = beams

/** The one thing decoding needs from the model: next-token log-probabilities for rows of equal length. */
export interface NextTokenModel {
  nextLogprobs(prompt: Float32Array, promptVectors: number, tokens: readonly (readonly number[])[]):
    Promise<Float32Array>; // (rows, V)
}

export interface DecodeOptions {
  /** Token ids never produced (HF's min_new_tokens suppresses end-of-text this way). */
  suppressTokenIds: readonly number[];
}

export const decodeDefaults: Readonly<DecodeOptions> = Object.freeze({ suppressTokenIds: [50256] });

/** Decode `steps` tokens greedily from one prompt (P, C). */
export async function greedyDecode(model: NextTokenModel, prompt: Float32Array, promptVectors: number, steps: number,
  options: DecodeOptions = decodeDefaults): Promise<number[]> {
  const tokens: number[] = [];
  for (let step = 0; step < steps; step++) {
    const logprobs = await model.nextLogprobs(prompt, promptVectors, [tokens]); // (1, V)
    tokens.push(argmaxExcluding(logprobs, 0, logprobs.length, options.suppressTokenIds));
  }
  return tokens;
}

export interface BeamResult {
  ids: number[]; // the best beam's `steps` tokens
  logprob: number; // its summed log-probability
  beams: { ids: number[]; logprob: number }[]; // all K final beams, best first
}

/**
 * Decode `steps` tokens with K-beam search from one prompt (P, C). Every beam has the same length, so HF's length
 * penalty (score / length^penalty) does not change the order: the best beam is the one with the highest summed
 * log-probability.
 */
export async function beamDecode(model: NextTokenModel, prompt: Float32Array, promptVectors: number, steps: number,
  numBeams: number, options: DecodeOptions = decodeDefaults): Promise<BeamResult> {
  if (!Number.isInteger(numBeams) || numBeams < 1) throw new RangeError(`beams: ${numBeams} is not an integer ≥ 1`);
  const suppressed = new Set(options.suppressTokenIds);
  let beams: { ids: number[]; logprob: number }[] = [{ ids: [], logprob: 0 }];
  for (let step = 0; step < steps; step++) {
    const rows = beams.length;
    const prompts = repeatPrompt(prompt, rows);
    const logprobs = await model.nextLogprobs(prompts, promptVectors, beams.map((b) => b.ids)); // (rows, V)
    const V = logprobs.length / rows;
    // Keep the best K (beam, token) continuations by summed log-probability.
    const best = new TopK(numBeams);
    for (let r = 0; r < rows; r++) {
      const base = beams[r]!.logprob;
      for (let v = 0; v < V; v++) {
        if (suppressed.has(v)) continue;
        best.offer(base + logprobs[r * V + v]!, r * V + v);
      }
    }
    beams = best.sorted().map(({ score, index }) => {
      const r = Math.floor(index / V);
      return { ids: [...beams[r]!.ids, index % V], logprob: score };
    });
  }
  return { ids: beams[0]!.ids, logprob: beams[0]!.logprob, beams };
}

function repeatPrompt(prompt: Float32Array, rows: number): Float32Array {
  const out = new Float32Array(prompt.length * rows);
  for (let r = 0; r < rows; r++) out.set(prompt, r * prompt.length);
  return out;
}

function argmaxExcluding(values: Float32Array, start: number, end: number, excluded: readonly number[]): number {
  let best = -1;
  let bestValue = -Infinity;
  for (let i = start; i < end; i++) {
    const v = values[i]!;
    // strict >: the first of equal maxima wins, as torch.argmax
    if (v > bestValue && !excluded.includes(i - start)) {
      best = i - start;
      bestValue = v;
    }
  }
  return best;
}

/** The K largest scores seen, ties kept in order of arrival (lower index first, as a stable sort would). */
class TopK {
  private readonly items: { score: number; index: number }[] = [];
  constructor(private readonly k: number) {}

  offer(score: number, index: number): void {
    const items = this.items;
    if (items.length === this.k && score <= items[items.length - 1]!.score) return;
    let at = items.length;
    while (at > 0 && items[at - 1]!.score < score) at--;
    items.splice(at, 0, { score, index });
    if (items.length > this.k) items.pop();
  }

  sorted(): { score: number; index: number }[] {
    return this.items;
  }
}
