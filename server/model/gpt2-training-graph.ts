// GPT-2's training graph: the forward pass over token sequences, the next-token loss at every position, and the
// backward pass to every weight. The blocks are gpt2-graph.ts's own pieces, given a sink for weight gradients;
// the weights are graph inputs (the trainer updates them between runs), not initializers.
//
// B = sequences, S = positions per sequence, C = channels, V = vocab (50257)
//
// Two gradients are finished on the host, where they are cheap and the graph would need a (V, C) scatter:
// the embeddings' rows picked by the input ids (from grad_h0) and the position embeddings (grad_h0 summed over B).
import type { Gpt2Config } from './checkpoint.js';
import { expectedTensorShapes } from './checkpoint.js';
import { createWeights, transformerBackward, transformerForward } from './gpt2-graph.js';
import { ElemType, OnnxGraphBuilder } from './onnx-builder.js';

/** Names of the training graph's inputs and outputs: the contract with the trainer. */
export const trainingGraphIo = {
  inputs: {
    inputIds: 'input_ids', // (B, S) int64: tokens read
    targetIds: 'target_ids', // (B, S) int64: the next token at each position
    positionIds: 'position_ids', // (S) int64: 0 .. S-1
    causalBias: 'causal_bias', // (S, S) float: 0 on and below the diagonal, -1e9 above
    lossScale: 'loss_scale', // () float: the loss's weight per token, 1 / (B S) for the mean
  },
  outputs: {
    nll: 'nll', // (B, S) float: per-token NLL (natural log)
    gradH0: 'grad_h0', // (B, S, C) d loss / d (wte[input] + wpe[position])
    gradHeadT: 'grad_head_t', // (C, V) d loss / d wte through the tied head, transposed
  },
} as const;

/** Name the graph output holding the gradient to a weight that the graph finishes itself. */
export function weightGradientOutput(name: string): string {
  return `grad.${name}`;
}

/** The weights the training graph takes as inputs (every tensor of a tied-head GPT-2). */
export function trainableWeights(config: Gpt2Config): Map<string, number[]> {
  return expectedTensorShapes(config);
}

/** Build the training graph for a tied-head GPT-2 of the given shape. */
export function buildTrainingGraph(config: Gpt2Config): OnnxGraphBuilder {
  const g = new OnnxGraphBuilder('gpt2.training');
  const { nEmbd: C, vocabSize: V } = config;
  const io = trainingGraphIo.inputs;
  const shapes = trainableWeights(config);
  const w = createWeights(g, (name) => {
    const shape = shapes.get(name);
    if (!shape) throw new Error(`training graph: no weight ${name} in a GPT-2 of this shape`);
    return g.input(name, ElemType.float, shape);
  }, 'wte.weight');
  const inputIds = g.input(io.inputIds, ElemType.int64, ['B', 'S']);
  const targetIds = g.input(io.targetIds, ElemType.int64, ['B', 'S']);
  const positionIds = g.input(io.positionIds, ElemType.int64, ['S']);
  const causalBias = g.input(io.causalBias, ElemType.float, ['S', 'S']);
  const lossScale = g.input(io.lossScale, ElemType.float, []);

  // ---- forward ----
  const tokens = g.op('Gather', [w.get('wte.weight'), inputIds], { axis: 0 }, 'wte.lookup'); // (B, S, C)
  const positions = g.op('Gather', [w.get('wpe.weight'), positionIds], { axis: 0 }, 'wpe.lookup'); // (S, C)
  const h0 = g.op('Add', [tokens, positions], {}, 'h0'); // (B, S, C)
  const forward = transformerForward(g, config, w, h0, causalBias);
  const logits = g.op('MatMul', [forward.hf, w.headT()], {}, 'head.logits'); // (B, S, V)
  const logprobs = g.op('LogSoftmax', [logits], { axis: -1 }, 'loss.logprobs'); // (B, S, V)
  const targetColumn = g.op('Unsqueeze', [targetIds, g.int64s([2])], {}, 'loss.target_column'); // (B, S, 1)
  const targetLogprob = g.op('GatherElements', [logprobs, targetColumn], { axis: 2 }, 'loss.target_logprob'); // (B, S, 1)
  const nll = g.op('Neg', [g.op('Squeeze', [targetLogprob, g.int64s([2])])], {}, 'loss.nll'); // (B, S)

  // ---- backward, in the reverse order of the forward pass ----
  // d loss / d logits = (softmax - onehot(target)) * scale, written as a scatter of (p_target - 1) * scale into the
  // scaled probabilities, so no (B, S, V) one-hot is ever made.
  const scaledProbs = g.op('Mul', [g.op('Exp', [logprobs]), lossScale], {}, 'loss.scaled_probs'); // (B, S, V)
  const targetUpdate = g.op('Sub', [g.op('GatherElements', [scaledProbs, targetColumn], { axis: 2 }), lossScale],
    {}, 'loss.target_update'); // (B, S, 1)
  const dLogits = g.op('ScatterElements', [scaledProbs, targetColumn, targetUpdate], { axis: 2 }, 'loss.d_logits'); // (B, S, V)
  // d wte (head) = sum over (B, S) of d logits^T hf, computed transposed, (C, N) (N, V): onnxruntime's MatMul
  // with the small operand transposed runs about twice as fast here as a Gemm that transposes the (N, V) one.
  const hfColumns = g.op('Transpose', [g.op('Reshape', [forward.hf, g.int64s([-1, C])])], { perm: [1, 0] },
    'head.hf_columns'); // (C, B*S)
  const gradHeadT = g.op('MatMul', [hfColumns, g.op('Reshape', [dLogits, g.int64s([-1, V])])], {},
    'head.d_weight_t'); // (C, V)
  const dHf = g.op('MatMul', [dLogits, w.head()], {}, 'ln_f.d_out'); // (B, S, C)
  const outputs: [string, string, number[]][] = [];
  const dH0 = transformerBackward(g, config, w, forward, dHf, {
    add: (name, gradient) => outputs.push([gradient, weightGradientOutput(name), shapes.get(name)!]),
  }); // (B, S, C)

  const out = trainingGraphIo.outputs;
  g.output(nll, out.nll, ElemType.float, ['B', 'S']);
  g.output(dH0, out.gradH0, ElemType.float, ['B', 'S', C]);
  g.output(gradHeadT, out.gradHeadT, ElemType.float, [C, V]);
  for (const [value, name, shape] of outputs) g.output(value, name, ElemType.float, shape);
  return g;
}
