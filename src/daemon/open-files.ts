/**
 * Whether the daemon's RLIMIT_NOFILE covers what its limits let it open. Raising maxTransforms,
 * maxOpSockets or maxConnections past it was only found at run time, as requests refused
 * RESOURCE_EXHAUSTED (EMFILE) under load; now the start-up log says so at once. (Node raises its
 * soft limit to the hard one as it starts, so the hard limit, systemd's LimitNOFILE=, is what counts.)
 */
import { readFileSync } from 'node:fs';
import type { Limits } from './config.js';

/** Files besides the crypto's and the connections': logs, state, the listener, Node's own. */
const OTHER_FILES = 256;

/** The most files these limits let the daemon hold open (docs/operations.md, "Kernel sockets"). */
export function openFilesNeeded(l: Pick<Limits, 'maxTransforms' | 'maxOpSockets' | 'maxConnections'>): number {
  return l.maxTransforms * (1 + l.maxOpSockets) + l.maxConnections + OTHER_FILES;
}

/** The soft "Max open files" of /proc/self/limits; Infinity for unlimited, undefined if unreadable. */
export function openFilesLimit(limitsText?: string): number | undefined {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return undefined;
    }
  }
  const m = /^Max open files\s+(\S+)/m.exec(text);
  if (!m) return undefined;
  if (m[1] === 'unlimited') return Infinity;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** The start-up warning when the limit is below what the limits may need; undefined when it is not. */
export function openFilesWarning(limits: Pick<Limits, 'maxTransforms' | 'maxOpSockets' | 'maxConnections'>, limit: number | undefined): { fields: Record<string, number>; message: string } | undefined {
  const needed = openFilesNeeded(limits);
  if (limit === undefined || limit >= needed) return undefined;
  return {
    fields: { openFilesLimit: limit, openFilesNeeded: needed, maxTransforms: limits.maxTransforms, maxOpSockets: limits.maxOpSockets, maxConnections: limits.maxConnections },
    message:
      `the limits let the daemon open up to ${needed} files (maxTransforms x (1 + maxOpSockets) + maxConnections + ${OTHER_FILES}), ` +
      `more than its RLIMIT_NOFILE (${limit}): raise LimitNOFILE= in its systemd unit, or lower those limits; ` +
      'past it, requests that need a new kernel socket are refused RESOURCE_EXHAUSTED (DAEMON_OUT_OF_RESOURCES) and connections are closed',
  };
}
