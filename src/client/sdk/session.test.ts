import { createHash } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { isCancelled, isDeadlineExceeded, isNotFound, isUnavailable, RingfenceClient, RingfenceError, ErrorReason } from './index.js';
import { startFakeServer, type FakeServer } from './test-server.js';
import { create, toBinary } from '@bufbuild/protobuf';
import { SessionRequestSchema } from '../../gen/ringfence/v1/session_pb.js';
import { packedBytes, PACK_BYTES, PACK_OPS, takeBatch } from './session-packing.js';

let fake: FakeServer;
let client: RingfenceClient;

beforeAll(async () => {
  fake = await startFakeServer();
  client = new RingfenceClient({ socketPath: fake.socketPath });
});
afterAll(async () => {
  await client.close();
  await fake.close();
});
beforeEach(() => {
  fake.sessionDelayMs = 3;
  fake.stats.sessionMaxOutstanding = 0;
  fake.stats.sessionOutOfOrder = 0;
  fake.stats.sessionMaxOpsPerMessage = 0;
});

const text = (bytes: Uint8Array) => Buffer.from(bytes).toString();

describe('session pipelining', () => {
  it('matches out-of-order responses to their calls by id, over one stream', async () => {
    const session = client.session();
    const streamsBefore = fake.stats.sessionStreams;
    const inputs = Array.from({ length: 300 }, (_, i) => `message ${i}`);
    const encrypted = await Promise.all(inputs.map((m, i) => session.encrypt('k', m, { associatedData: `ad-${i}` })));
    const decrypted = await Promise.all(encrypted.map((e, i) => session.decrypt(e.ciphertext, { associatedData: `ad-${i}` })));
    expect(decrypted.map((d) => text(d.plaintext))).toEqual(inputs);
    const digests = await Promise.all(inputs.map((m) => session.hash(m, 'sha512')));
    expect(digests.map((d) => Buffer.from(d.digest).toString('hex'))).toEqual(inputs.map((m) => createHash('sha512').update(m).digest('hex')));
    expect(fake.stats.sessionOutOfOrder).toBeGreaterThan(0); // the fake really did reorder
    expect(fake.stats.sessionStreams - streamsBefore).toBe(1);
    await session.close();
  });

  it('every operation kind goes through', async () => {
    const s = client.session();
    const { mac } = await s.computeMac('m', 'data');
    expect((await s.verifyMac('m', 'data', mac)).valid).toBe(true);
    expect((await s.verifyMac('m', 'data!', mac)).valid).toBe(false);
    expect((await s.generateRandom(33)).data.length).toBe(33);
    const dk = await s.generateDataKey('k', { lengthBytes: 24 });
    expect(dk.plaintext.length).toBe(24);
    const re = await s.reEncrypt(dk.ciphertext, { destinationKeyName: 'k2' });
    expect(re.keyName).toBe('k2');
    expect(Buffer.from((await s.decrypt(re.ciphertext)).plaintext).equals(Buffer.from(dk.plaintext))).toBe(true);
    // A Promise<void>, as typed: it resolved with the client's Set.delete result (review by helper-213).
    await expect(s.close()).resolves.toBeUndefined();
  });

  it('an operation that cannot be encoded, or is larger than a message, fails alone; the others on the stream go on (found by review)', async () => {
    fake.sessionDelayMs = 30;
    const s = client.session();
    const streamsBefore = fake.stats.sessionStreams;
    const others = Array.from({ length: 20 }, (_, i) => s.hash(`ok ${i}`));
    await new Promise((r) => setTimeout(r, 5)); // sent, in flight
    const unencodable = await s.hash('x', 1.5 as never).then(() => undefined, (e: unknown) => e as Error);
    expect(unencodable).toEqual(new RangeError('hash algorithm must be a name or an enum value, got 1.5'));
    // A key name that is a number, from JavaScript: once an encoding failure, now the SDK's own TypeError; alone either way.
    const wrongType = await s.encrypt(123 as never, 'x').then(() => undefined, (e: unknown) => e as Error);
    expect(wrongType).toEqual(new TypeError('the key name must be a string, got [object Number]'));
    const oversize = await s.hash(Buffer.alloc(4.5 * 1024 * 1024)).then(() => undefined, (e: unknown) => e as RingfenceError);
    expect([oversize?.codeName, oversize?.reasonName, oversize?.metadata.limit_bytes]).toEqual(['RESOURCE_EXHAUSTED', 'PAYLOAD_TOO_LARGE', String(4 * 1024 * 1024 + 64 * 1024)]);
    const digests = await Promise.all(others);
    expect(digests.map((d) => Buffer.from(d.digest).toString('hex'))).toEqual(Array.from({ length: 20 }, (_, i) => createHash('sha256').update(`ok ${i}`).digest('hex')));
    expect(fake.stats.sessionStreams - streamsBefore).toBe(1);
    await s.close();
  });

  it('packs within a small grpc.max_send_message_length, and refuses alone only what cannot fit (found by review)', async () => {
    const small = new RingfenceClient({ socketPath: fake.socketPath, grpcOptions: { 'grpc.max_send_message_length': 8192 } });
    try {
      const s = small.session();
      const inputs = Array.from({ length: 20 }, (_, i) => Buffer.alloc(1000, i));
      const digests = await Promise.all(inputs.map((m) => s.hash(m)));
      expect(digests.map((d) => Buffer.from(d.digest).toString('hex'))).toEqual(inputs.map((m) => createHash('sha256').update(m).digest('hex')));
      expect(s.counts.messagesSent).toBeGreaterThan(2);
      // 8150 bytes of data is 8170 with its id: fits alone; 8190 does not.
      expect((await s.hash(Buffer.alloc(8150))).digest.length).toBe(32);
      const over = await s.hash(Buffer.alloc(8190)).then(() => undefined, (e: unknown) => e as RingfenceError);
      expect(over?.message).toMatch(/^the hash operation needs 82\d\d bytes with its id, more than the 8192-byte messages this client sends; send large data with hashStream/);
      await s.close();
    } finally {
      await small.close();
    }
  });

  it('a failed operation rejects only its own promise, with the ItemStatus as a typed error', async () => {
    const s = client.session();
    const results = await Promise.allSettled([s.encrypt('k', 'a'), s.encrypt('missing-x', 'b'), s.encrypt('k', 'c')]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const err = (results[1] as PromiseRejectedResult).reason as RingfenceError;
    expect(isNotFound(err)).toBe(true);
    expect(err.reason).toBe(ErrorReason.KEY_NOT_FOUND);
    expect(err.metadata).toEqual({ key_name: 'missing-x' });
    expect(err.rpc).toBe('ringfence.v1.CryptoService/Session');
    await s.close();
  });

  it('keeps at most maxInFlight operations outstanding at the daemon', async () => {
    const s = client.session({ maxInFlight: 8 });
    fake.sessionDelayMs = 5;
    let maxSeenByClient = 0;
    const all = Array.from({ length: 400 }, (_, i) =>
      s.hash(`x${i}`).finally(() => {
        maxSeenByClient = Math.max(maxSeenByClient, s.outstanding);
      }),
    );
    await Promise.all(all);
    expect(fake.stats.sessionMaxOutstanding).toBe(8);
    expect(maxSeenByClient).toBeLessThanOrEqual(8);
    await s.close();
  });

  it('pipelines 10,000 operations', async () => {
    const s = client.session();
    fake.sessionDelayMs = 1;
    const n = 10_000;
    const results = await Promise.all(Array.from({ length: n }, (_, i) => s.hash(String(i))));
    expect(results).toHaveLength(n);
    expect(Buffer.from(results[9_999]!.digest).equals(createHash('sha256').update('9999').digest())).toBe(true);
    expect(fake.stats.sessionMaxOutstanding).toBeLessThanOrEqual(256);
    await s.close();
  });

  it('when the stream dies, its pending operations reject with its error; the next call reopens', async () => {
    const s = client.session();
    fake.sessionDelayMs = 20;
    const streamsBefore = fake.stats.sessionStreams;
    const doomed = Array.from({ length: 20 }, (_, i) => s.hash(`h${i}`).catch((e: unknown) => e));
    const killer = s.encrypt('kill-session', 'x').catch((e: unknown) => e);
    const outcomes = [...(await Promise.all(doomed)), await killer];
    const errors = outcomes.filter((o): o is RingfenceError => o instanceof RingfenceError);
    expect(errors.length).toBeGreaterThan(0);
    for (const e of errors) {
      expect(isUnavailable(e)).toBe(true);
      expect(e.reasonName).toBe('SHUTTING_DOWN');
    }
    expect(isUnavailable(outcomes.at(-1))).toBe(true);
    fake.sessionDelayMs = 1;
    expect(text((await s.decrypt((await s.encrypt('k', 'again')).ciphertext)).plaintext)).toBe('again');
    expect(fake.stats.sessionStreams).toBe(streamsBefore + 2);
    await s.close();
  });

  it('close() waits for outstanding operations, then refuses new ones', async () => {
    const s = client.session();
    fake.sessionDelayMs = 30;
    let done = 0;
    const ops = Array.from({ length: 50 }, () => s.generateRandom(8).then(() => done++));
    await s.close();
    expect(done).toBe(50);
    await Promise.all(ops);
    const err = await s.hash('late').catch((e: unknown) => e);
    expect(isCancelled(err)).toBe(true);
    expect((err as Error).message).toMatch(/session is closed/);
  });

  it('per-operation abort and deadline settle just that operation', async () => {
    const s = client.session({ maxInFlight: 4 });
    fake.sessionDelayMs = 200;
    const ac = new AbortController();
    const aborted = s.hash('a', 'sha256', { signal: ac.signal });
    const expired = s.hash('b', 'sha256', { timeoutMs: 20 });
    const fine = s.hash('c');
    ac.abort();
    expect(isCancelled(await aborted.catch((e: unknown) => e))).toBe(true);
    expect(isDeadlineExceeded(await expired.catch((e: unknown) => e))).toBe(true);
    expect((await fine).digest.length).toBe(32);
    expect(isCancelled(await s.hash('d', 'sha256', { signal: AbortSignal.abort() }).catch((e: unknown) => e))).toBe(true);
    await s.close();
  });

  it('aborting the session signal fails queued and pending operations and closes it', async () => {
    const ac = new AbortController();
    const s = client.session({ maxInFlight: 2, signal: ac.signal });
    fake.sessionDelayMs = 200;
    const ops = Array.from({ length: 6 }, (_, i) => s.hash(`x${i}`).catch((e: unknown) => e));
    setTimeout(() => ac.abort(), 20);
    for (const outcome of await Promise.all(ops)) expect(isCancelled(outcome)).toBe(true);
    expect(isCancelled(await s.hash('after').catch((e: unknown) => e))).toBe(true);
  });

  it('client.pipelined is one shared session', async () => {
    expect(client.pipelined).toBe(client.pipelined);
    expect(text((await client.pipelined.decrypt((await client.pipelined.encrypt('k', 'shared')).ciphertext)).plaintext)).toBe('shared');
  });

  it('an idle session half-closes its stream and reopens on demand', async () => {
    const s = client.session({ idleTimeoutMs: 20 });
    const before = fake.stats.sessionStreams;
    await s.hash('one');
    await new Promise((r) => setTimeout(r, 100));
    await s.hash('two');
    expect(fake.stats.sessionStreams).toBe(before + 2);
    await s.close();
  });
});

describe('an idle session releases its stream', () => {
  const openAfter = async (ms: number) => {
    await new Promise((r) => setTimeout(r, ms));
    return fake.stats.sessionStreamsOpen;
  };

  it('when its last operation settled unsent (aborted before it went out): found by review', async () => {
    const s = client.session({ idleTimeoutMs: 20 });
    const open = fake.stats.sessionStreamsOpen;
    await s.hash('one');
    const ac = new AbortController();
    const aborted = s.hash('two', 'sha256', { signal: ac.signal }).catch((e: unknown) => e);
    ac.abort(); // in the same turn: still queued, never sent
    expect(isCancelled(await aborted)).toBe(true);
    expect(await openAfter(300)).toBe(open);
    await s.close();
  });

  it('when its only operation was aborted before any stream existed: none is opened', async () => {
    const s = client.session({ idleTimeoutMs: 20 });
    const [opened, open] = [fake.stats.sessionStreams, fake.stats.sessionStreamsOpen];
    const ac = new AbortController();
    const aborted = s.hash('never sent', 'sha256', { signal: ac.signal }).catch((e: unknown) => e);
    ac.abort();
    expect(isCancelled(await aborted)).toBe(true);
    expect(await openAfter(300)).toBe(open);
    expect(fake.stats.sessionStreams).toBe(opened);
    await s.close();
  });

  it('when its last operation passed its deadline while queued behind maxInFlight', async () => {
    const s = client.session({ idleTimeoutMs: 20, maxInFlight: 1 });
    const open = fake.stats.sessionStreamsOpen;
    fake.sessionDelayMs = 200;
    const first = s.hash('slow');
    const late = s.hash('queued', 'sha256', { timeoutMs: 20 }).catch((e: unknown) => e);
    expect(isDeadlineExceeded(await late)).toBe(true);
    await first;
    expect(await openAfter(300)).toBe(open);
    await s.close();
  });
});

describe('session packing', () => {
  it('operations queued in one turn share messages (up to PACK_OPS), and packed answers reach their callers by id', async () => {
    const s = client.session();
    const before = { messages: fake.stats.sessionMessages, answers: fake.stats.sessionAnswerMessages };
    const inputs = Array.from({ length: 200 }, (_, i) => `packed ${i}`);
    const digests = await Promise.all(inputs.map((m) => s.hash(m, 'sha256')));
    expect(digests.map((d) => Buffer.from(d.digest).toString('hex'))).toEqual(inputs.map((m) => createHash('sha256').update(m).digest('hex')));
    expect(fake.stats.sessionMessages - before.messages).toBe(Math.ceil(200 / PACK_OPS));
    expect(fake.stats.sessionMaxOpsPerMessage).toBe(PACK_OPS);
    expect(s.counts).toMatchObject({ messagesSent: 4, operationsSent: 200, answersReceived: 200 });
    // The fake packs the answers due in the same turn: fewer messages came back than answers.
    expect(s.counts.messagesReceived).toBe(fake.stats.sessionAnswerMessages - before.answers);
    expect(s.counts.messagesReceived).toBeLessThan(200);
    expect(fake.stats.sessionOutOfOrder).toBeGreaterThan(0);
    await s.close();
  });

  it('a packed message with successes and failures settles each operation on its own', async () => {
    const s = client.session();
    const results = await Promise.allSettled([s.hash('a'), s.encrypt('missing-1', 'x'), s.generateRandom(3), s.encrypt('denied', 'y'), s.hash('b')]);
    expect(fake.stats.sessionMaxOpsPerMessage).toBe(5);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled']);
    expect(isNotFound((results[1] as PromiseRejectedResult).reason)).toBe(true);
    expect(((results[3] as PromiseRejectedResult).reason as RingfenceError).code).toBe(7);
    expect(((results[2] as PromiseFulfilledResult<{ data: Uint8Array }>).value.data).length).toBe(3);
    await s.close();
  });

  it('packs at most PACK_BYTES per message; a larger operation goes as its unary call', async () => {
    const s = client.session();
    const sent = fake.stats.sessionMessages;
    const unaryHashes = fake.stats.calls.Hash ?? 0;
    const big = Buffer.alloc(25 * 1024, 1);
    const oversized = Buffer.alloc(PACK_BYTES + 1, 2);
    const digests = await Promise.all([s.hash(big), s.hash(big), s.hash(big), s.hash(oversized), s.hash('small')]);
    expect(Buffer.from(digests[3]!.digest).toString('hex')).toBe(createHash('sha256').update(oversized).digest('hex'));
    expect(fake.stats.sessionMaxOpsPerMessage).toBe(2);
    // [big, big] [big, small] on the stream; the oversized one as Hash
    expect(fake.stats.sessionMessages - sent).toBe(2);
    expect((fake.stats.calls.Hash ?? 0) - unaryHashes).toBe(1);
    await s.close();
  });

  it("an operation over a daemon's smaller max_message_bytes fails alone, not the stream with the others (review by helper-110)", async () => {
    const small = await startFakeServer(undefined, { 'grpc.max_receive_message_length': 1024 * 1024 + 128 * 1024 });
    const c = new RingfenceClient({ socketPath: small.socketPath });
    try {
      small.sessionDelayMs = 50;
      const s = c.session();
      const hashes = Array.from({ length: 10 }, (_, i) => s.hash(`h${i}`));
      const big = s.encrypt('app', Buffer.alloc(2 * 1024 * 1024));
      const results = await Promise.allSettled([...hashes, big]);
      expect(results.slice(0, 10).map((r) => r.status)).toEqual(Array(10).fill('fulfilled'));
      expect(results[10]).toMatchObject({ status: 'rejected', reason: { code: 8 } });
      await s.close();
    } finally {
      await c.close();
      await small.close();
    }
  });

  it('close() once: a second call waits for the first, and a session made meanwhile is closed (review by helper-110)', async () => {
    const c = new RingfenceClient({ socketPath: fake.socketPath });
    fake.sessionDelayMs = 100;
    const order: string[] = [];
    const op = c.pipelined.hash('y').then(() => order.push('op'), (e: Error) => order.push(`op failed: ${e.message}`));
    const first = c.close().then(() => order.push('first'));
    const second = c.close().then(() => order.push('second'));
    const late = c.session().hash('z').then(() => 'answered', (e: RingfenceError) => `${e.code} ${e.message}`);
    await Promise.all([op, first, second]);
    expect(order).toEqual(['op', 'first', 'second']);
    expect(await late).toBe('1 the session is closed');
  });

  it('never packs more than maxInFlight leaves room for', async () => {
    const s = client.session({ maxInFlight: 5 });
    await Promise.all(Array.from({ length: 40 }, (_, i) => s.hash(`q${i}`)));
    expect(fake.stats.sessionMaxOpsPerMessage).toBeLessThanOrEqual(5);
    expect(fake.stats.sessionMaxOutstanding).toBeLessThanOrEqual(5);
    await s.close();
  });

  it('takeBatch skips operations settled while queued and always takes one, however large', () => {
    const q = [
      { bytes: 10, settled: true },
      { bytes: PACK_BYTES * 2, settled: false },
      { bytes: 10, settled: false },
    ];
    expect(takeBatch(q, 10)).toEqual([{ bytes: PACK_BYTES * 2, settled: false }]);
    expect(takeBatch(q, 0)).toEqual([]);
    expect(takeBatch(q, 1)).toEqual([{ bytes: 10, settled: false }]);
    expect(q).toEqual([]);
  });

  it('packedBytes is never below what an operation adds to a packed message', () => {
    const ops = [
      { case: 'encrypt' as const, value: { keyName: 'k'.repeat(64), plaintext: new Uint8Array(1024), associatedData: new Uint8Array(100) } },
      { case: 'decrypt' as const, value: { ciphertext: new Uint8Array(1076), associatedData: new Uint8Array(3) } },
      { case: 'verifyMac' as const, value: { keyName: 'ключ', data: new Uint8Array(5), mac: new Uint8Array(32), keyVersion: 4_000_000_000 } },
      { case: 'generateRandom' as const, value: { lengthBytes: 1 << 20 } },
    ];
    for (const op of ops) {
      // As the SDK measures it: the operation without an id.
      const msg = create(SessionRequestSchema, { op } as never);
      const alone = toBinary(SessionRequestSchema, create(SessionRequestSchema, { id: 1n }));
      const packed = toBinary(SessionRequestSchema, create(SessionRequestSchema, { id: 1n, more: [{ ...msg, id: 0xffff_ffff_ffff_ffffn }] }));
      expect(packedBytes(toBinary(SessionRequestSchema, msg).length), op.case).toBeGreaterThanOrEqual(packed.length - alone.length);
    }
  });
});

describe('memory of operations given up on (review by helper-110)', () => {
  it('an operation that timed out while the daemon holds it keeps no copy of its data, nor does its error', async () => {
    const { setFlagsFromString } = await import('node:v8');
    const { runInNewContext } = await import('node:vm');
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const collect = async () => {
      for (let i = 0; i < 3; i++) {
        await new Promise((r) => setImmediate(r));
        gc();
      }
    };
    const s = client.session();
    await s.hash('warm up');
    fake.sessionDelayMs = 3000; // answers come after the callers gave up
    await collect();
    const before = process.memoryUsage().arrayBuffers;
    const OPS = 96;
    const BYTES = 40 * 1024; // under PACK_BYTES: sent on the stream
    const errors = await Promise.all(Array.from({ length: OPS }, () => s.encrypt('app', Buffer.alloc(BYTES, 7), { timeoutMs: 200 }).catch((e: unknown) => e)));
    expect(errors.every((e) => isDeadlineExceeded(e))).toBe(true);
    await collect();
    // The fake daemon, in this process, holds the requests it has not answered (OPS × BYTES); the
    // SDK's copies would be as much again. The errors are kept alive on purpose.
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(1.5 * OPS * BYTES);
    expect(errors.length).toBe(OPS);
    expect(fake.stats.sessionEmptyOps).toBe(0);
    fake.sessionDelayMs = 3;
    await s.close();
  }, 30_000);
});

describe('operations given up on before grpc-js encoded them (review by helper-111)', () => {
  it('reach the daemon whole or not at all, never as empty operations', async () => {
    const s = client.session();
    await s.hash('the stream is open');
    const [ops, empty] = [fake.stats.sessionOps, fake.stats.sessionEmptyOps];
    const results = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => s.hash(Buffer.alloc(40 * 1024, i), undefined, { timeoutMs: 20 })));
    expect(results.some((r) => r.status === 'rejected')).toBe(true);
    // Everything sent has arrived.
    await vi.waitFor(() => expect(fake.stats.sessionOps - ops).toBe(s.counts.operationsSent - 1), { timeout: 10_000 });
    expect(fake.stats.sessionEmptyOps - empty).toBe(0);
    await s.close();
  }, 30_000);
});
