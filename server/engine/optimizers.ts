// Optimizers for the soft prompt, as a registry: each one is defined once (`defineOptimizer`: its kind, label,
// default options, the state it keeps for a parameter of a given shape, and its step) and listed in `definitions`;
// the settings' choices, the proto's enum values (OPTIMIZER_<KIND>) and checkpoints follow from that list. A step is
// a small pure function over Float32Arrays that updates the parameter in place; its state is float32 buffers and
// integer counters by name, so a checkpoint is a plain copy of it.
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

/** A parameter's shape, outermost first: (P, C) for a full prompt, (C) for one vector, (K) for a projected code. */
export type Shape = readonly number[];

/** An optimizer's options: numbers by name, `lr` the base learning rate a schedule starts from. */
export type OptimizerOptions = { readonly lr: number } & Readonly<Record<string, number>>;

/** An optimizer's state for one parameter: float32 buffers and integer counters by name, `step` among them. */
export type OptimizerState = { step: number } & Record<string, number | Float32Array>;

/** Define an optimizer: everything the rest of the project learns of it. */
export interface OptimizerDefinition<K extends string, O extends OptimizerOptions, S extends OptimizerState> {
  /** What the settings, the CLI and the proto (OPTIMIZER_<KIND>) call it. */
  readonly kind: K;
  /** How people read it (its errors name it so). */
  readonly label: string;
  readonly defaults: O;
  /** Allocate the state for a parameter of `shape`, as before the first step. */
  createState(shape: Shape): S;
  /** Update `param` in place from `grad` with learning rate `lr`, advancing `state` (lengths and lr are checked). */
  step(param: Float32Array, grad: Float32Array, state: S, lr: number, options: O): void;
}

function defineOptimizer<K extends string, O extends OptimizerOptions, S extends OptimizerState>(
  definition: OptimizerDefinition<K, O, S>,
): OptimizerDefinition<K, O, S> {
  return Object.freeze({ ...definition, defaults: Object.freeze({ ...definition.defaults }) });
}

const f = Math.fround;

function zeros(shape: Shape): Float32Array {
  return new Float32Array(shape.reduce((a, b) => a * b, 1));
}

/**
 * Interpolate like `torch.lerp(self, end, weight)` on the CPU scalar path: small weights step from `self`, large
 * ones from `end`, so that both ends are exact.
 */
function lerp32(self: number, end: number, weight32: number): number {
  return Math.abs(weight32) < 0.5
    ? f(self + f(weight32 * f(end - self)))
    : f(end - f(f(end - self) * f(1 - weight32)));
}

// ---------------------------------------------------------------------------------------------------------------
// RMSProp — torch.optim.RMSprop, `_single_tensor_rmsprop` (no momentum, not centered, no weight decay)

export type RmspropOptions = { readonly lr: number; readonly alpha: number; readonly eps: number };
export type RmspropState = { step: number; readonly squareAvg: Float32Array };

/**
 * Take one RMSProp step in place:
 *
 *   v ← α·v + (1−α)·g²                            square_avg.mul_(alpha).addcmul_(g, g, value=1-alpha)
 *   p ← p − lr·g/(√v + ε)                         param.addcdiv_(grad, avg, value=-lr)
 */
export function rmspropStep(param: Float32Array, grad: Float32Array, state: RmspropState, lr: number,
  options: RmspropOptions): void {
  const { squareAvg } = state;
  // Python floats become float32 scalars when they meet the float32 tensors.
  const alpha = f(options.alpha);
  const oneMinusAlpha = f(1 - options.alpha);
  const eps = f(options.eps);
  const negLr = f(-lr);
  state.step += 1;
  for (let i = 0; i < param.length; i++) {
    const g = grad[i]!;
    // square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha): second moment, no bias correction in RMSProp
    const v = f(f(alpha * squareAvg[i]!) + f(f(oneMinusAlpha * g) * g));
    squareAvg[i] = v;
    // avg = square_avg.sqrt().add_(eps)
    const avg = f(f(Math.sqrt(v)) + eps);
    // param.addcdiv_(grad, avg, value=-lr)
    param[i] = f(param[i]! + f(f(negLr * g) / avg));
  }
}

/**
 * RMSProp: PyTorch's defaults except lr 0.1 (PyTorch: 0.01), the value the original experiments found fastest for
 * soft prompts and the project default (docs/design.md, "Optimizers and schedules").
 */
const rmsprop = defineOptimizer({
  kind: 'rmsprop',
  label: 'RMSProp',
  defaults: { lr: 0.1, alpha: 0.99, eps: 1e-8 },
  createState: (shape): RmspropState => ({ step: 0, squareAvg: zeros(shape) }),
  step: rmspropStep,
});

