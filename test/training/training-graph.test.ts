// The training graph's loss and weight gradients against plain PyTorch autograd (test/model/torch_reference.py,
// which first reproduces the tiny fixture's transformers outputs), on a seeded random checkpoint.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type ort from 'onnxruntime-node';
import { loadCheckpoint } from '../../server/model/checkpoint.js';
import type { Checkpoint, Gpt2Config } from '../../server/model/checkpoint.js';
import { trainableWeights } from '../../server/model/gpt2-training-graph.js';
import { writeRandomCheckpoint } from '../../server/model/random-checkpoint.js';
import { adamwStep, learningRate, openTrainingSession, trainingDefaults, trainingGradients } from '../../server/training/trainer.js';
import type { AdamWMoments } from '../../server/training/trainer.js';

interface GradientSummary {
  sum: number;
  l2: number;
  max_abs: number;
  probe_indices: number[];
  probe_values: number[];
}

interface Reference {
  checkpoint: { config: Partial<Gpt2Config>; seed: number; std: number };
  cases: { name: string; ids: number[][]; loss: number; grads: Record<string, GradientSummary> }[];
}

const reference = JSON.parse(fs.readFileSync(new URL('../fixtures/training-reference.json', import.meta.url), 'utf8')) as Reference;

describe('training graph against PyTorch autograd', () => {
  let dir: string;
  let checkpoint: Checkpoint;
  let session: ort.InferenceSession;
  let weights: Map<string, Float32Array>;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-train-ref-'));
    const { config, seed, std } = reference.checkpoint;
    writeRandomCheckpoint(dir, { config, seed, std, prefixKeys: true });
    checkpoint = loadCheckpoint(dir);
    session = await openTrainingSession(checkpoint.config);
    weights = new Map([...trainableWeights(checkpoint.config).keys()].map((name) => [name, checkpoint.readFloat32(name)]));
  });
  afterAll(async () => {
    await session?.release();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const testCase of reference.cases) {
    it(`${testCase.name}: loss and every weight's gradient match`, async () => {
      const result = await trainingGradients(session, checkpoint.config, weights, testCase.ids);
      expect(Math.abs(result.loss - testCase.loss) / testCase.loss).toBeLessThan(1e-5);
      expect([...result.gradients.keys()].sort()).toEqual(Object.keys(testCase.grads).sort());
      for (const [name, expected] of Object.entries(testCase.grads)) {
        const actual = result.gradients.get(name)!;
        let sum = 0;
        let sumSquares = 0;
        for (const x of actual) {
          sum += x;
          sumSquares += x * x;
        }
        const scale = expected.max_abs; // errors relative to the largest element, as for the inversion gradient
        const label = `${testCase.name} d ${name}`;
        expect(Math.abs(Math.sqrt(sumSquares) - expected.l2) / expected.l2, `${label}: L2 norm`).toBeLessThan(1e-4);
        expect(Math.abs(sum - expected.sum) / (scale * Math.sqrt(actual.length)), `${label}: sum`).toBeLessThan(1e-4);
        expected.probe_indices.forEach((index, k) => {
          expect(Math.abs(actual[index]! - expected.probe_values[k]!) / scale, `${label}[${index}]`).toBeLessThan(1e-4);
        });
      }
    });
  }
});

describe('AdamW and the learning-rate schedule', () => {
  it('adamwStep matches torch.optim.AdamW for two steps (values worked by hand from its update rule)', () => {
    // lr 0.1, betas (0.9, 0.95), weight decay 0.1, eps 1e-8; p0 = 1, g = 0.5 then -0.25.
    const param = Float32Array.of(1);
    const moments = { step: 1, expAvg: new Float32Array(1), expAvgSq: new Float32Array(1) };
    const options = { beta1: 0.9, beta2: 0.95 };
    adamwStep(param, Float32Array.of(0.5), moments, 0.1, 0.1, options);
    // p = 1 * 0.99 - 0.1 * (0.05 / 0.1) / (sqrt(0.0125) / sqrt(0.05) + 1e-8) = 0.99 - 0.1 = 0.89
    expect(param[0]).toBeCloseTo(0.89, 6);
    moments.step = 2;
    adamWStepExpect(param, moments, options);
  });

  it('warms up linearly, then decays along a cosine to minLr', () => {
    const options = { ...trainingDefaults, lr: 1e-3, minLr: 1e-4, warmupSteps: 10, steps: 110 };
    expect(learningRate(options, 0)).toBeCloseTo(1e-4, 12);
    expect(learningRate(options, 9)).toBeCloseTo(1e-3, 12);
    expect(learningRate(options, 60)).toBeCloseTo(5.5e-4, 12); // halfway through the cosine
    expect(learningRate(options, 110)).toBeCloseTo(1e-4, 12);
  });
});

function adamWStepExpect(param: Float32Array, moments: AdamWMoments, options: { beta1: number; beta2: number }): void {
  const before = param[0]!;
  adamwStep(param, Float32Array.of(-0.25), moments, 0.1, 0.1, options);
  const m = 0.9 * 0.05 + 0.1 * -0.25; // 0.02
  const v = 0.95 * 0.0125 + 0.05 * 0.0625; // 0.015
  const expected = before * 0.99 - (0.1 / (1 - 0.9 ** 2)) * m / (Math.sqrt(v) / Math.sqrt(1 - 0.95 ** 2) + 1e-8);
  expect(param[0]).toBeCloseTo(expected, 6);
}
