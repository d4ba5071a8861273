import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { mkdtempSync, rmSync } from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { guardedServer } from './api/foreign-services.js';
import { DEFAULT_LIMITS } from './config.js';
import { serverOptions } from './daemon.js';
import { cleanGrpcLine, grpcLogger, MAX_CHARS, PER_SECOND } from './grpc-log.js';

const tmp = mkdtempSync(join(tmpdir(), 'rf-grpc-log-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function recorder() {
  const lines: { level: string; fields: Record<string, unknown>; msg: string }[] = [];
  const at = (level: string) => (fields: Record<string, unknown>, msg: string) => void lines.push({ level, fields, msg });
  return { lines, log: { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') } };
}

describe('grpc-js log lines go through the daemon log', () => {
  it('a refused header value is not quoted; only printable ASCII; long lines cut', () => {
    const line = 'Failed to add metadata entry x-evil: SECRET-\u00e9. Metadata string value "SECRET-\u00e9" contains illegal characters';
    expect(cleanGrpcLine(line)).toBe('Failed to add metadata entry x-evil: its value has characters gRPC metadata may not hold (not logged)');
    expect(cleanGrpcLine('a\u0085b\u009bc\u001bd\ne')).toBe('a?b?c?d?e');
    const long = cleanGrpcLine('x'.repeat(60_000));
    expect(long).toBe(`${'x'.repeat(MAX_CHARS)}...(60000 characters)`);
  });

  it(`writes at most ${PER_SECOND} lines a second and says how many it left out`, () => {
    const { lines, log } = recorder();
    let t = 0;
    const logger = grpcLogger(log, () => t);
    for (let i = 0; i < PER_SECOND + 5; i++) logger.error!(`line ${i}`);
    expect(lines).toHaveLength(PER_SECOND);
    t = 1000;
    logger.info!('next');
    expect(lines.at(-1)).toEqual({ level: 'info', fields: { source: 'grpc-js', dropped: 5 }, msg: 'next' });
  });

  it('lines the log would drop (debug at level info) spend none of the budget: the errors after them are written (review by helper-143)', () => {
    const { lines, log } = recorder();
    const logger = grpcLogger({ ...log, isLevelEnabled: (level: string) => level !== 'debug' }, () => 0);
    for (let i = 0; i < PER_SECOND + 5; i++) logger.debug!(`trace ${i}`);
    logger.error!('real error');
    logger.error!('another');
    expect(lines.map((l) => l.msg)).toEqual(['real error', 'another']);
    expect(lines[0]!.fields).toEqual({ source: 'grpc-js' });
    // At level error, a refused header (logged as warn) is dropped too, without spending any (helper-147).
    const atError = recorder();
    const strict = grpcLogger({ ...atError.log, isLevelEnabled: (level: string) => level === 'error' }, () => 0);
    for (let i = 0; i < PER_SECOND + 5; i++) strict.error!(`Failed to add metadata entry x-bad-${i}: bad value`);
    strict.error!('real error');
    expect(atError.lines.map((l) => [l.level, l.msg])).toEqual([['error', 'real error']]);
  });

  it('through a real grpc-js server: a client\'s bad header reaches neither stderr nor the log (found by review: printed raw, with C1 controls, by console.error)', async () => {
    const socket = join(tmp, 's.sock');
    const server = new grpc.Server(serverOptions(DEFAULT_LIMITS));
    new HealthImplementation({ '': 'SERVING' }).addToServer(guardedServer(server) as grpc.Server);
    await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
    const { lines, log } = recorder();
    const stderr = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    grpc.setLogger(grpcLogger(log));
    const session = http2.connect('http://localhost', { createConnection: () => net.connect(socket) });
    session.on('error', () => undefined);
    try {
      for (const value of ['SECRET-\u00e9-\u00ff', 'line1\u0085{"level":30,"msg":"forged"}', '\u009b31mred']) {
        await new Promise<void>((resolve) => {
          const req = session.request({ ':method': 'POST', ':path': '/grpc.health.v1.Health/Check', 'content-type': 'application/grpc', te: 'trailers', 'x-evil': value });
          req.on('error', () => resolve());
          req.on('close', () => resolve());
          req.resume();
          req.end(Buffer.from([0, 0, 0, 0, 0]));
        });
      }
      expect(stderr).not.toHaveBeenCalled();
      const refused = lines.filter((l) => l.msg.includes('x-evil'));
      expect(refused).toHaveLength(3); // the check is real: grpc-js did log each one
      expect(refused.every((l) => l.level === 'warn')).toBe(true); // the client's mistake, not the daemon's error
      for (const l of lines) {
        expect(l.msg).not.toMatch(/SECRET|forged|red/);
        expect(l.msg).toMatch(/^[\x20-\x7e]*$/);
      }
    } finally {
      session.close();
      stderr.mockRestore();
      grpc.setLogger(console);
      server.forceShutdown();
    }
  });
});
