// Write a GPT-2 checkpoint folder with seeded random weights, in the Hugging Face layout loadCheckpoint reads:
// for benchmarking a 124M-shaped graph offline and for building test checkpoints with other key layouts or dtypes.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CheckpointError, expectedTensorShapes } from './checkpoint.js';
import type { Gpt2Config } from './checkpoint.js';
import { writeSafetensors } from './safetensors.js';
import { fillNormal, mixSeeds } from '../util/seeded-random.js';
import type { SafetensorsWriteTensor } from './safetensors.js';

/** Hold the hyperparameters of GPT-2 small (124M parameters), the `gpt2` checkpoint on the Hugging Face hub. */
export const gpt2SmallConfig: Readonly<Gpt2Config> = Object.freeze({
  vocabSize: 50257,
  nPositions: 1024, // tokens of context
  nEmbd: 768,
  nLayer: 12,
  nHead: 12,
  nInner: 3072, // 4 * nEmbd
  layerNormEpsilon: 1e-5,
  scaleAttnWeights: true,
  eosTokenId: 50256,
});

/** Configure writeRandomCheckpoint. */
export interface RandomCheckpointOptions {
  /**
   * Fields to change from gpt2SmallConfig; nInner follows nEmbd (4x) and eosTokenId follows vocabSize (the last id,
   * as in GPT-2) unless given.
   */
  config?: Partial<Gpt2Config>;
  /** PRNG seed; the same seed gives the same values whatever the dtype or key layout. Default 0. */
  seed?: number;
  /** Element type of every tensor on disk. Default 'F32'. */
  dtype?: 'F32' | 'F16';
  /** Store keys as `transformer.wte.weight` (GPT2LMHeadModel's layout) rather than `wte.weight`. Default true. */
  prefixKeys?: boolean;
  /** Write an untied `lm_head.weight` and set tie_word_embeddings false. Default false (tied head). */
  lmHead?: boolean;
  /** Standard deviation of every matrix (embeddings, projections, head). Default 0.02, GPT-2's initializer_range. */
  std?: number;
}

/** Name the files writeRandomCheckpoint wrote. */
export interface RandomCheckpointFiles {
  dir: string;
  configFile: string;
  weightsFile: string;
}

const defaultStd = 0.02; // GPT-2's initializer_range

/** Write config.json and model.safetensors with seeded random GPT-2 weights into `dir` (created if needed). */
export function writeRandomCheckpoint(dir: string, options: RandomCheckpointOptions = {}): RandomCheckpointFiles {
  const config = resolveConfig(options.config ?? {});
  const seed = options.seed ?? 0;
  const dtype = options.dtype ?? 'F32';
  const prefix = options.prefixKeys ?? true ? 'transformer.' : '';
  const lmHead = options.lmHead ?? false;
  const std = options.std ?? defaultStd;
  if (!Number.isFinite(std) || std < 0) {
    throw new CheckpointError(`write random checkpoint: std is ${std}; expected a finite number >= 0`);
  }
  const absDir = resolve(dir);
  mkdirSync(absDir, { recursive: true });

  const configFile = join(absDir, 'config.json');
  writeFileSync(configFile, `${JSON.stringify(toHuggingFaceConfig(config, !lmHead, std), null, 2)}\n`);

  const shapes = expectedTensorShapes(config);
  const tensors: SafetensorsWriteTensor[] = [...shapes].map(([name, shape]) => ({
    name: prefix + name,
    shape,
    dtype,
    data: () => randomTensor(name, shape, seed, std),
  }));
  if (lmHead) {
    const shape = [config.vocabSize, config.nEmbd];
    tensors.push({ name: 'lm_head.weight', shape, dtype, data: () => randomTensor('lm_head.weight', shape, seed, std) });
  }
  const weightsFile = join(absDir, 'model.safetensors');
  writeSafetensors(weightsFile, tensors, { format: 'pt' });
  return { dir: absDir, configFile, weightsFile };
}

/** Translate a Gpt2Config into config.json's Hugging Face field names. */
export function toHuggingFaceConfig(
  config: Gpt2Config,
  tieWordEmbeddings = true,
  initializerRange = defaultStd,
): Record<string, unknown> {
  return {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    vocab_size: config.vocabSize,
    n_positions: config.nPositions,
    n_embd: config.nEmbd,
    n_layer: config.nLayer,
    n_head: config.nHead,
    n_inner: config.nInner === 4 * config.nEmbd ? null : config.nInner,
    activation_function: 'gelu_new',
    layer_norm_epsilon: config.layerNormEpsilon,
    scale_attn_weights: config.scaleAttnWeights,
    scale_attn_by_inverse_layer_idx: false,
    reorder_and_upcast_attn: false,
    add_cross_attention: false,
    initializer_range: initializerRange,
    bos_token_id: config.eosTokenId,
    eos_token_id: config.eosTokenId,
    tie_word_embeddings: tieWordEmbeddings,
  };
}

function resolveConfig(partial: Partial<Gpt2Config>): Gpt2Config {
  const merged = { ...gpt2SmallConfig, ...partial };
  merged.nInner = partial.nInner ?? 4 * merged.nEmbd;
  merged.eosTokenId = partial.eosTokenId ?? merged.vocabSize - 1;
  for (const field of ['vocabSize', 'nPositions', 'nEmbd', 'nLayer', 'nHead', 'nInner'] as const) {
    const value = merged[field];
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new CheckpointError(`write random checkpoint: config.${field} is ${value}; expected an integer > 0`);
    }
  }
  if (!Number.isSafeInteger(merged.eosTokenId) || merged.eosTokenId < 0 || merged.eosTokenId >= merged.vocabSize) {
    throw new CheckpointError(
      `write random checkpoint: config.eosTokenId is ${merged.eosTokenId}; expected an id in [0, ${merged.vocabSize})`,
    );
  }
  return merged;
}

function randomTensor(name: string, shape: readonly number[], seed: number, std: number): Float32Array {
  const size = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(size);
  if (/(^|\.)ln_(1|2|f)\.weight$/.test(name)) return out.fill(1); // LayerNorm gains
  if (shape.length === 1) return out; // biases start at zero
  fillNormal(out, std, mixSeeds(seed, hashName(name)));
  return out;
}


// Seed each tensor from its canonical name so values do not depend on key prefix, dtype or write order.
function hashName(name: string): number {
  let hash = 0x811c9dc5; // FNV-1a
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}

