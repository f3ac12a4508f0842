// Lion (Chen et al. 2023): its steps against values worked by hand, a checkpoint taken mid-run that continues bit for
// bit, and a job that asks for it by the API's name, from the SDK's options through the converters to the engine and
// back in the result, on a real server with the tiny model.
import { create } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOptimizer, lionStep, optimizerDefinition, optimizerKinds } from '../../server/engine/optimizers.js';
import type { LionState, OptimizerSnapshot } from '../../server/engine/optimizers.js';
import { inversionLimits, makeInversionSettings, storedInversionSettings } from '../../server/engine/settings.js';
import { settingsFromProto, settingsToProto } from '../../server/service/proto-convert.js';
import { createReciteClient, toJobSettings } from '../../sdk/index.js';
import type { ReciteClient, ReciteEvent, ResultEvent } from '../../sdk/index.js';
import { JobSettingsSchema, Optimizer, Status } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { TestServer } from '../helpers/test-server.js';
import { aliceToken, startTestServer } from '../helpers/test-server.js';

/** Expect float32 results within 1e-6 relative of hand-worked values. */
function expectClose(actual: ArrayLike<number>, expected: readonly number[], label: string): void {
  expect(actual.length, label).toBe(expected.length);
  expected.forEach((e, i) => expect(Math.abs(actual[i]! - e), `${label}[${i}]: ${actual[i]} against ${e}`)
    .toBeLessThanOrEqual(1e-6 * Math.abs(e)));
}

describe('Lion', () => {
  it('is in the registry with the paper\'s betas', () => {
    expect(optimizerKinds).toContain('lion');
    expect(optimizerDefinition('lion').defaults).toEqual({ lr: 1e-4, beta1: 0.9, beta2: 0.99 });
    expect(optimizerDefinition('lion').label).toBe('Lion');
  });

  it('three steps by hand: lr·sign of β₁·m + (1−β₁)·g, then m ← β₂·m + (1−β₂)·g', () => {
    const optimizer = createOptimizer('lion', [3], { lr: 0.1 });
    const param = Float32Array.of(1, -2, 0.5);

    // step 1, g = [−0.5, 1, 0]: c = 0.1·g = [−0.05, 0.1, 0], sign [−1, 1, 0]: p = [1.1, −2.1, 0.5] (sign 0: stays)
    //   m = 0.01·g = [−0.005, 0.01, 0]
    optimizer.step(param, Float32Array.of(-0.5, 1, 0));
    expectClose(param, [1.1, -2.1, 0.5], 'p after step 1');
    expect(param[2]).toBe(0.5); // exactly: a zero sign moves nothing
    expectClose(optimizer.state.expAvg, [-0.005, 0.01, 0], 'm after step 1');
    expect(optimizer.state.expAvg[2]).toBe(0);

    // step 2, g = [0.01, 0.8, −1.5]: c = 0.9·m + 0.1·g = [−0.0045 + 0.001, 0.009 + 0.08, −0.15] = [−0.0035, 0.089, −0.15]:
    //   the first element goes against its gradient, the momentum outweighs it; p = [1.2, −2.2, 0.6]
    //   m = 0.99·m + 0.01·g = [−0.00495 + 0.0001, 0.0099 + 0.008, −0.015] = [−0.00485, 0.0179, −0.015]
    optimizer.step(param, Float32Array.of(0.01, 0.8, -1.5));
    expectClose(param, [1.2, -2.2, 0.6], 'p after step 2');
    expectClose(optimizer.state.expAvg, [-0.00485, 0.0179, -0.015], 'm after step 2');

    // step 3, g = 0: c = 0.9·m = [−0.004365, 0.01611, −0.0135]: the momentum alone moves it; p = [1.3, −2.3, 0.7]
    //   m = 0.99·m = [−0.0048015, 0.017721, −0.01485]
    optimizer.step(param, new Float32Array(3));
    expectClose(param, [1.3, -2.3, 0.7], 'p after step 3');
    expectClose(optimizer.state.expAvg, [-0.0048015, 0.017721, -0.01485], 'm after step 3');
    expect(optimizer.state.step).toBe(3);
  });

  it('rounds every op to float32: each move is the float32 lr added in float32, the momentum float32 products and sums', () => {
    const f = Math.fround;
    const state: LionState = { step: 0, expAvg: Float32Array.of(0.3, 0) };
    const param = Float32Array.of(0.7, -2.1);
    lionStep(param, Float32Array.of(-0.2, -1), state, 0.013, { lr: 0.013, beta1: 0.9, beta2: 0.99 });
    // c = 0.9·0.3 + 0.1·(−0.2) = 0.25 > 0: down by lr; c = 0.1·(−1) < 0: up by lr
    expect(param[0]).toBe(f(f(0.7) - f(0.013)));
    expect(param[1]).toBe(f(f(-2.1) + f(0.013)));
    expect(state.expAvg[0]).toBe(f(f(f(0.99) * f(0.3)) + f(f(1 - 0.99) * f(-0.2))));
    expect(state.expAvg[1]).toBe(f(f(1 - 0.99) * -1));
  });

  it('resumes from a snapshot taken mid-run, through JSON, bit for bit', () => {
    const size = 29;
    let seed = 12345;
    const next = () => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 - 0.5; };
    const grads = Array.from({ length: 12 }, (_, t) => Float32Array.from({ length: size }, (_, i) => (i % 7 === t % 7 ? 0 : next())));
    const start = Float32Array.from({ length: size }, next);
    const lrAt = (t: number) => 0.01 / (1 + t);
    const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

    const straight = createOptimizer('lion', [size], { lr: 0.01 });
    const straightParam = start.slice();
    grads.forEach((g, t) => straight.step(straightParam, g, lrAt(t)));

    const first = createOptimizer('lion', [size], { lr: 0.01 });
    const param = start.slice();
    grads.slice(0, 5).forEach((g, t) => first.step(param, g, lrAt(t)));
    const json = JSON.stringify(first.exportState(), (_key, value: unknown) => (value instanceof Float32Array ? Array.from(value) : value));
    first.step(param.slice(), grads[5]!, 1); // a later step must not touch the snapshot
    const resumed = createOptimizer('lion', [size], { lr: 0.01 });
    resumed.importState(JSON.parse(json) as OptimizerSnapshot<number[]>);
    expect(resumed.state.step).toBe(5);
    grads.slice(5).forEach((g, t) => resumed.step(param, g, lrAt(t + 5)));

    expect(bits(param)).toEqual(bits(straightParam));
    expect(bits(resumed.state.expAvg)).toEqual(bits(straight.state.expAvg));
  });
});

