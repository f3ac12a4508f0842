// Load a Hugging Face GPT-2 checkpoint folder (config.json + model.safetensors, or sharded safetensors with
// model.safetensors.index.json) lazily: headers are parsed at load, tensor data is read on demand.
// C = channels (n_embd, 768 for gpt2), V = vocab (50257), L = layers, nInner = MLP width (4C by default)
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { CheckpointError, readSafetensorsHeader, readTensorFloat32 } from './safetensors.js';
import type { SafetensorsTensorInfo } from './safetensors.js';

export { CheckpointError } from './safetensors.js';

/** Describe the GPT-2 hyperparameters the graph needs, read from config.json. */
export interface Gpt2Config {
  vocabSize: number;
  nPositions: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  /** MLP width; 4 * nEmbd when config.json says null. */
  nInner: number;
  layerNormEpsilon: number;
  scaleAttnWeights: boolean;
  eosTokenId: number;
}

/** Name the element types a checkpoint tensor may have; all are read as float32. */
export type TensorDtype = 'F32' | 'F16' | 'BF16';

/** Describe one checkpoint tensor under its canonical name (no `transformer.` prefix). */
export interface CheckpointTensor {
  name: string;
  dtype: TensorDtype;
  shape: number[];
  /** Absolute path of the safetensors file holding it. */
  file: string;
  /** Absolute offset of its first byte in `file`. */
  byteOffset: number;
  byteLength: number;
}

/** Describe a loaded checkpoint: its config, the tensors the graph uses, and a reader for their data. */
export interface Checkpoint {
  /** Absolute path of the folder. */
  dir: string;
  /** Folder basename, e.g. "gpt2". */
  name: string;
  config: Gpt2Config;
  /** Every tensor the graph uses, by canonical name; buffers and unknown tensors are left out. */
  tensors: ReadonlyMap<string, CheckpointTensor>;
  /** Tensor for the output projection: `wte.weight` when the head is tied, else `lm_head.weight`. */
  headName: 'wte.weight' | 'lm_head.weight';
  /** Read a tensor by canonical name as float32, converting F16 and BF16. */
  readFloat32(name: string): Float32Array;
}

const configFileName = 'config.json';
const weightsFileName = 'model.safetensors';
const indexFileName = 'model.safetensors.index.json';
const pytorchFileName = 'pytorch_model.bin';
const keyPrefix = 'transformer.'; // GPT2LMHeadModel saves the body under this prefix; GPT2Model does not
const supportedActivations: readonly string[] = ['gelu_new', 'gelu_pytorch_tanh']; // the same tanh approximation

/** Load a Hugging Face GPT-2 folder: parse config.json and the safetensors headers, and check every shape. */
export function loadCheckpoint(dir: string): Checkpoint {
  const absDir = resolve(dir);
  if (!existsSync(absDir)) throw new CheckpointError(`load checkpoint: folder ${absDir} does not exist`);
  if (!statSync(absDir).isDirectory()) throw new CheckpointError(`load checkpoint: ${absDir} is not a folder`);
  const { config, tieWordEmbeddings } = readCheckpointConfig(join(absDir, configFileName));
  const { byKey, source } = readWeightHeaders(absDir);
  const tensors = collectTensors(byKey, config, source);
  const headName = tensors.has('lm_head.weight') ? 'lm_head.weight' : 'wte.weight';
  if (headName === 'wte.weight' && !tieWordEmbeddings) {
    throw new CheckpointError(
      `load checkpoint ${absDir}: config.json sets tie_word_embeddings false but ${source} has no lm_head.weight`,
    );
  }
  return {
    dir: absDir,
    name: basename(absDir),
    config,
    tensors,
    headName,
    readFloat32(name: string): Float32Array {
      const tensor = tensors.get(name);
      if (tensor === undefined) {
        throw new CheckpointError(
          `read checkpoint tensor ${JSON.stringify(name)} from ${absDir}: no such tensor; known: ` +
            `${[...tensors.keys()].slice(0, 4).join(', ')}, ... (${tensors.size} in all)`,
        );
      }
      return readTensorFloat32(tensor);
    },
  };
}

/** Parse and check a GPT-2 config.json, refusing fields whose behaviour the graph does not implement. */
export function parseGpt2Config(file: string): Gpt2Config {
  return readCheckpointConfig(file).config;
}

