// The GPT-2-124M-shaped checkpoint with random weights that the bench times: generated once with a fixed seed into
// a cache folder and reused while it is complete, so a benchmark needs no download and no Hugging Face access.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Gpt2Config } from '../model/checkpoint.js';
import { loadCheckpoint } from '../model/checkpoint.js';
import { resolveModelDir } from '../model/builtin-models.js';
import { gpt2SmallConfig, writeRandomCheckpoint } from '../model/random-checkpoint.js';

/** Seed of the generated weights: fixed, so every machine times the same checkpoint. */
export const randomGpt2Seed = 124;

const stampFileName = 'recite-random.json'; // written last: its presence means the folder is complete

/** Describe the folder ensureRandomGpt2 returns. */
export interface RandomGpt2Checkpoint {
  dir: string;
  /** True when this call wrote the weights; false when a complete folder was reused. */
  generated: boolean;
  /** Seconds spent generating (0 when reused). */
  seconds: number;
}

/** Return the default folder: `$RECITE_CACHE_DIR/gpt2-random-124m`, or under `~/.cache/recite` when unset. */
export function defaultRandomGpt2Dir(env: NodeJS.ProcessEnv = process.env): string {
  const cacheRoot = env.RECITE_CACHE_DIR || path.join(os.homedir(), '.cache', 'recite');
  return path.join(cacheRoot, 'gpt2-random-124m');
}

/**
 * Make sure `dir` holds the random GPT-2 124M checkpoint of `seed` (config.json + model.safetensors, ~500 MB),
 * writing it when it is missing, incomplete or of another seed or config.
 */
export function ensureRandomGpt2(dir: string, seed = randomGpt2Seed,
  onGenerate?: (dir: string) => void): RandomGpt2Checkpoint {
  const absDir = path.resolve(dir);
  const stamp = { seed, config: gpt2SmallConfig };
  if (isComplete(absDir, stamp)) return { dir: absDir, generated: false, seconds: 0 };
  onGenerate?.(absDir);
  const start = performance.now();
  // The stamp goes first and comes back last, so an interrupted write is never taken for a complete one.
  fs.rmSync(path.join(absDir, stampFileName), { force: true });
  writeRandomCheckpoint(absDir, { seed, dtype: 'F32' });
  fs.writeFileSync(path.join(absDir, stampFileName), `${JSON.stringify(stamp, null, 2)}\n`);
  return { dir: absDir, generated: true, seconds: (performance.now() - start) / 1000 };
}

interface Stamp {
  seed: number;
  config: Readonly<Gpt2Config>;
}

function isComplete(dir: string, stamp: Stamp): boolean {
  try {
    const written = JSON.parse(fs.readFileSync(path.join(dir, stampFileName), 'utf8')) as unknown;
    if (JSON.stringify(written) !== JSON.stringify(stamp)) return false;
    // loadCheckpoint checks every tensor's shape and extent against the file size: a truncated file fails here.
    loadCheckpoint(dir);
    return true;
  } catch {
    return false;
  }
}

/** The checkpoints a bench runs on: the built-in ones (tiny, english), or the generated GPT-2-124M-shaped one. */
export type BenchModelName = 'tiny' | 'english' | 'gpt2-random';
export const benchModelNames: readonly BenchModelName[] = Object.freeze(['tiny', 'english', 'gpt2-random']);
/** What a bench runs unless told: the test bed and the 124M shape (english is asked for by name). */
export const defaultBenchModels: readonly BenchModelName[] = Object.freeze(['tiny', 'gpt2-random']);

/** Return the folder of a bench model, generating the random 124M checkpoint under `cacheDir` on first use. */
export function benchModelDir(name: BenchModelName, cacheDir: string | undefined, onGenerate: (dir: string) => void):
  { dir: string; generated: boolean; generateSeconds: number } {
  if (name !== 'gpt2-random') return { dir: resolveModelDir(name), generated: false, generateSeconds: 0 };
  const ensured = ensureRandomGpt2(cacheDir ?? defaultRandomGpt2Dir(), randomGpt2Seed, onGenerate);
  return { dir: ensured.dir, generated: ensured.generated, generateSeconds: ensured.seconds };
}
