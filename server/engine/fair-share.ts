// Fair share of one engine's rounds between clients, then between a client's jobs: deficit round-robin over
// measured milliseconds. Each round every client with work is credited the same quantum and takes work items (a run's
// iteration, a decode step, a result summary) in least-recently-served order, job by job, until its estimated cost
// covers its credit; afterwards it is charged what its items really took. A client that took more than its quantum
// (one beam check can cost a hundred light iterations) sits out rounds until its debt is paid, so a light client's
// work never waits behind more than about its own share of someone else's.
//
// The quantum is a share (options.share, 1/2) of the smallest demand among the clients with work (what the lightest
// client would take to advance everything it has once). A client whose work the round empties, within `maxRoundMs`,
// keeps no balance, as in DRR; so the lightest client is served every round, and a client with more than that gets
// half of what the lightest uses, in whatever pieces its items come: beside it, the lightest runs at 2/3 of its speed
// alone. With
// one client only, it takes everything up to `maxRoundMs` (nobody is waiting, and batching is worth most then) and
// owes nothing for it; the cap bounds how long a newcomer waits for the round in progress.

/** A piece of work that one client's job wants done this round. */
export interface ShareItem {
  client: string;
  job: string;
  /** Identity across rounds (a run, a task), for least-recently-served order. */
  key: unknown;
  /** Expected cost (milliseconds of graph and host time). */
  estimateMs: number;
  /**
   * A row of a shared graph run and little else (an iteration without a beam check): a client alone takes all of
   * these every round whatever their estimates, since splitting them over rounds only adds graph runs.
   */
  batched?: boolean;
}

export interface FairShareOptions {
  /** Credit per client per round at least (milliseconds): estimates of zero must not stall everyone. */
  minQuantumMs: number;
  /** Estimated length of a round at most (milliseconds), alone or not; one item always runs. */
  maxRoundMs: number;
  /**
   * Credit per round of each client, as a fraction of the smallest demand among the clients with work. At 1 every
   * client gets what the lightest needs, and the lightest (whose next item waits for this one: an iteration) runs
   * at half its speed alone at best, worse in practice: contention the charges cannot see (garbage collection,
   * caches, the streams between rounds) lands on it too. Below 1, a client that cannot finish its work within one
   * round gets that fraction of what the lightest uses.
   */
  share: number;
}

// 50 ms: long enough to batch dozens of gradient rows, short enough that a newcomer barely notices the round it waits for.
export const fairShareDefaults: Readonly<FairShareOptions> = Object.freeze({ minQuantumMs: 0.5, maxRoundMs: 50, share: 0.5 });

export class FairShare {
  private readonly deficits = new Map<string, number>(); // client → credit (ms); negative: debt
  private readonly served = new Map<unknown, number>(); // job or item key → tick of its last service
  private tick = 0;
  private rounds = 0;
  private readonly jobKeys = new WeakMap<ShareItem, string>();
  private solo: string | undefined; // the client alone in the last round: its charges are not debts
  private readonly emptied = new Set<string>(); // clients that took all their items in the last round

  readonly options: FairShareOptions;

  constructor(options: Partial<FairShareOptions> = {}) {
    this.options = { ...fairShareDefaults, ...options };
  }

  /** The credit (milliseconds) of a client now; negative while it pays off an expensive round. */
  deficit(client: string): number {
    return this.deficits.get(client) ?? 0;
  }