// ---------------------------------------------------------------------------------------------------------------
// Adam — torch.optim.Adam, `_single_tensor_adam` (no weight decay, no AMSGrad)

export type AdamOptions = { readonly lr: number; readonly beta1: number; readonly beta2: number; readonly eps: number };
export type AdamState = { step: number; readonly expAvg: Float32Array; readonly expAvgSq: Float32Array };

/**
 * Take one Adam step in place:
 *
 *   m ← lerp(m, g, 1−β₁)                          exp_avg.lerp_(grad, 1 - beta1)
 *   v ← β₂·v + (1−β₂)·g²                          exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
 *   bc₁ = 1 − β₁ᵗ,  bc₂ = 1 − β₂ᵗ                 float64, on the host
 *   p ← p − (lr/bc₁) · m / (√v / √bc₂ + ε)        param.addcdiv_(exp_avg, denom, value=-step_size)
 */
export function adamStep(param: Float32Array, grad: Float32Array, state: AdamState, lr: number,
  options: AdamOptions): void {
  const { expAvg, expAvgSq } = state;
  const oneMinusBeta1 = f(1 - options.beta1);
  const beta2 = f(options.beta2);
  const oneMinusBeta2 = f(1 - options.beta2);
  const eps = f(options.eps);
  state.step += 1;
  const t = state.step;
  // bias_correction1 = 1 - beta1 ** step; bias_correction2 = 1 - beta2 ** step (Python floats, float64)
  const biasCorrection1 = 1 - options.beta1 ** t;
  const biasCorrection2 = 1 - options.beta2 ** t;
  // step_size = lr / bias_correction1, cast to float32 as addcdiv's value
  const negStepSize = f(-(lr / biasCorrection1));
  // bias_correction2_sqrt = sqrt(bias_correction2), cast to float32 as the divisor scalar
  const biasCorrection2Sqrt = f(Math.sqrt(biasCorrection2));
  for (let i = 0; i < param.length; i++) {
    const g = grad[i]!;
    // exp_avg.lerp_(grad, 1 - beta1): first moment
    const m = lerp32(expAvg[i]!, g, oneMinusBeta1);
    expAvg[i] = m;
    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2): second moment
    const v = f(f(beta2 * expAvgSq[i]!) + f(f(oneMinusBeta2 * g) * g));
    expAvgSq[i] = v;
    // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps): second-moment bias correction inside the root
    const denom = f(f(f(Math.sqrt(v)) / biasCorrection2Sqrt) + eps);
    // param.addcdiv_(exp_avg, denom, value=-step_size): first-moment bias correction in the step size
    param[i] = f(param[i]! + f(f(negStepSize * m) / denom));
  }
}

/** Adam: PyTorch's defaults. */
const adam = defineOptimizer({
  kind: 'adam',
  label: 'Adam',
  defaults: { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 },
  createState: (shape): AdamState => ({ step: 0, expAvg: zeros(shape), expAvgSq: zeros(shape) }),
  step: adamStep,
});

// ---------------------------------------------------------------------------------------------------------------
// SGD — torch.optim.SGD, `_single_tensor_sgd` (no dampening, not Nesterov, no weight decay)

export type SgdOptions = { readonly lr: number; readonly momentum: number };
/** `momentumBuffer` is allocated even without momentum (then it stays zero), so every SGD state has one layout. */
export type SgdState = { step: number; readonly momentumBuffer: Float32Array };

/**
 * Take one SGD step in place:
 *
 *   momentum: b ← g on the first step (torch clones the gradient), else b ← μ·b + g;  d ← b,   else d ← g
 *   p ← p − lr·d                                  param.add_(grad, alpha=-lr)
 */
export function sgdStep(param: Float32Array, grad: Float32Array, state: SgdState, lr: number, options: SgdOptions): void {
  const buffer = state.momentumBuffer;
  const momentum = f(options.momentum);
  const negLr = f(-lr);
  const first = state.step === 0;
  state.step += 1;
  for (let i = 0; i < param.length; i++) {
    const g = grad[i]!;
    let d = g;
    if (options.momentum !== 0) {
      // first step: buf = torch.clone(grad); later: buf.mul_(momentum).add_(grad)
      d = first ? g : f(f(momentum * buffer[i]!) + g);
      buffer[i] = d;
    }
    // param.add_(grad, alpha=-lr)
    param[i] = f(param[i]! + f(negLr * d));
  }
}

