// DatasetService's handlers: validate at the edge, store a data set once per name and content, and read its rows
// and counts back; the runner does the work between the calls.
import { createHash, randomUUID } from 'node:crypto';
import { create, fromBinary, toBinary, toJson } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import { Code, ConnectError } from '@connectrpc/connect';
import type { Logger } from 'pino';
import { makeInversionSettings } from '../engine/settings.js';
import { clientOf } from '../service/auth.js';
import type { ModelCatalog, SettingsLimits } from '../service/hub-ports.js';
import { settingsFromProto } from '../service/proto-convert.js';
import { toConnectError, validateRequest } from '../service/validation.js';
import type { JobRepository } from '../store/job-repository.js';
import {
  CancelDatasetRequestSchema, DatasetCountsSchema, DatasetRowSchema, DatasetSchema, DatasetService, DatasetState,
  GetDatasetRequestSchema, ListDatasetsRequestSchema, SampleReachableTargetsRequestSchema, SubmitDatasetRequestSchema,
  WatchDatasetRequestSchema,
} from '../../sdk/gen/recite/v1/dataset_pb.js';
import type {
  CancelDatasetRequest, Dataset, DatasetRow, DatasetRowInput, GetDatasetRequest, ListDatasetsRequest,
  SampleReachableTargetsRequest, SubmitDatasetRequest, WatchDatasetRequest,
} from '../../sdk/gen/recite/v1/dataset_pb.js';
import { JobSettingsSchema, JobState, Status } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { Job, JobSettings } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { DatasetRecord, DatasetRepository, DatasetRowRecord, RowTarget } from './dataset-repository.js';
import { DatasetStoreError } from './dataset-repository.js';
import type { DatasetRunnerHub, DatasetRunnerOptions } from './dataset-runner.js';
import { DatasetRunner } from './dataset-runner.js';
import { sampleReachableTargets } from './reachable-targets.js';

const watchPageSize = 64; // finished rows per WatchDataset message: results carry embeddings
const heartbeatMs = 1000; // a message with fresh counts at least this often while rows run
const defaultRowPage = 1000; // rows per GetDataset page when the request names none
const maxDecodeSteps = 100_000; // count × tokens of one SampleReachableTargets call: one graph run per step

const datasetStates = { RUNNING: DatasetState.RUNNING, FINISHED: DatasetState.FINISHED, CANCELLED: DatasetState.CANCELLED } as const;

/** What the data sets ask of the job hub. */
export type DatasetHub = DatasetRunnerHub & SettingsLimits;

export class DatasetServiceImpl implements ServiceImpl<typeof DatasetService> {
  constructor(private readonly store: DatasetRepository, private readonly runner: DatasetRunner, private readonly hub: DatasetHub,
    private readonly models: ModelCatalog) {}

  async submitDataset(req: SubmitDatasetRequest, ctx: HandlerContext) {
    validateRequest(SubmitDatasetRequestSchema, req);
    const clientId = clientOf(ctx);
    const model = this.modelName(req.model);
    const settings = req.settings ?? create(JobSettingsSchema);
    this.checkSettings(settings);
    const repeated = firstRepeatedId(req.rows);
    if (repeated) {
      throw new ConnectError(`rows[${repeated.index}].id: "${repeated.id}" repeats the id of rows[${repeated.first}]; ` +
        'row ids must be unique within a data set', Code.InvalidArgument);
    }
    const contentHash = hashContent(model, settings, req.rows);
    const name = req.name || contentHash;
    const existing = await this.store.getDataset(clientId, name);
    if (existing) return { dataset: await this.sameContent(existing, contentHash), created: false };
    try {
      await this.store.createDataset({
        id: randomUUID(),
        clientId,
        name,
        contentHash,
        model,
        settings: toBinary(JobSettingsSchema, settings),
        createdAtMs: Date.now(),
        rows: req.rows.map((row) => ({ rowId: row.id, target: targetOf(row) })),
      });
    } catch (error: unknown) {
      // Two submissions of one name at once: the second finds the first's.
      const raced = error instanceof DatasetStoreError ? await this.store.getDataset(clientId, name) : undefined;
      if (!raced) throw error;
      return { dataset: await this.sameContent(raced, contentHash), created: false };
    }
    this.runner.wake();
    return { dataset: await this.toDataset((await this.store.getDataset(clientId, name))!), created: true };
  }

  async getDataset(req: GetDatasetRequest, ctx: HandlerContext) {
    validateRequest(GetDatasetRequestSchema, req);
    const clientId = clientOf(ctx);
    const record = await this.owned(clientId, req.name);
    const rows = req.includeRows ? await this.store.rows(record.id, req.fromIndex, req.pageSize || defaultRowPage) : [];
    return { dataset: await this.toDataset(record), rows: await Promise.all(rows.map((row) => this.toRow(record, row))) };
  }

