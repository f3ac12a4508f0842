import { describe, expect, it } from 'vitest';

import {
  adamDefaults,
  adamStep,
  createAdamState,
  createOptimizer,
  createRmspropState,
  makeAdamOptions,
  makeRmspropOptions,
  makeSgdOptions,
  rmspropDefaults,
  rmspropStep,
  sgdDefaults,
} from '../../server/engine/optimizers.js';
import type { AdamOptions, Optimizer, OptimizerKind, RmspropOptions, SgdOptions } from '../../server/engine/optimizers.js';

// The hand-checkable problem: three parameters, three steps of known gradients. Gradients are float32 (as they
// come out of the graph), so the float64 references below start from exactly the values the optimizer sees.
const initialParam = [1, -2, 0.5];
const grads = [
  [-0.5, 1, -2],
  [0.3, 0.8, -1.5],
  [-0.2, -0.4, 0.01], // |g| < √v for the last element: v falls, so AMSGrad's running max matters
].map((g) => Array.from(Float32Array.from(g)));

const relTolerance = 1e-6;

/** Expect float32 results within 1e-6 relative of float64 references, naming the element on failure. */
function expectClose(actual: ArrayLike<number>, expected: readonly number[], label: string): void {
  expect(actual.length, label).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const error = Math.abs(actual[i] - expected[i]);
    const bound = relTolerance * Math.abs(expected[i]);
    if (!(error <= bound)) {
      expect.fail(`${label}[${i}]: got ${actual[i]}, expected ${expected[i]} (error ${error}, bound ${bound})`);
    }
  }
}

/** Run an optimizer through the three hand-checkable steps, returning param after each step. */
function runSteps(optimizer: Optimizer, lr?: number): number[][] {
  const param = Float32Array.from(initialParam);
  return grads.map((g) => {
    optimizer.step(param, Float32Array.from(g), lr);
    return Array.from(param);
  });
}

// ---- float64 references, written out from the PyTorch docs' pseudo-code (not from the implementation) ----------

/** torch.optim.RMSprop's algorithm in float64; returns param after each step plus the final moments. */
function rmspropReference(o: RmspropOptions) {
  const p = [...initialParam];
  const v = [0, 0, 0]; // square_avg
  const gAvg = [0, 0, 0]; // grad_avg (centered)
  const buf = [0, 0, 0]; // momentum buffer
  const params: number[][] = [];
  for (const grad of grads) {
    for (let i = 0; i < 3; i++) {
      const g = grad[i] + o.weightDecay * p[i];
      v[i] = o.alpha * v[i] + (1 - o.alpha) * g * g;
      let vTilde = v[i];
      if (o.centered) {
        gAvg[i] = o.alpha * gAvg[i] + (1 - o.alpha) * g;
        vTilde = v[i] - gAvg[i] * gAvg[i];
      }
      const denom = Math.sqrt(vTilde) + o.eps;
      if (o.momentum > 0) {
        buf[i] = o.momentum * buf[i] + g / denom;
        p[i] -= o.lr * buf[i];
      } else {
        p[i] -= (o.lr * g) / denom;
      }
    }
    params.push([...p]);
  }
  return { params, squareAvg: v, gradAvg: gAvg, momentumBuffer: buf };
}

/** torch.optim.Adam's algorithm in float64 (m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ), p −= lr·m̂/(√v̂ + ε)). */
function adamReference(o: AdamOptions) {
  const p = [...initialParam];
  const m = [0, 0, 0];
  const v = [0, 0, 0];
  const vMax = [0, 0, 0];
  const params: number[][] = [];
  let t = 0;
  for (const grad of grads) {
    t += 1;
    for (let i = 0; i < 3; i++) {
      const g = grad[i] + o.weightDecay * p[i];
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
      const mHat = m[i] / (1 - o.beta1 ** t);
      let vUsed = v[i];
      if (o.amsgrad) {
        vMax[i] = Math.max(vMax[i], v[i]);
        vUsed = vMax[i];
      }
      const vHat = vUsed / (1 - o.beta2 ** t);
      p[i] -= (o.lr * mHat) / (Math.sqrt(vHat) + o.eps);
    }
    params.push([...p]);
  }
  return { params, expAvg: m, expAvgSq: v, maxExpAvgSq: vMax };
}

