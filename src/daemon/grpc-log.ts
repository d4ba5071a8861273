/**
 * grpc-js's own log lines. By default it prints them with console.error: outside pino (no JSON, no
 * log level), unthrottled, and quoting a refused request header's value as the client sent it, C1
 * control characters included, so any client that may connect could write its own text into the
 * daemon's log, as often as it liked (found by review). Here they go through pino instead: the
 * refused value is not logged (the header's name is), anything but printable ASCII is replaced,
 * lines are cut at MAX_CHARS, and at most PER_SECOND lines a second are written (the number left
 * out is logged with the next one written).
 */
import { format } from 'node:util';

export const MAX_CHARS = 512;
export const PER_SECOND = 20;

type Level = 'error' | 'info' | 'debug';
type Log = Record<Level | 'warn', (fields: Record<string, unknown>, msg: string) => void> & { isLevelEnabled?: (level: string) => boolean };

/** A grpc-js logger (grpc.setLogger) writing to `log`. */
export function grpcLogger(log: Log, now: () => number = Date.now): Partial<Console> {
  let windowStart = -Infinity;
  let written = 0;
  let dropped = 0;
  const emit = (grpcLevel: Level, args: unknown[]) => {
    const line = format(...args);
    // A header the client got wrong is the client's doing, not an error of the daemon's.
    const level = grpcLevel === 'error' && REFUSED_METADATA.test(line) ? 'warn' : grpcLevel;
    // A line pino would drop spends none of the budget: with GRPC_TRACE set and the daemon at info,
    // trace lines used it up, and errors went unwritten (review by helper-143).
    if (log.isLevelEnabled && !log.isLevelEnabled(level)) return;
    const t = now();
    if (t - windowStart >= 1000) {
      windowStart = t;
      written = 0;
    }
    if (written >= PER_SECOND) {
      dropped++;
      return;
    }
    written++;
    const fields: Record<string, unknown> = { source: 'grpc-js' };
    if (dropped > 0) fields.dropped = dropped;
    dropped = 0;
    log[level](fields, cleanGrpcLine(line));
  };
  return {
    error: (...args: unknown[]) => emit('error', args),
    info: (...args: unknown[]) => emit('info', args),
    debug: (...args: unknown[]) => emit('debug', args),
  };
}

const REFUSED_METADATA = /^Failed to add metadata entry ([^:]*): /;

/** A grpc-js line fit for the daemon's log: no client header value, printable ASCII, bounded. */
export function cleanGrpcLine(line: string): string {
  const refused = REFUSED_METADATA.exec(line);
  const text = refused ? `Failed to add metadata entry ${refused[1]}: its value has characters gRPC metadata may not hold (not logged)` : line;
  const printable = text.replace(/[^\x20-\x7e]/g, '?');
  return printable.length > MAX_CHARS ? `${printable.slice(0, MAX_CHARS)}...(${printable.length} characters)` : printable;
}
