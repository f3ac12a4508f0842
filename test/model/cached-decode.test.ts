// The decode graph with a key/value cache against the uncached decode graph: greedy and beam search (K = 3) over
// prompts of several lengths batched together, with and without a repetition penalty, on the tiny fixture and a
// small random checkpoint, give the same ids, and every step's log-probabilities agree within float32 rounding.
// P = prompt vectors, C = channels, V = vocab.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { beamDecodeMany, greedyDecodeMany } from '../../server/engine/decoders.js';
import type { DecodeRequest, NextTokenModel } from '../../server/engine/decoders.js';
import { loadCheckpoint } from '../../server/model/checkpoint.js';
import type { Checkpoint } from '../../server/model/checkpoint.js';
import { openSession } from '../../server/model/execution-provider.js';
import { buildCachedDecodeGraph, buildDecodeGraph } from '../../server/model/gpt2-graph.js';
import { CachedDecodeSession, DecodeSession } from '../../server/model/gpt2-session.js';
import type { DecodeCacheOptions } from '../../server/model/gpt2-session.js';
import type { GraphPrecision } from '../../server/model/precision.js';
import { writeRandomCheckpoint } from '../../server/model/random-checkpoint.js';
import { randomNormal } from '../../server/util/seeded-random.js';
import { maxAbsoluteError } from '../helpers/tensor-check.js';

let scratch: string;
const checkpoints: Record<string, Checkpoint> = {};

beforeAll(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-cached-decode-'));
  checkpoints.tiny = loadCheckpoint(path.resolve('test/fixtures/tiny-gpt2'));
  const random = writeRandomCheckpoint(path.join(scratch, 'random'), {
    config: { nEmbd: 64, nLayer: 4, nHead: 4, vocabSize: 512, nPositions: 64 }, seed: 5, std: 0.2,
  });
  checkpoints.random = loadCheckpoint(random.dir);
});
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** Both decode sessions of a checkpoint, each behind a NextTokenModel that records every run's log-probabilities. */
async function openPair(checkpoint: Checkpoint, precision: GraphPrecision = 'fp32', cache?: DecodeCacheOptions) {
  const plain = await openSession(buildDecodeGraph(checkpoint, { precision }).toBytes(), checkpoint.dir, 'cpu');
  const cached = await openSession(buildCachedDecodeGraph(checkpoint, { precision }).toBytes(), checkpoint.dir, 'cpu');
  const uncachedSession = new DecodeSession(checkpoint, plain.session, 'cpu');
  const cachedSession = new CachedDecodeSession(checkpoint, cached.session, 'cpu', cache);
  const recording = (session: NextTokenModel) => {
    const runs: Float32Array[] = [];
    const model: NextTokenModel = {
      nextLogprobs: async (...args) => {
        const out = await session.nextLogprobs(...args);
        runs.push(out);
        return out;
      },
    };
    return { model, runs };
  };
  return {
    uncached: recording(uncachedSession),
    cached: recording(cachedSession),
    cachedSession,
    release: async () => {
      await uncachedSession.release();
      await cachedSession.release();
    },
  };
}

/** Prompts of P = 1, 3 and 5 (two of P = 3, with different step counts, so a group's rows drop out), theta each. */
function requests(C: number, penalty: number | undefined): DecodeRequest[] {
  return [[3, 7], [1, 5], [3, 4], [5, 6]].map(([P, steps], i) => ({
    prompt: randomNormal(P! * C, 0.5, 40 + i), promptVectors: P!, steps: steps!,
    repetitionPenalty: penalty === undefined ? undefined : penalty + 0.1 * i,
  }));
}

function expectSameRuns(cached: Float32Array[], uncached: Float32Array[], tolerance: number): void {
  expect(cached.length).toBe(uncached.length);
  cached.forEach((run, i) => {
    expect(run.length).toBe(uncached[i]!.length);
    expect(maxAbsoluteError(run, uncached[i]!)).toBeLessThanOrEqual(tolerance);
  });
}

describe.each(['tiny', 'random'])('cached decode on the %s checkpoint', (name) => {
  test.each([undefined, 1.4])('greedy decoding gives the same ids and log-probabilities (penalty %s)', async (penalty) => {
    const pair = await openPair(checkpoints[name]!);
    try {
      const batch = requests(checkpoints[name]!.config.nEmbd, penalty);
      const expected = await greedyDecodeMany(pair.uncached.model, batch, { suppressTokenIds: [] });
      const got = await greedyDecodeMany(pair.cached.model, batch, { suppressTokenIds: [] });
      expect(got).toEqual(expected);
      expectSameRuns(pair.cached.runs, pair.uncached.runs, 1e-5);
      // One full run per P group (the first step), every later one from the cache.
      expect(pair.cachedSession.counts.full).toBe(3);
      expect(pair.cachedSession.counts.cached).toBe(pair.cached.runs.length - 3);
    } finally {
      await pair.release();
    }
  });

  test.each([undefined, 1.4])('beam search (K = 3) gives the same beams (penalty %s)', async (penalty) => {
    const pair = await openPair(checkpoints[name]!);
    try {
      const batch = requests(checkpoints[name]!.config.nEmbd, penalty).map((r) => ({ ...r, beams: 3 }));
      const expected = await beamDecodeMany(pair.uncached.model, batch, { suppressTokenIds: [] });
      const got = await beamDecodeMany(pair.cached.model, batch, { suppressTokenIds: [] });
      got.forEach((result, i) => {
        expect(result.beams.map((b) => b.ids)).toEqual(expected[i]!.beams.map((b) => b.ids));
        result.beams.forEach((b, k) => expect(Math.abs(b.logprob - expected[i]!.beams[k]!.logprob)).toBeLessThan(1e-4));
      });
      expectSameRuns(pair.cached.runs, pair.uncached.runs, 1e-5);
      expect(pair.cachedSession.counts.full).toBe(3);
    } finally {
      await pair.release();
    }
  });
});

test('a cache with no room runs every step in full and changes nothing', async () => {
  const checkpoint = checkpoints.random!;
  const pair = await openPair(checkpoint, 'fp32', { maxBytes: 0 });
  try {
    const batch = requests(checkpoint.config.nEmbd, 1.4);
    expect(await greedyDecodeMany(pair.cached.model, batch, { suppressTokenIds: [] }))
      .toEqual(await greedyDecodeMany(pair.uncached.model, batch, { suppressTokenIds: [] }));
    expect(pair.cachedSession.counts.cached).toBe(0);
    expectSameRuns(pair.cached.runs, pair.uncached.runs, 0); // a full run is the uncached graph's, bit for bit
  } finally {
    await pair.release();
  }
});

test('at fp16 the cached graph keeps the uncached one\'s float16 numerics', async () => {
  const checkpoint = checkpoints.random!;
  const pair = await openPair(checkpoint, 'fp16');
  try {
    const batch = requests(checkpoint.config.nEmbd, 1.4);
    const expected = await greedyDecodeMany(pair.uncached.model, batch, { suppressTokenIds: [] });
    expect(await greedyDecodeMany(pair.cached.model, batch, { suppressTokenIds: [] })).toEqual(expected);
    expect(pair.cachedSession.counts.cached).toBeGreaterThan(0);
    expectSameRuns(pair.cached.runs, pair.uncached.runs, 1e-2);
  } finally {
    await pair.release();
  }
});