/** torch.optim.SGD's algorithm in float64 (first momentum step: b = g, undampened). */
function sgdReference(o: SgdOptions) {
  const p = [...initialParam];
  let buf: number[] | null = null;
  const params: number[][] = [];
  for (const grad of grads) {
    const g = grad.map((gi, i) => gi + o.weightDecay * p[i]);
    let d = g;
    if (o.momentum !== 0) {
      buf = buf === null ? [...g] : buf.map((b, i) => o.momentum * b + (1 - o.dampening) * g[i]);
      const b = buf;
      d = o.nesterov ? g.map((gi, i) => gi + o.momentum * b[i]) : b;
    }
    for (let i = 0; i < 3; i++) p[i] -= o.lr * d[i];
    params.push([...p]);
  }
  return { params, momentumBuffer: buf };
}

// ---------------------------------------------------------------------------------------------------------------

describe('defaults', () => {
  it('RMSProp matches torch.optim.RMSprop except lr 0.1 (project default; PyTorch: 0.01)', () => {
    expect({ ...rmspropDefaults }).toEqual({
      lr: 0.1,
      alpha: 0.99,
      eps: 1e-8,
      weightDecay: 0,
      momentum: 0,
      centered: false,
    });
    expect(Object.isFrozen(rmspropDefaults)).toBe(true);
  });

  it('Adam matches torch.optim.Adam', () => {
    expect({ ...adamDefaults }).toEqual({ lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, amsgrad: false });
    expect(Object.isFrozen(adamDefaults)).toBe(true);
  });

  it('SGD matches torch.optim.SGD', () => {
    expect({ ...sgdDefaults }).toEqual({ lr: 1e-3, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false });
    expect(Object.isFrozen(sgdDefaults)).toBe(true);
  });

  it('makeXOptions merges over the defaults and ignores undefined', () => {
    expect(makeRmspropOptions({ momentum: 0.5, lr: undefined })).toEqual({ ...rmspropDefaults, momentum: 0.5 });
    expect(createOptimizer('adam', 3).options).toEqual(adamDefaults);
  });
});

describe('RMSProp', () => {
  it('first step by hand', () => {
    // v = 0.01·g² = [0.0025, 0.01, 0.04];  √v = [0.05, 0.1, 0.2];  so g/(√v + ε) ≈ 10·sign(g):
    // p − 0.1·g/(√v + 1e-8) = [1 + 0.05/0.05000001, −2 − 0.1/0.10000001, 0.5 + 0.2/0.20000001]
    //                      = [1.9999998, −2.9999999, 1.49999995]
    const optimizer = createOptimizer('rmsprop', 3);
    const param = Float32Array.from([1, -2, 0.5]);
    optimizer.step(param, Float32Array.from([-0.5, 1, -2]), 0.1);
    expectClose(param, [1.9999998, -2.9999999, 1.49999995], 'param');
    expectClose(optimizer.state.squareAvg, [0.0025, 0.01, 0.04], 'squareAvg');
    expect(optimizer.state.step).toBe(1);
  });

  it('defaults: three steps match the float64 reference', () => {
    const expected = rmspropReference(rmspropDefaults);
    const optimizer = createOptimizer('rmsprop', 3);
    runSteps(optimizer).forEach((p, t) => expectClose(p, expected.params[t], `param after step ${t + 1}`));
    expectClose(optimizer.state.squareAvg, expected.squareAvg, 'squareAvg');
  });

  it('centered, momentum and weight decay: three steps match the float64 reference', () => {
    const options = makeRmspropOptions({ lr: 0.01, alpha: 0.9, momentum: 0.9, centered: true, weightDecay: 0.1 });
    const expected = rmspropReference(options);
    const optimizer = createOptimizer('rmsprop', 3, options);
    runSteps(optimizer).forEach((p, t) => expectClose(p, expected.params[t], `param after step ${t + 1}`));
    expectClose(optimizer.state.squareAvg, expected.squareAvg, 'squareAvg');
    expectClose(optimizer.state.gradAvg!, expected.gradAvg, 'gradAvg');
    expectClose(optimizer.state.momentumBuffer!, expected.momentumBuffer, 'momentumBuffer');
  });

  it('centered first step by hand', () => {
    // alpha 0.99: v = 0.01·g², ḡ = 0.01·g, v − ḡ² = 0.0099·g², √ = 0.0994987·|g|;
    // g = [2]: p = 0 − 1·2/(0.0994987·2 + 1e-8) = −10.0503782 (lr 1)
    const optimizer = createOptimizer('rmsprop', 1, { centered: true });
    const param = Float32Array.from([0]);
    optimizer.step(param, Float32Array.from([2]), 1);
    expectClose(param, [-1 / Math.sqrt(0.0099)], 'param');
    expectClose(param, [-10.0503782], 'param (literal)');
  });

  it('the step function is pure apart from its arguments', () => {
    const options = makeRmspropOptions();
    const state = createRmspropState(3, options);
    const param = Float32Array.from(initialParam);
    const grad = Float32Array.from(grads[0]);
    rmspropStep(param, grad, state, 0.1, options);
    expect(Array.from(grad)).toEqual(grads[0]);
    expect(state.step).toBe(1);
  });
});

