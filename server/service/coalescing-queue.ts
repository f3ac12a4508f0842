// The one rule for a reader that falls behind a job's live events (a Connect stream in the hub, a dashboard
// socket): while the reader is behind, a new progress report replaces the report of its restart that is still
// waiting, and counts it in `coalesced`; queued, started, restart results and the result never merge and keep their
// order, after the progress that waited before them. The owner decides what "behind" means: progress reports
// waiting (the hub) or bytes the socket has not sent yet (the dashboard).
import { clone } from '@bufbuild/protobuf';
import { JobEventSchema } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { JobEvent } from '../../sdk/gen/recite/v1/recite_pb.js';

export class CoalescingQueue {
  private readonly waiting: JobEvent[] = [];
  private progressCount = 0;
  /** Progress reports merged into newer ones so far (for metrics and tests). */
  coalesced = 0;

  /** The number of events waiting. */
  get size(): number {
    return this.waiting.length;
  }

  /** The number of progress reports waiting. */
  get progressWaiting(): number {
    return this.progressCount;
  }

  /** Queue `event`; when `behind`, a progress report absorbs the waiting report of its restart. */
  push(event: JobEvent, behind: boolean): void {
    if (event.kind.case === 'progress') {
      this.progressCount++;
      if (behind) {
        const at = this.waitingProgressOf(event.kind.value.restart);
        if (at >= 0) event = this.absorb(at, event);
      }
    }
    this.waiting.push(event);
  }

  /** Take the oldest waiting event. */
  shift(): JobEvent | undefined {
    const event = this.waiting.shift();
    if (event?.kind.case === 'progress') this.progressCount--;
    return event;
  }

  /** Take every waiting event, oldest first. */
  takeAll(): JobEvent[] {
    const all = this.waiting.splice(0);
    this.progressCount = 0;
    return all;
  }

  // The waiting report of `restart` that no other kind of event follows: merging past a restart result or a result
  // would reorder them.
  private waitingProgressOf(restart: number): number {
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const kind = this.waiting[i]!.kind;
      if (kind.case !== 'progress') return -1;
      if (kind.value.restart === restart) return i;
    }
    return -1;
  }

  // Remove the report at `at` and return a copy of `event` that counts it (events are shared between readers).
  private absorb(at: number, event: JobEvent): JobEvent {
    const [older] = this.waiting.splice(at, 1);
    this.progressCount--;
    this.coalesced++;
    const merged = clone(JobEventSchema, event);
    if (merged.kind.case === 'progress' && older?.kind.case === 'progress') {
      merged.kind.value.coalesced += older.kind.value.coalesced + 1;
    }
    return merged;
  }
}
