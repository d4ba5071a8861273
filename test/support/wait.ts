/** Waiting helpers for tests that watch another process (the daemon) change. */

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls until `check` holds or `ms` passed; returns the last value seen (the caller asserts on it). */
export async function waitFor<T>(read: () => T, check: (v: T) => boolean, ms: number): Promise<T> {
  const until = Date.now() + ms;
  let v = read();
  while (!check(v) && Date.now() < until) {
    await sleep(100);
    v = read();
  }
  return v;
}

/** Polls until `cond` holds; throws naming `what` after `timeoutMs`. */
export async function until(what: string, cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** Waits until `value()` has not changed for `quietMs` (the daemon stopped making progress). */
export async function settled(value: () => number, quietMs: number, timeoutMs = 120_000): Promise<number> {
  const end = Date.now() + timeoutMs;
  let last = value();
  let since = Date.now();
  for (;;) {
    await sleep(100);
    const v = value();
    if (v !== last) {
      last = v;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return v;
    if (Date.now() > end) throw new Error('the value never settled');
  }
}
