import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointError, expectedTensorShapes, loadCheckpoint } from '../../server/model/checkpoint.js';
import { gpt2SmallConfig, toHuggingFaceConfig, writeRandomCheckpoint } from '../../server/model/random-checkpoint.js';

let scratch: string;
beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'recite-random-'));
});
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

const small = { vocabSize: 300, nPositions: 20, nEmbd: 16, nLayer: 2, nHead: 4 };

describe('gpt2SmallConfig', () => {
  it('has the shapes of GPT-2 small, 124,439,808 parameters', () => {
    expect(gpt2SmallConfig).toEqual({
      vocabSize: 50257,
      nPositions: 1024,
      nEmbd: 768,
      nLayer: 12,
      nHead: 12,
      nInner: 3072,
      layerNormEpsilon: 1e-5,
      scaleAttnWeights: true,
      eosTokenId: 50256,
    });
    expect(Object.isFrozen(gpt2SmallConfig)).toBe(true);
    let parameters = 0;
    for (const shape of expectedTensorShapes(gpt2SmallConfig).values()) parameters += shape.reduce((a, b) => a * b, 1);
    expect(parameters).toBe(124_439_808);
  });

  it('translates to the Hugging Face field names', () => {
    expect(toHuggingFaceConfig(gpt2SmallConfig)).toMatchObject({
      model_type: 'gpt2',
      activation_function: 'gelu_new',
      vocab_size: 50257,
      n_positions: 1024,
      n_embd: 768,
      n_layer: 12,
      n_head: 12,
      n_inner: null,
      layer_norm_epsilon: 1e-5,
      eos_token_id: 50256,
      tie_word_embeddings: true,
    });
  });
});

describe('writeRandomCheckpoint', () => {
  it('writes a loadable checkpoint with GPT-2 initial statistics', () => {
    const files = writeRandomCheckpoint(join(scratch, 'stats'), { config: small, seed: 1 });
    expect(files.configFile).toBe(join(scratch, 'stats', 'config.json'));
    const json = JSON.parse(readFileSync(files.configFile, 'utf8')) as Record<string, unknown>;
    expect(json).toMatchObject({ model_type: 'gpt2', activation_function: 'gelu_new', n_embd: 16, n_inner: null });
    const checkpoint = loadCheckpoint(files.dir);
    expect(checkpoint.config).toEqual({ ...small, nInner: 64, layerNormEpsilon: 1e-5, scaleAttnWeights: true, eosTokenId: 299 });
    expect(checkpoint.headName).toBe('wte.weight');
    expect(checkpoint.readFloat32('h.1.ln_2.weight').every((v) => v === 1)).toBe(true);
    expect(checkpoint.readFloat32('ln_f.weight').every((v) => v === 1)).toBe(true);
    expect(checkpoint.readFloat32('ln_f.bias').every((v) => v === 0)).toBe(true);
    expect(checkpoint.readFloat32('h.0.attn.c_attn.bias').every((v) => v === 0)).toBe(true);
    const wte = checkpoint.readFloat32('wte.weight'); // 4800 samples
    const mean = wte.reduce((a, v) => a + v, 0) / wte.length;
    const std = Math.sqrt(wte.reduce((a, v) => a + (v - mean) ** 2, 0) / wte.length);
    expect(Math.abs(mean)).toBeLessThan(0.002);
    expect(std).toBeGreaterThan(0.019);
    expect(std).toBeLessThan(0.021);
  });

  it('is deterministic in the seed, and per-tensor streams differ', () => {
    const a = writeRandomCheckpoint(join(scratch, 'seed-a'), { config: small, seed: 4 });
    const b = writeRandomCheckpoint(join(scratch, 'seed-b'), { config: small, seed: 4 });
    const c = writeRandomCheckpoint(join(scratch, 'seed-c'), { config: small, seed: 5 });
    expect(readFileSync(b.weightsFile).equals(readFileSync(a.weightsFile))).toBe(true);
    expect(readFileSync(c.weightsFile).equals(readFileSync(a.weightsFile))).toBe(false);
    const checkpoint = loadCheckpoint(a.dir);
    const q = checkpoint.readFloat32('h.0.attn.c_proj.weight');
    const r = checkpoint.readFloat32('h.1.attn.c_proj.weight');
    expect(q).not.toEqual(r);
  });

  it('honours nInner, std, eosTokenId and an untied F16 head', () => {
    const files = writeRandomCheckpoint(join(scratch, 'options'), {
      config: { ...small, nInner: 40, eosTokenId: 7, scaleAttnWeights: false },
      seed: 2,
      std: 0.5,
      dtype: 'F16',
      prefixKeys: false,
      lmHead: true,
    });
    const json = JSON.parse(readFileSync(files.configFile, 'utf8')) as Record<string, unknown>;
    expect(json).toMatchObject({ n_inner: 40, tie_word_embeddings: false, scale_attn_weights: false, eos_token_id: 7 });
    const checkpoint = loadCheckpoint(files.dir);
    expect(checkpoint.config.nInner).toBe(40);
    expect(checkpoint.headName).toBe('lm_head.weight');
    expect(checkpoint.tensors.get('h.0.mlp.c_fc.weight')!.shape).toEqual([16, 40]);
    expect(checkpoint.tensors.get('lm_head.weight')!.dtype).toBe('F16');
    const head = checkpoint.readFloat32('lm_head.weight');
    const std = Math.sqrt(head.reduce((a, v) => a + v * v, 0) / head.length);
    expect(std).toBeGreaterThan(0.45);
    expect(std).toBeLessThan(0.55);
  });

  it('refuses a non-positive size, naming the field', () => {
    expect(() => writeRandomCheckpoint(join(scratch, 'bad'), { config: { nLayer: 0 } })).toThrow(CheckpointError);
    expect(() => writeRandomCheckpoint(join(scratch, 'bad'), { config: { nLayer: 0 } })).toThrow('config.nLayer is 0');
    expect(() => writeRandomCheckpoint(join(scratch, 'bad'), { config: small, std: -1 })).toThrow('std is -1');
  });
});