function readCheckpointConfig(file: string): { config: Gpt2Config; tieWordEmbeddings: boolean } {
  const raw = readConfigJson(file);
  const where = `read GPT-2 config ${file}`;
  const required = (field: string): unknown => {
    if (!Object.hasOwn(raw, field) || raw[field] === undefined) {
      throw new CheckpointError(`${where}: required field ${field} is missing`);
    }
    return raw[field];
  };
  const positiveInteger = (field: string, value: unknown): number => {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
      throw new CheckpointError(`${where}: ${field} is ${JSON.stringify(value)}; expected an integer > 0`);
    }
    return value;
  };
  const optional = <T>(field: string, fallback: T, check: (value: unknown) => value is T, expected: string): T => {
    if (!Object.hasOwn(raw, field) || raw[field] === undefined) return fallback;
    const value = raw[field];
    if (!check(value)) throw new CheckpointError(`${where}: ${field} is ${JSON.stringify(value)}; expected ${expected}`);
    return value;
  };
  const refuseTrue = (field: string): void => {
    if (optional(field, false, isBoolean, 'true or false')) {
      throw new CheckpointError(`${where}: ${field} is true; the graph implements only ${field}: false`);
    }
  };

  const modelType = required('model_type');
  if (modelType !== 'gpt2') {
    throw new CheckpointError(`${where}: model_type is ${JSON.stringify(modelType)}; only "gpt2" is supported`);
  }
  const activation = optional('activation_function', 'gelu_new', isString, 'a string');
  if (!supportedActivations.includes(activation)) {
    throw new CheckpointError(
      `${where}: activation_function is ${JSON.stringify(activation)}; the graph implements ` +
        `${supportedActivations.map((a) => JSON.stringify(a)).join(' and ')} (the tanh-approximated GELU)`,
    );
  }
  refuseTrue('scale_attn_by_inverse_layer_idx');
  refuseTrue('reorder_and_upcast_attn');
  refuseTrue('add_cross_attention');

  const vocabSize = positiveInteger('vocab_size', required('vocab_size'));
  const nPositions = positiveInteger('n_positions', required('n_positions'));
  const nEmbd = positiveInteger('n_embd', required('n_embd'));
  const nLayer = positiveInteger('n_layer', required('n_layer'));
  const nHead = positiveInteger('n_head', required('n_head'));
  if (nEmbd % nHead !== 0) {
    throw new CheckpointError(`${where}: n_embd ${nEmbd} is not divisible by n_head ${nHead}`);
  }
  const innerRaw = raw.n_inner ?? null;
  const nInner = innerRaw === null ? 4 * nEmbd : positiveInteger('n_inner', innerRaw);
  const layerNormEpsilon = optional('layer_norm_epsilon', 1e-5, isPositiveNumber, 'a number > 0');
  const scaleAttnWeights = optional('scale_attn_weights', true, isBoolean, 'true or false');
  const eosTokenId = optional('eos_token_id', 50256, isNonNegativeInteger, 'an integer >= 0');
  if (eosTokenId >= vocabSize) {
    throw new CheckpointError(`${where}: eos_token_id ${eosTokenId} is outside the vocabulary (vocab_size ${vocabSize})`);
  }
  const tieWordEmbeddings = optional('tie_word_embeddings', true, isBoolean, 'true or false'); // transformers' default
  return {
    config: { vocabSize, nPositions, nEmbd, nLayer, nHead, nInner, layerNormEpsilon, scaleAttnWeights, eosTokenId },
    tieWordEmbeddings,
  };
}

/** List the canonical tensors a config implies, with their expected shapes, in checkpoint order. */
export function expectedTensorShapes(config: Gpt2Config): Map<string, number[]> {
  const { vocabSize: V, nPositions, nEmbd: C, nLayer, nInner } = config;
  const shapes = new Map<string, number[]>();
  shapes.set('wte.weight', [V, C]);
  shapes.set('wpe.weight', [nPositions, C]);
  for (let i = 0; i < nLayer; i++) {
    const h = `h.${i}`;
    shapes.set(`${h}.ln_1.weight`, [C]);
    shapes.set(`${h}.ln_1.bias`, [C]);
    shapes.set(`${h}.attn.c_attn.weight`, [C, 3 * C]); // Conv1D: (in, out)
    shapes.set(`${h}.attn.c_attn.bias`, [3 * C]);
    shapes.set(`${h}.attn.c_proj.weight`, [C, C]);
    shapes.set(`${h}.attn.c_proj.bias`, [C]);
    shapes.set(`${h}.ln_2.weight`, [C]);
    shapes.set(`${h}.ln_2.bias`, [C]);
    shapes.set(`${h}.mlp.c_fc.weight`, [C, nInner]);
    shapes.set(`${h}.mlp.c_fc.bias`, [nInner]);
    shapes.set(`${h}.mlp.c_proj.weight`, [nInner, C]);
    shapes.set(`${h}.mlp.c_proj.bias`, [C]);
  }
  shapes.set('ln_f.weight', [C]);
  shapes.set('ln_f.bias', [C]);
  return shapes;
}

