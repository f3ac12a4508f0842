// Decoding from an embedding: what text does GPT-2 produce after the soft prompt alone?
// Greedy and beam search match Hugging Face transformers' generate() with min_new_tokens = max_new_tokens = steps:
// the end-of-text token is removed from the candidates at every step, and beams start from the one prompt.
// A request's repetition penalty (Hugging Face's RepetitionPenaltyLogitsProcessor, over the tokens it has produced)
// is applied by the decode graph to the logits before the log-softmax: greedy decoding is then generate()'s with
// repetition_penalty, and beams are ranked by the penalized log-probabilities the gradient graph's NLL is made of
// (generate()'s beam search applies the processor to log-probabilities instead, which is no distribution).
//
// P = prompt vectors, C = channels, V = vocab, K = beams
import { integerProblem } from '../util/numbers.js';

/**
 * The one thing decoding needs from the model: next-token log-probabilities for rows of equal length, each row's
 * logits penalized for its own tokens by its `repetitionPenalty` (unset or 1: off).
 */
export interface NextTokenModel {
  nextLogprobs(prompt: Float32Array, promptVectors: number, tokens: readonly (readonly number[])[],
    repetitionPenalty?: readonly number[]): Promise<Float32Array>; // (rows, V)
}

export interface DecodeOptions {
  /** Token ids never produced (HF's min_new_tokens suppresses end-of-text this way). */
  suppressTokenIds: readonly number[];
}

export const decodeDefaults: Readonly<DecodeOptions> = Object.freeze({ suppressTokenIds: [50256] });

/** One prompt to decode from: its (P, C) vectors, the number of tokens to produce and its repetition penalty. */
export interface DecodeRequest {
  prompt: Float32Array; // (P, C)
  promptVectors: number; // P
  steps: number;
  repetitionPenalty?: number; // theta; unset or 1: off
}

// Rows of one decode graph run at most, counted in log-probabilities held (rows × V): 16M floats = 64 MiB, so a
// batch of gpt2 beams (V = 50257) takes about 330 rows at once.
const maxLogprobsPerRun = 16 * 1024 * 1024;

/** Decode `steps` tokens greedily from one prompt (P, C). */
export async function greedyDecode(model: NextTokenModel, prompt: Float32Array, promptVectors: number, steps: number,
  options: DecodeOptions = decodeDefaults): Promise<number[]> {
  return (await greedyDecodeMany(model, [{ prompt, promptVectors, steps }], options))[0]!;
}

/**
 * Decode greedily from many prompts at once: at each step the rows of every prompt of one P that still has tokens
 * to produce share one decode graph run (rows are independent, so each prompt gets what it gets alone).
 */
export async function greedyDecodeMany(model: NextTokenModel, requests: readonly DecodeRequest[],
  options: DecodeOptions = decodeDefaults): Promise<number[][]> {
  const out = requests.map(() => [] as number[]);
  for (const group of byPromptVectors(requests)) {
    const P = group[0]!.request.promptVectors;
    const longest = Math.max(...group.map((g) => g.request.steps));
    for (let step = 0; step < longest; step++) {
      const live = group.filter((g) => g.request.steps > step);
      const rows = live.map((g) => ({ prompt: g.request.prompt, ids: out[g.index]!,
        penalty: g.request.repetitionPenalty }));
      const next: number[] = [];
      await forEachRow(model, P, rows, (logprobs, offset, V) => {
        next.push(argmaxExcluding(logprobs, offset, offset + V, options.suppressTokenIds));
      });
      live.forEach((g, r) => out[g.index]!.push(next[r]!));
    }
  }
  return out;
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
  return (await beamDecodeMany(model, [{ prompt, promptVectors, steps, beams: numBeams }], options))[0]!;
}

/**
 * Beam-search many prompts at once: at each step the beams of every prompt of one P that still has tokens to
 * produce share one decode graph run (B × beams rows); each prompt keeps its own K best, so it gets what it gets
 * alone.
 */
