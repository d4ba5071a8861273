import type { RingfenceError } from '../../src/client/sdk/index.js';

/** The error a call (or stream) that must fail rejected with; an error of its own if it succeeded. */
export async function failure(p: Promise<unknown>): Promise<RingfenceError> {
  return p.then(
    () => {
      throw new Error('expected the call to fail, and it succeeded');
    },
    (e: unknown) => e as RingfenceError,
  );
}
