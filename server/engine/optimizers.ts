// Optimizer steps for the soft prompt: RMSProp, Adam and SGD, each a small pure function over Float32Arrays that
// updates the parameter in place, plus `createOptimizer`, which binds one to its state for a job.
//
// Float32 fidelity. PyTorch keeps parameters, gradients and moments in float32 and rounds after every elementwise
// op; Python-float hyperparameters (alpha, betas, eps, -lr, …) are cast to float32 when they meet a float32 tensor,
// while Adam's bias corrections are computed in float64 on the host and cast only at the point of use. The steps
// here do the same: every op is computed in float64 and rounded with `Math.fround` (exact for +, −, ×, ÷ and √:
// float64 has more than 2·24+2 significand bits, so the double rounding is innocuous), in the order of the
// per-element lambdas of PyTorch's CPU kernels (`self + value * t1 * t2` for addcmul, `self + value * t1 / t2` for
// addcdiv, `self + alpha * other` for add, `self + w * (end - self)` for lerp with w < 0.5) as called by the
// single-tensor (for-loop) implementations, PyTorch's default for CPU tensors. Known differences, each at most
// 1 ulp per op, well inside the tests' 1e-6 relative bound over a few steps (measured against float64: 1e-7..1e-6):
// - a product rounded before the sum, where PyTorch's compiled kernel fuses it: the vectorized CPU `add(…, alpha)`
//   and `lerp` use FMA, as do CUDA kernels (nvcc contracts by default) and possibly the compiler's scalar path;
// - CUDA divides by a host scalar as a multiply by its reciprocal (Adam's `/ bias_correction2_sqrt`), and CUDA
//   tensors default to the foreach implementation, which orders a few ops differently;
// - `beta ** step` comes from V8's libm port rather than the C library (an ulp in float64 at most, gone after the
//   cast to float32 in all but rare ties).
// Not compared with PyTorch bit for bit here (no PyTorch on the build machine). Across hundreds of iterations such
// ulps make trajectories drift apart (the loss surface is chaotic), which is why the tests compare short,
// hand-checkable runs and checkpoint/resume bit-identity, not long runs.

import { checkNonNegative, mergeOptions } from '../util/options.js';
import { integerProblem } from '../util/numbers.js';

/** The optimizers by what the job settings call them (the CLI's choices come from here). */
export const optimizerKinds = ['rmsprop', 'adam', 'sgd'] as const;
export type OptimizerKind = (typeof optimizerKinds)[number];

const f = Math.fround;

/**
 * Interpolate like `torch.lerp(self, end, weight)` on the CPU scalar path: small weights step from `self`, large
 * ones from `end`, so that both ends are exact.
 */
function lerp32(self: number, end: number, weight32: number): number {
  return Math.abs(weight32) < 0.5
    ? f(self + f(weight32 * f(end - self)))
    : f(end - f(f(end - self) * f(1 - weight32)));
}

function checkLengths(op: string, size: number, param: Float32Array, grad: Float32Array): void {
  if (param.length !== size) {
    throw new RangeError(`${op}: param has ${param.length} elements; the optimizer state holds ${size}`);
  }
  if (grad.length !== size) {
    throw new RangeError(`${op}: grad has ${grad.length} elements; the optimizer state holds ${size}`);
  }
}

function checkLr(op: string, lr: number): void {
  if (!(lr >= 0) || !Number.isFinite(lr)) {
    throw new RangeError(`${op}: lr is ${lr}; it must be a finite number >= 0`);
  }
}


function checkUnitInterval(op: string, name: string, value: number): void {
  if (!(value >= 0 && value < 1)) {
    throw new RangeError(`${op}: ${name} is ${value}; it must lie in [0, 1)`);
  }
}


// ---------------------------------------------------------------------------------------------------------------
// RMSProp — torch.optim.RMSprop, `_single_tensor_rmsprop`

