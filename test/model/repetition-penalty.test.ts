// The repetition penalty (Hugging Face's RepetitionPenaltyLogitsProcessor) in both graphs, against a plain
// reference written here from the model's raw logits: the gradient graph's NLL and teacher-forced argmax, its
// gradient against central finite differences of its own NLL, the decode graph's log-probabilities, and greedy
// decoding against a loop that applies the rule to the last logits. B = batch, P = prompt vectors, T = target tokens,
// C = channels, V = vocab.
import path from 'node:path';
import type ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { beamDecodeMany, greedyDecode, greedyDecodeMany } from '../../server/engine/decoders.js';
import { openSession } from '../../server/model/execution-provider.js';
import { buildGradientGraph } from '../../server/model/gpt2-graph.js';
import type { Gpt2Model } from '../../server/model/gpt2-session.js';
import { gradientGraphFeeds, loadGpt2 } from '../../server/model/gpt2-session.js';
import { ElemType } from '../../server/model/onnx-builder.js';
import { randomNormal } from '../../server/util/seeded-random.js';
import { finiteDifferenceError, maxAbsoluteError, maxRelativeError } from '../helpers/tensor-check.js';

const fixtureDir = path.resolve('test/fixtures/tiny-gpt2');
const eos = 50256;
let model: Gpt2Model;
let logitsSession: ort.InferenceSession;
let C: number;
let V: number;

beforeAll(async () => {
  model = await loadGpt2(fixtureDir, 'cpu');
  ({ nEmbd: C, vocabSize: V } = model.checkpoint.config);
  // The gradient graph with its raw (B, T, V) logits, before any penalty, as one more output: the reference's input.
  const graph = buildGradientGraph(model.checkpoint);
  graph.output('head.logits', 'raw_logits', ElemType.float, ['B', 'T', V]);
  logitsSession = (await openSession(graph.toBytes(), model.checkpoint.dir, 'cpu')).session;
});
afterAll(async () => {
  await logitsSession.release();
  await model.release();
});

/** Raw logits (T, V) of one prompt (P, C): row t is the next-token logits after prompt + ids[0 .. t-1]. */
async function rawLogits(prompt: Float32Array, P: number, ids: readonly number[]): Promise<Float32Array> {
  const { feeds } = gradientGraphFeeds(model.checkpoint, { prompt, promptVectors: P, targets: [ids] });
  const out = await logitsSession.run(feeds, ['raw_logits']);
  return out.raw_logits!.data as Float32Array;
}

/**
 * Hugging Face's rule on one position's logits (V), in float32 as torch computes it: each distinct earlier token's
 * logit is multiplied by theta if negative, divided by theta otherwise.
 */
function penalize(logits: Float32Array, earlier: readonly number[], theta: number): Float32Array {
  const out = Float32Array.from(logits);
  const th = Math.fround(theta);
  for (const id of new Set(earlier)) out[id] = out[id]! < 0 ? Math.fround(out[id]! * th) : Math.fround(out[id]! / th);
  return out;
}

function logSumExp(values: Float32Array): number {
  let max = -Infinity;
  for (const v of values) max = Math.max(max, v);
  let sum = 0;
  for (const v of values) sum += Math.exp(v - max);
  return max + Math.log(sum);
}

/** Index of the first largest value (torch.argmax's tie rule). */
function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

// Targets with repeats, among them a repeated target token itself (its own logit is penalized, so the backward's
// correction at the target entry is large), in one batch with two thetas and a padded row.
const P = 2;
const targets = [[464, 2068, 464, 464, 2068, 11, 464], [11, 11, 198, 11]];
const thetas = [1.3, 0.7];

