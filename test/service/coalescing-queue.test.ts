// The one coalescing rule for slow readers (server/service/coalescing-queue.ts), on hand-made events: what merges,
// what never does, and the counts that let a reader account for every report.
import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { CoalescingQueue } from '../../server/service/coalescing-queue.js';
import { JobEventSchema } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { JobEvent } from '../../sdk/gen/recite/v1/recite_pb.js';

const progress = (restart: number, iteration: number): JobEvent =>
  create(JobEventSchema, { kind: { case: 'progress', value: { restart, iteration } } });
const restartResult = (restart: number): JobEvent =>
  create(JobEventSchema, { kind: { case: 'restartResult', value: { restart } } });

function describeAll(events: JobEvent[]): string[] {
  return events.map((e) => e.kind.case === 'progress'
    ? `p${e.kind.value.restart}:${e.kind.value.iteration}+${e.kind.value.coalesced}`
    : e.kind.case === 'restartResult' ? `r${e.kind.value.restart}` : String(e.kind.case));
}

describe('CoalescingQueue', () => {
  it('keeps every event in order while the reader keeps up', () => {
    const q = new CoalescingQueue();
    for (let i = 1; i <= 3; i++) q.push(progress(0, i), false);
    expect(describeAll(q.takeAll())).toEqual(['p0:1+0', 'p0:2+0', 'p0:3+0']);
    expect(q.coalesced).toBe(0);
  });

  it('lets a report pushed while behind absorb the waiting report of its restart, counting the chain', () => {
    const q = new CoalescingQueue();
    q.push(progress(0, 1), false);
    for (let i = 2; i <= 5; i++) q.push(progress(0, i), true);
    expect(q.progressWaiting).toBe(1);
    expect(q.coalesced).toBe(4);
    // 5 absorbed 4, which had absorbed 3, 2 and 1: the reader can tell that 4 reports were merged into it.
    expect(describeAll(q.takeAll())).toEqual(['p0:5+4']);
  });

  it('never merges across a restart result, and never merges other events', () => {
    const q = new CoalescingQueue();
    q.push(progress(0, 9), true);
    q.push(restartResult(0), true);
    q.push(progress(1, 1), true);
    q.push(progress(1, 2), true);
    q.push(restartResult(1), true);
    q.push(create(JobEventSchema, { kind: { case: 'result', value: {} } }), true);
    expect(describeAll(q.takeAll())).toEqual(['p0:9+0', 'r0', 'p1:2+1', 'r1', 'result']);
  });

  it('merges into a copy, leaving the shared event other readers hold untouched', () => {
    const q = new CoalescingQueue();
    const shared = progress(0, 2);
    q.push(progress(0, 1), true);
    q.push(shared, true);
    const [merged] = q.takeAll();
    expect(merged!.kind.value).toMatchObject({ iteration: 2, coalesced: 1 });
    expect(shared.kind.case === 'progress' && shared.kind.value.coalesced).toBe(0);
  });

  it('counts the waiting progress as events leave one by one', () => {
    const q = new CoalescingQueue();
    q.push(progress(0, 1), false);
    q.push(restartResult(0), false);
    expect([q.size, q.progressWaiting]).toEqual([2, 1]);
    q.shift();
    expect([q.size, q.progressWaiting]).toEqual([1, 0]);
  });
});
