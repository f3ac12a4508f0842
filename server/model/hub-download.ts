// Download a GPT-2 checkpoint from the Hugging Face hub into a folder loadCheckpoint reads: config.json and the
// safetensors weights (one file, or an index and its shards), plus the tokenizer files the repo has.
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { downloadFile, HubApiError, modelInfo } from '@huggingface/hub';
import { loadCheckpoint } from './checkpoint.js';
import type { Checkpoint } from './checkpoint.js';

/** The public hub; HF_ENDPOINT (the hub libraries' own variable) points elsewhere, e.g. a mirror. */
export const publicHubUrl = 'https://huggingface.co';

const configFile = 'config.json';
const weightsFile = 'model.safetensors';
const weightsIndexFile = 'model.safetensors.index.json';
/** Fetched when the repo has them; the server's tokenizer is built in, but a folder should be complete. */
export const optionalModelFiles: readonly string[] = ['vocab.json', 'merges.txt', 'tokenizer.json', 'generation_config.json'];
const incompleteSuffix = '.incomplete'; // a file being written; renamed once all its bytes are on disk
const maxNameLength = 96; // the hub's limit on a repo name

/** Report a failed fetch; the message names the model, the hub and the cause. */
export class ModelFetchError extends Error {
  override name = 'ModelFetchError';
}

/** Configure fetchModel. */
export interface FetchModelOptions {
  /** Hub repo id: "gpt2", "distilgpt2", "openai-community/gpt2-medium". */
  name: string;
  /** Destination folder; default `defaultModelDir(name)`. */
  dir?: string;
  /** Branch, tag or commit; default "main". */
  revision?: string;
  /** Default HF_ENDPOINT, else https://huggingface.co. */
  hubUrl?: string;
  /** For private or gated repos (an `hf_...` token); default HF_TOKEN. */
  accessToken?: string;
  /** Called as bytes arrive, and once per file with `done` set. */
  onProgress?: (progress: FetchProgress) => void;
  env?: NodeJS.ProcessEnv;
}

/** Describe the download of one file. */
export interface FetchProgress {
  file: string;
  bytes: number;
  totalBytes: number;
  done: boolean;
}

/** Describe a completed fetch. */
export interface FetchModelResult {
  dir: string;
  /** The commit the files came from (the revision itself when the hub does not say). */
  commit: string;
  hubUrl: string;
  files: { name: string; bytes: number }[];
  /** The folder, loaded: proof that it is a complete GPT-2 checkpoint. */
  checkpoint: Checkpoint;
}

/** Return the folder models are fetched into: RECITE_MODELS_DIR, else ~/.cache/recite/models. */
export function defaultModelsDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.RECITE_MODELS_DIR || path.join(os.homedir(), '.cache', 'recite', 'models');
}

/** Return the default folder of one model: `<models dir>/<name>` ("org/name" nests a folder). */
export function defaultModelDir(name: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(defaultModelsDir(env), checkRepoName(name));
}

/**
 * Download model `name` from the hub into its folder, each file under a temporary name renamed when complete,
 * then check that the folder loads. Every failure is a ModelFetchError naming the model, the hub and the cause.
 */
export async function fetchModel(options: FetchModelOptions): Promise<FetchModelResult> {
  const env = options.env ?? process.env;
  const hubUrl = (options.hubUrl || env.HF_ENDPOINT || publicHubUrl).replace(/\/+$/, '');
  const name = options.name;
  const fail = (reason: string): ModelFetchError => new ModelFetchError(`fetch model ${name} from ${hubUrl}: ${reason}`);
  try {
    checkRepoName(name);
  } catch (error) {
    throw fail(describeCause(error, name));
  }
  if (!/^https?:\/\/[^/]/.test(hubUrl)) throw fail(`the hub URL must start with http:// or https://`);
  const revision = options.revision || 'main';
  const accessToken = options.accessToken ?? (env.HF_TOKEN || undefined);
  if (accessToken !== undefined && !accessToken.startsWith('hf_')) {
    throw fail('the access token (HF_TOKEN) does not start with hf_');
  }
  const dir = path.resolve(options.dir ?? defaultModelDir(name, env));
  const hub = { repo: name, hubUrl, accessToken };

  let listed: string[];
  let commit: string;
  try {
    const info = await modelInfo({ name, hubUrl, revision, accessToken, additionalFields: ['filePaths', 'sha'] });
    listed = info.filePaths ?? [];
    commit = info.sha || revision;
  } catch (error) {
    throw fail(describeCause(error, name, revision));
  }
  const available = new Set(listed);
  if (!available.has(configFile)) throw fail(`the repo has no ${configFile}; it is not a transformers checkpoint`);

  const files: { name: string; bytes: number }[] = [];
  const download = async (file: string): Promise<void> => {
    try {
      files.push({ name: file, bytes: await downloadTo(dir, file, { ...hub, revision: commit }, options.onProgress) });
    } catch (error) {
      throw fail(`download ${file}: ${describeCause(error, name, commit)}`);
    }
  };

  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    throw fail(`create ${dir}: ${describeCause(error)}`);
  }
  await download(configFile);
  if (available.has(weightsFile)) {
    await download(weightsFile);
  } else if (available.has(weightsIndexFile)) {
    await download(weightsIndexFile);
    for (const shard of await readShardNames(path.join(dir, weightsIndexFile), fail)) {
      if (!available.has(shard)) throw fail(`${weightsIndexFile} names ${shard}, which the repo does not have`);
      await download(shard);
    }
  } else {
    const others = listed.filter((f) => /\.(bin|pt|h5|msgpack|ckpt)$/.test(f));
    throw fail(`the repo has no ${weightsFile} (recite reads safetensors only)` +
      (others.length > 0 ? `; it has ${others.join(', ')}` : ''));
  }
  for (const file of optionalModelFiles) if (available.has(file)) await download(file);

  let checkpoint: Checkpoint;
  try {
    checkpoint = loadCheckpoint(dir);
  } catch (error) {
    throw fail(`downloaded into ${dir}, but the folder does not load: ${describeCause(error, name)}`);
  }
  return { dir, commit, hubUrl, files, checkpoint };
}