/** SGD: PyTorch's defaults (lr 1e-3, momentum 0); a job's settings give it momentum 0.9 unless told otherwise. */
const sgd = defineOptimizer({
  kind: 'sgd',
  label: 'SGD with momentum',
  defaults: { lr: 1e-3, momentum: 0 },
  createState: (shape): SgdState => ({ step: 0, momentumBuffer: zeros(shape) }),
  step: sgdStep,
});

// ---------------------------------------------------------------------------------------------------------------
// Lion — Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms" (no weight decay)

export type LionOptions = { readonly lr: number; readonly beta1: number; readonly beta2: number };
export type LionState = { step: number; readonly expAvg: Float32Array };

/**
 * Take one Lion step in place, each op rounded as float32 tensor ops round (`self + alpha * other` for add):
 *
 *   c ← β₁·m + (1−β₁)·g                           exp_avg.mul(beta1).add_(grad, alpha=1 - beta1)
 *   p ← p − lr·sign(c)                            param.add_(c.sign_(), alpha=-lr)
 *   m ← β₂·m + (1−β₂)·g                           exp_avg.mul_(beta2).add_(grad, alpha=1 - beta2)
 *
 * Every element moves by exactly lr (or not at all where c is 0): the sign, not the size, of the update is learnt.
 */
export function lionStep(param: Float32Array, grad: Float32Array, state: LionState, lr: number,
  options: LionOptions): void {
  const { expAvg } = state;
  const beta1 = f(options.beta1);
  const oneMinusBeta1 = f(1 - options.beta1);
  const beta2 = f(options.beta2);
  const oneMinusBeta2 = f(1 - options.beta2);
  const negLr = f(-lr);
  state.step += 1;
  for (let i = 0; i < param.length; i++) {
    const g = grad[i]!;
    const m = expAvg[i]!;
    // the update's direction: an interpolation between the momentum and the gradient, with β₁
    const c = f(f(beta1 * m) + f(oneMinusBeta1 * g));
    param[i] = f(param[i]! + f(negLr * Math.sign(c)));
    // the momentum, tracked with β₂ (slower than the interpolation above)
    expAvg[i] = f(f(beta2 * m) + f(oneMinusBeta2 * g));
  }
}

/** Lion: the paper's betas (0.9, 0.99); lr 1e-4 (a job's settings give their own: Lion wants a smaller one than Adam). */
const lion = defineOptimizer({
  kind: 'lion',
  label: 'Lion',
  defaults: { lr: 1e-4, beta1: 0.9, beta2: 0.99 },
  createState: (shape): LionState => ({ step: 0, expAvg: zeros(shape) }),
  step: lionStep,
});

// ---------------------------------------------------------------------------------------------------------------
// The registry

/** Every optimizer, in the order the CLI and the dashboard offer them. */
const definitions = [rmsprop, adam, sgd, lion] as const;

type Definition = (typeof definitions)[number];
export type OptimizerKind = Definition['kind'];
type DefinitionOf<K extends OptimizerKind> = { [D in Definition as D['kind']]: D }[K];
export type OptimizerOptionsOf<K extends OptimizerKind> = DefinitionOf<K>['defaults'];
export type OptimizerStateOf<K extends OptimizerKind> = ReturnType<DefinitionOf<K>['createState']>;

/** The optimizers by what the job settings call them (the CLI's choices come from here). */
export const optimizerKinds: readonly OptimizerKind[] = Object.freeze(definitions.map((d) => d.kind));

/** Look an optimizer up by kind. */
export function optimizerDefinition<K extends OptimizerKind>(kind: K): DefinitionOf<K> {
  const definition = definitions.find((d) => d.kind === kind);
  if (!definition) throw new RangeError(`optimizer: kind is ${String(kind)}; it must be one of ${optimizerKinds.join(', ')}`);
  return definition as DefinitionOf<K>;
}

/** Count the float32 numbers the optimizer of `kind` keeps for a parameter of `shape` (a job's memory cost). */
export function optimizerStateFloats(kind: OptimizerKind, shape: Shape): number {
  const state: OptimizerState = optimizerDefinition(kind).createState(shape);
  return Object.values(state).reduce<number>((n, value) => n + (typeof value === 'number' ? 0 : value.length), 0);
}

/**
 * Pick, of the options a job's settings give, the ones the optimizer of `kind` has: lr for every one, momentum for
 * those with a momentum (SGD).
 */
export function optimizerOptionsFromSettings<K extends OptimizerKind>(kind: K, given: { lr: number; momentum: number }):
  Partial<OptimizerOptionsOf<K>> {
  const { defaults } = optimizerDefinition(kind);
  return Object.fromEntries(Object.entries(given).filter(([name]) => Object.hasOwn(defaults, name))) as
    Partial<OptimizerOptionsOf<K>>;
}

