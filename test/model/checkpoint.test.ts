import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointError, expectedTensorShapes, loadCheckpoint } from '../../server/model/checkpoint.js';
import type { Gpt2Config } from '../../server/model/checkpoint.js';
import { writeRandomCheckpoint } from '../../server/model/random-checkpoint.js';
import { readSafetensorsHeader, readTensorFloat32, writeSafetensors } from '../../server/model/safetensors.js';
import { f32Bytes, thrown, writeRawSafetensors } from './raw-safetensors.js';
import type { RawTensor } from './raw-safetensors.js';

const fixtureDir = resolve('test/fixtures/tiny-gpt2');
const small: Partial<Gpt2Config> = { vocabSize: 101, nPositions: 16, nEmbd: 8, nLayer: 2, nHead: 2 };

let scratch: string;
let counter = 0;
beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'recite-checkpoint-'));
});
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

function freshDir(label: string): string {
  return join(scratch, `${label}-${counter++}`);
}

function expectCheckpointError(fn: () => unknown, ...parts: string[]): Error {
  const error = thrown(fn);
  expect(error).toBeInstanceOf(CheckpointError);
  expect(error.name).toBe('CheckpointError');
  for (const part of parts) expect(error.message).toContain(part);
  return error;
}

function editConfig(dir: string, edit: (config: Record<string, unknown>) => void): void {
  const file = join(dir, 'config.json');
  const config = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(config);
  writeFileSync(file, JSON.stringify(config));
}

// Rewrite a checkpoint's model.safetensors as F32 through `edit`, which may drop, rename or add tensors.
function editWeights(dir: string, edit: (tensors: RawTensor[]) => RawTensor[]): void {
  const file = join(dir, 'model.safetensors');
  const tensors: RawTensor[] = readSafetensorsHeader(file).tensors.map((t) => ({
    name: t.name,
    dtype: 'F32',
    shape: t.shape,
    bytes: f32Bytes(readTensorFloat32(t)),
  }));
  writeRawSafetensors(file, edit(tensors));
}

