// The service's faces for the rooms above it (the dashboard, the data sets): each room depends on the few methods it
// uses, declared here, not on the JobHub or ModelRegistry classes, so the hub can be taken apart behind them. JobHub
// and ModelRegistry implement these; the compiler checks that they still do.
import type { ClientLimits } from './client-policy.js';
import type { ModelEntry, ModelRunner, ReadyModelEntry } from './model-registry.js';
import type { InversionLimits } from '../engine/settings.js';
import type { Job, JobEvent, JobSpec, JobState } from '../../sdk/gen/recite/v1/recite_pb.js';

/** A change to a job that a live job list shows: the job was created, or it emitted an event of this kind. */
export interface JobChange {
  clientId: string;
  jobId: string;
  kind: 'created' | 'queued' | 'started' | 'progress' | 'restart_result' | 'result';
}

/** Start and stop jobs on a client's behalf. */
export interface JobSubmission {
  submit(clientId: string, spec: JobSpec): Promise<{ jobId: string; queuePosition: number }>;
  cancel(clientId: string, jobId: string): Promise<JobState>;
}

/** Read a client's jobs. */
export interface JobQueries {
  getJob(clientId: string, jobId: string): Promise<Job>;
  listJobs(clientId: string, pageSize: number, beforeJobId: string): Promise<Job[]>;
}

/** Follow one job's events: its stored history, then live until the result. */
export interface JobStreams {
  watch(clientId: string, jobId: string, afterSequence: number, signal: AbortSignal): AsyncIterable<JobEvent>;
}

/** Hear of every job change (the live job lists). */
export interface JobChanges {
  onJobChange(listener: (change: JobChange) => void): () => void;
}

/** A client's limits and what it uses of them now. */
export interface ClientQuotas {
  limitsOf(clientId: string): ClientLimits;
  clientUse(clientId: string): Promise<{ jobs: number; bytes: number }>;
}

/** The limits a new job's settings are checked against on this server. */
export interface SettingsLimits {
  readonly options: { readonly limits: InversionLimits };
}

/** The models a server serves. */
export interface ModelCatalog {
  readonly defaultModel: string;
  ready(): Promise<void>;
  list(): ModelEntry[];
  require(name: string, field?: string): ReadyModelEntry;
  /** As require, and refused on a server that runs no models; `work` names what the request asked to run. */
  requireRunner(name: string, field?: string, work?: string): ModelRunner & { name: string };
}
