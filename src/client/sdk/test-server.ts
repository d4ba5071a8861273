/**
 * An in-process fake ringfence daemon for the SDK's tests: a grpc-js Server on a Unix socket in a
 * temp dir, serving the real service definitions with just enough behaviour to exercise the SDK's
 * transport (typed errors with ErrorInfo trailers, cancellation, deadlines, paging, batches, an
 * out-of-order Session, flow-controlled streams). It is not the daemon: its formats are its own.
 *
 * Key names with special behaviour: missing* (NOT_FOUND), disabled (FAILED_PRECONDITION),
 * denied (PERMISSION_DENIED), no-details (INTERNAL without ErrorInfo), slow (answers after 5 s),
 * kill-session (a Session op that fails the whole stream), fail-after-N (EncryptStream fails after
 * N chunks).
 */
import { create, type DescMessage, type DescMethodUnary, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import { timestampNow } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import { RingfenceClient } from './client.js';
import { ItemStatusSchema, ErrorReason } from '../../gen/ringfence/v1/errors_pb.js';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import type { SessionRequest } from '../../gen/ringfence/v1/session_pb.js';
import { KeyService } from '../../gen/ringfence/v1/key_service_pb.js';
import { StatusService } from '../../gen/ringfence/v1/status_service_pb.js';
import { serviceDefinition } from '../../rpc/service-definition.js';
import { encodeStatusDetails, STATUS_DETAILS_KEY } from '../../rpc/error-details.js';
import { FakeError } from './test-server-crypto.js';
import { cryptoOps } from './test-server-ops.js';
import { keyServiceImpl } from './test-server-keys.js';
import { sessionHandler, streamHandlers } from './test-server-streams.js';

export interface FakeStats {
  calls: Record<string, number>;
  lastRequest: Record<string, unknown>;
  /** Unary calls the client cancelled (abort, deadline) while the fake was still working. */
  cancelled: number;
  /** Most Session operations received and not yet answered on one stream. */
  sessionMaxOutstanding: number;
  sessionStreams: number;
  /** Session streams not yet closed (a client's idle session half-closes its own). */
  sessionStreamsOpen: number;
  /** Responses sent out of id order. */
  sessionOutOfOrder: number;
  /** Session request messages received, and the most operations one of them carried. */
  sessionMessages: number;
  /** Session operations that arrived, and those without an operation case. */
  sessionOps: number;
  sessionEmptyOps: number;
  sessionMaxOpsPerMessage: number;
  /** Session response messages sent (each packs the answers due in one turn of the event loop). */
  sessionAnswerMessages: number;
  /** Most stream responses written and not yet flushed to the client, on any stream. */
  streamMaxUnflushed: number;
  /** Sizes of the chunk messages received by EncryptStream / DecryptStream / HashStream. */
  chunkSizes: { encrypt: number[]; decrypt: number[]; hash: number[] };
  streamsCancelled: number;
}

export interface FakeServer {
  socketPath: string;
  stats: FakeStats;
  /** Session operations are answered after a random delay between half this and this, ms (default 3). */
  sessionDelayMs: number;
  /** Session streams never end after the client's half-close (a daemon that stopped answering). */
  sessionIgnoresHalfClose?: boolean;
  /** Session operations this returns true for are never answered (a faulty or hung daemon). */
  sessionSwallows?: (request: SessionRequest) => boolean;
  close(): Promise<void>;
}

/** The status (with ErrorInfo trailer) a handler fails with. */
export function toStatus(err: unknown): Partial<grpc.StatusObject> & Error {
  if (err instanceof FakeError) {
    const metadata = new grpc.Metadata();
    if (err.reason !== ErrorReason.UNSPECIFIED) metadata.set(STATUS_DETAILS_KEY, encodeStatusDetails(err.code, err.message, { reason: err.reason, metadata: err.metadata }));
    return Object.assign(new Error(err.message), { code: err.code, details: err.message, metadata });
  }
  const message = err instanceof Error ? err.message : String(err);
  return Object.assign(new Error(message), { code: grpc.status.INTERNAL, details: message });
}

export function itemStatus(err: unknown): MessageInitShape<typeof ItemStatusSchema> {
  if (err instanceof FakeError) return { code: err.code, message: err.message, reason: err.reason, metadata: err.metadata };
  return { code: grpc.status.INTERNAL, message: String(err) };
}

type UnaryImpl<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  call: grpc.ServerUnaryCall<MessageShape<I>, MessageShape<O>>,
) => MessageInitShape<O> | Promise<MessageInitShape<O>>;

