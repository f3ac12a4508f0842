// The model's token-embedding matrix wte seen from the search: its scale (for initialization and relative
// learning rates), its mean, its principal directions (a basis for projected prompts) and nearest tokens.
//
// V = vocab, C = channels, K = basis dimensions
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import type { Checkpoint } from '../model/checkpoint.js';
import { gramMatrix } from '../model/gram-matrix.js';
import { NearestRows } from '../model/nearest-rows.js';

// Candidates beyond k that the float32 product passes on for rescoring: its rounding (about 1e-7 of a cosine) cannot
// move a token further than that past its neighbours but among near-ties.
const nearestCandidateMargin = 16;

export interface NearestToken {
  id: number;
  cosine: number;
}

/** Statistics and look-ups over wte (V, C). */
export class TokenEmbeddings {
  readonly std: number; // over all V·C entries
  readonly mean: Float32Array; // (C) mean token embedding
  readonly meanNorm: number; // mean L2 norm of a row
  private readonly norms: Float32Array; // (V) row norms
  private principal?: Promise<Float32Array>;
  private readonly nearestRows: NearestRows;

  constructor(readonly wte: Float32Array, readonly V: number, readonly C: number) {
    const mean = new Float64Array(C);
    let sum = 0;
    let sumSq = 0;
    this.norms = new Float32Array(V);
    let normSum = 0;
    for (let v = 0; v < V; v++) {
      let sq = 0;
      for (let c = 0; c < C; c++) {
        const x = wte[v * C + c]!;
        mean[c]! += x;
        sum += x;
        sq += x * x;
      }
      sumSq += sq;
      this.norms[v] = Math.sqrt(sq);
      normSum += this.norms[v]!;
    }
    const n = V * C;
    this.std = Math.sqrt(Math.max(0, sumSq / n - (sum / n) ** 2));
    this.mean = Float32Array.from(mean, (m) => m / V);
    this.meanNorm = normSum / V;
    this.nearestRows = new NearestRows(wte, V, C, this.norms);
  }

  /** Read wte from a checkpoint. */
  static fromCheckpoint(checkpoint: Checkpoint): TokenEmbeddings {
    const { vocabSize: V, nEmbd: C } = checkpoint.config;
    return new TokenEmbeddings(checkpoint.readFloat32('wte.weight'), V, C);
  }

  /** Return the embedding of token `id` (C), a view into wte. */
  row(id: number): Float32Array {
    return this.wte.subarray(id * this.C, (id + 1) * this.C);
  }

  /** Return the k tokens whose embeddings have the highest cosine similarity with `vector` (C), best first. */
  async nearest(vector: Float32Array, k: number): Promise<NearestToken[]> {
    return (await this.nearestMany([vector], k))[0]!;
  }

  /**
   * Return the k nearest tokens of each of R vectors (C) in one pass over wte: the product (R, C) x (C, V) and a
   * top-k in onnxruntime (server/model/nearest-rows.ts) find candidates, off the event loop and reading the matrix
   * once for the summaries of runs that finish together; the candidates' cosines are then computed here in float64,
   * so each vector's tokens and numbers are those it gets alone, whatever else shared the product.
   */
  async nearestMany(vectors: readonly Float32Array[], k: number): Promise<NearestToken[][]> {
    const { C } = this;
    const candidates = await this.nearestRows.nearest(vectors, k + nearestCandidateMargin);
    return vectors.map((vector, r) => {
      let sq = 0;
      for (let c = 0; c < C; c++) sq += vector[c]! * vector[c]!;
      const norm = Math.sqrt(sq) || 1;
      const scored = candidates[r]!.map(({ row }) => {
        let dot = 0;
        for (let c = 0; c < C; c++) dot += vector[c]! * this.wte[row * C + c]!;
        return { id: row, cosine: dot / (norm * (this.norms[row]! || 1)) };
      });
      // Best first; on a tie the lower id, as a scan in vocabulary order keeps it.
      return scored.sort((a, b) => b.cosine - a.cosine || a.id - b.id).slice(0, k);
    });
  }

  /** Close the session of the nearest-token look-ups. */
  release(): Promise<void> {
    return this.nearestRows.release();
  }

  /** Return the top-k principal directions of the token embeddings as orthonormal rows (K, C), largest first. */
  async principalDirections(k: number): Promise<Float32Array> {
    if (k > this.C) throw new RangeError(`principal directions: k = ${k} exceeds the embedding width C = ${this.C}`);
    this.principal ??= this.computePrincipal();
    return (await this.principal).slice(0, k * this.C);
  }

  private async computePrincipal(): Promise<Float32Array> {
    const { C, V } = this;
    const gram = await gramMatrix(this.wte, V, C); // (C, C) = wte^T wte
    const covariance = new Matrix(C, C);
    for (let i = 0; i < C; i++) {
      for (let j = 0; j < C; j++) covariance.set(i, j, gram[i * C + j]! / V - this.mean[i]! * this.mean[j]!);
    }
    const eig = new EigenvalueDecomposition(covariance, { assumeSymmetric: true });
    const values = eig.realEigenvalues;
    const order = values.map((_, i) => i).sort((a, b) => values[b]! - values[a]!);
    const vectors = eig.eigenvectorMatrix; // columns are eigenvectors
    const out = new Float32Array(C * C);
    order.forEach((col, row) => {
      for (let c = 0; c < C; c++) out[row * C + c] = vectors.get(c, col);
    });
    return out;
  }
}
