/**
 * Unary calls that end before their handler runs are audited once, with what the client was told
 * (review by helper-143: an over-size Encrypt got RESOURCE_EXHAUSTED from grpc-js and left no audit
 * line). Through a real grpc-js server with the daemon's server options and interceptor.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { mkdtempSync, rmSync } from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test, vi } from 'vitest';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import { HashRequestSchema } from '../../gen/ringfence/v1/crypto_pb.js';
import { DEFAULT_LIMITS } from '../config.js';
import { serverOptions } from '../daemon.js';
import type { AuditEntry } from './audit.js';
import { cryptoServiceHandlers } from './crypto-service.js';
import { daemonServiceDefinition } from './decode.js';
import { guardedServer } from './foreign-services.js';
import { refusedUnaryAudit } from './refused-call-audit.js';
import { standInContext } from '../ops/stand-in.test-support.js';
import { Connections, type PeerCall } from '../identity/connections.js';

const MAX = 64 * 1024;
const dir = mkdtempSync(join(tmpdir(), 'rf-refused-'));
const socket = join(dir, 's.sock');
const audit: AuditEntry[] = [];
let server: grpc.Server;
let client: grpc.Client;
let listener: net.Server;

beforeAll(async () => {
  const limits = { ...DEFAULT_LIMITS, maxMessageBytes: MAX };
  const ctx = await standInContext();
  // Callers identified as the daemon does (connections.ts): by connection, forgotten when it closes.
  const connections = new Connections(() => ({ uid: 4242, gid: 4242, pid: 1, groups: [] }));
  const access = { forCall: (call: PeerCall) => ({ principal: connections.principalOf(call), authorize: () => {}, allows: () => true, mayEverDo: () => true }) };
  const deps = { audit: (e: AuditEntry) => void audit.push(e), log: { error: vi.fn() }, access } as never;
  server = new grpc.Server({ ...serverOptions(limits), interceptors: [refusedUnaryAudit(deps)] });
  server.addService(daemonServiceDefinition(CryptoService, limits.maxBatchItems), cryptoServiceHandlers({ ...ctx, limits: { ...ctx.limits, maxMessageBytes: MAX } }, deps) as never);
  new HealthImplementation({ '': 'SERVING' }).addToServer(guardedServer(server) as grpc.Server);
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  listener = net.createServer((sock) => {
    sock.on('error', () => {});
    connections.register(sock);
    injector.injectConnection(sock);
  });
  await new Promise<void>((resolve) => listener.listen(socket, resolve));
  client = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure());
});
afterAll(() => {
  client.close();
  server.forceShutdown();
  listener.close();
  rmSync(dir, { recursive: true, force: true });
});

const hashRequest = (bytes: number) => Buffer.from(toBinary(HashRequestSchema, create(HashRequestSchema, { data: new Uint8Array(bytes) })));
function unary(path: string, body: Buffer): Promise<grpc.ServiceError | null> {
  return new Promise((resolve) => client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, body, (err) => resolve(err)));
}
/** Lines audited since `from`, once none has come for 300 ms. */
async function settled(from: number): Promise<AuditEntry[]> {
  let n = -1;
  while (n !== audit.length) {
    n = audit.length;
    await new Promise((r) => setTimeout(r, 300));
  }
  return audit.slice(from);
}
/** A raw HTTP/2 call to Hash: `frames` are written as they are, then `end` (half-close) or a reset. */
async function rawHash(frames: Buffer[], end: 'half-close' | 'reset' | 'drop'): Promise<void> {
  let connection: net.Socket | undefined;
  const session = http2.connect('http://localhost', { createConnection: () => (connection = net.connect(socket)) });
  session.on('error', () => {});
  const req = session.request({ ':method': 'POST', ':path': '/ringfence.v1.CryptoService/Hash', 'content-type': 'application/grpc', te: 'trailers' });
  req.on('error', () => {});
  req.resume();
  for (const f of frames) req.write(f);
  const closed = new Promise((r) => req.on('close', r));
  if (end === 'half-close') req.end();
  else if (end === 'reset') setTimeout(() => req.close(http2.constants.NGHTTP2_CANCEL), 200);
  else setTimeout(() => connection!.destroy(), 200);
  await closed;
  session.close();
}
const framed = (body: Buffer, declared = body.length) => Buffer.concat([Buffer.from([0, declared >>> 24, (declared >>> 16) & 255, (declared >>> 8) & 255, declared & 255]), body]);

test('an over-size unary request: RESOURCE_EXHAUSTED from grpc-js, audited once with the caller', async () => {
  const from = audit.length;
  const err = await unary('/ringfence.v1.CryptoService/Hash', hashRequest(MAX + 100));
  expect(err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  expect(await settled(from)).toEqual([expect.objectContaining({ rpc: 'CryptoService/Hash', outcome: 'RESOURCE_EXHAUSTED', principal: expect.objectContaining({ uid: 4242 }) })]);
});

test('a unary request answered by its handler is audited once, by the handler (no second line)', async () => {
  const from = audit.length;
  expect(await unary('/ringfence.v1.CryptoService/Hash', hashRequest(10))).toBeNull();
  expect(await settled(from)).toEqual([expect.objectContaining({ rpc: 'CryptoService/Hash', outcome: 'OK', bytesIn: 10 })]);
});

test('two request messages on a unary call, and none: refused by grpc-js, each audited once', async () => {
  const from = audit.length;
  await rawHash([framed(hashRequest(4)), framed(hashRequest(4))], 'half-close');
  await rawHash([], 'half-close');
  expect((await settled(from)).map((a) => [a.rpc, a.outcome])).toEqual([
    ['CryptoService/Hash', 'UNIMPLEMENTED'],
    ['CryptoService/Hash', 'UNIMPLEMENTED'],
  ]);
});

test('a client that resets the call while still sending its request: audited once', async () => {
  const from = audit.length;
  const body = hashRequest(1000);
  await rawHash([framed(body.subarray(0, 100), body.length)], 'reset');
  // Node ends the stream's input at the reset without marking it aborted (rstCode 0), so grpc-js
  // takes it for a half-close without a message and answers UNIMPLEMENTED: the line says that.
  expect((await settled(from)).map((a) => [a.rpc, a.outcome])).toEqual([['CryptoService/Hash', 'UNIMPLEMENTED']]);
});

test('a client whose connection goes while it sends its request: audited CANCELLED, with the caller (review by helper-147: looked up after the connection was forgotten)', async () => {
  const from = audit.length;
  const body = hashRequest(1000);
  await rawHash([framed(body.subarray(0, 100), body.length)], 'drop');
  expect((await settled(from)).map((a) => [a.rpc, a.outcome, a.principal?.uid])).toEqual([['CryptoService/Hash', 'CANCELLED', 4242]]);
});

test('calls to the standard services are not audited here', async () => {
  const from = audit.length;
  expect(await unary('/grpc.health.v1.Health/Check', Buffer.alloc(0))).toBeNull();
  expect(await settled(from)).toEqual([]);
});
