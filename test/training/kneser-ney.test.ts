// The bigram baseline: a proper distribution, and the discount and probabilities of interpolated Kneser-Ney
// worked by hand on a toy stream.
import { describe, expect, it } from 'vitest';
import { fitKneserNeyBigram } from '../../server/training/kneser-ney.js';

describe('interpolated Kneser-Ney bigram', () => {
  // vocab {0, 1, 2, 3}; bigrams: 0→1 ×3, 1→2 ×2, 2→0 ×2, 1→0 ×1, 0→2 ×1 (types 5; n1 = 2, n2 = 2)
  const stream = [0, 1, 2, 0, 1, 2, 0, 1, 0, 2];
  const model = fitKneserNeyBigram(stream, 4);

  it('uses D = n1 / (n1 + 2 n2)', () => {
    expect(model.discount).toBeCloseTo(2 / (2 + 4), 12);
  });

  it('interpolates the discounted bigram with the continuation distribution (add-one floored)', () => {
    const D = 1 / 3;
    // continuation types: 0 ← {2, 1}: 2; 1 ← {0}: 1; 2 ← {1, 0}: 2; 3: 0; floored (n + 1) / (5 + 4)
    const cont = [3 / 9, 2 / 9, 3 / 9, 1 / 9];
    // context 0: c = 4 (0→1 ×3, 0→2 ×1), 2 types
    expect(Math.exp(model.logProb(0, 1))).toBeCloseTo((3 - D) / 4 + (D * 2 / 4) * cont[1]!, 12);
    expect(Math.exp(model.logProb(0, 3))).toBeCloseTo((D * 2 / 4) * cont[3]!, 12);
  });

  it('gives every context a distribution that sums to 1, unseen ones included', () => {
    for (const previous of [0, 1, 2, 3]) {
      let sum = 0;
      for (let next = 0; next < 4; next++) sum += Math.exp(model.logProb(previous, next));
      expect(sum).toBeCloseTo(1, 12);
    }
  });
});
