// Parameterizations: the numbers the optimizer moves (theta) and how they become the soft prompt (P, C).
//   full       theta = prompt, P vectors                               prompt = theta
//   flat       theta = prompt, one vector                              prompt = theta
//   projected  theta = z, a K-number code; basis (K, C) fixed          prompt = z · basis,  d z = d prompt · basis^T
// The chain rule for `projected` happens here on the host: the gradient graph only knows prompts.
//
// P = prompt vectors, C = channels, K = code dimensions
import { Matrix, QrDecomposition } from 'ml-matrix';
import { randomNormal } from '../util/seeded-random.js';
import type { ParameterizationSettings } from './settings.js';
import { SettingsError } from './settings.js';
import type { TokenEmbeddings } from './token-embeddings.js';

export interface Parameterization {
  readonly kind: ParameterizationSettings['kind'];
  readonly promptVectors: number; // P
  readonly size: number; // numbers in theta
  /** Theta's shape: (P, C) for full, (C) for flat, (K) for projected. */
  readonly shape: readonly number[];
  /** Write the prompt (P, C) for `theta`. */
  toPrompt(theta: Float32Array, prompt: Float32Array): void;
  /** Write d loss / d theta for d loss / d prompt (P, C). */
  gradientToTheta(gradPrompt: Float32Array, gradTheta: Float32Array): void;
  /** Return the theta whose prompt is closest to `prompt` (P, C) (exact for full and flat). */
  fromPrompt(prompt: Float32Array): Float32Array;
}

/** Build the parameterization a job asked for, for a target of `targetLength` tokens. */
export async function createParameterization(settings: ParameterizationSettings, C: number, targetLength: number,
  embeddings: TokenEmbeddings, seed: number): Promise<Parameterization> {
  switch (settings.kind) {
    case 'full':
      return identity('full', settings.promptVectors ?? targetLength, C);
    case 'flat':
      return identity('flat', 1, C);
    case 'projected': {
      const K = settings.dims;
      if (K > C) {
        throw new SettingsError('parameterization.dims', `${K} exceeds the model's embedding width ${C}`);
      }
      const basis = settings.basis === 'pca' ? await embeddings.principalDirections(K) : randomOrthonormalBasis(K, C, seed);
      return projected(basis, K, C);
    }
  }
}

function identity(kind: 'full' | 'flat', P: number, C: number): Parameterization {
  return {
    kind,
    promptVectors: P,
    size: P * C,
    shape: kind === 'full' ? [P, C] : [C],
    toPrompt: (theta, prompt) => prompt.set(theta),
    gradientToTheta: (gradPrompt, gradTheta) => gradTheta.set(gradPrompt),
    fromPrompt: (prompt) => Float32Array.from(prompt),
  };
}

function projected(basis: Float32Array, K: number, C: number): Parameterization {
  return {
    kind: 'projected',
    promptVectors: 1,
    size: K,
    shape: [K],
    toPrompt(z, prompt) { // (1, C) = z (K) · basis (K, C)
      prompt.fill(0);
      for (let k = 0; k < K; k++) {
        const zk = z[k]!;
        for (let c = 0; c < C; c++) prompt[c]! += zk * basis[k * C + c]!;
      }
    },
    gradientToTheta(gradPrompt, gradZ) { // (K) = d prompt (C) · basis^T (C, K)
      for (let k = 0; k < K; k++) {
        let dot = 0;
        for (let c = 0; c < C; c++) dot += gradPrompt[c]! * basis[k * C + c]!;
        gradZ[k] = dot;
      }
    },
    fromPrompt(prompt) { // orthonormal rows: the least-squares code is the projection
      const z = new Float32Array(K);
      this.gradientToTheta(prompt, z);
      return z;
    },
  };
}

/** Return K orthonormal rows (K, C) from a seeded Gaussian matrix (Q of its QR decomposition). */
export function randomOrthonormalBasis(K: number, C: number, seed: number): Float32Array {
  const gaussian = randomNormal(C * K, 1, seed); // (C, K)
  const q = new QrDecomposition(new Matrix(Array.from({ length: C }, (_, c) => Array.from(gaussian.subarray(c * K, (c + 1) * K)))))
    .orthogonalMatrix; // (C, K) orthonormal columns
  const basis = new Float32Array(K * C);
  for (let k = 0; k < K; k++) for (let c = 0; c < C; c++) basis[k * C + c] = q.get(c, k);
  return basis;
}
