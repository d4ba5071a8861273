/**
 * Fairness between callers end to end: one caller (a uid) cannot take what every caller shares.
 * A root daemon with small per-caller limits; root plays the greedy caller, and nobody (65534), a
 * separate process with its own SO_PEERCRED, the other one. Checked against the daemon's audit
 * lines and the gRPC statuses each side gets:
 * - buffered bytes: root's Sessions that read nothing hold only root's part of maxBufferedBytes,
 *   and nobody's Session still runs as many operations as its own part holds;
 * - connections: root's beyond maxConnectionsPerCaller are closed at accept, nobody's are served;
 * - HashStreams: root's beyond maxHashStreamsPerCaller are refused, nobody's run.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { HashStreamRequestSchema, HashStreamResponseSchema } from '../../src/gen/ringfence/v1/crypto_pb.js';
import { HashAlgorithm } from '../../src/gen/ringfence/v1/suite_pb.js';
import { SessionRequestSchema } from '../../src/gen/ringfence/v1/session_pb.js';
import { RingfenceClient } from '../../src/client/sdk/index.js';
import { stopOrExplain, TestDaemon } from '../support/daemon.js';
import { drainSessions, fdCount, rawCall, rawConnect } from '../support/raw-grpc.js';
import { callAsUid } from '../support/call-as-uid.js';
import { NOBODY } from '../support/run-ts.js';
import { settled, sleep, until } from '../support/wait.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const PER_CALLER_CONNECTIONS = 4;

describe('fairness between callers (per-caller limits)', () => {
  let daemon: TestDaemon;
  let idleFds: number;
  // A test's connections close asynchronously in the daemon; the next test starts once they have,
  // so that root's per-caller connection count starts from zero.
  const quiet = () => until('the daemon to close the previous connections', () => fdCount(daemon.pid!) <= idleFds, 30_000);

  beforeAll(async () => {
    // Other uids must reach the socket: a 0755 directory and a 0666 socket.
    const dir = mkdtempSync(join(tmpdir(), 'rf-fair-'));
    chmodSync(dir, 0o755);
    const policy = join(dir, 'policy.json');
    writeFileSync(policy, JSON.stringify({ rules: [{ principals: [`uid:${NOBODY}`], operations: ['random', 'hash'] }] }));
    daemon = await TestDaemon.start({
      dir,
      config: {
        socketMode: '0666',
        policy,
        limits: {
          maxSessionBufferedBytes: 4 * MiB,
          maxBufferedBytes: MiB,
          maxBufferedBytesPerCaller: 512 * KiB,
          maxConnections: 16,
          maxConnectionsPerCaller: PER_CALLER_CONNECTIONS,
          maxHashStreamsPerCaller: 2,
        },
      },
    });
    idleFds = fdCount(daemon.pid!);
  }, 120_000);
  afterAll(async () => {
    expect(await stopOrExplain(daemon)).toBe(0);
  });

  /** GetStatus's usage, as root sees it (one connection of root's while it runs). */
  const usage = async () => {
    const client = new RingfenceClient({ socketPath: daemon.socket });
    try {
      return (await client.getStatus()).usage!;
    } finally {
      await client.close();
    }
  };
  const ran = (rpc: string, uid: number, outcome = 'OK') =>
    daemon.auditLines().filter((l) => l.rpc === rpc && l.outcome === outcome && (l.principal as { uid?: number } | undefined)?.uid === uid).length;

  it('reports the per-caller limits in GetStatus', async () => {
    const client = new RingfenceClient({ socketPath: daemon.socket });
    try {
      const l = (await client.getStatus()).limits!;
      expect([Number(l.maxBufferedBytes), Number(l.maxBufferedBytesPerCaller), l.maxConnectionsPerCaller, l.maxHashStreamsPerCaller]).toEqual([MiB, 512 * KiB, PER_CALLER_CONNECTIONS, 2]);
    } finally {
      await client.close();
    }
  });

  it("a caller whose Sessions read nothing holds only its part of the budget; another caller's Session still runs its own part", async () => {
    await quiet();
    const N = 100;
    const requests = Array.from({ length: N }, (_, i) => toBinary(SessionRequestSchema, create(SessionRequestSchema, { id: BigInt(i), op: { case: 'generateRandom', value: { lengthBytes: 64 * KiB } } })));
    // Root: three Sessions of 100 GenerateRandom(64 KiB) that read nothing. Each alone may hold
    // 4 MiB; all of root's together 512 KiB: 8 operations, plus what HTTP/2 windows took, plus
    // one for a session holding nothing.
    const greedy = Array.from({ length: 3 }, () => rawCall(daemon.socket, 'Session'));
    for (const call of greedy) {
      onTestFinished(() => void call.session.destroy());
      for (const r of requests) call.send(r);
      call.stream.end();
    }
    const rootRan = await settled(() => ran('Session/generateRandom', 0), 3000);
    expect(rootRan).toBeGreaterThanOrEqual(8);
    expect(rootRan).toBeLessThanOrEqual(40);
    // GetStatus shows it: root holds its part (plus at most 4 operations of sessions that held
    // nothing when they started), and all of it is root's.
    const held = await usage();
    expect(Number(held.callerBufferedBytes)).toBeGreaterThanOrEqual(512 * KiB);
    expect(Number(held.callerBufferedBytes)).toBeLessThanOrEqual(512 * KiB + 4 * 64 * KiB);
    expect(held.bufferedBytes).toBe(held.callerBufferedBytes);
    expect(held.callerConnections).toBe(4); // three sessions and this status call

    // Nobody, while root holds its part: the same Session, reading nothing either. Root holds at
    // most its 512 KiB plus one operation per session (a call holding nothing may start one), so at
    // least 1 MiB - 512 KiB - 3 x 64 KiB is left: 5 operations. Had root been able to take the
    // whole budget, nobody's Session could start one operation only while it held nothing: 1 or 2.
    const other = callAsUid(NOBODY, daemon.socket, '/ringfence.v1.CryptoService/Session', requests, 'hold');
    onTestFinished(() => other.kill());
    await other.sent;
    await until("nobody's first operation", () => ran('Session/generateRandom', NOBODY) > 0, 60_000);
    const otherRan = await settled(() => ran('Session/generateRandom', NOBODY), 3000);
    console.log(`per-caller budget 512 KiB of 1 MiB: root's 3 Sessions ran ${rootRan}, nobody's ${otherRan} of ${N} while neither read`);
    expect(otherRan).toBeGreaterThanOrEqual(5);
    expect(ran('Session/generateRandom', 0)).toBe(rootRan);
    expect(ran('Session/generateRandom', 0) + otherRan).toBeLessThanOrEqual(80);

    // Nobody goes away: its bytes go back. Root reads: every operation of every session is answered.
    other.kill();
    const { statuses, ids } = await drainSessions(greedy);
    expect(statuses).toEqual(['0', '0', '0']);
    for (const answered of ids) expect(new Set(answered).size).toBe(N);
    for (const c of greedy) c.session.close();
  });

  it("closes a caller's connections beyond maxConnectionsPerCaller at accept, with a warning; another caller's are served", async () => {
    await quiet();
    const open = Array.from({ length: PER_CALLER_CONNECTIONS }, () => rawConnect(daemon.socket));
    onTestFinished(() => open.forEach((r) => r.sock.destroy()));
    expect(await Promise.all(open.map((r) => r.first))).toEqual(Array(PER_CALLER_CONNECTIONS).fill('accepted'));
    const extra = rawConnect(daemon.socket);
    expect(await extra.first).toBe('refused');
    await extra.closed;
    await until('the warning', () => daemon.output.includes('maxConnectionsPerCaller connections'));
    const warn = daemon.output.split('\n').find((l) => l.includes('maxConnectionsPerCaller connections'))!;
    expect(JSON.parse(warn)).toMatchObject({ level: 40, uid: 0, maxConnectionsPerCaller: PER_CALLER_CONNECTIONS, closedTotal: 1 });

    // Nobody's connection is served while root holds its four: GetStatus (open to every caller).
    const other = callAsUid(NOBODY, daemon.socket, '/ringfence.v1.StatusService/GetStatus', [new Uint8Array()], 'finish');
    onTestFinished(() => other.kill());
    expect((await other.outcome).status).toBe('0');
  });

  it("refuses a caller's HashStreams beyond maxHashStreamsPerCaller with RESOURCE_EXHAUSTED; another caller's run", async () => {
    await quiet();
    const data = randomBytes(1000);
    const request = toBinary(HashStreamRequestSchema, create(HashStreamRequestSchema, { algorithm: HashAlgorithm.SHA256, data }));
    // Root holds two HashStreams open (one message each, never ended).
    const held = [rawCall(daemon.socket, 'HashStream'), rawCall(daemon.socket, 'HashStream')];
    for (const h of held) {
      onTestFinished(() => void h.session.destroy());
      h.send(request);
    }
    // Once the daemon has started both (they arrive on connections of their own, so retry until
    // then), a third of root's is refused.
    let third: string | undefined;
    for (let i = 0; third !== '8'; i++) {
      const c = rawCall(daemon.socket, 'HashStream');
      c.send(request);
      c.stream.end();
      c.read();
      third = await c.status;
      c.session.destroy();
      if (i > 50) throw new Error(`a third HashStream of root's was never refused (last status ${third})`);
      if (third !== '8') await sleep(200);
    }
    await until('the refusal audited', () => ran('CryptoService/HashStream', 0, 'RESOURCE_EXHAUSTED') > 0);
    const line = daemon.auditLines().find((l) => l.rpc === 'CryptoService/HashStream' && l.outcome === 'RESOURCE_EXHAUSTED')!;
    expect(line.reason).toBe('DAEMON_BUSY');

    // Nobody's HashStream runs while root holds its two.
    const other = callAsUid(NOBODY, daemon.socket, '/ringfence.v1.CryptoService/HashStream', [request], 'finish');
    onTestFinished(() => other.kill());
    expect((await other.outcome).status).toBe('0');
    const open = await usage();
    expect([open.hashStreams, open.callerHashStreams]).toEqual([2, 2]);

    // Root ends one of its two: that one answers with the digest, and root may open another.
    const messages = held[0]!.read();
    held[0]!.stream.end();
    expect(await held[0]!.status).toBe('0');
    expect(Buffer.from(fromBinary(HashStreamResponseSchema, messages[0]!).digest)).toEqual(createHash('sha256').update(data).digest());
    const again = rawCall(daemon.socket, 'HashStream');
    onTestFinished(() => void again.session.destroy());
    again.send(request);
    again.stream.end();
    again.read();
    expect(await again.status).toBe('0');
  });
});