/** Configure RMSProp; names and meanings follow torch.optim.RMSprop. */
export interface RmspropOptions {
  /** Base learning rate, the one a schedule starts from. */
  readonly lr: number;
  /** Smoothing constant of the squared-gradient average. */
  readonly alpha: number;
  /** Added to the denominator, after the square root. */
  readonly eps: number;
  /** L2 penalty folded into the gradient (`grad + weight_decay · param`). */
  readonly weightDecay: number;
  /** Momentum factor; 0 turns the momentum buffer off. */
  readonly momentum: number;
  /** Normalize by the estimated variance (`E[g²] − E[g]²`) instead of the raw second moment. */
  readonly centered: boolean;
}

/**
 * RMSProp defaults: PyTorch's, except lr 0.1 (PyTorch: 0.01), the value the original experiments found fastest
 * for soft prompts and the project default (docs/design.md, "Optimizers and schedules").
 */
export const rmspropDefaults: Readonly<RmspropOptions> = Object.freeze({
  lr: 0.1,
  alpha: 0.99,
  eps: 1e-8,
  weightDecay: 0,
  momentum: 0,
  centered: false,
});

/** Merge partial RMSProp options over the defaults and check their ranges as torch.optim.RMSprop does. */
export function makeRmspropOptions(partial: Partial<RmspropOptions> = {}): RmspropOptions {
  const options = mergeOptions('RMSProp', rmspropDefaults, partial);
  checkNonNegative('RMSProp', 'lr', options.lr);
  checkNonNegative('RMSProp', 'alpha', options.alpha);
  checkNonNegative('RMSProp', 'eps', options.eps);
  checkNonNegative('RMSProp', 'weightDecay', options.weightDecay);
  checkNonNegative('RMSProp', 'momentum', options.momentum);
  return options;
}

/** Hold RMSProp's per-element state, as torch's `state[p]`. */
export interface RmspropState {
  /** Steps taken (`state["step"]`). */
  step: number;
  /** `square_avg`: running average of g². */
  readonly squareAvg: Float32Array;
  /** `grad_avg`: running average of g, only when centered. */
  readonly gradAvg: Float32Array | null;
  /** `momentum_buffer`, only when momentum > 0. */
  readonly momentumBuffer: Float32Array | null;
}

/** Allocate zeroed RMSProp state for `size` parameters, with the buffers the options call for. */
export function createRmspropState(size: number, options: RmspropOptions): RmspropState {
  return {
    step: 0,
    squareAvg: new Float32Array(size),
    gradAvg: options.centered ? new Float32Array(size) : null,
    momentumBuffer: options.momentum > 0 ? new Float32Array(size) : null,
  };
}

/**
 * Take one RMSProp step in place, matching torch.optim.RMSprop (`_single_tensor_rmsprop`, maximize=False):
 *
 *   g ← g + λ·p                                   (weight decay)
 *   v ← α·v + (1−α)·g²                            square_avg.mul_(alpha).addcmul_(g, g, value=1-alpha)
 *   centered: ḡ ← lerp(ḡ, g, 1−α);  d ← √(v − ḡ²) + ε,   else d ← √v + ε
 *   momentum: b ← μ·b + g/d;  p ← p − lr·b,          else p ← p − lr·g/d
 */
