// The rows of a large matrix nearest, by cosine, to a few vectors: one (R, C) x (C, V) product and a top-k in
// onnxruntime. The nearest tokens of every prompt vector in a result summary come from this product over wte (V, C):
// 64 prompt vectors against gpt2's vocabulary are 2.5e9 multiply-adds, seconds in plain JavaScript. The product's
// rounding depends on how many vectors share it, so callers that need numbers independent of the batch rescore the
// rows it finds (token-embeddings.ts asks for a few more than it keeps).
//
// R = vectors, C = columns, V = rows of the matrix, k = rows kept per vector
import ort from 'onnxruntime-node';
import { sessionThreads } from './devices.js';
import { ElemType, OnnxGraphBuilder } from './onnx-builder.js';

/** The rows nearest to one vector, best first: row index and cosine. */
export interface NearestRow {
  row: number;
  cosine: number;
}

// Inputs: the vectors scaled to unit length on the host, the matrix as it is and the reciprocals of its row norms;
// the cosine is (v / |v|) · w / |w|. TopK breaks ties by the lower index, as a scan in row order would.
function buildNearestRowsGraph(): OnnxGraphBuilder {
  const g = new OnnxGraphBuilder('nearest-rows');
  const unitVectors = g.input('unit_vectors', ElemType.float, ['R', 'C']);
  const matrix = g.input('matrix', ElemType.float, ['V', 'C']);
  const inverseNorms = g.input('inverse_norms', ElemType.float, ['V']);
  const k = g.input('k', ElemType.int64, [1]);
  const dots = g.op('Gemm', [unitVectors, matrix], { transB: 1 }, 'dots'); // (R, V)
  const cosines = g.op('Mul', [dots, inverseNorms], {}, 'cosines'); // (R, V)
  const [values, indices] = g.ops('TopK', [cosines, k], 2, { axis: -1, largest: 1, sorted: 1 }, 'top'); // (R, k) x 2
  g.output(values!, 'cosine', ElemType.float, ['R', 'k']);
  g.output(indices!, 'row', ElemType.int64, ['R', 'k']);
  return g;
}

/** A matrix (V, C) to look nearest rows up in; the session opens on first use. */
export class NearestRows {
  private readonly inverseNorms: Float32Array;
  private session: Promise<ort.InferenceSession> | undefined;

  /** @param norms (V) the rows' L2 norms; a zero row gets cosine 0 with everything */
  constructor(private readonly matrix: Float32Array, private readonly V: number, private readonly C: number,
    norms: Float32Array) {
    this.inverseNorms = Float32Array.from(norms, (n) => 1 / (n || 1));
  }

  /** Return the k rows nearest to each of `vectors` (each C long), best first. */
  async nearest(vectors: readonly Float32Array[], k: number): Promise<NearestRow[][]> {
    if (vectors.length === 0) return [];
    const { C, V } = this;
    const unit = new Float32Array(vectors.length * C); // (R, C)
    vectors.forEach((vector, r) => {
      let sq = 0;
      for (let c = 0; c < C; c++) sq += vector[c]! * vector[c]!;
      const scale = 1 / (Math.sqrt(sq) || 1);
      for (let c = 0; c < C; c++) unit[r * C + c] = vector[c]! * scale;
    });
    this.session ??= ort.InferenceSession.create(buildNearestRowsGraph().toBytes(), {
      executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: sessionThreads(),
    });
    const out = await (await this.session).run({
      unit_vectors: new ort.Tensor('float32', unit, [vectors.length, C]),
      matrix: new ort.Tensor('float32', this.matrix, [V, C]),
      inverse_norms: new ort.Tensor('float32', this.inverseNorms, [V]),
      k: new ort.Tensor('int64', BigInt64Array.of(BigInt(Math.min(k, V))), [1]),
    });
    const cosines = out.cosine!.data as Float32Array;
    const rows = out.row!.data as BigInt64Array;
    const kept = Math.min(k, V);
    return vectors.map((_, r) => Array.from({ length: kept }, (_, j) => ({
      row: Number(rows[r * kept + j]), cosine: cosines[r * kept + j]!,
    })));
  }

  /** Close the session, if one was opened. */
  async release(): Promise<void> {
    const session = this.session;
    this.session = undefined;
    if (session) await (await session).release();
  }
}