describe('Adam', () => {
  it('first step by hand', () => {
    // m = 0.1·g, v = 0.001·g²; bias corrections 1 − 0.9 = 0.1 and 1 − 0.999 = 0.001, so m̂ = g, v̂ = g²:
    // p − 1e-3·g/(|g| + 1e-8) = p − 1e-3·sign(g) = [1.001, −2.001, 0.501]   (ε shifts it by < 2e-11)
    const optimizer = createOptimizer('adam', 3);
    const param = Float32Array.from([1, -2, 0.5]);
    optimizer.step(param, Float32Array.from([-0.5, 1, -2]));
    expectClose(param, [1.001, -2.001, 0.501], 'param');
    expectClose(optimizer.state.expAvg, [-0.05, 0.1, -0.2], 'expAvg');
    expectClose(optimizer.state.expAvgSq, [0.00025, 0.001, 0.004], 'expAvgSq');
  });

  it('defaults at lr 0.1: three steps match the float64 reference', () => {
    const options = makeAdamOptions({ lr: 0.1 });
    const expected = adamReference(options);
    const optimizer = createOptimizer('adam', 3, options);
    runSteps(optimizer).forEach((p, t) => expectClose(p, expected.params[t], `param after step ${t + 1}`));
    expectClose(optimizer.state.expAvg, expected.expAvg, 'expAvg');
    expectClose(optimizer.state.expAvgSq, expected.expAvgSq, 'expAvgSq');
  });

  it('amsgrad with weight decay: three steps match the float64 reference, and the max matters', () => {
    const options = makeAdamOptions({ lr: 0.1, amsgrad: true, weightDecay: 0.05, beta1: 0.8, beta2: 0.99 });
    const expected = adamReference(options);
    const plain = adamReference({ ...options, amsgrad: false });
    expect(Math.abs(expected.params[2][2] - plain.params[2][2])).toBeGreaterThan(1e-4);
    const optimizer = createOptimizer('adam', 3, options);
    runSteps(optimizer).forEach((p, t) => expectClose(p, expected.params[t], `param after step ${t + 1}`));
    expectClose(optimizer.state.maxExpAvgSq!, expected.maxExpAvgSq, 'maxExpAvgSq');
    expect(optimizer.state.maxExpAvgSq![2]).toBeGreaterThan(optimizer.state.expAvgSq[2]);
  });

  it('large beta1 takes lerp’s other branch (weight 1 − β₁ ≥ 0.5) and still matches', () => {
    const options = makeAdamOptions({ lr: 0.1, beta1: 0.3 });
    const expected = adamReference(options);
    const state = createAdamState(3, options);
    const param = Float32Array.from(initialParam);
    grads.forEach((g, t) => {
      adamStep(param, Float32Array.from(g), state, options.lr, options);
      expectClose(param, expected.params[t], `param after step ${t + 1}`);
    });
  });
});

