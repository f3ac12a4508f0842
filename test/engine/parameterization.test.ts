// Parameterizations and initializations: reproducible from a seed bit for bit, at the token embeddings' scale,
// bases with orthonormal rows (PCA's in order of variance), the chain rule for projected codes, and the lr scaled
// to the embedding norm.
//
// P = prompt vectors, C = channels (32 here), K = code dimensions, V = vocab
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EngineModel } from '../../server/engine/engine-model.js';
import { initialTheta } from '../../server/engine/initialization.js';
import { InversionEngine } from '../../server/engine/inversion-engine.js';
import type { Parameterization } from '../../server/engine/parameterization.js';
import { createParameterization, randomOrthonormalBasis } from '../../server/engine/parameterization.js';
import type { InitSettings, ParameterizationSettings } from '../../server/engine/settings.js';
import { randomNormal } from '../../server/util/seeded-random.js';
import { invert, loadTinyModel, nllSequence, reachableTarget } from '../helpers/engine-run.js';

let model: EngineModel;
let C: number;

beforeAll(async () => {
  model = await loadTinyModel();
  C = model.checkpoint.config.nEmbd;
});
afterAll(async () => {
  await model.release();
});

const targetLength = 3;
const parameterizations: [string, ParameterizationSettings][] = [
  ['full (P = 3)', { kind: 'full' }],
  ['flat', { kind: 'flat' }],
  ['projected (16, random basis)', { kind: 'projected', dims: 16, basis: 'random' }],
  ['projected (16, pca basis)', { kind: 'projected', dims: 16, basis: 'pca' }],
];

function initsFor(P: number): InitSettings[] {
  return [
    { kind: 'random' },
    { kind: 'zeros' },
    { kind: 'mean' },
    { kind: 'text', text: 'Hello world' },
    { kind: 'embedding', values: Array.from(randomNormal(P * C, 0.2, 99)) },
  ];
}

const bytesOf = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const bitIdentical = (a: Float32Array, b: Float32Array) => a.length === b.length && bytesOf(a).equals(bytesOf(b));

function parameterize(settings: ParameterizationSettings, seed: number): Promise<Parameterization> {
  return createParameterization(settings, C, targetLength, model.embeddings, seed);
}

async function theta(par: ParameterizationSettings, init: InitSettings, seed: number): Promise<Float32Array> {
  return initialTheta(init, await parameterize(par, seed), model.embeddings, model.tokenizer, seed);
}

/** Rows of a parameterization's basis (K, C), read through toPrompt of the unit codes. */
function basisRows(p: Parameterization): Float32Array[] {
  return Array.from({ length: p.size }, (_, k) => {
    const z = new Float32Array(p.size);
    z[k] = 1;
    const row = new Float32Array(C);
    p.toPrompt(z, row);
    return row;
  });
}

/** max |B Bᵀ − I| over the rows, in double. */
function orthonormalityError(rows: readonly Float32Array[]): number {
  let worst = 0;
  for (let i = 0; i < rows.length; i++) {
    for (let j = 0; j < rows.length; j++) {
      let dot = 0;
      for (let c = 0; c < rows[i]!.length; c++) dot += rows[i]![c]! * rows[j]![c]!;
      worst = Math.max(worst, Math.abs(dot - (i === j ? 1 : 0)));
    }
  }
  return worst;
}

