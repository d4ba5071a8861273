/**
 * SIGTERM and SIGINT: the first of either starts a graceful stop; from then on neither is handled,
 * so a second one, of either kind, takes the default action and ends the daemon at once (a stuck
 * drain can always be cut short, by hand as by systemd).
 */
export type StopSignal = 'SIGTERM' | 'SIGINT';

export function firstStopSignal(proc: Pick<NodeJS.Process, 'on' | 'off'>, onSignal: (signal: StopSignal) => void): Promise<void> {
  return new Promise((resolve) => {
    const handlers = {
      SIGTERM: () => stop('SIGTERM'),
      SIGINT: () => stop('SIGINT'),
    };
    const stop = (signal: StopSignal) => {
      // Both off: with no listener left, Node restores the signal's default action.
      for (const [name, handler] of Object.entries(handlers)) proc.off(name, handler);
      onSignal(signal);
      resolve();
    };
    for (const [name, handler] of Object.entries(handlers)) proc.on(name, handler);
  });
}
