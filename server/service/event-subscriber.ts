// One reader of a job's live events, with bounded memory: once `maxProgress` progress reports wait, the reader is
// behind and new reports are coalesced by the one rule of server/service/coalescing-queue.ts; queued, started,
// restart results and the result are never dropped.
import type { JobEvent } from '../../sdk/gen/recite/v1/recite_pb.js';
import { CoalescingQueue } from './coalescing-queue.js';

export class EventSubscriber implements AsyncIterable<JobEvent> {
  private readonly queue = new CoalescingQueue();
  private wake: (() => void) | undefined;
  private closed = false;

  /** @param maxProgress progress reports that may wait before new ones are merged into them */
  constructor(private readonly maxProgress: number) {}

  /** The number of events waiting (bounded by maxProgress plus one per restart and the other events). */
  get size(): number {
    return this.queue.size;
  }

  /** Progress reports merged away so far (for metrics and tests). */
  get coalesced(): number {
    return this.queue.coalesced;
  }

  push(event: JobEvent): void {
    if (this.closed) return;
    this.queue.push(event, this.queue.progressWaiting >= this.maxProgress);
    this.wake?.();
  }

  close(): void {
    this.closed = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<JobEvent> {
    for (;;) {
      const next = this.queue.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.closed) return;
      await new Promise<void>((resolve) => { this.wake = resolve; });
      this.wake = undefined;
    }
  }
}
