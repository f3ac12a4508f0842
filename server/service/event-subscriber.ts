// One reader of a job's live events, with bounded memory: when a reader falls behind, older progress reports
// are merged into newer ones (their count kept in `coalesced`); queued, started, restart results and the result
// are never dropped.
import { clone } from '@bufbuild/protobuf';
import { JobEventSchema } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { JobEvent } from '../../sdk/gen/recite/v1/recite_pb.js';

export class EventSubscriber implements AsyncIterable<JobEvent> {
  private readonly queue: JobEvent[] = [];
  private progressQueued = 0;
  private wake: (() => void) | undefined;
  private closed = false;
  /** Progress reports merged away so far (for metrics and tests). */
  coalesced = 0;

  /** @param maxProgress progress reports that may wait before the oldest is merged into its successor */
  constructor(private readonly maxProgress: number) {}

  /** The number of events waiting (bounded by maxProgress plus the non-progress events). */
  get size(): number {
    return this.queue.length;
  }

  push(event: JobEvent): void {
    if (this.closed) return;
    this.queue.push(event);
    if (event.kind.case === 'progress') {
      this.progressQueued++;
      if (this.progressQueued > this.maxProgress) this.dropOldestProgress();
    }
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
        if (next.kind.case === 'progress') this.progressQueued--;
        yield next;
        continue;
      }
      if (this.closed) return;
      await new Promise<void>((resolve) => { this.wake = resolve; });
      this.wake = undefined;
    }
  }

  // Merge the oldest waiting progress report into the next one of the same restart (or drop it when the restart
  // has none waiting after it: its newer state is already on the way).
  private dropOldestProgress(): void {
    const index = this.queue.findIndex((e) => e.kind.case === 'progress');
    if (index < 0) return;
    const [dropped] = this.queue.splice(index, 1);
    this.progressQueued--;
    this.coalesced++;
    if (dropped?.kind.case !== 'progress') return;
    const restart = dropped.kind.value.restart;
    const at = this.queue.findIndex((e, i) => i >= index && e.kind.case === 'progress' && e.kind.value.restart === restart);
    if (at < 0) return;
    // Events are shared between subscribers: count the merge on this subscriber's own copy.
    const successor = clone(JobEventSchema, this.queue[at]!);
    if (successor.kind.case === 'progress') successor.kind.value.coalesced += dropped.kind.value.coalesced + 1;
    this.queue[at] = successor;
  }
}
