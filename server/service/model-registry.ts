// The models a server serves, named at start (`--model gpt2=/path/to/gpt2`), each loaded in the background on
// the requested execution provider and given its own inversion engine. A model still loading is Unavailable.
import { Code, ConnectError } from '@connectrpc/connect';
import type { EngineModel } from '../engine/engine-model.js';
import { loadEngineModel } from '../engine/engine-model.js';
import type { InversionEngineOptions } from '../engine/inversion-engine.js';
import { InversionEngine } from '../engine/inversion-engine.js';
import type { ModelCatalog } from './hub-ports.js';
import type { DeviceRequest } from '../model/execution-provider.js';
import type { GraphPrecision } from '../model/precision.js';

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

export type ModelEntry =
  | ModelEntryBase & { state: 'LOADING' }
  | ModelEntryBase & { state: 'READY'; model: EngineModel; engine: InversionEngine }
  | ModelEntryBase & { state: 'FAILED'; error: string };

export interface ModelRegistryOptions {
  device: DeviceRequest;
  engine: Partial<InversionEngineOptions>;
  /** Loads a model; tests inject a slow or failing one. */
  load?: (name: string, dir: string, device: DeviceRequest, precision: GraphPrecision) => Promise<EngineModel>;
}

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

  /** Return a ready model, or throw the ConnectError a handler should send; `field` names the request field. */
  require(name: string, field = 'model'): Extract<ModelEntry, { state: 'READY' }> {
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

  /** Stop every engine, then release every loaded model. */
  async close(): Promise<void> {
    await this.ready();
    for (const entry of this.entries.values()) {
      if (entry.state !== 'READY') continue;
      await entry.engine.close();
      await entry.model.release();
    }
  }

  private async load(source: ModelSource, description: string): Promise<void> {
    const load = this.options.load ?? loadEngineModel;
    const base = entryBase(source, description);
    try {
      const model = await load(source.name, source.dir, this.options.device, base.precision);
      const engine = new InversionEngine(model, this.options.engine);
      this.entries.set(source.name, { ...base, state: 'READY', model, engine });
    } catch (error: unknown) {
      const message = error instanceof Error ? error.message : String(error);
      this.entries.set(source.name, { ...base, state: 'FAILED', error: message });
    }
  }
}

function entryBase(source: ModelSource, description: string): ModelEntryBase {
  return { name: source.name, dir: source.dir, description, precision: source.precision ?? 'fp32' };
}
