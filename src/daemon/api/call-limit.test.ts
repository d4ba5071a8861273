/**
 * The cap on open calls per caller and in all (call-limit.ts), through a real grpc-js server with
 * the daemon's server options, interceptors and connection identification: two sockets whose
 * connections are identified as two callers.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, expect, test, vi } from 'vitest';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import { HashRequestSchema } from '../../gen/ringfence/v1/crypto_pb.js';
import { decodeStatusDetails } from '../../rpc/error-details.js';
import { DEFAULT_LIMITS } from '../config.js';
import { serverOptions } from '../daemon.js';
import { standInContext } from '../ops/stand-in.test-support.js';
import { UidSockets } from './uid-sockets.test-support.js';
import type { AuditEntry } from './audit.js';
import { callLimit } from './call-limit.js';
import { CallerSlots } from './caller-slots.js';
import { cryptoServiceHandlers } from './crypto-service.js';
import { daemonServiceDefinition } from './decode.js';
import { ErrorReason } from './errors.js';
import { guardedServer } from './foreign-services.js';
import { refusedUnaryAudit } from './refused-call-audit.js';

const PER_CALLER = 4;
const IN_ALL = 6;
const A = 4242;
const B = 4343;
const THROTTLE_MS = 400;
const HASH = '/ringfence.v1.CryptoService/Hash';
const WATCH = '/grpc.health.v1.Health/Watch';
const CHECK = '/grpc.health.v1.Health/Check';

const callers = new UidSockets([A, B]);
const audit: AuditEntry[] = [];
const warn = vi.fn();
const calls = new CallerSlots(PER_CALLER, 'calls', 'calls_per_caller', 'maxCallsPerCaller', { limit: IN_ALL, limitName: 'calls', setting: 'maxCalls' });
const handled = vi.fn();
let server: grpc.Server;
const clients: grpc.Client[] = [];

beforeAll(async () => {
  const ctx = await standInContext();
  const access = callers.access;
  const record = (e: AuditEntry) => void audit.push(e);
  const deps = { audit: record, log: { error: vi.fn(), warn }, access } as never;
  // As daemon.ts wires them (serverInterceptors), with a shorter warning interval.
  server = new grpc.Server({ ...serverOptions(DEFAULT_LIMITS), interceptors: [callLimit({ audit: record, log: { warn }, access, calls }, THROTTLE_MS), refusedUnaryAudit(deps)] });
  const handlers = cryptoServiceHandlers(ctx, deps) as Record<string, (...args: never[]) => void>;
  const hash = handlers.hash!;
  handlers.hash = (...args: never[]) => {
    handled();
    hash(...args);
  };
  server.addService(daemonServiceDefinition(CryptoService, DEFAULT_LIMITS.maxBatchItems), handlers as never);
  new HealthImplementation({ '': 'SERVING' }).addToServer(guardedServer(server) as grpc.Server);
  await callers.serve(server);
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await until(() => calls.total === 0);
});
afterAll(() => {
  server.forceShutdown();
  callers.close();
});

async function until(ok: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out; calls open: ${calls.total}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function client(uid: number): grpc.Client {
  const c = new grpc.Client(`unix:${callers.paths[uid]}`, grpc.credentials.createInsecure());
  clients.push(c);
  return c;
}
const id = (b: Buffer) => b;
/** A health Watch: a call that stays open until cancelled. */
function watch(c: grpc.Client): { call: grpc.ClientReadableStream<Buffer>; ended: Promise<grpc.ServiceError | null> } {
  const call = c.makeServerStreamRequest(WATCH, id, id, Buffer.alloc(0));
  const ended = new Promise<grpc.ServiceError | null>((resolve) => {
    call.on('error', (e: grpc.ServiceError) => resolve(e));
    call.on('status', (s: grpc.StatusObject) => s.code === grpc.status.OK && resolve(null));
  });
  call.on('data', () => {});
  return { call, ended };
}
function check(c: grpc.Client): Promise<grpc.ServiceError | null> {
  return new Promise((resolve) => c.makeUnaryRequest(CHECK, id, id, Buffer.alloc(0), (err) => resolve(err)));
}
const hashRequest = (bytes: number) => Buffer.from(toBinary(HashRequestSchema, create(HashRequestSchema, { data: new Uint8Array(bytes) })));
const framed = (body: Buffer, declared = body.length) => Buffer.concat([Buffer.from([0, declared >>> 24, (declared >>> 16) & 255, (declared >>> 8) & 255, declared & 255]), body]);