export function rmspropStep(
  param: Float32Array,
  grad: Float32Array,
  state: RmspropState,
  lr: number,
  options: RmspropOptions,
): void {
  const size = state.squareAvg.length;
  checkLengths('RMSProp step', size, param, grad);
  checkLr('RMSProp step', lr);
  const { squareAvg, gradAvg, momentumBuffer } = state;
  if (options.centered && gradAvg === null) throw new Error('RMSProp step: centered, but the state has no gradAvg');
  if (options.momentum > 0 && momentumBuffer === null) {
    throw new Error('RMSProp step: momentum > 0, but the state has no momentumBuffer');
  }
  // Python floats become float32 scalars when they meet the float32 tensors.
  const alpha = f(options.alpha);
  const oneMinusAlpha = f(1 - options.alpha);
  const eps = f(options.eps);
  const weightDecay = f(options.weightDecay);
  const momentum = f(options.momentum);
  const negLr = f(-lr);
  state.step += 1;
  for (let i = 0; i < size; i++) {
    const p = param[i];
    // grad = grad.add(param, alpha=weight_decay)
    const g = options.weightDecay !== 0 ? f(grad[i] + f(weightDecay * p)) : grad[i];
    // square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha): second moment, no bias correction in RMSProp
    const v = f(f(alpha * squareAvg[i]) + f(f(oneMinusAlpha * g) * g));
    squareAvg[i] = v;
    let avg: number;
    if (gradAvg !== null && options.centered) {
      // grad_avg.lerp_(grad, 1 - alpha): first moment, for the variance estimate
      const m = lerp32(gradAvg[i], g, oneMinusAlpha);
      gradAvg[i] = m;
      // avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_(); NaN if rounding makes it negative, as in torch
      avg = f(Math.sqrt(f(v + f(-m * m))));
    } else {
      // avg = square_avg.sqrt()
      avg = f(Math.sqrt(v));
    }
    // avg = avg.add_(eps)
    avg = f(avg + eps);
    if (momentumBuffer !== null && options.momentum > 0) {
      // buf.mul_(momentum).addcdiv_(grad, avg); param.add_(buf, alpha=-lr)
      const b = f(f(momentum * momentumBuffer[i]) + f(g / avg));
      momentumBuffer[i] = b;
      param[i] = f(p + f(negLr * b));
    } else {
      // param.addcdiv_(grad, avg, value=-lr)
      param[i] = f(p + f(f(negLr * g) / avg));
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Adam — torch.optim.Adam, `_single_tensor_adam`

/** Configure Adam; names and meanings follow torch.optim.Adam. */
export interface AdamOptions {
  /** Base learning rate, the one a schedule starts from. */
  readonly lr: number;
  /** Decay rates of the first and second moment averages (`betas`). */
  readonly beta1: number;
  readonly beta2: number;
  /** Added to the bias-corrected denominator, after the square root. */
  readonly eps: number;
  /** L2 penalty folded into the gradient (classic Adam, not AdamW's decoupled decay). */
  readonly weightDecay: number;
  /** Use the running maximum of the second moment (AMSGrad). */
  readonly amsgrad: boolean;
}

/** Adam defaults, equal to PyTorch's. */
export const adamDefaults: Readonly<AdamOptions> = Object.freeze({
  lr: 1e-3,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0,
  amsgrad: false,
});

/** Merge partial Adam options over the defaults and check their ranges as torch.optim.Adam does. */
export function makeAdamOptions(partial: Partial<AdamOptions> = {}): AdamOptions {
  const options = mergeOptions('Adam', adamDefaults, partial);
  checkNonNegative('Adam', 'lr', options.lr);
  checkUnitInterval('Adam', 'beta1', options.beta1);
  checkUnitInterval('Adam', 'beta2', options.beta2);
  checkNonNegative('Adam', 'eps', options.eps);
  checkNonNegative('Adam', 'weightDecay', options.weightDecay);
  return options;
}

/** Hold Adam's per-element state, as torch's `state[p]`. */
export interface AdamState {
  /** Steps taken (`state["step"]`), the exponent of the bias corrections. */
  step: number;
  /** `exp_avg`: first moment m. */
  readonly expAvg: Float32Array;
  /** `exp_avg_sq`: second moment v. */
  readonly expAvgSq: Float32Array;
  /** `max_exp_avg_sq`: running max of v, only with amsgrad. */
  readonly maxExpAvgSq: Float32Array | null;
}

/** Allocate zeroed Adam state for `size` parameters, with the buffers the options call for. */
export function createAdamState(size: number, options: AdamOptions): AdamState {
  return {
    step: 0,
    expAvg: new Float32Array(size),
    expAvgSq: new Float32Array(size),
    maxExpAvgSq: options.amsgrad ? new Float32Array(size) : null,
  };
}

/**
 * Take one Adam step in place, matching torch.optim.Adam (`_single_tensor_adam`, maximize=False, no decoupled
 * weight decay):
 *
 *   g ← g + λ·p                                   (weight decay)
 *   m ← lerp(m, g, 1−β₁)                          exp_avg.lerp_(grad, 1 - beta1)
 *   v ← β₂·v + (1−β₂)·g²                          exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
 *   bc₁ = 1 − β₁ᵗ,  bc₂ = 1 − β₂ᵗ                 float64, on the host
 *   amsgrad: v̂ ← max(v̂, v), else v̂ = v
 *   p ← p − (lr/bc₁) · m / (√v̂ / √bc₂ + ε)        param.addcdiv_(exp_avg, denom, value=-step_size)
 */
export function adamStep(
  param: Float32Array,
  grad: Float32Array,
  state: AdamState,
  lr: number,
  options: AdamOptions,
): void {
  const size = state.expAvg.length;
  checkLengths('Adam step', size, param, grad);
  checkLr('Adam step', lr);
  const { expAvg, expAvgSq, maxExpAvgSq } = state;
  if (options.amsgrad && maxExpAvgSq === null) throw new Error('Adam step: amsgrad, but the state has no maxExpAvgSq');
  const oneMinusBeta1 = f(1 - options.beta1);
  const beta2 = f(options.beta2);
  const oneMinusBeta2 = f(1 - options.beta2);
  const eps = f(options.eps);
  const weightDecay = f(options.weightDecay);
  state.step += 1;
  const t = state.step;
  // bias_correction1 = 1 - beta1 ** step; bias_correction2 = 1 - beta2 ** step (Python floats, float64)
  const biasCorrection1 = 1 - options.beta1 ** t;
  const biasCorrection2 = 1 - options.beta2 ** t;
  // step_size = lr / bias_correction1, cast to float32 as addcdiv's value
  const negStepSize = f(-(lr / biasCorrection1));
  // bias_correction2_sqrt = sqrt(bias_correction2), cast to float32 as the divisor scalar
  const biasCorrection2Sqrt = f(Math.sqrt(biasCorrection2));
  for (let i = 0; i < size; i++) {
    const p = param[i];
    // grad = grad.add(param, alpha=weight_decay)
    const g = options.weightDecay !== 0 ? f(grad[i] + f(weightDecay * p)) : grad[i];
    // exp_avg.lerp_(grad, 1 - beta1): first moment
    const m = lerp32(expAvg[i], g, oneMinusBeta1);
    expAvg[i] = m;
    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2): second moment
    const v = f(f(beta2 * expAvgSq[i]) + f(f(oneMinusBeta2 * g) * g));
    expAvgSq[i] = v;
    let vHat = v;
    if (maxExpAvgSq !== null && options.amsgrad) {
      // torch.maximum(max_exp_avg_sqs[i], exp_avg_sq, out=max_exp_avg_sqs[i]); NaN propagates as in torch
      vHat = Math.max(maxExpAvgSq[i], v);
      maxExpAvgSq[i] = vHat;
    }
    // denom = (v̂.sqrt() / bias_correction2_sqrt).add_(eps): second-moment bias correction inside the root
    const denom = f(f(f(Math.sqrt(vHat)) / biasCorrection2Sqrt) + eps);
    // param.addcdiv_(exp_avg, denom, value=-step_size): first-moment bias correction in the step size
    param[i] = f(p + f(f(negStepSize * m) / denom));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// SGD — torch.optim.SGD, `_single_tensor_sgd`

/** Configure SGD; names and meanings follow torch.optim.SGD. */
export interface SgdOptions {
  /** Base learning rate, the one a schedule starts from. */
  readonly lr: number;
  /** Momentum factor; 0 is plain SGD (PyTorch's default; set e.g. 0.9 for SGD with momentum). */
  readonly momentum: number;
  /** Dampening of the gradient's share in the momentum buffer (not applied on the first step). */
  readonly dampening: number;
  /** L2 penalty folded into the gradient. */
  readonly weightDecay: number;
  /** Nesterov momentum; needs momentum > 0 and dampening 0. */
  readonly nesterov: boolean;
}

/** SGD defaults, equal to PyTorch's (lr 1e-3 as in torch ≥ 2.2, momentum 0). */
export const sgdDefaults: Readonly<SgdOptions> = Object.freeze({
  lr: 1e-3,
  momentum: 0,
  dampening: 0,
  weightDecay: 0,
  nesterov: false,
});

/** Merge partial SGD options over the defaults and check them as torch.optim.SGD does. */
export function makeSgdOptions(partial: Partial<SgdOptions> = {}): SgdOptions {
  const options = mergeOptions('SGD', sgdDefaults, partial);
  checkNonNegative('SGD', 'lr', options.lr);
  checkNonNegative('SGD', 'momentum', options.momentum);
  checkNonNegative('SGD', 'weightDecay', options.weightDecay);
  if (!Number.isFinite(options.dampening)) {
    throw new RangeError(`SGD: dampening is ${options.dampening}; it must be a finite number`);
  }
  if (options.nesterov && (options.momentum <= 0 || options.dampening !== 0)) {
    throw new RangeError(
      `SGD: nesterov needs momentum > 0 and dampening 0; got momentum ${options.momentum}, dampening ${options.dampening}`,
    );
  }
  return options;
}

/** Hold SGD's state, as torch's `state[p]`. */
export interface SgdState {
  /** Steps taken (torch's SGD keeps none; kept here for reports and checkpoints). */
  step: number;
  /** `momentum_buffer`: null until the first step with momentum > 0, which sets it to the gradient. */
  momentumBuffer: Float32Array | null;
}

/** Allocate SGD state; the momentum buffer is created by the first step, as in torch. */
export function createSgdState(): SgdState {
  return { step: 0, momentumBuffer: null };
}

/**
 * Take one SGD step in place, matching torch.optim.SGD (`_single_tensor_sgd`, maximize=False):
 *
 *   g ← g + λ·p                                   (weight decay)
 *   momentum: b ← g on the first step (clone, no dampening), else b ← μ·b + (1−τ)·g
 *             d ← g + μ·b if nesterov, else d ← b
 *   p ← p − lr·d                                  param.add_(grad, alpha=-lr)
 */
export function sgdStep(param: Float32Array, grad: Float32Array, state: SgdState, lr: number, options: SgdOptions): void {
  const size = param.length;
  if (grad.length !== size) throw new RangeError(`SGD step: grad has ${grad.length} elements; param has ${size}`);
  if (state.momentumBuffer !== null && state.momentumBuffer.length !== size) {
    throw new RangeError(
      `SGD step: param has ${size} elements; the momentum buffer holds ${state.momentumBuffer.length}`,
    );
  }
  checkLr('SGD step', lr);
  const momentum = f(options.momentum);
  const oneMinusDampening = f(1 - options.dampening);
  const weightDecay = f(options.weightDecay);
  const negLr = f(-lr);
  let buffer = state.momentumBuffer;
  const firstMomentumStep = options.momentum !== 0 && buffer === null;
  if (firstMomentumStep) {
    buffer = new Float32Array(size);
    state.momentumBuffer = buffer;
  }
  state.step += 1;
  for (let i = 0; i < size; i++) {
    const p = param[i];
    // grad = grad.add(param, alpha=weight_decay)
    const g = options.weightDecay !== 0 ? f(grad[i] + f(weightDecay * p)) : grad[i];
    let d = g;
    if (buffer !== null && options.momentum !== 0) {
      // first step: buf = torch.clone(grad); later: buf.mul_(momentum).add_(grad, alpha=1 - dampening)
      const b = firstMomentumStep ? g : f(f(momentum * buffer[i]) + f(oneMinusDampening * g));
      buffer[i] = b;
      // nesterov: grad = grad.add(buf, alpha=momentum); else grad = buf
      d = options.nesterov ? f(g + f(momentum * b)) : b;
    }
    // param.add_(grad, alpha=-lr)
    param[i] = f(p + f(negLr * d));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The factory a job holds

/** Map each optimizer kind to its options. */
export interface OptimizerOptionsByKind {
  rmsprop: RmspropOptions;
  adam: AdamOptions;
  sgd: SgdOptions;
}

/** Map each optimizer kind to its live state. */
export interface OptimizerStateByKind {
  rmsprop: RmspropState;
  adam: AdamState;
  sgd: SgdState;
}


/**
 * Snapshot RMSProp state for a checkpoint. `A` is Float32Array for exported snapshots; imports also take plain
 * number arrays (e.g. parsed from JSON: finite float32 values survive JSON exactly, non-finite ones do not).
 */
export interface RmspropSnapshot<A extends ArrayLike<number> = Float32Array> {
  readonly kind: 'rmsprop';
  readonly step: number;
  readonly squareAvg: A;
  readonly gradAvg: A | null;
  readonly momentumBuffer: A | null;
}

/** Snapshot Adam state for a checkpoint (see RmspropSnapshot for `A`). */
export interface AdamSnapshot<A extends ArrayLike<number> = Float32Array> {
  readonly kind: 'adam';
  readonly step: number;
  readonly expAvg: A;
  readonly expAvgSq: A;
  readonly maxExpAvgSq: A | null;
}

/** Snapshot SGD state for a checkpoint (see RmspropSnapshot for `A`). */
export interface SgdSnapshot<A extends ArrayLike<number> = Float32Array> {
  readonly kind: 'sgd';
  readonly step: number;
  readonly momentumBuffer: A | null;
}

/** Snapshot any optimizer's state; exported buffers are independent copies, so a resume is bit-identical. */
export type OptimizerSnapshot<A extends ArrayLike<number> = Float32Array> =
  | RmspropSnapshot<A>
  | AdamSnapshot<A>
  | SgdSnapshot<A>;

/** Map each optimizer kind to its exported snapshot. */
export interface OptimizerSnapshotByKind {
  rmsprop: RmspropSnapshot;
  adam: AdamSnapshot;
  sgd: SgdSnapshot;
}

/** Step one parameter vector with one optimizer, its state bound, the lr supplied per step by a schedule. */
export interface Optimizer<K extends OptimizerKind = OptimizerKind> {
  readonly kind: K;
  /** Number of parameters this optimizer updates. */
  readonly size: number;
  /** The resolved options; `options.lr` is the base lr a schedule starts from. */
  readonly options: OptimizerOptionsByKind[K];
  /** The live state (moments and step count), mutated by `step`. */
  readonly state: OptimizerStateByKind[K];
  /** Update `param` in place from `grad` with learning rate `lr` (default `options.lr`). */
  step(param: Float32Array, grad: Float32Array, lr?: number): void;
  /** Copy the state out for a checkpoint. */
  exportState(): OptimizerSnapshotByKind[K];
  /** Replace the state with a checkpoint's, checking kind, step, sizes and buffers against the options. */
  importState(snapshot: OptimizerSnapshot<ArrayLike<number>>): void;
}

function copyOut(buffer: Float32Array | null): Float32Array | null {
  return buffer === null ? null : buffer.slice();
}

function checkSnapshot<K extends OptimizerKind>(
  kind: K,
  snapshot: OptimizerSnapshot<ArrayLike<number>>,
): asserts snapshot is Extract<OptimizerSnapshot<ArrayLike<number>>, { kind: K }> {
  if (snapshot.kind !== kind) throw new Error(`importState: snapshot is for ${snapshot.kind}; this optimizer is ${kind}`);
  const problem = integerProblem(snapshot.step, 0);
  if (problem) throw new RangeError(`importState: step ${problem}`);
}

/** Copy a snapshot buffer into a state buffer, both present or both absent, of equal length. */
function importBuffer(label: string, source: ArrayLike<number> | null, target: Float32Array | null): void {
  if ((source === null) !== (target === null)) {
    throw new Error(
      `importState: ${label} is ${source === null ? 'missing' : 'present'}, but the options ${target === null ? 'do not use' : 'need'} it`,
    );
  }
  if (source === null || target === null) return;
  if (source.length !== target.length) {
    throw new RangeError(`importState: ${label} has ${source.length} elements; the optimizer holds ${target.length}`);
  }
  target.set(source);
}

function checkSize(size: number): void {
  const problem = integerProblem(size, 0);
  if (problem) throw new RangeError(`createOptimizer: size ${problem}`);
}

function createRmsprop(size: number, partial: Partial<RmspropOptions>): Optimizer<'rmsprop'> {
  const options = makeRmspropOptions(partial);
  const state = createRmspropState(size, options);
  return {
    kind: 'rmsprop',
    size,
    options,
    state,
    step: (param, grad, lr = options.lr) => rmspropStep(param, grad, state, lr, options),
    exportState: () => ({
      kind: 'rmsprop',
      step: state.step,
      squareAvg: state.squareAvg.slice(),
      gradAvg: copyOut(state.gradAvg),
      momentumBuffer: copyOut(state.momentumBuffer),
    }),
    importState: (snapshot) => {
      checkSnapshot('rmsprop', snapshot);
      importBuffer('squareAvg', snapshot.squareAvg, state.squareAvg);
      importBuffer('gradAvg', snapshot.gradAvg, state.gradAvg);
      importBuffer('momentumBuffer', snapshot.momentumBuffer, state.momentumBuffer);
      state.step = snapshot.step;
    },
  };
}

function createAdam(size: number, partial: Partial<AdamOptions>): Optimizer<'adam'> {
  const options = makeAdamOptions(partial);
  const state = createAdamState(size, options);
  return {
    kind: 'adam',
    size,
    options,
    state,
    step: (param, grad, lr = options.lr) => adamStep(param, grad, state, lr, options),
    exportState: () => ({
      kind: 'adam',
      step: state.step,
      expAvg: state.expAvg.slice(),
      expAvgSq: state.expAvgSq.slice(),
      maxExpAvgSq: copyOut(state.maxExpAvgSq),
    }),
    importState: (snapshot) => {
      checkSnapshot('adam', snapshot);
      importBuffer('expAvg', snapshot.expAvg, state.expAvg);
      importBuffer('expAvgSq', snapshot.expAvgSq, state.expAvgSq);
      importBuffer('maxExpAvgSq', snapshot.maxExpAvgSq, state.maxExpAvgSq);
      state.step = snapshot.step;
    },
  };
}

function createSgd(size: number, partial: Partial<SgdOptions>): Optimizer<'sgd'> {
  const options = makeSgdOptions(partial);
  const state = createSgdState();
  return {
    kind: 'sgd',
    size,
    options,
    state,
    step: (param, grad, lr = options.lr) => {
      checkLengths('SGD step', size, param, grad);
      sgdStep(param, grad, state, lr, options);
    },
    exportState: () => ({ kind: 'sgd', step: state.step, momentumBuffer: copyOut(state.momentumBuffer) }),
    importState: (snapshot) => {
      checkSnapshot('sgd', snapshot);
      // A missing buffer is legal with momentum (no step taken yet: the next step clones the gradient, as in torch).
      if (snapshot.momentumBuffer !== null && options.momentum === 0) {
        throw new Error('importState: momentumBuffer is present, but the options do not use it');
      }
      let buffer: Float32Array | null = null;
      if (snapshot.momentumBuffer !== null) {
        buffer = new Float32Array(size);
        importBuffer('momentumBuffer', snapshot.momentumBuffer, buffer);
      }
      state.momentumBuffer = buffer;
      state.step = snapshot.step;
    },
  };
}

/** Create an optimizer of `kind` for a parameter vector of `size` elements, options merged over its defaults. */
export function createOptimizer(kind: 'rmsprop', size: number, options?: Partial<RmspropOptions>): Optimizer<'rmsprop'>;
export function createOptimizer(kind: 'adam', size: number, options?: Partial<AdamOptions>): Optimizer<'adam'>;
export function createOptimizer(kind: 'sgd', size: number, options?: Partial<SgdOptions>): Optimizer<'sgd'>;
export function createOptimizer(
  kind: OptimizerKind,
  size: number,
  options?: Partial<RmspropOptions> | Partial<AdamOptions> | Partial<SgdOptions>,
): Optimizer;
export function createOptimizer(
  kind: OptimizerKind,
  size: number,
  options: Partial<RmspropOptions> | Partial<AdamOptions> | Partial<SgdOptions> = {},
): Optimizer {
  checkSize(size);
  switch (kind) {
    case 'rmsprop':
      return createRmsprop(size, options as Partial<RmspropOptions>);
    case 'adam':
      return createAdam(size, options as Partial<AdamOptions>);
    case 'sgd':
      return createSgd(size, options as Partial<SgdOptions>);
    default: {
      const unknown: never = kind;
      throw new RangeError(`createOptimizer: kind is ${String(unknown)}; it must be rmsprop, adam or sgd`);
    }
  }
}
