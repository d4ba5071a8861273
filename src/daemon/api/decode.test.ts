// Bytes that are no protobuf message, sent raw to the CryptoService handlers on the host: every kind
// of RPC (unary, client stream, bidi stream, session) answers INVALID_ARGUMENT, not grpc-js' INTERNAL.
import * as grpc from '@grpc/grpc-js';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import { EncryptRequestSchema, GenerateRandomRequestSchema } from '../../gen/ringfence/v1/crypto_pb.js';
import { BatchEncryptRequestSchema } from '../../gen/ringfence/v1/batch_pb.js';
import { cryptoServiceHandlers } from './crypto-service.js';
import type { AuditEntry } from './audit.js';
import type { Access } from '../policy/access.js';
import type { OpContext } from '../ops/context.js';
import { MemoryBudget } from './memory-budget.js';
import { CallerSlots } from './caller-slots.js';
import { countSessionOperations, countTopLevelFields, daemonServiceDefinition, undecodable, UndecodableRequest } from './decode.js';
import { Status } from './errors.js';
import { SessionRequestSchema } from '../../gen/ringfence/v1/session_pb.js';
import { callerEngine } from '../engine/caller-engine.test-support.js';

const socket = join(mkdtempSync(join(tmpdir(), 'rf-decode-')), 'rf.sock');
// Field 1 as a varint whose bytes run out: no message type decodes it.
const GARBAGE = Buffer.from([0x08, 0xde, 0xad, 0xbe, 0xef]);
const raw = (b: Buffer) => b;
const MAX_ITEMS = 10;
const audits: AuditEntry[] = [];
let server: grpc.Server;
let client: grpc.Client;

beforeAll(async () => {
  const allowAll = { forCall: () => ({ principal: undefined, authorize: () => {}, allows: () => true, mayEverDo: () => true }) } as unknown as Access;
  const ctx = { limits: { maxPayloadBytes: 1024, maxSessionInFlight: 4 }, engine: callerEngine(), budget: new MemoryBudget(1 << 30), hashStreamSlots: new CallerSlots(64, 'HashStream calls', 'hash_streams_per_caller', 'maxHashStreamsPerCaller') } as unknown as OpContext;
  server = new grpc.Server();
  server.addService(daemonServiceDefinition(CryptoService, MAX_ITEMS), cryptoServiceHandlers(ctx, { audit: (e) => audits.push(e), log: pino({ level: 'silent' }), access: allowAll }));
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  client = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure());
});
afterAll(() => {
  client.close();
  server.forceShutdown();
});

function check(err: grpc.ServiceError | null): void {
  expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
  expect(err?.details).toMatch(/^the request is not a valid ringfence\.v1\.\w+ message/);
  expect(err?.details).not.toMatch(/dead|beef|3q2\+/i);
}

describe('undecodable request bodies', () => {
  it('the garbage really does not decode', () => {
    expect(() => fromBinary(GenerateRandomRequestSchema, GARBAGE)).toThrow();
  });

  it('unary: INVALID_ARGUMENT, audited', async () => {
    const err = await new Promise<grpc.ServiceError | null>((resolve) => client.makeUnaryRequest('/ringfence.v1.CryptoService/GenerateRandom', raw, raw, GARBAGE, (e) => resolve(e)));
    check(err);
    expect(audits.at(-1)).toMatchObject({ rpc: 'CryptoService/GenerateRandom', outcome: 'INVALID_ARGUMENT', reason: 'INVALID_FIELD' });
  });

  it('client stream: INVALID_ARGUMENT', async () => {
    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      const call = client.makeClientStreamRequest('/ringfence.v1.CryptoService/HashStream', raw, raw, (e) => resolve(e));
      call.write(GARBAGE);
      call.end();
    });
    check(err);
  });

  it.each(['EncryptStream', 'DecryptStream', 'Session'])('bidi %s: INVALID_ARGUMENT', async (method) => {
    const call = client.makeBidiStreamRequest(`/ringfence.v1.CryptoService/${method}`, raw, raw);
    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      call.on('data', () => undefined);
      call.on('error', (e: grpc.ServiceError) => resolve(e));
      call.on('status', (s: grpc.StatusObject) => s.code === grpc.status.OK && resolve(null));
      call.write(GARBAGE);
      call.end();
    });
    check(err);
  });
});

