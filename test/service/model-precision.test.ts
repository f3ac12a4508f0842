// A model's graph precision from the command line to its loader: serve's --precision values over the model sources,
// and the registry handing each source's precision to the load.
import { describe, expect, test } from 'vitest';
import { applyPrecisions } from '../../cli/commands/serve.js';
import type { GraphPrecision } from '../../server/model/precision.js';
import { parseGraphPrecision } from '../../server/model/precision.js';
import { ModelRegistry } from '../../server/service/model-registry.js';

const sources = [{ name: 'gpt2', dir: '/models/gpt2' }, { name: 'tiny', dir: '/models/tiny' }];

describe('serve --precision', () => {
  test('sets every model without a name, one model with NAME=, later values winning', () => {
    expect(applyPrecisions(sources, []).map((s) => s.precision)).toEqual([undefined, undefined]);
    expect(applyPrecisions(sources, ['fp16']).map((s) => s.precision)).toEqual(['fp16', 'fp16']);
    expect(applyPrecisions(sources, ['tiny=fp16']).map((s) => s.precision)).toEqual([undefined, 'fp16']);
    expect(applyPrecisions(sources, ['fp16', 'gpt2=fp32']).map((s) => s.precision)).toEqual(['fp32', 'fp16']);
    expect(sources.every((s) => !('precision' in s))).toBe(true); // the sources given are not changed
  });

  test('refuses an unknown precision and a name no model is served as', () => {
    expect(() => applyPrecisions(sources, ['fp8'])).toThrow('--precision fp8: "fp8" is not one of fp32, fp16');
    expect(() => applyPrecisions(sources, ['big=fp16'])).toThrow('no model is served as "big"; models: gpt2, tiny');
    expect(() => parseGraphPrecision('bf16')).toThrow('"bf16" is not one of fp32, fp16');
  });
});

test('the registry loads each model at its source\'s precision, fp32 when unset, and lists it', async () => {
  const asked: [string, GraphPrecision][] = [];
  const registry = new ModelRegistry(applyPrecisions(sources, ['tiny=fp16']), {
    device: 'cpu',
    engine: {},
    load: async (name, _dir, _device, precision) => {
      asked.push([name, precision]);
      throw new Error('not loaded in this test');
    },
  });
  await registry.ready();
  expect(asked).toEqual([['gpt2', 'fp32'], ['tiny', 'fp16']]);
  expect(registry.list().map((entry) => [entry.name, entry.state, entry.precision]))
    .toEqual([['gpt2', 'FAILED', 'fp32'], ['tiny', 'FAILED', 'fp16']]);
});
