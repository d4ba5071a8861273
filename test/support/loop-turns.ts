/**
 * Counts turns of the event loop (setImmediate callbacks) until stopped: work that blocks the loop
 * while it runs leaves the count at 0.
 */
export function countLoopTurns(): { stop(): number } {
  let turns = 0;
  let counting = true;
  const tick = () => {
    turns++;
    if (counting) setImmediate(tick);
  };
  setImmediate(tick);
  return {
    stop() {
      counting = false;
      return turns;
    },
  };
}
