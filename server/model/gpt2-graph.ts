// GPT-2 as ONNX graphs built from a checkpoint: the gradient graph (forward + backward to the input embeddings)
// and the forward-only decode graph, with or without a key/value cache. onnxruntime has no autograd, so the
// backward pass is written here by hand, piece by piece, each backward beside its forward and applied in the
// reverse order of the forward pass.
//
// B = batch, P = prompt vectors, T = target tokens, S = P + T - 1 sequence positions, N = generated tokens,
// C = channels (768 for gpt2), H = heads, D = C / H, F = MLP width (4C), V = vocab (50257),
// K = earlier tokens a position's repetition penalty looks at (fed by the host: at most T - 1, or N)
//
// Rules the graphs keep (see docs/design.md, "Rules the graphs keep"):
// - no shape arithmetic (Shape, Range, ConstantOfShape, ...): positions, the causal bias and the selections of
//   target and prompt positions are fed by the host, so a GPU execution provider never syncs with the CPU;
// - outputs are small: never the (B, T, V) logits;
// - weights stay in the checkpoint's safetensors file as external data (no 2 GB protobuf limit).
//
// Precision: 'fp32' runs everything in float32. 'fp16' runs the weights and activations in float16 and keeps
// float32 islands where float16 loses too much: layer-norm statistics and their backward reductions, the
// attention softmax and its backward, and the logits -> loss path (penalty, log-softmax, NLL, argmax). Inputs and
// outputs stay float32 either way (cast at the edges), so the session code feeds both alike.
import path from 'node:path';
import type { Checkpoint, CheckpointTensor, Gpt2Config } from './checkpoint.js';
import { ElemType, OnnxGraphBuilder } from './onnx-builder.js';
import type { GraphPrecision } from './precision.js';

/** Names of the gradient graph's inputs and outputs: the contract with the session code. */
export const gradientGraphIo = {
  inputs: {
    prompt: 'prompt', // (B, P, C) float: the soft prompt after its parameterization
    targetIds: 'target_ids', // (B, T) int64, padded on the right
    targetMask: 'target_mask', // (B, T) float: 1 for real target tokens, 0 for padding
    positionIds: 'position_ids', // (S) int64: 0 .. S-1
    causalBias: 'causal_bias', // (S, S) float: 0 on and below the diagonal, -1e9 above
    targetSelect: 'target_select', // (T, S) float: one-hot, row t selects position P-1+t
    promptPositions: 'prompt_positions', // (P) int64: 0 .. P-1
    penaltyIds: 'penalty_ids', // (B, T, K) int64: [b, t, s] = target_ids[b, s]
    penaltyMask: 'penalty_mask', // (B, T, K) float: 1 iff s < t and target s is the first of its value
    repetitionPenalty: 'repetition_penalty', // (B) float: theta per row; 1 is off
  },
  outputs: {
    nll: 'nll', // (B, T) float: per-token NLL (natural log), times target_mask
    gradPrompt: 'grad_prompt', // (B, P, C) float: d(sum_t mask * nll) / d prompt
    argmaxIds: 'argmax_ids', // (B, T) int64: teacher-forced argmax at each target position
  },
} as const;

/** Names of the decode graph's inputs and outputs. */
export const decodeGraphIo = {
  inputs: {
    prompt: 'prompt', // (B, P, C) float
    tokenIds: 'token_ids', // (B, N) int64: tokens generated so far (N may be 0)
    positionIds: 'position_ids', // (S) int64 with S = P + N
    causalBias: 'causal_bias', // (S, S) float
    lastPosition: 'last_position', // (1) int64: S - 1
    penaltyIds: 'penalty_ids', // (B, 1, K) int64: [b, 0, s] = token_ids[b, s]
    penaltyMask: 'penalty_mask', // (B, 1, K) float: 1 iff token s is the first of its value among the row's tokens
    repetitionPenalty: 'repetition_penalty', // (B) float: theta per row; 1 is off
  },
  outputs: {
    logprobs: 'logprobs', // (B, V) float: log-softmax of the next-token logits
  },
} as const;

/**
 * Names of the cached decode graph's inputs and outputs. R = positions already cached, S = new positions: the
 * prompt (only on the first run of a row, P = 0 later) and the new tokens, at positions R .. R + S - 1.
 */
export const cachedDecodeGraphIo = {
  inputs: {
    prompt: 'prompt', // (B, P, C) float; P = 0 once the prompt is cached
    tokenIds: 'token_ids', // (B, M) int64: the tokens after the cached positions (M may be 0)
    positionIds: 'position_ids', // (S) int64 with S = P + M: R .. R + S - 1
    causalBias: 'causal_bias', // (S, R + S) float: 0 where a new position may look, -1e9 above its own
    lastPosition: 'last_position', // (1) int64: S - 1, the last new position
    penaltyIds: 'penalty_ids', // (B, 1, K) int64: the row's every token so far, as in the decode graph
    penaltyMask: 'penalty_mask', // (B, 1, K) float
    repetitionPenalty: 'repetition_penalty', // (B) float
    pastKey: (l: number) => `past_key.${l}`, // (B, H, R, D) float
    pastValue: (l: number) => `past_value.${l}`, // (B, H, R, D) float
  },
  outputs: {
    logprobs: 'logprobs', // (B, V) float
    presentKey: (l: number) => `present_key.${l}`, // (B, H, R + S, D) float: past_key and the new positions' keys
    presentValue: (l: number) => `present_value.${l}`, // (B, H, R + S, D) float
  },
} as const;

export interface GraphOptions {
  /** Weights and activations in float32 (the default) or float16 with float32 islands; see the header. */
  precision?: GraphPrecision;
}

