// Nearest vocabulary tokens by cosine: a token's own embedding finds itself first; scaling a vector changes
// nothing; the product runs in onnxruntime off the event loop; many vectors at once give what each gives alone and
// what a plain scan in float64 gives.
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { loadCheckpoint } from '../../server/model/checkpoint.js';
import { TokenEmbeddings } from '../../server/engine/token-embeddings.js';
import { createSeededRandom } from '../../server/util/seeded-random.js';

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

  test('gives many vectors at once what a plain float64 scan gives each of them alone', async () => {
    const { wte, V, C } = embeddings;
    const random = createSeededRandom(7);
    const vectors = [...Array.from({ length: 6 }, () => random.fillNormal(new Float32Array(C), 1)), embeddings.row(42)];
    const reference = vectors.map((vector) => {
      const norm = Math.hypot(...vector) || 1;
      const all = Array.from({ length: V }, (_, v) => {
        let dot = 0;
        for (let c = 0; c < C; c++) dot += vector[c]! * wte[v * C + c]!;
        return { id: v, cosine: dot / (norm * (Math.hypot(...wte.subarray(v * C, (v + 1) * C)) || 1)) };
      });
      return all.sort((a, b) => b.cosine - a.cosine || a.id - b.id).slice(0, 4);
    });
    const together = await embeddings.nearestMany(vectors, 4);
    for (const [r, list] of together.entries()) {
      expect(list.map((n) => n.id)).toEqual(reference[r]!.map((n) => n.id));
      list.forEach((n, j) => expect(n.cosine).toBeCloseTo(reference[r]![j]!.cosine, 7)); // wte's norms are kept as float32
      // Alone: exactly the same tokens and numbers (a batch must not change a summary).
      expect(await embeddings.nearest(vectors[r]!, 4)).toEqual(list);
    }
  });
});
