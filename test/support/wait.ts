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
