// The model's token-embedding matrix wte seen from the search: its scale (for initialization and relative
// learning rates), its mean, its principal directions (a basis for projected prompts) and nearest tokens.
//
// V = vocab, C = channels, K = basis dimensions
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import type { Checkpoint } from '../model/checkpoint.js';
import { gramMatrix } from '../model/gram-matrix.js';

// Multiply-adds between two yields of the nearest-token scan (about a millisecond of work).
const nearestBlockSize = 1 << 20;

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

  /**
   * Return the k tokens whose embeddings have the highest cosine similarity with `vector` (C). A scan of gpt2's
   * 50257 rows takes tens of milliseconds, so it yields to the event loop between blocks: on a shared server the
   * other jobs' rounds and streams go on meanwhile.
   */
  async nearest(vector: Float32Array, k: number): Promise<NearestToken[]> {
    return (await this.nearestMany([vector], k))[0]!;
  }

  /**
   * Return the k nearest tokens of each of R vectors (C) in one pass over wte: the product (R, C) x (C, V) with a
   * running top-k per vector, so the summaries of runs that finish together read the matrix once. Each vector's
   * numbers are those `nearest` gives it alone.
   */
  async nearestMany(vectors: readonly Float32Array[], k: number): Promise<NearestToken[][]> {
    const { C, V } = this;
    const norms = vectors.map((vector) => {
      let sq = 0;
      for (let c = 0; c < C; c++) sq += vector[c]! * vector[c]!;
      return Math.sqrt(sq) || 1;
    });
    const best = vectors.map(() => [] as NearestToken[]);
    const rowsPerBlock = Math.max(1, Math.floor(nearestBlockSize / (C * Math.max(1, vectors.length))));
    for (let v = 0; v < V; v++) {
      if (v > 0 && v % rowsPerBlock === 0) await new Promise((resolve) => setImmediate(resolve));
      const base = v * C;
      for (let r = 0; r < vectors.length; r++) {
        const vector = vectors[r]!;
        let dot = 0;
        for (let c = 0; c < C; c++) dot += vector[c]! * this.wte[base + c]!;
        const cosine = dot / (norms[r]! * (this.norms[v]! || 1));
        const top = best[r]!;
        if (top.length < k || cosine > top[top.length - 1]!.cosine) {
          let at = top.length;
          while (at > 0 && top[at - 1]!.cosine < cosine) at--;
          top.splice(at, 0, { id: v, cosine });
          if (top.length > k) top.pop();
        }
      }
    }
    return best;
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