describe('SGD', () => {
  it('first step by hand', () => {
    // p − 1e-3·g = [1 + 0.0005, −2 − 0.001, 0.5 + 0.002] = [1.0005, −2.001, 0.502]
    const optimizer = createOptimizer('sgd', 3);
    const param = Float32Array.from([1, -2, 0.5]);
    optimizer.step(param, Float32Array.from([-0.5, 1, -2]));
    expectClose(param, [1.0005, -2.001, 0.502], 'param');
    expect(optimizer.state.momentumBuffer).toBeNull();
  });

  it('momentum: the first step sets buf = g without dampening, the second dampens', () => {
    // step 1: buf = g = [−0.5, 1, −2]; p = [1, −2, 0.5] − 0.1·buf = [1.05, −2.1, 0.7]
    // step 2: buf = 0.9·buf + (1 − 0.5)·[0.3, 0.8, −1.5] = [−0.3, 1.3, −2.55]; p − 0.1·buf = [1.08, −2.23, 0.955]
    const optimizer = createOptimizer('sgd', 3, { momentum: 0.9, dampening: 0.5 });
    const param = Float32Array.from([1, -2, 0.5]);
    optimizer.step(param, Float32Array.from(grads[0]), 0.1);
    expectClose(param, [1.05, -2.1, 0.7], 'param after step 1');
    expectClose(optimizer.state.momentumBuffer!, [-0.5, 1, -2], 'buf after step 1');
    optimizer.step(param, Float32Array.from(grads[1]), 0.1);
    expectClose(optimizer.state.momentumBuffer!, [-0.3, 1.3, -2.55], 'buf after step 2');
    expectClose(param, [1.08, -2.23, 0.955], 'param after step 2');
  });

  for (const partial of [
    {},
    { lr: 0.1, momentum: 0.9 },
    { lr: 0.1, momentum: 0.9, dampening: 0.1, weightDecay: 0.01 },
    { lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01 },
  ] satisfies Partial<SgdOptions>[]) {
    it(`three steps match the float64 reference: ${JSON.stringify(partial)}`, () => {
      const options = makeSgdOptions(partial);
      const expected = sgdReference(options);
      const optimizer = createOptimizer('sgd', 3, options);
      runSteps(optimizer).forEach((p, t) => expectClose(p, expected.params[t], `param after step ${t + 1}`));
      if (expected.momentumBuffer) expectClose(optimizer.state.momentumBuffer!, expected.momentumBuffer, 'buf');
    });
  }
});

describe('the lr is passed per step', () => {
  it('a schedule-supplied lr overrides options.lr for that step only', () => {
    const a = createOptimizer('sgd', 3, { lr: 0.5 });
    const param = Float32Array.from([1, -2, 0.5]);
    a.step(param, Float32Array.from([1, 1, 1]), 0.25);
    expectClose(param, [0.75, -2.25, 0.25], 'lr 0.25');
    a.step(param, Float32Array.from([1, 1, 1]));
    expectClose(param, [0.25, -2.75, -0.25], 'options.lr 0.5');
  });
});

// ---- checkpoint and resume ---------------------------------------------------------------------------------------

/** Make a seeded stream of float32 gradients (xorshift32), so runs are reproducible. */
function gradientStream(seed: number, size: number): () => Float32Array {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32 - 0.5;
  };
  return () => Float32Array.from({ length: size }, () => next() * 4);
}

function bits(array: Float32Array): number[] {
  return Array.from(new Uint32Array(array.buffer, array.byteOffset, array.length));
}

const resumeCases: [OptimizerKind, object][] = [
  ['rmsprop', {}],
  ['rmsprop', { centered: true, momentum: 0.9, weightDecay: 0.01 }],
  ['adam', { lr: 0.05 }],
  ['adam', { lr: 0.05, amsgrad: true, weightDecay: 0.01 }],
  ['sgd', { lr: 0.05 }],
  ['sgd', { lr: 0.05, momentum: 0.9, nesterov: true }],
];

