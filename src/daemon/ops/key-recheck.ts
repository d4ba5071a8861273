/**
 * The kernel's part of an operation on a key resolved before it, with the key checked again if the
 * kernel fails. A key deleted while its request waited for the kernel (for one of the key's
 * sockets, for the libuv pool) is gone from the kernel too: the request fails with the engine's
 * KEY_UNUSABLE (ENOKEY as its transform is keyed again, or the transform closed under it), which
 * answered INTERNAL. Checked again, it answers what it would have a moment later: NOT_FOUND, or
 * what another change acknowledged meanwhile says, as a success is checked after the kernel
 * (review by helper-197; helper-149 for successes).
 */
import { shuttingDown } from '../api/errors.js';
import { isEngineError } from '../engine/errors.js';
import type { OpContext } from './context.js';

/**
 * `work`'s result; if the engine fails it, `recheck` (which throws what the key's state now says)
 * runs first. Not once the daemon's stop has begun: a forced stop closes the keys (the index is
 * emptied), and a request the kernel then fails is not done, its key not gone: SHUTTING_DOWN.
 */
export async function rechecked<T>(ctx: Pick<OpContext, 'drain'>, work: Promise<T>, recheck: () => unknown): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if (isEngineError(err)) {
      if (ctx.drain?.draining) throw shuttingDown('the operation');
      recheck();
    }
    throw err;
  }
}
