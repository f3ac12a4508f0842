// The job scheduler: how a server that runs jobs gets them. It claims unfinished jobs of the models it has ready from
// the store (jobs nobody holds, or whose holder's lease ran out: a server that died), as many as it has room for,
// and keeps its leases alive with a heartbeat. A job created anywhere wakes it at once (the store's 'created'
// notice); a claim every `claimEveryMs` catches expired leases and anything a notice missed. A renewal that finds a
// lease gone (another server took the job over while this one was paused) stops the job here.
import type { Logger } from 'pino';
import type { ClaimedJob, JobRepository, Lease } from '../store/job-repository.js';
import { isStoreFault } from '../store/job-repository.js';

/** Options of {@link JobScheduler}. */
export interface JobSchedulerOptions {
  /** The lease owner this server claims as. */
  serverId: string;
  /** How long a claim or a renewal holds a job, in ms; renewed every third of it. */
  leaseMs: number;
  /** Wait between two claims when nothing wakes the scheduler, in ms. */
  claimEveryMs: number;
  /**
   * Whether only this server uses the store (a SQLite file): its first claim then takes every unfinished job, since
   * any lease left in the file is this server's previous run's.
   */
  exclusive: boolean;
}

/** What the scheduler asks of the hub. */
export interface SchedulerClient {
  /** The models this server can run now. */
  readyModels(): string[];
  /** How many more jobs this server takes on now. */
  room(): number;
  /** Start a claimed job here. */
  start(claimed: ClaimedJob): Promise<void>;
  /** The leases to renew. */
  leases(): Lease[];
  /** Stop these jobs here: their leases are gone. */
  leasesLost(jobIds: readonly string[]): void;
  /** Say that the store failed at a claim (the server is not ready until it writes again). */
  storeFailed(error: unknown, what: string): void;
}

export class JobScheduler {
  private claimTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private claiming: Promise<number> | undefined;
  private claimAgain = false;
  private firstClaim = true;
  private stopped = false;
  /** Jobs claimed since the start, and the time the last claim took (metrics, bench). */
  claimed = 0;
  lastClaimMs = 0;

  constructor(private readonly store: JobRepository, private readonly options: JobSchedulerOptions,
    private readonly client: SchedulerClient, private readonly log: Logger) {}

  /** Claim what there is now, then keep claiming and renewing until stop(). Resolves with the first claim's count. */
  async start(): Promise<number> {
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), Math.max(1, Math.floor(this.options.leaseMs / 3)));
    this.heartbeatTimer.unref();
    const first = await this.claim();
    this.scheduleClaim();
    return first;
  }

  /** Claim now (a job was created, or room was freed); a claim under way is followed by one more. */
  wake(): void {
    if (this.stopped) return;
    void this.claim();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.claimTimer);
    clearInterval(this.heartbeatTimer);
  }

  private scheduleClaim(): void {
    if (this.stopped) return;
    clearTimeout(this.claimTimer);
    this.claimTimer = setTimeout(() => {
      void this.claim().finally(() => this.scheduleClaim());
    }, this.options.claimEveryMs);
    this.claimTimer.unref();
  }

  private claim(): Promise<number> {
    if (this.claiming) {
      this.claimAgain = true;
      return this.claiming;
    }
    this.claiming = this.claimUntilDone().finally(() => { this.claiming = undefined; });
    return this.claiming;
  }

  private async claimUntilDone(): Promise<number> {
    let total = 0;
    do {
      this.claimAgain = false;
      total += await this.claimOnce();
    } while (this.claimAgain && !this.stopped);
    return total;
  }

  private async claimOnce(): Promise<number> {
    const models = this.client.readyModels();
    const room = this.client.room();
    if (this.stopped || models.length === 0 || room <= 0) return 0;
    const started = performance.now();
    let claimed: ClaimedJob[];
    try {
      claimed = await this.store.claimJobs(this.options.serverId, models, room, this.options.leaseMs,
        { ignoreLeases: this.firstClaim && this.options.exclusive });
    } catch (error: unknown) {
      // The next claim tries again; a store fault also makes the server not ready until the store writes again.
      if (isStoreFault(error)) this.client.storeFailed(error, 'claim jobs');
      else this.log.error({ err: error }, 'claiming jobs failed');
      return 0;
    }
    this.firstClaim = false;
    this.lastClaimMs = performance.now() - started;
    this.claimed += claimed.length;
    for (const job of claimed) {
      if (this.stopped) break;
      await this.client.start(job);
    }
    // A full claim may have left more behind.
    if (claimed.length === room) this.claimAgain = true;
    return claimed.length;
  }

  private async heartbeat(): Promise<void> {
    const leases = this.client.leases();
    if (this.stopped || leases.length === 0) return;
    let lost: string[];
    try {
      lost = await this.store.renewLeases(this.options.serverId, leases, this.options.leaseMs);
    } catch (error: unknown) {
      this.log.error({ err: error }, 'renewing job leases failed');
      return;
    }
    if (lost.length > 0) {
      this.log.warn({ jobIds: lost }, 'job leases lost at renewal: another server has taken these jobs over');
      this.client.leasesLost(lost);
    }
  }
}
