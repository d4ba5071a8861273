import { describe, expect, it } from 'vitest';
import { FairQueue, type Waiter } from './fair-queue.js';

const waiter = (log: string[], name: string): Waiter<number> => ({ resolve: () => log.push(name), reject: () => log.push(`${name} rejected`) });

describe('FairQueue', () => {
  it('serves owners in turns, each owner its own waiters in order', () => {
    const q = new FairQueue<number>(100, 100);
    const log: string[] = [];
    for (let i = 1; i <= 4; i++) q.push('a', waiter(log, `a${i}`));
    q.push('b', waiter(log, 'b1'));
    q.push('b', waiter(log, 'b2'));
    q.push('c', waiter(log, 'c1'));
    expect(q.length).toBe(7);
    for (let w = q.shift(); w; w = q.shift()) w.resolve(0);
    expect(log).toEqual(['a1', 'b1', 'c1', 'a2', 'b2', 'a3', 'a4']);
    expect(q.length).toBe(0);
  });

  it('a newcomer waits behind at most one waiter of each owner already queued', () => {
    const q = new FairQueue<number>(10_000, 10_000);
    const log: string[] = [];
    for (let i = 0; i < 1000; i++) q.push('flood', waiter(log, 'flood'));
    q.shift()!.resolve(0); // the flood's first is served
    q.push('newcomer', waiter(log, 'newcomer'));
    q.shift()!.resolve(0);
    q.shift()!.resolve(0);
    expect(log.slice(0, 3)).toEqual(['flood', 'flood', 'newcomer']);
  });

  it("bounds each owner's waiters and all of them", () => {
    const q = new FairQueue<number>(5, 2);
    const log: string[] = [];
    q.push('a', waiter(log, 'a'));
    q.push('a', waiter(log, 'a'));
    expect(q.full('a')).toBe('owner');
    expect(q.full('b')).toBeUndefined();
    q.push('b', waiter(log, 'b'));
    q.push('b', waiter(log, 'b'));
    q.push('c', waiter(log, 'c'));
    expect(q.full('d')).toBe('total');
    q.shift()!.resolve(0);
    expect(q.full('a')).toBeUndefined();
    // A per-owner bound above the total is the total.
    expect(new FairQueue<number>(1, 10).full('x')).toBeUndefined();
  });

  it('drain hands back every waiter and empties the queue', () => {
    const q = new FairQueue<number>(10, 10);
    const log: string[] = [];
    q.push('a', waiter(log, 'a'));
    q.push('b', waiter(log, 'b'));
    for (const w of q.drain()) w.reject(new Error('closed'));
    expect(log).toEqual(['a rejected', 'b rejected']);
    expect(q.length).toBe(0);
    expect(q.shift()).toBeUndefined();
  });
});
