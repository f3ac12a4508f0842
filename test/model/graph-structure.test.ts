// The graphs' contract beyond their numbers: standard ops only, no shape arithmetic (which would pin nodes to the
// CPU on a GPU execution provider), small outputs, weights as external data.
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { loadCheckpoint } from '../../server/model/checkpoint.js';
import { buildCachedDecodeGraph, buildDecodeGraph, buildGradientGraph } from '../../server/model/gpt2-graph.js';

const checkpoint = loadCheckpoint(path.resolve('test/fixtures/tiny-gpt2'));
const shapeOps = ['Shape', 'Size', 'Range', 'ConstantOfShape', 'NonZero', 'CumSum', 'Expand', 'Tile', 'If', 'Loop'];

describe.each([
  ['gradient', buildGradientGraph(checkpoint)],
  ['decode', buildDecodeGraph(checkpoint)],
  ['cached decode', buildCachedDecodeGraph(checkpoint)],
])('the %s graph', (_name, graph) => {
  test('uses no shape arithmetic', () => {
    const ops = [...graph.opCounts().keys()];
    expect(ops.filter((op) => shapeOps.includes(op))).toEqual([]);
    // a sanity check on the check: the graph is the real thing
    expect(graph.opCounts().get('MatMul')).toBeGreaterThan(10);
  });

  test('keeps every checkpoint weight in the safetensors file as external data, none inline', () => {
    const bytes = graph.toBytes();
    // 6.5 MB of weights stay outside: the serialized graph is small (the vocabulary id list is 400 KB of it)
    expect(bytes.length).toBeLessThan(1_000_000);
    expect(Buffer.from(bytes).includes(Buffer.from('model.safetensors'))).toBe(true);
  });
});
