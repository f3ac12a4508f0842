// The shipped english model through recite's gradient graph against an independent PyTorch implementation
// (test/model/torch_reference.py, which reproduces the tiny fixture's transformers outputs first): the outputs in
// test/fixtures/english-reference.json were computed for this very model file (its sha256 is checked).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { evaluateCases, parseEvalCases } from '../../server/engine/evaluate.js';
import { resolveModelDir } from '../../server/model/builtin-models.js';
import type { Gpt2Model } from '../../server/model/gpt2-session.js';
import { loadGpt2 } from '../../server/model/gpt2-session.js';
import { checkTensor } from '../helpers/tensor-check.js';

const modelDir = resolveModelDir('english');
const reference = JSON.parse(fs.readFileSync(path.resolve('test/fixtures/english-reference.json'), 'utf8')) as {
  model_sha256: string;
  cases: { name: string; nll_per_token: number[][]; grad_prompt: number[][][]; argmax_ids: number[][] }[];
};

describe('the english model: recite against plain PyTorch', () => {
  let model: Gpt2Model;
  beforeAll(async () => {
    model = await loadGpt2(modelDir, 'cpu');
  });
  afterAll(async () => {
    await model?.release();
  });

  test('the reference was computed for the model file that ships', () => {
    const sha256 = createHash('sha256').update(fs.readFileSync(path.join(modelDir, 'model.safetensors'))).digest('hex');
    expect(sha256).toBe(reference.model_sha256);
  });

  test('NLL, gradient to the prompt and argmax ids match for every case', async () => {
    const results = await evaluateCases(model, parseEvalCases(reference, model.checkpoint.config.nEmbd));
    expect(results.map((r) => r.name)).toEqual(reference.cases.map((c) => c.name));
    results.forEach((actual, i) => {
      const expected = reference.cases[i]!;
      expect(checkTensor(`${expected.name} nll`, actual.nll_per_token.flat(), expected.nll_per_token.flat())).toBeLessThan(1e-4);
      expect(checkTensor(`${expected.name} grad`, actual.grad_prompt.flat(2), expected.grad_prompt.flat(2))).toBeLessThan(1e-3);
      expect(actual.argmax_ids, `${expected.name} argmax`).toEqual(expected.argmax_ids);
    });
  });
});
