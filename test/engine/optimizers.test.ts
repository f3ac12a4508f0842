import { describe, expect, it } from 'vitest';

import {
  adamStep,
  createOptimizer,
  optimizerDefinition,
  optimizerKinds,
  optimizerOptionsFromSettings,
  optimizerStateFloats,
} from '../../server/engine/optimizers.js';
import type { AdamOptions, AdamState, Optimizer, OptimizerKind, RmspropOptions, SgdOptions } from '../../server/engine/optimizers.js';

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

/** torch.optim.RMSprop's algorithm in float64; returns param after each step plus the final second moment. */
function rmspropReference(o: RmspropOptions) {
  const p = [...initialParam];
  const v = [0, 0, 0]; // square_avg
  const params: number[][] = [];
  for (const g of grads) {
    for (let i = 0; i < 3; i++) {
      v[i] = o.alpha * v[i] + (1 - o.alpha) * g[i] * g[i];
      p[i] -= (o.lr * g[i]) / (Math.sqrt(v[i]) + o.eps);
    }
    params.push([...p]);
  }
  return { params, squareAvg: v };
}

/** torch.optim.Adam's algorithm in float64 (m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ), p −= lr·m̂/(√v̂ + ε)). */
function adamReference(o: AdamOptions) {
  const p = [...initialParam];
  const m = [0, 0, 0];
  const v = [0, 0, 0];
  const params: number[][] = [];
  let t = 0;
  for (const g of grads) {
    t += 1;
    for (let i = 0; i < 3; i++) {
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g[i];
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g[i] * g[i];
      const mHat = m[i] / (1 - o.beta1 ** t);
      const vHat = v[i] / (1 - o.beta2 ** t);
      p[i] -= (o.lr * mHat) / (Math.sqrt(vHat) + o.eps);
    }
    params.push([...p]);
  }
  return { params, expAvg: m, expAvgSq: v };
}

/** torch.optim.SGD's algorithm in float64 (first momentum step: b = g). */
function sgdReference(o: SgdOptions) {
  const p = [...initialParam];
  let buf: number[] | null = null;
  const params: number[][] = [];
  for (const g of grads) {
    let d = g;
    if (o.momentum !== 0) {
      buf = buf === null ? [...g] : buf.map((b, i) => o.momentum * b + g[i]);
      d = buf;
    }
    for (let i = 0; i < 3; i++) p[i] -= o.lr * d[i];
    params.push([...p]);
  }
  return { params, momentumBuffer: buf };
}

// ---------------------------------------------------------------------------------------------------------------

describe('the registry', () => {
  it('offers RMSProp first, the jobs\' default', () => {
    expect(optimizerKinds.slice(0, 3)).toEqual(['rmsprop', 'adam', 'sgd']);
  });

  it('keeps PyTorch\'s defaults, except RMSProp\'s lr 0.1 (project default; PyTorch: 0.01)', () => {
    expect(optimizerDefinition('rmsprop').defaults).toEqual({ lr: 0.1, alpha: 0.99, eps: 1e-8 });
    expect(optimizerDefinition('adam').defaults).toEqual({ lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 });
    expect(optimizerDefinition('sgd').defaults).toEqual({ lr: 1e-3, momentum: 0 });
    for (const kind of optimizerKinds) expect(Object.isFrozen(optimizerDefinition(kind).defaults), kind).toBe(true);
  });

  it('merges options over the defaults, ignoring undefined', () => {
    expect(createOptimizer('sgd', [3], { momentum: 0.5, lr: undefined }).options).toEqual({ lr: 1e-3, momentum: 0.5 });
    expect(createOptimizer('adam', [3]).options).toEqual(optimizerDefinition('adam').defaults);
  });

  it('takes from a job\'s settings the options each optimizer has: lr, and momentum for SGD', () => {
    const settings = { lr: 0.05, momentum: 0.9 };
    expect(optimizerOptionsFromSettings('sgd', settings)).toEqual({ lr: 0.05, momentum: 0.9 });
    expect(optimizerOptionsFromSettings('adam', settings)).toEqual({ lr: 0.05 });
    expect(optimizerOptionsFromSettings('rmsprop', settings)).toEqual({ lr: 0.05 });
  });

  it('gives each optimizer the parameter\'s shape and a state of that many elements per buffer', () => {
    for (const kind of optimizerKinds) {
      const optimizer = createOptimizer(kind, [2, 3]);
      expect(optimizer.shape).toEqual([2, 3]);
      expect(optimizer.size).toBe(6);
      expect(optimizer.state.step).toBe(0);
      for (const value of Object.values(optimizer.state)) if (typeof value !== 'number') expect(value).toHaveLength(6);
    }
  });

  it('counts the floats of each optimizer\'s state, the memory a job reserves for it', () => {
    expect(optimizerStateFloats('rmsprop', [2, 3])).toBe(6);
    expect(optimizerStateFloats('adam', [2, 3])).toBe(12);
    expect(optimizerStateFloats('sgd', [5])).toBe(5);
  });
});

