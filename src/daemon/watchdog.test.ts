import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { startNotifyReceiver } from '../../test/support/notify-receiver.js';
import { notifyReliably, startWatchdog, watchdogIntervalMs, type Watchdog } from './watchdog.js';

const dir = mkdtempSync(join(process.env.TMPDIR ?? '/tmp', 'rf-watchdog-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A real NOTIFY_SOCKET (Python, independent of our FFI) in this test's directory. */
const notifySocket = (name: string) => startNotifyReceiver(join(dir, name));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let running: Watchdog | undefined;
afterEach(() => running?.stop());

describe('watchdogIntervalMs', () => {
  it('is half of WATCHDOG_USEC, for us or for anyone', () => {
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000' }, 42)).toBe(15_000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '42' }, 42)).toBe(15_000);
  });
  it("is within Node's timer range for a WatchdogSec= of years (found by review: beyond it a timer fires every 1 ms)", async () => {
    expect(watchdogIntervalMs({ WATCHDOG_USEC: String(50 * 86_400 * 1e6) }, 42)).toBe(2 ** 31 - 1);
    let sent = 0;
    running = startWatchdog({ env: { NOTIFY_SOCKET: '/nonexistent', WATCHDOG_USEC: String(50 * 86_400 * 1e6) }, send: () => void sent++ });
    await new Promise((r) => setTimeout(r, 100));
    expect(sent).toBe(0);
  });
  it('is off without WATCHDOG_USEC, for another pid, or for nonsense', () => {
    expect(watchdogIntervalMs({}, 42)).toBeNull();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '43' }, 42)).toBeNull();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '0' }, 42)).toBeNull();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '-5' }, 42)).toBeNull();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '3e7' }, 42)).toBeNull();
  });
});

// A Python receiver starts in each test: seconds on a loaded host (the 5 s default timed out in a review).
describe('startWatchdog over a real NOTIFY_SOCKET', { timeout: 30_000 }, () => {
  it('sends WATCHDOG=1 every half interval and STATUS= when it changes', async () => {
    const sock = await notifySocket('ping');
    try {
      let keys = 1;
      // Fake timers: the pings are counted by interval, not by how fast this machine is.
      vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
      try {
        running = startWatchdog({ env: { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '200000', WATCHDOG_PID: String(process.pid) }, status: () => `serving ${keys} keys` });
        expect(running.intervalMs).toBe(100);
        vi.advanceTimersByTime(350); // 3 pings
        keys = 2;
        vi.advanceTimersByTime(300); // 3 more
        running.stop();
        vi.advanceTimersByTime(1000); // none
      } finally {
        vi.useRealTimers();
      }
      // The datagrams were sent synchronously; the receiver (another process) reports them as they come.
      for (let i = 0; i < 100 && sock.messages.length < 6; i++) await sleep(50);
      await sleep(200);
      expect(sock.messages.length).toBe(6);
      for (const m of sock.messages) expect(m.split('\n')[0]).toBe('WATCHDOG=1');
      const statuses = sock.messages.filter((m) => m.includes('STATUS='));
      expect(statuses).toEqual(['WATCHDOG=1\nSTATUS=serving 2 keys']);
    } finally {
      sock.close();
    }
  });

  it('sends nothing when WATCHDOG_PID names another process', async () => {
    const sock = await notifySocket('other');
    try {
      running = startWatchdog({ env: { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '100000', WATCHDOG_PID: String(process.pid + 1) } });
      expect(running.intervalMs).toBeNull();
      await sleep(300);
      expect(sock.messages).toEqual([]);
    } finally {
      sock.close();
    }
  });

  it('sends STATUS= changes without a watchdog', async () => {
    const sock = await notifySocket('status');
    try {
      let n = 0;
      let ticks = -1; // status() is read once at the start, then once per tick
      running = startWatchdog({ env: { NOTIFY_SOCKET: sock.path }, status: () => { ticks++; return `step ${n}`; }, statusIntervalMs: 50 });
      // Ticks counted, not slept through: an unchanged status is not sent, however slow the host.
      await vi.waitFor(() => expect(ticks).toBeGreaterThanOrEqual(2), { timeout: 10_000 });
      n = 1;
      await vi.waitFor(() => expect(sock.messages.length).toBeGreaterThan(0), { timeout: 10_000 });
      // Then no repeat: more ticks, and a settle for the receiver (another process) to print any.
      const seen = ticks;
      await vi.waitFor(() => expect(ticks).toBeGreaterThanOrEqual(seen + 2), { timeout: 10_000 });
      await sleep(200);
      expect(sock.messages).toEqual(['STATUS=step 1']);
    } finally {
      sock.close();
    }
  });

  it('warns once, and keeps running, when the socket is gone', async () => {
    const warnings: string[] = [];
    running = startWatchdog({ env: { NOTIFY_SOCKET: join(dir, 'absent'), WATCHDOG_USEC: '100000' }, warn: (m) => warnings.push(m) });
    await sleep(300);
    expect(warnings).toEqual(['sd_notify failed (watchdog/status)']);
  });

  it('sends a STATUS= lost to a full queue again with the next tick (found by review)', async () => {
    let status = 'starting';
    const sent: string[] = [];
    let full = false;
    const send = (state: string) => {
      if (full) throw Object.assign(new Error('EAGAIN'), { code: 'EAGAIN' });
      sent.push(state);
    };
    running = startWatchdog({ env: { NOTIFY_SOCKET: '/unused' }, status: () => status, statusIntervalMs: 20, send, warn: () => {} });
    full = true;
    status = 'serving 3 keys';
    await sleep(100);
    full = false;
    await sleep(100);
    expect(sent).toEqual(['STATUS=serving 3 keys']);
  });
});

