/**
 * HashStream through the real daemon handlers (crypto-service.ts, handler.ts, ops/hash.ts, the
 * engine), a real grpc-js server on a Unix socket and the real SDK, on the host: only AF_ALG is faked
 * (node:crypto behind sendRequest/readResult, with MSG_MORE semantics). The kernel's own digests are
 * checked in test/e2e/crypto.kernel.test.ts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

const fake = vi.hoisted(() => ({ next: 1000, open: new Map<number, { name: string; h?: import('node:crypto').Hash; done?: Buffer }>(), sends: [] as number[] }));
vi.mock('../../../native-ffi/af-alg.js', async (orig) => {
  const real = await orig<typeof import('../../../native-ffi/af-alg.js')>();
  const { createHash } = await import('node:crypto');
  const node = (n: string) => ({ 'sha3-256': 'sha3-256', 'sha3-512': 'sha3-512' })[n] ?? n;
  const send = (op: number, _h: unknown, data: Buffer[], flags = 0) => {
    const s = fake.open.get(op)!;
    s.h ??= createHash(node(s.name));
    let n = 0;
    for (const d of data) { s.h.update(d); n += d.length; fake.sends.push(d.length); }
    if (!(flags & real.MSG_MORE)) { s.done = s.h.digest(); s.h = undefined; }
    return n;
  };
  return {
    ...real,
    openTransform: (_t: string, name: string) => { const fd = fake.next++; fake.open.set(fd, { name }); return fd; },
    acceptOp: (tfm: number) => { const fd = fake.next++; fake.open.set(fd, { name: fake.open.get(tfm)!.name }); return fd; },
    closeFd: (fd: number) => { fake.open.delete(fd); },
    sendRequest: send,
    sendRequestAsync: async (...a: Parameters<typeof send>) => send(...a),
    readResult: (op: number, out: Buffer) => { const d = fake.open.get(op)!.done!; d.copy(out); return d.length; },
  };
});

import { CryptoEngine } from '../engine/engine.js';
import { cryptoServiceHandlers } from './crypto-service.js';
import { daemonServiceDefinition } from './decode.js';
import { CallerSlots } from './caller-slots.js';
import { DEFAULT_LIMITS } from '../config.js';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import { HashStreamRequestSchema, HashStreamResponseSchema } from '../../gen/ringfence/v1/crypto_pb.js';
import { HashAlgorithm } from '../../gen/ringfence/v1/suite_pb.js';
import { ErrorReason, RingfenceClient } from '../../client/sdk/index.js';
import type { OpContext } from '../ops/context.js';
import { ApiError, ErrorReason as Reason, Status } from './errors.js';

const permissionDenied = (op: string) => new ApiError(Status.PERMISSION_DENIED, Reason.PERMISSION_DENIED, 'not allowed', { operation: op });

let dir: string;
let socketPath: string;
let server: grpc.Server;
let client: RingfenceClient;
const audit = vi.fn();
const engine = new CryptoEngine();
const slots = new CallerSlots(3, 'HashStream calls', 'hash_streams_per_caller', 'maxHashStreamsPerCaller');
const limits = { ...DEFAULT_LIMITS };
/** The caller's access check, per call; a test swaps it to revoke `hash` mid-stream. */
let authorize: (op: string) => void = () => {};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rv-hs-'));
  socketPath = join(dir, 's.sock');
  const ctx = { keys: {} as never, engine, limits, suiteStatus: () => 'available', authorize: () => {}, budget: {} as never, hashStreamSlots: slots } as unknown as OpContext;
  const deps = { audit, log: { error: vi.fn() }, access: { forCall: () => ({ authorize: (op: string) => authorize(op), principal: { uid: 4242 } }) } } as never;
  server = new grpc.Server({ 'grpc.max_receive_message_length': limits.maxMessageBytes });
  server.addService(daemonServiceDefinition(CryptoService, limits.maxBatchItems), cryptoServiceHandlers(ctx, deps));
  await new Promise<void>((res, rej) => server.bindAsync(`unix:${socketPath}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
  client = new RingfenceClient({ socketPath });
});
afterAll(async () => {
  await client.close();
  server.forceShutdown();
  rmSync(dir, { recursive: true, force: true });
});
afterEach(() => audit.mockClear());

/** Everything released once a call is over: the caller's slot, the engine's stream count, every op socket. */
const released = () => vi.waitFor(() => {
  expect(slots.total).toBe(0);
  expect(engine.openDigestStreams).toBe(0);
  expect([...fake.open.values()].filter((s) => s.h || s.done).length).toBe(0);
});
const lastAudit = () => audit.mock.calls.at(-1)![0] as Record<string, unknown>;

/** A raw client stream (no SDK), for message sequences the SDK never sends. */
function raw(messages: { algorithm?: HashAlgorithm; data?: Uint8Array }[], opts: { deadlineMs?: number; keepOpen?: boolean } = {}) {
  const c = new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure());
  let call!: grpc.ClientWritableStream<Uint8Array>;
  const done = new Promise<{ err: grpc.ServiceError | null; res?: ReturnType<typeof fromBinary<typeof HashStreamResponseSchema>> }>((resolve) => {
    call = c.makeClientStreamRequest('/ringfence.v1.CryptoService/HashStream', (m: Uint8Array) => Buffer.from(m), (b: Buffer) => b as never, new grpc.Metadata(), { deadline: opts.deadlineMs ? Date.now() + opts.deadlineMs : Infinity }, (err, res) => {
      resolve({ err, res: res ? fromBinary(HashStreamResponseSchema, res as unknown as Uint8Array) : undefined });
      c.close();
    });
  });
  for (const m of messages) call.write(toBinary(HashStreamRequestSchema, create(HashStreamRequestSchema, m)));
  if (!opts.keepOpen) call.end();
  return { call, done };
}

describe('HashStream (daemon path)', { timeout: 30_000 }, () => {
  it.each([
    ['sha256', HashAlgorithm.SHA256], ['sha384', HashAlgorithm.SHA384], ['sha512', HashAlgorithm.SHA512], ['sha3-256', HashAlgorithm.SHA3_256],
  ] as const)('%s: pieces cut at odd places, empty ones too, match node:crypto', async (name, alg) => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const cuts = [0, 0, 1, 8, 8, 65_543, 1_048_576 + 65_543 + 3, 2_500_000, data.length];
    const pieces = cuts.slice(1).map((end, i) => data.subarray(cuts[i], end));
    const r = await client.hashStream(Readable.from(pieces), name);
    expect(Buffer.from(r.digest).toString('hex')).toBe(createHash(name).update(data).digest('hex'));
    expect([r.algorithm, r.dataBytes]).toEqual([alg, BigInt(data.length)]);
    // Written once the HTTP/2 stream closes (call-end.ts), which may be just after the client has the answer.
    await vi.waitFor(() => expect(lastAudit()).toMatchObject({ rpc: 'CryptoService/HashStream', outcome: 'OK', bytesIn: data.length, bytesOut: createHash(name).digest().length }));
    await released();
  });

  it('a grant of hash revoked mid-stream (a policy reload) ends the stream with PERMISSION_DENIED, as Encrypt/DecryptStream do (review by helper-93)', async () => {
    let checks = 0;
    authorize = (op) => {
      expect(op).toBe('hash');
      if (++checks > 3) throw permissionDenied('hash');
    };
    try {
      const r = raw([{ data: Buffer.from('one') }, { data: Buffer.from('two') }, { data: Buffer.from('three') }], { keepOpen: true });
      const { err } = await r.done;
      expect([err?.code, err?.details]).toEqual([grpc.status.PERMISSION_DENIED, 'not allowed']);
      expect(checks).toBe(4); // at the call, then per message: the second message was the last one hashed
      await released();
    } finally {
      authorize = () => {};
    }
  });

  it.each([
    ['a first message', (call: grpc.ClientWritableStream<Uint8Array>) => call.write(toBinary(HashStreamRequestSchema, create(HashStreamRequestSchema, { data: Buffer.from('sent after the reload') })))],
    // Not a digest of nothing (review by helper-115).
    ['no message, a half-close', (call: grpc.ClientWritableStream<Uint8Array>) => call.end()],
    // Not INVALID_ARGUMENT: the revoked caller learns nothing more (review by helper-115).
    ['a first message naming an unknown algorithm', (call: grpc.ClientWritableStream<Uint8Array>) => call.write(toBinary(HashStreamRequestSchema, create(HashStreamRequestSchema, { algorithm: 99 as HashAlgorithm, data: Buffer.from('x') })))],
  ])('a grant revoked after the call opened, then %s: PERMISSION_DENIED (review by helper-113)', async (_, send) => {
    let checks = 0;
    authorize = () => {
      checks++;
    };
    try {
      const r = raw([], { keepOpen: true });
      await vi.waitFor(() => expect(checks).toBe(1)); // the call was checked and waits for a message
      authorize = (op) => {
        checks++;
        throw permissionDenied(op);
      };
      send(r.call);
      const { err } = await r.done;
      expect([err?.code, err?.details]).toEqual([grpc.status.PERMISSION_DENIED, 'not allowed']);
      expect(checks).toBe(2);
      await vi.waitFor(() => expect(lastAudit()).toMatchObject({ rpc: 'CryptoService/HashStream', outcome: 'PERMISSION_DENIED' }));
      await released();
    } finally {
      authorize = () => {};
    }
  });

  it('a grant revoked after the last data message, then a half-close: PERMISSION_DENIED, no digest (review by helper-118)', async () => {
    let checks = 0;
    authorize = () => {
      checks++;
    };
    try {
      const r = raw([{ data: Buffer.from('hashed while allowed') }], { keepOpen: true });
      await vi.waitFor(() => expect(checks).toBe(2)); // the call, then its first message
      authorize = (op) => {
        checks++;
        throw permissionDenied(op);
      };
      r.call.end();
      const { err, res } = await r.done;
      expect([err?.code, res]).toEqual([grpc.status.PERMISSION_DENIED, undefined]);
      await released();
    } finally {
      authorize = () => {};
    }
  });

  it('no message at all, then half-close: SHA-256 of nothing', async () => {
    const { done } = await raw([]);
    const { err, res } = await done;
    expect(err).toBeNull();
    expect(Buffer.from(res!.digest).toString('hex')).toBe(createHash('sha256').digest('hex'));
    expect([res!.algorithm, res!.dataBytes]).toEqual([HashAlgorithm.SHA256, 0n]);
    await released();
  });

  it('a message over maxStreamChunkBytes: RESOURCE_EXHAUSTED / PAYLOAD_TOO_LARGE, audited so, all released', async () => {
    const { done } = raw([{ algorithm: HashAlgorithm.SHA256, data: new Uint8Array(10) }, { data: new Uint8Array(limits.maxStreamChunkBytes + 1) }]);
    const { err } = await done;
    expect(err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    await vi.waitFor(() => expect(lastAudit()).toMatchObject({ outcome: 'RESOURCE_EXHAUSTED', reason: 'PAYLOAD_TOO_LARGE' }));
    await released();
  });

  it('a message over maxMessageBytes, refused by grpc-js itself, is audited RESOURCE_EXHAUSTED as the client was told (review by helper-107)', async () => {
    const { done } = raw([{ algorithm: HashAlgorithm.SHA256, data: new Uint8Array(10) }, { data: new Uint8Array(limits.maxMessageBytes + 1) }], { keepOpen: true });
    const { err } = await done;
    expect([err?.code, err?.details]).toEqual([grpc.status.RESOURCE_EXHAUSTED, expect.stringContaining('larger than max')]);
    await vi.waitFor(() => expect(lastAudit()).toMatchObject({ rpc: 'CryptoService/HashStream', outcome: 'RESOURCE_EXHAUSTED' }));
    await released();
  });

  it('a later message naming another algorithm: INVALID_ARGUMENT / STREAM_PROTOCOL_VIOLATION', async () => {
    const { done } = raw([{ algorithm: HashAlgorithm.SHA256, data: new Uint8Array(10) }, { algorithm: HashAlgorithm.SHA512, data: new Uint8Array(1) }]);
    const { err } = await done;
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    await vi.waitFor(() => expect(lastAudit()).toMatchObject({ outcome: 'INVALID_ARGUMENT', reason: 'STREAM_PROTOCOL_VIOLATION' }));
    await released();
  });

  it('cancelled mid-stream through the SDK: the slot and the op socket are released', async () => {
    const source = new PassThrough();
    const ac = new AbortController();
    const p = client.hashStream(source, 'sha256', { signal: ac.signal }).catch((e: unknown) => e);
    source.write(Buffer.alloc(1000));
    await vi.waitFor(() => expect(slots.total).toBe(1), { timeout: 10_000 });
    ac.abort();
    expect(await p).toMatchObject({ codeName: 'CANCELLED' });
    await released();
    // grpc-js's cancel sends END_STREAM then RST_STREAM: the daemon must not take it for a normal end.
    await vi.waitFor(() => expect(lastAudit()).toMatchObject({ rpc: 'CryptoService/HashStream', outcome: 'CANCELLED' }));
  });

  it('the per-caller limit refuses one more with RESOURCE_EXHAUSTED / DAEMON_BUSY', async () => {
    const open = [1, 2, 3].map(() => raw([{ data: new Uint8Array(1) }], { keepOpen: true }));
    await vi.waitFor(() => expect(slots.total).toBe(3), { timeout: 10_000 });
    const extra = await client.hashStream(Readable.from([Buffer.from('x')])).catch((e: unknown) => e);
    expect(extra).toMatchObject({ codeName: 'RESOURCE_EXHAUSTED', reason: ErrorReason.DAEMON_BUSY });
    for (const o of open) o.call.end();
    for (const o of open) expect((await o.done).err).toBeNull();
    await released();
  });

  // Found by review (it failed before): every call that ended early was audited CANCELLED.
  it('a call whose deadline passes mid-stream is audited DEADLINE_EXCEEDED, as the client was told', async () => {
    const { done } = raw([{ data: new Uint8Array(5) }], { deadlineMs: 2000, keepOpen: true });
    await vi.waitFor(() => expect(slots.total).toBe(1), { timeout: 10_000 });
    const { err } = await done;
    expect(err?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await released();
    await vi.waitFor(() => expect(audit).toHaveBeenCalled());
    expect(lastAudit()).toMatchObject({ rpc: 'CryptoService/HashStream', outcome: 'DEADLINE_EXCEEDED' });
  });

  // Found by review: the SDK cut fixed 1 MiB pieces, so a daemon configured below that refused every hashStream.
  it('against a daemon whose maxStreamChunkBytes is below 1 MiB: refused as PAYLOAD_TOO_LARGE naming the limit, and works with pieceBytes', async () => {
    const saved = limits.maxStreamChunkBytes;
    limits.maxStreamChunkBytes = 256 * 1024;
    try {
      const data = randomBytes(300 * 1024);
      const refused = await client.hashStream(Readable.from([data])).catch((e: unknown) => e);
      expect(refused).toMatchObject({ codeName: 'RESOURCE_EXHAUSTED', reason: ErrorReason.PAYLOAD_TOO_LARGE });
      expect(String((refused as Error).message)).toContain(String(256 * 1024));
      await released();
      const r = await client.hashStream(Readable.from([data]), 'sha256', { pieceBytes: 256 * 1024 });
      expect(Buffer.from(r.digest).toString('hex')).toBe(createHash('sha256').update(data).digest('hex'));
      expect(fake.sends.slice(-2)).toEqual([256 * 1024, data.length - 256 * 1024]);
    } finally {
      limits.maxStreamChunkBytes = saved;
      await released();
    }
  });

  it('pieceBytes outside 1..1 MiB is a RangeError before any call', async () => {
    for (const bad of [0, -1, 1.5, 2 * 1024 * 1024]) {
      await expect(client.hashStream(Readable.from([Buffer.from('x')]), 'sha256', { pieceBytes: bad })).rejects.toThrow(RangeError);
    }
    expect(audit).not.toHaveBeenCalled();
  });
});
