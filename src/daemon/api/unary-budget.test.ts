/**
 * Unary CryptoService calls and the buffer budget (handler.ts unary, memory-budget.ts), through a
 * real grpc-js server with the daemon's server options and connection identification: two
 * sockets whose connections are identified as two callers. Caller A's raw HTTP/2 clients send
 * Encrypt requests and never read the answers, which HTTP/2 flow control then keeps in the daemon.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import * as http2 from 'node:http2';
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import { BatchEncryptRequestSchema } from '../../gen/ringfence/v1/batch_pb.js';
import { MemoryBudget } from './memory-budget.js';
import { encryptRequest, ENCRYPT, framed, UnaryWorld } from './unary-call.test-support.js';

const A = 4545;
const B = 4646;
const CALLER_A = `uid:${A}`;
const PLAINTEXT = 256 * 1024;
/** What one such Encrypt reserves before its work: its request and an answer of at most its input plus 256 bytes. */
const RESERVED = 2 * PLAINTEXT + 256;

// A's part is two such calls; the daemon's whole is exhausted once A's exempt calls answer too.
const budget = new MemoryBudget(2 * RESERVED + 1024, 2 * RESERVED - 1);
const world = new UnaryWorld([A, B], budget);
const { audit, logError } = world;
const until = world.until.bind(world);
const unread = (uid: number, extra: http2.OutgoingHttpHeaders = {}) => world.unread(uid, PLAINTEXT, extra);
const encrypt = (uid: number) => world.encrypt(uid, PLAINTEXT);

beforeAll(() => world.start());
afterEach(() => world.endCalls());
afterAll(() => world.close());

/** The outcomes of A's Encrypt calls audited since `from`. */
const outcomesOfA = (from: number) => audit.slice(from).filter((e) => e.rpc === 'CryptoService/Encrypt' && e.principal?.uid === A).map((e) => e.outcome);

test('answers a client never reads count against its caller until the calls end; another caller still gets answers', { timeout: 20_000 }, async () => {
  const from = audit.length;
  const a = [unread(A), unread(A)];
  await until(() => a.every((r) => r.answered()), "A's answers");
  // Request and ciphertext of each, held while HTTP/2 flow control keeps the answer in the daemon.
  const held = budget.heldBy(CALLER_A);
  expect(held).toBeGreaterThanOrEqual(2 * 2 * PLAINTEXT);
  expect(held).toBeLessThanOrEqual(2 * (RESERVED + 512));
  await new Promise((r) => setTimeout(r, 100));
  expect(budget.heldBy(CALLER_A)).toBe(held);

  expect(await encrypt(B)).toBeNull();
  // B's answer was read: nothing of it stays counted.
  await until(() => budget.heldBy(`uid:${B}`) === 0, "B's answer released");

  // A cancels one (RST_STREAM), and the other's connection goes: both give their bytes back.
  a[0]!.req.close(http2.constants.NGHTTP2_CANCEL);
  await until(() => budget.heldBy(CALLER_A) === held / 2, 'the cancelled call released');
  a[1]!.session.destroy();
  await until(() => budget.heldBy(CALLER_A) === 0, 'the dropped call released');
  expect(budget.callerCount).toBe(0);
  expect(outcomesOfA(from)).toEqual(['OK', 'OK']);
});

