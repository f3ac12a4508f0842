// Count the floating-point operations of one gradient-graph run, analytically from the config, for GFLOP/s figures.
//
// B = batch, P = prompt vectors, T = target tokens, S = P + T - 1 sequence positions, L = layers,
// C = channels (768 for gpt2), H = heads, D = C / H, F = MLP width (4C), V = vocab (50257)
//
// Only MatMuls are counted, as the peak MatMul that the figures are compared with counts only its MatMul: a
// (m, k) x (k, n) product costs 2·m·k·n (a multiply and an add per term). LayerNorm, softmax, GELU and the loss
// are elementwise or reductions, O(B·S·C) or O(B·T·V), and are left out. Every MatMul of gpt2-graph.ts:
//
//   per layer, forward    2·B·S·(C·3C + C·C + 2·C·F)   c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj
//                         2·2·B·H·S·S·D                q·kᵀ and probs·v
//   per layer, backward   2·B·S·(C·3C + C·C + 2·C·F)   the same four products against Wᵀ: d input only, since the
//                                                      weights are frozen and have no gradient MatMuls
//                         4·2·B·H·S·S·D                d probs, d v, d q, d k
//   head, forward         2·B·T·S·C + 2·B·T·C·V        target_select · h (picks the T target positions), logits
//   head, backward        2·B·T·V·C + 2·B·S·T·C        d h_target = d logits · wte, target_selectᵀ · d h_target
//
// so a run costs L·(4·B·S·(4C² + 2CF) + 12·B·H·S²·D) + 4·B·T·C·V + 4·B·S·T·C; at B = 64, T = 32 on GPT-2 124M
// that is about 1.0 TFLOP, a third of it in the head (V = 50257 is large).
import type { Gpt2Config } from '../model/checkpoint.js';

/** Name the config fields the count needs. */
export type FlopConfig = Pick<Gpt2Config, 'nLayer' | 'nEmbd' | 'nHead' | 'nInner' | 'vocabSize'>;

/** Describe the shape of one graph run. */
export interface RunShape {
  batch: number; // B
  promptVectors: number; // P
  targetLength: number; // T
}

/** Describe one kind of MatMul in the graph: how many of it one run makes, and what each costs. */
export interface MatMulTerm {
  name: string;
  pass: 'forward' | 'backward';
  count: number; // MatMul nodes of this kind in the graph (L for a per-layer product)
  flopsEach: number; // 2·m·k·n, batch dimensions included
}

/** Hold the FLOP count of one gradient-graph run. */
export interface GradientRunFlops {
  forward: number;
  backward: number;
  total: number;
  matmulCount: number; // MatMul nodes counted, to check against the built graph
  terms: MatMulTerm[];
}

/** Count the MatMul FLOPs of one forward + backward run of the gradient graph (see the formula above). */
export function countGradientRunFlops(config: FlopConfig, shape: RunShape): GradientRunFlops {
  const { nLayer: L, nEmbd: C, nHead: H, nInner: F, vocabSize: V } = config;
  const { batch: B, promptVectors: P, targetLength: T } = shape;
  const S = P + T - 1;
  const D = C / H;
  const matmul = (m: number, k: number, n: number): number => 2 * m * k * n;
  const terms: MatMulTerm[] = [];
  const add = (name: string, pass: MatMulTerm['pass'], count: number, flopsEach: number): void => {
    terms.push({ name, pass, count, flopsEach });
  };

  add('attn.c_attn', 'forward', L, matmul(B * S, C, 3 * C));
  add('attn.scores', 'forward', L, B * H * matmul(S, D, S));
  add('attn.yh', 'forward', L, B * H * matmul(S, S, D));
  add('attn.c_proj', 'forward', L, matmul(B * S, C, C));
  add('mlp.c_fc', 'forward', L, matmul(B * S, C, F));
  add('mlp.c_proj', 'forward', L, matmul(B * S, F, C));
  add('head.h_target', 'forward', 1, B * matmul(T, S, C));
  add('head.logits', 'forward', 1, matmul(B * T, C, V));

  add('head.d_h_target', 'backward', 1, matmul(B * T, V, C));
  add('ln_f.d_out', 'backward', 1, B * matmul(S, T, C));
  add('mlp.d_gelu', 'backward', L, matmul(B * S, C, F));
  add('mlp.d_in', 'backward', L, matmul(B * S, F, C));
  add('attn.d_y', 'backward', L, matmul(B * S, C, C));
  add('attn.d_probs', 'backward', L, B * H * matmul(S, D, S));
  add('attn.d_vh', 'backward', L, B * H * matmul(S, S, D));
  add('attn.d_qh', 'backward', L, B * H * matmul(S, S, D));
  add('attn.d_kh', 'backward', L, B * H * matmul(S, S, D));
  add('attn.d_in', 'backward', L, matmul(B * S, 3 * C, C));

  const sum = (pass?: MatMulTerm['pass']): number => terms
    .filter((t) => pass === undefined || t.pass === pass)
    .reduce((acc, t) => acc + t.count * t.flopsEach, 0);
  return {
    forward: sum('forward'),
    backward: sum('backward'),
    total: sum(),
    matmulCount: terms.reduce((acc, t) => acc + t.count, 0),
    terms,
  };
}
