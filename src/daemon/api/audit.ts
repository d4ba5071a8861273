/**
 * The audit trail: one JSON line per operation (pino), with what was done and how it ended —
 * never the data: byte counts only, no plaintext, ciphertext, associated data or key bytes.
 */
import type { Logger } from 'pino';

export interface AuditEntry {
  rpc: string;
  key?: string | undefined;
  /** Instead of `key`: the id a ciphertext names, of a key that does not exist here (handler.ts auditKeyOf). */
  keyId?: string | undefined;
  version?: number | undefined;
  bytesIn: number;
  bytesOut: number;
  /** "OK" or the gRPC status name. */
  outcome: string;
  reason?: string | undefined;
  durationMs: number;
  items?: number | undefined;
  /** A line for this many refusals alike, over a caller's audit budget (audit-refusals.ts). */
  suppressed?: number | undefined;
  /** In a `suppressed` line: refusals of many keys alike, counted without their key (audit-refusals.ts). */
  manyKeys?: boolean | undefined;
  /**
   * Lines that stand for many refusals (api/call-limit.ts, at most one per caller per 10 s): how
   * many calls were refused since the caller's last such line, this one included, and in all.
   */
  refused?: number | undefined;
  refusedTotal?: number | undefined;
  /** The caller (SO_PEERCRED at accept, exe from /proc when readable); absent if unidentified. */
  principal?: { uid: number; gid: number; pid: number; exe?: string } | undefined;
}

export type Audit = (entry: AuditEntry) => void;

/**
 * Audit lines are info lines of `logger` (`"level":30`, as operators' filters expect), written
 * whatever its level: `--log-level` governs the daemon's diagnostics, never the audit trail. At
 * warn it used to drop them too, so an operator quietening the log lost the record of every key
 * use without a word. One logger, so one sink: while it fails, operations are refused
 * (policy/access.ts), audited ones included.
 */
export function pinoAudit(logger: Logger): Audit {
  const audit = logger.child({ log: 'audit' }, { level: 'info' });
  return (entry) => audit.info(entry, entry.rpc);
}

/** Total size of a message's top-level bytes fields (and of repeated items' bytes fields, one level down). */
export function payloadBytes(message: unknown): number {
  let n = 0;
  if (!message || typeof message !== 'object') return 0;
  for (const value of Object.values(message)) {
    if (value instanceof Uint8Array) n += value.byteLength;
    else if (Array.isArray(value)) for (const item of value) n += payloadBytes(item);
    else if (value && typeof value === 'object' && 'case' in value && 'value' in value) n += payloadBytes((value as { value: unknown }).value);
  }
  return n;
}

/**
 * The key a request or response names, for the audit line (never the data). A ReEncrypt's
 * destination counts only once it answered: a refusal is about its source, unless the error names
 * the destination itself (auditKeyOf; review by helper-143: a malformed source was audited
 * against the destination).
 */
export function keyOf(request: unknown, response?: unknown): { key?: string; version?: number } {
  const res = response as { keyName?: string; keyVersion?: number; key?: { name?: string; primaryVersion?: number } } | undefined;
  const req = request as { keyName?: string; name?: string } | undefined;
  const named = res?.keyName || res?.key?.name || req?.keyName || req?.name || undefined;
  const key = named === undefined ? undefined : auditText(named);
  const version = res?.keyVersion || res?.key?.primaryVersion || undefined;
  return { key, version };
}

/**
 * Text a client chose (a refused request's key name), fit for an audit line: its first 64
 * characters, with anything but printable ASCII (and the backslash) escaped. pino escapes only C0
 * controls, so C1 controls, U+2028 and bidi overrides (U+202E) would reach a reader's terminal as
 * they are (review by helper-143); escaped, two different names also stay two different strings.
 */
export function auditText(text: string, max = 64): string {
  const cut = text.length > max ? text.slice(0, max) : text;
  const escaped = cut.replace(/[^\x20-\x5b\x5d-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return text.length > max ? `${escaped}...(${text.length} chars)` : escaped;
}