  async *watchDataset(req: WatchDatasetRequest, ctx: HandlerContext) {
    validateRequest(WatchDatasetRequestSchema, req);
    const clientId = clientOf(ctx);
    const { id } = await this.owned(clientId, req.name);
    let wake: () => void = () => {};
    const off = this.runner.onChange(id, () => wake());
    const onAbort = () => wake();
    ctx.signal.addEventListener('abort', onAbort);
    try {
      let cursor = req.afterFinishOrder;
      let lastSent = 0;
      for (;;) {
        if (this.runner.closed) {
          throw new ConnectError(`the server is shutting down; watch data set "${req.name}" again after finish order ${cursor}`,
            Code.Unavailable);
        }
        const record = (await this.store.getDatasetById(id))!;
        const finished = await this.store.finishedRows(id, cursor, watchPageSize);
        if (finished.length > 0 || Date.now() - lastSent >= heartbeatMs) {
          const rows = await Promise.all(finished.map(async (row) => ({
            row: await this.toRow(record, row),
            ...(req.includeResults && row.jobId ? await this.jobOf(clientId, row.jobId) : {}),
          })));
          yield { dataset: await this.toDataset(record), rows };
          lastSent = Date.now();
          cursor = finished.at(-1)?.finishOrder ?? cursor;
        }
        if (finished.length === watchPageSize) continue;
        if (record.finishedRows === record.rowCount && cursor >= record.finishedRows) return;
        if (ctx.signal.aborted) return;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, heartbeatMs);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
      off();
    }
  }

  async listDatasets(req: ListDatasetsRequest, ctx: HandlerContext) {
    validateRequest(ListDatasetsRequestSchema, req);
    const clientId = clientOf(ctx);
    let records: DatasetRecord[];
    try {
      records = await this.store.listDatasets(clientId, req.pageSize || 50, req.beforeName || undefined);
    } catch (error: unknown) {
      if (error instanceof DatasetStoreError) {
        throw new ConnectError(`before_name: no data set "${req.beforeName}" for this client`, Code.NotFound);
      }
      throw error;
    }
    return { datasets: await Promise.all(records.map((r) => this.toDataset(r))) };
  }

  async cancelDataset(req: CancelDatasetRequest, ctx: HandlerContext) {
    validateRequest(CancelDatasetRequestSchema, req);
    const record = await this.owned(clientOf(ctx), req.name);
    if (await this.store.cancelDataset(record.id)) this.runner.wake();
    return { dataset: await this.toDataset((await this.store.getDatasetById(record.id))!) };
  }

  async sampleReachableTargets(req: SampleReachableTargetsRequest, ctx: HandlerContext) {
    validateRequest(SampleReachableTargetsRequestSchema, req);
    const clientId = clientOf(ctx);
    const { model, engine } = this.models.requireRunner(req.model, 'model', 'SampleReachableTargets');
    const P = req.promptVectors || 1;
    const positions = model.checkpoint.config.nPositions;
    if (P + req.tokens > positions) {
      throw new ConnectError(`tokens: ${req.tokens} with prompt_vectors = ${P} need ${P + req.tokens} positions; the ` +
        `model's context allows ${positions}, so at most ${positions - P}`, Code.InvalidArgument);
    }
    if (req.count * req.tokens > maxDecodeSteps) {
      throw new ConnectError(`count × tokens: ${req.count} × ${req.tokens} = ${req.count * req.tokens} decoding steps; ` +
        `the limit is ${maxDecodeSteps}`, Code.InvalidArgument);
    }
    // Its decode steps take their turn in the engine's fair-share rounds, charged to this client.
    const targets = await sampleReachableTargets(model, req.count, req.tokens, P, req.seed, engine.decoderFor(clientId));
    return { targets };
  }

  private modelName(name: string): string {
    const key = name || this.models.defaultModel;
    const known = this.models.list().map((m) => m.name);
    if (!known.includes(key)) throw new ConnectError(`model: "${key}" is not served here; models: ${known.join(', ')}`, Code.InvalidArgument);
    return key;
  }

  private checkSettings(settings: JobSettings): void {
    try {
      makeInversionSettings(settingsFromProto(settings), this.hub.options.limits);
    } catch (error: unknown) {
      const e = toConnectError(error);
      // The hub names job fields from a JobSpec; here the settings sit at the top of the request.
      throw new ConnectError(e.rawMessage.replace(/^spec\.settings\./, 'settings.'), e.code);
    }
  }

  private async sameContent(record: DatasetRecord, contentHash: string): Promise<Dataset> {
    if (record.contentHash !== contentHash) {
      throw new ConnectError(`name: data set "${record.name}" exists with other content (${record.contentHash}); this ` +
        `request's is ${contentHash}: choose another name, or leave it empty to name the data set by its content`,
      Code.AlreadyExists);
    }
    return this.toDataset(record);
  }

