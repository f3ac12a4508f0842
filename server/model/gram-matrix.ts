// X^T X of a large matrix on the execution provider: the token-embedding covariance behind the PCA basis is
// V·C² multiply-adds (3e10 for gpt2), seconds in onnxruntime and a minute in plain JavaScript.
import ort from 'onnxruntime-node';
import { ElemType, OnnxGraphBuilder } from './onnx-builder.js';

/** Return X^T X (cols, cols) in float64 for a row-major X (rows, cols). */
export async function gramMatrix(x: Float32Array, rows: number, cols: number): Promise<Float64Array> {
  const g = new OnnxGraphBuilder('gram');
  const input = g.input('x', ElemType.float, [rows, cols]); // (R, K)
  const gram = g.op('MatMul', [g.op('Transpose', [input], { perm: [1, 0] }), input]); // (K, K)
  g.output(gram, 'gram', ElemType.float, [cols, cols]);
  const session = await ort.InferenceSession.create(g.toBytes(), { executionProviders: ['cpu'] });
  try {
    const out = await session.run({ x: new ort.Tensor('float32', x, [rows, cols]) });
    return Float64Array.from(out.gram!.data as Float32Array);
  } finally {
    await session.release();
  }
}