/**
 * The activation type and what goes with it: constants of that type, and the casts into and out of a float32
 * island. At fp32 the casts are the value itself and add no node, so the fp32 graph is the one built before
 * precision existed, node for node.
 */
export interface Numerics {
  type: typeof ElemType.float | typeof ElemType.float16;
  /** A scalar constant (shape []) of the activation type. */
  scalar(value: number): string;
  /** A float32 value in the activation type. */
  toActivation(value: string, label?: string): string;
  /** An activation-type value in float32. */
  toFloat(value: string, label?: string): string;
}

/** Make the numerics of a precision for graph `g`. */
export function createNumerics(g: OnnxGraphBuilder, precision: GraphPrecision = 'fp32'): Numerics {
  if (precision === 'fp32') {
    return { type: ElemType.float, scalar: (v) => g.scalar(v), toActivation: (x) => x, toFloat: (x) => x };
  }
  return {
    type: ElemType.float16,
    scalar: (v) => g.scalarFloat16(v),
    toActivation: (x, label = `${x}.f16`) => g.op('Cast', [x], { to: ElemType.float16 }, label),
    toFloat: (x, label = `${x}.f32`) => g.op('Cast', [x], { to: ElemType.float }, label),
  };
}

/** Value of the causal bias above the diagonal: exp(-1e9 - max) is exactly 0 in float32. */
export const causalMaskValue = -1e9;

const geluTanhScale = Math.sqrt(2 / Math.PI);
const geluCubic = 0.044715;

/** Build the gradient graph: forward + backward to the prompt, for the checkpoint's own shapes and weights. */
export function buildGradientGraph(checkpoint: Checkpoint, options: GraphOptions = {}): OnnxGraphBuilder {
  const g = new OnnxGraphBuilder(`${checkpoint.name}.gradient`);
  const n = createNumerics(g, options.precision);
  const { nEmbd: C, vocabSize: V } = checkpoint.config;
  const io = gradientGraphIo.inputs;
  const prompt = g.input(io.prompt, ElemType.float, ['B', 'P', C]);
  const targetIds = g.input(io.targetIds, ElemType.int64, ['B', 'T']);
  const targetMask = g.input(io.targetMask, ElemType.float, ['B', 'T']);
  const positionIds = g.input(io.positionIds, ElemType.int64, ['S']);
  const causalBias = g.input(io.causalBias, ElemType.float, ['S', 'S']);
  const targetSelect = g.input(io.targetSelect, ElemType.float, ['T', 'S']);
  const promptPositions = g.input(io.promptPositions, ElemType.int64, ['P']);
  const penaltyIds = g.input(io.penaltyIds, ElemType.int64, ['B', 'T', 'K']);
  const penaltyMask = g.input(io.penaltyMask, ElemType.float, ['B', 'T', 'K']);
  const theta = g.input(io.repetitionPenalty, ElemType.float, ['B']);
  const w = createCheckpointWeights(g, checkpoint, n);

  // The model reads the prompt, then every target token but the last (teacher forcing).
  const targetInputs = g.op('Slice', [targetIds, g.int64s([0]), g.int64s([-1]), g.int64s([1])], {}, 'target_inputs'); // (B, T-1)
  const h0 = embed(g, w, n.toActivation(prompt), targetInputs, positionIds); // (B, S, C)
  const forward = transformerForward(g, checkpoint.config, w, h0, causalBias, n);

  // ---- head and loss at the T target positions (the loss in float32 at any precision) ----
  const select = n.toActivation(targetSelect); // (T, S)
  const hTarget = g.op('MatMul', [select, forward.hf], {}, 'head.h_target'); // (B, T, C)
  const logits = n.toFloat(g.op('MatMul', [hTarget, w.headT()], {}, 'head.logits')); // (B, T, V)
  // Position t is penalized for the target tokens before it: what free-running decoding has produced by then when
  // it reproduces the target, so the argmax below stays the greedy hit check under a penalty too.
  const penalty = repetitionPenaltyForward(g, logits, penaltyIds, penaltyMask, theta);
  const loss = crossEntropyForward(g, penalty.out, targetIds, targetMask);

  // ---- backward, in the reverse order of the forward pass ----
  const dPenalized = crossEntropyBackward(g, loss, targetIds, targetMask, V); // (B, T, V)
  const dLogits = repetitionPenaltyBackward(g, penalty.saved, dPenalized); // (B, T, V)
  const dHTarget = g.op('MatMul', [n.toActivation(dLogits), w.head()], {}, 'head.d_h_target'); // (B, T, C)
  const dHf = g.op('MatMul', [g.op('Transpose', [select], { perm: [1, 0] }), dHTarget], {}, 'ln_f.d_out'); // (B, S, C)
  const dH0 = transformerBackward(g, checkpoint.config, w, forward, dHf, undefined, n); // (B, S, C)
  // Only the prompt positions of d h0 belong to a parameter; the rest is the gradient to frozen token embeddings.
  const gradPrompt = n.toFloat(g.op('Gather', [dH0, promptPositions], { axis: 1 }, 'grad_prompt.gather')); // (B, P, C)

  const out = gradientGraphIo.outputs;
  g.output(loss.nll, out.nll, ElemType.float, ['B', 'T']);
  g.output(gradPrompt, out.gradPrompt, ElemType.float, ['B', 'P', C]);
  g.output(loss.argmax, out.argmaxIds, ElemType.int64, ['B', 'T']);
  return g;
}

