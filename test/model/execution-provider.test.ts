// Execution providers: one asked for explicitly that cannot load fails with a message saying why; `auto` falls
// over to the next and reports what it passed over; the provider in use is reported.
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { buildGradientGraph } from '../../server/model/gpt2-graph.js';
import { loadCheckpoint } from '../../server/model/checkpoint.js';
import { ExecutionProviderError, openSession, parseDeviceRequest } from '../../server/model/execution-provider.js';
import { loadGpt2 } from '../../server/model/gpt2-session.js';

const fixtureDir = path.resolve('test/fixtures/tiny-gpt2');
const checkpoint = loadCheckpoint(fixtureDir);
const graph = buildGradientGraph(checkpoint).toBytes();

describe('execution providers', () => {
  test('cuda asked for explicitly, without onnxruntime-node\'s CUDA libraries, fails saying why', async () => {
    const error = await openSession(graph, fixtureDir, 'cuda').then(() => undefined, (e: unknown) => e);
    // On a server where the CUDA libraries were installed this opens; the project's own install skips them.
    if (error === undefined) return;
    expect(error).toBeInstanceOf(ExecutionProviderError);
    expect((error as Error).message).toMatch(/^device cuda could not be loaded: the CUDA execution provider needs onnxruntime-node's CUDA libraries/);
    expect((error as Error).message).toContain('onnxruntime said:');
  });

  test('auto falls over to a provider that loads and lists the ones it passed over, with reasons', async () => {
    const opened = await openSession(graph, fixtureDir, 'auto');
    const order = ['cuda', 'webgpu', 'cpu'];
    expect(order).toContain(opened.provider);
    expect(opened.fallbacks.map((f) => f.provider)).toEqual(order.slice(0, order.indexOf(opened.provider)));
    for (const fallback of opened.fallbacks) expect(fallback.reason.length).toBeGreaterThan(20);
    await opened.session.release();
  });

  test('cpu always loads, and the loaded model reports the provider in use', async () => {
    const model = await loadGpt2(fixtureDir, 'cpu');
    expect(model.provider).toBe('cpu');
    expect(model.gradient.provider).toBe('cpu');
    expect(model.decode.provider).toBe('cpu');
    expect(model.fallbacks).toEqual([]);
    await model.release();
  });

  test('an unknown device name is refused with the choices', () => {
    expect(() => parseDeviceRequest('tpu')).toThrow('device "tpu" is not one of auto, cpu, webgpu, cuda');
  });
});
