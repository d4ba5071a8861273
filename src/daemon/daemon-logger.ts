/**
 * The daemon's logger, as main.ts builds it: JSON lines to `destination` (the log sink, log-sink.ts)
 * with the daemon's pid and an ISO time. `level` (--log-level) governs its diagnostic lines only:
 * the audit trail, written through api/audit.ts pinoAudit, is written at any level.
 */
import { pino, type DestinationStream, type Logger } from 'pino';
import type { LogLevel } from './config.js';

export function daemonLogger(level: LogLevel, destination: DestinationStream): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}

/**
 * The key manager's lines: keys created, rotated (on schedule or at their encryption limit) and
 * destroyed after their waiting period, by the daemon itself. No client call records those, so
 * they are written at any level, as the audit trail is, with the key's name, never its bytes.
 */
export function keyEventLog(logger: Logger): (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn') => void {
  const keyLog = logger.child({ log: 'keys' }, { level: 'info' });
  return (msg, fields, level = 'info') => keyLog[level](fields ?? {}, msg);
}