/** Build the forward-only decode graph: next-token log-probabilities after prompt + tokens so far. */
export function buildDecodeGraph(checkpoint: Checkpoint, options: GraphOptions = {}): OnnxGraphBuilder {
  const g = new OnnxGraphBuilder(`${checkpoint.name}.decode`);
  const n = createNumerics(g, options.precision);
  const { nEmbd: C, vocabSize: V } = checkpoint.config;
  const io = decodeGraphIo.inputs;
  const prompt = g.input(io.prompt, ElemType.float, ['B', 'P', C]);
  const tokenIds = g.input(io.tokenIds, ElemType.int64, ['B', 'N']);
  const positionIds = g.input(io.positionIds, ElemType.int64, ['S']);
  const causalBias = g.input(io.causalBias, ElemType.float, ['S', 'S']);
  const lastPosition = g.input(io.lastPosition, ElemType.int64, [1]);
  const penaltyIds = g.input(io.penaltyIds, ElemType.int64, ['B', 1, 'K']);
  const penaltyMask = g.input(io.penaltyMask, ElemType.float, ['B', 1, 'K']);
  const theta = g.input(io.repetitionPenalty, ElemType.float, ['B']);
  const w = createCheckpointWeights(g, checkpoint, n);

  const h0 = embed(g, w, n.toActivation(prompt), tokenIds, positionIds); // (B, S, C)
  const { hf } = transformerForward(g, checkpoint.config, w, h0, causalBias, n);
  const logprobs = nextTokenLogprobs(g, n, w, hf, lastPosition, penaltyIds, penaltyMask, theta); // (B, V)
  g.output(logprobs, decodeGraphIo.outputs.logprobs, ElemType.float, ['B', V]);
  return g;
}

/**
 * Build the decode graph with a key/value cache: the decode graph's log-probabilities after the R cached positions
 * and S new ones, and every layer's keys and values of all R + S positions, which the next run takes as its past.
 * The first run of a row feeds its prompt and tokens with R = 0; later runs feed only the new token. The cache
 * crosses the graph's edge in float32 at either precision (a float16 value survives the round trip exactly).
 */
export function buildCachedDecodeGraph(checkpoint: Checkpoint, options: GraphOptions = {}): OnnxGraphBuilder {
  const g = new OnnxGraphBuilder(`${checkpoint.name}.decode_cached`);
  const n = createNumerics(g, options.precision);
  const { nEmbd: C, nHead: H, nLayer, vocabSize: V } = checkpoint.config;
  const D = C / H;
  const io = cachedDecodeGraphIo.inputs;
  const prompt = g.input(io.prompt, ElemType.float, ['B', 'P', C]);
  const tokenIds = g.input(io.tokenIds, ElemType.int64, ['B', 'M']);
  const positionIds = g.input(io.positionIds, ElemType.int64, ['S']);
  const causalBias = g.input(io.causalBias, ElemType.float, ['S', 'L']);
  const lastPosition = g.input(io.lastPosition, ElemType.int64, [1]);
  const penaltyIds = g.input(io.penaltyIds, ElemType.int64, ['B', 1, 'K']);
  const penaltyMask = g.input(io.penaltyMask, ElemType.float, ['B', 1, 'K']);
  const theta = g.input(io.repetitionPenalty, ElemType.float, ['B']);
  const past = Array.from({ length: nLayer }, (_, l): KeyValue => ({
    key: n.toActivation(g.input(io.pastKey(l), ElemType.float, ['B', H, 'R', D])), // (B, H, R, D)
    value: n.toActivation(g.input(io.pastValue(l), ElemType.float, ['B', H, 'R', D])), // (B, H, R, D)
  }));
  const w = createCheckpointWeights(g, checkpoint, n);

  const h0 = embed(g, w, n.toActivation(prompt), tokenIds, positionIds); // (B, S, C)
  const { hf, blocks } = transformerForward(g, checkpoint.config, w, h0, causalBias, n, past);
  const logprobs = nextTokenLogprobs(g, n, w, hf, lastPosition, penaltyIds, penaltyMask, theta); // (B, V)
  const out = cachedDecodeGraphIo.outputs;
  g.output(logprobs, out.logprobs, ElemType.float, ['B', V]);
  blocks.forEach(({ attn }, l) => {
    g.output(n.toFloat(attn.kh, `present_key.${l}.f32`), out.presentKey(l), ElemType.float, ['B', H, 'L', D]);
    g.output(n.toFloat(attn.vh, `present_value.${l}.f32`), out.presentValue(l), ElemType.float, ['B', H, 'L', D]);
  });
  return g;
}

// The head at the last position, the repetition penalty and the log-softmax: (B, S, C) -> (B, V).
function nextTokenLogprobs(g: OnnxGraphBuilder, n: Numerics, w: Weights, hf: string, lastPosition: string,
  penaltyIds: string, penaltyMask: string, theta: string): string {
  const hLast = g.op('Gather', [hf, lastPosition], { axis: 1 }, 'head.h_last'); // (B, 1, C)
  const logits = n.toFloat(g.op('MatMul', [hLast, w.headT()], {}, 'head.logits')); // (B, 1, V)
  // The penalty before the log-softmax, as in the gradient graph: a decoder ranks by the likelihood the search tracks.
  const penalized = repetitionPenaltyForward(g, logits, penaltyIds, penaltyMask, theta).out; // (B, 1, V)
  const logitsLast = g.op('Squeeze', [penalized, g.int64s([1])], {}, 'head.logits_last'); // (B, V)
  return g.op('LogSoftmax', [logitsLast], { axis: -1 }, 'head.logprobs'); // (B, V)
}

// ---------------------------------------------------------------------------------------------------------------
// Weights

