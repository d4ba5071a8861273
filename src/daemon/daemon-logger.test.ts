/**
 * `--log-level` governs the daemon's diagnostics, never its audit trail. Audit lines are pino info
 * lines of the daemon's one logger, and at warn or above (silent included) they were dropped with
 * the info diagnostics: an operator quietening the log lost the record of every key use.
 */
import * as grpc from '@grpc/grpc-js';
import { closeSync, openSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { until } from '../../test/support/wait.js';
import { pinoAudit, type AuditEntry } from './api/audit.js';
import { refusalBudget } from './api/audit-refusals.js';
import { cryptoServiceHandlers } from './api/crypto-service.js';
import { LOG_LEVELS, type LogLevel } from './config.js';
import { daemonLogger, keyEventLog } from './daemon-logger.js';
import { openLogSink } from './log-sink.js';
import { standInContext } from './ops/stand-in.test-support.js';

function memoryLogger(level: LogLevel) {
  const lines: string[] = [];
  return { log: daemonLogger(level, { write: (line: string) => void lines.push(line) }), lines };
}

const auditLines = (lines: string[]) => lines.filter((l) => l.includes('"log":"audit"'));

describe.each(['warn', 'error', 'fatal', 'silent'] as const)('at --log-level %s', (level) => {
  it('an operation is audited, while the info diagnostics are not written', async () => {
    const { log, lines } = memoryLogger(level);
    const ctx = await standInContext();
    // Wired as daemon.ts wires it.
    const deps = {
      audit: refusalBudget(pinoAudit(log)).audit,
      log,
      access: { forCall: () => ({ principal: { uid: 1000, gid: 1000, pid: 1, groups: [] }, authorize: () => {}, allows: () => true, mayEverDo: () => true }) },
    };
    const h = cryptoServiceHandlers(ctx, deps as never) as unknown as Record<string, (call: unknown, cb: (e: unknown, r?: unknown) => void) => void>;
    log.info({ keys: 1 }, 'ringfenced ready');
    const err = await new Promise((r) =>
      h.encrypt!({ request: { keyName: 'k', plaintext: Buffer.from('x'), associatedData: new Uint8Array(0) }, getPeer: () => '', metadata: new grpc.Metadata(), getDeadline: () => Infinity }, r),
    );
    expect(err).toBeNull();
    await vi.waitFor(() => expect(auditLines(lines)).toHaveLength(1));
    expect(JSON.parse(auditLines(lines)[0]!)).toMatchObject({ level: 30, log: 'audit', rpc: 'CryptoService/Encrypt', key: 'k', version: 1, outcome: 'OK', principal: { uid: 1000 } });
    log.warn('a warning');
    // The diagnostics still obey the level: no info line, a warning only at warn.
    expect(lines.filter((l) => !l.includes('"log":"audit"')).map((l) => JSON.parse(l).msg)).toEqual(level === 'warn' ? ['a warning'] : []);
  });
});

it.each(['warn', 'error', 'silent'] as const)('at --log-level %s the key events (a key created, rotated, destroyed by the daemon) are written; its other info lines are not', (level) => {
  const { log, lines } = memoryLogger(level);
  const keyLog = keyEventLog(log);
  keyLog('key deleted after its waiting period', { key_name: 'k', keyId: 'ab' }, 'event');
  keyLog('keys loaded into the kernel', { keys: 1 });
  keyLog('a warning of the key manager', {}, 'warn');
  expect(lines.map((l) => JSON.parse(l))).toMatchObject([
    { level: 30, log: 'keys', key_name: 'k', msg: 'key deleted after its waiting period' },
    ...(level === 'warn' ? [{ level: 40, msg: 'a warning of the key manager' }] : []),
  ]);
});

it('the audit line is the same at every level, byte for byte: an info line ("level":30) with the daemon\'s pid', () => {
  const entry: AuditEntry = { rpc: 'CryptoService/Encrypt', key: 'k', version: 1, bytesIn: 1, bytesOut: 53, outcome: 'OK', durationMs: 0.25, principal: { uid: 1000, gid: 1000, pid: 42 } };
  const expected =
    `{"level":30,"time":"T","pid":${process.pid},"log":"audit","rpc":"CryptoService/Encrypt","key":"k","version":1,"bytesIn":1,"bytesOut":53,` +
    `"outcome":"OK","durationMs":0.25,"principal":{"uid":1000,"gid":1000,"pid":42},"msg":"CryptoService/Encrypt"}\n`;
  for (const level of LOG_LEVELS) {
    const { log, lines } = memoryLogger(level);
    pinoAudit(log)(entry);
    expect(lines.map((l) => l.replace(/"time":"[^"]+"/, '"time":"T"')), level).toEqual([expected]);
  }
});

it('at --log-level silent an audit line still goes through the one log sink: a sink that cannot write it fails, which refuses operations', async () => {
  const fd = openSync('/dev/full', 'w');
  try {
    const sink = openLogSink(fd, { tell: () => undefined });
    const log = daemonLogger('silent', sink.stream);
    log.info('ringfenced ready');
    log.error('an error');
    pinoAudit(log)({ rpc: 'CryptoService/Encrypt', key: 'k', bytesIn: 1, bytesOut: 53, outcome: 'OK', durationMs: 0.25 });
    // policy/access.ts refuses every operation while sink.failing() names an errno.
    await until('the sink fails', () => sink.failing() !== undefined, 5000);
    expect(sink.failing()).toBe('ENOSPC');
    sink.flushOnExit();
  } finally {
    closeSync(fd);
  }
});
