/**
 * Calls still open when the daemon's drain period ends (drain.ts drainServer): each is answered
 * UNAVAILABLE / SHUTTING_DOWN, saying what of it was not done, and audited once so, before the
 * connections are closed. Found by review: the stop closed them at once, and clients read the reset
 * as CANCELLED (the caller gave up, not retryable) with the audit lines saying the same.
 * A real grpc-js server with the daemon's interceptors and CryptoService handlers over the
 * node:crypto stand-in engine, and grpc-js clients.
 */
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { afterEach, beforeEach, expect, test, vi } from 'vitest';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import { EncryptRequestSchema } from '../../gen/ringfence/v1/crypto_pb.js';
import { EncryptStreamRequestSchema, EncryptStreamResponseSchema } from '../../gen/ringfence/v1/stream_pb.js';
import { SessionRequestSchema } from '../../gen/ringfence/v1/session_pb.js';
import { decodeStatusDetails } from '../../rpc/error-details.js';
import { DEFAULT_LIMITS } from '../config.js';
import { serverInterceptors, serverOptions } from '../daemon.js';
import { standInContext } from '../ops/stand-in.test-support.js';
import type { OpContext } from '../ops/context.js';
import type { AuditEntry } from './audit.js';
import { CallerSlots } from './caller-slots.js';
import { cryptoServiceHandlers } from './crypto-service.js';
import { daemonServiceDefinition } from './decode.js';
import { Drain, drainServer } from './drain.js';
import { ErrorReason } from './errors.js';
import { UidSockets } from './uid-sockets.test-support.js';

const UID = 4646;
const PATH = '/ringfence.v1.CryptoService/';
const pass = (b: Buffer) => b;
const bytes = <D extends DescMessage>(schema: D, init: MessageInitShape<D>) => Buffer.from(toBinary(schema, create(schema, init)));

let callers: UidSockets;
let server: grpc.Server;
let client: grpc.Client;
let drain: Drain;
let audit: AuditEntry[];
/** Encryptions the engine holds until the test lets them go (`held` set). */
let held: boolean;
let heldWork: (() => void)[];

beforeEach(async () => {
  callers = new UidSockets([UID]);
  drain = new Drain();
  audit = [];
  held = false;
  heldWork = [];
  const standIn = (await standInContext()).engine as unknown as Record<string, (...a: unknown[]) => Promise<Buffer>>;
  const engine = {
    ...standIn,
    forCaller: () => engine,
    aeadEncrypt: async (...a: unknown[]) => {
      if (held) await new Promise<void>((r) => heldWork.push(r));
      return standIn.aeadEncrypt!(...a);
    },
  };
  const ctx: OpContext = await standInContext({ engine: engine as never, drain, hashStreamSlots: new CallerSlots(4, 'HashStream calls', 'hash_streams_per_caller', 'maxHashStreamsPerCaller') });
  const log = { error: vi.fn(), warn: vi.fn() };
  const deps = { audit: (e: AuditEntry) => void audit.push(e), log, access: callers.access, drain } as never;
  const calls = new CallerSlots(64, 'calls', 'calls_per_caller', 'maxCallsPerCaller');
  server = new grpc.Server({ ...serverOptions(DEFAULT_LIMITS), interceptors: serverInterceptors({ ...(deps as object), calls } as never) });
  server.addService(daemonServiceDefinition(CryptoService, DEFAULT_LIMITS.maxBatchItems), cryptoServiceHandlers(ctx, deps));
  await callers.serve(server);
  client = new grpc.Client(`unix:${callers.paths[UID]}`, grpc.credentials.createInsecure());
});

afterEach(() => {
  client.close();
  server.forceShutdown();
  callers.close();
});

/** The stop, with a drain period short enough for a test (the daemon's is 10 s). */
const stop = () => drainServer(server, drain, { drainMs: 300 });

interface Ended {
  status: Promise<grpc.StatusObject>;
  messages: Buffer[];
}

function bidi(method: string): Ended & { call: grpc.ClientDuplexStream<Buffer, Buffer> } {
  const call = client.makeBidiStreamRequest(PATH + method, pass, pass);
  const messages: Buffer[] = [];
  call.on('data', (m: Buffer) => messages.push(m));
  call.on('error', () => {});
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  return { call, messages, status };
}