/**
 * Copy of an optimizer's state for a checkpoint: its buffers (independent copies, so a resume is bit-identical) and
 * counters by name. `A` is Float32Array when exported; imports also take plain number arrays (e.g. parsed from JSON:
 * finite float32 values survive JSON exactly, non-finite ones do not).
 */
export interface OptimizerSnapshot<A extends ArrayLike<number> = Float32Array> {
  readonly kind: string;
  readonly state: Readonly<Record<string, number | A>>;
}

/** Step one parameter with one optimizer, its state bound, the lr supplied per step by a schedule. */
export interface Optimizer<K extends OptimizerKind = OptimizerKind> {
  readonly kind: K;
  readonly shape: Shape;
  /** Number of parameters this optimizer updates. */
  readonly size: number;
  /** The resolved options; `options.lr` is the base lr a schedule starts from. */
  readonly options: OptimizerOptionsOf<K>;
  /** The live state, mutated by `step`. */
  readonly state: OptimizerStateOf<K>;
  /** Update `param` in place from `grad` with learning rate `lr` (default `options.lr`). */
  step(param: Float32Array, grad: Float32Array, lr?: number): void;
  /** Copy the state out for a checkpoint. */
  exportState(): OptimizerSnapshot;
  /** Replace the state with a checkpoint's, checking its kind and that it names the same buffers and counters. */
  importState(snapshot: OptimizerSnapshot<ArrayLike<number>>): void;
}

/** Create an optimizer of `kind` for a parameter of `shape`, options merged over its defaults. */
export function createOptimizer<K extends OptimizerKind>(kind: K, shape: Shape,
  partial: Partial<OptimizerOptionsOf<K>> = {}): Optimizer<K> {
  // Seen through the common interface: K's own types are what the caller gets back.
  const definition = optimizerDefinition(kind) as unknown as OptimizerDefinition<K, OptimizerOptions, OptimizerState>;
  for (const dim of shape) {
    const problem = integerProblem(dim, 0);
    if (problem) throw new RangeError(`createOptimizer: shape [${shape.join(', ')}]: ${problem}`);
  }
  const size = shape.reduce((a, b) => a * b, 1);
  const options = mergeOptions(definition.label, definition.defaults, partial as Partial<OptimizerOptions>);
  for (const [name, value] of Object.entries(options)) checkNonNegative(definition.label, name, value);
  const state = definition.createState(shape);
  const op = `${definition.label} step`;
  return {
    kind,
    shape: Object.freeze([...shape]),
    size,
    options: options as OptimizerOptionsOf<K>,
    state: state as OptimizerStateOf<K>,
    step(param, grad, lr = options.lr) {
      if (param.length !== size) throw new RangeError(`${op}: param has ${param.length} elements; the optimizer holds ${size}`);
      if (grad.length !== size) throw new RangeError(`${op}: grad has ${grad.length} elements; the optimizer holds ${size}`);
      if (!(lr >= 0) || !Number.isFinite(lr)) throw new RangeError(`${op}: lr is ${lr}; it must be a finite number >= 0`);
      definition.step(param, grad, state, lr, options);
    },
    exportState: () => ({
      kind,
      state: Object.fromEntries(Object.entries(state).map(([name, value]) => [name, typeof value === 'number' ? value : value.slice()])),
    }),
    importState(snapshot) {
      if (snapshot.kind !== kind) throw new Error(`importState: snapshot is for ${snapshot.kind}; this optimizer is ${kind}`);
      const names = Object.keys(state);
      const extra = Object.keys(snapshot.state).find((name) => !names.includes(name));
      if (extra !== undefined) throw new Error(`importState: ${extra} is not part of ${kind}'s state (${names.join(', ')})`);
      for (const name of names) {
        const [source, target] = [snapshot.state[name], state[name]!];
        if (source === undefined) throw new Error(`importState: ${name} is missing`);
        if (typeof target === 'number') {
          const problem = integerProblem(source, 0);
          if (problem) throw new RangeError(`importState: ${name} ${problem}`);
        } else if (typeof source === 'number' || source.length !== target.length) {
          const has = typeof source === 'number' ? 'is a number' : `has ${source.length} elements`;
          throw new RangeError(`importState: ${name} ${has}; the optimizer holds ${target.length}`);
        }
      }
      for (const name of names) {
        const [source, target] = [snapshot.state[name]!, state[name]!];
        if (typeof target === 'number') (state as Record<string, number | Float32Array>)[name] = source as number;
        else target.set(source as ArrayLike<number>);
      }
    },
  };
}