function readConfigJson(file: string): Record<string, unknown> {
  if (!existsSync(file)) throw new CheckpointError(`read GPT-2 config: ${file} does not exist`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new CheckpointError(`read GPT-2 config ${file}: not valid JSON (${reason})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new CheckpointError(`read GPT-2 config ${file}: the JSON is not an object`);
  }
  return json as Record<string, unknown>;
}

interface WeightHeaders {
  /** Every tensor in the weight files, by its key as stored. */
  byKey: Map<string, SafetensorsTensorInfo>;
  /** Which file(s) the tensors came from, for messages. */
  source: string;
}

function readWeightHeaders(dir: string): WeightHeaders {
  const single = join(dir, weightsFileName);
  if (existsSync(single)) {
    const byKey = new Map<string, SafetensorsTensorInfo>();
    for (const tensor of readSafetensorsHeader(single).tensors) byKey.set(tensor.name, tensor);
    return { byKey, source: single };
  }
  const index = join(dir, indexFileName);
  if (existsSync(index)) return readShardedHeaders(dir, index);
  const pytorch = existsSync(join(dir, pytorchFileName))
    ? `; the folder has only ${pytorchFileName}, a PyTorch pickle this loader does not read ` +
      `(convert it to safetensors, e.g. save_pretrained(dir, safe_serialization=True))`
    : '';
  throw new CheckpointError(`load checkpoint ${dir}: neither ${weightsFileName} nor ${indexFileName} found${pytorch}`);
}

function readShardedHeaders(dir: string, index: string): WeightHeaders {
  let weightMap: unknown;
  try {
    weightMap = (JSON.parse(readFileSync(index, 'utf8')) as { weight_map?: unknown }).weight_map;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new CheckpointError(`read safetensors index ${index}: not valid JSON (${reason})`);
  }
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new CheckpointError(`read safetensors index ${index}: weight_map is missing or not an object`);
  }
  const shards = new Map<string, Map<string, SafetensorsTensorInfo>>();
  const byKey = new Map<string, SafetensorsTensorInfo>();
  for (const [key, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\')) {
      throw new CheckpointError(
        `read safetensors index ${index}: weight_map.${key} is ${JSON.stringify(shard)}; expected a file name in ${dir}`,
      );
    }
    let tensors = shards.get(shard);
    if (tensors === undefined) {
      const file = join(dir, shard);
      if (!existsSync(file)) {
        throw new CheckpointError(`read safetensors index ${index}: shard ${file} (holding ${key}) does not exist`);
      }
      tensors = new Map(readSafetensorsHeader(file).tensors.map((t) => [t.name, t]));
      shards.set(shard, tensors);
    }
    const tensor = tensors.get(key);
    if (tensor === undefined) {
      throw new CheckpointError(
        `read safetensors index ${index}: tensor ${key} is mapped to ${join(dir, shard)}, whose header lacks it`,
      );
    }
    byKey.set(key, tensor);
  }
  return { byKey, source: `${index} (${shards.size} shards)` };
}

function collectTensors(
  byKey: Map<string, SafetensorsTensorInfo>,
  config: Gpt2Config,
  source: string,
): Map<string, CheckpointTensor> {
  const canonical = new Map<string, SafetensorsTensorInfo>();
  for (const [key, tensor] of byKey) {
    const name = key.startsWith(keyPrefix) ? key.slice(keyPrefix.length) : key;
    const other = canonical.get(name);
    if (other !== undefined) {
      throw new CheckpointError(
        `load checkpoint from ${source}: tensor ${name} appears twice, as ${other.name} and ${key}`,
      );
    }
    canonical.set(name, tensor);
  }
  const expected = expectedTensorShapes(config);
  if (canonical.has('lm_head.weight')) expected.set('lm_head.weight', [config.vocabSize, config.nEmbd]);
  const tensors = new Map<string, CheckpointTensor>();
  for (const [name, shape] of expected) {
    const tensor = canonical.get(name);
    if (tensor === undefined) {
      throw new CheckpointError(
        `load checkpoint from ${source}: tensor ${name} (or ${keyPrefix}${name}) is missing; ` +
          `a GPT-2 with n_layer ${config.nLayer} needs it`,
      );
    }
    if (tensor.shape.length !== shape.length || tensor.shape.some((d, i) => d !== shape[i])) {
      throw new CheckpointError(
        `load checkpoint from ${tensor.file}: tensor ${tensor.name} has shape [${tensor.shape.join(', ')}]; ` +
          `config (vocab_size ${config.vocabSize}, n_positions ${config.nPositions}, n_embd ${config.nEmbd}, ` +
          `n_inner ${config.nInner}) expects [${shape.join(', ')}]`,
      );
    }
    const dtype = tensor.dtype;
    if (!isTensorDtype(dtype)) {
      throw new CheckpointError(
        `load checkpoint from ${tensor.file}: tensor ${tensor.name} has dtype ${tensor.dtype}; ` +
          `weights must be F32, F16 or BF16`,
      );
    }
    tensors.set(name, { ...tensor, name, dtype, shape: [...tensor.shape] });
  }
  return tensors;
}

function isTensorDtype(dtype: string): dtype is TensorDtype {
  return dtype === 'F32' || dtype === 'F16' || dtype === 'BF16';
}

function isString(value: unknown): value is string {
  return typeof value === 'string';
}

function isBoolean(value: unknown): value is boolean {
  return typeof value === 'boolean';
}

function isPositiveNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0;
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
