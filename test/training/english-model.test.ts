// The built-in english model as a user meets it: held-out English scores far better than the same words shuffled
// (through `recite corpus sentences` and `recite score`), the README's first command hits, and the model card's
// figures were measured on the model file that ships.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import { resolveModelDir } from '../../server/model/builtin-models.js';

const run = promisify(execFile);
const cliPath = path.resolve('dist/cli/main.js');
const modelDir = resolveModelDir('english');

async function cli(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cliPath, ...args], { maxBuffer: 64 * 1024 * 1024 });
    return { stdout, stderr, code: 0 };
  } catch (error) {
    const e = error as { stdout: string; stderr: string; code: number };
    return { stdout: e.stdout, stderr: e.stderr, code: e.code };
  }
}

/** Split a shell command line into words: double-quoted strings and bare words (all the README uses). */
function shellWords(line: string): string[] {
  return [...line.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => (m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!));
}

describe('the english model', () => {
  test('scores 200 held-out sentences at least 2 bits/token lower than the same sentences word-shuffled', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-heldout-'));
    const write = async (file: string, args: string[]) => {
      const out = await cli(['corpus', 'sentences', '--count', '200', ...args]);
      expect(out.code, out.stderr).toBe(0);
      fs.writeFileSync(path.join(dir, file), out.stdout);
    };
    await write('sentences.txt', []);
    await write('shuffled.txt', ['--shuffle-words', '1']);
    const meanBits = async (file: string) => {
      const out = await cli(['score', '--file', path.join(dir, file), '--json', '--device', 'cpu']);
      expect(out.code, out.stderr).toBe(0);
      const rows = out.stdout.trim().split('\n').map((line) => JSON.parse(line) as { nll_sum: number; tokens: number });
      expect(rows).toHaveLength(200);
      // bits per token over all tokens of the file: the texts' NLL summed, over their tokens summed
      return rows.reduce((a, r) => a + r.nll_sum, 0) / Math.LN2 / rows.reduce((a, r) => a + r.tokens, 0);
    };
    const natural = await meanBits('sentences.txt');
    const shuffled = await meanBits('shuffled.txt');
    process.stdout.write(`held-out sentences: ${natural.toFixed(3)} bits/token; word-shuffled: ${shuffled.toFixed(3)}\n`);
    expect(shuffled - natural).toBeGreaterThanOrEqual(2);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("the README's first command, exactly as written, inverts an English sentence to a hit", async () => {
    const readme = fs.readFileSync('README.md', 'utf8');
    const first = /```sh\n(npm ci && npm run build && node dist\/cli\/main\.js invert .*)\n```/.exec(readme);
    expect(first, 'the README opens with an install-and-invert command').not.toBeNull();
    const words = shellWords(first![1]!.split('&&').at(-1)!.trim());
    expect(words.slice(0, 3)).toEqual(['node', 'dist/cli/main.js', 'invert']);
    const out = await cli(words.slice(2));
    expect(out.stdout).toMatch(/^status: +HIT at iteration \d+$/m);
    expect(out.stdout).toMatch(/\(model english\)/);
    expect(out.code, out.stderr).toBe(0);
  });

  test("the model card's figures name the sha256 of the model file that ships, and the model beats the bigram", () => {
    const sha256 = createHash('sha256').update(fs.readFileSync(path.join(modelDir, 'model.safetensors'))).digest('hex');
    const evaluation = JSON.parse(fs.readFileSync('docs/english-model/evaluation.json', 'utf8')) as {
      modelFileSha256: string;
      validation: { modelPerplexity: number; bigramPerplexity: number; perplexityRatio: number };
    };
    expect(evaluation.modelFileSha256).toBe(sha256);
    expect(fs.readFileSync('docs/english-model.md', 'utf8')).toContain(sha256);
    const { modelPerplexity, bigramPerplexity, perplexityRatio } = evaluation.validation;
    expect(perplexityRatio).toBeCloseTo(modelPerplexity / bigramPerplexity, 6);
    // The goal: at most 0.7 × the bigram's perplexity on the same validation tokens.
    expect(perplexityRatio).toBeLessThanOrEqual(0.7);
    expect(fs.readFileSync('docs/english-model.md', 'utf8')).toContain(`ratio **${perplexityRatio.toFixed(3)}**`);
    expect(fs.statSync(path.join(modelDir, 'model.safetensors')).size).toBeLessThanOrEqual(30 * 1024 * 1024);
  });
});
