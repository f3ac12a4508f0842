// The engine against Hugging Face transformers: the fixture's reference.json holds what GPT2LMHeadModel and
// torch autograd computed for two cases. Checked through the library and through `recite eval`.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { EvalCaseResult } from '../../server/engine/evaluate.js';
import { evaluateCases, parseEvalCases } from '../../server/engine/evaluate.js';
import type { Gpt2Model } from '../../server/model/gpt2-session.js';
import { loadGpt2 } from '../../server/model/gpt2-session.js';
import { checkTensor } from '../helpers/tensor-check.js';

const fixtureDir = path.resolve('test/fixtures/tiny-gpt2');
const reference = JSON.parse(fs.readFileSync(path.join(fixtureDir, 'reference.json'), 'utf8')) as {
  cases: (EvalCaseResult & { name: string })[];
};
const cliPath = path.resolve('dist/cli/main.js');

function expectMatchesReference(results: readonly EvalCaseResult[], label: string): void {
  expect(results.map((r) => r.name)).toEqual(reference.cases.map((c) => c.name));
  results.forEach((actual, i) => {
    const expected = reference.cases[i]!;
    const name = `${label} ${expected.name}`;
    expect(checkTensor(`${name} nll_per_token`, actual.nll_per_token.flat(), expected.nll_per_token.flat())).toBeLessThan(1e-4);
    expect(checkTensor(`${name} nll_sum`, actual.nll_sum, expected.nll_sum)).toBeLessThan(1e-4);
    expect(checkTensor(`${name} grad_prompt`, actual.grad_prompt.flat(2), expected.grad_prompt.flat(2))).toBeLessThan(1e-3);
    expect(actual.argmax_ids, `${name} argmax_ids`).toEqual(expected.argmax_ids);
    expect(actual.greedy_ids, `${name} greedy_ids`).toEqual(expected.greedy_ids);
    expect(actual.beam4_ids, `${name} beam4_ids`).toEqual(expected.beam4_ids);
  });
}

describe('tiny-gpt2 against Hugging Face transformers', () => {
  let model: Gpt2Model;
  beforeAll(async () => {
    model = await loadGpt2(fixtureDir, 'cpu');
  });
  afterAll(async () => {
    await model.release();
  });

  test('the library reproduces reference.json for both cases', async () => {
    const cases = parseEvalCases(reference, model.checkpoint.config.nEmbd);
    expect(cases).toHaveLength(2);
    expectMatchesReference(await evaluateCases(model, cases), 'library');
  });

  test('the per-token NLL is not trivially small: a wrong weight would show', () => {
    // Guards the test itself: the reference values are large, so relative errors are meaningful.
    expect(Math.min(...reference.cases.flatMap((c) => c.nll_sum))).toBeGreaterThan(50);
  });
});

describe('recite eval', () => {
  test('writes reference-shaped results that match reference.json for both cases', () => {
    expect(fs.existsSync(cliPath), `${cliPath} is built by npm run build`).toBe(true);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-eval-'));
    const out = path.join(dir, 'out.json');
    execFileSync(process.execPath, [cliPath, 'eval', '--model', fixtureDir, '--cases',
      path.join(fixtureDir, 'reference.json'), '--out', out, '--device', 'cpu'], { stdio: 'pipe' });
    const written = JSON.parse(fs.readFileSync(out, 'utf8')) as { provider: string; cases: EvalCaseResult[] };
    expect(written.provider).toBe('cpu');
    expectMatchesReference(written.cases, 'recite eval');
  });

  test('names the case and field of a malformed cases file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-eval-'));
    const casesFile = path.join(dir, 'bad.json');
    fs.writeFileSync(casesFile, JSON.stringify({ cases: [{ name: 'short', prompt: [[[1, 2, 3]]], target_ids: [[1]] }] }));
    let stderr = '';
    try {
      execFileSync(process.execPath, [cliPath, 'eval', '--model', 'tiny', '--cases', casesFile, '--out',
        path.join(dir, 'o.json'), '--device', 'cpu'], { stdio: 'pipe' });
    } catch (error) {
      stderr = String((error as { stderr: Buffer }).stderr);
    }
    expect(stderr).toContain('cases[0] (short).prompt[0][0]: expected 32 finite numbers');
  });
});
