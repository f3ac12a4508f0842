// Reachable targets: a model's own greedy continuation of a hidden random prompt. A prompt that reproduces such a
// target is known to exist (the hidden one), so a search that misses it failed for a reason of its own, not
// because the model cannot say it: the honest test bed for convergence and capacity.
import type { EngineModel } from '../engine/engine-model.js';
import { greedyDecodeMany } from '../engine/decoders.js';
import type { NextTokenModel } from '../engine/decoders.js';
import { deriveSeed, randomNormal } from '../util/seeded-random.js';

const targetsPerGroup = 256; // hidden prompts decoded together

/** One sampled target. */
export interface ReachableTarget {
  id: string;
  targetIds: number[];
  text: string;
  hiddenSeed: number;
}

/**
 * Sample `count` targets of `tokens` tokens: target i is the greedy continuation of a hidden (P, C) prompt of
 * normal noise at the token embeddings' std, seeded with deriveSeed(seed, i). A mixed seed, not seed + i: a search
 * initialized with random noise of the same std and the same small seed would start on the hidden prompt itself
 * and "hit" at iteration 0.
 */
export async function sampleReachableTargets(model: EngineModel, count: number, tokens: number, promptVectors: number,
  seed: number, decoder: NextTokenModel = model.decode): Promise<ReachableTarget[]> {
  const C = model.checkpoint.config.nEmbd;
  const targets: ReachableTarget[] = [];
  // A group of targets decodes together: one decode graph run per step for all its hidden prompts (rows are
  // independent); groups bound the hidden prompts held at once.
  for (let first = 0; first < count; first += targetsPerGroup) {
    const hiddenSeeds = Array.from({ length: Math.min(targetsPerGroup, count - first) }, (_, i) => deriveSeed(seed, first + i));
    const decoded = await greedyDecodeMany(decoder, hiddenSeeds.map((hiddenSeed) => ({
      prompt: randomNormal(promptVectors * C, model.embeddings.std, hiddenSeed), // (P, C)
      promptVectors,
      steps: tokens,
    })));
    decoded.forEach((targetIds, i) => targets.push({
      id: `reachable-${seed}-${first + i}`, targetIds, text: model.tokenizer.decode(targetIds), hiddenSeed: hiddenSeeds[i]!,
    }));
  }
  return targets;
}
