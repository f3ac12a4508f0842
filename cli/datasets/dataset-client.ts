// A DatasetService client for the CLI's data set commands, on the connection the other commands use (the same base
// URL and bearer token, Connect over fetch with the binary encoding: results carry embeddings).
import { createClient } from '@connectrpc/connect';
import type { Client } from '@connectrpc/connect';
import { createReciteTransport } from '../../sdk/index.js';
import { DatasetService } from '../../sdk/gen/recite/v1/dataset_pb.js';

export type DatasetClient = Client<typeof DatasetService>;

/** Create a DatasetService client for `baseUrl` that sends `token`. */
export function createDatasetClient(connection: { baseUrl: string; token: string }): DatasetClient {
  return createClient(DatasetService, createReciteTransport(connection.baseUrl, { token: connection.token }));
}
