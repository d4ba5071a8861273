/**
 * A message over maxMessageBytes, through a real grpc-js server: grpc-js refuses it itself
 * (RESOURCE_EXHAUSTED) and reports the call cancelled to the handler, as it reports every end; the
 * audit line must say what the client was told (review by helper-107: it said CANCELLED), and the
 * handler's own end is no internal error. HashStream's case: hash-stream.test.ts.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test, vi } from 'vitest';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import { SessionRequestSchema, SessionResponseSchema } from '../../gen/ringfence/v1/session_pb.js';
import type { OpContext } from '../ops/context.js';
import type { AuditEntry } from './audit.js';
import { daemonServiceDefinition } from './decode.js';
import type { HandlerDeps } from './handler.js';
import { MemoryBudget } from './memory-budget.js';
import { sessionHandler } from './session.js';
import { cryptoServiceHandlers } from './crypto-service.js';
import { CallerSlots } from './caller-slots.js';
import { SESSION_LIMITS } from './session-call.test-support.js';
import { callerEngine } from '../engine/caller-engine.test-support.js';

/** A grpc-js server with these CryptoService handlers on a Unix socket, and a client of it. */
async function serve(limits: typeof SESSION_LIMITS, handlers: (deps: HandlerDeps) => object, log: object = { error: vi.fn() }) {
  const dir = mkdtempSync(join(tmpdir(), 'rf-oversize-'));
  const audit: AuditEntry[] = [];
  const access = { forCall: () => ({ principal: undefined, authorize: () => {}, allows: () => true, mayEverDo: () => true }) };
  const server = new grpc.Server({ 'grpc.max_receive_message_length': limits.maxMessageBytes });
  server.addService(daemonServiceDefinition(CryptoService, limits.maxBatchItems), handlers({ audit: (e: AuditEntry) => audit.push(e), log, access } as unknown as HandlerDeps) as never);
  await new Promise<void>((res, rej) => server.bindAsync(`unix:${join(dir, 's.sock')}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
  const client = new grpc.Client(`unix:${join(dir, 's.sock')}`, grpc.credentials.createInsecure());
  const close = () => {
    client.close();
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  };
  return { audit, client, close };
}

/** A Session whose first operation (id 1) was answered: headers sent, so grpc-js's own status waits for the stream's trailers. */
async function answeredSession(client: grpc.Client) {
  const call = client.makeBidiStreamRequest('/ringfence.v1.CryptoService/Session', (m: Uint8Array) => Buffer.from(m), (b: Buffer) => fromBinary(SessionResponseSchema, b));
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  const answered = new Promise((resolve) => call.once('data', resolve));
  call.on('error', () => {});
  call.write(toBinary(SessionRequestSchema, create(SessionRequestSchema, { id: 1n, op: { case: 'generateRandom', value: { lengthBytes: 8 } } })));
  await answered;
  return { call, status };
}

test('an oversize Session message: the client gets RESOURCE_EXHAUSTED and the audit says so', async () => {
  const limits = { ...SESSION_LIMITS, maxMessageBytes: 64 * 1024 };
  const budget = new MemoryBudget(1 << 30);
  const ctx = { limits, budget, engine: callerEngine(), suiteStatus: () => 'available' } as unknown as OpContext;
  const { audit, client, close } = await serve(limits, (deps) => ({ session: sessionHandler(ctx, deps) }));
  try {
    const { call, status } = await answeredSession(client);
    call.write(toBinary(SessionRequestSchema, create(SessionRequestSchema, { id: 2n, op: { case: 'hash', value: { data: new Uint8Array(100 * 1024) } } })));
    const st = await status;
    expect([st.code, st.details]).toEqual([grpc.status.RESOURCE_EXHAUSTED, expect.stringContaining('larger than max')]);
    await vi.waitFor(() => expect(audit.map((a) => [a.rpc, a.outcome])).toEqual([['Session/generateRandom', 'OK'], ['CryptoService/Session', 'RESOURCE_EXHAUSTED']]));
    await vi.waitFor(() => expect(budget.held).toBe(0));
  } finally {
    close();
  }
});

test('an oversize first EncryptStream message: RESOURCE_EXHAUSTED, audited so, nothing logged as internal', async () => {
  const log = { error: vi.fn(), warn: vi.fn(), info: vi.fn(), debug: vi.fn() };
  const limits = { ...SESSION_LIMITS, maxMessageBytes: 64 * 1024 };
  const ctx = { limits, budget: new MemoryBudget(1 << 30), engine: callerEngine(), hashStreamSlots: new CallerSlots(64, 'HashStream calls', 'hash_streams_per_caller', 'maxHashStreamsPerCaller'), suiteStatus: () => 'available' } as unknown as OpContext;
  const { audit, client, close } = await serve(limits, (deps) => cryptoServiceHandlers(ctx, deps), log);
  try {
    const call = client.makeBidiStreamRequest('/ringfence.v1.CryptoService/EncryptStream', (m: Buffer) => m, (b: Buffer) => b);
    const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.on('error', () => {});
    call.on('data', () => {});
    call.write(Buffer.alloc(100 * 1024));
    const st = await status;
    expect(st.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    await vi.waitFor(() => expect(audit.map((a) => [a.rpc, a.outcome])).toEqual([['CryptoService/EncryptStream', 'RESOURCE_EXHAUSTED']]));
    expect(log.error).not.toHaveBeenCalled();
  } finally {
    close();
  }
});

test('a Session operation still running when grpc-js refuses a message is audited with the same status (review by helper-108)', async () => {
  const limits = { ...SESSION_LIMITS, maxMessageBytes: 64 * 1024 };
  let finish: ((digest: Buffer) => void) | undefined;
  const engine = callerEngine({ digest: () => new Promise<Buffer>((resolve) => (finish = resolve)) });
  const ctx = { limits, budget: new MemoryBudget(1 << 30), engine, suiteStatus: () => 'available' } as unknown as OpContext;
  const { audit, client, close } = await serve(limits, (deps) => ({ session: sessionHandler(ctx, deps) }));
  try {
    const { call, status } = await answeredSession(client);
    call.write(toBinary(SessionRequestSchema, create(SessionRequestSchema, { id: 2n, op: { case: 'hash', value: { data: new Uint8Array(8) } } })));
    await vi.waitFor(() => expect(finish).toBeDefined()); // the hash runs, held by the engine
    call.write(toBinary(SessionRequestSchema, create(SessionRequestSchema, { id: 3n, op: { case: 'hash', value: { data: new Uint8Array(100 * 1024) } } })));
    expect((await status).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    finish!(Buffer.alloc(32));
    await vi.waitFor(() => expect(audit.map((a) => `${a.rpc} ${a.outcome}`).sort()).toEqual(['CryptoService/Session RESOURCE_EXHAUSTED', 'Session/generateRandom OK', 'Session/hash RESOURCE_EXHAUSTED']));
  } finally {
    close();
  }
});
