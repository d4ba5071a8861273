/**
 * The largest AF_ALG request this network namespace's kernel takes, estimated from the sysctl
 * net.core.optmem_max: AF_ALG keeps a request's scatterlists in socket option memory, bounded per
 * socket by it (the socket buffers, which the engine raises, are not the limit). Since Linux 6.8 it
 * is per network namespace: the unit's PrivateNetwork=yes gives the daemon the kernel's default,
 * whatever the host's sysctl says. Review by helper-137, helper-139 and helper-140.
 */
import { readFileSync } from 'node:fs';

const OPTMEM_SYSCTL = '/proc/sys/net/core/optmem_max';

/** net.core.optmem_max as this process sees it, or undefined when it cannot be read. */
export function readOptmemMax(): number | undefined {
  try {
    const n = Number(readFileSync(OPTMEM_SYSCTL, 'utf8').trim());
    return Number.isInteger(n) && n >= 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Bytes (plaintext plus associated data) one request may carry, a little under what was measured
 * in the lts guest (6.12, CCM, 4 KiB pages; the same with no associated data and with 64 KiB):
 * 20480 took 0.62 MiB, 131072 4.92, 262144 9.92, 524288 the 16 MiB the limits allow.
 * optmem x 38 - 128 KiB stays under each. Larger pages (arm64) should take more: an estimate on the safe side there.
 */
export function estimatedRequestBound(optmemMax: number): number {
  return Math.max(0, optmemMax * 38 - 128 * 1024);
}
