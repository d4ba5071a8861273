/**
 * The daemon's logger, as main.ts builds it: JSON lines to `destination` (the log sink, log-sink.ts)
 * with the daemon's pid and an ISO time. `level` (--log-level) governs its diagnostic lines only:
 * the audit trail, written through api/audit.ts pinoAudit, is written at any level.
 */
import { pino, type DestinationStream, type Logger } from 'pino';
import type { LogLevel } from './config.js';
import type { KeyLogLevel } from './keys/model.js';

export function daemonLogger(level: LogLevel, destination: DestinationStream): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}

/**
 * The key manager's lines. Its events (level 'event': a key created, rotated on schedule or at its
 * encryption limit, destroyed after its waiting period) are key changes the daemon makes, often on
 * its own with no call to audit: written at every level, as the audit trail is, as info lines with
 * "log":"keys". Its other lines are diagnostics, at their level.
 */
export function keyEventLog(logger: Logger): (msg: string, fields?: Record<string, unknown>, level?: KeyLogLevel) => void {
  const events = logger.child({ log: 'keys' }, { level: 'info' });
  return (msg, fields, level = 'info') => (level === 'event' ? events.info(fields ?? {}, msg) : logger[level](fields ?? {}, msg));
}
