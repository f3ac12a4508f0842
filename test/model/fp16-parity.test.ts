// The float16 graphs against the float32 ones: per-row NLL and gradient to the prompt on the tiny fixture and on a
// random checkpoint of several layers, the decode graph's log-probabilities, and the graphs' contract (float32 at
// the edges, no shape arithmetic, float16 constants where they meet float16 values).
//
// Measured on the CPU provider (onnxruntime-node 1.30), the batch below, worst row of each checkpoint:
//   tiny fixture:                      NLL relative error 1.0e-4, grad_prompt cosine 0.999997
//   random, C = 64, 4 layers, std 0.2: NLL relative error 1.7e-4, grad_prompt cosine 0.999992
//   the same stored as float16:         NLL relative error 9.2e-5, grad_prompt cosine 0.999998
// The CPU provider runs most float16 ops through inserted casts to float32 (docs/design.md, "float16"), so these
// numbers hold for the CPU; a GPU provider computes in float16 and must measure its own.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import type { onnx as OnnxNamespace } from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadCheckpoint } from '../../server/model/checkpoint.js';
import { buildDecodeGraph, buildGradientGraph } from '../../server/model/gpt2-graph.js';
import type { GraphPrecision } from '../../server/model/precision.js';
import type { GradientBatch, Gpt2Model } from '../../server/model/gpt2-session.js';
import { loadGpt2 } from '../../server/model/gpt2-session.js';
import { ElemType, float16Bits } from '../../server/model/onnx-builder.js';
import { writeRandomCheckpoint } from '../../server/model/random-checkpoint.js';

const { onnx } = createRequire(import.meta.url)('onnx-proto') as { onnx: typeof OnnxNamespace };

const nllTolerance = 1e-2; // relative, per row: |NLL16 - NLL32| / |NLL32|
const cosineFloor = 0.999; // per row, between the fp16 and fp32 grad_prompt
const fixtureDir = path.resolve('test/fixtures/tiny-gpt2');

let scratch: string;
const models = new Map<string, Record<GraphPrecision, Gpt2Model>>();

beforeAll(async () => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-fp16-'));
  // Weights ten times GPT-2's initializer range, so activations and gradients are far from tiny.
  const random = writeRandomCheckpoint(path.join(scratch, 'random'), {
    config: { nEmbd: 64, nLayer: 4, nHead: 4, vocabSize: 512, nPositions: 64 }, seed: 3, std: 0.2,
  }).dir;
  // The same shape stored as float16: the fp16 graph uses its weights as they are, the fp32 graph casts them.
  const randomHalf = writeRandomCheckpoint(path.join(scratch, 'random-f16'), {
    config: { nEmbd: 64, nLayer: 4, nHead: 4, vocabSize: 512, nPositions: 64 }, seed: 3, std: 0.2, dtype: 'F16',
  }).dir;
  for (const [name, dir] of [['tiny', fixtureDir], ['random', random], ['random float16', randomHalf]] as const) {
    models.set(name, { fp32: await loadGpt2(dir, 'cpu', 'fp32'), fp16: await loadGpt2(dir, 'cpu', 'fp16') });
  }
});

afterAll(async () => {
  for (const pair of models.values()) for (const model of Object.values(pair)) await model.release();
  fs.rmSync(scratch, { recursive: true, force: true });
});

// Four rows of different lengths, two of them under a repetition penalty, one ending at the last vocabulary id.
function batchFor(model: Gpt2Model): GradientBatch {
  const { nEmbd: C, vocabSize: V } = model.checkpoint.config;
  const P = 4;
  const targets = [[1, 5, 9, 2, 7], [3, 3, 8], [10, 11, 12, 13, 14, 15, 16], [V - 1, 0]];
  const prompt = Float32Array.from({ length: targets.length * P * C }, (_, i) => 0.5 * Math.sin(i * 1.7));
  return { prompt, promptVectors: P, targets, repetitionPenalty: [1, 1.3, 0.7, 1] };
}

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(aa * bb);
}

