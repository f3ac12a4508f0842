// Submit a data set and follow it to the end through DatasetService: the server does the work, this side only
// collects. A stream cut by a server restart is picked up again after the last row it delivered.
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { TokenIdsSchema } from '../../sdk/index.js';
import type { JobSettings } from '../../sdk/index.js';
import { DatasetRowInputSchema } from '../../sdk/gen/recite/v1/dataset_pb.js';
import type { Dataset, FinishedRow } from '../../sdk/gen/recite/v1/dataset_pb.js';
import type { DatasetClient } from './dataset-client.js';
import type { DatasetFileRow } from './dataset-file.js';

/** A data set to submit. */
export interface DatasetSubmission {
  /** '' lets the server name it by its content hash, which a rerun of the same file and settings finds again. */
  name: string;
  /** '' means the server's default model. */
  model: string;
  settings: JobSettings;
  rows: readonly DatasetFileRow[];
}

/** Configure followDataset. */
export interface FollowOptions {
  /** Rows that finished after this place in the finish order (0: all). */
  afterFinishOrder: number;
  /** Send each finished row's job (result and embedding). */
  includeResults: boolean;
  signal?: AbortSignal;
  /** How long to keep trying to reach a server that went away, in ms. */
  reconnectForMs?: number;
  /** Called for every message: the counts now and the rows that finished since the last one. */
  onUpdate(dataset: Dataset, rows: readonly FinishedRow[]): void;
}

const reconnectDelayMs = 1000; // ms between attempts to reach the server again
const defaultReconnectForMs = 120_000; // ms
const reconnectable = new Set([Code.Unavailable, Code.Unknown, Code.Internal, Code.Aborted, Code.DeadlineExceeded]);

/** Store the data set on the server (or find the stored one of the same name and content). */
export async function submitDataset(client: DatasetClient, submission: DatasetSubmission): Promise<{ dataset: Dataset; created: boolean }> {
  const rows = submission.rows.map((row) => create(DatasetRowInputSchema, {
    id: row.id,
    target: row.targetIds
      ? { case: 'targetIds', value: create(TokenIdsSchema, { ids: row.targetIds }) }
      : { case: 'text', value: row.text },
  }));
  const response = await client.submitDataset({ name: submission.name, model: submission.model, settings: submission.settings, rows });
  if (!response.dataset) throw new ConnectError('submit data set: the server sent no data set', Code.Internal);
  return { dataset: response.dataset, created: response.created };
}

/**
 * Follow data set `name` until every row has finished (resolves with its last state) or `signal` aborts (resolves
 * with the state seen last). A lost connection is retried for `reconnectForMs` from the last row received.
 */
export async function followDataset(client: DatasetClient, name: string, options: FollowOptions): Promise<Dataset | undefined> {
  let cursor = options.afterFinishOrder;
  let last: Dataset | undefined;
  let failingSince: number | undefined;
  for (;;) {
    try {
      const stream = client.watchDataset({ name, afterFinishOrder: cursor, includeResults: options.includeResults },
        { signal: options.signal });
      for await (const message of stream) {
        failingSince = undefined;
        if (!message.dataset) continue;
        last = message.dataset;
        options.onUpdate(message.dataset, message.rows);
        cursor = message.rows.at(-1)?.row?.finishOrder ?? cursor;
      }
      return last;
    } catch (error: unknown) {
      if (options.signal?.aborted) return last;
      const e = ConnectError.from(error);
      failingSince ??= Date.now();
      if (!reconnectable.has(e.code) || Date.now() - failingSince > (options.reconnectForMs ?? defaultReconnectForMs)) throw e;
      await new Promise((resolve) => setTimeout(resolve, reconnectDelayMs));
    }
  }
}
