// The practical peak of an execution provider: one large float32 MatMul, opened the way the gradient graph is and
// timed beside it, so that the graph's GFLOP/s can be stated as a fraction of what the provider reaches.
//
// M, K, N = the MatMul's (M, K) x (K, N) shape; the default is a GPT-2 124M c_fc product at B·S = 4096.
import os from 'node:os';
import ort from 'onnxruntime-node';
import type { DeviceRequest, ProviderFallback, ProviderName } from '../model/execution-provider.js';
import { openSession } from '../model/execution-provider.js';
import { ElemType, OnnxGraphBuilder } from '../model/onnx-builder.js';
import { createSeededRandom } from '../util/seeded-random.js';

/** Give the shape of the peak MatMul: (m, k) x (k, n). */
export interface MatmulShape {
  m: number;
  k: number;
  n: number;
}

/** Use (4096, 768) x (768, 3072): large enough to keep every core or SM busy, small enough for a 2-core box. */
export const matmulShapeDefaults: Readonly<MatmulShape> = Object.freeze({ m: 4096, k: 768, n: 3072 });

/** Hold the peak graph open on one provider, ready to be run between the gradient graph's runs. */
export interface MatmulPeak {
  shape: MatmulShape;
  provider: ProviderName;
  fallbacks: ProviderFallback[];
  /** Run the MatMul once. */
  run(): Promise<void>;
  release(): Promise<void>;
}

const weightStd = 0.02; // the scale of GPT-2's weights, so the values are ordinary floats (no denormals)
const inputName = 'row'; // (1, K) float

/**
 * Build the peak graph: Expand a fed (1, K) row to (M, K) on the device, multiply by a (K, N) initializer, and
 * ReduceSum each output row to (M). The Expand keeps a 12 MB host-to-device copy and the ReduceSum a 50 MB copy
 * back out of the timing (on the CPU provider a full (M, N) output costs a third as much as the product itself);
 * both are a single memory pass, against the product's K multiply-adds per output.
 */
export function buildMatmulPeakGraph(shape: MatmulShape, seed = 0): OnnxGraphBuilder {
  const { m: M, k: K, n: N } = shape;
  const g = new OnnxGraphBuilder(`matmul-peak.${M}x${K}x${N}`);
  const row = g.input(inputName, ElemType.float, [1, K]);
  const a = g.op('Expand', [row, g.int64s([M, K])], {}, 'a'); // (M, K)
  const w = g.floats(createSeededRandom(seed).fillNormal(new Float32Array(K * N), weightStd), [K, N], 'w'); // (K, N)
  const product = g.op('MatMul', [a, w], {}, 'product'); // (M, N)
  const rowSums = g.op('ReduceSum', [product, g.int64s([1])], { keepdims: 0 }, 'row_sums'); // (M)
  g.output(rowSums, 'row_sums', ElemType.float, [M]);
  return g;
}

/** Return the FLOPs of one peak-graph run: its MatMul only, counted as the graph's are. */
export function matmulFlops(shape: MatmulShape): number {
  return 2 * shape.m * shape.k * shape.n;
}

/** Open the peak graph on `device` and run it once, so first-run costs stay out of later timings. */
export async function openMatmulPeak(device: DeviceRequest, shape: MatmulShape, seed = 0): Promise<MatmulPeak> {
  // The graph has no external data; the folder argument is only required by openSession's signature.
  const opened = await openSession(buildMatmulPeakGraph(shape, seed).toBytes(), os.tmpdir(), device);
  const row = createSeededRandom(seed + 1).fillNormal(new Float32Array(shape.k), 1);
  const feeds = { [inputName]: new ort.Tensor('float32', row, [1, shape.k]) };
  const run = async (): Promise<void> => {
    await opened.session.run(feeds);
  };
  await run();
  return {
    shape: { ...shape },
    provider: opened.provider,
    fallbacks: opened.fallbacks,
    run,
    release: () => opened.session.release(),
  };
}
