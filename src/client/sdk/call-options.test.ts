import { describe, expect, it } from 'vitest';
import { callDeadline } from './call-options.js';
import { useFakeServer } from './test-server.js';

const env = useFakeServer();

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

  it('a call or session operation given one rejects with the RangeError; the session stays usable', async () => {
    await expect(env.client.hash('x', 'sha256', { deadline: new Date(Number.NaN) })).rejects.toThrow(RangeError);
    const s = env.client.session();
    await expect(s.hash('x', 'sha256', { timeoutMs: -5 })).rejects.toThrow(RangeError);
    expect((await s.hash('x')).digest.length).toBe(32);
    await s.close(); // would hang if the refused operation had been counted
  });
});