describe('RMSProp', () => {
  it('first step by hand', () => {
    // v = 0.01·g² = [0.0025, 0.01, 0.04];  √v = [0.05, 0.1, 0.2];  so g/(√v + ε) ≈ 10·sign(g):
    // p − 0.1·g/(√v + 1e-8) = [1 + 0.05/0.05000001, −2 − 0.1/0.10000001, 0.5 + 0.2/0.20000001]
    //                      = [1.9999998, −2.9999999, 1.49999995]
    const optimizer = createOptimizer('rmsprop', [3]);
    const param = Float32Array.from([1, -2, 0.5]);
    optimizer.step(param, Float32Array.from([-0.5, 1, -2]), 0.1);
    expectClose(param, [1.9999998, -2.9999999, 1.49999995], 'param');
    expectClose(optimizer.state.squareAvg, [0.0025, 0.01, 0.04], 'squareAvg');
    expect(optimizer.state.step).toBe(1);
  });

  it('defaults: three steps match the float64 reference', () => {
    const optimizer = createOptimizer('rmsprop', [3]);
    const expected = rmspropReference(optimizer.options);
    runSteps(optimizer).forEach((p, t) => expectClose(p, expected.params[t], `param after step ${t + 1}`));
    expectClose(optimizer.state.squareAvg, expected.squareAvg, 'squareAvg');
  });

  it('alpha 0.9 at lr 0.01: three steps match the float64 reference', () => {
    const optimizer = createOptimizer('rmsprop', [3], { lr: 0.01, alpha: 0.9 });
    const expected = rmspropReference(optimizer.options);
    runSteps(optimizer).forEach((p, t) => expectClose(p, expected.params[t], `param after step ${t + 1}`));
  });
});

describe('Adam', () => {
  it('first step by hand', () => {
    // m = 0.1·g, v = 0.001·g²; bias corrections 1 − 0.9 = 0.1 and 1 − 0.999 = 0.001, so m̂ = g, v̂ = g²:
    // p − 1e-3·g/(|g| + 1e-8) = p − 1e-3·sign(g) = [1.001, −2.001, 0.501]   (ε shifts it by < 2e-11)
    const optimizer = createOptimizer('adam', [3]);
    const param = Float32Array.from([1, -2, 0.5]);
    optimizer.step(param, Float32Array.from([-0.5, 1, -2]));
    expectClose(param, [1.001, -2.001, 0.501], 'param');
    expectClose(optimizer.state.expAvg, [-0.05, 0.1, -0.2], 'expAvg');
    expectClose(optimizer.state.expAvgSq, [0.00025, 0.001, 0.004], 'expAvgSq');
  });

  it('defaults at lr 0.1: three steps match the float64 reference', () => {
    const optimizer = createOptimizer('adam', [3], { lr: 0.1 });
    const expected = adamReference(optimizer.options);
    runSteps(optimizer).forEach((p, t) => expectClose(p, expected.params[t], `param after step ${t + 1}`));
    expectClose(optimizer.state.expAvg, expected.expAvg, 'expAvg');
    expectClose(optimizer.state.expAvgSq, expected.expAvgSq, 'expAvgSq');
  });

  it('large beta1 takes lerp’s other branch (weight 1 − β₁ ≥ 0.5) and still matches', () => {
    const options: AdamOptions = { lr: 0.1, beta1: 0.3, beta2: 0.999, eps: 1e-8 };
    const expected = adamReference(options);
    const state: AdamState = { step: 0, expAvg: new Float32Array(3), expAvgSq: new Float32Array(3) };
    const param = Float32Array.from(initialParam);
    grads.forEach((g, t) => {
      adamStep(param, Float32Array.from(g), state, options.lr, options);
      expectClose(param, expected.params[t], `param after step ${t + 1}`);
    });
  });

  it('the step function is pure apart from its arguments', () => {
    const state: AdamState = { step: 0, expAvg: new Float32Array(3), expAvgSq: new Float32Array(3) };
    const grad = Float32Array.from(grads[0]);
    adamStep(Float32Array.from(initialParam), grad, state, 0.1, optimizerDefinition('adam').defaults);
    expect(Array.from(grad)).toEqual(grads[0]);
    expect(state.step).toBe(1);
  });
});