describe('requests that would decode into millions of objects', () => {
  // Two bytes each on the wire: an empty item of field 1 (BatchEncrypt requests), or an unknown
  // varint field 15 that every message type would otherwise keep.
  const emptyItems = (n: number) => Buffer.alloc(2 * n, Buffer.from([0x0a, 0x00]));
  const unknownFields = (n: number) => Buffer.alloc(2 * n, Buffer.from([0x78, 0x00]));

  function unary(method: string, body: Buffer): Promise<grpc.ServiceError | null> {
    return new Promise((resolve) => client.makeUnaryRequest(`/ringfence.v1.CryptoService/${method}`, raw, raw, body, (e) => resolve(e)));
  }

  it('a batch with a million empty items is refused undecoded: RESOURCE_EXHAUSTED, BATCH_TOO_LARGE', async () => {
    const err = await unary('BatchEncrypt', emptyItems(1_000_000));
    expect(err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(err?.details).toBe(`the ringfence.v1.BatchEncryptRequest message has more than ${MAX_ITEMS + 64} fields or items; the limit is ${MAX_ITEMS} items — split it`);
    expect(audits.at(-1)).toMatchObject({ rpc: 'CryptoService/BatchEncrypt', outcome: 'RESOURCE_EXHAUSTED', reason: 'BATCH_TOO_LARGE' });
  });

  it('so is any request padded with a million unknown fields', async () => {
    const err = await unary('GenerateRandom', unknownFields(1_000_000));
    expect(err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  });

  it('a session message with a million items ends the session with RESOURCE_EXHAUSTED', async () => {
    const call = client.makeBidiStreamRequest('/ringfence.v1.CryptoService/Session', raw, raw);
    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      call.on('data', () => undefined);
      call.on('error', (e: grpc.ServiceError) => resolve(e));
      call.on('status', (st: grpc.StatusObject) => st.code === grpc.status.OK && resolve(null));
      // Field 16 (`more`), wire type 2, empty: 0x82 0x01 0x00.
      call.write(Buffer.alloc(3 * 1_000_000, Buffer.from([0x82, 0x01, 0x00])));
      call.end();
    });
    expect(err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  });

  it('items hidden from the count behind a mistyped tag are refused undecoded, as INVALID_ARGUMENT (found by review: 4 MiB decoded into 2 million items)', async () => {
    const deserialize = (method: string, b: Buffer) => daemonServiceDefinition(CryptoService, MAX_ITEMS)[method]!.requestDeserialize(b);
    const n = 1_000_000;
    const hidden: [string, Buffer][] = [
      // BatchEncrypt: field 1 tagged as a group first; the count stopped there, protobuf-es read on.
      ['batchEncrypt', Buffer.concat([Buffer.from([0x0b, 0x00]), emptyItems(n)])],
      // Session: `more` tagged as a group first.
      ['session', Buffer.concat([Buffer.from([0x83, 0x01, 0x00]), Buffer.alloc(3 * n, Buffer.from([0x82, 0x01, 0x00]))])],
      // Session: `id` (a varint) tagged length-delimited over everything after it.
      ['session', (() => {
        const rest = Buffer.alloc(3 * n, Buffer.from([0x82, 0x01, 0x00]));
        return Buffer.concat([Buffer.from([0x0a]), varint(rest.length), rest]);
      })()],
    ];
    for (const [method, body] of hidden) {
      const started = performance.now();
      const refused = deserialize(method, body);
      expect(refused, method).toBeInstanceOf(UndecodableRequest);
      expect(undecodable(refused as UndecodableRequest).code, method).toBe(Status.INVALID_ARGUMENT);
      // Refused by reading tags, not by building a million objects (printed, never asserted).
      console.log(`${method}: ${body.length} hidden-item bytes refused in ${(performance.now() - started).toFixed(1)} ms`);
    }
    const err = await unary('BatchEncrypt', hidden[0]![1]);
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('so does one whose single `more` item nests a million more (found by review: they were decoded first, for seconds)', async () => {
    const inner = Buffer.alloc(3 * 1_000_000, Buffer.from([0x82, 0x01, 0x00]));
    const body = Buffer.concat([Buffer.from([0x82, 0x01]), varint(inner.length), inner]);
    // Refused by the deserializer before protobuf-es builds a single object.
    const refused = daemonServiceDefinition(CryptoService, MAX_ITEMS).session!.requestDeserialize(body);
    expect(refused).toBeInstanceOf(UndecodableRequest);
    expect((refused as UndecodableRequest).error?.reasonName).toBe('BATCH_TOO_LARGE');
    const call = client.makeBidiStreamRequest('/ringfence.v1.CryptoService/Session', raw, raw);
    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      call.on('data', () => undefined);
      call.on('error', (e: grpc.ServiceError) => resolve(e));
      call.on('status', (st: grpc.StatusObject) => st.code === grpc.status.OK && resolve(null));
      call.write(body);
      call.end();
    });
    expect(err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  });

  it('countSessionOperations counts the operations at every depth and stops past its limit', () => {
    const op = (id: bigint, more: ReturnType<typeof create<typeof SessionRequestSchema>>[] = []) => create(SessionRequestSchema, { id, op: { case: 'hash', value: { data: new Uint8Array([1, 2]) } }, more });
    const enc = (m: ReturnType<typeof op>) => toBinary(SessionRequestSchema, m);
    expect(countSessionOperations(enc(op(1n)), 100)).toBe(1);
    expect(countSessionOperations(enc(op(1n, [op(2n), op(3n)])), 100)).toBe(3);
    const nested = op(1n, [op(2n, [op(3n, [op(4n), op(5n)])]), op(6n)]);
    expect(countSessionOperations(enc(nested), 100)).toBe(6);
    expect(countSessionOperations(enc(nested), 3)).toBe(4); // stopped once past 3
    // Within the limit, a nested message still decodes (the daemon then refuses the nested items one by one).
    const decoded = daemonServiceDefinition(CryptoService, MAX_ITEMS).session!.requestDeserialize(Buffer.from(enc(nested)));
    expect(decoded).not.toBeInstanceOf(UndecodableRequest);
    // Malformed: a length running past the end stops the count; the decoder reports it.
    expect(countSessionOperations(Uint8Array.from([0x82, 0x01, 0x7f, 0x82, 0x01, 0x00]), 100)).toBe(1);
  });

  it('a batch within the limit decodes, and unknown fields are dropped, not kept', () => {
    const def = daemonServiceDefinition(CryptoService, MAX_ITEMS).batchEncrypt!;
    const items = Array.from({ length: MAX_ITEMS }, () => create(EncryptRequestSchema, { keyName: 'k', plaintext: new Uint8Array([1]) }));
    const body = Buffer.concat([Buffer.from(toBinary(BatchEncryptRequestSchema, create(BatchEncryptRequestSchema, { requests: items }))), unknownFields(50)]);
    const decoded = def.requestDeserialize(body) as { requests: unknown[]; $unknown?: unknown[] };
    expect(decoded.requests).toHaveLength(MAX_ITEMS);
    expect(decoded.$unknown).toBeUndefined();
  });

  it('countTopLevelFields counts every wire type, stops past its limit, and leaves malformed input to the decoder', () => {
    const fixed64 = [0x09, 1, 2, 3, 4, 5, 6, 7, 8];
    const fixed32 = [0x15, 1, 2, 3, 4];
    const varint = [0x18, 0xff, 0xff, 0x03];
    const bytes = [0x22, 3, 9, 9, 9];
    const body = Buffer.from([...fixed64, ...fixed32, ...varint, ...bytes]);
    expect(countTopLevelFields(body, 100)).toBe(4);
    expect(countTopLevelFields(emptyItems(1000), 100)).toBe(101);
    expect(countTopLevelFields(Buffer.alloc(0), 100)).toBe(0);
    expect(countTopLevelFields(Buffer.from([0x08, 0xde, 0xad]), 100)).toBe(1); // cut-off varint
    expect(countTopLevelFields(Buffer.from([0x0b, 0x00]), 100)).toBe(1); // a group: not counted further
  });
});

/** A protobuf varint. */
function varint(n: number): Buffer {
  const out: number[] = [];
  for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n & 0x7f) | 0x80);
  out.push(n);
  return Buffer.from(out);
}
