// The fair-share policy on its own, with simulated costs: a light client is served every round beside a heavy one
// that pays for its expensive items by sitting rounds out; backlogged clients get equal time; a client's jobs take
// turns; a client alone takes a whole round.
import { describe, expect, it } from 'vitest';
import type { ShareItem } from '../../server/engine/fair-share.js';
import { FairShare } from '../../server/engine/fair-share.js';

interface Item extends ShareItem {
  actualMs: number;
}

function item(client: string, job: string, key: string, ms: number): Item {
  return { client, job, key, estimateMs: ms, actualMs: ms };
}

/** Run `rounds` rounds over a fixed set of items (each always wants another turn); return ms charged per client. */
function simulate(share: FairShare, items: Item[], rounds: number, onRound?: (selected: Item[], round: number) => void) {
  const charged = new Map<string, number>();
  for (let round = 0; round < rounds; round++) {
    const selected = share.select(items);
    onRound?.(selected, round);
    for (const s of selected) {
      share.charge(s.client, s.actualMs);
      charged.set(s.client, (charged.get(s.client) ?? 0) + s.actualMs);
    }
  }
  return charged;
}

describe('FairShare', () => {
  it('serves a light client every round while a heavy client\'s 100 ms items wait their turn', () => {
    const share = new FairShare({ minQuantumMs: 0.5, maxRoundMs: 50, share: 0.5 });
    const heavy = Array.from({ length: 160 }, (_, i) => item('heavy', `job-${i % 20}`, `h${i}`, 100));
    const light = item('light', 'one', 'l', 4);
    let lightServed = 0;
    const charged = simulate(share, [...heavy, light], 1000, (selected) => {
      if (selected.includes(light)) lightServed++;
    });
    expect(lightServed).toBe(1000);
    // The heavy client gets half the light client's 4 ms a round, in 100 ms pieces (to within one piece).
    expect(Math.abs(charged.get('heavy')! - 0.5 * charged.get('light')!)).toBeLessThanOrEqual(100);
    expect(charged.get('heavy')!).toBeGreaterThan(0);
  });

  it('gives two backlogged clients equal time whatever their item sizes', () => {
    const share = new FairShare({ minQuantumMs: 0.5, maxRoundMs: 50 });
    const a = Array.from({ length: 50 }, (_, i) => item('a', 'job', `a${i}`, 7));
    const b = Array.from({ length: 5 }, (_, i) => item('b', 'job', `b${i}`, 30));
    const charged = simulate(share, [...a, ...b], 2000);
    const ratio = charged.get('a')! / charged.get('b')!;
    expect(ratio).toBeGreaterThan(0.95);
    expect(ratio).toBeLessThan(1.05);
  });

  it('makes a client with one huge item a round pay for it like any other', () => {
    const share = new FairShare({ minQuantumMs: 0.5, maxRoundMs: 50, share: 0.5 });
    const huge = item('huge', 'job', 'x', 500); // one run whose every iteration costs 500 ms
    const many = Array.from({ length: 50 }, (_, i) => item('many', 'job', `m${i}`, 10));
    const charged = simulate(share, [huge, ...many], 2000);
    const ratio = charged.get('huge')! / charged.get('many')!;
    expect(ratio).toBeGreaterThan(0.9);
    expect(ratio).toBeLessThan(1.1);
  });

  it('takes a client\'s jobs in turn, then each job\'s items in turn', () => {
    const share = new FairShare({ minQuantumMs: 0.5, maxRoundMs: 50, share: 1 });
    // Client a takes one 10 ms item a round (b's demand sets the quantum): its three jobs and their items rotate.
    const a = ['x', 'y', 'z'].flatMap((job) => [0, 1].map((r) => item('a', job, `${job}${r}`, 10)));
    const b = item('b', 'job', 'b', 10);
    const order: string[] = [];
    simulate(share, [...a, b], 6, (selected) => order.push(...selected.filter((s) => s.client === 'a').map((s) => s.key as string)));
    expect(order).toEqual(['x0', 'y0', 'z0', 'x1', 'y1', 'z1']);
  });

  it('lets a client alone take a whole round (up to maxRoundMs) and owe nothing for it', () => {
    const share = new FairShare({ minQuantumMs: 0.5, maxRoundMs: 50 });
    const a = Array.from({ length: 100 }, (_, i) => item('a', 'job', `a${i}`, 1));
    const selected = share.select(a);
    expect(selected).toHaveLength(50);
    for (let i = 0; i < selected.length; i++) share.charge('a', 500); // far more than estimated
    expect(share.deficit('a')).toBe(0);
    // A newcomer is served at once, and a keeps its turn too: nothing from its solo rounds is held against it.
    const b = item('b', 'job', 'b', 1);
    const next = share.select([...a, b]);
    expect(next).toContain(b);
    expect(next.some((s) => s.client === 'a')).toBe(true);
  });
});
