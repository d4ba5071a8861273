import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { callDeadline, MAX_WIRE_TIMEOUT_MS, onAbort, wireDeadline } from './call-options.js';
import { RingfenceClient } from './index.js';
import { useFakeServer } from './test-server.js';

const env = useFakeServer();

// Found by review: a signal shared by 11 or more calls in flight printed MaxListenersExceededWarning.
describe('onAbort', () => {
  it('one listener on the signal however many wait; each runs once on abort, unless un-registered', () => {
    const ac = new AbortController();
    const ran: number[] = [];
    const offs = Array.from({ length: 20 }, (_, i) => onAbort(ac.signal, () => ran.push(i)));
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(1);
    offs[3]!();
    ac.abort();
    expect(ran).toEqual(Array.from({ length: 20 }, (_, i) => i).filter((i) => i !== 3));
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  });

  it('none left once every registration is undone; a later one listens again', () => {
    const ac = new AbortController();
    const offs = Array.from({ length: 12 }, () => onAbort(ac.signal, () => {}));
    for (const off of offs) off();
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    let ran = 0;
    onAbort(ac.signal, () => ran++);
    ac.abort();
    expect(ran).toBe(1);
  });
});

describe('callDeadline', () => {
  it('the earlier of deadline and timeoutMs; the default only without either; 0 and Infinity are none', () => {
    const soon = new Date(Date.now() + 1000);
    expect(callDeadline({ deadline: soon, timeoutMs: 60_000 })).toEqual(soon);
    expect(callDeadline({ deadline: soon }, 10)).toEqual(soon);
    expect(callDeadline({}, 60_000)!.getTime()).toBeGreaterThan(Date.now() + 59_000);
    expect(callDeadline({ timeoutMs: 0 }, 60_000)).toBeUndefined();
    expect(callDeadline({ timeoutMs: Infinity }, 60_000)).toBeUndefined();
  });

  it('refuses an invalid Date and a NaN or negative timeout, which meant no timeout at all (found by review)', () => {
    expect(() => callDeadline({ deadline: new Date(Number.NaN) }, 30_000)).toThrow(new RangeError('deadline is an invalid Date'));
    for (const t of [-1, Number.NaN]) expect(() => callDeadline({ timeoutMs: t }, 30_000)).toThrow(RangeError);
  });

  it('a timeout or deadline beyond what gRPC carries is none: the call settles (found by review: grpc-js threw where no one could catch it)', async () => {
    const settled = <T>(p: Promise<T>) => Promise.race([p.then(() => 'resolved', (e: Error) => `rejected: ${e.message}`), new Promise<string>((r) => setTimeout(() => r('pending'), 5000))]);
    for (const timeoutMs of [1e15, Number.MAX_SAFE_INTEGER]) {
      expect(callDeadline({ timeoutMs })).toBeUndefined();
      expect(await settled(env.client.hash('x', 'sha256', { timeoutMs })), String(timeoutMs)).toBe('resolved');
    }
    expect(callDeadline({ deadline: new Date(Date.now() + 1e15) })).toBeUndefined();
    expect(await settled(env.client.hash('x', 'sha256', { deadline: new Date(Date.now() + 1e15) }))).toBe('resolved');
    const far = new RingfenceClient({ socketPath: env.fake.socketPath, defaultTimeoutMs: 1e15 });
    try {
      expect(await settled(far.hash('x'))).toBe('resolved');
      const s = far.session();
      expect(await settled(s.hash('x'))).toBe('resolved');
      await s.close();
    } finally {
      await far.close();
    }
  });

  it('a timeout of days to centuries reaches the daemon as none and is kept by the SDK (review by helper-103: grpc-js servers wrapped it past 2^31 ms and failed the call at once)', { timeout: 20_000 }, async () => {
    const DAY = 86_400_000;
    const near = new Date(Date.now() + 20 * DAY);
    expect(wireDeadline(near)).toEqual({ wire: near });
    const far = new Date(Date.now() + MAX_WIRE_TIMEOUT_MS + 5000);
    expect(wireDeadline(far)).toEqual({ wire: Infinity, local: far });
    expect(wireDeadline(undefined)).toEqual({ wire: Infinity });
    // The fake server's "slow" key answers after 5 s, unless the deadline it read has passed.
    const t0 = Date.now();
    const r = await env.client.encrypt('slow', 'x', { timeoutMs: 30 * DAY }).then(() => 'ok', (e: Error) => e.message);
    expect(r).toBe('ok');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(4500);
  });

  it('a NaN or negative defaultTimeoutMs is refused, as timeoutMs is; so is createKey with a NaN rotation period (found by review)', async () => {
    for (const bad of [Number.NaN, -1]) expect(() => new RingfenceClient({ socketPath: env.fake.socketPath, defaultTimeoutMs: bad }), String(bad)).toThrow(RangeError);
    await expect(env.client.createKey('nan-rotation', { rotationPeriodMs: Number.NaN })).rejects.toThrow(RangeError);
  });

  it('a call or session operation given one rejects with the RangeError; the session stays usable', async () => {
    await expect(env.client.hash('x', 'sha256', { deadline: new Date(Number.NaN) })).rejects.toThrow(RangeError);
    const s = env.client.session();
    await expect(s.hash('x', 'sha256', { timeoutMs: -5 })).rejects.toThrow(RangeError);
    expect((await s.hash('x')).digest.length).toBe(32);
    await s.close(); // would hang if the refused operation had been counted
  });
});