/** The weights as graph values, by checkpoint name. */
export interface Weights {
  /** A weight in the graph's activation type (a Cast follows storage of another type). */
  get(name: string): string;
  /** The weight with its two axes swapped (frozen weights: onnxruntime folds this once at load). */
  transposed(name: string): string;
  head(): string; // (V, C)
  headT(): string; // (C, V)
}

const storageElemType = { F32: ElemType.float, F16: ElemType.float16, BF16: ElemType.bfloat16 } as const;

/** Make weights from a function that declares each one in the graph once, and caches its transposes. */
export function createWeights(g: OnnxGraphBuilder, declare: (name: string) => string, headName: string): Weights {
  const values = new Map<string, string>();
  const transposes = new Map<string, string>();
  const get = (name: string): string => {
    const cached = values.get(name);
    if (cached) return cached;
    const value = declare(name);
    values.set(name, value);
    return value;
  };
  const transposed = (name: string): string => {
    const cached = transposes.get(name);
    if (cached) return cached;
    const value = g.op('Transpose', [get(name)], { perm: [1, 0] }, `${name}.T`);
    transposes.set(name, value);
    return value;
  };
  return { get, transposed, head: () => get(headName), headT: () => transposed(headName) };
}

// Frozen weights: initializers left in the checkpoint's safetensors file, cast once to the activation type (a cast
// of an initializer is a constant, which onnxruntime folds when the session opens).
function createCheckpointWeights(g: OnnxGraphBuilder, checkpoint: Checkpoint, n: Numerics): Weights {
  const suffix = n.type === ElemType.float ? 'f32' : 'f16';
  return createWeights(g, (name) => {
    const tensor = checkpoint.tensors.get(name);
    if (!tensor) throw new Error(`checkpoint ${checkpoint.dir}: the graph needs tensor ${name}, which it lacks`);
    const stored = g.external(externalOf(checkpoint, tensor));
    return storageElemType[tensor.dtype] === n.type ? stored
      : g.op('Cast', [stored], { to: n.type }, `${name}.${suffix}`);
  }, checkpoint.headName);
}

function externalOf(checkpoint: Checkpoint, tensor: CheckpointTensor) {
  return {
    name: tensor.name,
    elemType: storageElemType[tensor.dtype],
    dims: tensor.shape,
    location: path.relative(checkpoint.dir, tensor.file),
    offset: tensor.byteOffset,
    length: tensor.byteLength,
  };
}

/**
 * Receive the gradient to each weight, by checkpoint name: the training graph passes one to the backward pieces;
 * the inference graphs pass none, and those pieces then compute the gradient to their input alone.
 */
export interface WeightGradientSink {
  add(name: string, gradient: string): void;
}

// ---------------------------------------------------------------------------------------------------------------
// Embedding

function embed(g: OnnxGraphBuilder, w: Weights, prompt: string, tokenIds: string, positionIds: string): string {
  const tokens = g.op('Gather', [w.get('wte.weight'), tokenIds], { axis: 0 }, 'wte.lookup'); // (B, S-P, C)
  const x = g.op('Concat', [prompt, tokens], { axis: 1 }, 'embed.x'); // (B, S, C)
  const positions = g.op('Gather', [w.get('wpe.weight'), positionIds], { axis: 0 }, 'wpe.lookup'); // (S, C)
  return g.op('Add', [x, positions], {}, 'h0'); // (B, S, C)
}

// ---------------------------------------------------------------------------------------------------------------
// Transformer blocks

interface LayerNormSaved {
  xhat: string; // (B, S, C) normalized input, activation type
  xhatF32: string; // (B, S, C) the same in float32 (the same value at fp32)
  rstd: string; // (B, S, 1) float32: 1 / sqrt(var + eps)
  gamma: string; // (C)
}

interface AttentionSaved {
  x: string; // (B, S, C) the block's input (ln_1's output), c_attn's input
  qh: string; // (B, H, S, D)
  kh: string; // (B, H, S, D)
  vh: string; // (B, H, S, D)
  probs: string; // (B, H, S, S) float32: softmax of the scaled, masked scores
  probsAct: string; // (B, H, S, S) the same in the activation type (the same value at fp32)
  yh: string; // (B, H, S, D) probs · vh
  y: string; // (B, S, C) heads merged, c_proj's input
}

interface MlpSaved {
  x: string; // (B, S, C) ln_2's output, c_fc's input
  fc: string; // (B, S, F) c_fc output, the GELU's input
  tanh: string; // (B, S, F) tanh(sqrt(2/pi) (fc + 0.044715 fc^3))
  gelu: string; // (B, S, F) c_proj's input
}

interface BlockSaved {
  ln1: LayerNormSaved;
  attn: AttentionSaved;
  ln2: LayerNormSaved;
  mlp: MlpSaved;
}

/** What the forward pass keeps for the backward pass. */
export interface ForwardResult {
  blocks: BlockSaved[];
  lnF: LayerNormSaved;
  hf: string; // (B, S, C) after ln_f
}

/** One layer's attention keys or values of earlier positions, in the activation type. */
export interface KeyValue {
  key: string; // (B, H, R, D)
  value: string; // (B, H, R, D)
}

/**
 * Run the blocks and ln_f over the embedded sequence h0 (B, S, C); with `past` (one per layer), h0 holds the S
 * positions after the R cached ones, and each block's attention saved kh and vh are the present (B, H, R + S, D).
 */
