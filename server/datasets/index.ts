// Data sets: a client's list of targets run server-side as jobs with one set of settings, stored and resumable.
export { createDatasets, DatasetServiceImpl } from './dataset-service.js';
export type { DatasetHub, Datasets } from './dataset-service.js';
export { DatasetRunner, datasetRunnerDefaults, jobLabel, makeDatasetRunnerOptions } from './dataset-runner.js';
export type { DatasetRunnerHub, DatasetRunnerOptions, LiveCounts } from './dataset-runner.js';
export { DatasetStoreError } from './dataset-repository.js';
export type {
  DatasetRecord, DatasetRepository, DatasetRowRecord, DatasetState, NewDataset, RowCounts, RowOutcome, RowState, RowTarget,
} from './dataset-repository.js';
export { SqliteDatasetStore } from './dataset-store.js';
export { sampleReachableTargets } from './reachable-targets.js';
export type { ReachableTarget } from './reachable-targets.js';