test("at its part a caller's further calls wait, not refused, and go on as its unread answers end; a wait the client ends is audited CANCELLED", { timeout: 20_000 }, async () => {
  const from = audit.length;
  // Two start within A's part, four more on its exemptions (holding nothing); the last two wait.
  const a = Array.from({ length: 8 }, () => unread(A));
  await until(() => a.filter((r) => r.answered()).length === 6 && budget.waiters === 2, 'six answers and two waiting');
  await new Promise((r) => setTimeout(r, 200));
  expect(a.filter((r) => r.answered()).length).toBe(6);
  expect(outcomesOfA(from)).toEqual(Array(6).fill('OK'));
  expect(budget.heldBy(CALLER_A)).toBeLessThanOrEqual(6 * (RESERVED + 512));
  expect(budget.exhausted).toBe(true);

  // Another caller holding nothing is answered though the daemon's whole budget is held.
  expect(await encrypt(B)).toBeNull();

  // One waiting call's client goes: audited as its doing, not answered, nothing logged.
  const waiting = a.filter((r) => !r.answered());
  waiting[0]!.req.close(http2.constants.NGHTTP2_CANCEL);
  await until(() => budget.waiters === 1, 'the wait ended');
  await until(() => audit.slice(from).some((e) => e.outcome === 'CANCELLED'), 'the CANCELLED line');
  expect(outcomesOfA(from).sort()).toEqual(['CANCELLED', ...Array(6).fill('OK')]);
  // One whose deadline passes while it waits: grpc-js's own status ends the wait.
  const late = unread(A, { 'grpc-timeout': '200m' });
  await until(() => budget.waiters === 2, 'the late call waiting');
  const status = await new Promise<http2.IncomingHttpHeaders>((resolve) => late.req.once('response', resolve));
  expect(status['grpc-status']).toBe(String(grpc.status.DEADLINE_EXCEEDED));
  await until(() => budget.waiters === 1 && outcomesOfA(from).includes('DEADLINE_EXCEEDED'), 'the late wait ended and audited');
  expect(logError).not.toHaveBeenCalled();

  // A's answered calls end (cancelled unread): the other waiting call gets its turn.
  expect(waiting[1]!.answered()).toBe(false);
  for (const r of a.filter((x) => x.answered())) r.req.close(http2.constants.NGHTTP2_CANCEL);
  await until(() => waiting[1]!.answered() && budget.waiters === 0, 'the last call answered');
  expect(outcomesOfA(from).sort()).toEqual(['CANCELLED', 'DEADLINE_EXCEEDED', ...Array(7).fill('OK')]);
});

test('an error answer holds nothing, though its client never reads', async () => {
  const { req } = world.open(A, ENCRYPT);
  const status = new Promise<http2.IncomingHttpHeaders>((resolve) => req.once('response', resolve));
  req.end(framed(encryptRequest(PLAINTEXT, 'no-such-key')));
  expect((await status)['grpc-status']).toBe(String(grpc.status.NOT_FOUND));
  expect(budget.heldBy(CALLER_A)).toBe(0);
  expect(budget.callerCount).toBe(0);
});

test('a deadline that passes between the request message and its END_STREAM holds nothing once the call is over (found by review: grpc-js then runs the handler with no \'cancelled\' to come)', { timeout: 10_000 }, async () => {
  const { req } = world.open(A, ENCRYPT, { 'grpc-timeout': '100m' });
  req.on('data', () => {});
  req.write(framed(encryptRequest(1024)));
  await new Promise((r) => setTimeout(r, 300));
  const audited = audit.length;
  req.end();
  // The handler runs on the half-close, after its deadline: its audit line is the sign it ran.
  await until(() => audit.length > audited, 'the late call audited');
  expect(budget.heldBy(CALLER_A)).toBe(0);
});

test('an unread batch answer counts its items\' names and statuses too, not only their bytes fields (found by review)', { timeout: 10_000 }, async () => {
  const ITEMS = 1000;
  const EACH = 64;
  const body = Buffer.from(toBinary(BatchEncryptRequestSchema, create(BatchEncryptRequestSchema, { requests: Array.from({ length: ITEMS }, () => ({ keyName: 'k', plaintext: new Uint8Array(EACH) })) })));
  const batch = world.open(A, '/ringfence.v1.CryptoService/BatchEncrypt');
  batch.req.end(framed(body));
  // The answer (over 100 KB) is more than HTTP/2's first window: the call stays open, unread.
  await until(() => batch.answered() && budget.heldBy(CALLER_A) > 0, 'the batch answered');
  // Its plaintexts, its ciphertexts (each longer than its plaintext) and 256 bytes per item.
  expect(budget.heldBy(CALLER_A)).toBeGreaterThanOrEqual(2 * ITEMS * EACH + ITEMS * 256);
});