export function transformerForward(g: OnnxGraphBuilder, config: Gpt2Config, w: Weights, h0: string,
  causalBias: string, n: Numerics = createNumerics(g), past?: readonly KeyValue[]): ForwardResult {
  const { nLayer, layerNormEpsilon: eps } = config;
  const blocks: BlockSaved[] = [];
  let h = h0; // (B, S, C) residual stream
  for (let l = 0; l < nLayer; l++) {
    const p = `h.${l}`;
    const ln1 = layernormForward(g, n, w, `${p}.ln_1`, h, eps);
    const attn = attentionForward(g, n, config, w, `${p}.attn`, ln1.y, causalBias, past?.[l]);
    h = g.op('Add', [h, attn.out], {}, `${p}.residual_attn`); // (B, S, C)
    const ln2 = layernormForward(g, n, w, `${p}.ln_2`, h, eps);
    const mlp = mlpForward(g, n, w, `${p}.mlp`, ln2.y);
    h = g.op('Add', [h, mlp.out], {}, `${p}.residual_mlp`); // (B, S, C)
    blocks.push({ ln1: ln1.saved, attn: attn.saved, ln2: ln2.saved, mlp: mlp.saved });
  }
  const lnF = layernormForward(g, n, w, 'ln_f', h, eps);
  return { blocks, lnF: lnF.saved, hf: lnF.y };
}

/** Backward from d hf (B, S, C) to d h0 (B, S, C); with a sink, also to every block and ln_f weight. */
export function transformerBackward(g: OnnxGraphBuilder, config: Gpt2Config, w: Weights, forward: ForwardResult,
  dHf: string, grads?: WeightGradientSink, n: Numerics = createNumerics(g)): string {
  const { nLayer } = config;
  let dH = layernormBackward(g, n, 'ln_f', forward.lnF, dHf, grads); // (B, S, C)
  for (let l = nLayer - 1; l >= 0; l--) {
    const p = `h.${l}`;
    const saved = forward.blocks[l]!;
    // h_out = h_mid + mlp(ln_2(h_mid)): the residual passes dH through unchanged and adds the branch's gradient.
    const dLn2 = mlpBackward(g, n, config, w, `${p}.mlp`, saved.mlp, dH, grads);
    dH = g.op('Add', [dH, layernormBackward(g, n, `${p}.ln_2`, saved.ln2, dLn2, grads)], {}, `${p}.d_residual_mlp`);
    // h_mid = h_in + attn(ln_1(h_in))
    const dLn1 = attentionBackward(g, n, config, w, `${p}.attn`, saved.attn, dH, grads);
    dH = g.op('Add', [dH, layernormBackward(g, n, `${p}.ln_1`, saved.ln1, dLn1, grads)], {}, `${p}.d_residual_attn`);
  }
  return dH;
}

// ---------------------------------------------------------------------------------------------------------------
// LayerNorm: y = xhat * gamma + beta, xhat = (x - mean) * rstd, over the last axis (biased variance, as torch).
// The statistics and xhat are float32 at any precision: a float16 mean of C numbers, or a variance near eps, would
// lose most of their digits; the affine part runs in the activation type.

function layernormForward(g: OnnxGraphBuilder, n: Numerics, w: Weights, name: string, x: string, eps: number) {
  const gamma = w.get(`${name}.weight`); // (C)
  const beta = w.get(`${name}.bias`); // (C)
  const x32 = n.toFloat(x, `${name}.x_f32`); // (B, S, C) float32
  const mean = g.op('ReduceMean', [x32], { axes: [-1], keepdims: 1 }, `${name}.mean`); // (B, S, 1)
  const centered = g.op('Sub', [x32, mean], {}, `${name}.centered`); // (B, S, C)
  const variance = g.op('ReduceMean', [g.op('Mul', [centered, centered])], { axes: [-1], keepdims: 1 }, `${name}.var`); // (B, S, 1)
  const rstd = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [variance, g.scalar(eps)])])], {}, `${name}.rstd`); // (B, S, 1)
  const xhatF32 = g.op('Mul', [centered, rstd], {}, `${name}.xhat`); // (B, S, C) float32
  const xhat = n.toActivation(xhatF32); // (B, S, C)
  const y = g.op('Add', [g.op('Mul', [xhat, gamma]), beta], {}, name); // (B, S, C)
  return { y, saved: { xhat, xhatF32, rstd, gamma } satisfies LayerNormSaved };
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = gamma * dy; d gamma = sum(dy * xhat), d beta = sum(dy)
// The two means and the product with rstd run in float32, as in the forward pass.
function layernormBackward(g: OnnxGraphBuilder, n: Numerics, name: string, saved: LayerNormSaved, dY: string,
  grads?: WeightGradientSink): string {
  if (grads) {
    grads.add(`${name}.weight`, g.op('ReduceSum', [g.op('Mul', [dY, saved.xhat]), g.int64s([0, 1])], { keepdims: 0 },
      `${name}.d_weight`)); // (C)
    grads.add(`${name}.bias`, g.op('ReduceSum', [dY, g.int64s([0, 1])], { keepdims: 0 }, `${name}.d_bias`)); // (C)
  }
  const gy = n.toFloat(g.op('Mul', [dY, saved.gamma], {}, `${name}.d_xhat`)); // (B, S, C) float32
  const { xhatF32: xhat } = saved;
  const meanG = g.op('ReduceMean', [gy], { axes: [-1], keepdims: 1 }); // (B, S, 1)
  const meanGX = g.op('ReduceMean', [g.op('Mul', [gy, xhat])], { axes: [-1], keepdims: 1 }); // (B, S, 1)
  const inner = g.op('Sub', [g.op('Sub', [gy, meanG]), g.op('Mul', [xhat, meanGX])]); // (B, S, C)
  return n.toActivation(g.op('Mul', [inner, saved.rstd], {}, `${name}.d_in`)); // (B, S, C)
}