async function until(ok: () => boolean, what: string): Promise<void> {
  for (let i = 0; !ok(); i++) {
    if (i > 500) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function expectCutOff(status: grpc.StatusObject, says: RegExp): void {
  expect({ code: grpc.status[status.code], details: status.details }).toEqual({ code: 'UNAVAILABLE', details: expect.stringMatching(says) });
  expect(status.details).toMatch(/^the daemon stopped before this call ended/);
  expect(decodeStatusDetails(status.metadata)?.reason).toBe(ErrorReason.SHUTTING_DOWN);
}

const linesOf = (rpc: string) => audit.filter((e) => e.rpc === rpc).map((e) => `${e.outcome} ${e.reason ?? ''}`.trim());

test('an EncryptStream still open when the drain period ends is answered UNAVAILABLE / SHUTTING_DOWN, its output not a complete ciphertext, audited once so', { timeout: 15_000 }, async () => {
  const s = bidi('EncryptStream');
  s.call.write(bytes(EncryptStreamRequestSchema, { frame: { case: 'header', value: { keyName: 'k' } } }));
  s.call.write(bytes(EncryptStreamRequestSchema, { frame: { case: 'chunk', value: { plaintext: new Uint8Array(1000) } } }));
  await until(() => s.messages.length === 2, 'the header and the first chunk answered');
  await stop(); // the client keeps its stream open and goes on sending past the drain period
  s.call.write(bytes(EncryptStreamRequestSchema, { frame: { case: 'chunk', value: { plaintext: new Uint8Array(10) } } }));
  expectCutOff(await s.status, /not a complete ciphertext .*send the whole plaintext again to the restarted daemon/);
  expect(fromBinary(EncryptStreamResponseSchema, s.messages[1]!).final).toBe(false);
  await until(() => linesOf('CryptoService/EncryptStream').length > 0, 'the audit line');
  expect(audit.filter((e) => e.rpc === 'CryptoService/EncryptStream')).toEqual([expect.objectContaining({ key: 'k', bytesIn: 1000, outcome: 'UNAVAILABLE', reason: 'SHUTTING_DOWN', principal: expect.objectContaining({ uid: UID }) })]);
});

test('a HashStream its client holds open past the drain period is answered UNAVAILABLE / SHUTTING_DOWN, audited once so', { timeout: 15_000 }, async () => {
  const call = client.makeClientStreamRequest(PATH + 'HashStream', pass, pass, (err: grpc.ServiceError | null) => void err);
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  await until(() => callers.connections.size === 1, 'the connection');
  await new Promise((r) => setTimeout(r, 50)); // the call's headers, no message yet
  await stop();
  expectCutOff(await status, /nothing was answered: send the whole stream again to the restarted daemon/);
  expect(linesOf('CryptoService/HashStream')).toEqual(['UNAVAILABLE SHUTTING_DOWN']);
});

test('a unary call whose work is still running when the drain period ends is answered UNAVAILABLE / SHUTTING_DOWN, audited once, also when the work ends after', { timeout: 15_000 }, async () => {
  held = true;
  const answer = new Promise<grpc.ServiceError | null>((resolve) => client.makeUnaryRequest(PATH + 'Encrypt', pass, pass, bytes(EncryptRequestSchema, { keyName: 'k', plaintext: new Uint8Array(100) }), (err) => resolve(err)));
  await until(() => heldWork.length === 1, 'the encryption under way');
  await stop();
  const err = await answer;
  expectCutOff(err!, /its operation was not answered: send it again to the restarted daemon/);
  heldWork.shift()!(); // the work ends after the answer: nothing more is answered or audited
  await new Promise((r) => setTimeout(r, 50));
  expect(audit.filter((e) => e.rpc === 'CryptoService/Encrypt')).toEqual([expect.objectContaining({ key: 'k', bytesIn: 100, outcome: 'UNAVAILABLE', reason: 'SHUTTING_DOWN' })]);
});

test('a Session whose operation still runs when the drain period ends is answered UNAVAILABLE / SHUTTING_DOWN, the operation audited so once it ends', { timeout: 15_000 }, async () => {
  held = true;
  const s = bidi('Session');
  s.call.write(bytes(SessionRequestSchema, { id: 1n, op: { case: 'encrypt', value: { keyName: 'k', plaintext: new Uint8Array(10) } } }));
  await until(() => heldWork.length === 1, 'the operation under way');
  await stop();
  expectCutOff(await s.status, /its operations not answered were not done: send them again to the restarted daemon/);
  expect(s.messages).toEqual([]);
  heldWork.shift()!();
  await until(() => linesOf('Session/encrypt').length > 0, "the operation's line");
  expect(linesOf('CryptoService/Session')).toEqual(['UNAVAILABLE SHUTTING_DOWN']);
  expect(linesOf('Session/encrypt')).toEqual(['UNAVAILABLE']);
});

// Not a defect (it passes without the cut-off): the GOAWAY grpc-js sends as the drain starts makes
// a client open no stream more on the connection (a stream crossing it is refused unprocessed), and
// the daemon's listener is closed by then, so a new call fails UNAVAILABLE having reached no handler.
test('a call made on a connection open since before the stop is not run, and fails UNAVAILABLE, not CANCELLED', { timeout: 15_000 }, async () => {
  const s = bidi('EncryptStream');
  s.call.write(bytes(EncryptStreamRequestSchema, { frame: { case: 'header', value: { keyName: 'k' } } }));
  await until(() => s.messages.length === 1, 'the header answered');
  callers.close(); // the daemon's listener closes first
  const stopped = stop();
  const err = await new Promise<grpc.ServiceError | null>((resolve) => client.makeUnaryRequest(PATH + 'Encrypt', pass, pass, bytes(EncryptRequestSchema, { keyName: 'k', plaintext: new Uint8Array(1) }), { deadline: Date.now() + 5000 }, (e) => resolve(e)));
  expect(grpc.status[err!.code]).toBe('UNAVAILABLE');
  expect(audit.filter((e) => e.rpc === 'CryptoService/Encrypt')).toEqual([]);
  await stopped;
  expectCutOff(await s.status, /not a complete ciphertext/);
});