  /** Choose the items to run this round. */
  select<T extends ShareItem>(items: readonly T[]): T[] {
    const byClient = new Map<string, Map<string, T[]>>();
    for (const item of items) {
      const jobs = byClient.get(item.client) ?? new Map<string, T[]>();
      const list = jobs.get(item.job) ?? [];
      list.push(item);
      jobs.set(item.job, list);
      byClient.set(item.client, jobs);
    }
    // Every few rounds is enough to keep the bookkeeping of ended jobs from piling up; every round would cost a pass
    // over all items, paid in every light client's every iteration.
    if (++this.rounds % forgetEvery === 0) this.forgetAbsent(items, byClient);
    this.solo = undefined;
    this.emptied.clear();
    if (byClient.size === 1) {
      // Alone on the engine: no debt is owed to anyone (it would only hold this client back when another arrives).
      const [client, jobs] = [...byClient][0]!;
      this.solo = client;
      this.deficits.set(client, 0);
      const rows: T[] = [];
      for (const [job, list] of jobs) {
        rows.push(...list.filter((item) => item.batched));
        jobs.set(job, list.filter((item) => !item.batched));
      }
      for (const item of rows) this.mark(item);
      const rest = [...jobs.values()].some((list) => list.length > 0) ? this.take(jobs, this.options.maxRoundMs, rows.length > 0) : [];
      return [...rows, ...rest];
    }
    const demand = [...byClient.values()].map((jobs) =>
      [...jobs.values()].flat().reduce((sum, item) => sum + item.estimateMs, 0));
    const quantum = Math.min(this.options.maxRoundMs,
      Math.max(this.options.minQuantumMs, this.options.share * Math.min(...demand)));
    const selected: T[] = [];
    for (const [client, jobs] of byClient) {
      // Credit does not pile up past one quantum: a client that wanted less than it was given banks nothing.
      const credit = Math.min(this.deficit(client) + quantum, quantum);
      this.deficits.set(client, credit);
      if (credit <= 0) continue;
      const taken = this.take(jobs, credit);
      selected.push(...taken);
      // Only a round's worth is forgiven: one huge item (a long beam check) is paid for like any other.
      const estimated = taken.reduce((sum, item) => sum + item.estimateMs, 0);
      if ([...jobs.values()].every((list) => list.length === 0) && estimated <= this.options.maxRoundMs) {
        this.emptied.add(client);
      }
    }
    return selected;
  }

  /** Charge a client for work done (milliseconds measured). */
  charge(client: string, ms: number): void {
    if (client === this.solo) return;
    // As in DRR, a client whose queue the round emptied keeps no balance: it wanted less than its share (an estimate
    // below the real cost is no debt; it took at most one round's worth).
    if (this.emptied.has(client)) this.deficits.set(client, 0);
    else this.deficits.set(client, this.deficit(client) - ms);
  }

  // Take items in least-recently-served order until their estimates cover `credit` (at least one item, unless
  // `haveSome`).
  private take<T extends ShareItem>(jobs: Map<string, T[]>, credit: number, haveSome = false): T[] {
    const taken: T[] = [];
    let estimated = 0;
    while ((taken.length === 0 && !haveSome) || estimated < credit) {
      const item = this.leastRecentlyServed(jobs);
      if (!item) break;
      taken.push(item);
      estimated += item.estimateMs;
    }
    return taken;
  }

  // Take the least recently served item of the least recently served job, and mark both served now.
  private leastRecentlyServed<T extends ShareItem>(jobs: Map<string, T[]>): T | undefined {
    let bestJob: string | undefined;
    for (const [job, list] of jobs) {
      if (list.length === 0) continue;
      if (bestJob === undefined || this.lastServed(this.jobKey(list[0]!)) < this.lastServed(this.jobKey(jobs.get(bestJob)![0]!))) {
        bestJob = job;
      }
    }
    if (bestJob === undefined) return undefined;
    const list = jobs.get(bestJob)!;
    let at = 0;
    for (let i = 1; i < list.length; i++) if (this.lastServed(list[i]!.key) < this.lastServed(list[at]!.key)) at = i;
    const [item] = list.splice(at, 1);
    this.mark(item!);
    return item;
  }

  private lastServed(key: unknown): number {
    return this.served.get(key) ?? -1;
  }

  private mark(item: ShareItem): void {
    this.tick++;
    this.served.set(this.jobKey(item), this.tick);
    this.served.set(item.key, this.tick);
  }

  private jobKey(item: ShareItem): string {
    let key = this.jobKeys.get(item);
    if (key === undefined) {
      key = `${item.client}\u0000${item.job}`;
      this.jobKeys.set(item, key);
    }
    return key;
  }

  // Drop the bookkeeping of jobs, items and clients that have no work any more.
  private forgetAbsent(items: readonly ShareItem[], byClient: Map<string, unknown>): void {
    const present = new Set<unknown>();
    for (const item of items) {
      present.add(item.key);
      present.add(this.jobKey(item));
    }
    for (const key of this.served.keys()) if (!present.has(key)) this.served.delete(key);
    for (const [client, deficit] of this.deficits) {
      // An idle client banks no credit; a debt stays until paid (leaving for a moment does not clear it).
      if (!byClient.has(client) && deficit >= 0) this.deficits.delete(client);
    }
  }
}

const forgetEvery = 32; // rounds
