// The trainer resumes exactly: a run stopped after 3 steps and resumed for 5 more ends with the same weights, the
// same log and the same step as a run of 8 steps in one go (batches are drawn from (seed, step)).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensorsHeader, readTensorFloat32 } from '../../server/model/safetensors.js';
import { loadCheckpoint } from '../../server/model/checkpoint.js';
import { exportRun, train } from '../../server/training/trainer.js';
import type { TrainingLogLine, TrainingOptions } from '../../server/training/trainer.js';
import { createSeededRandom } from '../../server/util/seeded-random.js';

const small: Partial<TrainingOptions> = {
  nEmbd: 16, nLayer: 1, nHead: 2, nPositions: 8, batch: 4, steps: 8, warmupSteps: 1, evalEvery: 4, evalWindows: 8,
  checkpointEvery: 1, lr: 3e-2, minLr: 3e-3,
};

describe('recite train', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-trainer-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const corpus = path.join(dir, 'corpus');
  fs.mkdirSync(corpus);
  const random = createSeededRandom(3);
  for (const [split, n] of [['train', 500], ['validation', 100]] as const) {
    const tokens = Uint16Array.from({ length: n }, () => random.int(300)); // a small alphabet: the loss can fall
    fs.writeFileSync(path.join(corpus, `${split}.u16`), Buffer.from(tokens.buffer));
  }

  it('resumes a stopped run to exactly the weights and log of an uninterrupted one', async () => {
    const straightLog: TrainingLogLine[] = [];
    const straight = await train(corpus, path.join(dir, 'straight'), small, (l) => straightLog.push(l));
    const resumedLog: TrainingLogLine[] = [];
    const first = await train(corpus, path.join(dir, 'resumed'), small, (l) => resumedLog.push(l), 3);
    expect(first.step).toBe(3);
    const resumed = await train(corpus, path.join(dir, 'resumed'), {}, (l) => resumedLog.push(l));
    expect(resumed.step).toBe(8);
    for (const [name, weights] of straight.weights) expect(resumed.weights.get(name), name).toEqual(weights);
    // The resumed run logs its stop (step 3) besides the lines both runs log.
    const strip = (lines: TrainingLogLine[]) => lines.filter((l) => l.step !== 3)
      .map(({ loss, validationLoss, step, lr, gradNorm }) => ({ loss, validationLoss, step, lr, gradNorm }));
    expect(strip(resumedLog)).toEqual(strip(straightLog));
    const validation = straightLog.flatMap((l) => (l.validationLoss === undefined ? [] : [l.validationLoss]));
    expect(validation).toHaveLength(2);
    expect(validation[1]).toBeLessThan(validation[0]! - 0.2); // it learns the small alphabet
  });

  it('refuses to resume with a different shape, naming the field', async () => {
    await expect(train(corpus, path.join(dir, 'straight'), { nEmbd: 32 }, () => {}))
      .rejects.toThrow(/nEmbd is 16 there, 32 asked/);
  });

  it('exports a Hugging Face folder the checkpoint loader reads, float16 weights equal to the run\'s', () => {
    const out = path.join(dir, 'export');
    exportRun(path.join(dir, 'straight'), out);
    const checkpoint = loadCheckpoint(out);
    expect(checkpoint.config).toMatchObject({ nEmbd: 16, nLayer: 1, nHead: 2, nPositions: 8, vocabSize: 50257 });
    expect(checkpoint.headName).toBe('wte.weight');
    const state = readSafetensorsHeader(path.join(dir, 'straight', 'state.safetensors'));
    const runWpe = readTensorFloat32(state.tensors.find((t) => t.name === 'wpe.weight')!);
    const exported = checkpoint.readFloat32('wpe.weight');
    exported.forEach((x, i) => expect(Math.abs(x - runWpe[i]!)).toBeLessThanOrEqual(Math.abs(runWpe[i]!) * 1e-3 + 1e-7));
  });
});