describe('SGD', () => {
  it('first step by hand', () => {
    // p − 1e-3·g = [1 + 0.0005, −2 − 0.001, 0.5 + 0.002] = [1.0005, −2.001, 0.502]
    const optimizer = createOptimizer('sgd', [3]);
    const param = Float32Array.from([1, -2, 0.5]);
    optimizer.step(param, Float32Array.from([-0.5, 1, -2]));
    expectClose(param, [1.0005, -2.001, 0.502], 'param');
    expect(Array.from(optimizer.state.momentumBuffer)).toEqual([0, 0, 0]); // no momentum: the buffer stays zero
  });

  it('momentum: the first step sets buf = g, the second adds the gradient to μ·buf', () => {
    // step 1: buf = g = [−0.5, 1, −2]; p = [1, −2, 0.5] − 0.1·buf = [1.05, −2.1, 0.7]
    // step 2: buf = 0.9·buf + [0.3, 0.8, −1.5] = [−0.15, 1.7, −3.3]; p − 0.1·buf = [1.065, −2.27, 1.03]
    const optimizer = createOptimizer('sgd', [3], { momentum: 0.9 });
    const param = Float32Array.from([1, -2, 0.5]);
    optimizer.step(param, Float32Array.from(grads[0]), 0.1);
    expectClose(param, [1.05, -2.1, 0.7], 'param after step 1');
    expectClose(optimizer.state.momentumBuffer, [-0.5, 1, -2], 'buf after step 1');
    optimizer.step(param, Float32Array.from(grads[1]), 0.1);
    expectClose(optimizer.state.momentumBuffer, [-0.15, 1.7, -3.3], 'buf after step 2');
    expectClose(param, [1.065, -2.27, 1.03], 'param after step 2');
  });

  for (const partial of [{}, { lr: 0.1, momentum: 0.9 }] satisfies Partial<SgdOptions>[]) {
    it(`three steps match the float64 reference: ${JSON.stringify(partial)}`, () => {
      const optimizer = createOptimizer('sgd', [3], partial);
      const expected = sgdReference(optimizer.options);
      runSteps(optimizer).forEach((p, t) => expectClose(p, expected.params[t], `param after step ${t + 1}`));
      if (expected.momentumBuffer) expectClose(optimizer.state.momentumBuffer, expected.momentumBuffer, 'buf');
    });
  }
});

