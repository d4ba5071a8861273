import { describe, expect, it } from 'vitest';
import { EXEMPT_CALLS_PER_CALLER, MemoryBudget } from './memory-budget.js';

const turn = () => new Promise((r) => setImmediate(r));

describe('MemoryBudget', () => {
  it('a share waits for room while the budget is exhausted and it holds bytes; wakes when bytes go back', async () => {
    const budget = new MemoryBudget(100);
    const a = budget.share();
    const b = budget.share();
    a.take(60);
    b.take(50);
    expect(budget.exhausted).toBe(true);
    // A call holding nothing may always start one piece of work.
    expect(budget.share().mayStart).toBe(true);
    let roomed = false;
    const waiting = b.reserve(10, new AbortController().signal).then(() => (roomed = true));
    await turn();
    expect([roomed, budget.waiters]).toEqual([false, 1]);
    a.give(5); // 105 held: still exhausted, nobody woken
    await turn();
    expect(roomed).toBe(false);
    a.give(20);
    await waiting;
    expect([budget.held, budget.waiters]).toEqual([95, 0]); // 85, and the 10 it reserved
  });

  it('a share waiting while others keep the budget exhausted goes on once its own bytes are all given back', async () => {
    // Found by review: a stream waits for room for its next chunk while its previous answer is
    // unflushed; that answer's flush brings it to zero, which must wake it even though another
    // call (a client that reads nothing) keeps the budget exhausted.
    const budget = new MemoryBudget(100);
    const stuck = budget.share();
    const stream = budget.share();
    stream.take(20);
    stuck.take(100);
    let resumed = false;
    const waiting = stream.reserve(10, new AbortController().signal).then(() => (resumed = true));
    await turn();
    stream.give(5);
    await turn();
    expect(resumed).toBe(false); // still holds 15
    stream.give(15);
    await waiting;
    expect([resumed, budget.exhausted, budget.waiters]).toEqual([true, true, 0]);
  });

  it('an aborted wait rejects with the reason and leaves no waiter behind', async () => {
    const budget = new MemoryBudget(10);
    const s = budget.share();
    s.take(20);
    const stop = new AbortController();
    const waiting = s.reserve(5, stop.signal);
    await turn();
    expect(budget.waiters).toBe(1);
    stop.abort(new Error('gone'));
    await expect(waiting).rejects.toThrow('gone');
    expect([budget.waiters, budget.held]).toEqual([0, 20]);
  });

  it('close gives back everything the share holds; later gives and takes change nothing', () => {
    const budget = new MemoryBudget(1000);
    const s = budget.share();
    s.take(300);
    s.give(500); // never more than it holds
    expect(budget.held).toBe(0);
    s.take(300);
    s.close();
    expect(budget.held).toBe(0);
    s.take(100);
    s.give(100);
    expect(budget.held).toBe(0);
  });
});

