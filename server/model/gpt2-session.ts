// Run GPT-2's gradient and decode graphs: pad and mask a batch, make the host-side helpers, read the outputs.
//
// B = batch, P = prompt vectors, T = target tokens (longest in the batch), S = P + T - 1, N = tokens so far,
// K = earlier tokens a position's repetition penalty looks at, C = channels, V = vocab
import ort from 'onnxruntime-node';
import type { Checkpoint } from './checkpoint.js';
import { loadCheckpoint } from './checkpoint.js';
import { openSession } from './execution-provider.js';
import type { DeviceRequest, ProviderFallback, ProviderName } from './execution-provider.js';
import { buildCachedDecodeGraph, buildGradientGraph, cachedDecodeGraphIo, causalMaskValue, decodeGraphIo,
  gradientGraphIo } from './gpt2-graph.js';
import type { GraphPrecision } from './precision.js';
import { integerProblem, tokenIdProblem } from '../util/numbers.js';

/** One graph run's worth of jobs: B prompts of P vectors each and B targets of any lengths ≥ 1. */
export interface GradientBatch {
  prompt: Float32Array; // (B, P, C), row-major
  promptVectors: number; // P
  targets: readonly (readonly number[])[]; // B token-id lists
  /** (B) repetition penalty theta per row, as Hugging Face's RepetitionPenaltyLogitsProcessor; unset or 1: off. */
  repetitionPenalty?: readonly number[];
}

export interface GradientResult {
  batch: number; // B
  promptVectors: number; // P
  targetLength: number; // T, the longest target; shorter rows are padded
  targetLengths: number[]; // (B) real lengths
  nll: Float32Array; // (B, T) per-token NLL, 0 at padding
  gradPrompt: Float32Array; // (B, P, C) d(sum of the row's NLL) / d prompt
  argmaxIds: Int32Array; // (B, T) teacher-forced argmax (meaningless at padding)
  sessionMs: number; // inside onnxruntime's session.run; the rest of the call makes inputs and reads outputs
}

/** Raised for inputs the model cannot take; the message names the field, the value and the limit. */
export class ModelInputError extends Error {
  override name = 'ModelInputError';
}

/**
 * Check a batch and make the gradient graph's inputs for it: targets padded to the longest (T), their mask, the
 * positions, the causal bias, the selections and the repetition penalty's ids and mask.
 */
export function gradientGraphFeeds(checkpoint: Checkpoint, batch: GradientBatch):
  { feeds: Record<string, ort.Tensor>; targetLengths: number[]; T: number } {
  const { nEmbd: C } = checkpoint.config;
  const P = batch.promptVectors;
  const B = batch.targets.length;
  checkBatch(checkpoint, batch.prompt.length, B, P, batch.targets.map((t) => t.length), 'targets');
  batch.targets.forEach((t, b) => checkTokenIds(checkpoint, t, `targets[${b}]`));
  checkRepetitionPenalty(batch.repetitionPenalty, B);
  const targetLengths = batch.targets.map((t) => t.length);
  const T = Math.max(...targetLengths);
  const S = P + T - 1;
  const ids = new BigInt64Array(B * T);
  const mask = new Float32Array(B * T);
  batch.targets.forEach((target, b) => target.forEach((id, t) => {
    ids[b * T + t] = BigInt(id);
    mask[b * T + t] = 1;
  }));
  const helpers = sequenceHelpers(S);
  const targetSelect = new Float32Array(T * S); // (T, S) one-hot: row t picks position P-1+t
  for (let t = 0; t < T; t++) targetSelect[t * S + P - 1 + t] = 1;
  // Target position t is penalized for the target tokens before it (at most t of the row's own).
  const penalty = repetitionPenaltyInputs(batch.targets, T, (row, t) => Math.min(t, row.length),
    batch.repetitionPenalty);
  const io = gradientGraphIo.inputs;
  const feeds: Record<string, ort.Tensor> = {
    [io.prompt]: new ort.Tensor('float32', batch.prompt, [B, P, C]),
    [io.targetIds]: new ort.Tensor('int64', ids, [B, T]),
    [io.targetMask]: new ort.Tensor('float32', mask, [B, T]),
    [io.positionIds]: helpers.positionIds,
    [io.causalBias]: helpers.causalBias,
    [io.targetSelect]: new ort.Tensor('float32', targetSelect, [T, S]),
    [io.promptPositions]: new ort.Tensor('int64', BigInt64Array.from({ length: P }, (_, i) => BigInt(i)), [P]),
    [io.penaltyIds]: penalty.ids,
    [io.penaltyMask]: penalty.mask,
    [io.repetitionPenalty]: penalty.theta,
  };
  return { feeds, targetLengths, T };
}

