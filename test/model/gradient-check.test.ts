// The backward pass against central finite differences of the graph's own forward, and a job's numbers against
// the batch it shares. B = batch, P = prompt vectors, C = channels.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Gpt2Model } from '../../server/model/gpt2-session.js';
import { loadGpt2 } from '../../server/model/gpt2-session.js';
import { writeRandomCheckpoint } from '../../server/model/random-checkpoint.js';
import { seededUniform } from '../../server/util/seeded-random.js';
import { finiteDifferenceError, maxAbsoluteError } from '../helpers/tensor-check.js';

function seededNormal(seed: number): () => number {
  const uniform = seededUniform(seed);
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

interface GradientCheckCase {
  label: string;
  modelDir: () => string;
  promptVectors: number;
  targets: number[][]; // B rows of different lengths: padding and masking are exercised
  promptStd: number;
}

const fixtureDir = path.resolve('test/fixtures/tiny-gpt2');
let scratch: string;

// A second architecture: 3 heads of 8, an MLP width that is not 4C, no attention scaling, an untied head stored in
// float16, a small vocabulary. Random weights at a larger scale than GPT-2's init, so the function is not near-linear.
function oddModelDir(): string {
  const dir = path.join(scratch, 'odd');
  if (!fs.existsSync(dir)) {
    writeRandomCheckpoint(dir, {
      config: { vocabSize: 97, nPositions: 32, nEmbd: 24, nLayer: 3, nHead: 3, nInner: 40, scaleAttnWeights: false },
      seed: 7, dtype: 'F16', prefixKeys: false, lmHead: true, std: 0.3,
    });
  }
  return dir;
}

const cases: GradientCheckCase[] = [
  { label: 'tiny-gpt2, P=1, B=1', modelDir: () => fixtureDir, promptVectors: 1, targets: [[464, 2068, 7586, 21831]], promptStd: 0.3 },
  { label: 'tiny-gpt2, P=3, B=3 with target lengths 2, 7, 5', modelDir: () => fixtureDir, promptVectors: 3,
    targets: [[15496, 995], [22437, 340, 787, 2565, 284, 8996, 22514], [11, 198, 50256, 40, 1]], promptStd: 0.3 },
  { label: 'odd architecture (H=3, F=40, untied f16 head), P=2, B=2 with lengths 6, 1', modelDir: oddModelDir,
    promptVectors: 2, targets: [[5, 17, 3, 96, 0, 41], [60]], promptStd: 1 },
];

const models = new Map<string, Gpt2Model>();
async function modelFor(dir: string): Promise<Gpt2Model> {
  let model = models.get(dir);
  if (!model) {
    model = await loadGpt2(dir, 'cpu');
    models.set(dir, model);
  }
  return model;
}

beforeAll(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-gradcheck-'));
});
afterAll(async () => {
  for (const model of models.values()) await model.release();
  fs.rmSync(scratch, { recursive: true, force: true });
});

describe('backward against central finite differences of the forward', () => {
  for (const c of cases) {
    test(c.label, async () => {
      const model = await modelFor(c.modelDir());
      const C = model.checkpoint.config.nEmbd;
      const B = c.targets.length;
      const P = c.promptVectors;
      const normal = seededNormal(11);
      const prompt = Float32Array.from({ length: B * P * C }, () => c.promptStd * normal());
      const loss = async (x: Float32Array) => {
        const run = await model.gradient.run({ prompt: x, promptVectors: P, targets: c.targets });
        return Array.from(run.nll).reduce((a, v) => a + v, 0); // sum over rows: row b's loss depends on prompt b only
      };
      const { gradPrompt } = await model.gradient.run({ prompt, promptVectors: P, targets: c.targets });
      const gradNorm = Math.sqrt(gradPrompt.reduce((a, v) => a + v * v, 0));
      expect(gradNorm).toBeGreaterThan(1e-3); // a zero gradient would pass any check

      // Directional derivatives along random directions, each row of the batch on its own, and along the
      // gradient itself (the most sensitive direction).
      const eps = 1e-2;
      const directions: Float32Array[] = [];
      for (let b = 0; b < B; b++) {
        const d = new Float32Array(B * P * C);
        for (let i = b * P * C; i < (b + 1) * P * C; i++) d[i] = normal();
        directions.push(d);
      }
      directions.push(Float32Array.from(gradPrompt, (g) => g / gradNorm));
      // A few single coordinates too, spread over prompt vectors and rows.
      const coordinates = [0, C + 3, P * C - 1, (B - 1) * P * C + 5].filter((j) => j < B * P * C);
      const { count, error } = await finiteDifferenceError(loss, prompt, gradPrompt, { directions, coordinates, eps });
      console.log(`${c.label}: ${count} derivatives, max |analytic - numeric| / max |analytic| = ${error.toExponential(2)}`);
      expect(error).toBeLessThan(1e-2);
    });
  }
});

describe('batch independence', () => {
  test('a case alone and padded in a batch of 3 agree to 1e-5', async () => {
    const model = await modelFor(fixtureDir);
    const C = model.checkpoint.config.nEmbd;
    const P = 2;
    const normal = seededNormal(5);
    const promptOf = () => Float32Array.from({ length: P * C }, () => 0.3 * normal());
    const job = { prompt: promptOf(), target: [464, 2068, 7586, 21831, 18045] };
    const neighbours = [
      { prompt: promptOf(), target: [11, 22, 33, 44, 55, 66, 77, 88, 99, 100, 101] }, // longer: the job is padded
      { prompt: promptOf(), target: [7] },
    ];
    const alone = await model.gradient.run({ prompt: job.prompt, promptVectors: P, targets: [job.target] });
    const batch = [neighbours[0]!, job, neighbours[1]!];
    const prompt = new Float32Array(3 * P * C);
    batch.forEach((row, b) => prompt.set(row.prompt, b * P * C));
    const together = await model.gradient.run({ prompt, promptVectors: P, targets: batch.map((r) => r.target) });
    const T = together.targetLength;
    expect(T).toBe(11);
    const T0 = job.target.length;
    const nllTogether = together.nll.subarray(T, T + T0);
    const padding = together.nll.subarray(T + T0, 2 * T);
    expect(maxAbsoluteError(nllTogether, alone.nll)).toBeLessThan(1e-5);
    expect(Array.from(padding).every((v) => v === 0)).toBe(true);
    expect(maxAbsoluteError(together.gradPrompt.subarray(P * C, 2 * P * C), alone.gradPrompt)).toBeLessThan(1e-5);
    expect(Array.from(together.argmaxIds.subarray(T, T + T0))).toEqual(Array.from(alone.argmaxIds));
  });
});