describe('initialization', () => {
  for (const [label, par] of parameterizations) {
    it(`${label}: every init kind is bit-identical for the same seed; only the seeded ones change with it`, async () => {
      const P = (await parameterize(par, 1)).promptVectors;
      for (const init of initsFor(P)) {
        const a = await theta(par, init, 7);
        const b = await theta(par, init, 7);
        expect(bitIdentical(a, b), `${init.kind}: same seed`).toBe(true);
        expect(a.every(Number.isFinite)).toBe(true);
        const other = await theta(par, init, 8);
        // random draws from the seed; a random basis is drawn from it too, so every non-zero start moves with it
        const seeded = init.kind === 'random' || (par.kind === 'projected' && par.basis === 'random' && init.kind !== 'zeros');
        expect(bitIdentical(a, other), `${init.kind}: seed 7 vs 8`).toBe(!seeded);
      }
    });
  }

  it('zeros, mean, text and embedding put the intended vectors into a full (P = 3) and a flat prompt', async () => {
    const [hello, world] = model.tokenizer.encode('Hello world') as [number, number];
    const full = await parameterize({ kind: 'full' }, 1);
    const flat = await parameterize({ kind: 'flat' }, 1);
    const rows = (t: Float32Array) => Array.from({ length: t.length / C }, (_, p) => Array.from(t.subarray(p * C, (p + 1) * C)));
    const wte = (id: number) => Array.from(model.embeddings.row(id));
    const mean = Array.from(model.embeddings.mean);
    const init = (p: Parameterization, s: InitSettings) => initialTheta(s, p, model.embeddings, model.tokenizer, 1);
    expect(init(full, { kind: 'zeros' }).every((v) => v === 0)).toBe(true);
    expect(rows(init(full, { kind: 'mean' }))).toEqual([mean, mean, mean]);
    expect(rows(init(flat, { kind: 'mean' }))).toEqual([mean]);
    expect(rows(init(full, { kind: 'text', text: 'Hello world' }))).toEqual([wte(hello), wte(world), wte(hello)]);
    const flatText = init(flat, { kind: 'text', text: 'Hello world' });
    flatText.forEach((v, c) => expect(v).toBeCloseTo((wte(hello)[c]! + wte(world)[c]!) / 2, 6));
    const values = Array.from(randomNormal(3 * C, 0.2, 5));
    expect(Array.from(init(full, { kind: 'embedding', values }))).toEqual(Array.from(Float32Array.from(values)));
  });

  it('random init has the token embeddings’ std (8192 draws within 3%) and mean ≈ 0', async () => {
    // the statistic itself, recomputed from wte in double
    const { wte } = model.embeddings;
    let sum = 0;
    let sumSq = 0;
    for (const x of wte) {
      sum += x;
      sumSq += x * x;
    }
    const wteStd = Math.sqrt(sumSq / wte.length - (sum / wte.length) ** 2);
    expect(model.embeddings.std).toBeCloseTo(wteStd, 9);
    expect(wteStd).toBeGreaterThan(0);

    for (const [std, init] of [[wteStd, { kind: 'random' }], [0.5, { kind: 'random', std: 0.5 }]] as const) {
      const t = await theta({ kind: 'full', promptVectors: 256 }, init, 3);
      expect(t).toHaveLength(256 * C);
      const m = t.reduce((a, v) => a + v, 0) / t.length;
      const s = Math.sqrt(t.reduce((a, v) => a + (v - m) ** 2, 0) / t.length);
      console.log(`random init: sample std ${s.toFixed(5)} for std ${std.toFixed(5)}`);
      expect(Math.abs(s / std - 1)).toBeLessThan(0.03);
      expect(Math.abs(m)).toBeLessThan((4 * std) / Math.sqrt(t.length));
    }
  });

  it('the same seed gives the same run through the engine, bit for bit; another seed another run', async () => {
    const engine = new InversionEngine(model, { maxBatch: 4, maxActiveRuns: 4 });
    const targetIds = await reachableTarget(model, 1002, 4);
    const run = (seed: number) => invert(engine, { targetIds, settings: { seed, maxIterations: 20, stopOnHit: false } });
    const [a, b, c] = [await run(7), await run(7), await run(8)];
    expect(bitIdentical(a.best.embedding.values, b.best.embedding.values)).toBe(true);
    expect(nllSequence(a.progress())).toEqual(nllSequence(b.progress()));
    expect(bitIdentical(a.best.embedding.values, c.best.embedding.values)).toBe(false);
    expect(nllSequence(a.progress())[0]).not.toBe(nllSequence(c.progress())[0]);
  });
});

