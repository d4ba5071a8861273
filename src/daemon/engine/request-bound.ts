/**
 * The largest AF_ALG request this network namespace's kernel takes, estimated from the sysctl
 * net.core.optmem_max: AF_ALG keeps a request's scatterlists in socket option memory, bounded per
 * socket by it (the socket buffers, which the engine raises, are not the limit). Since Linux 6.8 it
 * is per network namespace: the unit's PrivateNetwork=yes gives the daemon the kernel's default,
 * whatever the host's sysctl says. Review by helper-137, helper-139 and helper-140.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const NET_CORE = '/proc/sys/net/core';
/** The default before Linux 6.8, which kept the sysctl in the host's network namespace only. */
export const OPTMEM_MAX_BEFORE_6_8 = 20480;

/**
 * net.core.optmem_max as this process sees it: its value; 'host-only' when this network namespace
 * has a net/core directory without it (a kernel before 6.8 under the unit's PrivateNetwork=yes:
 * the host's value applies, unseen; review by helper-141); undefined when nothing can be read.
 */
export function readOptmemMax(netCore = NET_CORE): number | 'host-only' | undefined {
  let text: string;
  try {
    text = readFileSync(join(netCore, 'optmem_max'), 'utf8').trim();
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' && existsSync(netCore) ? 'host-only' : undefined;
  }
  const n = Number(text);
  return text !== '' && Number.isInteger(n) && n >= 0 ? n : undefined;
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