interface Raw {
  req: http2.ClientHttp2Stream;
  connection: net.Socket;
  session: http2.ClientHttp2Session;
  headers: Promise<http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader>;
  /** The trailers; the headers of a trailers-only answer. */
  trailers: Promise<http2.IncomingHttpHeaders>;
  closed: Promise<number>;
}
/** A raw HTTP/2 call that sends `frames` and neither ends nor resets it. */
function raw(uid: number, path: string, frames: Buffer[] = [], extra: http2.OutgoingHttpHeaders = {}): Raw {
  let connection!: net.Socket;
  const session = http2.connect('http://localhost', { createConnection: () => (connection = net.connect(callers.paths[uid]!)) });
  session.on('error', () => {});
  const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...extra });
  req.on('error', () => {});
  req.resume();
  for (const f of frames) req.write(f);
  const headers = new Promise<http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader>((resolve) => req.once('response', resolve));
  const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => {
    req.once('trailers', resolve);
    void headers.then((h) => h['grpc-status'] !== undefined && resolve(h));
  });
  const closed = new Promise<number>((resolve) => req.once('close', () => resolve(req.rstCode ?? -1)));
  return { req, connection, session, headers, trailers, closed };
}

test(`one caller's call beyond maxCallsPerCaller is refused RESOURCE_EXHAUSTED / DAEMON_BUSY and audited; another caller's are not`, async () => {
  const c = client(A);
  const open = Array.from({ length: PER_CALLER }, () => watch(c));
  await until(() => calls.heldBy(`uid:${A}`) === PER_CALLER);
  const from = audit.length;

  const err = await check(c);
  expect(err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  expect(err?.details).toBe(`uid ${A} already has ${PER_CALLER} calls open, its limit (maxCallsPerCaller); finish one or retry later`);
  expect(decodeStatusDetails(err?.metadata)).toMatchObject({ reason: ErrorReason.DAEMON_BUSY, metadata: { limit: 'calls_per_caller' } });
  expect(audit.slice(from)).toEqual([
    expect.objectContaining({ rpc: 'grpc.health.v1.Health/Check', principal: expect.objectContaining({ uid: A }), outcome: 'RESOURCE_EXHAUSTED', reason: 'DAEMON_BUSY' }),
  ]);
  expect(warn).toHaveBeenLastCalledWith(expect.objectContaining({ uid: A, limit: 'calls_per_caller', refused: 1 }), expect.stringContaining('refused its new ones'));

  // Another caller is not affected.
  expect(await check(client(B))).toBeNull();
  for (const w of open) w.call.cancel();
  await until(() => calls.total === 0);
  expect(await check(c)).toBeNull();
});

test('every refusal is audited; the warning comes at most once per caller per interval, with how many there were', async () => {
  const c = client(A);
  const open = Array.from({ length: PER_CALLER }, () => watch(c));
  await until(() => calls.heldBy(`uid:${A}`) === PER_CALLER);
  await new Promise((r) => setTimeout(r, THROTTLE_MS)); // past the previous test's warning
  const from = audit.length;
  const warned = warn.mock.calls.length;
  for (let i = 0; i < 5; i++) expect((await check(c))?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  // Each has its line at once (before, the four after the first waited for a later refusal, and
  // were lost if none came: review by helper-154).
  expect(audit.slice(from).map((a) => a.outcome)).toEqual(Array(5).fill('RESOURCE_EXHAUSTED'));
  expect(warn.mock.calls.length - warned).toBe(1);
  await new Promise((r) => setTimeout(r, THROTTLE_MS));
  expect((await check(c))?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  expect(audit.length - from).toBe(6);
  expect(warn.mock.calls.slice(warned).map(([fields]) => (fields as { refused: number }).refused)).toEqual([1, 5]);
  for (const w of open) w.call.cancel();
});

test('beyond maxCalls in all, a caller below its own limit is refused too (limit `calls`)', async () => {
  const a = client(A);
  const b = client(B);
  const open = [...Array.from({ length: PER_CALLER }, () => watch(a)), ...Array.from({ length: IN_ALL - PER_CALLER }, () => watch(b))];
  await until(() => calls.total === IN_ALL);
  const err = await check(b);
  expect(err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  expect(err?.details).toBe(`the daemon already has ${IN_ALL} calls open, its limit (maxCalls); retry later`);
  expect(decodeStatusDetails(err?.metadata)).toMatchObject({ reason: ErrorReason.DAEMON_BUSY, metadata: { limit: 'calls' } });
  for (const w of open) w.call.cancel();
});

test('a unary call counts while its message is still being sent, and a refused one is not read: its handler never runs and its stream is closed', async () => {
  const body = hashRequest(64 * 1024);
  const partial = Array.from({ length: PER_CALLER }, () => raw(A, HASH, [framed(body.subarray(0, 1000), body.length)]));
  await until(() => calls.heldBy(`uid:${A}`) === PER_CALLER);
  handled.mockClear();
  // The refused call sends its whole request but never ends its side: the daemon closes it.
  const refused = raw(A, HASH, [framed(body)]);
  expect((await refused.headers)['grpc-status']).toBe(String(grpc.status.RESOURCE_EXHAUSTED));
  expect(await refused.closed).toBe(http2.constants.NGHTTP2_NO_ERROR);
  expect(handled).not.toHaveBeenCalled();
  expect(calls.heldBy(`uid:${A}`)).toBe(PER_CALLER);
  for (const r of [refused, ...partial]) r.session.destroy();
});

test('every end of a call gives its count back: answered, cancelled, reset, connection dropped, shut out after a status', async () => {
  const caller = `uid:${A}`;
  // Answered.
  expect(await new Promise((resolve) => client(A).makeUnaryRequest(HASH, id, id, hashRequest(10), (err) => resolve(err)))).toBeNull();
  await until(() => calls.heldBy(caller) === 0);
  // Cancelled by a grpc-js client.
  const w = watch(client(A));
  await until(() => calls.heldBy(caller) === 1);
  w.call.cancel();
  await until(() => calls.heldBy(caller) === 0);
  // Reset while sending its request.
  const body = hashRequest(1000);
  const reset = raw(A, HASH, [framed(body.subarray(0, 100), body.length)]);
  await until(() => calls.heldBy(caller) === 1);
  reset.req.close(http2.constants.NGHTTP2_CANCEL);
  await until(() => calls.heldBy(caller) === 0);
  reset.session.destroy();
  // Its connection dropped.
  const dropped = raw(A, HASH, [framed(body.subarray(0, 100), body.length)]);
  await until(() => calls.heldBy(caller) === 1);
  dropped.connection.destroy();
  await until(() => calls.heldBy(caller) === 0);
  // Its deadline passed mid-message: the status goes out, but the client keeps the stream (and
  // grpc-js the partial message) open; it counts until the stream closes.
  const late = raw(A, HASH, [framed(body.subarray(0, 100), body.length)], { 'grpc-timeout': '100m' });
  expect((await late.headers)['grpc-status']).toBe(String(grpc.status.DEADLINE_EXCEEDED));
  await new Promise((r) => setTimeout(r, 100));
  expect(calls.heldBy(caller)).toBe(1);
  late.req.close(http2.constants.NGHTTP2_CANCEL);
  await until(() => calls.heldBy(caller) === 0);
  late.session.destroy();

  // Nothing leaked: the caller can open its full share again.
  const c = client(A);
  const open = Array.from({ length: PER_CALLER }, () => watch(c));
  await until(() => calls.heldBy(caller) === PER_CALLER);
  for (const x of open) x.call.cancel();
  expect(await Promise.all(open.map((x) => x.ended.then((e) => e?.code)))).toEqual(Array(PER_CALLER).fill(grpc.status.CANCELLED));
});

test('a call whose messages are compressed (grpc-encoding gzip) is refused UNIMPLEMENTED before any is read, audited once; uncompressed ones are served', async () => {
  // grpc-js inflates every message of a DATA frame at once, each up to maxMessageBytes: one 16 KiB
  // frame of three deflate bombs made the daemon hold 12 MiB for 12 KB sent (review by helper-193).
  const body = gzipSync(hashRequest(1024 * 1024));
  const compressed = Buffer.concat([Buffer.from([1, body.length >>> 24, (body.length >>> 16) & 255, (body.length >>> 8) & 255, body.length & 255]), body]);
  handled.mockClear();
  const from = audit.length;
  const refused = raw(A, HASH, [compressed], { 'grpc-encoding': 'gzip' });
  refused.req.end();
  // What gRPC says a server answers with an encoding it does not take, in response headers (grpc-js
  // clients read it from nowhere else: the next test), then the status as trailers.
  expect((await refused.headers)['grpc-accept-encoding']).toBe('identity');
  const trailers = await refused.trailers;
  expect(trailers['grpc-status']).toBe(String(grpc.status.UNIMPLEMENTED));
  expect(decodeURIComponent(String(trailers['grpc-message']))).toBe('the daemon takes only uncompressed messages, and this call declared grpc-encoding gzip: send it without compression (grpc-encoding identity, or none)');
  expect(await refused.closed).toBe(http2.constants.NGHTTP2_NO_ERROR);
  expect(handled).not.toHaveBeenCalled();
  expect(audit.slice(from)).toEqual([expect.objectContaining({ rpc: 'CryptoService/Hash', principal: expect.objectContaining({ uid: A }), outcome: 'UNIMPLEMENTED', bytesIn: 0 })]);
  expect(calls.heldBy(`uid:${A}`)).toBe(0);
  refused.session.destroy();

  // Content-codings are case-insensitive: "Identity" is no compression either.
  for (const [n, identity] of ['identity', 'Identity'].entries()) {
    const plain = raw(A, HASH, [framed(hashRequest(10))], { 'grpc-encoding': identity });
    plain.req.end();
    await plain.closed;
    expect(handled).toHaveBeenCalledTimes(n + 1);
    plain.session.destroy();
  }
});

test('a compressed call that does not end its side is refused all the same, and its stream closed after the status', async () => {
  const body = gzipSync(hashRequest(1000));
  const refused = raw(A, HASH, [Buffer.concat([Buffer.from([1, 0, 0, (body.length >>> 8) & 255, body.length & 255]), body])], { 'grpc-encoding': 'deflate' });
  expect((await refused.trailers)['grpc-status']).toBe(String(grpc.status.UNIMPLEMENTED));
  expect(await refused.closed).toBe(http2.constants.NGHTTP2_NO_ERROR);
  expect(calls.heldBy(`uid:${A}`)).toBe(0);
  refused.session.destroy();
});

test('a call to a method the daemon does not have is not counted, and holds nothing: answered at once, its stream closed though the client keeps sending', async () => {
  // grpc-js answers it UNIMPLEMENTED before any interceptor runs; Node then closes a stream whose
  // answer is out and whose input nobody reads (RST_STREAM NO_ERROR), as this file's refusals do.
  const c = client(A);
  const open = Array.from({ length: PER_CALLER }, () => watch(c));
  await until(() => calls.heldBy(`uid:${A}`) === PER_CALLER);
  const from = audit.length;
  const body = hashRequest(32 * 1024);
  const unknown = Array.from({ length: 8 }, () => raw(A, '/ringfence.v1.CryptoService/Nope', [framed(body.subarray(0, 16 * 1024), body.length)]));
  for (const u of unknown) {
    expect((await u.trailers)['grpc-status']).toBe(String(grpc.status.UNIMPLEMENTED));
    expect(await u.closed).toBe(http2.constants.NGHTTP2_NO_ERROR);
    u.session.destroy();
  }
  expect(calls.heldBy(`uid:${A}`)).toBe(PER_CALLER);
  expect(audit.length).toBe(from);
  for (const w of open) w.call.cancel();
});
