// What an inversion reports: a typed event stream per job. The service maps these one to one onto the proto's
// event oneof; the CLI prints them; the store keeps them.
import type { InversionSettings } from './settings.js';

/** How a search ended. THRESHOLD: the NLL fell to the requested threshold without a hit. */
export type RunStatus = 'HIT' | 'MAX_ITERATIONS' | 'PATIENCE' | 'THRESHOLD' | 'CANCELLED' | 'FAILED';

/** One iteration of one restart. */
export interface ProgressReport {
  restart: number;
  /** Optimizer steps taken before this evaluation (0: the initial prompt). */
  iteration: number;
  nllSum: number; // natural log, over the optimized tokens
  nllPerToken: number;
  bitsPerToken: number;
  tokenNll: number[]; // (T') per optimized token
  /** Tokens optimized this iteration: T, or the curriculum's current prefix. */
  optimizedTokens: number;
  argmaxIds: number[]; // (T') teacher-forced argmax
  argmaxText: string;
  /** Leading target tokens the model now reproduces. */
  correctPrefix: number;
  gradMeanAbs: number; // over theta
  gradL2: number;
  gradMaxAbs: number;
  promptNorm: number; // L2 norm of the whole prompt (P, C)
  lr: number; // the lr of the step taken after this evaluation
  ms: number; // wall time of this iteration (its share of the graph run, plus host work)
  /** When a decoder ran this iteration (beam checks): what it produced. */
  decodedIds?: number[];
  decodedText?: string;
}

export interface NearestTokenReport {
  id: number;
  text: string;
  cosine: number;
}

/** How one restart ended. */
export interface RunResult {
  restart: number;
  seed: number;
  status: RunStatus;
  /** Iterations evaluated (graph runs). */
  iterations: number;
  /** Optimizer steps before the hit, or null without one. */
  iterationsToHit: number | null;
  bestNll: number;
  bestIteration: number;
  /** The best prompt: a hit's, else the lowest NLL's. */
  embedding: { shape: [number, number]; values: Float32Array }; // (P, C)
  /** Its parameters in the parameterization's own coordinates (K numbers for projected). */
  theta: Float32Array;
  decodedIds: number[];
  decodedText: string;
  /** Per prompt vector, the closest vocabulary tokens by cosine. */
  nearestTokens: NearestTokenReport[][];
  elapsedMs: number;
  error?: string;
}

/** The outcome of an inversion: each restart and the best of them. */
export interface InversionResult {
  status: RunStatus; // the best restart's
  best: number; // index into restarts
  restarts: RunResult[];
  targetIds: number[];
  targetText: string;
  settings: InversionSettings;
  model: string;
  provider: string;
  elapsedMs: number;
}

export type InversionEvent =
  | { type: 'queued'; position: number } // restarts waiting ahead of this job's first one
  | { type: 'started'; restart: number; seed: number; promptVectors: number; parameterCount: number }
  | { type: 'progress'; progress: ProgressReport }
  | { type: 'restart_result'; result: RunResult }
  | { type: 'result'; result: InversionResult };