export async function beamDecodeMany(model: NextTokenModel, requests: readonly (DecodeRequest & { beams: number })[],
  options: DecodeOptions = decodeDefaults): Promise<BeamResult[]> {
  for (const r of requests) {
    const problem = integerProblem(r.beams, 1);
    if (problem) throw new RangeError(`beams: ${problem}`);
  }
  const beams = requests.map(() => [{ ids: [] as number[], logprob: 0 }]);
  for (const group of byPromptVectors(requests)) {
    const P = group[0]!.request.promptVectors;
    const longest = Math.max(...group.map((g) => g.request.steps));
    for (let step = 0; step < longest; step++) {
      const live = group.filter((g) => g.request.steps > step);
      const rows = live.flatMap((g) => beams[g.index]!.map((beam, b) => ({ prompt: g.request.prompt, ids: beam.ids,
        penalty: g.request.repetitionPenalty, g, b })));
      const best = new Map(live.map((g) => [g.index, new TopK(g.request.beams)]));
      let V = 0;
      let suppressed: Uint8Array | undefined; // (V) 1 for a token never produced: a lookup per candidate, not a Set's
      await forEachRow(model, P, rows, (logprobs, offset, vocab, r) => {
        // Keep the best K (beam, token) continuations of this row's prompt by summed log-probability.
        V = vocab;
        suppressed ??= suppressionMask(V, options.suppressTokenIds);
        const { g, b } = rows[r]!;
        const topK = best.get(g.index)!;
        const base = beams[g.index]![b]!.logprob;
        // Only candidates above the current K-th best can enter: a plain comparison per token, the call for few.
        let floor = topK.floor();
        for (let v = 0; v < V; v++) {
          const score = base + logprobs[offset + v]!;
          if (score <= floor || suppressed[v] === 1) continue;
          topK.offer(score, b * V + v);
          floor = topK.floor();
        }
      });
      for (const g of live) {
        const previous = beams[g.index]!;
        beams[g.index] = best.get(g.index)!.sorted().map(({ score, index }) => {
          const r = Math.floor(index / V);
          return { ids: [...previous[r]!.ids, index % V], logprob: score };
        });
      }
    }
  }
  return beams.map((b) => ({ ids: b[0]!.ids, logprob: b[0]!.logprob, beams: b }));
}

function suppressionMask(V: number, ids: readonly number[]): Uint8Array {
  const mask = new Uint8Array(V);
  for (const id of ids) if (id >= 0 && id < V) mask[id] = 1;
  return mask;
}

// Requests grouped by P (one decode graph run holds one P), each with its index in the request list.
function byPromptVectors<R extends DecodeRequest>(requests: readonly R[]): { request: R; index: number }[][] {
  const groups = new Map<number, { request: R; index: number }[]>();
  requests.forEach((request, index) => {
    if (request.steps < 1) return;
    const group = groups.get(request.promptVectors) ?? [];
    group.push({ request, index });
    groups.set(request.promptVectors, group);
  });
  return [...groups.values()];
}

/** One row of a decode graph run: a prompt (P, C), its tokens so far and the penalty for repeating them. */
interface DecodeRow {
  prompt: Float32Array;
  ids: readonly number[];
  penalty: number | undefined;
}

/**
 * Run the decode graph over rows of equal token count, in chunks that bound the log-probabilities held, and hand
 * each row's (V) log-probabilities to `visit` in row order.
 */
async function forEachRow(model: NextTokenModel, P: number, rows: readonly DecodeRow[],
  visit: (logprobs: Float32Array, offset: number, V: number, row: number) => void): Promise<void> {
  let chunk = Math.min(rows.length, 256);
  for (let start = 0; start < rows.length; start += chunk) {
    const part = rows.slice(start, start + chunk);
    const size = part[0]!.prompt.length;
    const prompts = new Float32Array(size * part.length); // (rows, P, C)
    part.forEach((row, r) => prompts.set(row.prompt, r * size));
    const penalties = part.some((row) => (row.penalty ?? 1) !== 1) ? part.map((row) => row.penalty ?? 1) : undefined;
    const logprobs = await model.nextLogprobs(prompts, P, part.map((row) => row.ids), penalties); // (rows, V)
    const V = logprobs.length / part.length;
    part.forEach((_, r) => visit(logprobs, r * V, V, start + r));
    // V is known after the first run: keep the later ones within the bound.
    chunk = Math.max(1, Math.floor(maxLogprobsPerRun / V));
  }
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

  /** The score a candidate must beat to enter (−Infinity until K are held). */
  floor(): number {
    return this.items.length === this.k ? this.items[this.items.length - 1]!.score : -Infinity;
  }

  sorted(): { score: number; index: number }[] {
    return this.items;
  }
}
