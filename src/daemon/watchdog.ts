/**
 * systemd's service watchdog and STATUS= updates (sd_watchdog_enabled(3) semantics): when
 * WATCHDOG_USEC is set, and WATCHDOG_PID is unset or ours, send WATCHDOG=1 every half interval
 * from the event loop, so a wedged loop gets the daemon restarted. STATUS= is re-sent when the
 * status text changes. Without NOTIFY_SOCKET nothing is sent.
 */
import { sdNotify } from '../../native-ffi/sd-notify.js';

export interface WatchdogOptions {
  env?: NodeJS.ProcessEnv;
  pid?: number;
  /** The STATUS= text; sent when it changes. */
  status?: () => string;
  /** How often STATUS= is checked when there is no watchdog (ms). */
  statusIntervalMs?: number;
  send?: (state: string, socket: string) => void;
  warn?: (msg: string, fields?: object) => void;
}

export interface Watchdog {
  /** The ping interval in ms, or null when systemd asked for no watchdog. */
  readonly intervalMs: number | null;
  stop(): void;
}

/** The longest delay Node's timers take. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Half of WATCHDOG_USEC in ms, or null when the watchdog is off or not meant for `pid`. */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv, pid: number): number | null {
  const usec = env.WATCHDOG_USEC;
  if (!usec || !/^\d+$/.test(usec) || Number(usec) === 0) return null;
  const owner = env.WATCHDOG_PID;
  if (owner !== undefined && owner !== '' && owner !== String(pid)) return null;
  // Node's timers take at most 2^31-1 ms and fire every 1 ms beyond it (found by review: a
  // WatchdogSec= over ~50 days pinged systemd a thousand times a second).
  return Math.min(MAX_TIMER_MS, Math.max(1, Math.floor(Number(usec) / 2000)));
}

export function startWatchdog(opts: WatchdogOptions = {}): Watchdog {
  const env = opts.env ?? process.env;
  const socket = env.NOTIFY_SOCKET;
  const intervalMs = watchdogIntervalMs(env, opts.pid ?? process.pid);
  if (!socket || (intervalMs === null && !opts.status)) return { intervalMs: null, stop() {} };
  const send = opts.send ?? ((state, path) => void sdNotify(state, path));
  let warned = false;
  let lastStatus = opts.status?.();
  const tick = () => {
    const parts: string[] = [];
    if (intervalMs !== null) parts.push('WATCHDOG=1');
    const status = opts.status?.();
    if (status !== undefined && status !== lastStatus) parts.push(`STATUS=${status}`);
    if (parts.length === 0) return;
    try {
      send(parts.join('\n'), socket);
      // Only once sent: a status lost to a full queue (EAGAIN) goes with the next tick (found by review).
      if (status !== undefined) lastStatus = status;
      warned = false;
    } catch (err) {
      if (!warned) opts.warn?.('sd_notify failed (watchdog/status)', { err });
      warned = true;
    }
  };
  const timer = setInterval(tick, intervalMs ?? opts.statusIntervalMs ?? 5000);
  timer.unref();
  return {
    intervalMs,
    stop() {
      clearInterval(timer);
    },
  };
}

/**
 * Sends a state (READY=1, STOPPING=1) that must arrive: sends never block the event loop, so a
 * manager whose queue is full answers EAGAIN, and the send is tried again with backoff (for about
 * 12 s in all) rather than lost, which would leave a Type=notify unit to time out (found by review).
 * Returns a cancel for the retries (READY=1 must not arrive after STOPPING=1); they never keep the
 * process alive.
 */
export function notifyReliably(state: string, opts: { env?: NodeJS.ProcessEnv; send?: (state: string, socket: string) => void; warn: (msg: string, fields?: object) => void }): () => void {
  const socket = (opts.env ?? process.env).NOTIFY_SOCKET;
  if (!socket) return () => {};
  const send = opts.send ?? ((s, path) => void sdNotify(s, path));
  let timer: NodeJS.Timeout | undefined;
  const attempt = (n: number): void => {
    timer = undefined;
    try {
      send(state, socket);
    } catch (err) {
      if ((err as { code?: string }).code === 'EAGAIN' && n < 8) {
        timer = setTimeout(() => attempt(n + 1), 50 * 2 ** n);
        timer.unref();
        return;
      }
      opts.warn('sd_notify failed', { err });
    }
  };
  attempt(0);
  return () => clearTimeout(timer);
}
