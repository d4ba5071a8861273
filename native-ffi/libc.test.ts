// The libuv gate of callAsync: at most MAX_ASYNC_CALLS calls on the pool at once, and the calls
// waiting for a slot take turns across owners, so one caller's flood of large requests (over many
// keys) delays another caller's call by one of its own, not by all of them.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { callAsync, fns, MAX_ASYNC_CALLS } from './libc.js';

/** read(2) faked on the pool: each call records its fd and finishes only when the test says. */
const realRead = fns.read;
let started: number[] = [];
let finishers: (() => void)[] = [];

beforeEach(() => {
  started = [];
  finishers = [];
  const fakeRead = Object.assign(() => 0, {
    async: (fd: number, _buf: Buffer, _len: number, cb: (err: unknown, ret: number) => void) => {
      started.push(fd);
      finishers.push(() => cb(null, 0));
    },
  });
  fns.read = fakeRead as unknown as typeof fns.read;
});

afterEach(() => {
  fns.read = realRead;
});

const settle = () => new Promise((r) => setImmediate(r));

/** Finishes the oldest running call and lets the next waiter start. */
async function finishOne(): Promise<void> {
  finishers.shift()!();
  await settle();
}

describe('callAsync gate', () => {
  it("starts a second owner's waiting call before the first owner's remaining queue", async () => {
    const calls: Promise<number>[] = [];
    // Owner A fills every slot (fds 0..63), then queues 100 more (fds 1000..1099); B queues one (fd 2000).
    for (let i = 0; i < MAX_ASYNC_CALLS; i++) calls.push(callAsync('read', [i, Buffer.alloc(0), 0], undefined, 'uid:1001'));
    for (let i = 0; i < 100; i++) calls.push(callAsync('read', [1000 + i, Buffer.alloc(0), 0], undefined, 'uid:1001'));
    calls.push(callAsync('read', [2000, Buffer.alloc(0), 0], undefined, 'uid:1002'));
    await settle();
    expect(started).toHaveLength(MAX_ASYNC_CALLS);

    await finishOne();
    await finishOne();
    await finishOne();
    // A's first waiter had its turn first (it queued first), then B's, then A's again: not FIFO,
    // where B's call would start only after all 100 of A's.
    expect(started.slice(MAX_ASYNC_CALLS)).toEqual([1000, 2000, 1001]);

    while (finishers.length) {
      // The bound holds throughout: never more than MAX_ASYNC_CALLS running.
      expect(finishers.length).toBeLessThanOrEqual(MAX_ASYNC_CALLS);
      await finishOne();
    }
    await Promise.all(calls);
    expect(started).toHaveLength(MAX_ASYNC_CALLS + 101);
  });

  it('a call arriving as a slot frees queues behind the waiters: the bound holds exactly', async () => {
    const calls: Promise<number>[] = [];
    for (let i = 0; i < MAX_ASYNC_CALLS + 1; i++) calls.push(callAsync('read', [i, Buffer.alloc(0), 0]));
    await settle();
    // A call finishes; one microtask later (its slot freed, the waiter not yet resumed) another arrives.
    finishers.shift()!();
    await null;
    calls.push(callAsync('read', [999, Buffer.alloc(0), 0]));
    await settle();
    expect(started.slice(MAX_ASYNC_CALLS)).toEqual([MAX_ASYNC_CALLS]);
    expect(finishers).toHaveLength(MAX_ASYNC_CALLS);
    while (finishers.length) await finishOne();
    await Promise.all(calls);
    expect(started.at(-1)).toBe(999);
  });
});
