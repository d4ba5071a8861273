/**
 * What the daemon's answers say about compression (response-encoding.ts, and the grpc-js patch in
 * patches/ it relies on), read off raw HTTP/2
 * through a real grpc-js server with the daemon's options and interceptors (daemon.ts
 * serverInterceptors) and its services: only identity is taken, and nothing is sent compressed.
 * grpc-js advertised `identity,deflate,gzip` in every response's headers while call-limit.ts refuses
 * any compressed call, so a client that compresses when the server says it may was refused call
 * after call.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import type * as http2 from 'node:http2';
import { afterAll, beforeAll, expect, test, vi } from 'vitest';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import { EncryptRequestSchema, HashRequestSchema } from '../../gen/ringfence/v1/crypto_pb.js';
import { SessionRequestSchema } from '../../gen/ringfence/v1/session_pb.js';
import { StatusService } from '../../gen/ringfence/v1/status_service_pb.js';
import { h2Connect, grpcFrame } from '../../../test/support/raw-grpc.js';
import { DEFAULT_LIMITS } from '../config.js';
import { serverInterceptors, serverOptions } from '../daemon.js';
import { standInContext } from '../ops/stand-in.test-support.js';
import type { AuditEntry } from './audit.js';
import { CallerSlots } from './caller-slots.js';
import { cryptoServiceHandlers } from './crypto-service.js';
import { DaemonHealth } from './daemon-health.js';
import { daemonServiceDefinition } from './decode.js';
import { Drain } from './drain.js';
import { addReflection } from './reflection.js';
import { statusServiceHandlers } from './status-service.js';
import { UidSockets } from './uid-sockets.test-support.js';

const UID = 4545;
const PER_CALLER = 2;
const CRYPTO = '/ringfence.v1.CryptoService/';

const callers = new UidSockets([UID]);
const calls = new CallerSlots(PER_CALLER, 'calls', 'calls_per_caller', 'maxCallsPerCaller');
let server: grpc.Server;

beforeAll(async () => {
  const ctx = await standInContext({ drain: new Drain() });
  const audit: AuditEntry[] = [];
  const deps = { audit: (e: AuditEntry) => void audit.push(e), log: { error: vi.fn(), warn: vi.fn(), info: vi.fn() }, access: callers.access } as never;
  server = new grpc.Server({ ...serverOptions(DEFAULT_LIMITS), interceptors: serverInterceptors({ ...(deps as object), calls } as never) });
  server.addService(daemonServiceDefinition(CryptoService, DEFAULT_LIMITS.maxBatchItems), cryptoServiceHandlers(ctx, deps) as never);
  const report = { kernel: { release: '6.12' }, restrict: { value: null }, suites: [], defaultAeadSuite: null, defaultMacSuite: null };
  const status = { version: '0', startTime: 0, report: report as never, limits: DEFAULT_LIMITS, usage: () => ({}), readRestrict: () => ({ value: null }) };
  server.addService(daemonServiceDefinition(StatusService, DEFAULT_LIMITS.maxBatchItems), statusServiceHandlers(ctx.keys, status as never, deps) as never);
  new DaemonHealth(server, [''], new Drain()).serving();
  addReflection(server, [CryptoService, StatusService]);
  await callers.serve(server);
});
afterAll(() => {
  server.forceShutdown();
  callers.close();
});

interface Answer {
  /** The response's first HEADERS frame: the headers, or a trailers-only answer. */
  headers: http2.IncomingHttpHeaders;
  status: number;
  /** Each message's compressed flag (the first byte of its length prefix). */
  flags: number[];
}

/** One call over its own connection: sends `bodies` (uncompressed) and reads the whole answer. */
function exchange(path: string, bodies: Uint8Array[], extra: http2.OutgoingHttpHeaders = {}, end = true): { answer: Promise<Answer>; session: http2.ClientHttp2Session } {
  const session = h2Connect(callers.paths[UID]!);
  const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...extra });
  stream.on('error', () => undefined);
  let headers: http2.IncomingHttpHeaders | undefined;
  let status = NaN;
  let pending = Buffer.alloc(0);
  const flags: number[] = [];
  const take = (h: http2.IncomingHttpHeaders) => {
    headers ??= h;
    if (h['grpc-status'] !== undefined) status = Number(h['grpc-status']);
  };
  stream.on('response', take);
  stream.on('trailers', take);
  stream.on('data', (b: Buffer) => {
    pending = Buffer.concat([pending, b]);
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      flags.push(pending[0]!);
      pending = pending.subarray(5 + pending.readUInt32BE(1));
    }
  });
  for (const b of bodies) stream.write(grpcFrame(Buffer.from(b)));
  if (end) stream.end();
  const answer = new Promise<Answer>((resolve) => stream.on('close', () => resolve({ headers: headers ?? {}, status, flags })));
  return { answer, session };
}

