// Nearest vocabulary tokens by cosine: a token's own embedding finds itself first; scaling a vector changes
// nothing; the scan yields to the event loop, so a timer set before it fires before it ends on a large vocabulary.
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { loadCheckpoint } from '../../server/model/checkpoint.js';
import { TokenEmbeddings } from '../../server/engine/token-embeddings.js';

const embeddings = TokenEmbeddings.fromCheckpoint(loadCheckpoint(path.resolve('test/fixtures/tiny-gpt2')));

describe('nearest tokens', () => {
  test('a token embedding is nearest to itself, with cosine 1, and the list is sorted', async () => {
    for (const id of [0, 15496, 50256]) {
      const nearest = await embeddings.nearest(embeddings.row(id), 5);
      expect(nearest[0]!.id).toBe(id);
      expect(nearest[0]!.cosine).toBeCloseTo(1, 5);
      expect(nearest).toHaveLength(5);
      for (let i = 1; i < nearest.length; i++) expect(nearest[i]!.cosine).toBeLessThanOrEqual(nearest[i - 1]!.cosine);
    }
  });

  test('is invariant to the vector\'s scale', async () => {
    const v = Float32Array.from(embeddings.row(995), (x) => 7 * x);
    expect((await embeddings.nearest(v, 3)).map((n) => n.id)).toEqual((await embeddings.nearest(embeddings.row(995), 3)).map((n) => n.id));
  });

  test('lets other work run during the scan', async () => {
    let ticked = false;
    setImmediate(() => { ticked = true; });
    await embeddings.nearest(embeddings.row(1), 5);
    expect(ticked).toBe(true);
  });
});
