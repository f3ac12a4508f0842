// The models a server serves, named at start (`--model gpt2=/path/to/gpt2`), each loaded in the background. A
// server that runs jobs loads each on the requested execution provider and gives it its own inversion engine; a
// front server (`--role api`) runs none and reads only what accepting and checking jobs needs: the config and the
// tokenizer, never the weights or a graph. A model still loading is Unavailable.
import { Code, ConnectError } from '@connectrpc/connect';
import type { EngineModel } from '../engine/engine-model.js';
import { loadEngineModel } from '../engine/engine-model.js';
import type { InversionEngineOptions } from '../engine/inversion-engine.js';
import { InversionEngine } from '../engine/inversion-engine.js';
import type { ModelCatalog } from './hub-ports.js';
import type { Gpt2Config } from '../model/checkpoint.js';
import { loadCheckpoint } from '../model/checkpoint.js';
import type { DeviceRequest } from '../model/execution-provider.js';
import type { GraphPrecision } from '../model/precision.js';
import type { Gpt2Tokenizer } from '../model/tokenizer.js';
import { createGpt2Tokenizer } from '../model/tokenizer.js';

export interface ModelSource {
  name: string;
  dir: string;
  description?: string;
  /** The graphs' precision (`--precision NAME=fp16`); default fp32. */
  precision?: GraphPrecision;
}

interface ModelEntryBase {
  name: string;
  dir: string;
  description: string;
  precision: GraphPrecision;
}

/** A loaded model's graphs and the inversion engine that runs its jobs. */
export interface ModelRunner {
  model: EngineModel;
  engine: InversionEngine;
}

/** What every server knows of a ready model: enough to accept, check, describe and cost its jobs. */
interface ReadyModel {
  config: Gpt2Config;
  tokenizer: Gpt2Tokenizer;
  /** Its graphs and engine; undefined on a server that runs no jobs (`--role api`), which holds no weights. */
  runner: ModelRunner | undefined;
}

export type ModelEntry =
  | ModelEntryBase & { state: 'LOADING' }
  | ModelEntryBase & ReadyModel & { state: 'READY' }
  | ModelEntryBase & { state: 'FAILED'; error: string };

export type ReadyModelEntry = Extract<ModelEntry, { state: 'READY' }>;

export interface ModelRegistryOptions {
  device: DeviceRequest;
  engine: Partial<InversionEngineOptions>;
  /**
   * Load the graphs and start an engine for each model (default). False on a server that runs no jobs: it reads each
   * folder's config.json and weight headers (so a wrong folder still fails at start) and keeps no weights.
   */
  runsModels?: boolean;
  /** Loads a model; tests inject a slow or failing one. */
  load?: (name: string, dir: string, device: DeviceRequest, precision: GraphPrecision) => Promise<EngineModel>;
}

/** The execution provider a ready model shows on a server that runs it on none (ListModels, metrics). */
export const noProvider = 'none';

/** A failed model's error as clients see it: its folder replaced by the model's name. */
export function publicError(entry: Extract<ModelEntry, { state: 'FAILED' }>): string {
  return entry.error.split(entry.dir).join(`<model ${entry.name}>`);
}

export class ModelRegistry implements ModelCatalog {
  private readonly entries = new Map<string, ModelEntry>();
  private readonly loading: Promise<void>[] = [];
  readonly defaultModel: string;

  constructor(sources: readonly ModelSource[], private readonly options: ModelRegistryOptions) {
    if (sources.length === 0) throw new Error('model registry: no models given');
    this.defaultModel = sources[0]!.name;
    for (const source of sources) {
      if (this.entries.has(source.name)) throw new Error(`model registry: the name ${source.name} is given twice`);
      // Clients see names and shapes, never the server's file system: the folder is the operator's business (logs).
      const description = source.description ?? `GPT-2 checkpoint "${source.name}"`;
      this.entries.set(source.name, { ...entryBase(source, description), state: 'LOADING' });
      this.loading.push(this.load(source, description));
    }
  }

  /** Resolve when every model has loaded or failed. */
  async ready(): Promise<void> {
    await Promise.all(this.loading);
  }

  list(): ModelEntry[] {
    return [...this.entries.values()];
  }

  /** The models this server runs, each with its graphs and engine. */
  runners(): (ModelRunner & { name: string })[] {
    return this.list().flatMap((m) => (m.state === 'READY' && m.runner ? [{ name: m.name, ...m.runner }] : []));
  }

  /** Return a ready model, or throw the ConnectError a handler should send; `field` names the request field. */
  require(name: string, field = 'model'): ReadyModelEntry {
    const key = name || this.defaultModel;
    const entry = this.entries.get(key);
    if (!entry) {
      throw new ConnectError(`${field}: "${key}" is not served here; models: ${[...this.entries.keys()].join(', ')}`,
        Code.InvalidArgument);
    }
    if (entry.state === 'LOADING') throw new ConnectError(`${field}: "${key}" is still loading; retry shortly`, Code.Unavailable);
    if (entry.state === 'FAILED') {
      throw new ConnectError(`${field}: "${key}" failed to load: ${publicError(entry)}`, Code.FailedPrecondition);
    }
    return entry;
  }

  /**
   * Return a ready model's graphs and engine, or throw the ConnectError a handler should send: as require(), and
   * FailedPrecondition on a server that runs no models, naming `work` (what the request asked to run).
   */
  requireRunner(name: string, field = 'model', work = 'this request'): ModelRunner & { name: string } {
    const entry = this.require(name, field);
    if (entry.runner === undefined) {
      throw new ConnectError(`${field}: "${entry.name}" runs on no device here: this server accepts jobs for others ` +
        `to run (serve --role api) and holds no model weights; send ${work} to a server started with --role all or ` +
        '--role worker', Code.FailedPrecondition);
    }
    return { name: entry.name, ...entry.runner };
  }

  /** Stop every engine, then release every loaded model. */
  async close(): Promise<void> {
    await this.ready();
    for (const entry of this.entries.values()) {
      if (entry.state !== 'READY' || entry.runner === undefined) continue;
      await entry.runner.engine.close();
      await entry.runner.model.release();
    }
  }

  private async load(source: ModelSource, description: string): Promise<void> {
    const base = entryBase(source, description);
    try {
      if (this.options.runsModels === false) {
        // Headers only: loadCheckpoint checks every tensor's shape but reads tensor data on demand, and none is read.
        const { config } = loadCheckpoint(source.dir);
        this.entries.set(source.name, { ...base, state: 'READY', config, tokenizer: createGpt2Tokenizer(), runner: undefined });
        return;
      }
      const load = this.options.load ?? loadEngineModel;
      const model = await load(source.name, source.dir, this.options.device, base.precision);
      const engine = new InversionEngine(model, this.options.engine);
      this.entries.set(source.name, { ...base, state: 'READY', config: model.checkpoint.config, tokenizer: model.tokenizer,
        runner: { model, engine } });
    } catch (error: unknown) {
      const message = error instanceof Error ? error.message : String(error);
      this.entries.set(source.name, { ...base, state: 'FAILED', error: message });
    }
  }
}

function entryBase(source: ModelSource, description: string): ModelEntryBase {
  return { name: source.name, dir: source.dir, description, precision: source.precision ?? 'fp32' };
}
