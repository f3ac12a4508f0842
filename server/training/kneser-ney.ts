// The baseline a language model must beat: an interpolated Kneser-Ney bigram over GPT-2 tokens (Chen & Goodman's
// interpolated KN with one absolute discount), fitted on the training split and scored on the same validation
// tokens as the model.
//
//   P(w | v) = max(c(v w) − D, 0) / c(v ·)  +  D · N₁₊(v ·) / c(v ·) · P_cont(w)
//   P_cont(w) = N₁₊(· w) / N₁₊(· ·)      (how many distinct tokens w follows, not how often it occurs)
//   D = n₁ / (n₁ + 2 n₂)                 (n₁, n₂: bigram types seen once, twice)
//
// A token never seen as a continuation gets P_cont from an add-one floor over the vocabulary, so every
// probability is > 0 and each row sums to 1.

/** A fitted bigram model. */
export interface KneserNeyBigram {
  discount: number;
  /** ln P(next | previous). */
  logProb(previous: number, next: number): number;
}

/** Fit an interpolated Kneser-Ney bigram on a token stream over a vocabulary of `vocabSize` ids. */
export function fitKneserNeyBigram(tokens: ArrayLike<number>, vocabSize: number): KneserNeyBigram {
  const bigrams = new Map<number, number>(); // key previous * vocabSize + next -> count
  for (let i = 1; i < tokens.length; i++) {
    const key = tokens[i - 1]! * vocabSize + tokens[i]!;
    bigrams.set(key, (bigrams.get(key) ?? 0) + 1);
  }
  const contextCount = new Float64Array(vocabSize); // c(v ·)
  const contextTypes = new Float64Array(vocabSize); // N1+(v ·)
  const continuationTypes = new Float64Array(vocabSize); // N1+(· w)
  let once = 0;
  let twice = 0;
  for (const [key, count] of bigrams) {
    const previous = Math.floor(key / vocabSize);
    const next = key % vocabSize;
    contextCount[previous] += count;
    contextTypes[previous] += 1;
    continuationTypes[next] += 1;
    if (count === 1) once += 1;
    if (count === 2) twice += 1;
  }
  const discount = once / (once + 2 * twice);
  // P_cont with an add-one floor: (N1+(· w) + 1) / (N1+(· ·) + V), so unseen continuations stay possible.
  const continuation = new Float64Array(vocabSize);
  const totalTypes = bigrams.size + vocabSize;
  for (let w = 0; w < vocabSize; w++) continuation[w] = (continuationTypes[w]! + 1) / totalTypes;
  return {
    discount,
    logProb(previous: number, next: number): number {
      const c = contextCount[previous]!;
      if (c === 0) return Math.log(continuation[next]!); // an unseen context backs off entirely
      const pair = bigrams.get(previous * vocabSize + next) ?? 0;
      const p = Math.max(pair - discount, 0) / c + (discount * contextTypes[previous]! / c) * continuation[next]!;
      return Math.log(p);
    },
  };
}