describe('MemoryBudget: each caller holds at most its part', () => {
  it('a caller at its part waits while another caller still starts work; it goes on when its own calls give back', async () => {
    const budget = new MemoryBudget(100, 40);
    const greedy = [budget.share('uid:1000'), budget.share('uid:1000')];
    greedy[0]!.take(25);
    greedy[1]!.take(15);
    expect([budget.exhausted, budget.heldBy('uid:1000')]).toEqual([false, 40]);
    // At its part: its calls that hold bytes wait; a call of it holding nothing may still start one.
    expect(greedy.map((s) => s.mayStart)).toEqual([false, false]);
    expect(budget.share('uid:1000').mayStart).toBe(true);
    // Another caller is not held back by it.
    const other = budget.share('uid:2000');
    other.take(30);
    expect(other.mayStart).toBe(true);
    let resumed = false;
    const waiting = greedy[0]!.reserve(5, new AbortController().signal).then(() => (resumed = true));
    await turn();
    other.give(30); // bytes back, but not this caller's: it stays at its part
    await turn();
    expect([resumed, budget.waiters]).toEqual([false, 1]);
    greedy[1]!.give(10);
    await waiting;
    expect([resumed, budget.heldBy('uid:1000'), budget.waiters]).toEqual([true, 35, 0]);
  });

  it('whenMayStart wakes once, when the whole budget has room again, and can be cancelled', async () => {
    const budget = new MemoryBudget(100, 100);
    const a = budget.share('a');
    const b = budget.share('b');
    a.take(50);
    b.take(50);
    let woken = 0;
    const cancel = a.whenMayStart(() => woken++);
    let other = 0;
    const cancelOther = b.whenMayStart(() => other++);
    cancelOther();
    b.give(10);
    b.give(10);
    expect([woken, other, budget.waiters]).toEqual([1, 0, 0]);
    cancel(); // after it fired: harmless
    expect(a.whenMayStart(() => woken++)).toBeTypeOf('function');
    expect(woken).toBe(2); // it may start now: called at once
  });

  it('forgets a caller once its last share is closed and nothing is held', () => {
    const budget = new MemoryBudget(100, 50);
    const s = budget.share('uid:7');
    s.take(20);
    s.close();
    s.close();
    expect([budget.held, budget.heldBy('uid:7')]).toEqual([0, 0]);
    expect(budget.callerCount).toBe(0);
  });

  it('a caller with many calls holding nothing gets at most EXEMPT_CALLS_PER_CALLER operations beyond its part (found by review)', () => {
    // The defaults: 512 MiB in all, 128 MiB per caller, operations of up to 8 MiB (4 MiB request + answer).
    const MiB = 1024 * 1024;
    const budget = new MemoryBudget(512 * MiB, 128 * MiB);
    const greedy = Array.from({ length: 64 }, () => budget.share('uid:1000'));
    // Each Session starts operations while it may (flow()); 64 of them, from one uid.
    for (let round = 0; round < 4; round++) for (const s of greedy) if (s.mayStart) s.take(8 * MiB);
    expect(budget.heldBy('uid:1000')).toBe(128 * MiB + EXEMPT_CALLS_PER_CALLER * 8 * MiB);
    expect(budget.exhausted).toBe(false);
    const other = budget.share('uid:2000');
    expect(other.mayStart).toBe(true);
    other.take(300 * MiB);
    expect(other.mayStart).toBe(false); // at its own part
  });

  it('a call holding nothing waits while its caller has no exemption free, and is woken when one frees', async () => {
    const budget = new MemoryBudget(100, 10);
    const holders = Array.from({ length: EXEMPT_CALLS_PER_CALLER + 1 }, () => budget.share('a'));
    holders[0]!.take(10); // the part is full
    for (const s of holders.slice(1, EXEMPT_CALLS_PER_CALLER + 1)) {
      expect(s.mayStart).toBe(true);
      s.take(5); // beyond the part, exempt
    }
    const late = budget.share('a');
    expect(late.mayStart).toBe(false);
    let resumed = false;
    const waiting = late.reserve(5, new AbortController().signal).then(() => (resumed = true));
    await turn();
    holders[0]!.give(10); // bytes back, but the caller still holds 20 of its 10: no room
    await turn();
    expect(resumed).toBe(false);
    holders[1]!.give(5); // an exempt call holds nothing again: its exemption is free
    await waiting;
    expect([resumed, budget.waiters]).toEqual([true, 0]);
  });

  it('close() cancels a wait still pending and forgets the caller (found by review)', () => {
    const budget = new MemoryBudget(10, 10);
    const a = budget.share('uid:7');
    const b = budget.share('uid:8');
    a.take(5);
    b.take(10);
    let fired = 0;
    a.whenMayStart(() => fired++);
    expect(budget.waiters).toBe(1);
    a.close();
    expect([budget.waiters, budget.callerCount, fired]).toEqual([0, 1, 0]);
    b.close();
    expect([budget.waiters, budget.callerCount, fired, budget.held]).toEqual([0, 0, 0, 0]);
  });

  it('a reserve() waiting when its share is closed throws, holding nothing (found by review)', async () => {
    const budget = new MemoryBudget(100);
    const other = budget.share();
    other.take(100);
    const s = budget.share();
    s.take(1);
    const waiting = s.reserve(10, new AbortController().signal);
    await turn();
    expect(budget.waiters).toBe(1);
    s.close();
    await expect(waiting).rejects.toThrow('the call ended while it waited for room in the buffer budget');
    other.close();
    expect([budget.waiters, budget.held, budget.callerCount]).toEqual([0, 0, 0]);
  });

  it('streams waiting at once take no more than the bounds allow when room or an exemption frees (found by review)', async () => {
    // A stream's reserve() used to await the room and take afterwards: every waiter woken together
    // saw the room (or the free exemption) before any of them took, and all went beyond the bound.
    const budget = new MemoryBudget(1000, 100);
    // Twelve streams holding nothing and four holding a byte will all wait for 10 bytes each.
    const holding = Array.from({ length: 4 }, () => budget.share('a'));
    for (const s of holding) s.take(1);
    const full = budget.share('a');
    full.take(96); // the caller's part is full
    const exempt = Array.from({ length: EXEMPT_CALLS_PER_CALLER }, () => budget.share('a'));
    for (const s of exempt) s.take(10); // all its exemptions are in use
    const stop = new AbortController();
    const empty = Array.from({ length: 12 }, () => budget.share('a'));
    const started = new Set<object>();
    const waits = [...empty, ...holding].map((s) => s.reserve(10, stop.signal).then(() => started.add(s), () => {}));
    await turn();
    expect([started.size, budget.heldBy('a')]).toEqual([0, 140]);
    exempt[0]!.give(10); // one exemption frees: one stream that holds nothing may start, not twelve
    await turn();
    await turn();
    expect([started.size, budget.heldBy('a')]).toEqual([1, 140]);
    full.give(96); // 44 held of a part of 100: room, but only until it is used
    await turn();
    await turn();
    // Each started while the part had room: the last to start found the caller just below its part.
    expect(budget.heldBy('a')).toBeLessThan(100 + EXEMPT_CALLS_PER_CALLER * 10 + 10);
    expect(budget.heldBy('a')).toBe(44 + 10 * (started.size - 1));
    expect(started.size).toBe(7); // 44 -> 104 after six more; the rest wait
    // The other streams' bytes go back: every stream still waiting starts, those holding bytes
    // included (found by review: a wake for a free exemption alone once dropped them from the
    // waiters, for good). Their own bytes stay: giving those back would wake them on its own.
    for (const s of [...exempt, ...empty]) s.give(s.held);
    for (let i = 0; i < 4 && started.size < 16; i++) await turn();
    expect(holding.filter((s) => started.has(s))).toHaveLength(4);
    expect(started.size).toBe(16);
    stop.abort(new Error('over'));
    await Promise.all(waits);
    expect(budget.waiters).toBe(0);
  });
});