// HF's Conv1D: y = x W + b with W stored (in, out). d W = sum over (B, S) of x^T dy, d b = sum of dy.
function conv1dWeightGradients(g: OnnxGraphBuilder, name: string, x: string, dY: string, inDim: number,
  outDim: number, grads: WeightGradientSink): void {
  const x2d = g.op('Reshape', [x, g.int64s([-1, inDim])], {}, `${name}.x_rows`); // (B*S, in)
  const dY2d = g.op('Reshape', [dY, g.int64s([-1, outDim])], {}, `${name}.d_out_rows`); // (B*S, out)
  grads.add(`${name}.weight`, g.op('Gemm', [x2d, dY2d], { transA: 1 }, `${name}.d_weight`)); // (in, out)
  grads.add(`${name}.bias`, g.op('ReduceSum', [dY2d, g.int64s([0])], { keepdims: 0 }, `${name}.d_bias`)); // (out)
}

// ---------------------------------------------------------------------------------------------------------------
// Causal self-attention. HF's Conv1D stores W as (in, out): y = x W + b, so dx = dy W^T.
// The scale, the causal bias and the softmax run in float32 at any precision (the bias, -1e9, is no float16 number),
// and so does the softmax backward; the matrix products run in the activation type.

// With `past` (B, H, R, D) keys and values of R earlier positions, the S new positions' keys and values follow them
// (kh and vh are then the present (B, H, R + S, D) and the scores (B, H, S, R + S)); the host's causal bias is
// (S, R + S). A Concat needs no shape arithmetic.
function attentionForward(g: OnnxGraphBuilder, n: Numerics, config: Gpt2Config, w: Weights, name: string, x: string,
  causalBias: string, past?: KeyValue) {
  const { nEmbd: C, nHead: H, scaleAttnWeights } = config;
  const D = C / H;
  const qkv = g.op('Add', [g.op('MatMul', [x, w.get(`${name}.c_attn.weight`)]), w.get(`${name}.c_attn.bias`)], {},
    `${name}.c_attn`); // (B, S, 3C)
  const [q, k, v] = g.ops('Split', [qkv, g.int64s([C, C, C])], 3, { axis: 2 }, `${name}.qkv`); // 3 x (B, S, C)
  const splitHeads = (t: string, label: string) =>
    g.op('Transpose', [g.op('Reshape', [t, g.int64s([0, 0, H, D])])], { perm: [0, 2, 1, 3] }, label); // (B, H, S, D)
  const qh = splitHeads(q!, `${name}.q`);
  const kh = past ? g.op('Concat', [past.key, splitHeads(k!, `${name}.k_new`)], { axis: 2 }, `${name}.k`)
    : splitHeads(k!, `${name}.k`);
  const vh = past ? g.op('Concat', [past.value, splitHeads(v!, `${name}.v_new`)], { axis: 2 }, `${name}.v`)
    : splitHeads(v!, `${name}.v`);
  const kT = g.op('Transpose', [kh], { perm: [0, 1, 3, 2] }, `${name}.kT`); // (B, H, D, S)
  let scores = n.toFloat(g.op('MatMul', [qh, kT], {}, `${name}.scores`)); // (B, H, S, S) float32
  if (scaleAttnWeights) scores = g.op('Mul', [scores, g.scalar(1 / Math.sqrt(D))], {}, `${name}.scores_scaled`);
  const masked = g.op('Add', [scores, causalBias], {}, `${name}.scores_masked`); // (B, H, S, S)
  const probs = g.op('Softmax', [masked], { axis: -1 }, `${name}.probs`); // (B, H, S, S) float32
  const probsAct = n.toActivation(probs); // (B, H, S, S)
  const yh = g.op('MatMul', [probsAct, vh], {}, `${name}.yh`); // (B, H, S, D)
  const y = mergeHeads(g, yh, C, `${name}.y`); // (B, S, C)
  const out = g.op('Add', [g.op('MatMul', [y, w.get(`${name}.c_proj.weight`)]), w.get(`${name}.c_proj.bias`)], {},
    `${name}.c_proj`); // (B, S, C)
  return { out, saved: { x, qh, kh, vh, probs, probsAct, yh, y } satisfies AttentionSaved };
}

