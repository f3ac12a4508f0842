// The job feed: who hears of what a job does. Live readers of one job (WatchJob, the dashboard's job view) get its
// events through a bounded EventSubscriber each; change listeners (the dashboard's job lists, the data sets) hear
// of every job created and every event kind emitted. The feed only fans out: numbering and storing are the job
// log's, admission and ownership the hub's.
import type { JobEvent } from '../../sdk/gen/recite/v1/recite_pb.js';
import { EventSubscriber } from './event-subscriber.js';
import type { JobChange } from './hub-ports.js';

export class JobFeed {
  private readonly subscribers = new Map<string, Set<EventSubscriber>>();
  private readonly changeListeners = new Set<(change: JobChange) => void>();

  /**
   * @param subscriberBuffer progress events a subscriber may have waiting before older ones are coalesced
   * @param onListenerError told when a change listener throws (its bug must not stop the job that reported it)
   */
  constructor(private readonly subscriberBuffer: number,
    private readonly onListenerError: (error: unknown, change: JobChange) => void) {}

  /** Open a reader of `jobId`'s live events from now on; remove it with {@link unsubscribe}. */
  subscribe(jobId: string): EventSubscriber {
    const subscriber = new EventSubscriber(this.subscriberBuffer);
    let readers = this.subscribers.get(jobId);
    if (!readers) this.subscribers.set(jobId, readers = new Set());
    readers.add(subscriber);
    return subscriber;
  }

  unsubscribe(jobId: string, subscriber: EventSubscriber): void {
    const readers = this.subscribers.get(jobId);
    if (!readers) return;
    readers.delete(subscriber);
    if (readers.size === 0) this.subscribers.delete(jobId);
  }

  /** Whether anyone reads `jobId` live: the hub decodes an event for readers only when there are some. */
  hasReaders(jobId: string): boolean {
    return this.subscribers.has(jobId);
  }

  /** Hand `event` of `jobId` to its live readers. */
  publish(jobId: string, event: JobEvent): void {
    for (const subscriber of this.subscribers.get(jobId) ?? []) subscriber.push(event);
  }

  /** End `jobId`'s live readers (the job moved to another server: they follow it in the store). */
  closeJob(jobId: string): void {
    for (const subscriber of this.subscribers.get(jobId) ?? []) subscriber.close();
  }

  /** End every live reader (shutdown: their jobs resume after the restart, and the readers watch again). */
  closeAll(): void {
    for (const readers of this.subscribers.values()) for (const subscriber of readers) subscriber.close();
  }

  /** Call `listener` for every job change; returns the function that removes it. */
  onJobChange(listener: (change: JobChange) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /** Tell every change listener of `change`. */
  announce(change: JobChange): void {
    for (const listener of this.changeListeners) {
      try {
        listener(change);
      } catch (error: unknown) {
        this.onListenerError(error, change);
      }
    }
  }
}