/** Check a hub repo id: one or two segments of letters, digits, `-`, `_` and `.`, nothing that climbs out. */
function checkRepoName(name: string): string {
  const segments = name.split('/');
  const valid = name.length > 0 && name.length <= maxNameLength && segments.length <= 2 &&
    segments.every((s) => /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(s) && !s.includes('..'));
  if (!valid) {
    throw new ModelFetchError(`${JSON.stringify(name)} is not a hub repo id ("gpt2" or "org/name": letters, digits, ` +
      `- _ ., at most ${maxNameLength} characters)`);
  }
  return name;
}

/** Stream one file to `<dir>/<file>.incomplete`, then rename it; returns its size in bytes. */
async function downloadTo(
  dir: string,
  file: string,
  hub: { repo: string; hubUrl: string; revision: string; accessToken: string | undefined },
  onProgress: FetchModelOptions['onProgress'],
): Promise<number> {
  const blob = await downloadFile({ ...hub, path: file });
  if (blob === null) throw new Error('the hub lists the file but does not serve it (404)');
  const target = path.join(dir, file);
  const temporary = `${target}${incompleteSuffix}`;
  const totalBytes = blob.size;
  let bytes = 0;
  const handle = await open(temporary, 'w');
  try {
    for await (const chunk of blob.stream() as unknown as AsyncIterable<Uint8Array>) {
      await handle.write(chunk);
      bytes += chunk.byteLength;
      onProgress?.({ file, bytes, totalBytes, done: false });
    }
    await handle.sync();
  } catch (error) {
    await handle.close().catch(() => undefined);
    await rm(temporary, { force: true });
    throw error;
  }
  await handle.close();
  if (bytes !== totalBytes) {
    await rm(temporary, { force: true });
    throw new Error(`the transfer ended after ${bytes} of ${totalBytes} bytes`);
  }
  await rename(temporary, target);
  onProgress?.({ file, bytes, totalBytes, done: true });
  return bytes;
}

async function readShardNames(indexFile: string, fail: (reason: string) => Error): Promise<string[]> {
  let weightMap: unknown;
  try {
    weightMap = (JSON.parse(await readFile(indexFile, 'utf8')) as { weight_map?: unknown }).weight_map;
  } catch (error) {
    throw fail(`${weightsIndexFile} is not JSON: ${describeCause(error)}`);
  }
  if (typeof weightMap !== 'object' || weightMap === null) throw fail(`${weightsIndexFile} has no weight_map`);
  const shards = [...new Set(Object.values(weightMap))];
  const bad = shards.find((s) => typeof s !== 'string' || !/^[\w.-]+\.safetensors$/.test(s));
  if (bad !== undefined) throw fail(`${weightsIndexFile} names a shard ${JSON.stringify(bad)} that is not a .safetensors file`);
  return shards as string[];
}

/** Say why a hub call failed, in one line: an HTTP status and the hub's message, or the network error beneath. */
function describeCause(error: unknown, name?: string, revision?: string): string {
  if (error instanceof HubApiError) {
    const hubMessage = error.message.replace(/\. URL: .*$/s, '').trim();
    switch (error.statusCode) {
      case 401:
      case 404:
        if (/revision|rev id/i.test(hubMessage) && revision !== undefined) {
          return `the model has no revision ${revision} (HTTP ${error.statusCode}: ${hubMessage})`;
        }
        return `no model ${name} on this hub (HTTP ${error.statusCode}: ${hubMessage}); a private or gated ` +
          'model needs HF_TOKEN';
      case 403:
        return `access denied (HTTP 403: ${hubMessage}); a gated model needs its terms accepted and HF_TOKEN`;
      default:
        return `the hub answered HTTP ${error.statusCode}: ${hubMessage}`;
    }
  }
  if (error instanceof TypeError && error.message === 'fetch failed') {
    return `cannot reach the hub (${networkCause(error.cause)}); check the network, or point --hub-url or ` +
      'HF_ENDPOINT at a reachable hub or mirror';
  }
  if (error instanceof Error) return error.message;
  return String(error);
}

/** Dig the useful words out of undici's error chain: "connect ECONNREFUSED 127.0.0.1:1", "getaddrinfo ENOTFOUND x". */
function networkCause(cause: unknown): string {
  let current = cause;
  for (let depth = 0; depth < 5 && current !== undefined; depth++) {
    if (current instanceof AggregateError && current.errors.length > 0) current = current.errors[0];
    if (current instanceof Error) {
      const code = (current as NodeJS.ErrnoException).code;
      if (current.message) return current.message;
      if (code) return code;
      current = current.cause;
    } else {
      return String(current);
    }
  }
  return 'no further detail';
}