/** A grpc-js unary handler from a typed function; FakeErrors become statuses with ErrorInfo. */
export function unary<I extends DescMessage, O extends DescMessage>(stats: FakeStats, method: DescMethodUnary<I, O>, impl: UnaryImpl<I, O>): grpc.handleUnaryCall<MessageShape<I>, MessageShape<O>> {
  return (call, callback) => {
    stats.calls[method.name] = (stats.calls[method.name] ?? 0) + 1;
    stats.lastRequest[method.name] = call.request;
    Promise.resolve()
      .then(() => impl(call.request, call))
      .then(
        (res) => callback(null, create(method.output, res)),
        (err) => callback(toStatus(err)),
      );
  };
}

/** Resolves after `ms`, or as soon as the client cancels the call. */
export function delay(ms: number, call: grpc.ServerUnaryCall<unknown, unknown>, stats: FakeStats): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    call.on('cancelled', () => {
      clearTimeout(timer);
      stats.cancelled++;
      resolve();
    });
  });
}

/**
 * `at`: a socket path to serve on (a restarted daemon); close() then leaves its directory.
 * `serverOptions`: grpc-js server options over the defaults (a 5 MiB receive limit).
 */
export async function startFakeServer(at?: string, serverOptions: grpc.ServerOptions = {}): Promise<FakeServer> {
  const dir = at ? undefined : mkdtempSync(join(tmpdir(), 'ringfence-sdk-'));
  const socketPath = at ?? join(dir!, 'ringfence.sock');
  const stats: FakeStats = {
    calls: {},
    lastRequest: {},
    cancelled: 0,
    sessionMaxOutstanding: 0,
    sessionStreams: 0,
    sessionStreamsOpen: 0,
    sessionOutOfOrder: 0,
    sessionMessages: 0,
    sessionOps: 0,
    sessionEmptyOps: 0,
    sessionMaxOpsPerMessage: 0,
    sessionAnswerMessages: 0,
    streamMaxUnflushed: 0,
    chunkSizes: { encrypt: [], decrypt: [], hash: [] },
    streamsCancelled: 0,
  };
  const fake: FakeServer = { socketPath, stats, sessionDelayMs: 3, close: async () => {} };
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 5 * 1024 * 1024, ...serverOptions });
  const ops = cryptoOps();
  const u = <I extends DescMessage, O extends DescMessage>(m: DescMethodUnary<I, O>, f: UnaryImpl<I, O>) => unary(stats, m, f);
  const m = CryptoService.method;
  server.addService(serviceDefinition(KeyService), keyServiceImpl(stats));
  server.addService(serviceDefinition(CryptoService), {
    encrypt: u(m.encrypt, async (r, call) => {
      if (r.keyName === 'slow') await delay(5000, call, stats);
      return ops.encrypt(r);
    }),
    decrypt: u(m.decrypt, ops.decrypt),
    reEncrypt: u(m.reEncrypt, ops.reEncrypt),
    generateDataKey: u(m.generateDataKey, ops.generateDataKey),
    computeMac: u(m.computeMac, ops.computeMac),
    verifyMac: u(m.verifyMac, ops.verifyMac),
    hash: u(m.hash, ops.hash),
    generateRandom: u(m.generateRandom, ops.generateRandom),
    batchEncrypt: u(m.batchEncrypt, (r) => ({ results: r.requests.map((item) => batchItem(() => ops.encrypt(item))) })),
    batchDecrypt: u(m.batchDecrypt, (r) => ({ results: r.requests.map((item) => batchItem(() => ops.decrypt(item))) })),
    batchComputeMac: u(m.batchComputeMac, (r) => ({ results: r.requests.map((item) => batchItem(() => ops.computeMac(item))) })),
    session: sessionHandler(fake, ops),
    ...streamHandlers(stats),
  });
  server.addService(serviceDefinition(StatusService), {
    getStatus: u(StatusService.method.getStatus, () => ({ daemonVersion: 'fake', pid: process.pid, startTime: timestampNow(), keyCount: 0 })),
  });
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  fake.close = async () => {
    server.forceShutdown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  };
  return fake;
}

function batchItem<T>(run: () => T): { result: { case: 'response'; value: T } | { case: 'error'; value: MessageInitShape<typeof ItemStatusSchema> } } {
  try {
    return { result: { case: 'response', value: run() } };
  } catch (err) {
    return { result: { case: 'error', value: itemStatus(err) } };
  }
}

export const randomPayload = (n: number): Buffer => randomBytes(n);

/**
 * For a test file: a fake server and a client on it, started before its tests and closed after
 * (vitest hooks). Read `env.fake` / `env.client` inside tests.
 */
export function useFakeServer(): { fake: FakeServer; client: RingfenceClient } {
  const env = {} as { fake: FakeServer; client: RingfenceClient };
  beforeAll(async () => {
    env.fake = await startFakeServer();
    env.client = new RingfenceClient({ socketPath: env.fake.socketPath });
  });
  afterAll(async () => {
    await env.client?.close();
    await env.fake?.close();
  });
  return env;
}
