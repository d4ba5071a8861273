/**
 * A timer for any instant, however far away. Node's setTimeout holds at most 2^31-1 ms (24.8 days);
 * a longer delay fires after 1 ms with a TimeoutOverflowWarning, which would turn a 40-day deadline
 * into an immediate one. This re-arms at the cap until the instant is reached.
 */
const MAX_DELAY_MS = 2 ** 31 - 1;

/** Calls `fn` at `atMs` (epoch ms); returns the cancel function. The timer does not keep the process alive if `unref`. */
export function setTimeoutAt(fn: () => void, atMs: number, unref = false): () => void {
  let timer: NodeJS.Timeout;
  const arm = () => {
    const left = atMs - Date.now();
    timer = left > MAX_DELAY_MS ? setTimeout(arm, MAX_DELAY_MS) : setTimeout(fn, Math.max(0, left));
    if (unref) timer.unref();
  };
  arm();
  return () => clearTimeout(timer);
}