describe.each(['tiny', 'random', 'random float16'])('the fp16 graphs of the %s checkpoint', (name) => {
  test('give each row the fp32 NLL within 1e-2 and a gradient of cosine at least 0.999', async () => {
    const { fp32, fp16 } = models.get(name)!;
    const batch = batchFor(fp32);
    const [a, b] = [await fp32.gradient.run(batch), await fp16.gradient.run(batch)];
    const { targetLength: T, promptVectors: P } = a;
    const C = fp32.checkpoint.config.nEmbd;
    for (let row = 0; row < a.batch; row++) {
      const sum = (nll: Float32Array) => nll.subarray(row * T, (row + 1) * T).reduce((s, x) => s + x, 0);
      const relative = Math.abs(sum(b.nll) - sum(a.nll)) / Math.abs(sum(a.nll));
      const grads = [a, b].map((r) => r.gradPrompt.subarray(row * P * C, (row + 1) * P * C));
      expect(relative, `row ${row}: NLL relative error`).toBeLessThanOrEqual(nllTolerance);
      expect(cosine(grads[0]!, grads[1]!), `row ${row}: grad_prompt cosine`).toBeGreaterThanOrEqual(cosineFloor);
    }
  });

  test('give the decode graph log-probabilities within 0.05 of fp32', async () => {
    const { fp32, fp16 } = models.get(name)!;
    const { prompt, promptVectors } = batchFor(fp32);
    const tokens = [[1, 2], [3, 4], [5, 6], [7, 8]];
    const a = await fp32.decode.nextLogprobs(prompt, promptVectors, tokens, [1, 1.3, 1, 1]);
    const b = await fp16.decode.nextLogprobs(prompt, promptVectors, tokens, [1, 1.3, 1, 1]);
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    expect(worst).toBeLessThan(0.05); // measured: 0.019 (tiny), 0.008 (random), 0.005 (float16)
  });
});

describe('the fp16 graphs', () => {
  const checkpoint = loadCheckpoint(fixtureDir);
  const shapeOps = ['Shape', 'Size', 'Range', 'ConstantOfShape', 'NonZero', 'CumSum', 'Expand', 'Tile', 'If', 'Loop'];

  test.each([
    ['gradient', buildGradientGraph(checkpoint, { precision: 'fp16' }), buildGradientGraph(checkpoint)],
    ['decode', buildDecodeGraph(checkpoint, { precision: 'fp16' }), buildDecodeGraph(checkpoint)],
  ])('%s: no shape arithmetic, the fp32 graph\'s inputs and outputs, float16 inside', (_name, fp16, fp32) => {
    expect([...fp16.opCounts().keys()].filter((op) => shapeOps.includes(op))).toEqual([]);
    const [model16, model32] = [fp16, fp32].map((g) => onnx.ModelProto.decode(g.toBytes()));
    const edges = (m: OnnxNamespace.ModelProto) => [...m.graph!.input!, ...m.graph!.output!]
      .map((v) => `${v.name}:${v.type!.tensorType!.elemType}`);
    expect(edges(model16!)).toEqual(edges(model32!));
    // Every weight is cast to float16 once, and the GELU's constants are float16 scalars.
    const casts = model16!.graph!.node!.filter((n) => n.opType === 'Cast');
    const toHalf = casts.filter((n) => Number(n.attribute!.find((a) => a.name === 'to')!.i) === ElemType.float16);
    expect(toHalf.length).toBeGreaterThan(checkpoint.tensors.size);
    const halfConstants = model16!.graph!.initializer!.filter((t) => t.dataType === ElemType.float16);
    expect(halfConstants.length).toBeGreaterThan(0);
  });

  test('leave the default graph as the explicit fp32 one, byte for byte', () => {
    expect(buildGradientGraph(checkpoint).toBytes()).toEqual(buildGradientGraph(checkpoint, { precision: 'fp32' }).toBytes());
    expect(buildDecodeGraph(checkpoint).toBytes()).toEqual(buildDecodeGraph(checkpoint, { precision: 'fp32' }).toBytes());
  });
});

describe('float16Bits', () => {
  test.each([
    [1, 0x3c00], [0.5, 0x3800], [-2, 0xc000], [0.1, 0x2e66], [65504, 0x7bff], [65520, 0x7c00], [-Infinity, 0xfc00],
    [2 ** -24, 0x0001], [2 ** -26, 0x0000], [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [0, 0],
  ])('rounds %d to its nearest float16 (bits %i)', (value, bits) => {
    expect(float16Bits(value)).toBe(bits);
  });
});
