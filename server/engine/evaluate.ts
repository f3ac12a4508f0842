// Evaluate fixed cases (prompt embeddings + target ids) through the engine: the numbers `recite eval` writes,
// in the conventions of the reference fixture's reference.json so the two compare field by field.
import type { Gpt2Model } from '../model/gpt2-session.js';
import { beamDecode, greedyDecode } from './decoders.js';

/** One case: B rows sharing P and T. Extra fields (expected outputs) are ignored. */
export interface EvalCase {
  name: string;
  prompt: number[][][]; // (B, P, C)
  target_ids: number[][]; // (B, T)
}

export interface EvalCaseResult {
  name: string;
  nll_per_token: number[][]; // (B, T) natural log
  nll_sum: number[]; // (B)
  grad_prompt: number[][][]; // (B, P, C) d(sum_t nll) / d prompt
  argmax_ids: number[][]; // (B, T) teacher-forced
  greedy_ids: number[][]; // (B, T) free-running greedy, no end-of-text
  beam4_ids: number[][]; // (B, T) 4 beams, best beam
}

/** Raised for a cases file that does not have the reference shape; names the case and field. */
export class EvalCaseError extends Error {
  override name = 'EvalCaseError';
}

/** Check that parsed JSON holds `cases[]` in the reference shape and return them. */
export function parseEvalCases(json: unknown, C: number): EvalCase[] {
  const cases = (json as { cases?: unknown })?.cases;
  if (!Array.isArray(cases)) throw new EvalCaseError('cases file: expected an object with a "cases" array');
  return cases.map((c: unknown, i) => {
    const entry = c as Partial<EvalCase>;
    const label = `cases[${i}]${typeof entry?.name === 'string' ? ` (${entry.name})` : ''}`;
    if (typeof entry?.name !== 'string') throw new EvalCaseError(`${label}.name: expected a string`);
    if (!Array.isArray(entry.prompt) || entry.prompt.length === 0) {
      throw new EvalCaseError(`${label}.prompt: expected a non-empty (B, P, C) array`);
    }
    if (!Array.isArray(entry.target_ids) || entry.target_ids.length !== entry.prompt.length) {
      throw new EvalCaseError(`${label}.target_ids: expected B = ${entry.prompt.length} rows`);
    }
    const P = entry.prompt[0]?.length ?? 0;
    entry.prompt.forEach((row, b) => {
      if (!Array.isArray(row) || row.length !== P || P === 0) {
        throw new EvalCaseError(`${label}.prompt[${b}]: expected P = ${P} vectors`);
      }
      row.forEach((vec, p) => {
        if (!Array.isArray(vec) || vec.length !== C || !vec.every(Number.isFinite)) {
          throw new EvalCaseError(`${label}.prompt[${b}][${p}]: expected ${C} finite numbers (the model's n_embd)`);
        }
      });
    });
    const T = entry.target_ids[0]?.length ?? 0;
    entry.target_ids.forEach((row, b) => {
      if (!Array.isArray(row) || row.length !== T || T === 0) {
        throw new EvalCaseError(`${label}.target_ids[${b}]: expected T = ${T} ids`);
      }
    });
    return { name: entry.name, prompt: entry.prompt, target_ids: entry.target_ids };
  });
}

/** Run every case: NLL, gradient and teacher-forced argmax in one batched graph run, then greedy and beam decoding. */
export async function evaluateCases(model: Gpt2Model, cases: readonly EvalCase[]): Promise<EvalCaseResult[]> {
  const results: EvalCaseResult[] = [];
  for (const c of cases) {
    const B = c.prompt.length;
    const P = c.prompt[0]!.length;
    const C = model.checkpoint.config.nEmbd;
    const prompt = Float32Array.from(c.prompt.flat(2));
    const run = await model.gradient.run({ prompt, promptVectors: P, targets: c.target_ids });
    const T = run.targetLength;
    const rows = <A extends ArrayLike<number>>(data: A, width: number) =>
      Array.from({ length: B }, (_, b) => Array.from(data).slice(b * width, (b + 1) * width));
    const nll = rows(run.nll, T);
    const greedy: number[][] = [];
    const beam: number[][] = [];
    for (let b = 0; b < B; b++) {
      const rowPrompt = prompt.subarray(b * P * C, (b + 1) * P * C);
      greedy.push(await greedyDecode(model.decode, rowPrompt, P, T));
      beam.push((await beamDecode(model.decode, rowPrompt, P, T, 4)).ids);
    }
    results.push({
      name: c.name,
      nll_per_token: nll,
      nll_sum: nll.map((r) => r.reduce((a, x) => a + x, 0)),
      grad_prompt: rows(run.gradPrompt, P * C).map((r) => Array.from({ length: P }, (_, p) => r.slice(p * C, (p + 1) * C))),
      argmax_ids: rows(run.argmaxIds, T),
      greedy_ids: greedy,
      beam4_ids: beam,
    });
  }
  return results;
}
