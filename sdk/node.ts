// The recite SDK for Node: everything of index.ts, and a transport over Node's HTTP client (TLS with a private CA).
export * from './index.js';
export { createReciteNodeTransport } from './node-transport.js';
export type { ReciteNodeTransportOptions } from './node-transport.js';
