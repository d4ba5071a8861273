/**
 * Unary CryptoService calls waiting for room in the buffer budget when the daemon stops (drain.ts,
 * handler.ts unary): they end at once with UNAVAILABLE / SHUTTING_DOWN, their operation not done,
 * holding nothing. Found by review: they waited on until their client read its other answers,
 * cancelled or hit its deadline, or the stop cut them off. Calls past the wait are left alone.
 * A real grpc-js server with two callers, as in unary-budget.test.ts.
 */
import * as grpc from '@grpc/grpc-js';
import type * as http2 from 'node:http2';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { decodeStatusDetails } from '../../rpc/error-details.js';
import { Drain } from './drain.js';
import { ErrorReason } from './errors.js';
import { MemoryBudget } from './memory-budget.js';
import { UnaryWorld, type Raw } from './unary-call.test-support.js';

const A = 4747;
const B = 4848;
const CALLER_A = `uid:${A}`;
const CALLER_B = `uid:${B}`;
const PLAINTEXT = 256 * 1024;
/** What one such Encrypt reserves before its work: its request and an answer of at most its input plus 256 bytes. */
const RESERVED = 2 * PLAINTEXT + 256;

// A started drain cannot be undone: a world of its own for each test.
let world: UnaryWorld;
let budget: MemoryBudget;
let drain: Drain;

beforeEach(async () => {
  // A's part is two such calls (four more go ahead on its exemptions); the daemon's whole leaves B room.
  budget = new MemoryBudget(16 * RESERVED, 2 * RESERVED - 1);
  drain = new Drain();
  world = new UnaryWorld([A, B], budget, drain);
  await world.start();
});
afterEach(async () => {
  await world.endCalls();
  world.close();
});

const until = (ok: () => boolean, what: string) => world.until(ok, what);
const unread = (uid: number) => world.unread(uid, PLAINTEXT);
/** An Encrypt from a grpc-js client; its deadline is only the hang guard (well past "at once"). */
const encrypt = (uid: number) => world.encrypt(uid, PLAINTEXT, Date.now() + 4000);

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
  const from = world.audit.length;
  drain.start();
  expectShuttingDown(await waiting);
  expect(budget.waiters).toBe(0);
  expect(budget.heldBy(CALLER_A)).toBe(heldByA);
  expect(world.audit.slice(from)).toEqual([shutDownLine]);

  // The calls holding unread answers are untouched: still open, still counted, and B's is whole once read.
  expect([...a, b].every((r) => !r.req.closed)).toBe(true);
  expect(budget.heldBy(CALLER_B)).toBe(heldByB);
  const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => b.req.once('trailers', resolve));
  let read = 0;
  b.req.on('data', (d: Buffer) => (read += d.length));
  expect((await trailers)['grpc-status']).toBe(String(grpc.status.OK));
  expect(read).toBeGreaterThan(PLAINTEXT);
  await until(() => budget.heldBy(CALLER_B) === 0, "B's answer released");
  expect(world.audit.filter((e) => e.principal?.uid === B).map((e) => e.outcome)).toEqual(['OK']);
  expect(world.logError).not.toHaveBeenCalled();
});

test('a call that must wait once the drain has begun is answered so at once', { timeout: 15_000 }, async () => {
  await fillA();
  const heldByA = budget.heldBy(CALLER_A);
  drain.start();
  const from = world.audit.length;
  expectShuttingDown(await encrypt(A));
  expect(budget.waiters).toBe(0);
  expect(budget.heldBy(CALLER_A)).toBe(heldByA);
  expect(world.audit.slice(from)).toEqual([shutDownLine]);
});