function attentionBackward(g: OnnxGraphBuilder, n: Numerics, config: Gpt2Config, w: Weights, name: string,
  saved: AttentionSaved, dOut: string, grads?: WeightGradientSink): string {
  const { nEmbd: C, nHead: H, scaleAttnWeights } = config;
  const D = C / H;
  if (grads) conv1dWeightGradients(g, `${name}.c_proj`, saved.y, dOut, C, C, grads);
  const dY = g.op('MatMul', [dOut, w.transposed(`${name}.c_proj.weight`)], {}, `${name}.d_y`); // (B, S, C)
  const dYh = g.op('Transpose', [g.op('Reshape', [dY, g.int64s([0, 0, H, D])])], { perm: [0, 2, 1, 3] },
    `${name}.d_yh`); // (B, H, S, D)
  const swapLast = (t: string) => g.op('Transpose', [t], { perm: [0, 1, 3, 2] }); // (..., S, X) -> (..., X, S)
  const dProbs = n.toFloat(g.op('MatMul', [dYh, swapLast(saved.vh)], {}, `${name}.d_probs`)); // (B, H, S, S) float32
  const dVh = g.op('MatMul', [swapLast(saved.probsAct), dYh], {}, `${name}.d_vh`); // (B, H, S, D)
  // softmax: dx = y * (dy - sum_j(dy_j * y_j)); the causal bias is a constant, so d scores_masked = d scores.
  // sum_j dProbs_ij probs_ij = sum_j (dYh_i · vh_j) probs_ij = dYh_i · yh_i: a sum over D instead of over the S keys,
  // cheaper, and independent of how many padded keys a batch adds, so a job's gradient does not depend on its batch.
  const rowDot = g.op('ReduceSum', [g.op('Mul', [n.toFloat(dYh), n.toFloat(saved.yh)]), g.int64s([-1])],
    { keepdims: 1 }); // (B, H, S, 1) float32
  let dScores = g.op('Mul', [saved.probs, g.op('Sub', [dProbs, rowDot])], {}, `${name}.d_scores`); // (B, H, S, S)
  if (scaleAttnWeights) dScores = g.op('Mul', [dScores, g.scalar(1 / Math.sqrt(D))]);
  dScores = n.toActivation(dScores); // (B, H, S, S)
  const dQh = g.op('MatMul', [dScores, saved.kh], {}, `${name}.d_qh`); // (B, H, S, D)
  const dKh = g.op('MatMul', [swapLast(dScores), saved.qh], {}, `${name}.d_kh`); // (B, H, S, D)
  const dQkv = g.op('Concat', [mergeHeads(g, dQh, C, `${name}.d_q`), mergeHeads(g, dKh, C, `${name}.d_k`),
    mergeHeads(g, dVh, C, `${name}.d_v`)], { axis: 2 }, `${name}.d_qkv`); // (B, S, 3C)
  if (grads) conv1dWeightGradients(g, `${name}.c_attn`, saved.x, dQkv, C, 3 * C, grads);
  return g.op('MatMul', [dQkv, w.transposed(`${name}.c_attn.weight`)], {}, `${name}.d_in`); // (B, S, C)
}

// (B, H, S, D) -> (B, S, C)
function mergeHeads(g: OnnxGraphBuilder, t: string, C: number, label: string): string {
  const bshd = g.op('Transpose', [t], { perm: [0, 2, 1, 3] }); // (B, S, H, D)
  return g.op('Reshape', [bshd, g.int64s([0, 0, C])], {}, label); // (B, S, C)
}

// ---------------------------------------------------------------------------------------------------------------
// MLP with gelu_new: gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))

function mlpForward(g: OnnxGraphBuilder, n: Numerics, w: Weights, name: string, x: string) {
  const fc = g.op('Add', [g.op('MatMul', [x, w.get(`${name}.c_fc.weight`)]), w.get(`${name}.c_fc.bias`)], {},
    `${name}.c_fc`); // (B, S, F)
  const cube = g.op('Mul', [g.op('Mul', [fc, fc]), fc]); // (B, S, F)
  const inner = g.op('Mul', [g.op('Add', [fc, g.op('Mul', [cube, n.scalar(geluCubic)])]), n.scalar(geluTanhScale)]);
  const tanh = g.op('Tanh', [inner], {}, `${name}.tanh`); // (B, S, F)
  const gelu = g.op('Mul', [g.op('Mul', [fc, n.scalar(0.5)]), g.op('Add', [tanh, n.scalar(1)])], {}, `${name}.gelu`); // (B, S, F)
  const out = g.op('Add', [g.op('MatMul', [gelu, w.get(`${name}.c_proj.weight`)]), w.get(`${name}.c_proj.bias`)], {},
    `${name}.c_proj`); // (B, S, C)
  return { out, saved: { x, fc, tanh, gelu } satisfies MlpSaved };
}

// d gelu / dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
function mlpBackward(g: OnnxGraphBuilder, n: Numerics, config: Gpt2Config, w: Weights, name: string, saved: MlpSaved,
  dOut: string, grads?: WeightGradientSink): string {
  const { x, fc, tanh, gelu } = saved;
  const { nEmbd: C, nInner: F } = config;
  if (grads) conv1dWeightGradients(g, `${name}.c_proj`, gelu, dOut, F, C, grads);
  const dGelu = g.op('MatMul', [dOut, w.transposed(`${name}.c_proj.weight`)], {}, `${name}.d_gelu`); // (B, S, F)
  const halfOnePlusT = g.op('Mul', [g.op('Add', [tanh, n.scalar(1)]), n.scalar(0.5)]);
  const sech2 = g.op('Sub', [n.scalar(1), g.op('Mul', [tanh, tanh])]);
  const dInner = g.op('Mul', [g.op('Add', [g.op('Mul', [g.op('Mul', [fc, fc]), n.scalar(3 * geluCubic)]), n.scalar(1)]),
    n.scalar(geluTanhScale)]);
  const slope = g.op('Add', [halfOnePlusT, g.op('Mul', [g.op('Mul', [g.op('Mul', [fc, n.scalar(0.5)]), sech2]), dInner])],
    {}, `${name}.gelu_slope`); // (B, S, F)
  const dFc = g.op('Mul', [dGelu, slope], {}, `${name}.d_fc`); // (B, S, F)
  if (grads) conv1dWeightGradients(g, `${name}.c_fc`, x, dFc, C, F, grads);
  return g.op('MatMul', [dFc, w.transposed(`${name}.c_fc.weight`)], {}, `${name}.d_in`); // (B, S, C)
}

// ---------------------------------------------------------------------------------------------------------------
// Cross-entropy over the vocabulary, masked: nll = -log_softmax(logits)[target] * mask.
// Softmax and LogSoftmax work row by row (one row = one position's V logits). Elementwise Exp and Log over the
// flattened (B, T, V) tensor would not: their vectorized loops treat the tensor's tail differently from its body,
// so a job's last logits would round differently depending on how many rows its batch has.

interface LossSaved {
  nll: string; // (B, T)
  argmax: string; // (B, T) int64
  logits: string; // (B, T, V)
}

