// The recite SDK: a typed client for ReciteService, for browsers and Node.
export { createReciteClient, createReciteTransport } from './client.js';
export type {
  CallOptions,
  DecodeOptions,
  InvertCallOptions,
  ListJobsOptions,
  ReciteClient,
  ReciteClientOptions,
  ScoreOptions,
  TokenizeOptions,
  WatchJobOptions,
} from './client.js';
export { eventTypes, flattenJobEvent } from './events.js';
export type {
  EventHeader,
  ProgressEvent,
  QueuedEvent,
  ReciteEvent,
  RestartResultEvent,
  ResultEvent,
  StartedEvent,
} from './events.js';
export { toJobSettings, toJobSpec, toTensor } from './job-settings.js';
export { enumNames } from './enum-names.js';
export type { EnumName } from './enum-names.js';
export type {
  DecodeOption,
  InitOption,
  InvertOptions,
  JobSpecOptions,
  OptimizerName,
  ParameterizationOption,
  ScheduleName,
  TensorInput,
} from './job-settings.js';
export { bearerAuth, withBearerToken } from './auth.js';
export { Code, ConnectError } from '@connectrpc/connect';
export type { Interceptor, Transport } from '@connectrpc/connect';
export * from './gen/recite/v1/recite_pb.js';
