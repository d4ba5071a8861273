/** `ringfence status` against the fake daemon, and `ringfence doctor` (no daemon) on this host. */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildCli, type CliRunner } from './cli-runner.test-support.js';
import { startFakeDaemon, type FakeDaemon } from './fake-daemon.test-support.js';

// Child processes on a loaded 2-core machine: seconds each, several at once.
const SLOW = { timeout: 60_000 };
let cli: CliRunner;
let daemon: FakeDaemon;

beforeAll(async () => {
  [cli, daemon] = await Promise.all([buildCli(), startFakeDaemon()]);
  daemon.keys.add('a', 1, { purpose: 1, suite: 1 });
});
afterAll(async () => {
  cli.close();
  await daemon.close();
});

describe.concurrent('status', SLOW, () => {
  test('text: daemon, socket, kernel, defaults, key count, limits, then every suite and hash', async () => {
    const r = await cli.run(['status', '--socket', daemon.socketPath]);
    expect([r.code, r.stderr]).toEqual([0, '']);
    const text = r.stdout.toString();
    expect(text).toMatch(new RegExp(`^daemon {6}ringfenced 0\\.1\\.0-fake, pid ${process.pid}, started \\d{4}-\\S+Z\\n`));
    expect(text).toContain(`\nsocket      ${daemon.socketPath}\n`);
    expect(text).toContain('\nkernel      6.12.48+deb13-amd64, AF_ALG not restricted\n');
    expect(text).toContain('\ndefaults    aead aes-256-gcm, mac hmac-sha256\n');
    expect(text).toContain('\nkeys        1\n');
    expect(text).toContain('\nin use      3 connections (1 yours), 2048 B buffered (1024 B yours), 1 hash stream (0 yours), 5 calls (2 yours)\n            12 keys (1 yours), 30 key versions (4 yours)\n');
    expect(text).toContain('\nlimits      payload 1048576 B, associated data 65536 B, stream chunk 1048576 B, message 4259840 B\n');
    expect(text).toContain('batch 1000 items, session 1024 in flight and 16777216 B held, rotation >= 1h, deletion wait >= 1d\n');
    expect(text).toContain('\n            1000 keys (250 per caller), 1000 versions per key, 8000 key versions in all (2000 per caller)\n');
    expect(text).toContain('\n            4294967296 encryptions per key version, 536870912 B buffered by all sessions and streams (134217728 B per caller)\n');
    expect(text).toContain('\n            1024 connections (256 per caller), 128 calls each, 1024 calls in all (256 per caller), 64 hash streams per caller, idle 5m, max age never (grace 1m)\n            512 kernel transforms, 8 kernel sockets each, 4096 requests queued per key (1024 per caller)\n');
    expect(text).toMatch(/\nSUITE \/ HASH +AVAILABILITY +DRIVER OR DETAIL\naes-256-gcm +available +generic-gcm-aesni\n/);
    expect(text).toMatch(/\nblake2b-256 +restricted +blake2b-256: ENOENT under af_alg_restrict=1\n$/);
  });

  test('--json: one document with names for enums and ISO times', async () => {
    const r = await cli.run(['--json', 'status', '--socket', daemon.socketPath]);
    expect([r.code, r.stderr]).toEqual([0, '']);
    const doc = JSON.parse(r.stdout.toString());
    expect(doc).toMatchObject({
      socket: daemon.socketPath,
      daemonVersion: '0.1.0-fake',
      pid: process.pid,
      kernelRelease: '6.12.48+deb13-amd64',
      afAlgRestricted: false,
      defaultAeadSuite: 'aes-256-gcm',
      defaultMacSuite: 'hmac-sha256',
      keyCount: 1,
      limits: {
        maxPayloadBytes: 1048576,
        maxAssociatedDataBytes: 65536,
        minRotationPeriodSeconds: 3600,
        minDeletionWaitingPeriodSeconds: 86400,
        encryptionsPerVersion: 4294967296,
        maxSessionBufferedBytes: 16777216,
        maxBufferedBytes: 536870912,
        maxBufferedBytesPerCaller: 134217728,
        maxConnectionsPerCaller: 256,
        maxHashStreamsPerCaller: 64,
        maxCalls: 1024,
        maxCallsPerCaller: 256,
        maxKeys: 1000,
        maxKeysPerCaller: 250,
        maxVersionsPerKey: 1000,
        maxKeyVersions: 8000,
        maxKeyVersionsPerCaller: 2000,
        maxConcurrentStreamsPerConnection: 128,
        maxConnections: 1024,
        connectionIdleTimeoutSeconds: 300,
        connectionMaxAgeSeconds: null,
        connectionMaxAgeGraceSeconds: 60,
        maxTransforms: 512,
        maxOpSockets: 8,
        maxQueuedRequests: 4096,
        maxQueuedRequestsPerCaller: 1024,
      },
      usage: { connections: 3, bufferedBytes: 2048, hashStreams: 1, callerConnections: 1, callerBufferedBytes: 1024, callerHashStreams: 0, calls: 5, callerCalls: 2, keys: 12, keyVersions: 30, callerKeys: 1, callerKeyVersions: 4 },
    });
    expect(doc.startTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(doc.suites).toHaveLength(7);
    expect(doc.suites[0]).toEqual({ suite: 'aes-256-gcm', availability: 'available', driver: 'generic-gcm-aesni', detail: '' });
    expect(doc.hashAlgorithms[1]).toEqual({ algorithm: 'blake2b-256', availability: 'restricted', driver: '', detail: 'blake2b-256: ENOENT under af_alg_restrict=1' });
  });
});

describe('doctor', SLOW, () => {
  test('--json: one document; the exit code says whether ringfence could work on this kernel', async () => {
    const r = await cli.run(['doctor', '--json']);
    expect(r.stderr).toBe('');
    const report = JSON.parse(r.stdout.toString());
    expect(report).toHaveProperty('afAlg');
    expect(report).toHaveProperty('kernel.release');
    const usable = Boolean(report.afAlg.present && report.defaultAeadSuite && report.keySerial.supported !== false && !report.keySerial.failed && (report.keySerial.supported === null || report.keySerial.verified));
    expect(r.code).toBe(usable ? 0 : 1);
    expect(report.usable).toBe(usable);
    if (!usable) expect(report.reason).toMatch(/./);
    const text = await cli.run(['doctor']);
    expect(text.code).toBe(r.code);
    expect(text.stdout.toString()).toContain(usable ? 'Verdict: ringfence can work' : `Verdict: ringfence cannot work in a process like this one (uid ${process.getuid!()}): ${report.reason}.`);
  });
});
