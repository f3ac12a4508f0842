// A transport for Node only: Connect over Node's own HTTP/1.1 or HTTP/2 client, which takes TLS options the fetch
// API has no place for (a private CA's certificate, for a server with a self-signed or in-house certificate). Not
// exported from index.ts, so the browser bundle stays free of Node modules; import it from node.ts (the package's
// Node entry: '@recite/sdk' under Node, or '@recite/sdk/node').
import type { Transport } from '@connectrpc/connect';
import { Code, ConnectError } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { withBearerToken } from './auth.js';

/** Configure createReciteNodeTransport. */
export interface ReciteNodeTransportOptions {
  /** Sent as `authorization: Bearer <token>` on every call. */
  token?: string;
  /** PEM certificate(s) to trust for an https server, in place of the system's CAs. */
  ca?: string | Uint8Array;
  /** '2' (the default for https: one multiplexed connection) or '1.1'. */
  httpVersion?: '1.1' | '2';
}

/** Create a Connect transport (binary encoding) to `baseUrl` over Node's HTTP client. */
export function createReciteNodeTransport(baseUrl: string, options: ReciteNodeTransportOptions = {}): Transport {
  const url = new URL(baseUrl);
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ConnectError(`create recite transport: ${baseUrl} is not an http:// or https:// URL`, Code.InvalidArgument);
  }
  if (options.ca !== undefined && url.protocol !== 'https:') {
    throw new ConnectError(`create recite transport: a CA certificate was given for ${baseUrl}, which is not https://`,
      Code.InvalidArgument);
  }
  const httpVersion = options.httpVersion ?? (url.protocol === 'https:' ? '2' : '1.1');
  const ca = options.ca === undefined ? undefined : typeof options.ca === 'string' ? options.ca : Buffer.from(options.ca);
  const transport = createConnectTransport({
    baseUrl, httpVersion, useBinaryFormat: true, ...(ca !== undefined ? { nodeOptions: { ca } } : {}),
  });
  return options.token === undefined ? transport : withBearerToken(transport, options.token);
}