describe('a job with optimizer lion', () => {
  it('goes through the converters both ways, by the name the SDK and the CLI use', () => {
    expect(toJobSettings({ optimizer: 'lion' }).optimizer).toBe(Optimizer.LION);
    const settings = settingsFromProto(create(JobSettingsSchema, { optimizer: Optimizer.LION, lr: 0.01 }));
    expect(settings.optimizer).toBe('lion');
    expect(makeInversionSettings(settings, inversionLimits).optimizer).toBe('lion');
    expect(settingsToProto(storedInversionSettings(settings)).optimizer).toBe(Optimizer.LION);
  });

  describe('on a real server', () => {
    let server: TestServer;
    let client: ReciteClient;
    beforeAll(async () => {
      server = await startTestServer();
      client = createReciteClient(server.url, { token: aliceToken });
    });
    afterAll(async () => {
      await server?.close();
    });

    it('runs to its result, which echoes the optimizer', async () => {
      const events: ReciteEvent[] = [];
      for await (const event of client.invert('Hello world', { optimizer: 'lion', lr: 0.01, maxIterations: 30, continueAfterHit: true })) {
        events.push(event);
      }
      const result = events.at(-1) as ResultEvent;
      expect(result.type).toBe('result');
      expect(result.settings?.optimizer).toBe(Optimizer.LION);
      expect([Status.HIT, Status.MAX_ITERATIONS]).toContain(result.status); // continued after a hit, if any
      expect(result.restarts[0]!.iterations).toBe(30);
      const progress = events.filter((e) => e.type === 'progress');
      expect(progress.at(-1)!.nllSum).toBeLessThan(progress[0]!.nllSum);
    });
  });
});
