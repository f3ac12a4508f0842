// Where a search starts: an initial prompt (P, C), made in prompt space and then taken into the
// parameterization's own coordinates, so every initialization works with every parameterization.
//
// P = prompt vectors, C = channels
import type { Gpt2Tokenizer } from '../model/tokenizer.js';
import { randomNormal } from '../util/seeded-random.js';
import type { Parameterization } from './parameterization.js';
import type { InitSettings } from './settings.js';
import { SettingsError } from './settings.js';
import type { TokenEmbeddings } from './token-embeddings.js';

/** Return the initial theta for `parameterization`; the same seed gives the same numbers, bit for bit. */
export function initialTheta(settings: InitSettings, parameterization: Parameterization, embeddings: TokenEmbeddings,
  tokenizer: Gpt2Tokenizer, seed: number): Float32Array {
  const P = parameterization.promptVectors;
  const C = embeddings.C;
  const prompt = new Float32Array(P * C); // (P, C)
  switch (settings.kind) {
    case 'zeros':
      break;
    case 'random':
      prompt.set(randomNormal(P * C, settings.std ?? embeddings.std, seed));
      break;
    case 'mean':
      for (let p = 0; p < P; p++) prompt.set(embeddings.mean, p * C);
      break;
    case 'text': {
      const ids = tokenizer.encode(settings.text);
      if (ids.length === 0) throw new SettingsError('init.text', 'the text has no tokens');
      if (P === 1) {
        // one vector stands for the whole text: the mean of its token embeddings
        for (const id of ids) {
          const row = embeddings.row(id);
          for (let c = 0; c < C; c++) prompt[c]! += row[c]! / ids.length;
        }
      } else {
        // vector p takes token p; a text shorter than P repeats from its start
        for (let p = 0; p < P; p++) prompt.set(embeddings.row(ids[p % ids.length]!), p * C);
      }
      break;
    }
    case 'embedding':
      if (settings.values.length !== P * C) {
        throw new SettingsError('init.values', `${settings.values.length} numbers; this parameterization's prompt ` +
          `has P = ${P} vectors of C = ${C}, so ${P * C} are needed`);
      }
      prompt.set(settings.values);
      break;
  }
  return parameterization.fromPrompt(prompt);
}