describe('notifyReliably', () => {
  const eagain = () => Object.assign(new Error('sd_notify: EAGAIN'), { code: 'EAGAIN' });

  it('tries READY=1 again while the manager answers EAGAIN, then delivers it once', async () => {
    vi.useFakeTimers();
    try {
      const tries: string[] = [];
      const warnings: string[] = [];
      const send = (state: string) => {
        tries.push(state);
        if (tries.length <= 3) throw eagain();
      };
      notifyReliably('READY=1', { env: { NOTIFY_SOCKET: '/unused' }, send, warn: (m) => warnings.push(m) });
      await vi.advanceTimersByTimeAsync(50 + 100 + 200);
      expect(tries).toEqual(['READY=1', 'READY=1', 'READY=1', 'READY=1']);
      await vi.advanceTimersByTimeAsync(60_000);
      expect([tries.length, warnings]).toEqual([4, []]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('stops retrying when cancelled (READY=1 must not arrive after STOPPING=1; found by review)', async () => {
    vi.useFakeTimers();
    try {
      let tries = 0;
      const cancel = notifyReliably('READY=1', { env: { NOTIFY_SOCKET: '/unused' }, send: () => { tries++; throw eagain(); }, warn: () => {} });
      await vi.advanceTimersByTimeAsync(50 + 100);
      expect(tries).toBe(3);
      expect(vi.getTimerCount()).toBe(1);
      cancel();
      expect(vi.getTimerCount()).toBe(0);
      await vi.advanceTimersByTimeAsync(60_000);
      expect(tries).toBe(3);
    } finally {
      vi.useRealTimers();
    }
  });

  it('warns, without retrying, on other errors, and after ~13 s of EAGAIN', async () => {
    vi.useFakeTimers();
    try {
      const warnings: string[] = [];
      let tries = 0;
      notifyReliably('READY=1', { env: { NOTIFY_SOCKET: '/unused' }, send: () => { tries++; throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' }); }, warn: (m) => warnings.push(m) });
      expect([tries, warnings]).toEqual([1, ['sd_notify failed']]);
      tries = 0;
      warnings.length = 0;
      notifyReliably('READY=1', { env: { NOTIFY_SOCKET: '/unused' }, send: () => { tries++; throw eagain(); }, warn: (m) => warnings.push(m) });
      await vi.advanceTimersByTimeAsync(60_000);
      expect([tries, warnings]).toEqual([9, ['sd_notify failed']]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('sends nothing without NOTIFY_SOCKET', () => {
    const send = vi.fn();
    notifyReliably('READY=1', { env: {}, send, warn: () => {} });
    expect(send).not.toHaveBeenCalled();
  });
});