async function answer(path: string, bodies: Uint8Array[], extra: http2.OutgoingHttpHeaders = {}): Promise<Answer> {
  const { answer, session } = exchange(path, bodies, extra);
  try {
    return await answer;
  } finally {
    session.destroy();
  }
}

const hash = toBinary(HashRequestSchema, create(HashRequestSchema, { data: new Uint8Array([1, 2, 3]) }));
const sessionOps = toBinary(SessionRequestSchema, create(SessionRequestSchema, { id: 1n, op: { case: 'hash', value: { data: new Uint8Array([1]) } }, more: [{ id: 2n, op: { case: 'generateRandom', value: { lengthBytes: 8 } } }] }));
// ServerReflectionRequest { list_services = "" } (field 7).
const listServices = Buffer.from([0x3a, 0x00]);
// A client that would take gzip only: the daemon answers uncompressed all the same.
const WANTS_GZIP = { 'grpc-accept-encoding': 'gzip' };

test.each([
  ['a successful unary call (CryptoService/Hash)', `${CRYPTO}Hash`, [hash], grpc.status.OK, 1],
  ['a failing unary call (Encrypt with a key that does not exist: trailers-only)', `${CRYPTO}Encrypt`, [toBinary(EncryptRequestSchema, create(EncryptRequestSchema, { keyName: 'nope' }))], grpc.status.NOT_FOUND, 0],
  ['a stream (CryptoService/Session)', `${CRYPTO}Session`, [sessionOps], grpc.status.OK, 1],
  ['StatusService/GetStatus', '/ringfence.v1.StatusService/GetStatus', [new Uint8Array()], grpc.status.OK, 1],
  ['a health check (grpc.health.v1.Health/Check)', '/grpc.health.v1.Health/Check', [new Uint8Array()], grpc.status.OK, 1],
  ['server reflection (v1 ServerReflectionInfo)', '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', [listServices], grpc.status.OK, 1],
])('%s advertises grpc-accept-encoding identity only, and its messages are not compressed', async (_name, path, bodies, status, messages) => {
  const got = await answer(path, bodies, WANTS_GZIP);
  expect(got.status).toBe(status);
  // Before: "identity,deflate,gzip" in the response headers. A trailers-only answer names none.
  if (messages > 0) {
    expect(got.headers['grpc-accept-encoding']).toBe('identity');
    expect(got.headers['grpc-encoding']).toBe('identity');
  } else {
    expect(got.headers['grpc-accept-encoding'] ?? 'identity').toBe('identity');
  }
  expect(got.flags.length).toBeGreaterThanOrEqual(messages);
  expect(got.flags.every((f) => f === 0)).toBe(true);
});

test('a call refused at the open-call limit advertises no compression either', async () => {
  const held = Array.from({ length: PER_CALLER }, () => exchange('/grpc.health.v1.Health/Watch', [new Uint8Array()], {}, false));
  await expect.poll(() => calls.heldBy(`uid:${UID}`)).toBe(PER_CALLER);
  const refused = await answer('/grpc.health.v1.Health/Check', [new Uint8Array()]);
  expect(refused.status).toBe(grpc.status.RESOURCE_EXHAUSTED);
  expect(refused.headers['grpc-accept-encoding'] ?? 'identity').toBe('identity');
  for (const h of held) h.session.destroy();
  await expect.poll(() => calls.total).toBe(0);
});

test('answers grpc-js sends on its own (an unknown method, an oversized message) advertise no compression', async () => {
  const unknown = await answer('/ringfence.v1.CryptoService/Nope', [hash]);
  expect(unknown.status).toBe(grpc.status.UNIMPLEMENTED);
  expect(unknown.headers['grpc-accept-encoding'] ?? 'identity').toBe('identity');
  const oversized = await answer(`${CRYPTO}Hash`, [new Uint8Array(DEFAULT_LIMITS.maxMessageBytes + 1)]);
  expect(oversized.status).toBe(grpc.status.RESOURCE_EXHAUSTED);
  expect(oversized.headers['grpc-accept-encoding'] ?? 'identity').toBe('identity');
});

test('a grpc-js client set to compress is refused once, told there that the daemon takes identity only, and its next calls are served', async () => {
  const client = new grpc.Client(`unix:${callers.paths[UID]}`, grpc.credentials.createInsecure(), { 'grpc.default_compression_algorithm': grpc.compressionAlgorithms.gzip });
  const call = () => new Promise<grpc.ServiceError | null>((resolve) => client.makeUnaryRequest(`${CRYPTO}Hash`, (b: Uint8Array) => Buffer.from(b), (b: Buffer) => b, hash, (err) => resolve(err)));
  try {
    // Knowing nothing of the daemon yet, it compresses its first call. Before, it was refused every
    // call: the refusal was trailers-only, which grpc-js clients do not read for the encodings a
    // server takes, and every served call's headers said gzip was taken.
    const first = await call();
    expect(first?.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(first?.details).toMatch(/declared grpc-encoding gzip/);
    for (let i = 0; i < 3; i++) expect(await call()).toBeNull();
  } finally {
    client.close();
  }
});
