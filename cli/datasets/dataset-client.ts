// A DatasetService client for the CLI's data set commands, on the connection the other commands use (the same
// transport: base URL, bearer token, TLS settings, binary encoding since results carry embeddings).
import { createClient } from '@connectrpc/connect';
import type { Client, Transport } from '@connectrpc/connect';
import { DatasetService } from '../../sdk/gen/recite/v1/dataset_pb.js';

export type DatasetClient = Client<typeof DatasetService>;

/** Create a DatasetService client on a connection's transport. */
export function createDatasetClient(connection: { transport: Transport }): DatasetClient {
  return createClient(DatasetService, connection.transport);
}
