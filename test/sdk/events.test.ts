import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { eventTypes, flattenJobEvent } from '../../sdk/index.js';
import type { ReciteEvent } from '../../sdk/index.js';
import { JobEventSchema, Status } from '../../sdk/gen/recite/v1/recite_pb.js';
import { scriptedEvents } from './fake-recite.js';

describe('flattenJobEvent', () => {
  it('flattens each oneof case into a typed event carrying the message fields under their proto names', () => {
    const events = scriptedEvents(1).map((e) => flattenJobEvent('job-9', e));
    expect(events.map((e) => e?.type)).toEqual(eventTypes);
    const [queued, started, progress, restartResult, result] = events as ReciteEvent[];
    expect(queued).toMatchObject({ type: 'queued', jobId: 'job-9', sequence: 1, position: 2 });
    expect(started).toMatchObject({ type: 'started', sequence: 2, restart: 0, seed: 7, promptVectors: 3, parameterCount: 96 });
    expect(progress).toMatchObject({ type: 'progress', sequence: 3, iteration: 0, nllSum: 10, argmaxText: 'it 0' });
    expect(restartResult).toMatchObject({ type: 'restart_result', status: Status.HIT, decodedText: 'Hello world' });
    expect(result).toMatchObject({ type: 'result', sequence: 5, status: Status.HIT, targetText: 'Hello world', model: 'tiny' });
  });

  it('keeps JobEvent fields and the raw event, and drops protobuf-es bookkeeping', () => {
    const raw = scriptedEvents(1)[2];
    const event = flattenJobEvent('job-9', raw);
    expect(event?.raw).toBe(raw);
    expect(event?.time).toEqual(raw.time);
    expect(event).not.toHaveProperty('$typeName');
    expect(event).not.toHaveProperty('kind');
  });

  it('narrows by type', () => {
    const event = flattenJobEvent('job-9', scriptedEvents(1)[2]);
    if (event?.type !== 'progress') throw new Error('expected progress');
    const nll: number = event.nllSum; // compiles only when narrowed to the Progress fields
    expect(nll).toBe(10);
  });

  it('returns undefined for an event without a known kind (a newer server)', () => {
    expect(flattenJobEvent('job-9', create(JobEventSchema, { sequence: 3 }))).toBeUndefined();
  });
});