// Review by helper-208: options of the wrong type, as plain JavaScript passes them.
describe('call options of the wrong type', () => {
  const wrong = { signal: new AbortController() as unknown as AbortSignal };
  const typeError = new TypeError('signal must be an AbortSignal (controller.signal, not the AbortController), got [object AbortController]');

  it('a timeoutMs or defaultTimeoutMs that is a string is a TypeError, not silently no timeout at all', async () => {
    expect(() => callDeadline({ timeoutMs: '100' as never }, 30_000)).toThrow(new TypeError('timeoutMs must be a number of milliseconds, got [object String]'));
    expect(() => new RingfenceClient({ socketPath: env.fake.socketPath, defaultTimeoutMs: '5000' as never })).toThrow(TypeError);
    await expect(env.client.encrypt('slow', 'x', { timeoutMs: '100' as never })).rejects.toThrow(TypeError);
    expect(() => callDeadline({ deadline: Date.now() + 1000 } as never)).toThrow(new TypeError('deadline must be a Date, got [object Number]'));
    // Unset, as null too: the default timeout.
    expect(callDeadline({ timeoutMs: null, deadline: null } as never, 60_000)!.getTime()).toBeGreaterThan(Date.now() + 59_000);
  });

  it('a signal that is not an AbortSignal (the AbortController itself) is a TypeError before any RPC, not once the daemon did the operation', async () => {
    const keys = env.fake.stats.calls.CreateKey ?? 0;
    const refused = await env.client.createKey('made-anyway', wrong).catch((e: unknown) => e);
    // It was created while the caller got a TypeError.
    await expect(env.client.getKey('made-anyway')).rejects.toMatchObject({ codeName: 'NOT_FOUND' });
    expect(env.fake.stats.calls.CreateKey ?? 0).toBe(keys);
    expect(refused).toEqual(typeError);
  });

  it('... and for streams and sessions: no stream left open for good (holding the process alive), no session left unable to close', async () => {
    const streams = () => ['EncryptStream', 'DecryptStream', 'HashStream'].map((m) => env.fake.stats.calls[m] ?? 0);
    const before = streams();
    const thrown = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e;
      }
    };
    const errors = [
      thrown(() => env.client.encryptStream('k', wrong)),
      thrown(() => env.client.decryptStream(wrong)),
      await env.client.hashStream((async function* () { yield 'x'; })(), 'sha256', wrong).catch((e: unknown) => e),
    ];
    await env.client.getStatus(); // any stream opened meanwhile has reached the fake by now
    expect(streams()).toEqual(before); // they were opened, and never ended
    expect(errors).toEqual([typeError, typeError, typeError]);
    expect(() => env.client.session(wrong)).toThrow(typeError);
    const s = env.client.session();
    await expect(s.hash('x', 'sha256', wrong)).rejects.toThrow(typeError);
    await s.close(); // hung: the refused operation stayed counted as unsettled
  });
});
