// The live job lists: the hub reports every job created and every event; this feed turns those into job summaries
// for the sockets of the job's client that asked for its list: at once on a state change, and every N-th progress
// event otherwise, gathered over a short delay so one summary serves a burst of changes.
import type { Logger } from 'pino';
import type { JobChange, JobChanges, JobQueries } from '../service/hub-ports.js';
import { jobSummaryJson } from './job-summary.js';

/** A socket that follows its client's job list. */
export interface JobListReader {
  readonly clientId: string;
  /** Send (or hold, while the socket is behind) a serialized `{"type":"job"}` message. */
  pushJob(jobId: string, message: string): void;
}

export interface JobListFeedOptions {
  /** Progress events of a job between two of its summaries. */
  every: number;
  /** Milliseconds over which changes are gathered into one round of summaries. */
  delayMs: number;
}

export class JobListFeed {
  private readonly readers = new Map<string, Set<JobListReader>>(); // client id → its sockets
  private readonly progressSince = new Map<string, number>(); // job id → progress events since its last summary
  private readonly dirty = new Map<string, string>(); // job id → client id
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private readonly unlisten: () => void;

  constructor(private readonly hub: JobChanges & JobQueries, private readonly options: JobListFeedOptions, private readonly log: Logger) {
    this.unlisten = hub.onJobChange((change) => this.onChange(change));
  }

  add(reader: JobListReader): void {
    let set = this.readers.get(reader.clientId);
    if (!set) this.readers.set(reader.clientId, set = new Set());
    set.add(reader);
  }

  remove(reader: JobListReader): void {
    const set = this.readers.get(reader.clientId);
    set?.delete(reader);
    if (set?.size === 0) this.readers.delete(reader.clientId);
  }

  close(): void {
    this.unlisten();
    clearTimeout(this.timer);
    this.readers.clear();
  }

  private onChange(change: JobChange): void {
    if (change.kind === 'result') this.progressSince.delete(change.jobId);
    if (!this.readers.has(change.clientId)) return;
    if (change.kind === 'progress') {
      const seen = (this.progressSince.get(change.jobId) ?? 0) + 1;
      this.progressSince.set(change.jobId, seen % this.options.every);
      if (seen < this.options.every) return;
    }
    this.dirty.set(change.jobId, change.clientId);
    if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.options.delayMs);
      this.timer.unref();
    }
  }

  // Summaries are read from the store, so a flush takes awaits: flushes run one after another, and a job's newer
  // summary never overtakes an older one on the way to a reader.
  private flush(): void {
    this.timer = undefined;
    const dirty = [...this.dirty];
    this.dirty.clear();
    this.flushing = this.flushing.then(() => this.send(dirty));
  }

  private async send(dirty: [string, string][]): Promise<void> {
    const messages = await Promise.all(dirty.map(async ([jobId, clientId]) => {
      if (!this.readers.has(clientId)) return undefined;
      try {
        return JSON.stringify({ type: 'job', job: jobSummaryJson(await this.hub.getJob(clientId, jobId)) });
      } catch (error: unknown) {
        // A submission that failed after it was announced leaves no job behind: nothing to show.
        this.log.debug({ jobId, err: error }, 'job summary skipped');
        return undefined;
      }
    }));
    dirty.forEach(([jobId, clientId], i) => {
      const message = messages[i];
      if (message === undefined) return;
      for (const reader of this.readers.get(clientId) ?? []) reader.pushJob(jobId, message);
    });
  }
}