describe('the lr is passed per step', () => {
  it('a schedule-supplied lr overrides options.lr for that step only', () => {
    const a = createOptimizer('sgd', [3], { lr: 0.5 });
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

// Every optimizer of the registry, and SGD with momentum too.
const resumeCases: [OptimizerKind, object][] = [
  ...optimizerKinds.map((kind): [OptimizerKind, object] => [kind, { lr: 0.05 }]),
  ['sgd', { lr: 0.05, momentum: 0.9 }],
];

describe('checkpoint and resume', () => {
  const shape = [37];
  const size = 37;
  const total = 12;
  const cut = 5;

  for (const [kind, options] of resumeCases) {
    for (const via of ['Float32Array', 'JSON'] as const) {
      it(`${kind} ${JSON.stringify(options)} resumes bit-identically through ${via}`, () => {
        const lrAt = (t: number) => 0.1 / (1 + t); // a schedule-like lr, to check it is not part of the state

        const straight = createOptimizer(kind, shape, options);
        const straightParam = gradientStream(7, size)();
        const straightGrads = gradientStream(99, size);
        for (let t = 0; t < total; t++) straight.step(straightParam, straightGrads(), lrAt(t));

        const first = createOptimizer(kind, shape, options);
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

        const resumed = createOptimizer(kind, shape, options);
        resumed.importState(snapshot);
        expect(resumed.state.step).toBe(cut);
        const replayGrads = gradientStream(99, size);
        for (let t = 0; t < cut; t++) replayGrads();
        for (let t = cut; t < total; t++) resumed.step(param, replayGrads(), lrAt(t));

        expect(bits(param)).toEqual(bits(straightParam));
        const a = straight.exportState().state;
        const b = resumed.exportState().state;
        expect(Object.keys(b)).toEqual(Object.keys(a));
        for (const [key, x] of Object.entries(a)) {
          const y = b[key];
          if (x instanceof Float32Array && y instanceof Float32Array) expect(bits(y), key).toEqual(bits(x));
          else expect(y, key).toEqual(x);
        }
      });
    }
  }

  it('a snapshot is a copy of the state: its buffers and counters by name', () => {
    const optimizer = createOptimizer('adam', [3]);
    optimizer.step(Float32Array.from(initialParam), Float32Array.from(grads[0]));
    const snapshot = optimizer.exportState();
    expect(snapshot).toEqual({ kind: 'adam', state: { step: 1, expAvg: optimizer.state.expAvg, expAvgSq: optimizer.state.expAvgSq } });
    const before = Array.from(snapshot.state.expAvg as Float32Array);
    optimizer.step(Float32Array.from(initialParam), Float32Array.from(grads[1]));
    expect(Array.from(snapshot.state.expAvg as Float32Array)).toEqual(before);
    expect(snapshot.state.step).toBe(1);
  });

  it('SGD with momentum resumes from a snapshot taken before any step', () => {
    const optimizer = createOptimizer('sgd', [3], { momentum: 0.9, lr: 0.1 });
    const resumed = createOptimizer('sgd', [3], { momentum: 0.9, lr: 0.1 });
    resumed.importState(optimizer.exportState());
    const param = Float32Array.from([1, -2, 0.5]);
    resumed.step(param, Float32Array.from(grads[0]));
    expectClose(param, [1.05, -2.1, 0.7], 'param');
  });

  it('refuses a snapshot of another kind, size or state', () => {
    const rmsprop = createOptimizer('rmsprop', [3]);
    expect(() => rmsprop.importState(createOptimizer('adam', [3]).exportState())).toThrow(/snapshot is for adam/);
    expect(() => rmsprop.importState(createOptimizer('rmsprop', [4]).exportState())).toThrow(
      'importState: squareAvg has 4 elements; the optimizer holds 3',
    );
    const state = rmsprop.exportState().state;
    expect(() => rmsprop.importState({ kind: 'rmsprop', state: { ...state, gradAvg: new Float32Array(3) } })).toThrow(
      "importState: gradAvg is not part of rmsprop's state (step, squareAvg)",
    );
    expect(() => rmsprop.importState({ kind: 'rmsprop', state: { step: 1 } })).toThrow('importState: squareAvg is missing');
    expect(() => rmsprop.importState({ kind: 'rmsprop', state: { ...state, step: -1 } })).toThrow(
      'importState: step -1 is not an integer ≥ 0',
    );
    expect(() => rmsprop.importState({ kind: 'rmsprop', state: { ...state, squareAvg: 2 } })).toThrow(/squareAvg is a number/);
    expect(rmsprop.state.step).toBe(0); // nothing taken from a snapshot it refused
  });
});

describe('errors', () => {
  it('names the bad value and the limit', () => {
    expect(() => createOptimizer('rmsprop', [3], { lr: -1 })).toThrow('RMSProp: lr is -1; it must be a finite number >= 0');
    expect(() => createOptimizer('adam', [3], { beta2: Number.NaN })).toThrow('Adam: beta2 is NaN; it must be a finite number >= 0');
    expect(() => createOptimizer('adam', [3], { momentum: 0.9 } as Partial<AdamOptions>)).toThrow(/unknown option momentum/);
    expect(() => createOptimizer('lbfgs' as OptimizerKind, [3])).toThrow(/kind is lbfgs; it must be one of rmsprop, adam, sgd/);
    expect(() => createOptimizer('adam', [2.5])).toThrow('createOptimizer: shape [2.5]: 2.5 is not an integer ≥ 0');
  });

  it('checks lengths and the per-step lr', () => {
    for (const kind of optimizerKinds) {
      const optimizer: Optimizer = createOptimizer(kind, [3]);
      expect(() => optimizer.step(new Float32Array(2), new Float32Array(3))).toThrow(/param has 2 elements/);
      expect(() => optimizer.step(new Float32Array(3), new Float32Array(4))).toThrow(/grad has 4 elements/);
      expect(() => optimizer.step(new Float32Array(3), new Float32Array(3), Number.NaN)).toThrow(/lr is NaN/);
    }
  });
});