/** The forward + backward graph of one checkpoint, open on one execution provider. */
export class GradientSession {
  constructor(readonly checkpoint: Checkpoint, private readonly session: ort.InferenceSession,
    readonly provider: ProviderName) {}

  /** Compute per-token NLL, the gradient to the prompt and the teacher-forced argmax for a batch. */
  async run(batch: GradientBatch): Promise<GradientResult> {
    const P = batch.promptVectors;
    const B = batch.targets.length;
    const { feeds, targetLengths, T } = gradientGraphFeeds(this.checkpoint, batch);
    const sessionStarted = performance.now();
    const out = await this.session.run(feeds);
    const sessionMs = performance.now() - sessionStarted;
    const names = gradientGraphIo.outputs;
    return {
      batch: B,
      promptVectors: P,
      targetLength: T,
      targetLengths,
      nll: out[names.nll]!.data as Float32Array,
      gradPrompt: out[names.gradPrompt]!.data as Float32Array,
      argmaxIds: Int32Array.from(out[names.argmaxIds]!.data as BigInt64Array, Number),
      sessionMs,
    };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** The forward-only graph: next-token log-probabilities, for greedy and beam decoding. */
export class DecodeSession {
  constructor(readonly checkpoint: Checkpoint, private readonly session: ort.InferenceSession,
    readonly provider: ProviderName) {}

  /**
   * Return log-probabilities (B, V) of the token after prompt + tokens, for B rows of equal length N; with
   * `repetitionPenalty` (B), each row's logits are penalized for its own N tokens before the log-softmax.
   */
  async nextLogprobs(prompt: Float32Array, promptVectors: number, tokens: readonly (readonly number[])[],
    repetitionPenalty?: readonly number[]): Promise<Float32Array> {
    const { nEmbd: C } = this.checkpoint.config;
    const { P, B, N } = checkDecodeRows(this.checkpoint, prompt, promptVectors, tokens, repetitionPenalty);
    const S = P + N;
    const ids = new BigInt64Array(B * N);
    tokens.forEach((row, b) => row.forEach((id, n) => { ids[b * N + n] = BigInt(id); }));
    const helpers = sequenceHelpers(S);
    // One position, the next token's, penalized for every token of the row so far.
    const penalty = repetitionPenaltyInputs(tokens, 1, (row) => row.length, repetitionPenalty);
    const io = decodeGraphIo.inputs;
    const out = await this.session.run({
      [io.prompt]: new ort.Tensor('float32', prompt, [B, P, C]),
      [io.tokenIds]: new ort.Tensor('int64', ids, [B, N]),
      [io.positionIds]: helpers.positionIds,
      [io.causalBias]: helpers.causalBias,
      [io.lastPosition]: new ort.Tensor('int64', BigInt64Array.of(BigInt(S - 1)), [1]),
      [io.penaltyIds]: penalty.ids,
      [io.penaltyMask]: penalty.mask,
      [io.repetitionPenalty]: penalty.theta,
    });
    return out[decodeGraphIo.outputs.logprobs]!.data as Float32Array;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** A row's cached keys and values: row `row` of a run's present tensors. */
interface CacheEntry {
  run: CachedRun;
  row: number;
}

/** One cached decode graph run's present keys and values, kept while a row of it may be extended. */
interface CachedRun {
  present: ort.Tensor[]; // 2 × layers: (B, H, L, D) keys then values, layer by layer
  prompts: Float32Array; // (B, P, C) to tell a hit from a hash collision
  promptSize: number; // P × C
  keys: string[]; // (B) the entry of each row (a later run may have replaced it)
  bytes: number;
}

/** Options of the cached decode session. */
export interface DecodeCacheOptions {
  /**
   * Most bytes of keys and values held between runs; the oldest runs go first beyond it (0: no cache). A decode's
   * last step leaves rows no run extends; they stay until newer runs push them out.
   */
  maxBytes: number;
}

export const decodeCacheDefaults: Readonly<DecodeCacheOptions> = Object.freeze({
  maxBytes: 1024 ** 3, // 1 GiB
});

/**
 * The decode graph with a key/value cache, behind the same `nextLogprobs` as `DecodeSession`: a decoder asks for the
 * rows it extends as before, and the session recognizes each row by its prompt and tokens. A run whose every row
 * extends, by one token, a row of an earlier run (its parent: the same row in greedy decoding, any beam in beam
 * search) feeds only the new tokens and the parents' keys and values, gathered on the host; any other run (a first
 * step, a row whose parent went) feeds the whole prompt and tokens, as the uncached graph. Either way each row is
 * then remembered for its children, and a parent is forgotten once a run has used it.
 */
export class CachedDecodeSession {
  private readonly entries = new Map<string, CacheEntry>();
  private readonly runs = new Set<CachedRun>(); // oldest first
  private bytes = 0;

  constructor(readonly checkpoint: Checkpoint, private readonly session: ort.InferenceSession,
    readonly provider: ProviderName, private readonly options: DecodeCacheOptions = decodeCacheDefaults) {}

  /** Runs that fed only new tokens and runs that fed everything, since the session opened. */
  readonly counts = { cached: 0, full: 0 };

  /** Return what `DecodeSession.nextLogprobs` returns for the same arguments, within float32 rounding. */
  async nextLogprobs(prompt: Float32Array, promptVectors: number, tokens: readonly (readonly number[])[],
    repetitionPenalty?: readonly number[]): Promise<Float32Array> {
    const { nEmbd: C, nHead: H, nLayer } = this.checkpoint.config;
    const D = C / H;
    const { P, B, N } = checkDecodeRows(this.checkpoint, prompt, promptVectors, tokens, repetitionPenalty);
    const promptSize = P * C;
    const rowPrompt = (b: number) => prompt.subarray(b * promptSize, (b + 1) * promptSize);
    const hashes = tokens.map((_, b) => promptHash(rowPrompt(b))); // once per row: both keys below need it
    const parents = N === 0 ? undefined : this.takeParents(tokens.map((row, b) => rowKey(hashes[b]!, P, row, N - 1)),
      rowPrompt);
    const penalty = repetitionPenaltyInputs(tokens, 1, (row) => row.length, repetitionPenalty);
    const io = cachedDecodeGraphIo.inputs;
    const feeds: Record<string, ort.Tensor> = {
      [io.penaltyIds]: penalty.ids,
      [io.penaltyMask]: penalty.mask,
      [io.repetitionPenalty]: penalty.theta,
    };
    const S = P + N; // positions after this run
    if (parents) {
      // The P + N - 1 positions before the last token are cached: one new position.
      feeds[io.prompt] = new ort.Tensor('float32', new Float32Array(0), [B, 0, C]);
      feeds[io.tokenIds] = new ort.Tensor('int64', BigInt64Array.from(tokens, (row) => BigInt(row[N - 1]!)), [B, 1]);
      feeds[io.positionIds] = new ort.Tensor('int64', BigInt64Array.of(BigInt(S - 1)), [1]);
      feeds[io.causalBias] = new ort.Tensor('float32', new Float32Array(S), [1, S]); // it sees every position
      feeds[io.lastPosition] = new ort.Tensor('int64', BigInt64Array.of(0n), [1]);
      const past = gatherRows(parents, H * (S - 1) * D);
      for (let l = 0; l < nLayer; l++) {
        feeds[io.pastKey(l)] = new ort.Tensor('float32', past[2 * l]!, [B, H, S - 1, D]);
        feeds[io.pastValue(l)] = new ort.Tensor('float32', past[2 * l + 1]!, [B, H, S - 1, D]);
      }
      this.counts.cached++;
    } else {
      const ids = new BigInt64Array(B * N);
      tokens.forEach((row, b) => row.forEach((id, n) => { ids[b * N + n] = BigInt(id); }));
      const helpers = sequenceHelpers(S);
      feeds[io.prompt] = new ort.Tensor('float32', prompt, [B, P, C]);
      feeds[io.tokenIds] = new ort.Tensor('int64', ids, [B, N]);
      feeds[io.positionIds] = helpers.positionIds;
      feeds[io.causalBias] = helpers.causalBias;
      feeds[io.lastPosition] = new ort.Tensor('int64', BigInt64Array.of(BigInt(S - 1)), [1]);
      const empty = new ort.Tensor('float32', new Float32Array(0), [B, H, 0, D]);
      for (let l = 0; l < nLayer; l++) {
        feeds[io.pastKey(l)] = empty;
        feeds[io.pastValue(l)] = empty;
      }
      this.counts.full++;
    }
    const out = await this.session.run(feeds);
    const names = cachedDecodeGraphIo.outputs;
    const present = Array.from({ length: 2 * nLayer }, (_, i) =>
      out[i % 2 === 0 ? names.presentKey(i >> 1) : names.presentValue(i >> 1)]!);
    this.remember(present, prompt.slice(), promptSize, tokens.map((row, b) => rowKey(hashes[b]!, P, row, N)));
    return out[names.logprobs]!.data as Float32Array;
  }

  /** Forget every cached row. */
  clear(): void {
    this.entries.clear();
    this.runs.clear();
    this.bytes = 0;
  }

  async release(): Promise<void> {
    this.clear();
    await this.session.release();
  }

  // Find every row's parent and forget the parents (a parent's children all come in one run); undefined when one is
  // missing, and then nothing is forgotten.
  private takeParents(keys: string[], rowPrompt: (b: number) => Float32Array): CacheEntry[] | undefined {
    const parents: CacheEntry[] = [];
    for (const [b, key] of keys.entries()) {
      const entry = this.entries.get(key);
      if (!entry || !samePrompt(entry, rowPrompt(b))) return undefined;
      parents.push(entry);
    }
    for (const key of new Set(keys)) this.forget(key);
    return parents;
  }

  private remember(present: ort.Tensor[], prompts: Float32Array, promptSize: number, keys: string[]): void {
    const run: CachedRun = { present, prompts, promptSize, keys,
      bytes: present.reduce((sum, t) => sum + (t.data as Float32Array).byteLength, 0) };
    for (const key of keys) this.forget(key); // a row met again (two equal requests) takes the newer run's entry
    keys.forEach((key, row) => this.entries.set(key, { run, row }));
    this.runs.add(run);
    this.bytes += run.bytes;
    for (const old of this.runs) {
      if (this.bytes <= this.options.maxBytes) break;
      for (const key of old.keys) if (this.entries.get(key)?.run === old) this.entries.delete(key);
      this.drop(old);
    }
  }

  private forget(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    if (!entry.run.keys.some((k) => this.entries.get(k)?.run === entry.run)) this.drop(entry.run);
  }

  private drop(run: CachedRun): void {
    if (this.runs.delete(run)) this.bytes -= run.bytes;
  }
}

// A row's identity: P, a hash of its prompt's bits (checked against the prompt itself on a hit) and its first
// `length` tokens.
function rowKey(promptHash: string, P: number, tokens: readonly number[], length: number): string {
  return `${P}:${promptHash}:${tokens.slice(0, length).join(',')}`;
}

// FNV-1a over the prompt's 32-bit words.
function promptHash(prompt: Float32Array): string {
  const bits = new Uint32Array(prompt.buffer, prompt.byteOffset, prompt.length);
  let hash = 0x811c9dc5;
  for (let i = 0; i < bits.length; i++) hash = Math.imul(hash ^ bits[i]!, 0x01000193);
  return (hash >>> 0).toString(36);
}

function samePrompt(entry: CacheEntry, prompt: Float32Array): boolean {
  const { prompts, promptSize } = entry.run;
  const stored = new Uint32Array(prompts.buffer, prompts.byteOffset + entry.row * promptSize * 4, promptSize);
  const given = new Uint32Array(prompt.buffer, prompt.byteOffset, prompt.length);
  if (given.length !== promptSize) return false;
  for (let i = 0; i < promptSize; i++) if (stored[i] !== given[i]) return false;
  return true;
}

// The parents' keys and values as new (B, H, L, D) arrays, one per present tensor; `rowSize` = H × L × D. When the
// parents are a whole run's rows in order (greedy decoding of an unchanged set of rows), its arrays as they are.
function gatherRows(parents: readonly CacheEntry[], rowSize: number): Float32Array[] {
  const run = parents[0]!.run;
  const whole = parents.length === run.keys.length && parents.every((p, b) => p.run === run && p.row === b);
  if (whole) return run.present.map((t) => t.data as Float32Array);
  return run.present.map((_, i) => {
    const out = new Float32Array(parents.length * rowSize);
    parents.forEach((p, b) => {
      const source = p.run.present[i]!.data as Float32Array;
      out.set(source.subarray(p.row * rowSize, (p.row + 1) * rowSize), b * rowSize);
    });
    return out;
  });
}

/** Check a decode step's rows (B rows of N tokens each after P prompt vectors) and return their sizes. */
function checkDecodeRows(checkpoint: Checkpoint, prompt: Float32Array, promptVectors: number,
  tokens: readonly (readonly number[])[], repetitionPenalty: readonly number[] | undefined): { P: number; B: number; N: number } {
  const P = promptVectors;
  const B = tokens.length;
  const N = tokens[0]?.length ?? 0;
  if (tokens.some((row) => row.length !== N)) throw new ModelInputError('decode: all rows need the same token count');
  // S = P + N positions; the limit check counts N + 1 "target" tokens as the gradient graph would.
  checkBatch(checkpoint, prompt.length, B, P, [N + 1], 'tokens');
  checkRepetitionPenalty(repetitionPenalty, B);
  return { P, B, N };
}

/** A checkpoint with its two graphs open on one execution provider. */
export interface Gpt2Model {
  checkpoint: Checkpoint;
  gradient: GradientSession;
  decode: CachedDecodeSession;
  provider: ProviderName;
  fallbacks: ProviderFallback[];
  precision: GraphPrecision;
  release(): Promise<void>;
}

/**
 * Load a checkpoint folder (or use a loaded checkpoint), build both graphs at `precision` and open them on
 * `device`. Both precisions take and return float32 tensors, so nothing else here depends on it.
 */
export async function loadGpt2(source: string | Checkpoint, device: DeviceRequest = 'auto',
  precision: GraphPrecision = 'fp32'): Promise<Gpt2Model> {
  const checkpoint = typeof source === 'string' ? loadCheckpoint(source) : source;
  const gradientOpened = await openSession(buildGradientGraph(checkpoint, { precision }).toBytes(), checkpoint.dir,
    device);
  // The decode graph goes where the gradient graph went: one model, one provider.
  const decodeOpened = await openSession(buildCachedDecodeGraph(checkpoint, { precision }).toBytes(),
    checkpoint.dir, gradientOpened.provider);
  const gradient = new GradientSession(checkpoint, gradientOpened.session, gradientOpened.provider);
  const decode = new CachedDecodeSession(checkpoint, decodeOpened.session, decodeOpened.provider);
  return {
    checkpoint,
    gradient,
    decode,
    provider: gradientOpened.provider,
    fallbacks: gradientOpened.fallbacks,
    precision,
    release: async () => {
      await gradient.release();
      await decode.release();
    },
  };
}

function checkBatch(checkpoint: Checkpoint, promptLength: number, B: number, P: number, lengths: number[],
  field: string): void {
  const { nEmbd: C, nPositions } = checkpoint.config;
  if (B < 1) throw new ModelInputError(`${field}: a batch needs at least 1 row, got 0`);
  const problem = integerProblem(P, 1);
  if (problem) throw new ModelInputError(`prompt vectors: ${problem}`);
  if (promptLength !== B * P * C) {
    throw new ModelInputError(`prompt: ${promptLength} floats for B=${B}, P=${P}, C=${C}; expected ${B * P * C}`);
  }
  lengths.forEach((T, b) => {
    if (T < 1) throw new ModelInputError(`${field}[${b}]: empty; at least 1 token is needed`);
    if (P + T - 1 > nPositions) {
      throw new ModelInputError(`${field}[${b}]: ${T} tokens with ${P} prompt vectors need ${P + T - 1} positions; ` +
        `the model's context allows ${nPositions} (at most ${nPositions - P + 1} tokens)`);
    }
  });
}

function checkTokenIds(checkpoint: Checkpoint, ids: readonly number[], field: string): void {
  const V = checkpoint.config.vocabSize;
  ids.forEach((id, t) => {
    const problem = tokenIdProblem(id, V);
    if (problem) throw new ModelInputError(`${field}[${t}]: token id ${problem}`);
  });
}

function checkRepetitionPenalty(thetas: readonly number[] | undefined, B: number): void {
  if (thetas === undefined) return;
  if (thetas.length !== B) throw new ModelInputError(`repetitionPenalty: ${thetas.length} values for ${B} rows`);
  thetas.forEach((theta, b) => {
    // theta reaches the graph as float32: one that rounds to 0 or Infinity would make every logit non-finite
    const rounded = Math.fround(theta);
    if (!(rounded > 0 && Number.isFinite(rounded))) {
      throw new ModelInputError(`repetitionPenalty[${b}]: ${theta} is not a finite float32 number > 0`);
    }
  });
}

/** The repetition penalty's inputs to a graph: (B, T, K) ids and mask, (B) theta. */
export interface RepetitionPenaltyInputs {
  ids: ort.Tensor; // (B, T, K) int64
  mask: ort.Tensor; // (B, T, K) float
  theta: ort.Tensor; // (B) float
}

/**
 * Make the repetition penalty's inputs for B rows of tokens: position t of row b looks at the row's first
 * `before(row, t)` tokens (ids[b, t, s] = row[s]; `before` grows with t), and mask[b, t, s] is 1 for those that are
 * the first of their value in the row, so a token that repeats is penalized once (the first occurrence of a value
 * among row[0 .. t-1] is its first in the row, whatever t). K is the most tokens a penalized row looks at, at least
 * 1: without a penalty the graph gathers and scatters one masked column per position. Rows whose theta is 1 get
 * zeros: a masked-out entry adds exactly 0.
 */
function repetitionPenaltyInputs(rows: readonly (readonly number[])[], T: number,
  before: (row: readonly number[], t: number) => number, thetas?: readonly number[]): RepetitionPenaltyInputs {
  const B = rows.length;
  const penalized = (b: number) => thetas !== undefined && thetas[b] !== 1;
  let K = 1;
  rows.forEach((row, b) => { if (penalized(b)) K = Math.max(K, Math.min(before(row, T - 1), row.length)); });
  const ids = new BigInt64Array(B * T * K);
  const mask = new Float32Array(B * T * K);
  rows.forEach((row, b) => {
    if (!penalized(b)) return;
    const length = Math.min(row.length, K);
    const rowIds = new BigInt64Array(K); // (K): the row's tokens, 0 past its end (masked)
    const first = new Float32Array(length); // 1 where a token is the first of its value in the row
    const seen = new Set<number>();
    for (let s = 0; s < length; s++) {
      rowIds[s] = BigInt(row[s]!);
      if (!seen.has(row[s]!)) first[s] = 1;
      seen.add(row[s]!);
    }
    for (let t = 0; t < T; t++) {
      const offset = (b * T + t) * K;
      ids.set(rowIds, offset);
      mask.set(first.subarray(0, Math.min(before(row, t), length)), offset);
    }
  });
  return {
    ids: new ort.Tensor('int64', ids, [B, T, K]),
    mask: new ort.Tensor('float32', mask, [B, T, K]),
    theta: new ort.Tensor('float32', thetas ? Float32Array.from(thetas) : new Float32Array(B).fill(1), [B]),
  };
}

/** The host-made inputs that depend only on the sequence length S. */
export interface SequenceHelpers {
  positionIds: ort.Tensor; // (S) int64
  causalBias: ort.Tensor; // (S, S) float
}

// The helpers depend only on S; a job's iterations reuse the same S, so a small cache saves their (S, S) fill.
const helperCache = new Map<number, SequenceHelpers>();
const helperCacheSize = 64;

/** Return positions 0..S-1 and the (S, S) causal bias, cached by S. */
export function sequenceHelpers(S: number): SequenceHelpers {
  const cached = helperCache.get(S);
  if (cached) return cached;
  const positions = BigInt64Array.from({ length: S }, (_, i) => BigInt(i));
  const bias = new Float32Array(S * S);
  for (let i = 0; i < S; i++) for (let j = i + 1; j < S; j++) bias[i * S + j] = causalMaskValue;
  const helpers = {
    positionIds: new ort.Tensor('int64', positions, [S]),
    causalBias: new ort.Tensor('float32', bias, [S, S]),
  };
  if (helperCache.size >= helperCacheSize) helperCache.delete(helperCache.keys().next().value!);
  helperCache.set(S, helpers);
  return helpers;
}