  private async owned(clientId: string, name: string): Promise<DatasetRecord> {
    const record = await this.store.getDataset(clientId, name);
    // Another client's data set is reported as missing, as for jobs.
    if (!record) throw new ConnectError(`name: no data set "${name}" for this client`, Code.NotFound);
    return record;
  }

  private async toDataset(record: DatasetRecord): Promise<Dataset> {
    const counts = await this.store.counts(record.id);
    const live = await this.runner.liveCounts(record.id);
    const running = Math.min(live.running, counts.submitted);
    return create(DatasetSchema, {
      name: record.name,
      contentHash: record.contentHash,
      model: record.model,
      settings: fromBinary(JobSettingsSchema, record.settings),
      state: datasetStates[record.state],
      createdAt: timestampFromMs(record.createdAtMs),
      ...(record.finishedAtMs !== null ? { finishedAt: timestampFromMs(record.finishedAtMs) } : {}),
      counts: create(DatasetCountsSchema, {
        rows: counts.rows,
        pending: counts.pending,
        queued: counts.submitted - running,
        running,
        finished: counts.finished,
        hits: counts.hits,
        misses: counts.misses,
        failed: counts.failed,
        iterations: BigInt(counts.finishedIterations + live.runningIterations),
      }),
    });
  }

  // A row's job, unless the client has deleted it (DeleteJob): the row keeps its outcome, the job is just gone.
  private async jobOf(clientId: string, jobId: string): Promise<{ job?: Job }> {
    try {
      return { job: await this.hub.getJob(clientId, jobId) };
    } catch (error: unknown) {
      if (toConnectError(error).code === Code.NotFound) return {};
      throw error;
    }
  }

  private async toRow(record: DatasetRecord, row: DatasetRowRecord): Promise<DatasetRow> {
    let state = JobState.UNSPECIFIED;
    if (row.state === 'FINISHED') state = JobState.FINISHED;
    // Deleted once it finished, before the runner ended its row: finished, as far as the row is concerned.
    else if (row.state === 'SUBMITTED' && row.jobId) {
      state = (await this.jobOf(record.clientId, row.jobId)).job?.state ?? JobState.FINISHED;
    }
    const outcome = row.outcome;
    return create(DatasetRowSchema, {
      index: row.index,
      id: row.rowId,
      jobId: row.jobId ?? '',
      state,
      status: outcome ? Status[outcome.status as keyof typeof Status] ?? Status.FAILED : Status.UNSPECIFIED,
      ...(outcome?.iterationsToHit != null ? { iterationsToHit: outcome.iterationsToHit } : {}),
      bestNll: outcome?.bestNll ?? 0,
      iterations: outcome?.iterations ?? 0,
      elapsedMs: outcome?.elapsedMs ?? 0,
      error: outcome?.error ?? '',
      finishOrder: row.finishOrder ?? 0,
    });
  }
}

/** The data set room as a server wires it: the store beside the job store's, the runner and the handlers. */
export interface Datasets {
  readonly service: DatasetServiceImpl;
  readonly runner: DatasetRunner;
  /** Stop the runner, then close the store (before the job store closes). */
  close(): Promise<void>;
}

/** Start the runner and the handlers on an open data set store, which the data sets own and close from here on. */
export function createDatasets(deps: { store: DatasetRepository; hub: DatasetHub; jobs: JobRepository; models: ModelCatalog;
  log: Logger; runner?: Partial<DatasetRunnerOptions> }): Datasets {
  const { store } = deps;
  const runner = new DatasetRunner(store, deps.hub, deps.jobs, deps.models, deps.log, deps.runner);
  const service = new DatasetServiceImpl(store, runner, deps.hub, deps.models);
  return {
    service,
    runner,
    async close() {
      await runner.close();
      await store.close();
    },
  };
}

function targetOf(row: DatasetRowInput): RowTarget {
  return row.target.case === 'targetIds' ? { ids: [...row.target.value.ids] } : { text: row.target.value ?? '' };
}

function firstRepeatedId(rows: readonly DatasetRowInput[]): { id: string; index: number; first: number } | undefined {
  const seen = new Map<string, number>();
  for (const [index, row] of rows.entries()) {
    const first = seen.get(row.id);
    if (first !== undefined) return { id: row.id, index, first };
    seen.set(row.id, index);
  }
  return undefined;
}

/** Hash what makes two data sets the same: the model, the settings and the rows, in order. */
function hashContent(model: string, settings: JobSettings, rows: readonly DatasetRowInput[]): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ model, settings: toJson(JobSettingsSchema, settings) }));
  for (const row of rows) {
    const target = row.target.case === 'targetIds' ? { ids: row.target.value.ids } : { text: row.target.value };
    hash.update('\n').update(JSON.stringify([row.id, target]));
  }
  return `sha256:${hash.digest('hex')}`;
}