describe('loadCheckpoint on the tiny-gpt2 fixture', () => {
  const checkpoint = loadCheckpoint(fixtureDir);

  it('reads the config', () => {
    expect(checkpoint.dir).toBe(fixtureDir);
    expect(checkpoint.name).toBe('tiny-gpt2');
    expect(checkpoint.config).toEqual({
      vocabSize: 50257,
      nPositions: 64,
      nEmbd: 32,
      nLayer: 2,
      nHead: 4,
      nInner: 128,
      layerNormEpsilon: 1e-5,
      scaleAttnWeights: true,
      eosTokenId: 50256,
    });
    expect(checkpoint.headName).toBe('wte.weight');
  });

  it('lists every tensor under its canonical name with the right shape', () => {
    const expected = expectedTensorShapes(checkpoint.config);
    expect(expected.size).toBe(2 + 2 * 12 + 2);
    expect([...checkpoint.tensors.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const [name, shape] of expected) {
      const tensor = checkpoint.tensors.get(name)!;
      expect(tensor.name).toBe(name);
      expect(tensor.shape, name).toEqual(shape);
      expect(tensor.dtype).toBe('F32');
      expect(tensor.file).toBe(join(fixtureDir, 'model.safetensors'));
      expect(tensor.byteLength).toBe(shape.reduce((a, b) => a * b, 1) * 4);
    }
    expect(checkpoint.tensors.get('wte.weight')!.shape).toEqual([50257, 32]);
    expect(checkpoint.tensors.get('h.1.attn.c_attn.weight')!.shape).toEqual([32, 96]);
    expect(checkpoint.tensors.get('h.1.mlp.c_proj.weight')!.shape).toEqual([128, 32]);
  });

  it('reads wte.weight as 50257 x 32 finite float32 values', () => {
    const wte = checkpoint.readFloat32('wte.weight');
    expect(wte).toBeInstanceOf(Float32Array);
    expect(wte.length).toBe(50257 * 32);
    expect(wte.every(Number.isFinite)).toBe(true);
    expect(wte.some((v) => v !== 0)).toBe(true);
  });

  it('reads the bytes at the recorded offset, little-endian', () => {
    const tensor = checkpoint.tensors.get('ln_f.bias')!;
    const raw = readFileSync(tensor.file).subarray(tensor.byteOffset, tensor.byteOffset + tensor.byteLength);
    const values = checkpoint.readFloat32('ln_f.bias');
    for (let i = 0; i < values.length; i++) expect(values[i]).toBe(raw.readFloatLE(i * 4));
  });

  it('refuses an unknown tensor name in readFloat32', () => {
    expectCheckpointError(() => checkpoint.readFloat32('transformer.wte.weight'), '"transformer.wte.weight"', fixtureDir);
    expectCheckpointError(() => checkpoint.readFloat32('h.0.attn.bias'), 'h.0.attn.bias', 'no such tensor');
  });
});

describe('loadCheckpoint on other layouts', () => {
  it('loads keys without the transformer. prefix and an untied lm_head', () => {
    const dir = freshDir('untied');
    writeRandomCheckpoint(dir, { config: small, seed: 3, prefixKeys: false, lmHead: true });
    const names = readSafetensorsHeader(join(dir, 'model.safetensors')).tensors.map((t) => t.name);
    expect(names).toContain('wte.weight');
    expect(names).toContain('lm_head.weight');
    expect(names.some((n) => n.startsWith('transformer.'))).toBe(false);
    const checkpoint = loadCheckpoint(dir);
    expect(checkpoint.headName).toBe('lm_head.weight');
    expect(checkpoint.tensors.get('lm_head.weight')!.shape).toEqual([101, 8]);
    expect(checkpoint.readFloat32('lm_head.weight')).not.toEqual(checkpoint.readFloat32('wte.weight'));
    expect(checkpoint.config.nInner).toBe(32);
    expect(checkpoint.config.eosTokenId).toBe(100);
  });

  it('reads the same values whatever the key prefix', () => {
    const prefixed = freshDir('prefixed');
    const bare = freshDir('bare');
    writeRandomCheckpoint(prefixed, { config: small, seed: 9 });
    writeRandomCheckpoint(bare, { config: small, seed: 9, prefixKeys: false });
    const a = loadCheckpoint(prefixed);
    const b = loadCheckpoint(bare);
    for (const name of a.tensors.keys()) expect(b.readFloat32(name), name).toEqual(a.readFloat32(name));
  });

  it('ignores attention buffers and unknown tensors, whatever their dtype', () => {
    const dir = freshDir('extras');
    writeRandomCheckpoint(dir, { config: small, seed: 1 });
    editWeights(dir, (tensors) => [
      ...tensors,
      { name: 'transformer.h.0.attn.bias', dtype: 'BOOL', shape: [1, 1, 16, 16], bytes: new Uint8Array(256) },
      { name: 'transformer.h.0.attn.masked_bias', dtype: 'F32', shape: [], bytes: f32Bytes([-1e4]) },
      { name: 'score.weight', dtype: 'I64', shape: [2], bytes: new Uint8Array(16) },
    ]);
    const checkpoint = loadCheckpoint(dir);
    expect(checkpoint.tensors.has('h.0.attn.bias')).toBe(false);
    expect(checkpoint.tensors.has('score.weight')).toBe(false);
    expect(checkpoint.tensors.size).toBe(expectedTensorShapes(checkpoint.config).size);
  });

  it('loads a sharded checkpoint through model.safetensors.index.json', () => {
    const single = freshDir('single');
    writeRandomCheckpoint(single, { config: small, seed: 5, lmHead: true });
    const sharded = freshDir('sharded');
    mkdirSync(sharded);
    cpSync(join(single, 'config.json'), join(sharded, 'config.json'));
    const tensors = readSafetensorsHeader(join(single, 'model.safetensors')).tensors;
    const half = Math.ceil(tensors.length / 2);
    const shards = [tensors.slice(0, half), tensors.slice(half)];
    const weightMap: Record<string, string> = {};
    shards.forEach((group, i) => {
      const shardName = `model-0000${i + 1}-of-00002.safetensors`;
      writeSafetensors(
        join(sharded, shardName),
        group.map((t) => ({ name: t.name, shape: t.shape, data: readTensorFloat32(t) })),
      );
      for (const t of group) weightMap[t.name] = shardName;
    });
    writeFileSync(join(sharded, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));

    const a = loadCheckpoint(single);
    const b = loadCheckpoint(sharded);
    expect(b.headName).toBe('lm_head.weight');
    expect(new Set([...b.tensors.values()].map((t) => t.file)).size).toBe(2);
    for (const name of a.tensors.keys()) expect(b.readFloat32(name), name).toEqual(a.readFloat32(name));

    unlinkSync(join(sharded, 'model-00002-of-00002.safetensors'));
    expectCheckpointError(() => loadCheckpoint(sharded), 'model-00002-of-00002.safetensors', 'does not exist');
  });

  it('reads an F16 checkpoint within half precision of its F32 twin', () => {
    const f32 = freshDir('twin-f32');
    const f16 = freshDir('twin-f16');
    writeRandomCheckpoint(f32, { config: small, seed: 21, lmHead: true });
    writeRandomCheckpoint(f16, { config: small, seed: 21, lmHead: true, dtype: 'F16' });
    const a = loadCheckpoint(f32);
    const b = loadCheckpoint(f16);
    expect(b.tensors.get('wte.weight')!.dtype).toBe('F16');
    expect(b.tensors.get('wte.weight')!.byteLength).toBe(101 * 8 * 2);
    for (const name of a.tensors.keys()) {
      const x = a.readFloat32(name);
      const y = b.readFloat32(name);
      expect(y.length).toBe(x.length);
      for (let i = 0; i < x.length; i++) {
        // Half precision keeps 11 significant bits: rounding moves a value by at most 2^-11 of itself.
        if (Math.abs(y[i] - x[i]) > Math.abs(x[i]) * 2 ** -11 + 2 ** -25) expect(y[i], `${name}[${i}]`).toBe(x[i]);
      }
    }
  });
});

describe('loadCheckpoint refusals', () => {
  function checkpointWithConfig(edit: (config: Record<string, unknown>) => void): string {
    const dir = freshDir('config');
    writeRandomCheckpoint(dir, { config: small, seed: 2 });
    editConfig(dir, edit);
    return dir;
  }

  const refusals: { field: string; value: unknown; shown: string }[] = [
    { field: 'model_type', value: 'gpt_neo', shown: '"gpt_neo"' },
    { field: 'activation_function', value: 'relu', shown: '"relu"' },
    { field: 'activation_function', value: 'gelu', shown: '"gelu"' },
    { field: 'scale_attn_by_inverse_layer_idx', value: true, shown: 'true' },
    { field: 'reorder_and_upcast_attn', value: true, shown: 'true' },
    { field: 'add_cross_attention', value: true, shown: 'true' },
  ];
  for (const { field, value, shown } of refusals) {
    it(`refuses ${field} ${shown}, naming field and value`, () => {
      const dir = checkpointWithConfig((config) => {
        config[field] = value;
      });
      expectCheckpointError(() => loadCheckpoint(dir), join(dir, 'config.json'), `${field} is ${shown}`);
    });
  }

  it('accepts gelu_pytorch_tanh, the same function as gelu_new', () => {
    const dir = checkpointWithConfig((config) => {
      config.activation_function = 'gelu_pytorch_tanh';
    });
    expect(loadCheckpoint(dir).config.nEmbd).toBe(8);
  });

  it('refuses n_embd not divisible by n_head', () => {
    const dir = checkpointWithConfig((config) => {
      config.n_head = 3;
    });
    expectCheckpointError(() => loadCheckpoint(dir), 'config.json', 'n_embd 8', 'n_head 3');
  });

  for (const field of ['model_type', 'vocab_size', 'n_positions', 'n_embd', 'n_layer', 'n_head']) {
    it(`refuses a config without ${field}`, () => {
      const dir = checkpointWithConfig((config) => {
        delete config[field];
      });
      expectCheckpointError(() => loadCheckpoint(dir), join(dir, 'config.json'), `required field ${field} is missing`);
    });
  }

  it('refuses ill-typed config values, naming field and value', () => {
    let dir = checkpointWithConfig((config) => {
      config.n_layer = '2';
    });
    expectCheckpointError(() => loadCheckpoint(dir), 'n_layer is "2"', 'integer > 0');
    dir = checkpointWithConfig((config) => {
      config.n_inner = 0;
    });
    expectCheckpointError(() => loadCheckpoint(dir), 'n_inner is 0');
    dir = checkpointWithConfig((config) => {
      config.layer_norm_epsilon = -1;
    });
    expectCheckpointError(() => loadCheckpoint(dir), 'layer_norm_epsilon is -1');
  });

  it('refuses tie_word_embeddings false without lm_head.weight', () => {
    const dir = checkpointWithConfig((config) => {
      config.tie_word_embeddings = false;
    });
    expectCheckpointError(() => loadCheckpoint(dir), 'tie_word_embeddings false', 'lm_head.weight', 'model.safetensors');
  });

  it('refuses a missing tensor, naming file and tensor', () => {
    const dir = freshDir('missing-tensor');
    writeRandomCheckpoint(dir, { config: small, seed: 2 });
    editWeights(dir, (tensors) => tensors.filter((t) => t.name !== 'transformer.h.1.mlp.c_fc.bias'));
    expectCheckpointError(() => loadCheckpoint(dir), join(dir, 'model.safetensors'), 'h.1.mlp.c_fc.bias', 'missing');
  });

  it('refuses a layer the config promises but the file lacks', () => {
    const dir = freshDir('extra-layer');
    writeRandomCheckpoint(dir, { config: small, seed: 2 });
    editConfig(dir, (config) => {
      config.n_layer = 3;
    });
    expectCheckpointError(() => loadCheckpoint(dir), join(dir, 'model.safetensors'), 'h.2.', 'missing');
  });

  it('refuses a wrong shape, naming the tensor, its shape and the expected one', () => {
    const dir = freshDir('wrong-shape');
    writeRandomCheckpoint(dir, { config: small, seed: 2 });
    editConfig(dir, (config) => {
      config.n_positions = 32;
    });
    expectCheckpointError(
      () => loadCheckpoint(dir),
      join(dir, 'model.safetensors'),
      'transformer.wpe.weight has shape [16, 8]',
      'expects [32, 8]',
    );
  });

  it('refuses a transposed weight', () => {
    const dir = freshDir('transposed');
    writeRandomCheckpoint(dir, { config: small, seed: 2 });
    editWeights(dir, (tensors) =>
      tensors.map((t) => (t.name === 'transformer.h.0.mlp.c_fc.weight' ? { ...t, shape: [32, 8] } : t)),
    );
    expectCheckpointError(() => loadCheckpoint(dir), 'transformer.h.0.mlp.c_fc.weight has shape [32, 8]', 'expects [8, 32]');
  });

  it('refuses weights stored as I64 or F64, naming file, tensor and dtype', () => {
    for (const dtype of ['I64', 'F64']) {
      const dir = freshDir(`dtype-${dtype}`);
      writeRandomCheckpoint(dir, { config: small, seed: 2 });
      editWeights(dir, (tensors) =>
        tensors.map((t) =>
          t.name === 'transformer.ln_f.weight' ? { ...t, dtype, bytes: new Uint8Array(t.bytes.length * 2) } : t,
        ),
      );
      expectCheckpointError(
        () => loadCheckpoint(dir),
        join(dir, 'model.safetensors'),
        'transformer.ln_f.weight',
        `dtype ${dtype}`,
      );
    }
  });

  it('refuses a truncated weights file, naming file and tensor', () => {
    const dir = freshDir('truncated');
    cpSync(fixtureDir, dir, { recursive: true });
    const file = join(dir, 'model.safetensors');
    truncateSync(file, 3_000_000);
    expectCheckpointError(() => loadCheckpoint(dir), file, 'transformer.wte.weight', 'truncated');
  });

  it('refuses a corrupt weights file, naming the file', () => {
    const dir = freshDir('corrupt');
    cpSync(fixtureDir, dir, { recursive: true });
    const file = join(dir, 'model.safetensors');
    const bytes = readFileSync(file);
    bytes.fill(0x41, 8, 40); // overwrite the start of the JSON header
    writeFileSync(file, bytes);
    expectCheckpointError(() => loadCheckpoint(dir), file, 'not JSON');
    writeFileSync(file, Buffer.alloc(3));
    expectCheckpointError(() => loadCheckpoint(dir), file, 'is 3 bytes');
  });

  it('refuses a missing folder, config.json or model.safetensors', () => {
    const absent = join(scratch, 'no-such-folder');
    expectCheckpointError(() => loadCheckpoint(absent), absent, 'does not exist');

    const empty = freshDir('empty');
    mkdirSync(empty);
    expectCheckpointError(() => loadCheckpoint(empty), join(empty, 'config.json'), 'does not exist');

    const configOnly = freshDir('config-only');
    mkdirSync(configOnly);
    cpSync(join(fixtureDir, 'config.json'), join(configOnly, 'config.json'));
    const error = expectCheckpointError(() => loadCheckpoint(configOnly), configOnly, 'model.safetensors');
    expect(error.message).not.toContain('pytorch_model.bin');

    writeFileSync(join(configOnly, 'pytorch_model.bin'), 'not really a pickle');
    expectCheckpointError(() => loadCheckpoint(configOnly), 'model.safetensors', 'only pytorch_model.bin');
  });

  it('refuses a config.json that is not JSON', () => {
    const dir = checkpointWithConfig(() => undefined);
    writeFileSync(join(dir, 'config.json'), '{"n_embd": 8,');
    expectCheckpointError(() => loadCheckpoint(dir), join(dir, 'config.json'), 'not valid JSON');
  });
});