function crossEntropyForward(g: OnnxGraphBuilder, logits: string, targetIds: string, targetMask: string): LossSaved {
  const logprobs = g.op('LogSoftmax', [logits], { axis: -1 }, 'loss.logprobs'); // (B, T, V)
  const targetColumn = g.op('Unsqueeze', [targetIds, g.int64s([2])], {}, 'loss.target_column'); // (B, T, 1)
  const targetLogprob = g.op('GatherElements', [logprobs, targetColumn], { axis: 2 }, 'loss.target_logprob'); // (B, T, 1)
  const perToken = g.op('Neg', [g.op('Squeeze', [targetLogprob, g.int64s([2])])], {}, 'loss.nll_unmasked'); // (B, T)
  const nll = g.op('Mul', [perToken, targetMask], {}, 'loss.nll'); // (B, T)
  const argmax = g.op('ArgMax', [logits], { axis: 2, keepdims: 0 }, 'loss.argmax'); // (B, T) int64
  return { nll, argmax, logits };
}

// d nll / d logits = (softmax - onehot(target)) * mask
function crossEntropyBackward(g: OnnxGraphBuilder, loss: LossSaved, targetIds: string, targetMask: string,
  V: number): string {
  const probs = g.op('Softmax', [loss.logits], { axis: -1 }, 'loss.probs'); // (B, T, V)
  const vocabIds = g.int64s(Array.from({ length: V }, (_, i) => i), [V]); // (V)
  const targetColumn = g.op('Unsqueeze', [targetIds, g.int64s([2])]); // (B, T, 1)
  const oneHot = g.op('Cast', [g.op('Equal', [vocabIds, targetColumn])], { to: ElemType.float }, 'loss.onehot'); // (B, T, V)
  const maskColumn = g.op('Unsqueeze', [targetMask, g.int64s([2])]); // (B, T, 1)
  return g.op('Mul', [g.op('Sub', [probs, oneHot]), maskColumn], {}, 'loss.d_logits'); // (B, T, V)
}

// ---------------------------------------------------------------------------------------------------------------
// Repetition penalty, as Hugging Face's RepetitionPenaltyLogitsProcessor: the logit G of a token already in the text
// becomes f(G) = G / theta if G >= 0, G * theta if G < 0, once per distinct token. The host lists, for each of the
// T positions, the K earlier tokens (penalty_ids) and masks all but the first occurrence of each value, so a
// repeated token is penalized once; GatherElements picks their logits and ScatterElements adds f(G) - G back.
// Masked entries add exactly 0, and at theta = 1 every entry does (G / 1 and G * 1 are exact), so the penalty off
// leaves the logits and their gradient bit for bit as they were. Only (B, T, K) values move: never a (B, T, V) mask.
// onnxruntime's WebGPU provider has kernels for both ops (core/providers/webgpu/tensor/gather_elements.cc, float
// data, opset 13+; scatter_elements.cc, opset 16-17 and 18, reduction 'add' on float32 by an atomic
// compare-and-swap loop whose order of adds is unspecified); the order cannot matter here, as each (b, t) row has
// at most one nonzero update per vocabulary entry.

interface RepetitionPenaltySaved {
  ids: string; // (B, T, K) int64
  mask: string; // (B, T, K) float
  negative: string; // (B, T, K) bool: G < 0
  theta: string; // (B, 1, 1)
}

// l' = l + scatter_add(mask * (f(G) - G)), G = gather(l)
function repetitionPenaltyForward(g: OnnxGraphBuilder, logits: string, ids: string, mask: string, theta: string) {
  const thetaColumn = g.op('Unsqueeze', [theta, g.int64s([1, 2])], {}, 'penalty.theta'); // (B, 1, 1)
  const picked = g.op('GatherElements', [logits, ids], { axis: 2 }, 'penalty.picked'); // (B, T, K)
  const negative = g.op('Less', [picked, g.scalar(0)], {}, 'penalty.negative'); // (B, T, K) bool
  const penalized = g.op('Where', [negative, g.op('Mul', [picked, thetaColumn]), g.op('Div', [picked, thetaColumn])],
    {}, 'penalty.penalized'); // (B, T, K)
  const delta = g.op('Mul', [g.op('Sub', [penalized, picked]), mask], {}, 'penalty.delta'); // (B, T, K)
  const out = g.op('ScatterElements', [logits, ids, delta], { axis: 2, reduction: 'add' },
    'penalty.logits'); // (B, T, V)
  return { out, saved: { ids, mask, negative, theta: thetaColumn } satisfies RepetitionPenaltySaved };
}

// dL/dl = g' + scatter_add(mask * (f'(G) - 1) * gather(g')), g' = dL/dl'; f'(G) = theta if G < 0, 1 / theta otherwise
function repetitionPenaltyBackward(g: OnnxGraphBuilder, saved: RepetitionPenaltySaved, dOut: string): string {
  const slope = g.op('Where', [saved.negative, saved.theta, g.op('Reciprocal', [saved.theta])], {},
    'penalty.slope'); // (B, T, K)
  const factor = g.op('Mul', [g.op('Sub', [slope, g.scalar(1)]), saved.mask], {}, 'penalty.d_factor'); // (B, T, K)
  const picked = g.op('GatherElements', [dOut, saved.ids], { axis: 2 }, 'penalty.d_picked'); // (B, T, K)
  const delta = g.op('Mul', [picked, factor], {}, 'penalty.d_delta'); // (B, T, K)
  return g.op('ScatterElements', [dOut, saved.ids, delta], { axis: 2, reduction: 'add' },
    'penalty.d_logits'); // (B, T, V)
}