describe('projected bases', () => {
  it('a random basis has orthonormal rows, |B Bᵀ − I| < 1e-5, for K = 1, 16, 32 and several seeds', async () => {
    for (const K of [1, 16, 32]) {
      for (const seed of [1, 2, 3]) {
        const basis = randomOrthonormalBasis(K, C, seed);
        const rows = Array.from({ length: K }, (_, k) => basis.subarray(k * C, (k + 1) * C));
        expect(orthonormalityError(rows), `K = ${K}, seed ${seed}`).toBeLessThan(1e-5);
        // the parameterization uses exactly this basis
        const p = await parameterize({ kind: 'projected', dims: K, basis: 'random' }, seed);
        basisRows(p).forEach((row, k) => expect(bitIdentical(row, rows[k]!)).toBe(true));
      }
    }
    expect(bitIdentical(randomOrthonormalBasis(16, C, 1), randomOrthonormalBasis(16, C, 2))).toBe(false);
  });

  it('the pca basis has orthonormal rows, ordered by the variance of the wte projections', async () => {
    const all = await model.embeddings.principalDirections(C);
    const rows = Array.from({ length: C }, (_, k) => all.subarray(k * C, (k + 1) * C));
    expect(orthonormalityError(rows)).toBeLessThan(1e-5);
    const { wte, V } = model.embeddings;
    const projectionVariance = (direction: Float32Array) => {
      let sum = 0;
      let sumSq = 0;
      for (let v = 0; v < V; v++) {
        let dot = 0;
        for (let c = 0; c < C; c++) dot += wte[v * C + c]! * direction[c]!;
        sum += dot;
        sumSq += dot * dot;
      }
      return sumSq / V - (sum / V) ** 2;
    };
    const variances = rows.map(projectionVariance);
    console.log(`pca: projection variances ${variances.slice(0, 4).map((v) => v.toExponential(3)).join(', ')}, …, ` +
      `${variances.at(-1)!.toExponential(3)}`);
    for (let k = 0; k + 1 < C; k++) expect(variances[k]!, `direction ${k}`).toBeGreaterThanOrEqual(variances[k + 1]!);
    expect(variances[0]!).toBeGreaterThan(variances[C - 1]!);
    // the extreme eigenvalues bound every direction's variance: no coordinate axis and no random direction lies
    // outside [last, first]
    const axes = Array.from({ length: C }, (_, c) => Float32Array.from({ length: C }, (_, i) => (i === c ? 1 : 0)));
    const axisVariances = axes.map(projectionVariance);
    const randomVariances = basisRows(await parameterize({ kind: 'projected', dims: 16, basis: 'random' }, 4))
      .map(projectionVariance);
    for (const v of [...axisVariances, ...randomVariances]) {
      expect(v).toBeLessThanOrEqual(variances[0]!);
      expect(v).toBeGreaterThanOrEqual(variances[C - 1]!);
    }
    // a complete orthonormal basis keeps the total variance: the sum over directions is the trace of the covariance
    const trace = axisVariances.reduce((a, v) => a + v, 0);
    expect(Math.abs(variances.reduce((a, v) => a + v, 0) / trace - 1)).toBeLessThan(1e-4);
    // the pca parameterization uses the first K of these directions
    const p = await parameterize({ kind: 'projected', dims: 16, basis: 'pca' }, 1);
    basisRows(p).forEach((row, k) => expect(bitIdentical(row, rows[k]!)).toBe(true));
  });
});

