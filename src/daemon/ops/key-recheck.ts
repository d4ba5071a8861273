/**
 * The kernel's part of an operation on a key resolved before it, with the key checked again if the
 * kernel fails. A key deleted while its request waited for the kernel (for one of the key's
 * sockets, for the libuv pool) is gone from the kernel too: the request fails with the engine's
 * KEY_UNUSABLE (ENOKEY as its transform is keyed again, or the transform closed under it), which
 * answered INTERNAL. Checked again, it answers what it would have a moment later: NOT_FOUND, or
 * what another change acknowledged meanwhile says, as a success is checked after the kernel
 * (review by helper-197; helper-149 for successes). A key the check still finds usable whose
 * kernel key the kernel refuses (invalidated, revoked, expired or unreachable, not by ringfence)
 * answers FAILED_PRECONDITION / KERNEL_KEY_UNUSABLE, naming the key and version: it is neither a
 * daemon bug nor retryable (review by helper-207).
 */
import { isKernelKeyRefusal, kernelKeyUnusable, shuttingDown } from '../api/errors.js';
import { isEngineError, type EngineErrorCode } from '../engine/errors.js';
import type { OpContext } from './context.js';

/**
 * What the engine answers a request whose key went under it: the kernel key gone (ENOKEY, ...), or
 * its transform closed. Another failure (an altered ciphertext, a length, the daemon's resources)
 * is the request's or the daemon's, whatever became of the key: kept, also during a stop, where
 * SHUTTING_DOWN (retryable) told a client its altered ciphertext might open elsewhere.
 */
const KEY_GONE: ReadonlySet<EngineErrorCode> = new Set(['KEY_UNUSABLE', 'INTERNAL']);

/**
 * `work`'s result, `work` being the kernel's part of an operation with version `used` of a key; if
 * the engine fails it as a key gone under it would (KEY_GONE), `recheck` (which throws what the
 * key's state now says) runs first. Not once the daemon's stop has begun: a forced stop closes the keys (the index is
 * emptied), and a request the kernel then fails is not done, its key not gone: SHUTTING_DOWN.
 */
export async function rechecked<T>(ctx: Pick<OpContext, 'drain'>, used: { key: { name: string }; version: number }, work: Promise<T>, recheck: () => unknown): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if (isEngineError(err) && KEY_GONE.has(err.code)) {
      if (ctx.drain?.draining) throw shuttingDown('the operation');
      recheck();
      // Still usable here, yet the kernel refuses its key: changed outside ringfence.
      if (err.code === 'KEY_UNUSABLE' && isKernelKeyRefusal(err.errno)) throw kernelKeyUnusable(used.key.name, used.version, err.errno!, { cause: err });
    }
    throw err;
  }
}
