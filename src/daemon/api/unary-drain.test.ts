/**
 * Unary CryptoService calls waiting for room in the buffer budget when the daemon stops (drain.ts,
 * handler.ts unary): they end at once with UNAVAILABLE / SHUTTING_DOWN, their operation not done,
 * holding nothing. Found by review: they waited on until their client read its other answers,
 * cancelled or hit its deadline, or the stop cut them off. Calls past the wait are left alone.
 * A real grpc-js server with two callers, as in unary-budget.test.ts.
 */
import * as grpc from '@grpc/grpc-js';
import type * as http2 from 'node:http2';
import { afterEach, beforeEach, expect, test, vi } from 'vitest';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import { decodeStatusDetails } from '../../rpc/error-details.js';
import { DEFAULT_LIMITS } from '../config.js';
import { serverOptions } from '../daemon.js';
import { standInContext } from '../ops/stand-in.test-support.js';
import type { AuditEntry } from './audit.js';
import { cryptoServiceHandlers } from './crypto-service.js';
import { daemonServiceDefinition } from './decode.js';
import { Drain } from './drain.js';
import { ErrorReason } from './errors.js';
import { MemoryBudget } from './memory-budget.js';
import { UidSockets } from './uid-sockets.test-support.js';
import { encryptRequest, ENCRYPT, unreadEncrypt, type Raw } from './unary-call.test-support.js';

const A = 4747;
const B = 4848;
const CALLER_A = `uid:${A}`;
const CALLER_B = `uid:${B}`;
const PLAINTEXT = 256 * 1024;
/** What one such Encrypt reserves before its work: its request and an answer of at most its input plus 256 bytes. */
const RESERVED = 2 * PLAINTEXT + 256;

let callers: UidSockets;
let server: grpc.Server;
let budget: MemoryBudget;
let drain: Drain;
let audit: AuditEntry[];
const logError = vi.fn();
const raws: Raw[] = [];
const clients: grpc.Client[] = [];

beforeEach(async () => {
  callers = new UidSockets([A, B]);
  audit = [];
  // A's part is two such calls (four more go ahead on its exemptions); the daemon's whole leaves B room.
  budget = new MemoryBudget(16 * RESERVED, 2 * RESERVED - 1);
  drain = new Drain();
  const ctx = await standInContext({ budget, drain });
  const deps = { audit: (e: AuditEntry) => void audit.push(e), log: { error: logError, warn: vi.fn() }, access: callers.access } as never;
  server = new grpc.Server(serverOptions(DEFAULT_LIMITS));
  server.addService(daemonServiceDefinition(CryptoService, DEFAULT_LIMITS.maxBatchItems), cryptoServiceHandlers(ctx, deps));
  await callers.serve(server);
});
afterEach(async () => {
  for (const r of raws.splice(0)) r.session.destroy();
  for (const c of clients.splice(0)) c.close();
  await until(() => budget.held === 0 && budget.waiters === 0, 'the budget back to nothing');
  server.forceShutdown();
  callers.close();
});

async function until(ok: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; held by A ${budget.heldBy(CALLER_A)}, waiters ${budget.waiters}, audited ${audit.length}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function unread(uid: number): Raw {
  const r = unreadEncrypt(callers.paths[uid]!, PLAINTEXT);
  raws.push(r);
  return r;
}

/** An Encrypt from a grpc-js client; its deadline is only the hang guard (well past "at once"). */
function encrypt(uid: number): Promise<grpc.ServiceError | null> {
  const c = new grpc.Client(`unix:${callers.paths[uid]}`, grpc.credentials.createInsecure());
  clients.push(c);
  const id = (b: Buffer) => b;
  return new Promise((resolve) => c.makeUnaryRequest(ENCRYPT, id, id, encryptRequest(PLAINTEXT), new grpc.Metadata(), { deadline: Date.now() + 4000 }, (err) => resolve(err)));
}

/** A's part and its exemptions held by six calls whose answers A never reads. */
async function fillA(): Promise<Raw[]> {
  const a = Array.from({ length: 6 }, () => unread(A));
  await until(() => a.every((r) => r.answered()), "A's six answers");
  return a;
}

function expectShuttingDown(err: grpc.ServiceError | null): void {
  expect(err).toMatchObject({ code: grpc.status.UNAVAILABLE });
  expect(err!.details).toMatch(/shutting down; the operation was not done: send it again to the restarted daemon/);
  expect(decodeStatusDetails(err!.metadata)).toEqual({ reason: ErrorReason.SHUTTING_DOWN, metadata: {} });
}

const shutDownLine = expect.objectContaining({ rpc: 'CryptoService/Encrypt', principal: expect.objectContaining({ uid: A }), key: 'k', bytesIn: PLAINTEXT, bytesOut: 0, outcome: 'UNAVAILABLE', reason: 'SHUTTING_DOWN' });

test('a call waiting for room when the drain starts ends at once UNAVAILABLE / SHUTTING_DOWN, audited so, holding nothing; calls holding answers are left alone', { timeout: 15_000 }, async () => {
  const a = await fillA();
  const b = unread(B);
  await until(() => b.answered(), "B's answer");
  const heldByA = budget.heldBy(CALLER_A);
  const heldByB = budget.heldBy(CALLER_B);
  expect(heldByB).toBeGreaterThanOrEqual(2 * PLAINTEXT);

  const waiting = encrypt(A);
  await until(() => budget.waiters === 1, "A's next call waiting");
  const from = audit.length;
  drain.start();
  expectShuttingDown(await waiting);
  expect(budget.waiters).toBe(0);
  expect(budget.heldBy(CALLER_A)).toBe(heldByA);
  expect(audit.slice(from)).toEqual([shutDownLine]);

  // The calls holding unread answers are untouched: still open, still counted, and B's is whole once read.
  expect([...a, b].every((r) => !r.req.closed)).toBe(true);
  expect(budget.heldBy(CALLER_B)).toBe(heldByB);
  const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => b.req.once('trailers', resolve));
  let read = 0;
  b.req.on('data', (d: Buffer) => (read += d.length));
  expect((await trailers)['grpc-status']).toBe(String(grpc.status.OK));
  expect(read).toBeGreaterThan(PLAINTEXT);
  await until(() => budget.heldBy(CALLER_B) === 0, "B's answer released");
  expect(audit.filter((e) => e.principal?.uid === B).map((e) => e.outcome)).toEqual(['OK']);
  expect(logError).not.toHaveBeenCalled();
});

test('a call that must wait once the drain has begun is answered so at once', { timeout: 15_000 }, async () => {
  await fillA();
  const heldByA = budget.heldBy(CALLER_A);
  drain.start();
  const from = audit.length;
  expectShuttingDown(await encrypt(A));
  expect(budget.waiters).toBe(0);
  expect(budget.heldBy(CALLER_A)).toBe(heldByA);
  expect(audit.slice(from)).toEqual([shutDownLine]);
});