describe('the chain rule', () => {
  for (const basis of ['random', 'pca'] as const) {
    it(`projected (16, ${basis}): toPrompt is z·B, gradientToTheta is dprompt·Bᵀ, and both agree with finite differences`, async () => {
      const p = await parameterize({ kind: 'projected', dims: 16, basis }, 5);
      const B = basisRows(p);
      const K = p.size;
      const z = randomNormal(K, 0.3, 21);
      const g = randomNormal(C, 1, 22); // stands for d loss / d prompt
      const prompt = new Float32Array(C);
      p.toPrompt(z, prompt);
      const gradZ = new Float32Array(K);
      p.gradientToTheta(g, gradZ);
      for (let c = 0; c < C; c++) {
        const explicit = B.reduce((a, row, k) => a + z[k]! * row[c]!, 0);
        expect(Math.abs(prompt[c]! - explicit)).toBeLessThan(1e-6);
      }
      for (let k = 0; k < K; k++) {
        const explicit = B[k]!.reduce((a, b, c) => a + b * g[c]!, 0);
        expect(Math.abs(gradZ[k]! - explicit)).toBeLessThan(1e-5);
        // d/dz_k of g·toPrompt(z), by central differences (exact up to rounding: the map is linear)
        const h = 0.5;
        const at = (delta: number) => {
          const shifted = Float32Array.from(z);
          shifted[k]! += delta;
          const out = new Float32Array(C);
          p.toPrompt(shifted, out);
          return out.reduce((a, v, c) => a + v * g[c]!, 0);
        };
        expect(Math.abs((at(h) - at(-h)) / (2 * h) - gradZ[k]!)).toBeLessThan(1e-4);
      }
      // orthonormal rows: the code comes back from its own prompt
      const back = p.fromPrompt(prompt);
      back.forEach((v, k) => expect(Math.abs(v - z[k]!)).toBeLessThan(1e-5));
    });
  }

  it('projected (16, random): d NLL / d z from the graph’s d prompt matches finite differences of the NLL in z', async () => {
    const p = await parameterize({ kind: 'projected', dims: 16, basis: 'random' }, 6);
    const K = p.size;
    const targets = [await reachableTarget(model, 1000, 4)];
    const nllAt = async (z: Float32Array) => {
      const prompt = new Float32Array(C);
      p.toPrompt(z, prompt);
      const out = await model.gradient.run({ prompt, promptVectors: 1, targets });
      return { nll: Array.from(out.nll).reduce((a, v) => a + v, 0), gradPrompt: out.gradPrompt };
    };
    const z = initialTheta({ kind: 'random' }, p, model.embeddings, model.tokenizer, 6);
    const { gradPrompt } = await nllAt(z);
    const gradZ = new Float32Array(K);
    p.gradientToTheta(gradPrompt, gradZ);
    const gradNorm = Math.hypot(...gradZ);
    expect(gradNorm).toBeGreaterThan(1e-3);
    const eps = 1e-2;
    const directions = [0, 7, 15].map((k) => Float32Array.from({ length: K }, (_, i) => (i === k ? 1 : 0)));
    directions.push(Float32Array.from(gradZ, (v) => v / gradNorm));
    const analytic: number[] = [];
    const numeric: number[] = [];
    for (const u of directions) {
      const plus = (await nllAt(z.map((v, i) => v + eps * u[i]!))).nll;
      const minus = (await nllAt(z.map((v, i) => v - eps * u[i]!))).nll;
      numeric.push((plus - minus) / (2 * eps));
      analytic.push(gradZ.reduce((a, v, i) => a + v * u[i]!, 0));
    }
    const scale = Math.max(...analytic.map(Math.abs));
    const error = Math.max(...analytic.map((a, i) => Math.abs(a - numeric[i]!))) / scale;
    console.log(`projected chain rule: max |analytic − numeric| / max |analytic| = ${error.toExponential(2)}`);
    expect(error).toBeLessThan(1e-2);
  });

  it('full and flat pass prompt and gradient through unchanged', async () => {
    for (const par of [{ kind: 'full' }, { kind: 'flat' }] as const) {
      const p = await parameterize(par, 1);
      const t = randomNormal(p.size, 0.2, 3);
      const prompt = new Float32Array(p.promptVectors * C);
      p.toPrompt(t, prompt);
      expect(bitIdentical(prompt, t)).toBe(true);
      const grad = new Float32Array(p.size);
      p.gradientToTheta(prompt, grad);
      expect(bitIdentical(grad, t)).toBe(true);
      expect(bitIdentical(p.fromPrompt(prompt), t)).toBe(true);
    }
  });
});

describe('lr relative to the embedding norm', () => {
  it('multiplies the lr by the mean L2 norm of the wte rows (progress.lr)', async () => {
    const { wte, V } = model.embeddings;
    let normSum = 0;
    for (let v = 0; v < V; v++) normSum += Math.hypot(...wte.subarray(v * C, (v + 1) * C));
    const meanNorm = normSum / V;
    expect(model.embeddings.meanNorm).toBeCloseTo(meanNorm, 6);
    expect(Math.abs(meanNorm - 1)).toBeGreaterThan(0.1); // so scaling by it is visible
    const engine = new InversionEngine(model, { maxBatch: 4, maxActiveRuns: 4 });
    const targetIds = await reachableTarget(model, 1002, 4);
    const settings = { parameterization: { kind: 'flat' }, seed: 1, lr: 0.1, maxIterations: 5, stopOnHit: false } as const;
    const relative = await invert(engine, { targetIds, settings: { ...settings, lrRelativeToNorm: true } });
    const absolute = await invert(engine, { targetIds, settings: { ...settings, lrRelativeToNorm: false } });
    console.log(`lr relative to norm: 0.1 × ${model.embeddings.meanNorm.toFixed(4)} = ${relative.progress()[0]!.lr}`);
    for (const p of relative.progress()) expect(p.lr / (0.1 * model.embeddings.meanNorm)).toBeCloseTo(1, 12);
    for (const p of absolute.progress()) expect(p.lr).toBe(0.1);
    // the larger step shows in the search itself
    expect(nllSequence(relative.progress())[0]).toBe(nllSequence(absolute.progress())[0]);
    expect(nllSequence(relative.progress())[1]).not.toBe(nllSequence(absolute.progress())[1]);
  });
});
