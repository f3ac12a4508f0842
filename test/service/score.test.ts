// The Score RPC in memory (real handlers, tiny model): its NLL against the decode graph's next-token
// log-probabilities (another graph, another code path), bits and perplexity from the NLL, and refusals.
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InMemoryService, ReciteClient } from './service-fixtures.js';
import { aliceToken, bearer, createInMemoryService, errorOf, reciteClient } from './service-fixtures.js';

describe('Score', () => {
  let service: InMemoryService;
  let client: ReciteClient;
  const alice = bearer(aliceToken);

  beforeAll(async () => {
    service = await createInMemoryService();
    client = reciteClient(service.transport);
  });
  afterAll(async () => service.close());

  it('scores each token after <|endoftext|> as the decode graph predicts it', async () => {
    const texts = ['Hello world', 'does it make sense to compare apples and oranges?'];
    const { scores } = await client.score({ texts }, alice);
    expect(scores.map((s) => s.ids)).toEqual([[15496, 995], [22437, 340, 787, 2565, 284, 8996, 22514, 290, 48389, 30]]);
    const model = service.models.requireRunner('').model;
    const C = model.checkpoint.config.nEmbd;
    const eos = model.embeddings.wte.slice(50256 * C, 50257 * C); // the prompt: <|endoftext|>'s own embedding
    for (const score of scores) {
      for (let t = 0; t < score.ids.length; t++) {
        const logprobs = await model.decode.nextLogprobs(eos, 1, [score.ids.slice(0, t)]);
        expect(score.nll[t]).toBeCloseTo(-logprobs[score.ids[t]!]!, 3);
      }
      const sum = score.nll.reduce((a, b) => a + b, 0);
      expect(score.nllSum).toBeCloseTo(sum, 9);
      expect(score.bitsPerToken).toBeCloseTo(sum / Math.LN2 / score.ids.length, 9);
      expect(score.perplexity).toBeCloseTo(Math.exp(sum / score.ids.length), 6);
    }
    expect(scores[0]!.bitsPerChar).toBeCloseTo(scores[0]!.nllSum / Math.LN2 / 11, 9);
    expect(scores[0]!.tokens).toEqual(['Hello', ' world']);
  });

  it('gives a text the same score alone and in a batch of others', async () => {
    const alone = (await client.score({ texts: ['the cat sat on the mat'] }, alice)).scores[0]!;
    const texts = ['a', 'the cat sat on the mat', 'a much longer text than the others, to pad the batch well past it'];
    const shared = (await client.score({ texts }, alice)).scores[1]!;
    shared.nll.forEach((x, t) => expect(x).toBeCloseTo(alone.nll[t]!, 4));
  });

  it('refuses texts past the context, empty texts and unknown models, naming the field', async () => {
    const long = 'word '.repeat(70); // 71 tokens (70 words and a final space); the tiny model's context is 64
    const tooLong = await errorOf(client.score({ texts: ['fine', long] }, alice));
    expect(tooLong.code).toBe(Code.InvalidArgument);
    expect(tooLong.rawMessage).toBe("texts[1]: 71 tokens; the model's context allows 64");
    const empty = await errorOf(client.score({ texts: [''] }, alice));
    expect(empty.code).toBe(Code.InvalidArgument);
    expect(empty.rawMessage).toContain('texts[0]');
    const none = await errorOf(client.score({ texts: [] }, alice));
    expect(none.code).toBe(Code.InvalidArgument);
    const unknown = await errorOf(client.score({ texts: ['x'], model: 'nope' }, alice));
    expect(unknown.code).toBe(Code.InvalidArgument);
    expect(unknown.rawMessage).toContain('nope');
    expect((await errorOf(client.score({ texts: ['x'] }))).code).toBe(Code.Unauthenticated);
  });
});
