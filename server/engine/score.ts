// Score texts under a model: the NLL of every token given <|endoftext|> and the tokens before it. The gradient
// graph computes exactly that when its one prompt vector is the end-of-text token's own embedding: it reads
// [wte[eos], t0, ..., t(T-2)] at positions 0..T-1 and scores t0..t(T-1).
//
// T = tokens of a text, C = channels
import { ModelInputError } from '../model/gpt2-session.js';
import type { EngineModel } from './engine-model.js';

/** One text's score. */
export interface TokenScores {
  /** (T) NLL of each token in nats. */
  nll: number[];
  nllSum: number;
  bitsPerToken: number;
  /** nllSum / ln 2 / characters, with `characters` as given. */
  bitsPerChar: number;
  perplexity: number;
}

const scoreBatch = 16; // texts per graph run

/** Score token-id lists (each 1..n_positions tokens) with the model; `characters[i]` is text i's length. */
export async function scoreTokenIds(model: Pick<EngineModel, 'checkpoint' | 'gradient' | 'embeddings'>,
  texts: readonly (readonly number[])[], characters: readonly number[]): Promise<TokenScores[]> {
  const { nEmbd: C, nPositions, eosTokenId } = model.checkpoint.config;
  texts.forEach((ids, i) => {
    if (ids.length === 0) throw new ModelInputError(`texts[${i}]: no tokens; a text needs at least 1`);
    if (ids.length > nPositions) {
      throw new ModelInputError(`texts[${i}]: ${ids.length} tokens; the model's context allows ${nPositions}`);
    }
  });
  const eosEmbedding = model.embeddings.wte.subarray(eosTokenId * C, (eosTokenId + 1) * C); // (C)
  const scores: TokenScores[] = [];
  for (let first = 0; first < texts.length; first += scoreBatch) {
    const batch = texts.slice(first, first + scoreBatch);
    const prompt = new Float32Array(batch.length * C); // (B, 1, C)
    batch.forEach((_, b) => prompt.set(eosEmbedding, b * C));
    const result = await model.gradient.run({ prompt, promptVectors: 1, targets: batch });
    batch.forEach((ids, b) => {
      const nll = Array.from(result.nll.subarray(b * result.targetLength, b * result.targetLength + ids.length));
      const nllSum = nll.reduce((a, x) => a + x, 0);
      scores.push({
        nll,
        nllSum,
        bitsPerToken: nllSum / Math.LN2 / ids.length,
        bitsPerChar: nllSum / Math.LN2 / Math.max(1, characters[first + b]!),
        perplexity: Math.exp(nllSum / ids.length),
      });
    });
  }
  return scores;
}