describe('the gradient graph with a repetition penalty', () => {
  test('NLL and teacher-forced argmax match the rule applied to raw logits, and differ from no penalty', async () => {
    const prompt = randomNormal(targets.length * P * C, 0.3, 21);
    const run = await model.gradient.run({ prompt, promptVectors: P, targets, repetitionPenalty: thetas });
    const off = await model.gradient.run({ prompt, promptVectors: P, targets });
    const T = run.targetLength;
    for (let b = 0; b < targets.length; b++) {
      const y = targets[b]!;
      const logits = await rawLogits(prompt.subarray(b * P * C, (b + 1) * P * C), P, y); // (T_b, V)
      const nll: number[] = [];
      const ids: number[] = [];
      for (let t = 0; t < y.length; t++) {
        const row = penalize(logits.subarray(t * V, (t + 1) * V), y.slice(0, t), thetas[b]!);
        nll.push(logSumExp(row) - row[y[t]!]!);
        ids.push(argmax(row));
      }
      const graphNll = Array.from(run.nll.subarray(b * T, b * T + y.length));
      const error = maxRelativeError(graphNll, nll);
      console.log(`row ${b} (theta ${thetas[b]}): NLL max rel err ${error.toExponential(2)} against the reference`);
      expect(error).toBeLessThan(1e-5);
      expect(Array.from(run.argmaxIds.subarray(b * T, b * T + y.length))).toEqual(ids);
      // the penalty moved the NLL of the tokens that follow a repeat, by far more than the tolerance
      expect(maxAbsoluteError(graphNll, Array.from(off.nll.subarray(b * T, b * T + y.length)))).toBeGreaterThan(0.05);
    }
  });

  test('grad_prompt matches central finite differences of the graph\'s own summed NLL', async () => {
    const B = targets.length;
    const prompt = randomNormal(B * P * C, 0.3, 11);
    const loss = async (x: Float32Array) => {
      const out = await model.gradient.run({ prompt: x, promptVectors: P, targets, repetitionPenalty: thetas });
      return Array.from(out.nll).reduce((a, v) => a + v, 0);
    };
    const { gradPrompt } = await model.gradient.run({ prompt, promptVectors: P, targets, repetitionPenalty: thetas });
    const { gradPrompt: unpenalized } = await model.gradient.run({ prompt, promptVectors: P, targets });
    const gradNorm = Math.sqrt(gradPrompt.reduce((a, v) => a + v * v, 0));
    expect(gradNorm).toBeGreaterThan(1e-3);
    // The penalty changes the gradient well beyond the finite differences' tolerance below.
    expect(maxAbsoluteError(gradPrompt, unpenalized) / Math.max(...gradPrompt.map(Math.abs))).toBeGreaterThan(0.05);

    // As test/model/gradient-check.test.ts: directional derivatives along random directions (each row alone) and
    // along the gradient, and single coordinates; eps 1e-2, max |analytic - numeric| / max |analytic| < 1e-2.
    const eps = 1e-2;
    const directions: Float32Array[] = [];
    for (let b = 0; b < B; b++) {
      const d = new Float32Array(B * P * C);
      d.set(randomNormal(P * C, 1, 100 + b), b * P * C);
      directions.push(d);
    }
    directions.push(Float32Array.from(gradPrompt, (g) => g / gradNorm));
    const coordinates = [0, C + 3, P * C - 1, P * C + 5, 2 * P * C - 2];
    const { count, error } = await finiteDifferenceError(loss, prompt, gradPrompt, { directions, coordinates, eps });
    console.log(`thetas ${thetas.join(', ')}: ${count} derivatives, max |analytic - numeric| / max |analytic| = ${error.toExponential(2)}`);
    expect(error).toBeLessThan(1e-2);
  });

  test('a row at theta 1 beside a penalized row gets, bit for bit, what it gets with no penalty at all', async () => {
    const prompt = randomNormal(2 * P * C, 0.3, 5);
    const row = [464, 464, 2068, 464];
    const alone = await model.gradient.run({ prompt: prompt.subarray(P * C), promptVectors: P, targets: [row] });
    // The neighbour is penalized and longer: the run feeds K > 1 columns, all masked out for the theta-1 row.
    const together = await model.gradient.run({ prompt, promptVectors: P, targets: [[11, 11, 11, 198, 11, 11], row],
      repetitionPenalty: [1.3, 1] });
    const T = together.targetLength;
    expect(Array.from(together.nll.subarray(T, T + row.length))).toEqual(Array.from(alone.nll));
    expect(Array.from(together.gradPrompt.subarray(P * C))).toEqual(Array.from(alone.gradPrompt));
    expect(Array.from(together.argmaxIds.subarray(T, T + row.length))).toEqual(Array.from(alone.argmaxIds));
  });
});

describe('decoding with a repetition penalty', () => {
  const theta = 1.3;
  const steps = 10;
  const hidden = () => randomNormal(C, 0.2, 1001); // one prompt vector

  test('the decode graph\'s log-probabilities are the log-softmax of the penalized raw logits', async () => {
    const tokens = [464, 2068, 464, 11, 2068];
    const prompt = hidden();
    const logprobs = await model.decode.nextLogprobs(prompt, 1, [tokens], [theta]);
    const logits = await rawLogits(prompt, 1, [...tokens, 0]);
    const row = penalize(logits.subarray(tokens.length * V), tokens, theta);
    const lse = logSumExp(row);
    const expected = Array.from(row, (v) => v - lse);
    expect(maxAbsoluteError(logprobs, expected)).toBeLessThan(1e-5);
  });

  test('greedy decoding matches a reference loop, and the gradient graph\'s argmax of its output is that output', async () => {
    // The reference: forward (no penalty), the rule on the last logits, end-of-text suppressed, argmax, append.
    const prompt = hidden();
    const reference: number[] = [];
    for (let step = 0; step < steps; step++) {
      const logits = await rawLogits(prompt, 1, [...reference, 0]);
      const row = penalize(logits.subarray(reference.length * V), reference, theta);
      row[eos] = -Infinity;
      reference.push(argmax(row));
    }
    const [decoded] = await greedyDecodeMany(model.decode, [{ prompt, promptVectors: 1, steps, repetitionPenalty: theta }]);
    const plain = await greedyDecode(model.decode, prompt, 1, steps);
    console.log(`greedy at theta ${theta}: ${decoded!.join(' ')}; without a penalty: ${plain.join(' ')}`);
    expect(decoded).toEqual(reference);
    expect(plain).not.toEqual(reference); // the penalty decides something here
    // One beam is greedy search: the beam decoder applies the same penalty.
    const [beam] = await beamDecodeMany(model.decode, [{ prompt, promptVectors: 1, steps, beams: 1, repetitionPenalty: theta }]);
    expect(beam!.ids).toEqual(reference);

    // Teacher forcing the decoded text under the same penalty gives it back: the greedy hit check holds.
    const forced = await model.gradient.run({ prompt, promptVectors: 1, targets: [reference], repetitionPenalty: [theta] });
    expect(Array.from(forced.argmaxIds)).toEqual(reference);
    const unforced = await model.gradient.run({ prompt, promptVectors: 1, targets: [reference] });
    expect(Array.from(unforced.argmaxIds)).not.toEqual(reference);
  });
});