describe('checkpoint and resume', () => {
  const size = 37;
  const total = 12;
  const cut = 5;

  for (const [kind, options] of resumeCases) {
    for (const via of ['Float32Array', 'JSON'] as const) {
      it(`${kind} ${JSON.stringify(options)} resumes bit-identically through ${via}`, () => {
        const lrAt = (t: number) => 0.1 / (1 + t); // a schedule-like lr, to check it is not part of the state

        const straight = createOptimizer(kind, size, options);
        const straightParam = gradientStream(7, size)();
        const straightGrads = gradientStream(99, size);
        for (let t = 0; t < total; t++) straight.step(straightParam, straightGrads(), lrAt(t));

        const first = createOptimizer(kind, size, options);
        let param = gradientStream(7, size)();
        const resumedGrads = gradientStream(99, size);
        for (let t = 0; t < cut; t++) first.step(param, resumedGrads(), lrAt(t));
        let snapshot = first.exportState();
        if (via === 'JSON') {
          const plain = JSON.parse(
            JSON.stringify({ snapshot, param: Array.from(param) }, (_key, value: unknown) =>
              value instanceof Float32Array ? Array.from(value) : value,
            ),
          ) as { snapshot: typeof snapshot; param: number[] };
          snapshot = plain.snapshot;
          param = Float32Array.from(plain.param);
        }
        first.step(param.slice(), new Float32Array(size).fill(1e6), 1); // later steps must not touch the snapshot

        const resumed = createOptimizer(kind, size, options);
        resumed.importState(snapshot);
        expect(resumed.state.step).toBe(cut);
        const replayGrads = gradientStream(99, size);
        for (let t = 0; t < cut; t++) replayGrads();
        for (let t = cut; t < total; t++) resumed.step(param, replayGrads(), lrAt(t));

        expect(bits(param)).toEqual(bits(straightParam));
        const a = straight.exportState() as unknown as Record<string, unknown>;
        const b = resumed.exportState() as unknown as Record<string, unknown>;
        for (const key of Object.keys(a)) {
          const [x, y] = [a[key], b[key]];
          if (x instanceof Float32Array && y instanceof Float32Array) expect(bits(y), key).toEqual(bits(x));
          else expect(y, key).toEqual(x);
        }
      });
    }
  }

  it('an exported snapshot is a copy', () => {
    const optimizer = createOptimizer('adam', 3);
    optimizer.step(Float32Array.from(initialParam), Float32Array.from(grads[0]));
    const snapshot = optimizer.exportState();
    const before = Array.from(snapshot.expAvg);
    optimizer.step(Float32Array.from(initialParam), Float32Array.from(grads[1]));
    expect(Array.from(snapshot.expAvg)).toEqual(before);
    expect(snapshot.step).toBe(1);
  });

  it('SGD with momentum resumes from a snapshot taken before any step (no buffer yet)', () => {
    const optimizer = createOptimizer('sgd', 3, { momentum: 0.9, lr: 0.1 });
    const snapshot = optimizer.exportState();
    expect(snapshot.momentumBuffer).toBeNull();
    const resumed = createOptimizer('sgd', 3, { momentum: 0.9, lr: 0.1 });
    resumed.importState(snapshot);
    const param = Float32Array.from([1, -2, 0.5]);
    resumed.step(param, Float32Array.from(grads[0]));
    expectClose(param, [1.05, -2.1, 0.7], 'param');
  });

  it('refuses a snapshot of another kind, size or buffer set', () => {
    const rmsprop = createOptimizer('rmsprop', 3);
    expect(() => rmsprop.importState(createOptimizer('adam', 3).exportState())).toThrow(/snapshot is for adam/);
    expect(() => rmsprop.importState(createOptimizer('rmsprop', 4).exportState())).toThrow(/squareAvg has 4 elements/);
    expect(() => rmsprop.importState(createOptimizer('rmsprop', 3, { centered: true }).exportState())).toThrow(
      /gradAvg is present/,
    );
    expect(() => createOptimizer('adam', 3, { amsgrad: true }).importState(createOptimizer('adam', 3).exportState())).toThrow(
      /maxExpAvgSq is missing/,
    );
    expect(() => rmsprop.importState({ ...rmsprop.exportState(), step: -1 })).toThrow(/step -1 is not an integer ≥ 0/);
  });
});

describe('errors', () => {
  it('names the bad value and the limit', () => {
    expect(() => createOptimizer('rmsprop', 3, { lr: -1 })).toThrow('RMSProp: lr is -1; it must be a finite number >= 0');
    expect(() => createOptimizer('adam', 3, { beta2: 1 })).toThrow('Adam: beta2 is 1; it must lie in [0, 1)');
    expect(() => createOptimizer('sgd', 3, { nesterov: true })).toThrow(/nesterov needs momentum > 0/);
    expect(() => createOptimizer('sgd', 3, { momentum: 0.9, dampening: 0.1, nesterov: true })).toThrow(/dampening 0/);
    expect(() => createOptimizer('adam', 3, { momentum: 0.9 } as Partial<AdamOptions>)).toThrow(/unknown option momentum/);
    expect(() => createOptimizer('lbfgs' as OptimizerKind, 3)).toThrow(/kind is lbfgs/);
    expect(() => createOptimizer('adam', 2.5)).toThrow(/size 2.5 is not an integer ≥ 0/);
  });

  it('checks lengths and the per-step lr', () => {
    for (const kind of ['rmsprop', 'adam', 'sgd'] as const) {
      const optimizer = createOptimizer(kind, 3);
      expect(() => optimizer.step(new Float32Array(2), new Float32Array(3))).toThrow(/param has 2 elements/);
      expect(() => optimizer.step(new Float32Array(3), new Float32Array(4))).toThrow(/grad has 4 elements/);
      expect(() => optimizer.step(new Float32Array(3), new Float32Array(3), Number.NaN)).toThrow(/lr is NaN/);
    }
  });
});
